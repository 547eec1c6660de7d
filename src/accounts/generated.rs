//! The account created at first start when `MAILROOM_ACCOUNTS` is empty, so that a
//! bare `docker run` yields a usable server: `postmaster@<primary domain>` with a
//! random password that is shown once. Only its hash is kept, in `<data>/accounts`
//! (0600, the `MAILROOM_ACCOUNTS` line format), and later starts reuse it.
//!
//! The password is made in memory and the file is written only once every listener is
//! bound: a first start that fails (a port already taken) must not print a password
//! next to its error and then never again. `mailroom reset-password` makes a new one
//! at any time; the running server re-reads the file.

use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distr::Alphanumeric;

use super::{AccountEntry, hash_password, parse_accounts};
use crate::datadir::PRIVATE_FILE_MODE;
use crate::durable::write_atomic;

/// The file that holds the generated account's line.
pub fn generated_accounts_file(data_dir: &Path) -> PathBuf {
    data_dir.join("accounts")
}

/// A freshly generated postmaster, not yet saved.
pub struct NewPostmaster {
    pub entry: AccountEntry,
    pub password: String,
    line: String,
}

impl NewPostmaster {
    /// postmaster@`domain` with a random 20-character password.
    pub fn generate(domain: &str) -> Result<NewPostmaster, String> {
        new_account_line(&format!("postmaster@{domain}"))
    }

    /// Write the hash (never the password) durably to `<data_dir>/accounts`.
    pub fn save(&self, data_dir: &Path) -> Result<(), String> {
        let path = generated_accounts_file(data_dir);
        write_atomic(&path, self.line.as_bytes(), PRIVATE_FILE_MODE)
            .map_err(|e| format!("cannot write {}: {}", path.display(), std::io::Error::from(e)))
    }
}

fn new_account_line(address: &str) -> Result<NewPostmaster, String> {
    let password: String = rand::rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect();
    let line = format!("{address}:{}\n", hash_password(&password));
    let entry = parse_accounts(&line).map_err(|e| e.join("; "))?.pop().ok_or("generated account line did not parse")?;
    Ok(NewPostmaster { entry, password, line })
}

/// The generated account saved by an earlier start, if any.
pub fn load_generated(data_dir: &Path) -> Result<Option<AccountEntry>, String> {
    let path = generated_accounts_file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut entries = parse_accounts(&text).map_err(|e| format!("{}: {}", path.display(), e.join("; ")))?;
            Ok(entries.drain(..).next())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Give the generated account (optionally named, to guard against resetting the wrong
/// one) a new random password; returns (address, password). Only its hash is stored.
pub fn reset_generated_password(data_dir: &Path, address: Option<&str>) -> Result<(String, String), String> {
    let path = generated_accounts_file(data_dir);
    let Some(current) = load_generated(data_dir)? else {
        return Err(format!(
            "there is no generated account in {} (it is created at the first start without MAILROOM_ACCOUNTS)",
            path.display()
        ));
    };
    let current_address = current.address.to_string();
    if let Some(wanted) = address
        && !wanted.eq_ignore_ascii_case(&current_address)
    {
        return Err(format!(
            "{wanted} is not the generated account ({current_address}); accounts in MAILROOM_ACCOUNTS get a new hash there (mailroom hash-password)"
        ));
    }
    let fresh = new_account_line(&current_address)?;
    fresh.save(data_dir)?;
    Ok((current_address, fresh.password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_written_until_saved_then_reused_and_password_verifies() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_generated(dir.path()).unwrap().is_none());
        let fresh = NewPostmaster::generate("example.com").unwrap();
        assert_eq!(fresh.entry.address.to_string(), "postmaster@example.com");
        assert!(fresh.entry.hash.verify(&fresh.password));
        assert!(!generated_accounts_file(dir.path()).exists(), "not saved before the start succeeded");
        fresh.save(dir.path()).unwrap();
        let again = load_generated(dir.path()).unwrap().unwrap();
        assert!(again.hash.verify(&fresh.password));
        let stored = std::fs::read_to_string(generated_accounts_file(dir.path())).unwrap();
        assert!(!stored.contains(&fresh.password), "only the hash is stored");
    }

    #[test]
    fn reset_replaces_the_hash_and_refuses_other_addresses() {
        let dir = tempfile::tempdir().unwrap();
        assert!(reset_generated_password(dir.path(), None).unwrap_err().contains("no generated account"));
        let first = NewPostmaster::generate("example.com").unwrap();
        first.save(dir.path()).unwrap();
        let err = reset_generated_password(dir.path(), Some("alice@example.com")).unwrap_err();
        assert!(err.contains("not the generated account"), "{err}");
        let (address, password) = reset_generated_password(dir.path(), Some("Postmaster@example.com")).unwrap();
        assert_eq!(address, "postmaster@example.com");
        let stored = load_generated(dir.path()).unwrap().unwrap();
        assert!(stored.hash.verify(&password));
        assert!(!stored.hash.verify(&first.password), "the old password no longer works");
    }
}
