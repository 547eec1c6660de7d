//! Reverse DNS of the addresses mail leaves from: the PTR of each must name this server
//! and resolve back to the address (forward-confirmed reverse DNS, "FCrDNS"). Large
//! receivers refuse IPv6 mail without it (Gmail's `550-5.7.25`) and score IPv4 mail
//! down.
//!
//! The rule: some PTR name of the address has an A (IPv4) or AAAA (IPv6) record holding
//! that very address, and that name is `MAILROOM_HOSTNAME` itself or lies inside the
//! hostname's domain (the hostname minus its first label, when that still has two
//! labels: `mail.example.com` accepts `example.com` and `*.example.com`). A PTR the
//! hosting provider left at its default (`static.1.2.3.4.provider.net`) confirms
//! forward but names someone else, and counts as wrong.
//!
//! Which addresses, per family: the pinned source address (`MAILROOM_OUTBOUND_IPV4/6`),
//! else the public one the operator configured (`MAILROOM_PUBLIC_IPV4/6`: behind NAT
//! mail leaves from it), else the one the kernel picks for a connection to the internet
//! when it is globally routable, else a public interface address. The kernel's choice
//! is read by `connect()`ing a UDP socket, which sends no packet.
//!
//! This module judges and explains; it never decides how mail is sent (the SMTP client's
//! `family` module does, from these results).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RecordType;

use super::check::{CheckResult, Status};
use super::interfaces::is_public;
use super::records::{DnsRecord, reverse_name};
use super::resolver::{Answer, lookup};
use crate::config::OutboundConfig;

/// PTR names followed at most: a PTR set longer than this is a misconfiguration anyway.
const MAX_PTR_NAMES: usize = 4;

/// Why an address is the one checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `MAILROOM_OUTBOUND_IPV4/6`.
    Pinned,
    /// The kernel's source address for a connection to the internet.
    Kernel,
    /// `MAILROOM_PUBLIC_IPV4/6`, or a public interface address when the kernel's
    /// choice is private.
    Published,
}

/// One address mail is sent from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendingAddress {
    pub ip: IpAddr,
    pub origin: Origin,
}

/// `ipv4` / `ipv6`: the metric label and the word in messages.
pub fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "ipv4" } else { "ipv6" }
}

/// The source address the kernel would use towards the internet over IPv4 or IPv6, or
/// `None` without a route. A UDP `connect()` only picks the route and the source: no
/// packet leaves the machine.
pub fn kernel_source(ipv6: bool) -> Option<IpAddr> {
    let (bind, target): (SocketAddr, SocketAddr) = if ipv6 {
        ((Ipv6Addr::UNSPECIFIED, 0).into(), (Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888), 53).into())
    } else {
        ((Ipv4Addr::UNSPECIFIED, 0).into(), (Ipv4Addr::new(8, 8, 8, 8), 53).into())
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The IPv6 address whose reverse DNS decides `MAILROOM_OUTBOUND_IPV6_MODE=auto`: the
/// pinned one, else the kernel's choice when it is globally routable (a unique-local or
/// link-local source is translated or goes nowhere: its PTR says nothing).
pub fn ipv6_source(outbound: &OutboundConfig) -> Option<SendingAddress> {
    if let Some(ip) = outbound.ipv6 {
        return Some(SendingAddress { ip: IpAddr::V6(ip), origin: Origin::Pinned });
    }
    kernel_source(true).filter(is_public).map(|ip| SendingAddress { ip, origin: Origin::Kernel })
}

/// The addresses to check, at most one per family (see the module doc for the order):
/// `configured` are `MAILROOM_PUBLIC_IPV4/6`, `detected` the public interface addresses.
pub fn sending_addresses(outbound: &OutboundConfig, configured: &[IpAddr], detected: &[IpAddr]) -> Vec<SendingAddress> {
    let mut out = Vec::new();
    for ipv6 in [false, true] {
        let pinned = if ipv6 { outbound.ipv6.map(IpAddr::V6) } else { outbound.ipv4.map(IpAddr::V4) };
        let published = |list: &[IpAddr]| {
            list.iter().find(|ip| ip.is_ipv6() == ipv6).map(|ip| SendingAddress { ip: *ip, origin: Origin::Published })
        };
        let chosen = pinned
            .map(|ip| SendingAddress { ip, origin: Origin::Pinned })
            .or_else(|| published(configured))
            .or_else(|| kernel_source(ipv6).filter(is_public).map(|ip| SendingAddress { ip, origin: Origin::Kernel }))
            .or_else(|| published(detected));
        out.extend(chosen);
    }
    out
}

/// The verdict on one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reverse {
    /// The PTR name resolves back and is the hostname or inside its domain.
    Confirmed(String),
    /// No PTR record at all.
    NoPtr,
    /// PTR names of which none resolves back to the address.
    NotConfirmed(Vec<String>),
    /// The name resolves back but names another domain (often the provider's default).
    OutsideDomain(String),
    /// A lookup failed: nothing can be concluded.
    Failed(String),
}

