//! DANE for SMTP (RFC 7672): TLSA records, validated by DNSSEC, say which certificate
//! an MX host must present, and that it must use TLS at all.
//!
//! The rules, as RFC 7672 (and Postfix) apply them:
//! - DANE applies to an MX host only when the MX answer and the host's TLSA answer are
//!   both DNSSEC-secure. Insecure answers (an unsigned zone) mean no DANE: the usual
//!   opportunistic TLS or MTA-STS then. A TLSA lookup that fails or does not validate
//!   (bogus, SERVFAIL) for a secure MX is a temporary failure for that host: an attacker
//!   who can break the lookup must not get plain text. An MX answer that does not
//!   validate (bogus) is a temporary failure for the whole domain: its hosts are not
//!   followed (`mx::lookup_mx_validated`) — unless validation cannot work here at all
//!   (the trust anchor's own keys do not validate: resolvers that strip DNSSEC), which
//!   counts as unsigned, so such resolvers never stop mail ([`Dane::lookup_mx`]).
//! - Only DANE-EE (3) and DANE-TA (2) are usable for SMTP; PKIX-TA/EE (0, 1) are ignored.
//!   DANE-EE matches the server's own certificate (or key) and ignores its names and
//!   dates; DANE-TA names a CA in the presented chain, which must then validate the
//!   server's certificate for the MX host name, dates included.
//! - With usable records, STARTTLS is required and a certificate matching none of them
//!   is a temporary failure, logged with the reason.
//!
//! DANE wins over MTA-STS for a host that has it (RFC 8461 section 2).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{RData, RecordType};
use ring::digest;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use super::mx::{Dnssec, RouteError, ValidatedMx, lookup_mx, lookup_mx_validated};
use crate::tls::provider;

/// One TLSA record (RFC 6698 section 2.1).
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
    /// No secure TLSA records: DANE does not apply.
    None,
    /// TLS is required and the certificate must match one of `usable`; none usable
    /// (RFC 7672 section 2.2): any certificate, but TLS all the same. `records` are all
    /// the secure records in presentation form (`3 1 1 <hex>`), for TLS reports.
    Required { usable: Vec<Tlsa>, records: Vec<String> },
    /// The TLSA lookup failed (`bogus`: it did not validate): not this host, not now.
    Unknown { why: String, bogus: bool },
}

/// How long a verdict on whether validation works at all is kept.
const CHAIN_CHECK_TTL: Duration = Duration::from_secs(300);

