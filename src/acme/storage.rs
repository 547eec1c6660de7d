//! What ACME leaves in the data dir: the account (`tls/acme-account.json`) and the
//! issued certificate with its key (`tls/acme/<hostname>.crt|.key`), all 0600.
//!
//! Keeping the account avoids a new registration at every start (CAs rate-limit
//! them), and keeping the certificate lets a restart serve at once without a new
//! order (Let's Encrypt allows 5 duplicate certificates a week). Files are written
//! atomically: a crash leaves the old pair or the new one, never a key that does not
//! match its certificate.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use instant_acme::AccountCredentials;
use serde::{Deserialize, Serialize};

use super::AcmeError;
use crate::datadir::PRIVATE_FILE_MODE;
use crate::durable::write_atomic;
use crate::tls::{self, CertSource, LoadedCert};

/// The stored account: the directory it belongs to and instant-acme's credentials.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Paths of everything ACME keeps under `<data>/tls`.
#[derive(Clone, Debug)]
pub struct AcmeFiles {
    tls_dir: PathBuf,
}

impl AcmeFiles {
    pub fn new(tls_dir: &Path) -> AcmeFiles {
        AcmeFiles { tls_dir: tls_dir.to_path_buf() }
    }

    pub fn account_path(&self) -> PathBuf {
        self.tls_dir.join("acme-account.json")
    }

    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.tls_dir.join("acme").join(format!("{}.crt", file_stem(name)))
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.tls_dir.join("acme").join(format!("{}.key", file_stem(name)))
    }

    /// The stored credentials, if any were saved for this `directory`. An account
    /// made on another CA (staging -> production) is not reused.
    pub fn load_account(&self, directory: &str) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.account_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AcmeError::Storage { path: path.display().to_string(), source: e }),
        };
        match serde_json::from_slice::<StoredAccount>(&text) {
            Ok(stored) if stored.directory == directory => Ok(Some(stored.credentials)),
            Ok(stored) => {
                tracing::info!(old = %stored.directory, new = directory, "stored ACME account belongs to another directory; registering a new one");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "stored ACME account is unreadable; registering a new one");
                Ok(None)
            }
        }
    }

    pub fn save_account(&self, directory: &str, credentials: AccountCredentials) -> Result<(), AcmeError> {
        let path = self.account_path();
        let stored = StoredAccount { directory: directory.to_string(), credentials };
        let json = serde_json::to_vec_pretty(&stored)
            .map_err(|e| AcmeError::Storage { path: path.display().to_string(), source: std::io::Error::other(e) })?;
        write_atomic(&path, &json, PRIVATE_FILE_MODE)
            .map_err(|e| AcmeError::Storage { path: path.display().to_string(), source: e.into() })
    }

    /// The stored certificate for `primary`, if it still serves: unexpired and
    /// covering every name in `names` (an operator who adds a name gets a new order).
    pub fn load_cert(&self, primary: &str, names: &[String]) -> Option<LoadedCert> {
        let loaded = tls::load_pair(&self.cert_path(primary), &self.key_path(primary), CertSource::Acme).ok()?;
        let unexpired = loaded.not_after.is_some_and(|t| t > SystemTime::now());
        let covers = names.iter().all(|n| loaded.names.iter().any(|c| c.eq_ignore_ascii_case(n)));
        (unexpired && covers).then_some(loaded)
    }

    /// Check the issued pair, then store it (key first: a crash in between leaves a
    /// mismatched pair, which `load_cert` refuses, so the next start re-orders).
    pub fn save_cert(&self, primary: &str, chain_pem: &str, key_pem: &str) -> Result<LoadedCert, AcmeError> {
        let loaded = tls::from_pem(chain_pem.as_bytes(), key_pem.as_bytes(), CertSource::Acme)?;
        let dir = self.tls_dir.join("acme");
        std::fs::create_dir_all(&dir).map_err(|e| AcmeError::Storage { path: dir.display().to_string(), source: e })?;
        for (path, content) in [(self.key_path(primary), key_pem), (self.cert_path(primary), chain_pem)] {
            write_atomic(&path, content.as_bytes(), PRIVATE_FILE_MODE)
                .map_err(|e| AcmeError::Storage { path: path.display().to_string(), source: e.into() })?;
        }
        Ok(loaded)
    }
}

