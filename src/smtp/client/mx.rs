//! Where mail for a domain goes: MX lookup (RFC 5321 §5.1) with the implicit MX
//! fallback, null MX (RFC 7505), preference order, and the addresses of each host.
//!
//! The DNS answers map to outcomes the queue understands: no such domain and null MX are
//! permanent (retrying will not make the domain exist); timeouts and server failures are
//! temporary. The ordering of MX records is pure and tested ([`order_mx`]).

use std::net::IpAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use rand::seq::SliceRandom;

use crate::dns::resolver::counted;
use crate::smtp::status::Status;

/// One MX host to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// Lower-case, without the trailing dot.
    pub name: String,
}

/// Why a domain has no usable destination.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Bounce now.
    #[error("{0}")]
    Permanent(Status),
    /// Retry later.
    #[error("{0}")]
    Temporary(Status),
}

impl RouteError {
    /// The diagnostic, whichever way it goes.
    pub fn into_status(self) -> Status {
        match self {
            RouteError::Permanent(s) | RouteError::Temporary(s) => s,
        }
    }
}

/// A resolver per `MAILROOM_DNS_SERVERS` (each `ip:port`), or the system's.
pub fn build_resolver(servers: &[std::net::SocketAddr]) -> Result<TokioResolver, String> {
    crate::dns::resolver::build(servers)
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

/// The MX hosts of `domain`, in the order to try them.
pub async fn lookup_mx(resolver: &TokioResolver, domain: &str) -> Result<Vec<MxHost>, RouteError> {
    let answer = counted("MX", resolver.lookup(fqdn(domain), RecordType::MX)).await;
    match answer {
        Ok(lookup) => hosts_of(mx_records(lookup.answers()).map(|(host, _)| host).collect(), domain),
        Err(e) => no_mx(&e, domain),
    }
}

/// What DNSSEC said of an MX answer that may be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dnssec {
    /// Every MX record validated: DANE applies to the hosts, and REQUIRETLS may trust
    /// their names.
    Secure,
    /// Unsigned, or no MX records at all (the implicit MX is never taken as secure).
    Insecure,
}

/// The answer of a validating MX lookup ([`lookup_mx_validated`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidatedMx {
    /// The hosts in the order to try them, as [`lookup_mx`] gives them.
    Hosts(Vec<MxHost>, Dnssec),
    /// The answer failed DNSSEC validation (bogus, RFC 4035 section 5.5): someone may
    /// be forging it, so its hosts are not followed and the delivery waits (a
    /// temporary 4.7.5 with this reason).
    Bogus(String),
}

/// The MX hosts of `domain` and whether DNSSEC validated them, in one lookup through
/// the validating resolver (`dns::resolver::build_validating`). The hosts follow
/// [`lookup_mx`]'s rules (preference order, null MX, implicit MX); a bogus answer,
/// positive or negative, is [`ValidatedMx::Bogus`] before any of them, so a forged
/// NXDOMAIN or null MX cannot bounce mail either.
pub async fn lookup_mx_validated(resolver: &TokioResolver, domain: &str) -> Result<ValidatedMx, RouteError> {
    match counted("MX", resolver.lookup(fqdn(domain), RecordType::MX)).await {
        Ok(lookup) => {
            let records: Vec<(MxHost, Proof)> = mx_records(lookup.answers()).collect();
            if records.iter().any(|(_, proof)| proof.is_bogus()) {
                return Ok(ValidatedMx::Bogus(format!("the MX answer for {domain} failed DNSSEC validation")));
            }
            let dnssec = match !records.is_empty() && records.iter().all(|(_, proof)| proof.is_secure()) {
                true => Dnssec::Secure,
                false => Dnssec::Insecure,
            };
            Ok(ValidatedMx::Hosts(hosts_of(records.into_iter().map(|(host, _)| host).collect(), domain)?, dnssec))
        }
        Err(NetError::Dns(DnsError::DnssecBogus)) => {
            Ok(ValidatedMx::Bogus(format!("the MX answer for {domain} failed DNSSEC validation")))
        }
        Err(e) => no_mx(&e, domain).map(|hosts| ValidatedMx::Hosts(hosts, Dnssec::Insecure)),
    }
}

