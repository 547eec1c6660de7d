//! Answering the CA's challenges: the TLS-ALPN-01 certificate (RFC 8737) and the
//! HTTP-01 token table (RFC 8555 §8.3).
//!
//! Both are registered before the challenge is declared ready and removed once the
//! order is decided, by a guard that also runs when the order fails half-way, so a
//! stale challenge never lingers in the certificate store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::AcmeError;
use crate::tls::CertStore;

/// HTTP-01 key authorizations by token, served on port 80 at
/// `/.well-known/acme-challenge/<token>`.
#[derive(Default)]
pub struct Http01Tokens {
    tokens: RwLock<HashMap<String, String>>,
}

impl Http01Tokens {
    pub fn new() -> Arc<Http01Tokens> {
        Arc::new(Http01Tokens::default())
    }

    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.write().insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove(&self, token: &str) {
        self.write().remove(token);
    }

    /// The key authorization for `token`, if a challenge for it is pending.
    pub fn get(&self, token: &str) -> Option<String> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner()).get(token).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, String>> {
        self.tokens.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The self-signed certificate RFC 8737 §3 asks for: the one name being validated as
/// its only SAN, and the critical `acmeIdentifier` extension holding the SHA-256 of
/// the key authorization. Served only to clients offering ALPN `acme-tls/1`.
pub fn tls_alpn_certificate(name: &str, key_authorization_digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(key_authorization_digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| AcmeError::Rejected(format!("challenge key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing)))
}

/// Everything registered for one order; removed again on drop.
pub struct ChallengeGuard {
    certs: Arc<CertStore>,
    tokens: Arc<Http01Tokens>,
    alpn_names: Vec<String>,
    http_tokens: Vec<String>,
}

impl ChallengeGuard {
    pub fn new(certs: Arc<CertStore>, tokens: Arc<Http01Tokens>) -> ChallengeGuard {
        ChallengeGuard { certs, tokens, alpn_names: Vec::new(), http_tokens: Vec::new() }
    }

    pub fn add_tls_alpn(&mut self, name: &str, key: Arc<CertifiedKey>) {
        self.certs.set_challenge(name, key);
        self.alpn_names.push(name.to_string());
    }

    pub fn add_http(&mut self, token: &str, key_authorization: &str) {
        self.tokens.insert(token, key_authorization);
        self.http_tokens.push(token.to_string());
    }
}

impl Drop for ChallengeGuard {
    fn drop(&mut self) {
        for name in &self.alpn_names {
            self.certs.clear_challenge(name);
        }
        for token in &self.http_tokens {
            self.tokens.remove(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8737 §3: id-pe-acmeIdentifier, critical, OCTET STRING of the digest.
    #[test]
    fn challenge_certificate_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let key = tls_alpn_certificate("mx.example.com", &digest).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        assert_eq!(ext.value, [&[0x04, 0x20][..], &digest[..]].concat());
        let (_, names) = crate::tls::describe(&key.cert[0]);
        assert_eq!(names, vec!["mx.example.com"]);
    }

    #[test]
    fn guard_removes_what_it_registered() {
        let certs = CertStore::new();
        let tokens = Http01Tokens::new();
        {
            let mut guard = ChallengeGuard::new(certs.clone(), tokens.clone());
            guard.add_http("tok", "tok.thumb");
            assert_eq!(tokens.get("tok").as_deref(), Some("tok.thumb"));
        }
        assert_eq!(tokens.get("tok"), None);
    }
}
