//! `mailroom dns --check` and the periodic in-server check: look each record up in
//! live DNS and say ok / missing / wrong (with what was expected and found).
//!
//! The comparison is per kind, not textual: an SPF record is fine when it authorises
//! our MX or address even if the operator wrote more mechanisms; a DMARC record is fine
//! with any policy; a DKIM record must carry exactly our public key.

use std::net::IpAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RecordType;
use serde::Serialize;

use super::records::DnsRecord;
use super::resolver::{Answer, lookup};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Missing,
    Wrong,
    /// The lookup failed (timeout, SERVFAIL): unknown.
    Error,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Wrong => "wrong",
            Status::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub record: DnsRecord,
    pub status: Status,
    pub found: Vec<String>,
}

/// Check every record (sequentially: a few dozen queries, and resolvers rate-limit).
pub async fn check_all(
    resolver: &TokioResolver,
    records: &[DnsRecord],
    hostname: &str,
    addresses: &[IpAddr],
) -> Vec<CheckResult> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        out.push(check_one(resolver, record, hostname, addresses).await);
    }
    out
}

pub async fn check_one(
    resolver: &TokioResolver,
    record: &DnsRecord,
    hostname: &str,
    addresses: &[IpAddr],
) -> CheckResult {
    let rtype = match record.rtype.as_str() {
        "MX" => RecordType::MX,
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "TXT" => RecordType::TXT,
        "SRV" => RecordType::SRV,
        "CNAME" => RecordType::CNAME,
        "CAA" => RecordType::CAA,
        "PTR" => RecordType::PTR,
        "TLSA" => RecordType::TLSA,
        _ => RecordType::TXT,
    };
    let mut answer = lookup(resolver, &record.name, rtype).await;
    // A name we ask to be a CNAME may instead hold the server's addresses directly.
    if rtype == RecordType::CNAME && answer == Answer::None {
        answer = lookup(resolver, &record.name, RecordType::A).await;
    }
    let (status, found) = match answer {
        Answer::Error(e) => (Status::Error, vec![e]),
        Answer::None => (Status::Missing, vec![]),
        Answer::Found(values) => (judge(record, &values, hostname, addresses), values),
    };
    CheckResult { record: record.clone(), status, found }
}

fn norm_name(s: &str) -> String {
    s.trim_end_matches('.').to_ascii_lowercase()
}

/// Tags of a `k=v; k=v` record, whitespace removed.
fn tags(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.chars().filter(|c| !c.is_whitespace()).collect()))
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Does what was found satisfy the record?
pub fn judge(record: &DnsRecord, found: &[String], hostname: &str, addresses: &[IpAddr]) -> Status {
    let host = norm_name(hostname);
    let ok = match record.kind.as_str() {
        "mx" => found.iter().any(|v| v.split_whitespace().nth(1).is_some_and(|x| norm_name(x) == host)),
        "a" | "aaaa" => found.iter().any(|v| v.parse::<IpAddr>().is_ok_and(|ip| addresses.contains(&ip))),
        "ptr" | "mta-sts-host" | "autoconfig" | "autodiscover" => {
            found.iter().any(|v| norm_name(v) == host || v.parse::<IpAddr>().is_ok_and(|ip| addresses.contains(&ip)))
        }
        "spf" | "spf-helo" => {
            let spf: Vec<&String> = found.iter().filter(|v| v.to_ascii_lowercase().starts_with("v=spf1")).collect();
            if spf.is_empty() {
                return Status::Missing;
            }
            spf.len() == 1 && spf_authorises(spf[0], &host, addresses)
        }
        "dmarc" => found.iter().any(|v| v.to_ascii_uppercase().starts_with("V=DMARC1")),
        "tlsrpt" => found.iter().any(|v| v.starts_with("v=TLSRPTv1")),
        "mta-sts" => {
            let want = tags(&record.value);
            found.iter().any(|v| tag(&tags(v), "id") == tag(&want, "id") && v.starts_with("v=STSv1"))
        }
        "caa" => found.iter().any(|v| v.contains(record.value.split('"').nth(1).unwrap_or("\u{0}"))),
        k if k.starts_with("dkim:") => {
            let want = tags(&record.value);
            found.iter().any(|v| {
                let got = tags(v);
                tag(&got, "p") == tag(&want, "p") && tag(&got, "k").unwrap_or("rsa") == tag(&want, "k").unwrap_or("rsa")
            })
        }
        k if k.starts_with("srv:") => found.iter().any(|v| {
            let (w, g): (Vec<&str>, Vec<&str>) =
                (record.value.split_whitespace().collect(), v.split_whitespace().collect());
            w.len() == 4 && g.len() == 4 && w[2] == g[2] && norm_name(w[3]) == norm_name(g[3])
        }),
        _ => found.iter().any(|v| v == &record.value),
    };
    if ok { Status::Ok } else { Status::Wrong }
}

