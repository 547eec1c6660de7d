//! Per-account credentials a user changes himself (a password override, app passwords,
//! "require app passwords"), backend-neutral: the record each backend keeps, and
//! [`Store`]'s delegation of the two methods of [`MailStore`] that read and write it.
//!
//! Why in the store: with PostgreSQL every replica checks logins, and a password changed
//! through one must be the password of all of them at once, so the record lives where the
//! replicas meet. What the fields mean and when they apply is `credentials/`'s business;
//! the store only keeps the record whole and versioned.
//!
//! Concurrency: a write names the version it read ([`MailStore::credentials_put`]), and a
//! backend writes only if the record is still at that version (compare-and-swap), so two
//! browser tabs or two replicas that change one account at once cannot lose each other's
//! change: the second one is told and reads again.

use super::api::MailStore;
use super::{MailboxOwner, Store, StoreError};

/// One account's credentials record. `Default` is "nothing changed": the environment's
/// password and no app passwords.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CredentialRecord {
    /// A password the user set, wins over `MAILROOM_ACCOUNTS` while that entry is
    /// unchanged (`credentials/` decides).
    #[serde(default)]
    pub password_override: Option<PasswordOverride>,
    /// App passwords, oldest first.
    #[serde(default)]
    pub app_passwords: Vec<AppPasswordEntry>,
    /// Mail protocols refuse the main password; only app passwords log in there.
    #[serde(default)]
    pub require_app_passwords: bool,
}

/// A password set by the user.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PasswordOverride {
    /// The argon2id PHC string of the new password.
    pub hash: String,
    /// The fingerprint of the `MAILROOM_ACCOUNTS` entry's hash string when the password was
    /// changed (`PasswordHash::fingerprint`): when the entry differs, the operator has
    /// changed it since, and the environment wins again.
    pub env_fingerprint: String,
    /// When it was set, Unix seconds.
    pub changed: i64,
}

/// One app password (the secret itself is never stored).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppPasswordEntry {
    /// Random, unique within the account; names it in a revoke.
    pub id: String,
    /// The user's label ("phone", "laptop").
    pub name: String,
    /// SHA-256 of the normalised secret, lowercase hex.
    pub hash: String,
    /// Unix seconds.
    pub created: i64,
    /// Last successful login with it, Unix seconds (recorded at most about once a minute).
    pub last_used: Option<i64>,
}

/// Hashes are secrets too: `Debug` shows only the shape.
impl std::fmt::Debug for CredentialRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRecord")
            .field("password_override", &self.password_override.is_some())
            .field("app_passwords", &self.app_passwords.len())
            .field("require_app_passwords", &self.require_app_passwords)
            .finish()
    }
}

/// A record with the version it was read at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionedCredentials {
    pub record: CredentialRecord,
    /// Grows by one on every write; 0 when the account never had a record.
    pub version: u64,
}

/// What a conditional write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsPut {
    /// Written; the record now has this version.
    Written(u64),
    /// Someone else wrote first (the version is no longer the one given): nothing written.
    Conflict,
}

impl CredentialRecord {
    /// The stored form (JSON, on both backends).
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Read the stored form back; a damaged record is an error, never "no record" (which
    /// would silently bring back the old password).
    pub(crate) fn from_json(text: &str) -> Result<CredentialRecord, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::Background(format!("credentials record is damaged: {e}")))
    }
}

impl Store {
    /// See [`MailStore::credentials_get`].
    pub async fn credentials_get(&self, account: &MailboxOwner) -> Result<VersionedCredentials, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::credentials_get(s, account).await,
            Store::Pg(s) => MailStore::credentials_get(s, account).await,
        }
    }

    /// See [`MailStore::credentials_put`].
    pub async fn credentials_put(
        &self,
        account: &MailboxOwner,
        expected_version: u64,
        record: &CredentialRecord,
    ) -> Result<CredentialsPut, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::credentials_put(s, account, expected_version, record).await,
            Store::Pg(s) => MailStore::credentials_put(s, account, expected_version, record).await,
        }
    }
}
