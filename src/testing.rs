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

/// The store the protocol tests (IMAP, POP3, SMTP delivery) run on: the Maildir in `dir`,
/// or with `MAILROOM_TEST_STORE=postgres` a fresh PostgreSQL database (.ci/run runs those
/// tests both ways, so every protocol test is also a test of the PostgreSQL backend).
/// Synchronous, for the fixtures that build a context outside async code: the schema is
/// migrated on a thread of its own, and the store's pool connects on first use.
pub fn test_store(dir: &std::path::Path, hostname: &str) -> crate::store::Store {
    if on_maildir() {
        return crate::store::Store::open(dir, hostname).expect("maildir store");
    }
    // One database per data dir, so a test that restarts its server finds its mail again.
    static DATABASES: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let mut known = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
    let url = match known.iter().find(|(d, _)| d == dir) {
        Some((_, url)) => url.clone(),
        None => {
            let url = crate::test_pg::database().expect("MAILROOM_TEST_STORE=postgres needs PostgreSQL");
            known.push((dir.to_path_buf(), url.clone()));
            url
        }
    };
    drop(known);
    let migrate_url = url.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(crate::store::PgStore::connect(&migrate_url, None)).expect("migrate");
    })
    .join()
    .expect("migration thread");
    crate::store::Store::Pg(crate::store::PgStore::connect_lazy(&url).expect("pool"))
}

/// True when the protocol tests run on Maildir (the default); tests that check files on
/// disk, or delete them behind the server's back, run only then.
pub fn on_maildir() -> bool {
    std::env::var("MAILROOM_TEST_STORE").as_deref() != Ok("postgres")
}
