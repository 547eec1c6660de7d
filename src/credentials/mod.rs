//! Per-account credentials a user changes himself: a password of his own that overrides
//! `MAILROOM_ACCOUNTS`, app passwords for mail clients, and "require app passwords".
//!
//! Owns: the rules of these credentials ([`Credentials`] for the pages that change them,
//! [`LoginCheck`] for the one login check in `net/login.rs`). The record itself is kept
//! through the storage boundary (`store::CredentialRecord`, `MailStore::credentials_get`
//! / `credentials_put`), so it works on Maildir and on PostgreSQL, where every replica
//! sees a change at its next login: there is no in-memory copy to go stale.
//! `accounts/` stays pure: it only learns which hash to check ([`Directory::authenticate_with`]).
//!
//! The override rule: the user's password wins over the `MAILROOM_ACCOUNTS` entry while
//! that entry is the one it replaced (the override remembers the entry's
//! `PasswordHash::fingerprint`); once the operator changes the entry, the environment
//! wins again and the override is ignored (and dropped at the record's next write). So an
//! operator can always reset a password the usual way, and a user's change survives restarts.
//!
//! Files: `secret.rs` (app password secrets), `login.rs` (what a login accepts),
//! `tests.rs`.

mod login;
pub mod secret;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use login::{LoginCheck, Purpose, Verified};

use crate::accounts::{Account, Address, Directory, MAX_PASSWORD_LEN, PasswordHash};
use crate::store::{
    AppPasswordEntry, CredentialRecord, CredentialsPut, MailboxOwner, PasswordOverride, Store, StoreError,
    VersionedCredentials,
};

/// Shortest new password, in characters: long enough that online guessing behind the
/// limiter is hopeless, short enough for a passphrase of a few words.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most app passwords an account keeps: a login compares against each.
pub const MAX_APP_PASSWORDS: usize = 20;
/// Longest app password name, in characters.
pub const MAX_APP_PASSWORD_NAME: usize = 64;
/// A login records an app password's last use only when the recorded one is older than
/// this, so a client reconnecting all the time does not write the record every time.
pub const LAST_USE_GRANULARITY: Duration = Duration::from_secs(60);
/// The account whose (never existing) record a login as an unknown user reads: `.invalid`
/// is reserved (RFC 2606), so no configured account has it.
const NO_SUCH_USER: &str = "no-such-user";
/// How often a change is tried again after losing a race with another writer.
const WRITE_ATTEMPTS: usize = 5;

/// Why a credentials change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The account is not in `MAILROOM_ACCOUNTS` (any more).
    #[error("no such account")]
    UnknownAccount,
    /// The current password given with a change is not the account's password.
    #[error("the current password is wrong")]
    WrongCurrent,
    /// The request itself is not acceptable.
    #[error("{0}")]
    Invalid(Invalid),
    /// The store failed (temporary when [`StoreError::is_temporary`]).
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What is wrong with a request, for the page to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the new password must have at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("the new password must have at most {MAX_PASSWORD_LEN} bytes")]
    PasswordTooLong,
    #[error("the name must not be empty")]
    NameEmpty,
    #[error("the name must have at most {MAX_APP_PASSWORD_NAME} characters")]
    NameTooLong,
    #[error("the name must not contain control characters")]
    NameControl,
    #[error("an account has at most {MAX_APP_PASSWORDS} app passwords: revoke one first")]
    TooManyAppPasswords,
    #[error("no such app password")]
    NoSuchAppPassword,
}

/// An app password as listed (never its secret or digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPasswordInfo {
    pub id: String,
    pub name: String,
    pub created: SystemTime,
    /// Last successful login with it, to about a minute.
    pub last_used: Option<SystemTime>,
}

impl From<&AppPasswordEntry> for AppPasswordInfo {
    fn from(e: &AppPasswordEntry) -> AppPasswordInfo {
        AppPasswordInfo {
            id: e.id.clone(),
            name: e.name.clone(),
            created: from_unix(e.created),
            last_used: e.last_used.map(from_unix),
        }
    }
}

/// The service the account pages call. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Credentials {
    store: Store,
    directory: Arc<Directory>,
}

impl Credentials {
    pub fn new(store: Store, directory: Arc<Directory>) -> Credentials {
        Credentials { store, directory }
    }

