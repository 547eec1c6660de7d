//! The typed event the client emits per TLS session attempt to an MX host, for SMTP TLS
//! reports (RFC 8460): which policy applied and, on failure, the result type. The
//! client knows nothing of reports beyond handing this to a [`TlsRecorder`]; `tlsrpt/`
//! counts it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// RFC 8460 section 4.3 result types the client can tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultType {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    /// Secure TLSA records none of which is usable (RFC 7672 section 2.2): TLS was
    /// still required, but DANE could not authenticate the host.
    TlsaInvalid,
    /// The MX or TLSA answer failed DNSSEC validation (bogus).
    DnssecInvalid,
    /// The MTA-STS policy could not be fetched (no answer, HTTP error, timeout).
    StsPolicyFetchError,
    /// The policy host's certificate failed validation (RFC 8461 section 3.3).
    StsWebpkiInvalid,
    /// The fetched policy did not parse (RFC 8461 section 3.2).
    StsPolicyInvalid,
}

impl ResultType {
    /// The name the report uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
        }
    }

    /// A failed handshake's type, from rustls' typed certificate error inside it.
    pub fn of_handshake(e: &std::io::Error) -> ResultType {
        use rustls::CertificateError as C;
        match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidCertificate(c)) => match c {
                C::Expired | C::ExpiredContext { .. } => ResultType::CertificateExpired,
                C::NotValidForName | C::NotValidForNameContext { .. } => ResultType::CertificateHostMismatch,
                C::UnknownIssuer => ResultType::CertificateNotTrusted,
                _ => ResultType::ValidationFailure,
            },
            _ => ResultType::ValidationFailure,
        }
    }
}

/// Did a handshake fail on the peer's certificate (rustls' typed error inside `e`)?
pub fn certificate_invalid(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_))
    )
}

/// The policy that applied to a session (RFC 8460 section 4.4 `policy-type`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsPolicy {
    /// An MTA-STS policy: its id, mode (`enforce`, `testing`), `mx` patterns and max_age.
    Sts {
        id: String,
        mode: String,
        mx: Vec<String>,
        max_age: u64,
    },
    /// DANE (RFC 7672) for one MX host: its secure TLSA records in presentation form.
    /// `mx_host` is `None` when validation failed before any host (a bogus MX answer).
    Tlsa {
        mx_host: Option<String>,
        records: Vec<String>,
    },
    /// The domain publishes MTA-STS (`_mta-sts` TXT with this id) but no policy could
    /// be had: the fetch failed and none was cached.
    StsUnavailable {
        id: String,
    },
    NoPolicyFound,
}

/// Why a session failed, as far as the client knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TlsFailure {
    pub result_type: ResultType,
    /// Our source address, when pinned.
    pub sending_mta_ip: Option<IpAddr>,
    /// `None` when no MX host was reached for (a bogus MX answer, a policy fetch).
    pub receiving_mx_hostname: Option<String>,
    pub receiving_ip: Option<IpAddr>,
}

/// One session attempt's result for the recipient (policy) `domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOutcome {
    pub domain: String,
    pub policy: TlsPolicy,
    /// `None`: the TLS session was established.
    pub failure: Option<TlsFailure>,
}

/// Where the client sends its [`TlsOutcome`]s (`tlsrpt::Recorder`). Must not block.
pub trait TlsRecorder: Send + Sync + std::fmt::Debug {
    fn tls_outcome(&self, outcome: TlsOutcome);
}

/// Is `message` itself a TLS report? Its deliveries are not reported on (RFC 8460
/// section 3: no report loops). Looks at the header section only.
pub fn is_tls_report(message: &[u8]) -> bool {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(message.len());
    message[..end]
        .split(|&b| b == b'\n')
        .any(|line| line.len() >= 18 && line[..18].eq_ignore_ascii_case(b"TLS-Report-Domain:"))
}
