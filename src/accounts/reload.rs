//! Where the directory's accounts and aliases come from, and reading them again while
//! running: `MAILROOM_ACCOUNTS_FILE` and `MAILROOM_ALIASES_FILE` (Kubernetes updates a
//! mounted Secret in place) and the generated account's `<data>/accounts` (changed by
//! `mailroom reset-password`). Inline `MAILROOM_ACCOUNTS` / `MAILROOM_ALIASES` values and
//! the mail domains are fixed for the life of the process.
//!
//! A new set is validated whole by [`Directory::new`] before it replaces the old one; an
//! invalid file keeps the old set and says why. The version is a digest of the inputs, so
//! a log line and the operator can tell which content is in use.

use std::path::{Path, PathBuf};

use super::generated::{generated_accounts_file, load_generated};
use super::{AccountEntry, AliasRule, Directory, parse_accounts, parse_aliases};
use crate::config::AccountsConfig;

/// The inputs of the directory.
#[derive(Clone, Debug)]
pub struct AccountSources {
    domains: Vec<String>,
    inline_accounts: Vec<AccountEntry>,
    inline_aliases: Vec<AliasRule>,
    accounts_file: Option<PathBuf>,
    aliases_file: Option<PathBuf>,
    data_dir: PathBuf,
}

/// One reading of the sources: the raw bytes (for the version) and what they say.
pub struct Loaded {
    pub version: String,
    pub directory: Directory,
    pub accounts: usize,
    pub aliases: usize,
}

impl AccountSources {
    /// The sources of a server whose mail domains are `domains`; `data_dir` holds the
    /// generated account's file.
    pub fn new(domains: &[String], data_dir: &Path, accounts: &AccountsConfig) -> AccountSources {
        AccountSources {
            domains: domains.to_vec(),
            inline_accounts: accounts.entries.clone(),
            inline_aliases: accounts.aliases.clone(),
            accounts_file: accounts.accounts_file.clone(),
            aliases_file: accounts.aliases_file.clone(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The files that are read, in a fixed order (absent ones included: their appearing
    /// is a change too).
    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.accounts_file.iter().chain(&self.aliases_file).cloned().collect();
        files.push(generated_accounts_file(&self.data_dir));
        files
    }

    /// A digest of every file's current content: cheap to compare every few seconds.
    pub fn version(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for file in self.files() {
            ctx.update(file.as_os_str().as_encoded_bytes());
            match std::fs::read(&file) {
                Ok(bytes) => {
                    ctx.update(&(bytes.len() as u64).to_be_bytes());
                    ctx.update(&bytes);
                }
                Err(_) => ctx.update(b"\xffabsent"),
            }
        }
        ctx.finish().as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Read and validate every source into a new directory.
    pub fn load(&self) -> Result<Loaded, Vec<String>> {
        let version = self.version();
        let mut accounts = match &self.accounts_file {
            Some(path) => parse_accounts(&read(path)?).map_err(|e| prefixed(path, e))?,
            None => self.inline_accounts.clone(),
        };
        if accounts.is_empty() {
            accounts.extend(load_generated(&self.data_dir).map_err(|e| vec![e])?);
        }
        let aliases = match &self.aliases_file {
            Some(path) => parse_aliases(&read(path)?).map_err(|e| prefixed(path, e))?,
            None => self.inline_aliases.clone(),
        };
        let counts = (accounts.len(), aliases.len());
        let directory = Directory::new(self.domains.clone(), accounts, aliases)?;
        Ok(Loaded { version, directory, accounts: counts.0, aliases: counts.1 })
    }
}

fn read(path: &Path) -> Result<String, Vec<String>> {
    std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read {}: {e}", path.display())])
}

fn prefixed(path: &Path, errors: Vec<String>) -> Vec<String> {
    errors.into_iter().map(|e| format!("{}: {e}", path.display())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EnvSource};

    fn sources(dir: &Path) -> AccountSources {
        let env = EnvSource::from_pairs([
            ("MAILROOM_HOSTNAME", "mx.example.com".to_string()),
            ("MAILROOM_DATA_DIR", dir.join("data").display().to_string()),
            ("MAILROOM_ACCOUNTS_FILE", dir.join("accounts").display().to_string()),
            ("MAILROOM_ALIASES_FILE", dir.join("aliases").display().to_string()),
        ]);
        let (config, _) = Config::load(&env).unwrap_or_else(|e| panic!("{:?}", e.0));
        AccountSources::new(&config.domains, &config.data_dir, &config.accounts)
    }

    #[test]
    fn a_changed_file_changes_the_version_and_an_invalid_one_is_refused_whole() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("accounts"), "alice@example.com:{PLAIN}a\n").unwrap();
        std::fs::write(tmp.path().join("aliases"), "info@example.com:alice@example.com\n").unwrap();
        let s = sources(tmp.path());
        let first = s.load().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((first.accounts, first.aliases), (1, 1));
        assert_eq!(s.version(), first.version, "unchanged files, same version");

        std::fs::write(tmp.path().join("accounts"), "alice@example.com:{PLAIN}a\nbob@example.com:{PLAIN}b\n").unwrap();
        let second = s.load().unwrap_or_else(|e| panic!("{e:?}"));
        assert_ne!(second.version, first.version);
        assert!(second.directory.authenticate("bob", "b").is_some());

        // An alias to nobody: the whole new set is refused, naming the file and the problem.
        std::fs::write(tmp.path().join("aliases"), "info@example.com:nobody@example.com\n").unwrap();
        let errors = s.load().err().expect("refused");
        assert!(errors.iter().any(|e| e.contains("nobody@example.com")), "{errors:?}");
        std::fs::write(tmp.path().join("accounts"), "not an account line\n").unwrap();
        let errors = s.load().err().expect("refused");
        assert!(errors[0].contains("accounts"), "{errors:?}");
    }
}
