//! The DNS resolver every lookup goes through (hickory, no NSS): the servers in
//! `MAILROOM_DNS_SERVERS`, or the system's `/etc/resolv.conf`.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, ResolverBuilder, TokioResolver};

/// The outcome of one lookup, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Record values in zone text form (TXT: the joined strings, unquoted).
    Found(Vec<String>),
    /// NXDOMAIN or no records of that type.
    None,
    /// The resolver failed (timeout, SERVFAIL): nothing can be concluded.
    Error(String),
}

/// Build the resolver: `servers` when given, else the system configuration. Every
/// resolver in mailroom (inbound checks, the SMTP client, ACME, `dns --check`) comes
/// from here.
pub fn build(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    builder(servers)?.build().map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

/// A resolver that validates DNSSEC (RFC 4035) from the root's keys, plus the DNSKEY
/// records in `anchors` (`MAILROOM_DNSSEC_TRUST_ANCHORS`: private or test zones); each
/// record it returns carries its proof (secure, insecure, bogus). Only DANE uses it: a
/// validation failure there must stop one delivery, never every lookup.
pub fn build_validating(servers: &[SocketAddr], anchors: Option<&std::path::Path>) -> Result<TokioResolver, String> {
    let mut trust = match anchors {
        None => TrustAnchors::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            text.parse::<TrustAnchors>().map_err(|e| format!("{}: not DNSKEY records: {e}", path.display()))?
        }
    };
    let root = TrustAnchors::default();
    for i in 0..root.len() {
        if let Some(key) = root.get(i) {
            trust.insert(key);
        }
    }
    let mut builder = builder(servers)?.with_trust_anchor(std::sync::Arc::new(trust));
    builder.options_mut().validate = true;
    builder.build().map_err(|e| format!("cannot build the validating DNS resolver: {e}"))
}

/// The owner names of the DNSKEY records in the trust-anchor file `path`: the zones whose
/// chain of trust starts there (DANE checks that it works before calling an answer bogus).
pub fn anchor_zones(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut zones: Vec<String> = text
        .lines()
        .map(|l| l.split(';').next().unwrap_or(""))
        .filter(|l| l.split_whitespace().any(|w| w.eq_ignore_ascii_case("DNSKEY")))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .collect();
    zones.sort();
    zones.dedup();
    Ok(zones)
}

fn builder(servers: &[SocketAddr]) -> Result<ResolverBuilder<TokioRuntimeProvider>, String> {
    let mut builder = if servers.is_empty() {
        Resolver::builder_tokio().map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = Duration::from_secs(5);
    options.attempts = 2;
    // Names we look up are absolute: never append a search domain.
    options.ndots = 0;
    // hickory's default TLS config (for DNS over TLS) loads the system's CA store, which
    // a FROM scratch image does not have: building the resolver would fail there. Give
    // it the compiled-in webpki roots instead.
    Ok(builder.with_tls_config(webpki_client_config()?))
}

fn webpki_client_config() -> Result<rustls::ClientConfig, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    Ok(rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration for DNS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The `type` label of the DNS metrics: the record types mailroom asks for, anything
/// else folded into `other`. Address lookups (A and AAAA together) are `ADDR`.
pub fn type_label(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::MX => "MX",
        RecordType::TXT => "TXT",
        RecordType::TLSA => "TLSA",
        RecordType::PTR => "PTR",
        RecordType::SRV => "SRV",
        RecordType::CNAME => "CNAME",
        RecordType::DNSKEY => "DNSKEY",
        _ => "other",
    }
}

/// Run one lookup, counting it in `mailroom_dns_lookups_total{type, result}` and timing
/// it in `mailroom_dns_lookup_duration_seconds{type}`. Every lookup of the delivery path
/// (MX, addresses, MTA-STS, DANE) and of the DNS check goes through here; the
/// mail-auth crate's own SPF/DKIM/DMARC lookups do not.
pub async fn counted<T>(kind: &'static str, lookup: impl Future<Output = Result<T, NetError>>) -> Result<T, NetError> {
    let started = std::time::Instant::now();
    let answer = lookup.await;
    let result = match &answer {
        Ok(_) => "found",
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => "none",
        Err(_) => "error",
    };
    let m = crate::metrics::metrics();
    m.dns_lookups_total.with_label_values(&[kind, result]).inc();
    m.dns_lookup_duration_seconds.with_label_values(&[kind]).observe(started.elapsed().as_secs_f64());
    answer
}

/// Look `name` up for `rtype` and render the answers.
pub async fn lookup(resolver: &TokioResolver, name: &str, rtype: RecordType) -> Answer {
    let fqdn = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    match counted(type_label(rtype), resolver.lookup(fqdn.as_str(), rtype)).await {
        Ok(lookup) => {
            let values: Vec<String> =
                lookup.answers().iter().filter(|r| r.record_type() == rtype).map(|r| render(&r.data)).collect();
            if values.is_empty() { Answer::None } else { Answer::Found(values) }
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Answer::None,
        Err(e) => Answer::Error(e.to_string()),
    }
}

fn render(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt.txt_data.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect(),
        RData::MX(mx) => format!("{} {}", mx.preference, mx.exchange.to_ascii().to_ascii_lowercase()),
        RData::SRV(srv) => {
            format!("{} {} {} {}", srv.priority, srv.weight, srv.port, srv.target.to_ascii().to_ascii_lowercase())
        }
        other => other.to_string().to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn anchor_zones_are_the_owner_names_of_the_dnskey_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors");
        let text = "; test anchors\nRemote.Test.\t300\tIN\tDNSKEY\t257 3 13 AAAA\nremote.test. 300 IN DNSKEY 256 3 13 BBBB ; zsk\nother.test. IN DNSKEY 257 3 13 CCCC\n\n";
        std::fs::write(&path, text).unwrap();
        assert_eq!(super::anchor_zones(&path).unwrap(), ["other.test.", "remote.test."]);
        assert!(super::anchor_zones(&dir.path().join("missing")).is_err());
    }
}
