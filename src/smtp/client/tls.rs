//! TLS settings of the outbound client: one connector that checks certificates
//! (webpki roots plus any extra roots the operator or a test trusts) and one that does not.
//!
//! Why accept any certificate at all: between MX hosts, STARTTLS without a policy is
//! opportunistic (RFC 7435, RFC 8461 §1). Many MX hosts present self-signed or mismatched
//! certificates; refusing them would send the mail in clear text instead, which is worse.
//! Verification is required only where someone asked for it: an MTA-STS policy in
//! `enforce` mode, and the smarthost (whose credentials we are about to send).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::tls::provider;

/// Both connectors.
#[derive(Clone)]
pub struct Connectors {
    pub verified: TlsConnector,
    pub unverified: TlsConnector,
}

impl Connectors {
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Result<Connectors, rustls::Error> {
        let verified = crate::tls::verified_client_config(extra_roots)?;
        let unverified = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth();
        Ok(Connectors {
            verified: TlsConnector::from(Arc::new(verified)),
            unverified: TlsConnector::from(Arc::new(unverified)),
        })
    }
}

/// Checks the handshake signatures (so the session is really encrypted to whoever holds
/// the key) but not who the certificate belongs to.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS server name for a host (a DNS name, or an IP address for a relay given by IP).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.trim_end_matches('.').to_string()).ok()
}
