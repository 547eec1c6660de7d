//! What a login accepts, given the account's credentials record read at that login.
//!
//! Mail protocols (SMTP AUTH, IMAP, POP3, ManageSieve) take the main password (the
//! user's override while it applies, else the configured one) unless the account
//! requires app passwords, and any app password the account has. The web pages take
//! only the main password: an app password sits in a mail client's settings, and must
//! not be enough to change the password or make new app passwords.
//!
//! App passwords are checked first, with SHA-256 (they are random, see `secret.rs`), so a
//! client using one never pays argon2; the main password goes through
//! [`Directory::authenticate_with`], with the record's version as the auth cache's
//! generation, so a cached success never outlives a change.

use std::sync::Arc;

use super::{override_hash, secret};
use crate::accounts::{Account, Address, Directory, PasswordHash};
use crate::store::{CredentialRecord, VersionedCredentials};

/// What the login is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A mail protocol: app passwords accepted, the main password unless the account
    /// requires app passwords.
    Mail,
    /// The web pages: the main password only.
    Web,
}

/// What a successful check matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The main password.
    Main(Address),
    /// The app password with this id.
    App(Address, String),
}

impl Verified {
    pub fn address(&self) -> &Address {
        match self {
            Verified::Main(a) | Verified::App(a, _) => a,
        }
    }
}

/// One login's check, prepared by `Credentials::prepare_login` (the async part: the
/// record read) and run by [`LoginCheck::verify`] (the CPU part).
pub struct LoginCheck {
    directory: Arc<Directory>,
    username: String,
    /// The account the username names, `None` when it names none.
    account: Option<Address>,
    state: VersionedCredentials,
}

impl LoginCheck {
    pub(super) fn new(
        directory: Arc<Directory>,
        username: &str,
        account: Address,
        state: VersionedCredentials,
    ) -> LoginCheck {
        LoginCheck { directory, username: username.to_string(), account: Some(account), state }
    }

    pub(super) fn unknown(directory: Arc<Directory>, username: &str) -> LoginCheck {
        LoginCheck { directory, username: username.to_string(), account: None, state: VersionedCredentials::default() }
    }

    /// The record as read for this login (to note an app password's use).
    pub fn state(&self) -> &VersionedCredentials {
        &self.state
    }

    /// Check `password` for `purpose`. CPU-heavy when it comes to the main password
    /// (argon2): call it from `spawn_blocking`. An unknown user costs the same as a
    /// wrong password.
    pub fn verify(&self, password: &str, purpose: Purpose) -> Option<Verified> {
        let record = &self.state.record;
        if let (Some(account), Purpose::Mail) = (&self.account, purpose)
            && let Some(id) = app_password_match(record, password)
        {
            return Some(Verified::App(account.clone(), id));
        }
        let main_allowed = purpose == Purpose::Web || !record.require_app_passwords;
        let expected = self.account.as_ref();
        let address = self.directory.authenticate_with(&self.username, password, self.state.version, |entry| {
            // A reload between the record read and now may have moved the username to
            // another account: its record was not read, so no login.
            if main_allowed && expected == Some(&entry.address) { main_hash(entry, record) } else { None }
        })?;
        Some(Verified::Main(address))
    }
}

/// The id of the app password `typed` is, if any. Every stored digest is compared (no
/// early exit on the digest bytes), and nothing is computed for what cannot be one.
fn app_password_match(record: &CredentialRecord, typed: &str) -> Option<String> {
    if record.app_passwords.is_empty() {
        return None;
    }
    let digest = secret::digest(&secret::normalise(typed)?);
    record.app_passwords.iter().find(|p| secret::digest_matches(&p.hash, &digest)).map(|p| p.id.clone())
}

/// Does the account's password override apply? Only while the configured entry is the
/// one it replaced (see the module doc of `credentials`).
pub(super) fn override_applies(entry: &Account, record: &CredentialRecord) -> bool {
    record.password_override.as_ref().is_some_and(|o| o.env_fingerprint == entry.hash.fingerprint())
}

/// The main password's hash: the override while it applies, else the configured one.
/// `None` for an applying override that does not parse (a damaged record): no main
/// password then, rather than silently the old one, until the operator sets a new entry.
pub(super) fn main_hash(entry: &Account, record: &CredentialRecord) -> Option<PasswordHash> {
    match record.password_override.as_ref() {
        Some(o) if override_applies(entry, record) => override_hash(o),
        _ => Some(entry.hash.clone()),
    }
}
