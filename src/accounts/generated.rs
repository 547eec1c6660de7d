//! The account created at first start when `MAILROOM_ACCOUNTS` is empty, so that a
//! bare `docker run` yields a usable server: `postmaster@<primary domain>` with a
//! random password that is shown once. Only its hash is kept, in `<data>/accounts`
//! (0600, the `MAILROOM_ACCOUNTS` line format), and later starts reuse it.

use std::path::Path;

use rand::Rng;
use rand::distr::Alphanumeric;

use super::{AccountEntry, hash_password, parse_accounts};
use crate::datadir::write_private_file;

/// The account to use, and the new password if it was just created.
pub struct GeneratedAccount {
    pub entry: AccountEntry,
    pub new_password: Option<String>,
}

/// Reuse `<data_dir>/accounts`, or create postmaster@`domain` with a random password.
pub fn load_or_create_postmaster(data_dir: &Path, domain: &str) -> Result<GeneratedAccount, String> {
    let path = data_dir.join("accounts");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut entries = parse_accounts(&text).map_err(|e| format!("{}: {}", path.display(), e.join("; ")))?;
        if let Some(entry) = entries.drain(..).next() {
            return Ok(GeneratedAccount { entry, new_password: None });
        }
    }
    let password: String = rand::rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect();
    let line = format!("postmaster@{domain}:{}\n", hash_password(&password));
    let mut entries = parse_accounts(&line).map_err(|e| e.join("; "))?;
    let entry = entries.pop().ok_or("generated account line did not parse")?;
    write_private_file(&path, line.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(GeneratedAccount { entry, new_password: Some(password) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_password_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_postmaster(dir.path(), "example.com").unwrap();
        let password = first.new_password.clone().unwrap();
        assert_eq!(first.entry.address.to_string(), "postmaster@example.com");
        assert!(first.entry.hash.verify(&password));
        let again = load_or_create_postmaster(dir.path(), "example.com").unwrap();
        assert!(again.new_password.is_none());
        assert!(again.entry.hash.verify(&password));
        let stored = std::fs::read_to_string(dir.path().join("accounts")).unwrap();
        assert!(!stored.contains(&password), "only the hash is stored");
    }
}
