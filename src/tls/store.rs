//! `CertStore`: the certificates being served, swappable at run time.
//!
//! It is the `ResolvesServerCert` of every rustls config. Resolution order:
//! 1. a TLS-ALPN-01 challenge certificate when the client offers `acme-tls/1`
//!    (RFC 8737: the CA's validator must get the challenge certificate, nobody else);
//! 2. the certificate registered for the SNI name;
//! 3. the default certificate (the hostname's).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::metrics;

/// The ALPN protocol of TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Where a served certificate came from (shown in logs, metrics and /readyz).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertSource {
    SelfSigned,
    Files,
    Acme,
}

impl CertSource {
    pub fn name(self) -> &'static str {
        match self {
            CertSource::SelfSigned => "self-signed",
            CertSource::Files => "files",
            CertSource::Acme => "acme",
        }
    }
}

/// A certificate ready to serve, with what we need to report about it.
#[derive(Clone, Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub source: CertSource,
    pub not_after: Option<SystemTime>,
    pub names: Vec<String>,
}

#[derive(Default)]
struct Inner {
    default: Option<LoadedCert>,
    by_name: HashMap<String, LoadedCert>,
    challenges: HashMap<String, Arc<CertifiedKey>>,
}

#[derive(Default)]
pub struct CertStore {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertStore")
    }
}

impl CertStore {
    pub fn new() -> Arc<CertStore> {
        Arc::new(CertStore::default())
    }

    /// Serve `cert` by default (and for each of its names) from the next handshake on.
    pub fn set_default(&self, cert: LoadedCert) {
        record_expiry(&cert);
        let mut inner = self.write();
        for name in &cert.names {
            inner.by_name.remove(name);
        }
        inner.default = Some(cert);
    }

    /// Serve `cert` for the SNI names it carries (e.g. `mta-sts.<domain>`).
    pub fn set_for_names(&self, cert: LoadedCert) {
        record_expiry(&cert);
        let mut inner = self.write();
        for name in &cert.names {
            inner.by_name.insert(name.to_ascii_lowercase(), cert.clone());
        }
    }

    /// The default certificate, if any.
    pub fn default_cert(&self) -> Option<LoadedCert> {
        self.read().default.clone()
    }

    /// Every certificate served (the default first, then those for SNI names, each once):
    /// what the status page lists.
    pub fn served(&self) -> Vec<LoadedCert> {
        let inner = self.read();
        let mut out: Vec<LoadedCert> = inner.default.iter().cloned().collect();
        let mut by_name: Vec<&LoadedCert> = inner.by_name.values().collect();
        by_name.sort_by(|a, b| a.names.cmp(&b.names));
        for cert in by_name {
            if !out.iter().any(|c| Arc::ptr_eq(&c.key, &cert.key)) {
                out.push(cert.clone());
            }
        }
        out
    }

    pub fn has_certificate(&self) -> bool {
        self.read().default.is_some()
    }

    /// Register a TLS-ALPN-01 challenge certificate for `name` (RFC 8737).
    pub fn set_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        self.write().challenges.insert(name.to_ascii_lowercase(), key);
    }

    pub fn clear_challenge(&self, name: &str) {
        self.write().challenges.remove(&name.to_ascii_lowercase());
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn record_expiry(cert: &LoadedCert) {
    if let Some(t) = cert.not_after {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        for name in &cert.names {
            metrics().tls_certificate_expiry.with_label_values(&[name.as_str(), cert.source.name()]).set(secs);
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let inner = self.read();
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let wants_acme = hello.alpn().is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if wants_acme {
            return name.and_then(|n| inner.challenges.get(&n).cloned());
        }
        if let Some(cert) = name.as_ref().and_then(|n| inner.by_name.get(n)) {
            return Some(cert.key.clone());
        }
        inner.default.as_ref().map(|c| c.key.clone())
    }
}
