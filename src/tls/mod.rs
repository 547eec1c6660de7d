//! TLS for every listener: one certificate store, rustls configurations built on it,
//! and the sources that fill it (operator files, the self-signed fallback; `acme/`
//! sets its certificates and TLS-ALPN-01 challenge answers in the same store).
//!
//! The store is the rustls certificate resolver itself, so swapping a certificate
//! (renewal, file change) takes effect on the next handshake of every listener
//! without rebuilding configs or restarting anything. Only TLS 1.2 and 1.3 are
//! offered (rustls supports nothing older), with the ring provider.

pub mod files;
mod selfsigned;
mod store;

use std::sync::Arc;

use rustls::ServerConfig;
use thiserror::Error;

pub use files::{describe, from_pem, load_pair, spawn_file_watcher};
pub use selfsigned::load_or_create_self_signed;
pub use store::{ACME_TLS_ALPN, CertSource, CertStore, LoadedCert};

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: no usable PEM private key found (expected PKCS#8, RSA or EC)")]
    NoKey { path: String },
    #[error("{cert} and {key} do not belong together: the private key does not match the certificate")]
    Mismatch { cert: String, key: String },
    #[error("certificate or key rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot create self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// The crypto provider every config uses (ring: no C toolchain, static builds).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config that verifies servers against the web PKI roots plus `extra_roots`
/// (an operator's private CA): what every outgoing client that checks certificates uses.
pub fn verified_client_config(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A server config resolving certificates through `store`, offering `alpn`.
pub fn server_config(store: &Arc<CertStore>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    // Both versions are supported by the ring provider, so this cannot fail; keep the
    // defaults if it ever did.
    let builder = match builder {
        Ok(b) => b,
        Err(_) => ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default versions")),
    };
    let mut config = builder.with_no_client_auth().with_cert_resolver(store.clone());
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Mail clients reconnect often; TLS 1.2 session-id resumption saves them a full
    // handshake.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    // No TLS 1.3 session tickets: they arrive after the handshake, and imaplib2 (the IMAP
    // library of offlineimap) loses its next reply about 1 time in 20 when they race its
    // reader thread after STARTTLS. Measured: 5/100 hung sessions with tickets, 0/100
    // without. Resumption is a small saving; a hung sync is not.
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

/// An acceptor for a mail protocol listener (no ALPN: mail clients don't send one).
pub fn acceptor(store: &Arc<CertStore>) -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(server_config(store, &[]))
}

/// Install ring as the process default provider, for crates (hyper-rustls inside
/// instant-acme) that ask for the default. Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests;