/// An SPF record that lets our server send: `mx`, `a`, or our address, and no
/// redirect elsewhere. (A full SPF evaluation would need more lookups; this is the
/// common case and errs on "wrong", which only prompts a human to look.)
fn spf_authorises(spf: &str, _host: &str, addresses: &[IpAddr]) -> bool {
    spf.split_whitespace().skip(1).any(|m| {
        let m = m.trim_start_matches(['+', '?']).to_ascii_lowercase();
        m == "mx"
            || m == "a"
            || m.starts_with("mx:")
            || m.starts_with("a:")
            || addresses.iter().any(|ip| m == format!("ip4:{ip}") || m == format!("ip6:{ip}"))
            || m.starts_with("include:")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, value: &str) -> DnsRecord {
        DnsRecord {
            domain: "example.com".into(),
            kind: kind.into(),
            name: "example.com.".into(),
            rtype: "TXT".into(),
            value: value.into(),
            required: true,
            comment: String::new(),
        }
    }

    #[test]
    fn judging() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let host = "mx.example.com";
        let j = |kind: &str, value: &str, found: &[&str]| {
            judge(&record(kind, value), &found.iter().map(|s| s.to_string()).collect::<Vec<_>>(), host, &[ip])
        };
        assert_eq!(j("mx", "10 mx.example.com.", &["10 mx.example.com."]), Status::Ok);
        assert_eq!(j("mx", "10 mx.example.com.", &["10 other.example.net."]), Status::Wrong);
        assert_eq!(j("spf", "v=spf1 mx -all", &["v=spf1 mx -all"]), Status::Ok);
        assert_eq!(j("spf", "v=spf1 mx -all", &["v=spf1 ip4:203.0.113.7 ~all"]), Status::Ok);
        assert_eq!(j("spf", "v=spf1 mx -all", &["v=spf1 ip4:192.0.2.1 -all"]), Status::Wrong);
        assert_eq!(
            j("spf", "v=spf1 mx -all", &["v=spf1 mx -all", "v=spf1 a -all"]),
            Status::Wrong,
            "two SPF records are a permerror"
        );
        assert_eq!(j("spf", "v=spf1 mx -all", &["google-site-verification=x"]), Status::Missing);
        assert_eq!(j("dkim:s", "v=DKIM1; k=ed25519; p=AAAA", &["v=DKIM1; k=ed25519; p=AA AA"]), Status::Ok);
        assert_eq!(j("dkim:s", "v=DKIM1; k=ed25519; p=AAAA", &["v=DKIM1; k=ed25519; p=BBBB"]), Status::Wrong);
        assert_eq!(j("dmarc", "v=DMARC1; p=quarantine", &["v=DMARC1; p=none"]), Status::Ok);
        assert_eq!(j("mta-sts", "v=STSv1; id=abc", &["v=STSv1; id=old"]), Status::Wrong);
        assert_eq!(j("a", "203.0.113.7", &["203.0.113.7"]), Status::Ok);
    }
}