    /// Change the account's password: `current` must be its password now (the override
    /// or the configured one; never an app password, which must not be able to take over
    /// the account), `new` must have [`MIN_PASSWORD_CHARS`]..=[`MAX_PASSWORD_LEN`]. The
    /// next login anywhere needs the new one. Two argon2 runs: call it from a task that
    /// may wait a few hundred milliseconds.
    pub async fn change_password(&self, account: &Address, current: &str, new: &str) -> Result<(), CredentialsError> {
        if new.chars().count() < MIN_PASSWORD_CHARS {
            return Err(CredentialsError::Invalid(Invalid::PasswordTooShort));
        }
        if new.len() > MAX_PASSWORD_LEN {
            return Err(CredentialsError::Invalid(Invalid::PasswordTooLong));
        }
        let new = new.to_string();
        let hash = tokio::task::spawn_blocking(move || crate::accounts::try_hash_password(&new))
            .await
            .map_err(|e| StoreError::Background(e.to_string()))?
            .map_err(|_| CredentialsError::Invalid(Invalid::PasswordTooLong))?;
        for _ in 0..WRITE_ATTEMPTS {
            let (entry, owner) = self.account(account)?;
            let state = self.store.credentials_get(&owner).await?;
            // Checked against the version about to be replaced: if another tab changed the
            // password meanwhile, the write below loses and the check runs again.
            let main = login::main_hash(&entry, &state.record);
            let current = current.to_string();
            let right = tokio::task::spawn_blocking(move || main.is_some_and(|h| h.verify(&current)))
                .await
                .map_err(|e| StoreError::Background(e.to_string()))?;
            if !right {
                return Err(CredentialsError::WrongCurrent);
            }
            let mut record = state.record.clone();
            record.password_override = Some(PasswordOverride {
                hash: hash.clone(),
                env_fingerprint: entry.hash.fingerprint(),
                changed: unix_now(),
            });
            if let CredentialsPut::Written(_) = self.store.credentials_put(&owner, state.version, &record).await? {
                tracing::info!(account = %account, "password changed by the user");
                return Ok(());
            }
        }
        Err(busy())
    }

    /// Make a new app password called `name`; returns it listed and its secret as shown
    /// to the user (`abcd efgh ijkl mnop`). Only its digest is kept: show the secret once.
    pub async fn create_app_password(
        &self,
        account: &Address,
        name: &str,
    ) -> Result<(AppPasswordInfo, String), CredentialsError> {
        let name = check_name(name)?;
        let secret = secret::generate();
        let entry = AppPasswordEntry {
            id: secret::new_id(),
            name,
            hash: secret::digest(&secret),
            created: unix_now(),
            last_used: None,
        };
        let info = AppPasswordInfo::from(&entry);
        self.update(account, |record| {
            if record.app_passwords.len() >= MAX_APP_PASSWORDS {
                return Err(CredentialsError::Invalid(Invalid::TooManyAppPasswords));
            }
            record.app_passwords.push(entry.clone());
            Ok(())
        })
        .await?;
        tracing::info!(account = %account, id = %info.id, "app password created");
        Ok((info, secret::display(&secret)))
    }

    /// The account's app passwords, oldest first.
    pub async fn app_passwords(&self, account: &Address) -> Result<Vec<AppPasswordInfo>, CredentialsError> {
        let (_, owner) = self.account(account)?;
        let state = self.store.credentials_get(&owner).await?;
        Ok(state.record.app_passwords.iter().map(AppPasswordInfo::from).collect())
    }

    /// Revoke an app password: the next login with it fails, on every replica.
    pub async fn revoke_app_password(&self, account: &Address, id: &str) -> Result<(), CredentialsError> {
        self.update(account, |record| {
            let before = record.app_passwords.len();
            record.app_passwords.retain(|p| p.id != id);
            if record.app_passwords.len() == before {
                return Err(CredentialsError::Invalid(Invalid::NoSuchAppPassword));
            }
            Ok(())
        })
        .await?;
        tracing::info!(account = %account, id, "app password revoked");
        Ok(())
    }

    /// Whether mail protocols refuse the main password (only app passwords log in there;
    /// the web page still takes the main password, never an app password).
    pub async fn set_require_app_passwords(&self, account: &Address, on: bool) -> Result<(), CredentialsError> {
        self.update(account, |record| {
            record.require_app_passwords = on;
            Ok(())
        })
        .await
    }

    /// See [`Credentials::set_require_app_passwords`].
    pub async fn require_app_passwords(&self, account: &Address) -> Result<bool, CredentialsError> {
        let (_, owner) = self.account(account)?;
        Ok(self.store.credentials_get(&owner).await?.record.require_app_passwords)
    }

