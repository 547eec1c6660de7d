//! Sieve scripts and the Sieve memory of an account, backend-neutral: the script-name
//! rule every backend applies, the bounds of the remembered keys, and [`Store`]'s
//! delegation of the sieve methods of [`MailStore`].
//!
//! Why one name rule: a script created through one backend must be valid on the other
//! (`store import`, a Dovecot home copied in), and ManageSieve must refuse a name before
//! any backend sees it. The rule is RFC 5804 1.6 plus the file-system needs of the
//! Maildir layout (`<home>/sieve/<name>.sieve`): no `/`, so a name is one file name.

use std::time::SystemTime;

use super::api::MailStore;
use super::{MailboxOwner, SieveScriptInfo, Store, StoreError};

/// Longest script name, in UTF-8 bytes (RFC 5804 leaves the limit to the server;
/// Pigeonhole uses the same order of magnitude, and it bounds the file name).
pub const MAX_SCRIPT_NAME_LEN: usize = 128;

/// Most remembered vacation/duplicate keys per account; past it the ones expiring first
/// are dropped. Bounds the Maildir memory file and the database rows an account can make
/// a sender fill.
pub const MAX_REMEMBERED_KEYS: usize = 10_000;

/// Refuse script names RFC 5804 1.6 forbids (control characters: 0x00-0x1F, 0x7F,
/// 0x80-0x9F, U+2028, U+2029) and those no file can carry (empty, `/`, over
/// [`MAX_SCRIPT_NAME_LEN`] bytes).
pub fn check_script_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SCRIPT_NAME_LEN
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}');
    if ok { Ok(()) } else { Err(StoreError::InvalidScriptName(name.chars().take(160).collect())) }
}

/// The remembered key as stored: its SHA-256 in hex, so every entry has the same small
/// size whatever the script made the key from (a Message-ID, a sender and a handle).
pub(crate) fn remembered_key_digest(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// See [`MailStore::sieve_list`].
    pub async fn sieve_list(&self, account: &MailboxOwner) -> Result<Vec<SieveScriptInfo>, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::sieve_list(s, account).await,
            Store::Pg(s) => MailStore::sieve_list(s, account).await,
        }
    }

    /// See [`MailStore::sieve_get`].
    pub async fn sieve_get(&self, account: &MailboxOwner, name: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::sieve_get(s, account, name).await,
            Store::Pg(s) => MailStore::sieve_get(s, account, name).await,
        }
    }

    /// See [`MailStore::sieve_put`].
    pub async fn sieve_put(&self, account: &MailboxOwner, name: &str, content: &[u8]) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::sieve_put(s, account, name, content).await,
            Store::Pg(s) => MailStore::sieve_put(s, account, name, content).await,
        }
    }

    /// See [`MailStore::sieve_delete`].
    pub async fn sieve_delete(&self, account: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::sieve_delete(s, account, name).await,
            Store::Pg(s) => MailStore::sieve_delete(s, account, name).await,
        }
    }

    /// See [`MailStore::sieve_rename`].
    pub async fn sieve_rename(&self, account: &MailboxOwner, old: &str, new: &str) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::sieve_rename(s, account, old, new).await,
            Store::Pg(s) => MailStore::sieve_rename(s, account, old, new).await,
        }
    }

    /// See [`MailStore::sieve_set_active`].
    pub async fn sieve_set_active(&self, account: &MailboxOwner, name: Option<&str>) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::sieve_set_active(s, account, name).await,
            Store::Pg(s) => MailStore::sieve_set_active(s, account, name).await,
        }
    }

    /// See [`MailStore::sieve_active`].
    pub async fn sieve_active(&self, account: &MailboxOwner) -> Result<Option<(String, bytes::Bytes)>, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::sieve_active(s, account).await,
            Store::Pg(s) => MailStore::sieve_active(s, account).await,
        }
    }

    /// See [`MailStore::sieve_remember`].
    pub async fn sieve_remember(
        &self,
        account: &MailboxOwner,
        key: &str,
        until: SystemTime,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::sieve_remember(s, account, key, until).await,
            Store::Pg(s) => MailStore::sieve_remember(s, account, key, until).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_follow_rfc_5804_and_fit_a_file_name() {
        for ok in ["main", "vacation 2024", "ünïcødé", ".hidden", "a".repeat(128).as_str()] {
            assert!(check_script_name(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "a/b", "tab\there", "nul\0", "del\u{7f}", "c1\u{85}", "ls\u{2028}", &"a".repeat(129)] {
            assert!(matches!(check_script_name(bad), Err(StoreError::InvalidScriptName(_))), "{bad:?}");
        }
    }
}