/// The MX records of an answer, each with its DNSSEC proof.
fn mx_records(answers: &[Record]) -> impl Iterator<Item = (MxHost, Proof)> + '_ {
    answers.iter().filter_map(|r| match &r.data {
        RData::MX(mx) => Some((
            MxHost {
                preference: mx.preference,
                name: mx.exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
            },
            r.proof,
        )),
        _ => None,
    })
}

/// An answer's MX records in order; none at all: the domain itself is the implicit MX
/// (RFC 5321 §5.1).
fn hosts_of(records: Vec<MxHost>, domain: &str) -> Result<Vec<MxHost>, RouteError> {
    if records.is_empty() {
        return Ok(vec![MxHost { preference: 0, name: domain.to_string() }]);
    }
    order_mx(records, domain)
}

/// A failed MX lookup: no such domain is permanent, no MX records the implicit MX,
/// anything else (timeouts, SERVFAIL) temporary.
fn no_mx(e: &NetError, domain: &str) -> Result<Vec<MxHost>, RouteError> {
    if e.is_nx_domain() {
        Err(RouteError::Permanent(Status::local((5, 1, 2), format!("domain {domain} does not exist"))))
    } else if e.is_no_records_found() {
        Ok(vec![MxHost { preference: 0, name: domain.to_string() }])
    } else {
        Err(RouteError::Temporary(Status::local((4, 4, 3), format!("MX lookup for {domain} failed: {e}"))))
    }
}

/// Sort by preference, shuffling hosts of equal preference (RFC 5321 §5.1 load
/// spreading); a single `MX 0 .` is a null MX (RFC 7505 §3: the domain takes no mail).
pub fn order_mx(mut records: Vec<MxHost>, domain: &str) -> Result<Vec<MxHost>, RouteError> {
    if records.iter().any(|r| r.name.is_empty() || r.name == ".") {
        if records.len() == 1 {
            return Err(RouteError::Permanent(Status::local(
                (5, 1, 10),
                format!("domain {domain} does not accept mail (null MX, RFC 7505)"),
            )));
        }
        // A null MX mixed with real ones is a misconfiguration; use the real ones.
        records.retain(|r| !r.name.is_empty() && r.name != ".");
    }
    records.shuffle(&mut rand::rng());
    records.sort_by_key(|r| r.preference);
    records.dedup_by(|a, b| a.name == b.name);
    Ok(records)
}

/// The addresses of one host: IPv6 first then IPv4 (both are tried in that order).
pub async fn lookup_addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, RouteError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    match counted("ADDR", resolver.lookup_ip(fqdn(host))).await {
        Ok(ips) => {
            let mut out: Vec<IpAddr> = ips.iter().collect();
            out.sort_by_key(|ip| ip.is_ipv4());
            out.dedup();
            if out.is_empty() {
                Err(RouteError::Temporary(Status::local((4, 4, 3), format!("{host} has no address"))))
            } else {
                Ok(out)
            }
        }
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
            Err(RouteError::Temporary(Status::local((4, 4, 3), format!("host {host} has no address record"))))
        }
        Err(e) => {
            Err(RouteError::Temporary(Status::local((4, 4, 3), format!("address lookup for {host} failed: {e}"))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(p: u16, n: &str) -> MxHost {
        MxHost { preference: p, name: n.to_string() }
    }

    #[test]
    fn preference_order() {
        let ordered = order_mx(vec![mx(20, "b.test"), mx(10, "a.test"), mx(30, "c.test")], "x.test").unwrap();
        let names: Vec<_> = ordered.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["a.test", "b.test", "c.test"]);
    }

    #[test]
    fn null_mx_is_permanent() {
        let err = order_mx(vec![mx(0, "")], "nomail.test").unwrap_err();
        assert!(matches!(err, RouteError::Permanent(ref t) if t.one_line().starts_with("5.1.10")), "{err}");
        let ok = order_mx(vec![mx(0, ""), mx(10, "a.test")], "x.test").unwrap();
        assert_eq!(ok, vec![mx(10, "a.test")]);
    }

    #[test]
    fn equal_preference_is_shuffled_but_grouped() {
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..64 {
            let o = order_mx(vec![mx(10, "a"), mx(10, "b"), mx(5, "z")], "x").unwrap();
            assert_eq!(o[0].name, "z");
            seen_first.insert(o[1].name.clone());
        }
        assert_eq!(seen_first.len(), 2);
    }
}
