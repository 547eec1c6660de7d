//! What the account pages ask of the rest of the server, as one trait with the web's
//! own small view types. The pages never touch credentials or Sieve scripts
//! themselves: the server plugs in an implementation over `credentials/` and `sieve/`,
//! the unit tests an in-memory one.

use std::net::IpAddr;

use async_trait::async_trait;
use chrono::NaiveDate;

/// One app password as the list shows it (the secret is never shown again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPasswordView {
    /// Opaque id the revoke form names.
    pub id: String,
    pub name: String,
    /// RFC 3339 or any display form the backend chooses.
    pub created: String,
    /// `None` when never used.
    pub last_used: Option<String>,
}

/// The app-passwords page: the list and the account's switch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppPasswords {
    pub passwords: Vec<AppPasswordView>,
    /// Mail clients (IMAP, POP3, SMTP AUTH) must use an app password, not the main one.
    pub required: bool,
}

/// A new app password: the only time its secret is seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAppPassword {
    pub name: String,
    pub secret: String,
}

/// The vacation auto-reply as the form edits it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vacation {
    pub enabled: bool,
    pub subject: String,
    pub text: String,
    /// First and last day replies are sent (inclusive); `None` = no bound.
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

/// Why a backend call did not do what was asked. The pages turn each into a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("The current password is wrong.")]
    WrongPassword,
    #[error("There is no such app password.")]
    NoSuchAppPassword,
    #[error("{0}")]
    Refused(String),
    #[error("This page is not available on this server yet.")]
    Unavailable,
    #[error("The server could not save this; try again later.")]
    Failed,
}

/// The account self-service operations. `account` is always the logged-in session's
/// canonical address: the pages never take an account from a form, so one user can
/// never reach another's data.
#[async_trait]
pub trait AccountBackend: Send + Sync {
    /// Replace the password after checking the current one. `ip` is the browser's address:
    /// the check of the current password is a guess like a login's and is limited like one.
    async fn change_password(&self, ip: IpAddr, account: &str, current: &str, new: &str) -> Result<(), BackendError>;
    async fn app_passwords(&self, account: &str) -> Result<AppPasswords, BackendError>;
    async fn create_app_password(&self, account: &str, name: &str) -> Result<NewAppPassword, BackendError>;
    async fn revoke_app_password(&self, account: &str, id: &str) -> Result<(), BackendError>;
    async fn set_require_app_passwords(&self, account: &str, required: bool) -> Result<(), BackendError>;
    async fn vacation(&self, account: &str) -> Result<Vacation, BackendError>;
    async fn set_vacation(&self, account: &str, vacation: &Vacation) -> Result<(), BackendError>;
    /// An opaque string that changes whenever the account's password does (by the user
    /// or the operator): the sessions' epoch is derived from it, so a change ends every
    /// other session. Read at every logged-in request, on whichever replica serves it.
    async fn password_state(&self, account: &str) -> Result<String, BackendError>;
}

/// The backend until the credential and vacation layers are wired in: every page says
/// it is not available rather than pretending to save.
pub struct NotWired;

#[async_trait]
impl AccountBackend for NotWired {
    async fn change_password(&self, _: IpAddr, _: &str, _: &str, _: &str) -> Result<(), BackendError> {
        Err(BackendError::Unavailable)
    }
    async fn app_passwords(&self, _: &str) -> Result<AppPasswords, BackendError> {
        Err(BackendError::Unavailable)
    }
    async fn create_app_password(&self, _: &str, _: &str) -> Result<NewAppPassword, BackendError> {
        Err(BackendError::Unavailable)
    }
    async fn revoke_app_password(&self, _: &str, _: &str) -> Result<(), BackendError> {
        Err(BackendError::Unavailable)
    }
    async fn set_require_app_passwords(&self, _: &str, _: bool) -> Result<(), BackendError> {
        Err(BackendError::Unavailable)
    }
    async fn vacation(&self, _: &str) -> Result<Vacation, BackendError> {
        Err(BackendError::Unavailable)
    }
    async fn set_vacation(&self, _: &str, _: &Vacation) -> Result<(), BackendError> {
        Err(BackendError::Unavailable)
    }
    /// Nothing here can change a password: one state for ever.
    async fn password_state(&self, _: &str) -> Result<String, BackendError> {
        Ok(String::new())
    }
}
