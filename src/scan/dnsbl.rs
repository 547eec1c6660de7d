//! DNS blocklist lookups (RFC 5782) of the connecting address against each zone in
//! `MAILROOM_DNSBL`: `<reversed address>.<zone>` answering an A record in
//! 127.0.0.0/8 means listed, NXDOMAIN means not listed.
//!
//! Anything else is "unknown", never "listed": a lookup error, an answer outside
//! 127/8 (a wildcarding resolver) or Spamhaus's 127.255.255.x error codes (sent
//! when queried through a public resolver, RFC 5782 section 2.1 reserves 127.0.0.1
//! and lists must not answer for it). Blocking all mail because a list refused our
//! resolver would be the worst failure.

use std::net::{IpAddr, Ipv4Addr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RecordType;

use crate::dns::resolver::{Answer, lookup};

/// The answer of one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsblAnswer {
    /// Listed, with the return code (its meaning is the list's, e.g. 127.0.0.2 = SBL).
    Listed(Ipv4Addr),
    NotListed,
    /// No conclusion: resolver error or an answer that is not a listing code.
    Unknown(String),
}

/// The DNS name to query for `ip` in `zone`: reversed octets for IPv4, reversed
/// nibbles for IPv6 (RFC 5782 section 2.4).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}")
        }
        // Client addresses arrive canonical (`net::canonical_peer`), so an IPv4 client of
        // a dual-stack listener takes the IPv4 arm above.
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len() + 1);
            for byte in v6.octets().iter().rev() {
                name.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
                name.push('.');
                name.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
                name.push('.');
            }
            name.push_str(zone);
            name
        }
    }
}

/// Interpret the A records of a DNSBL answer (pure).
pub fn interpret(answer: &Answer) -> DnsblAnswer {
    match answer {
        Answer::None => DnsblAnswer::NotListed,
        Answer::Error(e) => DnsblAnswer::Unknown(e.clone()),
        Answer::Found(values) => {
            let codes: Vec<Ipv4Addr> = values.iter().filter_map(|v| v.trim().parse().ok()).collect();
            let listing = codes.iter().find(|c| {
                let [a, b, c2, _] = c.octets();
                a == 127 && !(b == 255 && c2 == 255)
            });
            match listing {
                Some(code) => DnsblAnswer::Listed(*code),
                None => DnsblAnswer::Unknown(format!("not a listing code: {}", values.join(" "))),
            }
        }
    }
}

/// Look `ip` up in every zone, concurrently. Returns `(zone, answer)` in zone order.
pub async fn check(resolver: &TokioResolver, ip: IpAddr, zones: &[String]) -> Vec<(String, DnsblAnswer)> {
    let lookups = zones.iter().map(|zone| async move {
        let answer = lookup(resolver, &query_name(ip, zone), RecordType::A).await;
        (zone.clone(), interpret(&answer))
    });
    let mut out = Vec::with_capacity(zones.len());
    // A handful of zones at most: join them without spawning.
    let results = futures_join_all(lookups).await;
    out.extend(results);
    out
}

/// Minimal join_all (no `futures` dependency): poll every future to completion.
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut results: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::resolver;
    use crate::dns::testdns::TestDns;

    #[test]
    fn query_names_follow_rfc_5782() {
        assert_eq!(query_name("192.0.2.99".parse().unwrap(), "bl.test"), "99.2.0.192.bl.test");
        assert_eq!(query_name("192.0.2.99".parse().unwrap(), "bl.test."), "99.2.0.192.bl.test");
        assert_eq!(
            query_name("2001:db8:1:2:3:4:567:89ab".parse().unwrap(), "bl.test"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test"
        );
    }

    #[test]
    fn only_127_codes_are_listings() {
        let found = |v: &str| Answer::Found(vec![v.to_string()]);
        assert_eq!(interpret(&found("127.0.0.2")), DnsblAnswer::Listed(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(matches!(interpret(&found("127.255.255.254")), DnsblAnswer::Unknown(_)));
        assert!(matches!(interpret(&found("93.184.216.34")), DnsblAnswer::Unknown(_)));
        assert!(matches!(interpret(&found("garbage")), DnsblAnswer::Unknown(_)));
        assert_eq!(interpret(&Answer::None), DnsblAnswer::NotListed);
        assert!(matches!(interpret(&Answer::Error("timeout".into())), DnsblAnswer::Unknown(_)));
    }

    #[tokio::test]
    async fn listed_not_listed_and_refused_through_real_dns() {
        let a = [
            ("2.0.0.127.bl.test", "127.0.0.2"),
            ("66.2.0.192.bl.test", "127.0.0.4"),
            ("66.2.0.192.bad.test", "127.255.255.254"),
        ];
        let Some(dns) = TestDns::start(&["test"], &[], &a) else { return };
        let r = resolver::build(&[dns.addr]).unwrap();
        let zones = vec!["bl.test".to_string(), "bad.test".to_string()];
        let res = check(&r, "192.0.2.66".parse().unwrap(), &zones).await;
        assert_eq!(res[0], ("bl.test".to_string(), DnsblAnswer::Listed(Ipv4Addr::new(127, 0, 0, 4))));
        assert!(matches!(res[1].1, DnsblAnswer::Unknown(_)), "{res:?}");
        let res = check(&r, "192.0.2.67".parse().unwrap(), &zones).await;
        assert_eq!(res[0].1, DnsblAnswer::NotListed);
        assert_eq!(res[1].1, DnsblAnswer::NotListed);
    }
}
