//! The HTTP client instant-acme talks to the CA with.
//!
//! Not instant-acme's default: that one resolves names with `getaddrinfo` (NSS is
//! not available in the static binary) and trusts the platform's root store (a
//! `FROM scratch` image has none). Ours resolves with hickory (`MAILROOM_DNS_SERVERS`
//! or `/etc/resolv.conf`), trusts the compiled-in webpki roots plus
//! `MAILROOM_ACME_CA_FILE` (private CAs, pebble in tests), and uses ring.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, HttpClient};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::AcmeError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves host names for hyper through hickory. `localhost` is answered here
/// (hickory does not read /etc/hosts in every setup, and tests use it).
#[derive(Clone)]
pub struct HickoryResolve {
    resolver: Arc<TokioResolver>,
}

impl HickoryResolve {
    /// Resolve through `resolver` (also used by the object-store client).
    pub fn new(resolver: Arc<TokioResolver>) -> HickoryResolve {
        HickoryResolve { resolver }
    }
}

impl tower_service::Service<Name> for HickoryResolve {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
            if host == "localhost" {
                let v = vec![
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
                ];
                return Ok(v.into_iter());
            }
            let lookup = resolver.lookup_ip(format!("{host}.")).await?;
            let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            if addrs.is_empty() {
                return Err(format!("{host}: no A/AAAA record").into());
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Roots trusted for the directory: webpki's plus every certificate in `ca_file`.
pub fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, AcmeError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| AcmeError::Storage { path: path.display().to_string(), source: e })?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
            roots.add(cert).map_err(|e| AcmeError::Client(format!("MAILROOM_ACME_CA_FILE {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(AcmeError::Client(format!("MAILROOM_ACME_CA_FILE {}: no PEM certificate", path.display())));
        }
    }
    Ok(roots)
}

/// The client handed to `Account::builder_with_http`.
pub fn http_client(ca_file: Option<&Path>, resolver: &TokioResolver) -> Result<Box<dyn HttpClient>, AcmeError> {
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Client(e.to_string()))?
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(HickoryResolve { resolver: Arc::new(resolver.clone()) });
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(30)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, BodyWrapper<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_adds_to_the_roots_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = roots(None).unwrap().len();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        assert_eq!(roots(Some(&path)).unwrap().len(), base + 1);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(roots(Some(&path)).is_err());
    }

    #[tokio::test]
    async fn localhost_resolves_without_dns() {
        use tower_service::Service;
        let mut r = HickoryResolve {
            resolver: Arc::new(crate::dns::resolver::build(&["127.0.0.1:1".parse().unwrap()]).unwrap()),
        };
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = r.call(name).await.unwrap().collect();
        assert!(addrs.iter().any(|a| a.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
