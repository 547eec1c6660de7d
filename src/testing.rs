//! Helpers shared by the unit tests (compiled only for `cargo test`).
//!
//! The "garbage in never panics" tests of every parser draw their inputs from one
//! deterministic generator (xorshift64), so a failure reproduces from the seed alone.

/// One step of xorshift64: advances `seed` and returns its new value.
pub fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// `len` bytes drawn from `alphabet` (one generator step per byte).
pub fn garbage(seed: &mut u64, alphabet: &[u8], len: usize) -> Vec<u8> {
    (0..len).map(|_| alphabet[(xorshift(seed) % alphabet.len() as u64) as usize]).collect()
}

/// A TLS connector for test clients that trusts only the certificates in `pem` (the test
/// CA or self-signed certificate), with the ring provider; tests connect as `localhost`.
pub fn tls_connector_trusting(pem: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}