impl AcmeFiles {
    /// The key to certify again when DANE is on: the stored ACME key for `primary`,
    /// else the self-signed fallback's (the one served until the first certificate
    /// arrives, whose TLSA record may already be published). `None`: neither is a
    /// readable key, and the order makes a new one.
    pub fn key_in_service(&self, primary: &str) -> Option<rcgen::KeyPair> {
        [self.key_path(primary), self.tls_dir.join("selfsigned.key")].iter().find_map(|path| {
            let pem = std::fs::read_to_string(path).ok()?;
            match rcgen::KeyPair::from_pem(&pem) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "DANE: cannot reuse this key");
                    None
                }
            }
        })
    }
}

/// A host name as a file name: it is validated config, but never let a `/` or a
/// leading dot through.
fn file_stem(name: &str) -> String {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    cleaned.trim_start_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(names: &[&str]) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    #[test]
    fn certificate_round_trips_and_must_cover_every_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = AcmeFiles::new(dir.path());
        assert!(files.load_cert("mx.example.com", &["mx.example.com".into()]).is_none());
        let (c, k) = issued(&["mx.example.com", "mta-sts.example.com"]);
        files.save_cert("mx.example.com", &c, &k).unwrap();
        let loaded = files.load_cert("mx.example.com", &["mx.example.com".into()]).unwrap();
        assert_eq!(loaded.source, CertSource::Acme);
        assert!(
            files.load_cert("mx.example.com", &["mx.example.com".into(), "autoconfig.example.com".into()]).is_none()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(files.key_path("mx.example.com")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_mismatched_pair_is_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let files = AcmeFiles::new(dir.path());
        let (c, _) = issued(&["mx.example.com"]);
        let (_, k) = issued(&["mx.example.com"]);
        assert!(files.save_cert("mx.example.com", &c, &k).is_err());
        assert!(!files.cert_path("mx.example.com").exists());
    }

    #[test]
    fn garbage_account_file_means_a_new_account() {
        let dir = tempfile::tempdir().unwrap();
        let files = AcmeFiles::new(dir.path());
        assert!(files.load_account("https://ca/dir").unwrap().is_none());
        std::fs::write(files.account_path(), b"{not json").unwrap();
        assert!(files.load_account("https://ca/dir").unwrap().is_none());
    }

    #[test]
    fn file_names_stay_inside_the_directory() {
        assert_eq!(file_stem("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_stem("mx.example.com"), "mx.example.com");
    }

    /// With DANE on, a renewal certifies the stored ACME key, or before the first
    /// certificate the self-signed fallback's; nothing readable: a new key.
    #[test]
    fn the_key_in_service_is_the_acme_key_else_the_self_signed_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = AcmeFiles::new(dir.path());
        assert!(files.key_in_service("mx.example.com").is_none());
        crate::tls::load_or_create_self_signed(dir.path(), "mx.example.com").unwrap();
        let selfsigned = std::fs::read_to_string(dir.path().join("selfsigned.key")).unwrap();
        let key = files.key_in_service("mx.example.com").unwrap();
        assert_eq!(key.serialize_pem(), rcgen::KeyPair::from_pem(&selfsigned).unwrap().serialize_pem());
        let (c, k) = issued(&["mx.example.com"]);
        files.save_cert("mx.example.com", &c, &k).unwrap();
        let key = files.key_in_service("mx.example.com").unwrap();
        assert_eq!(key.serialize_pem(), rcgen::KeyPair::from_pem(&k).unwrap().serialize_pem());
    }
}
