//! Handshake-level tests: what a client actually receives, before and after a swap.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Accepts everything and remembers nothing: we inspect the presented chain ourselves.
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// Serve TLS on a loopback port with `store`; return its address.
async fn serve(store: Arc<CertStore>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = acceptor(&store);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"hi").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Handshake with SNI `name` (and TLS `version` if given); return the served leaf's names.
async fn presented(
    addr: std::net::SocketAddr,
    name: &str,
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Result<Vec<String>, String> {
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut tls = connector.connect(server_name, tcp).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().ok_or("no certificate")?[0].clone();
    Ok(files::describe(&leaf).1)
}

fn pem_pair(name: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

#[tokio::test]
async fn swap_takes_effect_on_next_handshake_and_sni_selects() {
    let store = CertStore::new();
    let (c, k) = pem_pair("mx.example.com");
    store.set_default(files::from_pem(c.as_bytes(), k.as_bytes(), CertSource::SelfSigned).unwrap());
    let addr = serve(store.clone()).await;
    assert_eq!(presented(addr, "mx.example.com", None).await.unwrap(), vec!["mx.example.com"]);

    let (c2, k2) = pem_pair("mta-sts.example.com");
    store.set_for_names(files::from_pem(c2.as_bytes(), k2.as_bytes(), CertSource::Acme).unwrap());
    assert_eq!(presented(addr, "mta-sts.example.com", None).await.unwrap(), vec!["mta-sts.example.com"]);
    assert_eq!(presented(addr, "mx.example.com", None).await.unwrap(), vec!["mx.example.com"]);

    let (c3, k3) = pem_pair("new.example.com");
    store.set_default(files::from_pem(c3.as_bytes(), k3.as_bytes(), CertSource::Files).unwrap());
    assert_eq!(presented(addr, "mx.example.com", None).await.unwrap(), vec!["new.example.com"]);
}

#[tokio::test]
async fn tls12_and_tls13_both_work() {
    let store = CertStore::new();
    let (c, k) = pem_pair("mx.example.com");
    store.set_default(files::from_pem(c.as_bytes(), k.as_bytes(), CertSource::SelfSigned).unwrap());
    let addr = serve(store).await;
    presented(addr, "mx.example.com", Some(&rustls::version::TLS12)).await.unwrap();
    presented(addr, "mx.example.com", Some(&rustls::version::TLS13)).await.unwrap();
}

#[tokio::test]
async fn changed_files_are_reloaded_and_broken_ones_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let (c, k) = pem_pair("one.example.com");
    std::fs::write(&cert, c).unwrap();
    std::fs::write(&key, k).unwrap();
    let store = CertStore::new();
    store.set_default(load_pair(&cert, &key, CertSource::Files).unwrap());
    let addr = serve(store.clone()).await;
    let watcher = spawn_file_watcher(store.clone(), cert.clone(), key.clone(), Duration::from_millis(50));

    // A broken replacement keeps the old certificate in service.
    std::fs::write(&cert, "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(presented(addr, "x", None).await.unwrap(), vec!["one.example.com"]);

    let (c2, k2) = pem_pair("two.example.com");
    std::fs::write(&key, k2).unwrap();
    std::fs::write(&cert, c2).unwrap();
    let mut names = vec![];
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        names = presented(addr, "x", None).await.unwrap();
        if names == vec!["two.example.com"] {
            break;
        }
    }
    assert_eq!(names, vec!["two.example.com"]);
    watcher.abort();
}
