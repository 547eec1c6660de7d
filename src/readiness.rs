//! What `/readyz` reports: every listener bound, a certificate loaded, not draining,
//! and no other part holding a named blocker (the ACME order sets one while it waits for
//! the first certificate). A leaf module shared by `http` (which serves it), `acme` (which
//! sets blockers) and `app`, so neither of the first two imports the other for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::metrics::metrics;
use crate::tls::CertStore;

/// What `/readyz` reports.
pub struct Readiness {
    listeners_bound: AtomicBool,
    draining: AtomicBool,
    certs: Arc<CertStore>,
    /// Extra reasons set by other parts (e.g. "waiting for the ACME certificate").
    notes: Mutex<Vec<(String, String)>>,
}

impl Readiness {
    pub fn new(certs: Arc<CertStore>) -> Arc<Readiness> {
        Arc::new(Readiness {
            listeners_bound: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            certs,
            notes: Mutex::new(Vec::new()),
        })
    }

    pub fn set_listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::SeqCst);
        self.update_gauge();
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.update_gauge();
    }

    /// Set (or with `None` clear) a named reason for not being ready.
    pub fn set_blocker(&self, key: &str, reason: Option<String>) {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        notes.retain(|(k, _)| k != key);
        if let Some(r) = reason {
            notes.push((key.to_string(), r));
        }
        drop(notes);
        self.update_gauge();
    }

    /// Every reason we are not ready; empty = ready.
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.draining.load(Ordering::SeqCst) {
            out.push("shutting down".to_string());
        }
        if !self.listeners_bound.load(Ordering::SeqCst) {
            out.push("listeners are not bound yet".to_string());
        }
        if !self.certs.has_certificate() {
            out.push("no TLS certificate loaded yet".to_string());
        }
        let notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(notes.iter().map(|(_, r)| r.clone()));
        out
    }

    fn update_gauge(&self) {
        metrics().ready.set(i64::from(self.reasons().is_empty()));
    }
}