impl Reverse {
    pub fn is_ok(&self) -> bool {
        matches!(self, Reverse::Confirmed(_))
    }

    /// What the operator should do, or `None` when all is well.
    pub fn advice(&self, ip: &IpAddr, hostname: &str) -> Option<String> {
        let host = norm(hostname);
        let ask = |now: &str| format!("ask your hosting provider to set the PTR of {ip} to {host} (it is now: {now})");
        match self {
            Reverse::Confirmed(_) => None,
            Reverse::NoPtr => Some(ask("none")),
            Reverse::NotConfirmed(names) => match names.iter().find(|n| fits_hostname(n, hostname)) {
                Some(name) => {
                    let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
                    Some(format!(
                        "publish the record `{name}. {rtype} {ip}` at your DNS provider: the PTR of {ip} is {name}, which does not resolve back to it"
                    ))
                }
                None => Some(ask(&format!("{}, which does not resolve back to it", names.join(", ")))),
            },
            Reverse::OutsideDomain(name) => Some(ask(&format!("{name}, outside the domain of {host}"))),
            Reverse::Failed(e) => Some(format!("cannot check the reverse DNS of {ip}: {e}")),
        }
    }
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The name is the hostname, or inside the hostname's domain (see the module doc).
pub fn fits_hostname(name: &str, hostname: &str) -> bool {
    let (name, host) = (norm(name), norm(hostname));
    if name == host {
        return true;
    }
    match host.split_once('.') {
        Some((_, parent)) if parent.contains('.') => name == parent || name.ends_with(&format!(".{parent}")),
        _ => false,
    }
}

/// Judge from the PTR answer and the forward answer of each PTR name (A for an IPv4
/// address, AAAA for IPv6). Pure: the lookups are [`check`]'s.
pub fn judge(ip: &IpAddr, hostname: &str, ptr: &Answer, forward: &[(String, Answer)]) -> Reverse {
    let names = match ptr {
        Answer::Error(e) => return Reverse::Failed(format!("PTR lookup: {e}")),
        Answer::None => return Reverse::NoPtr,
        Answer::Found(names) => names,
    };
    let resolves_back = |name: &String| {
        forward.iter().any(|(n, answer)| {
            norm(n) == norm(name)
                && matches!(answer, Answer::Found(v) if v.iter().any(|a| a.parse::<IpAddr>().ok().as_ref() == Some(ip)))
        })
    };
    let confirmed: Vec<&String> = names.iter().filter(|n| resolves_back(n)).collect();
    if let Some(name) = confirmed.iter().find(|n| fits_hostname(n, hostname)) {
        return Reverse::Confirmed(norm(name));
    }
    if let Some(name) = confirmed.first() {
        return Reverse::OutsideDomain(norm(name));
    }
    if let Some((name, Answer::Error(e))) = forward.iter().find(|(_, a)| matches!(a, Answer::Error(_))) {
        return Reverse::Failed(format!("lookup of {name}: {e}"));
    }
    Reverse::NotConfirmed(names.iter().map(|n| norm(n)).collect())
}

/// Look up the PTR of `ip` and the address of each name it gives, and judge.
pub async fn check(resolver: &TokioResolver, ip: &IpAddr, hostname: &str) -> Reverse {
    let ptr = lookup(resolver, &reverse_name(ip), RecordType::PTR).await;
    let rtype = if ip.is_ipv4() { RecordType::A } else { RecordType::AAAA };
    let mut forward = Vec::new();
    if let Answer::Found(names) = &ptr {
        for name in names.iter().take(MAX_PTR_NAMES) {
            forward.push((name.clone(), lookup(resolver, name, rtype).await));
        }
    }
    judge(ip, hostname, &ptr, &forward)
}

/// One `mailroom dns --check` line: the PTR record the hosting provider must publish,
/// required (a missing one is why mail is refused), with the advice as its comment.
pub fn check_result(address: &SendingAddress, hostname: &str, reverse: &Reverse) -> CheckResult {
    let host = norm(hostname);
    let origin = match address.origin {
        Origin::Pinned => "pinned",
        Origin::Kernel => "chosen by the kernel",
        Origin::Published => "public",
    };
    let comment = reverse.advice(&address.ip, hostname).unwrap_or_else(|| {
        format!("reverse DNS of the {} source address ({origin}), forward-confirmed", family(&address.ip))
    });
    let (status, found) = match reverse {
        Reverse::Confirmed(name) => (Status::Ok, vec![format!("{name}.")]),
        Reverse::NoPtr => (Status::Missing, vec![]),
        Reverse::NotConfirmed(names) => {
            (Status::Wrong, names.iter().map(|n| format!("{n}. (does not resolve back)")).collect())
        }
        Reverse::OutsideDomain(name) => (Status::Wrong, vec![format!("{name}. (outside the domain)")]),
        Reverse::Failed(e) => (Status::Error, vec![e.clone()]),
    };
    let record = DnsRecord {
        domain: host.clone(),
        kind: format!("fcrdns:{}", family(&address.ip)),
        name: format!("{}.", reverse_name(&address.ip)),
        rtype: "PTR".into(),
        value: format!("{host}."),
        required: true,
        comment,
    };
    CheckResult { record, status, found }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "mail.example.com";

    fn found(values: &[&str]) -> Answer {
        Answer::Found(values.iter().map(|v| v.to_string()).collect())
    }

    fn v6() -> IpAddr {
        "2001:db8::25".parse().unwrap()
    }

    #[test]
    fn no_ptr_asks_the_provider() {
        let r = judge(&v6(), HOST, &Answer::None, &[]);
        assert_eq!(r, Reverse::NoPtr);
        assert_eq!(
            r.advice(&v6(), HOST).unwrap(),
            "ask your hosting provider to set the PTR of 2001:db8::25 to mail.example.com (it is now: none)"
        );
    }

    #[test]
    fn a_ptr_that_does_not_resolve_back_is_not_confirmed() {
        let forward = [("mail.example.com.".to_string(), found(&["2001:db8::26"]))];
        let r = judge(&v6(), HOST, &found(&["mail.example.com."]), &forward);
        assert_eq!(r, Reverse::NotConfirmed(vec!["mail.example.com".into()]));
        assert!(r.advice(&v6(), HOST).unwrap().contains("`mail.example.com. AAAA 2001:db8::25`"));
        let r = judge(&v6(), HOST, &found(&["x.example.com."]), &[("x.example.com.".into(), Answer::None)]);
        assert!(!r.is_ok(), "{r:?}");
    }

    #[test]
    fn a_confirmed_name_outside_the_domain_is_wrong() {
        let name = "static.25.provider.net.";
        let forward = [(name.to_string(), found(&["2001:db8::25"]))];
        let r = judge(&v6(), HOST, &found(&[name]), &forward);
        assert_eq!(r, Reverse::OutsideDomain("static.25.provider.net".into()));
        assert_eq!(
            r.advice(&v6(), HOST).unwrap(),
            "ask your hosting provider to set the PTR of 2001:db8::25 to mail.example.com (it is now: static.25.provider.net, outside the domain of mail.example.com)"
        );
    }

    #[test]
    fn a_confirmed_name_in_the_domain_is_ok() {
        for name in ["mail.example.com.", "MX2.Example.com.", "example.com."] {
            let forward = [(name.to_string(), found(&["2001:db8::25", "192.0.2.1"]))];
            let r = judge(&v6(), HOST, &found(&["other.test.", name]), &forward);
            assert!(r.is_ok(), "{name}: {r:?}");
            assert_eq!(r.advice(&v6(), HOST), None);
        }
    }

    #[test]
    fn a_failed_lookup_concludes_nothing() {
        assert!(matches!(judge(&v6(), HOST, &Answer::Error("timeout".into()), &[]), Reverse::Failed(_)));
        let forward = [("mail.example.com.".to_string(), Answer::Error("SERVFAIL".into()))];
        assert!(matches!(judge(&v6(), HOST, &found(&["mail.example.com."]), &forward), Reverse::Failed(_)));
    }

    #[test]
    fn the_domain_rule() {
        assert!(fits_hostname("mail.example.com", "mail.example.com."));
        assert!(fits_hostname("out1.example.com", "mail.example.com"));
        assert!(!fits_hostname("example.com.evil.net", "mail.example.com"));
        assert!(!fits_hostname("notexample.com", "mail.example.com"));
        assert!(!fits_hostname("other.com", "example.com"), "a two-label hostname accepts only itself");
    }

    /// The same verdicts through real DNS (dnsmasq on loopback; only DNS traffic, to
    /// it). Documentation addresses: the resolver answers loopback reverse names itself
    /// (`localhost`, RFC 6761 section 6.3) without asking any server.
    #[tokio::test]
    async fn verdicts_through_a_real_resolver() {
        use crate::dns::testdns::TestDns;
        let ptr = |ip: &str, name: &str| format!("--ptr-record={},{name}", reverse_name(&ip.parse().unwrap()));
        let extra = [
            // All good, both families.
            ptr("2001:db8::25", HOST),
            ptr("192.0.2.25", HOST),
            format!("--address=/{HOST}/2001:db8::25"),
            format!("--address=/{HOST}/192.0.2.25"),
            // The PTR names us, but our name does not resolve back to the address.
            ptr("2001:db8::26", HOST),
            // Confirmed, but the provider's default name.
            ptr("2001:db8::27", "static27.provider.test"),
            "--address=/static27.provider.test/2001:db8::27".to_string(),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let Some(dns) = TestDns::start_with(&["test", "arpa", "com"], &[], &[], &extra) else { return };
        let resolver = crate::dns::resolver::build(&[dns.addr]).unwrap();
        let at = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(check(&resolver, &at("2001:db8::25"), HOST).await, Reverse::Confirmed(HOST.into()));
        assert_eq!(check(&resolver, &at("192.0.2.25"), HOST).await, Reverse::Confirmed(HOST.into()));
        assert_eq!(check(&resolver, &at("2001:db8::26"), HOST).await, Reverse::NotConfirmed(vec![HOST.into()]));
        assert_eq!(
            check(&resolver, &at("2001:db8::27"), HOST).await,
            Reverse::OutsideDomain("static27.provider.test".into())
        );
        assert_eq!(check(&resolver, &at("2001:db8::28"), HOST).await, Reverse::NoPtr);
    }

    #[test]
    fn pinned_addresses_come_first() {
        let outbound = OutboundConfig {
            ipv6_mode: crate::config::OutboundIpv6::Auto,
            ipv4: Some(Ipv4Addr::LOCALHOST),
            ipv6: Some(Ipv6Addr::LOCALHOST),
        };
        let public = ["203.0.113.7".parse().unwrap()];
        let got = sending_addresses(&outbound, &public, &public);
        assert_eq!(
            got,
            vec![
                SendingAddress { ip: "127.0.0.1".parse().unwrap(), origin: Origin::Pinned },
                SendingAddress { ip: "::1".parse().unwrap(), origin: Origin::Pinned },
            ]
        );
    }
}
