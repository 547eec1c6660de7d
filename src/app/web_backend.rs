//! The account pages' backend: [`web::AccountBackend`] over the credentials service and
//! the vacation settings. Only translation lives here: the web keeps its own view types
//! (so its forms are tested without a store), `credentials/` and `sieve/` keep the rules.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::accounts::Address;
use crate::credentials::{Credentials, CredentialsError, Invalid};
use crate::net::{Limiter, LoginOutcome, verify_web_login};
use crate::sieve::vacation_settings::{self, VacationError, VacationSettings};
use crate::store::{MailboxOwner, Store};
use crate::web::{AccountBackend, AppPasswordView, AppPasswords, BackendError, NewAppPassword, Vacation};

pub(super) struct StoreBackend {
    pub limiter: Arc<Limiter>,
    pub credentials: Credentials,
    pub store: Store,
}

/// The session's account, canonical already; a string that does not parse is a bug, and
/// the page says the change failed rather than acting on another account.
fn address(account: &str) -> Result<Address, BackendError> {
    Address::parse(account).map_err(|_| BackendError::Failed)
}

fn owner(account: &str) -> Result<MailboxOwner, BackendError> {
    let a = address(account)?;
    Ok(MailboxOwner::new(a.local, a.domain))
}

fn credentials_error(e: CredentialsError) -> BackendError {
    match e {
        CredentialsError::WrongCurrent => BackendError::WrongPassword,
        CredentialsError::Invalid(Invalid::NoSuchAppPassword) => BackendError::NoSuchAppPassword,
        CredentialsError::Invalid(invalid) => BackendError::Refused(capitalised(&invalid.to_string())),
        CredentialsError::UnknownAccount => BackendError::Refused("This account is no longer configured.".into()),
        CredentialsError::Store(e) => {
            tracing::warn!(error = %e, "account page: credentials store failed");
            BackendError::Failed
        }
    }
}

/// The credentials layer words its reasons as clauses; the pages show sentences.
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

/// A time as the list shows it: UTC to the minute.
fn shown(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%d %H:%M UTC").to_string()
}

#[async_trait]
impl AccountBackend for StoreBackend {
    async fn change_password(&self, ip: IpAddr, account: &str, current: &str, new: &str) -> Result<(), BackendError> {
        // The current password is checked through the login limiter first: with a stolen
        // session, this form would otherwise be an unlimited password oracle.
        match verify_web_login(&self.limiter, &self.credentials, ip, account, current).await {
            LoginOutcome::LoggedIn(_) => {}
            LoginOutcome::Failed => return Err(BackendError::WrongPassword),
            LoginOutcome::Refused(_) => {
                return Err(BackendError::Refused("Too many attempts. Wait a while and try again.".into()));
            }
            LoginOutcome::Unavailable => return Err(BackendError::Failed),
        }
        self.credentials.change_password(&address(account)?, current, new).await.map_err(credentials_error)
    }

    async fn app_passwords(&self, account: &str) -> Result<AppPasswords, BackendError> {
        let account = address(account)?;
        let list = self.credentials.app_passwords(&account).await.map_err(credentials_error)?;
        let required = self.credentials.require_app_passwords(&account).await.map_err(credentials_error)?;
        let passwords = list
            .into_iter()
            .map(|p| AppPasswordView {
                id: p.id,
                name: p.name,
                created: shown(p.created),
                last_used: p.last_used.map(shown),
            })
            .collect();
        Ok(AppPasswords { passwords, required })
    }

    async fn create_app_password(&self, account: &str, name: &str) -> Result<NewAppPassword, BackendError> {
        let (info, secret) =
            self.credentials.create_app_password(&address(account)?, name).await.map_err(credentials_error)?;
        Ok(NewAppPassword { name: info.name, secret })
    }

    async fn revoke_app_password(&self, account: &str, id: &str) -> Result<(), BackendError> {
        self.credentials.revoke_app_password(&address(account)?, id).await.map_err(credentials_error)
    }

    async fn set_require_app_passwords(&self, account: &str, required: bool) -> Result<(), BackendError> {
        self.credentials.set_require_app_passwords(&address(account)?, required).await.map_err(credentials_error)
    }

    async fn vacation(&self, account: &str) -> Result<Vacation, BackendError> {
        let s = vacation_settings::load(&self.store, &owner(account)?).await.map_err(vacation_error)?;
        Ok(Vacation { enabled: s.enabled, subject: s.subject, text: s.text, start: s.start, end: s.end })
    }

    async fn set_vacation(&self, account: &str, v: &Vacation) -> Result<(), BackendError> {
        let settings = VacationSettings {
            enabled: v.enabled,
            subject: v.subject.trim().to_string(),
            text: v.text.clone(),
            start: v.start,
            end: v.end,
        };
        vacation_settings::save(&self.store, &owner(account)?, &settings).await.map_err(vacation_error)
    }

    async fn password_state(&self, account: &str) -> Result<String, BackendError> {
        self.credentials.password_state(&address(account)?).await.map_err(credentials_error)
    }
}

fn vacation_error(e: VacationError) -> BackendError {
    match e {
        VacationError::Invalid(reason) => BackendError::Refused(reason.to_string()),
        VacationError::Store(e) => {
            tracing::warn!(error = %e, "account page: vacation script store failed");
            BackendError::Failed
        }
    }
}
