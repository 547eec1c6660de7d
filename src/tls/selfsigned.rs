//! The self-signed fallback: generated once for the hostname into `tls/` and reused,
//! so a fresh server speaks TLS from its first second (STARTTLS with a self-signed
//! certificate still beats plaintext between MTAs, RFC 7435 opportunistic security).

use std::path::Path;
use std::time::SystemTime;

use super::files::load_pair;
use super::{CertSource, LoadedCert, TlsError};
use crate::datadir::PRIVATE_FILE_MODE;
use crate::durable::write_atomic;

/// Load `tls/selfsigned.{crt,key}` if it covers `hostname` and has at least a week to
/// live; otherwise generate a new one (ECDSA P-256, ~1 year).
pub fn load_or_create_self_signed(tls_dir: &Path, hostname: &str) -> Result<LoadedCert, TlsError> {
    let cert_path = tls_dir.join("selfsigned.crt");
    let key_path = tls_dir.join("selfsigned.key");
    if let Ok(existing) = load_pair(&cert_path, &key_path, CertSource::SelfSigned) {
        let fresh =
            existing.not_after.is_some_and(|t| t > SystemTime::now() + std::time::Duration::from_secs(7 * 86400));
        if fresh && existing.names.iter().any(|n| n == hostname) {
            return Ok(existing);
        }
    }
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "mailroom self-signed");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_atomic(&key_path, key.serialize_pem().as_bytes(), PRIVATE_FILE_MODE)
        .map_err(|e| TlsError::Write { path: key_path.display().to_string(), source: e.into() })?;
    write_atomic(&cert_path, cert.pem().as_bytes(), PRIVATE_FILE_MODE)
        .map_err(|e| TlsError::Write { path: cert_path.display().to_string(), source: e.into() })?;
    tracing::info!(hostname, path = %cert_path.display(), "generated a self-signed certificate");
    load_pair(&cert_path, &key_path, CertSource::SelfSigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_self_signed(dir.path(), "mx.example.com").unwrap();
        let b = load_or_create_self_signed(dir.path(), "mx.example.com").unwrap();
        assert_eq!(a.key.cert[0], b.key.cert[0]);
        let c = load_or_create_self_signed(dir.path(), "other.example.com").unwrap();
        assert_ne!(a.key.cert[0], c.key.cert[0]);
        assert_eq!(c.names, vec!["other.example.com"]);
    }
}
