//! DANE for SMTP (RFC 7672): TLSA records, validated by DNSSEC, say which certificate
//! an MX host must present, and that it must use TLS at all.
//!
//! The rules, as RFC 7672 (and Postfix) apply them:
//! - DANE applies to an MX host only when the MX answer and the host's TLSA answer are
//!   both DNSSEC-secure. Insecure answers (an unsigned zone) mean no DANE: the usual
//!   opportunistic TLS or MTA-STS then. A TLSA lookup that fails or does not validate
//!   (bogus, SERVFAIL) for a secure MX is a temporary failure for that host: an attacker
//!   who can break the lookup must not get plain text.
//! - Only DANE-EE (3) and DANE-TA (2) are usable for SMTP; PKIX-TA/EE (0, 1) are ignored.
//!   DANE-EE matches the server's own certificate (or key) and ignores its names and
//!   dates; DANE-TA names a CA in the presented chain, which must then validate the
//!   server's certificate for the MX host name, dates included.
//! - With usable records, STARTTLS is required and a certificate matching none of them
//!   is a temporary failure, logged with the reason.
//!
//! DANE wins over MTA-STS for a host that has it (RFC 8461 section 2).

use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};
use ring::digest;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::tls::provider;

/// One usable TLSA record (usage 2 or 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    /// 0: the whole certificate, 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: the bytes themselves, 1: SHA-256, 2: SHA-512.
    pub matching: u8,
    pub data: Vec<u8>,
}

/// What DANE says about one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPolicy {
    /// No secure, usable TLSA records: DANE does not apply.
    None,
    /// TLS is required and the certificate must match one of these.
    Required(Vec<Tlsa>),
    /// The TLSA lookup failed or did not validate: not this host, not now.
    Unknown(String),
}

/// The validating lookups DANE needs.
pub struct Dane {
    resolver: TokioResolver,
}

impl Dane {
    pub fn new(resolver: TokioResolver) -> Dane {
        Dane { resolver }
    }

    /// Whether `domain`'s MX answer is DNSSEC-secure (then its hosts' TLSA records
    /// count, and REQUIRETLS may trust the MX names).
    pub async fn mx_is_secure(&self, domain: &str) -> bool {
        match self.resolver.lookup(fqdn(domain), RecordType::MX).await {
            Ok(lookup) => {
                let mx: Vec<_> = lookup.answers().iter().filter(|r| r.record_type() == RecordType::MX).collect();
                !mx.is_empty() && mx.iter().all(|r| r.proof.is_secure())
            }
            Err(e) => {
                tracing::debug!(domain, error = %e, "DANE: MX not validated");
                false
            }
        }
    }

    /// The TLSA policy of `host` reached on `port` (`_port._tcp.host`).
    pub async fn host_policy(&self, host: &str, port: u16) -> HostPolicy {
        let name = format!("_{port}._tcp.{}", fqdn(host));
        match self.resolver.lookup(name.as_str(), RecordType::TLSA).await {
            Ok(lookup) => {
                let records: Vec<_> = lookup.answers().iter().filter(|r| r.record_type() == RecordType::TLSA).collect();
                if records.is_empty() || !records.iter().all(|r| r.proof.is_secure()) {
                    return HostPolicy::None;
                }
                let usable: Vec<Tlsa> = records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TLSA(t) => Some(Tlsa {
                            usage: t.cert_usage.into(),
                            selector: t.selector.into(),
                            matching: t.matching.into(),
                            data: t.cert_data.clone(),
                        }),
                        _ => None,
                    })
                    .filter(|t| matches!(t.usage, 2 | 3) && t.selector <= 1 && t.matching <= 2)
                    .collect();
                // RFC 7672 section 2.2: secure records none of which is usable still
                // mean "TLS required", with any certificate.
                if usable.is_empty() { HostPolicy::Required(Vec::new()) } else { HostPolicy::Required(usable) }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => HostPolicy::None,
            Err(e) => HostPolicy::Unknown(format!("TLSA lookup for {name} failed: {e}")),
        }
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

/// A connector that accepts exactly the certificates `records` allow for `host` (any
/// certificate when the secure records had none usable: encryption is still required).
pub fn connector(records: Vec<Tlsa>, host: &str) -> Result<TlsConnector, rustls::Error> {
    let verifier = DaneVerifier { records, host: host.to_string(), provider: provider() };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Whether `record` matches the certificate `der`.
pub fn matches(record: &Tlsa, der: &[u8]) -> bool {
    let selected: Vec<u8> = match record.selector {
        0 => der.to_vec(),
        _ => match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => cert.public_key().raw.to_vec(),
            Err(_) => return false,
        },
    };
    let hashed: Vec<u8> = match record.matching {
        0 => selected,
        1 => digest::digest(&digest::SHA256, &selected).as_ref().to_vec(),
        _ => digest::digest(&digest::SHA512, &selected).as_ref().to_vec(),
    };
    !record.data.is_empty() && hashed == record.data
}

#[derive(Debug)]
struct DaneVerifier {
    records: Vec<Tlsa>,
    /// The MX host name: DANE-TA checks the certificate against it.
    host: String,
    provider: Arc<CryptoProvider>,
}

impl DaneVerifier {
    /// DANE-TA: a certificate of the presented chain matching `record` is the trust
    /// anchor that must validate the server's certificate for the host, dates included.
    fn via_anchor(
        &self,
        record: &Tlsa,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        let Some(anchor) = intermediates.iter().find(|c| matches(record, c)) else { return false };
        let mut roots = RootCertStore::empty();
        if roots.add(anchor.clone().into_owned()).is_err() {
            return false;
        }
        let Ok(webpki) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone()).build()
        else {
            return false;
        };
        let Some(name) = super::tls::server_name(&self.host) else { return false };
        webpki.verify_server_cert(end_entity, intermediates, &name, &[], now).is_ok()
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.records.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        for record in &self.records {
            let ok = match record.usage {
                3 => matches(record, end_entity),
                _ => self.via_anchor(record, end_entity, intermediates, now),
            };
            if ok {
                return Ok(ServerCertVerified::assertion());
            }
        }
        Err(rustls::Error::General(format!("DANE: the certificate of {} matches none of its TLSA records", self.host)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