    /// What web sessions are bound to: a fingerprint of the account's main password hash
    /// (the user's override while it applies, else the configured one), so it changes
    /// with either. One small read of the record, like a login's; no argon2.
    pub async fn password_state(&self, account: &Address) -> Result<String, CredentialsError> {
        let (entry, owner) = self.account(account)?;
        let state = self.store.credentials_get(&owner).await?;
        // A damaged override leaves no main password (see `main_hash`): no session either.
        Ok(login::main_hash(&entry, &state.record).map_or_else(|| "none".to_string(), |h| h.fingerprint()))
    }

    /// Read what a login as `username` must be checked against: the account (if the
    /// username names one) and its record, read now, so a change made through any
    /// replica counts at once. One small read; the check itself is [`LoginCheck::verify`].
    pub async fn prepare_login(&self, username: &str) -> Result<LoginCheck, StoreError> {
        let Some(address) = self.directory.login_account(username) else {
            // The same read for nobody's record, so an unknown user is no faster to refuse.
            self.store.credentials_get(&MailboxOwner::new(NO_SUCH_USER, "invalid")).await?;
            return Ok(LoginCheck::unknown(self.directory.clone(), username));
        };
        let owner = owner_of(&address);
        let state = self.store.credentials_get(&owner).await?;
        Ok(LoginCheck::new(self.directory.clone(), username, address, state))
    }

    /// Note that app password `id` just logged in, unless its recorded last use is
    /// recent ([`LAST_USE_GRANULARITY`]). One try: losing a race to another writer only
    /// means the next login records it.
    pub async fn note_app_password_use(&self, account: &Address, state: &VersionedCredentials, id: &str) {
        let now = unix_now();
        let recent = |t: Option<i64>| t.is_some_and(|t| now.saturating_sub(t) < LAST_USE_GRANULARITY.as_secs() as i64);
        let Some(i) = state.record.app_passwords.iter().position(|p| p.id == id) else { return };
        if recent(state.record.app_passwords[i].last_used) {
            return;
        }
        let mut record = state.record.clone();
        record.app_passwords[i].last_used = Some(now);
        if let Err(e) = self.store.credentials_put(&owner_of(account), state.version, &record).await {
            tracing::warn!(account = %account, error = %e, "cannot record the app password's last use");
        }
    }

    /// The configured account and its store owner, or [`CredentialsError::UnknownAccount`].
    fn account(&self, address: &Address) -> Result<(Account, MailboxOwner), CredentialsError> {
        let entry = self.directory.account(address).ok_or(CredentialsError::UnknownAccount)?;
        let owner = owner_of(&entry.address);
        Ok((entry, owner))
    }

    /// Read, change, write back if nobody wrote meanwhile; otherwise again with what they
    /// wrote. An override the operator has since replaced is dropped on the way.
    async fn update<T>(
        &self,
        account: &Address,
        change: impl Fn(&mut CredentialRecord) -> Result<T, CredentialsError>,
    ) -> Result<T, CredentialsError> {
        for _ in 0..WRITE_ATTEMPTS {
            let (entry, owner) = self.account(account)?;
            let state = self.store.credentials_get(&owner).await?;
            let mut record = state.record.clone();
            if !login::override_applies(&entry, &record) {
                record.password_override = None;
            }
            let out = change(&mut record)?;
            if let CredentialsPut::Written(_) = self.store.credentials_put(&owner, state.version, &record).await? {
                return Ok(out);
            }
        }
        Err(busy())
    }
}

/// Every attempt lost a race: a temporary store condition, for the page to retry.
fn busy() -> CredentialsError {
    CredentialsError::Store(StoreError::Conflict("the credentials record kept changing".to_string()))
}

fn check_name(name: &str) -> Result<String, CredentialsError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CredentialsError::Invalid(Invalid::NameEmpty));
    }
    if name.chars().count() > MAX_APP_PASSWORD_NAME {
        return Err(CredentialsError::Invalid(Invalid::NameTooLong));
    }
    if name.chars().any(char::is_control) {
        return Err(CredentialsError::Invalid(Invalid::NameControl));
    }
    Ok(name.to_string())
}

pub(crate) fn owner_of(address: &Address) -> MailboxOwner {
    MailboxOwner::new(address.local.clone(), address.domain.clone())
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The hash of a password override, when it parses (a damaged one is ignored, leaving
/// the configured password).
fn override_hash(o: &PasswordOverride) -> Option<PasswordHash> {
    PasswordHash::parse(&o.hash).ok()
}
