//! The certificates in service, as the admin page shows them: names, issuer, end of
//! validity, whether self-signed, and — for the ACME certificate — when it renews next and
//! the last error of the ACME scheduler, which that scheduler writes into an [`AcmeSlot`].

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::tls::{CertSource, CertStore, LoadedCert};

/// What the ACME scheduler tells the status page: written by `acme/` at each turn of its
/// loop, read by a page render. A short mutex, no I/O.
#[derive(Debug, Default)]
pub struct AcmeSlot {
    state: Mutex<AcmeProgress>,
}

/// The scheduler's last word.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AcmeProgress {
    /// When the certificate in service is due for renewal (or the next order after a
    /// failure is tried).
    #[serde(serialize_with = "super::unix_secs_opt")]
    pub next_renewal: Option<SystemTime>,
    /// The last failed order and when it failed; cleared by a success.
    pub last_error: Option<String>,
    #[serde(serialize_with = "super::unix_secs_opt")]
    pub last_error_at: Option<SystemTime>,
}

impl AcmeSlot {
    /// The next renewal (or retry) is planned for `at`.
    pub fn scheduled(&self, at: SystemTime) {
        self.lock().next_renewal = Some(at);
    }

    /// An order failed with `error`; the next try is at `retry_at`.
    pub fn failed(&self, error: &str, retry_at: SystemTime) {
        let mut s = self.lock();
        s.last_error = Some(error.chars().take(super::recent::MAX_FIELD * 4).collect());
        s.last_error_at = Some(SystemTime::now());
        s.next_renewal = Some(retry_at);
    }

    /// An order succeeded: the previous error no longer applies.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        s.last_error = None;
        s.last_error_at = None;
    }

    pub fn progress(&self) -> AcmeProgress {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AcmeProgress> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateView {
    pub names: Vec<String>,
    /// `acme`, `files` (`MAILROOM_TLS_CERT_FILE`) or `self-signed`.
    pub source: &'static str,
    /// The issuer's distinguished name, as RFC 4514 text.
    pub issuer: String,
    #[serde(serialize_with = "super::unix_secs_opt")]
    pub not_after: Option<SystemTime>,
    /// Issuer and subject are the same name (our fallback certificate, or an operator's own).
    pub self_signed: bool,
    /// Only for the ACME certificate.
    #[serde(serialize_with = "super::unix_secs_opt")]
    pub next_renewal: Option<SystemTime>,
    pub last_acme_error: Option<String>,
}

/// Every certificate being served, the default one first.
pub fn view(certs: &CertStore, acme: &AcmeSlot) -> Vec<CertificateView> {
    let progress = acme.progress();
    certs.served().iter().map(|c| describe(c, &progress)).collect()
}

fn describe(cert: &LoadedCert, acme: &AcmeProgress) -> CertificateView {
    let parsed = cert.key.cert.first().and_then(|der| {
        let (_, x509) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let issuer = x509.issuer().to_string();
        let self_signed = x509.issuer().as_raw() == x509.subject().as_raw();
        let not_after = u64::try_from(x509.validity().not_after.timestamp())
            .ok()
            .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        Some((issuer, self_signed, not_after))
    });
    let (issuer, self_signed, not_after) = parsed.unwrap_or((String::new(), false, cert.not_after));
    let is_acme = cert.source == CertSource::Acme;
    CertificateView {
        names: cert.names.clone(),
        source: cert.source.name(),
        issuer,
        not_after: not_after.or(cert.not_after),
        self_signed,
        next_renewal: if is_acme { acme.next_renewal } else { None },
        last_acme_error: acme.last_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_self_signed_certificate_is_described() {
        crate::tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let loaded = crate::tls::load_or_create_self_signed(dir.path(), "mx.example.org").unwrap();
        let certs = CertStore::new();
        certs.set_default(loaded);
        let acme = AcmeSlot::default();
        let [view]: [CertificateView; 1] = view(&certs, &acme).try_into().unwrap();
        assert_eq!(view.names, ["mx.example.org"]);
        assert_eq!(view.source, "self-signed");
        assert!(view.self_signed);
        assert!(view.not_after.is_some_and(|t| t > SystemTime::now()));
        assert_eq!((view.next_renewal, view.last_acme_error), (None, None));
    }

    #[test]
    fn a_certificate_signed_by_a_ca_names_its_issuer_and_the_acme_progress() {
        crate::tls::install_default_provider();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Test CA R1");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["mx.example.org".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let mut loaded = crate::tls::load_pair(&cert_path, &key_path, CertSource::Files).unwrap();
        loaded.source = CertSource::Acme;
        let certs = CertStore::new();
        certs.set_default(loaded);
        let acme = AcmeSlot::default();
        let soon = SystemTime::now() + std::time::Duration::from_secs(60);
        acme.failed("urn:ietf:params:acme:error:rateLimited", soon);
        let [view]: [CertificateView; 1] = view(&certs, &acme).try_into().unwrap();
        assert_eq!(view.issuer, "CN=Test CA R1");
        assert!(!view.self_signed);
        assert_eq!(view.next_renewal, Some(soon));
        assert_eq!(view.last_acme_error.as_deref(), Some("urn:ietf:params:acme:error:rateLimited"));
        acme.succeeded();
        assert_eq!(super::view(&certs, &acme)[0].last_acme_error, None);
    }
}
