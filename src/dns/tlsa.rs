//! DANE for our own MX (RFC 7672): the TLSA record `mailroom dns` prints when
//! `MAILROOM_DANE=on`. It is `3 1 1` (DANE-EE, the SubjectPublicKeyInfo, SHA-256): it
//! names our key, not the certificate, so it stays valid across renewals as long as the
//! key does; ACME keeps the key when DANE is on for that reason (`acme::order`).
//!
//! Sending servers honour the record only when the zone is DNSSEC-signed; without
//! DNSSEC it is ignored, whatever it says.

use std::path::PathBuf;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::records::DnsRecord;
use crate::config::{AcmeMode, DnsConfig};

/// The port sending MTAs reach us on: TLSA names are `_25._tcp.<mx host>` whatever
/// port we listen on behind a NAT.
const SMTP_PORT: u16 = 25;

/// `3 1 1 <hex SHA-256 of the certificate's SubjectPublicKeyInfo>`, in lower case.
pub fn tlsa_311(cert: &CertificateDer<'_>) -> Result<String, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, parsed.public_key().raw);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("3 1 1 {hex}"))
}

/// The certificate file the server presents: the operator's, else the ACME one for the
/// hostname (the first name of every order), else the self-signed fallback.
pub fn certificate_in_use(config: &DnsConfig) -> PathBuf {
    if let Some(file) = &config.tls_cert_file {
        return file.clone();
    }
    if matches!(config.acme, AcmeMode::Directory(_)) {
        let acme = crate::acme::AcmeFiles::new(&config.tls_dir).cert_path(&config.hostname);
        if acme.exists() {
            return acme;
        }
    }
    config.tls_dir.join("selfsigned.crt")
}

/// The TLSA record for the hostname, from the first certificate of the file in use.
pub fn tlsa_record(config: &DnsConfig) -> Result<DnsRecord, String> {
    let path = certificate_in_use(config);
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| format!("{}: no PEM certificate", path.display()))?
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let value = tlsa_311(&cert).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(DnsRecord {
        domain: config.hostname.clone(),
        kind: "tlsa".into(),
        name: format!("_{SMTP_PORT}._tcp.{}.", config.hostname.trim_end_matches('.')),
        rtype: "TLSA".into(),
        value,
        required: true,
        comment: "DANE: our certificate's key (DANE-EE, SPKI, SHA-256); only with DNSSEC on the zone".into(),
    })
}

/// At start with `MAILROOM_DANE=on`: the record to publish, or why there is none, and
/// the reminder that it counts only in a DNSSEC-signed zone.
pub fn log_at_start(config: &DnsConfig) {
    match tlsa_record(config) {
        Ok(record) => tracing::warn!(
            record = %format!("{} IN TLSA {}", record.name, record.value),
            "DANE is on: publish this TLSA record (see `mailroom dns --check`); senders honour it only if the zone is DNSSEC-signed"
        ),
        Err(e) => tracing::warn!(error = %e, "DANE is on but no TLSA record can be computed: no certificate yet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash is what `openssl` computes from the same certificate: the public key
    /// in DER (the SubjectPublicKeyInfo), then SHA-256.
    #[test]
    fn tlsa_matches_openssl() {
        if !crate::test_tools::tool_available("openssl") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["mx.example.com".to_string()]).unwrap().self_signed(&key).unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        let script = format!(
            "openssl x509 -in {} -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
            path.display()
        );
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let expected = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
        assert_eq!(expected.len(), 64);
        assert_eq!(tlsa_311(cert.der()).unwrap(), format!("3 1 1 {expected}"));
    }
}