/// The validating lookups DANE needs.
pub struct Dane {
    resolver: TokioResolver,
    /// The zones whose keys are trust anchors: the root and those of
    /// `MAILROOM_DNSSEC_TRUST_ANCHORS`, lower-case with the trailing dot.
    anchor_zones: Vec<String>,
    /// Per anchor zone: does its DNSKEY set validate through our resolvers, and when
    /// that was found.
    chain_works: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Dane {
    /// `anchor_zones`: the owner names of the extra trust anchors (the root is added).
    pub fn new(resolver: TokioResolver, anchor_zones: Vec<String>) -> Dane {
        let mut zones: Vec<String> = anchor_zones.iter().map(|z| fqdn(&z.to_ascii_lowercase())).collect();
        zones.push(".".to_string());
        zones.sort();
        zones.dedup();
        Dane { resolver, anchor_zones: zones, chain_works: Mutex::new(HashMap::new()) }
    }

    /// `domain`'s MX hosts and whether DNSSEC validated them, in one lookup: when
    /// secure, their TLSA records count and REQUIRETLS may trust their names; when
    /// bogus, they are not followed at all.
    ///
    /// Bogus also comes out when validation cannot work here at all: resolvers that
    /// strip DNSSEC records, or a private DNS that does not lead to the root. Then the
    /// trust anchor's own keys do not validate either ([`Dane::chain_works`]); the answer
    /// is taken as insecure (no DANE) through `plain`, with a warning, so such a setup
    /// keeps delivering as it did without DNSSEC.
    pub async fn lookup_mx(&self, plain: &TokioResolver, domain: &str) -> Result<ValidatedMx, RouteError> {
        match lookup_mx_validated(&self.resolver, domain).await? {
            ValidatedMx::Bogus(why) if !self.chain_works(domain).await => {
                tracing::debug!(domain, why, "DANE: validation cannot work here; MX taken as unsigned");
                Ok(ValidatedMx::Hosts(lookup_mx(plain, domain).await?, Dnssec::Insecure))
            }
            answer => Ok(answer),
        }
    }

    /// Whether the trust anchor closest above `name` (the root, or a zone of
    /// `MAILROOM_DNSSEC_TRUST_ANCHORS`) has a DNSKEY set that validates through our
    /// resolvers: if it does, a bogus answer below it is a real validation failure.
    async fn chain_works(&self, name: &str) -> bool {
        let name = fqdn(&name.to_ascii_lowercase());
        let zone = self
            .anchor_zones
            .iter()
            .filter(|z| z.as_str() == "." || name == **z || name.ends_with(&format!(".{z}")))
            .max_by_key(|z| z.len())
            .cloned()
            .unwrap_or_else(|| ".".to_string());
        {
            let known = self.chain_works.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((works, _)) = known.get(&zone).filter(|(_, at)| at.elapsed() < CHAIN_CHECK_TTL) {
                return *works;
            }
        }
        let works = match crate::dns::resolver::counted(
            "DNSKEY",
            self.resolver.lookup(zone.as_str(), RecordType::DNSKEY),
        )
        .await
        {
            Ok(lookup) => {
                let keys: Vec<_> = lookup.answers().iter().filter(|r| r.record_type() == RecordType::DNSKEY).collect();
                !keys.is_empty() && keys.iter().all(|r| r.proof.is_secure())
            }
            Err(_) => false,
        };
        if !works {
            // Once per check, not per message: such a setup stays as it is for long.
            tracing::warn!(
                anchor = %zone,
                "DANE: the trust anchor's keys do not validate through the configured resolvers (do they strip DNSSEC records?); bogus answers below it are taken as unsigned"
            );
        }
        let mut known = self.chain_works.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(zone, (works, Instant::now()));
        works
    }

    /// The TLSA policy of `host` reached on `port` (`_port._tcp.host`).
    pub async fn host_policy(&self, host: &str, port: u16) -> HostPolicy {
        let name = format!("_{port}._tcp.{}", fqdn(host));
        match crate::dns::resolver::counted("TLSA", self.resolver.lookup(name.as_str(), RecordType::TLSA)).await {
            Ok(lookup) => {
                let records: Vec<_> = lookup.answers().iter().filter(|r| r.record_type() == RecordType::TLSA).collect();
                if records.iter().any(|r| r.proof.is_bogus()) {
                    return HostPolicy::Unknown {
                        why: format!("the TLSA answer for {name} failed DNSSEC validation"),
                        bogus: true,
                    };
                }
                if records.is_empty() || !records.iter().all(|r| r.proof.is_secure()) {
                    return HostPolicy::None;
                }
                let all: Vec<Tlsa> = records
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
                    .collect();
                let records = all.iter().map(Tlsa::presentation).collect();
                // RFC 7672 section 2.2: secure records none of which is usable still
                // mean "TLS required", with any certificate.
                let usable = all.into_iter().filter(Tlsa::usable).collect();
                HostPolicy::Required { usable, records }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => HostPolicy::None,
            Err(NetError::Dns(DnsError::DnssecBogus)) => {
                HostPolicy::Unknown { why: format!("the TLSA answer for {name} failed DNSSEC validation"), bogus: true }
            }
            Err(e) => HostPolicy::Unknown { why: format!("TLSA lookup for {name} failed: {e}"), bogus: false },
        }
    }
}

impl Tlsa {
    /// Usable for SMTP (RFC 7672 section 3.1): DANE-TA or DANE-EE, with a selector and
    /// matching type this client knows.
    pub fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3) && self.selector <= 1 && self.matching <= 2
    }

    /// The record's zone-file form, `usage selector matching hex`, as TLS reports
    /// write a `tlsa` policy (RFC 8460 section 4.4).
    pub fn presentation(&self) -> String {
        let hex: String = self.data.iter().map(|b| format!("{b:02x}")).collect();
        format!("{} {} {} {hex}", self.usage, self.selector, self.matching)
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
