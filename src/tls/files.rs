//! Certificates from PEM files: parsing, the key/certificate match check, and the
//! watcher that re-reads operator-supplied files when they change (cert-manager and
//! certbot replace them in place).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{CertSource, CertStore, LoadedCert, TlsError};

/// Load a certificate chain and its private key, refusing a key that does not
/// belong to the certificate.
pub fn load_pair(cert_path: &Path, key_path: &Path, source: CertSource) -> Result<LoadedCert, TlsError> {
    let cert_pem =
        std::fs::read(cert_path).map_err(|e| TlsError::Read { path: cert_path.display().to_string(), source: e })?;
    let key_pem =
        std::fs::read(key_path).map_err(|e| TlsError::Read { path: key_path.display().to_string(), source: e })?;
    from_pem(&cert_pem, &key_pem, source).map_err(|e| match e {
        TlsError::NoCertificate { .. } => TlsError::NoCertificate { path: cert_path.display().to_string() },
        TlsError::NoKey { .. } => TlsError::NoKey { path: key_path.display().to_string() },
        TlsError::Mismatch { .. } => {
            TlsError::Mismatch { cert: cert_path.display().to_string(), key: key_path.display().to_string() }
        }
        other => other,
    })
}

/// Build a servable certificate from PEM text.
pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], source: CertSource) -> Result<LoadedCert, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: String::new() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey { path: String::new() })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(TlsError::Mismatch { cert: String::new(), key: String::new() }),
    }
    let (not_after, names) = describe(&certified.cert[0]);
    Ok(LoadedCert { key: Arc::new(certified), source, not_after, names })
}

/// notAfter and the DNS names (SAN, else CN) of a certificate.
pub fn describe(cert: &CertificateDer<'_>) -> (Option<SystemTime>, Vec<String>) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return (None, Vec::new());
    };
    let ts = parsed.validity().not_after.timestamp();
    let not_after = u64::try_from(ts).ok().map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in parsed.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    (not_after, names)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Poll the operator's files every `every` and swap a changed, valid pair into the
/// store. A broken replacement is logged and the old certificate stays in service.
/// Polling (not inotify) because Kubernetes secret mounts swap symlinks, which
/// inotify watches on the file miss.
pub fn spawn_file_watcher(
    store: Arc<CertStore>,
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (modified(&cert), modified(&key));
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = (modified(&cert), modified(&key));
            if now == last {
                continue;
            }
            last = now;
            match load_pair(&cert, &key, CertSource::Files) {
                Ok(loaded) => {
                    tracing::info!(cert = %cert.display(), names = ?loaded.names, "certificate files changed; new certificate in service");
                    store.set_default(loaded);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificate files changed but cannot be used; keeping the old certificate")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    #[test]
    fn matching_pair_loads_with_names_and_expiry() {
        let (c, k) = pair("mx.example.com");
        let loaded = from_pem(c.as_bytes(), k.as_bytes(), CertSource::Files).unwrap();
        assert_eq!(loaded.names, vec!["mx.example.com"]);
        assert!(loaded.not_after.unwrap() > SystemTime::now());
    }

    #[test]
    fn mismatched_pair_is_refused() {
        let (c, _) = pair("a.example");
        let (_, k) = pair("b.example");
        assert!(matches!(from_pem(c.as_bytes(), k.as_bytes(), CertSource::Files), Err(TlsError::Mismatch { .. })));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(from_pem(b"nope", b"nope", CertSource::Files), Err(TlsError::NoCertificate { .. })));
        let (c, _) = pair("a.example");
        assert!(matches!(from_pem(c.as_bytes(), b"nope", CertSource::Files), Err(TlsError::NoKey { .. })));
    }
}
