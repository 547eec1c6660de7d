//! The DNS records an operator must publish, computed from the configuration and the
//! DKIM keys: MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV (RFC 6186/8314),
//! autoconfig, CAA and the PTR the hosting provider sets. Printed as a BIND zone
//! fragment with comments, or as JSON for web panels.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::config::{AcmeMode, DnsConfig, ListenAddr, Protocol};
use crate::mailauth::KeyRing;

/// One record to publish.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DnsRecord {
    /// The mail domain it belongs to (or the hostname for host records).
    pub domain: String,
    /// What it is for: `mx`, `a`, `aaaa`, `spf`, `dkim:<selector>`, `dmarc`, …
    pub kind: String,
    /// Fully qualified owner name with a trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    /// The value, unsplit (TXT values are split into 255-octet strings only in zone output).
    pub value: String,
    /// Missing or wrong required records make `dns --check` exit 1.
    pub required: bool,
    pub comment: String,
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

fn rec(domain: &str, kind: &str, name: &str, rtype: &str, value: String, required: bool, comment: &str) -> DnsRecord {
    DnsRecord {
        domain: domain.to_string(),
        kind: kind.to_string(),
        name: fqdn(name),
        rtype: rtype.to_string(),
        value,
        required,
        comment: comment.to_string(),
    }
}

/// The hostname's public addresses: configured, else detected on the interfaces.
pub fn public_addresses(config: &DnsConfig) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    out.extend(config.public_ipv4.map(IpAddr::V4));
    out.extend(config.public_ipv6.map(IpAddr::V6));
    if config.public_ipv4.is_none() {
        out.extend(super::interfaces::public_addresses().into_iter().filter(IpAddr::is_ipv4).take(1));
    }
    if config.public_ipv6.is_none() {
        out.extend(super::interfaces::public_addresses().into_iter().filter(IpAddr::is_ipv6).take(1));
    }
    out
}

/// Every record for every domain.
pub fn records(config: &DnsConfig, keys: &KeyRing, mta_sts_id: &str) -> Vec<DnsRecord> {
    let host = &config.hostname;
    let mut out = Vec::new();
    let addresses = public_addresses(config);
    for ip in &addresses {
        let (kind, rtype) = if ip.is_ipv4() { ("a", "A") } else { ("aaaa", "AAAA") };
        out.push(rec(host, kind, host, rtype, ip.to_string(), true, "address of the mail server"));
        out.push(rec(
            host,
            "ptr",
            &reverse_name(ip),
            "PTR",
            fqdn(host),
            false,
            "set by your hosting provider (reverse DNS); many receivers reject mail without it",
        ));
    }
    if addresses.is_empty() {
        out.push(rec(
            host,
            "a",
            host,
            "A",
            "<public IPv4 of this server>".into(),
            true,
            "no public address known: set MAILROOM_PUBLIC_IPV4",
        ));
    }
    out.push(rec(host, "spf-helo", host, "TXT", "v=spf1 a -all".into(), false, "SPF for the HELO name"));
    let all = if config.relayed { "~all" } else { "-all" };
    for domain in &config.domains {
        out.push(rec(
            domain,
            "mx",
            domain,
            "MX",
            format!("10 {}", fqdn(host)),
            true,
            "mail for this domain goes to mailroom",
        ));
        let spf_comment = if config.relayed {
            "who may send for this domain (add your smarthost's include: mechanism)"
        } else {
            "who may send for this domain"
        };
        out.push(rec(domain, "spf", domain, "TXT", format!("v=spf1 mx {all}"), true, spf_comment));
        if let Some(dk) = keys.signing_keys(domain) {
            for key in &dk.active.keys {
                out.push(rec(
                    domain,
                    &format!("dkim:{}", key.selector),
                    &key.dns_name(),
                    "TXT",
                    key.dns_value(),
                    true,
                    "DKIM public key (signing now)",
                ));
            }
            if let Some(pending) = &dk.pending {
                for key in &pending.keys {
                    let comment = "next DKIM key: publish it; signing switches once `mailroom dns --check` sees it";
                    out.push(rec(
                        domain,
                        &format!("dkim:{}", key.selector),
                        &key.dns_name(),
                        "TXT",
                        key.dns_value(),
                        false,
                        comment,
                    ));
                }
            }
        }
        out.push(rec(
            domain,
            "dmarc",
            &format!("_dmarc.{domain}"),
            "TXT",
            format!("v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@{domain}"),
            true,
            "DMARC policy; aggregate reports to postmaster",
        ));
        out.push(rec(
            domain,
            "mta-sts",
            &format!("_mta-sts.{domain}"),
            "TXT",
            format!("v=STSv1; id={mta_sts_id}"),
            false,
            "MTA-STS: senders must use TLS to reach us",
        ));
        out.push(rec(
            domain,
            "mta-sts-host",
            &format!("mta-sts.{domain}"),
            "CNAME",
            fqdn(host),
            false,
            "serves the MTA-STS policy over HTTPS (needs a certificate for this name)",
        ));
        out.push(rec(
            domain,
            "tlsrpt",
            &format!("_smtp._tls.{domain}"),
            "TXT",
            format!("v=TLSRPTv1; rua=mailto:postmaster@{domain}"),
            false,
            "TLS failure reports to postmaster",
        ));
        for (service, protocol) in [
            ("_submissions._tcp", Protocol::Submissions),
            ("_submission._tcp", Protocol::Submission),
            ("_imaps._tcp", Protocol::Imaps),
            ("_imap._tcp", Protocol::Imap),
            ("_pop3s._tcp", Protocol::Pop3s),
            ("_pop3._tcp", Protocol::Pop3),
            // RFC 5804 1.8: ManageSieve clients find the server this way.
            ("_sieve._tcp", Protocol::ManageSieve),
        ] {
            let value = match config.listen.of(protocol).first() {
                Some(addr) => format!("0 1 {} {}", public_port(addr, protocol), fqdn(host)),
                // RFC 6186 section 4: target "." means "not offered".
                None => "0 0 0 .".into(),
            };
            out.push(rec(
                domain,
                &format!("srv:{service}"),
                &format!("{service}.{domain}"),
                "SRV",
                value,
                false,
                "mail client service discovery (RFC 6186/8314)",
            ));
        }
        out.push(rec(
            domain,
            "autoconfig",
            &format!("autoconfig.{domain}"),
            "CNAME",
            fqdn(host),
            false,
            "Thunderbird autoconfig",
        ));
        out.push(rec(
            domain,
            "autodiscover",
            &format!("autodiscover.{domain}"),
            "CNAME",
            fqdn(host),
            false,
            "Outlook autodiscover",
        ));
        if let Some(ca) = caa_issuer(&config.acme) {
            out.push(rec(
                domain,
                "caa",
                domain,
                "CAA",
                format!("0 issue \"{ca}\""),
                false,
                "only this CA may issue certificates for the domain",
            ));
        }
    }
    out
}

/// The port clients reach: the listen port (the standard one unless remapped).
fn public_port(addr: &ListenAddr, _protocol: Protocol) -> u16 {
    addr.port()
}

/// The CAA issuer domain of the configured ACME CA, when known.
fn caa_issuer(acme: &AcmeMode) -> Option<&'static str> {
    match acme {
        AcmeMode::Directory(url) if url.contains("letsencrypt.org") => Some("letsencrypt.org"),
        _ => None,
    }
}

/// `7.113.0.203.in-addr.arpa` / nibble form for IPv6.
pub fn reverse_name(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// A TXT value as zone-file character strings of at most 255 octets each.
pub fn split_txt(value: &str) -> String {
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c).replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    if parts.len() == 1 { parts[0].clone() } else { format!("( {} )", parts.join(" ")) }
}

/// The records as a BIND zone-file fragment with comments.
pub fn zone_fragment(records: &[DnsRecord]) -> String {
    let mut out = String::from("; DNS records for mailroom — publish these at your DNS provider\n");
    let mut last_domain = String::new();
    for r in records {
        if r.domain != last_domain {
            let _ = writeln!(out, "\n; --- {} ---", r.domain);
            last_domain = r.domain.clone();
        }
        let value = if r.rtype == "TXT" { split_txt(&r.value) } else { r.value.clone() };
        let required = if r.required { "required" } else { "recommended" };
        let _ = writeln!(out, "; {} ({required})", r.comment);
        let _ = writeln!(out, "{}\t3600\tIN\t{}\t{}", r.name, r.rtype, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_split_at_255_octets() {
        assert_eq!(split_txt("v=spf1 mx -all"), "\"v=spf1 mx -all\"");
        let long = "a".repeat(400);
        let split = split_txt(&long);
        assert!(split.starts_with("( \"") && split.ends_with("\" )"));
        assert_eq!(split.matches('"').count(), 4);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name(&"203.0.113.7".parse().unwrap()), "7.113.0.203.in-addr.arpa");
        let v6 = reverse_name(&"2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.") && v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
    }
}
