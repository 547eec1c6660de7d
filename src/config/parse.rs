//! Pure parsers for configuration values. Each returns the typed value or a sentence
//! saying what was expected; the caller adds the variable name and the bad value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// One address a listener binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `:25` — every address, IPv4 and IPv6.
    AllInterfaces(u16),
    /// `127.0.0.1:2525`, `[::1]:25`.
    Socket(SocketAddr),
}

impl ListenAddr {
    pub fn port(&self) -> u16 {
        match self {
            ListenAddr::AllInterfaces(p) => *p,
            ListenAddr::Socket(s) => s.port(),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::AllInterfaces(p) => write!(f, ":{p}"),
            ListenAddr::Socket(s) => write!(f, "{s}"),
        }
    }
}

const LISTEN_EXPECTED: &str = "comma-separated listen addresses like `:25`, `127.0.0.1:2525`, `[::1]:25`, or `off`";

/// `off`, or a comma-separated list of `:port`, `ipv4:port`, `[ipv6]:port`.
pub fn listen_list(raw: &str) -> Result<Vec<ListenAddr>, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("off") || raw.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim) {
        let addr = if let Some(port) = item.strip_prefix(':') {
            ListenAddr::AllInterfaces(port.parse().map_err(|_| LISTEN_EXPECTED.to_string())?)
        } else {
            ListenAddr::Socket(item.parse().map_err(|_| LISTEN_EXPECTED.to_string())?)
        };
        if out.contains(&addr) {
            return Err(format!("{addr} is listed twice"));
        }
        out.push(addr);
    }
    Ok(out)
}

/// Comma-separated CIDRs; a bare address means a single host (/32 or /128).
pub fn cidr_list(raw: &str) -> Result<Vec<IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map(|n| unmap_cidr(n.trunc()))
                .map_err(|_| format!("comma-separated CIDRs like `192.0.2.0/24, 2001:db8::/32` (`{item}` is not one)"))
        })
        .collect()
}

/// `::ffff:a.b.c.d/n` (n >= 96) as the IPv4 CIDR it means. Client addresses are
/// matched in IPv4 form (`net::canonical_peer`), so a mapped CIDR, written to make
/// dual-stack listeners match, would otherwise never match anything.
fn unmap_cidr(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .network()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        _ => net,
    }
}

/// A DNS name: lower-cased, IDN converted to its ASCII (punycode) form, labels
/// checked (1..=63 octets of letters, digits, hyphens; not starting/ending with `-`).
pub fn domain_name(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('.');
    let ascii =
        idna::domain_to_ascii(trimmed).map_err(|_| format!("a domain name (`{trimmed}` is not a valid IDN name)"))?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err("a domain name of 1 to 253 characters".into());
    }
    for label in ascii.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(format!(
                "a domain name made of labels of letters, digits and hyphens (`{label}` in `{ascii}` is not one)"
            ));
        }
    }
    Ok(ascii)
}

/// Comma-separated domain names, normalised, duplicates refused.
pub fn domain_list(raw: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let d = domain_name(item)?;
        if out.contains(&d) {
            return Err(format!("comma-separated domains, each once (`{d}` is listed twice)"));
        }
        out.push(d);
    }
    if out.is_empty() {
        return Err("at least one domain".into());
    }
    Ok(out)
}

/// The default mail domain for a hostname: `mail.example.com` -> `example.com`;
/// a name with two labels or fewer (`example.com`, `localhost`) is its own domain.
pub fn default_domain_for(hostname: &str) -> String {
    let labels: Vec<&str> = hostname.split('.').collect();
    if labels.len() >= 3 { labels[1..].join(".") } else { hostname.to_string() }
}

/// True for a name that a public CA could issue a certificate for: at least two
/// labels and not under a reserved or local-only suffix (RFC 2606, 6761, 6762).
pub fn is_public_fqdn(hostname: &str) -> bool {
    const LOCAL_SUFFIXES: &[&str] = &[
        "localhost",
        "local",
        "internal",
        "lan",
        "home",
        "test",
        "example",
        "invalid",
        "home.arpa",
        "localdomain",
        "corp",
        "intranet",
        "private",
    ];
    let labels: Vec<&str> = hostname.split('.').collect();
    if labels.len() < 2 || hostname.parse::<IpAddr>().is_ok() {
        return false;
    }
    let tld = labels[labels.len() - 1];
    if !tld.bytes().all(|b| b.is_ascii_alphabetic()) && !tld.starts_with("xn--") {
        return false;
    }
    !LOCAL_SUFFIXES.iter().any(|s| hostname == *s || hostname.ends_with(&format!(".{s}")))
        && !hostname.starts_with("example.")
        && !hostname.contains(".example.")
}

pub fn ipv4(raw: &str) -> Result<Ipv4Addr, String> {
    raw.trim().parse().map_err(|_| "an IPv4 address like 192.0.2.10".into())
}

pub fn ipv6(raw: &str) -> Result<Ipv6Addr, String> {
    raw.trim().parse().map_err(|_| "an IPv6 address like 2001:db8::10".into())
}

/// `host:port` (host: a DNS name, an IPv4 address or `[ipv6]`).
pub fn host_port(raw: &str) -> Result<(String, u16), String> {
    const EXPECTED: &str = "`host:port`, e.g. `smtp.example.net:587` or `[2001:db8::1]:587`";
    let raw = raw.trim();
    let (host, port) = raw.rsplit_once(':').ok_or_else(|| EXPECTED.to_string())?;
    let port: u16 = port.parse().map_err(|_| EXPECTED.to_string())?;
    if port == 0 {
        return Err(EXPECTED.into());
    }
    let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<Ipv6Addr>().map_err(|_| EXPECTED.to_string())?;
        v6.to_string()
    } else if host.parse::<Ipv4Addr>().is_ok() {
        host.to_string()
    } else {
        domain_name(host).map_err(|_| EXPECTED.to_string())?
    };
    Ok((host, port))
}

/// Comma-separated `ip` or `ip:port` / `[ipv6]:port` resolvers (port 53 by default).
pub fn dns_servers(raw: &str) -> Result<Vec<SocketAddr>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<SocketAddr>().or_else(|_| item.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53))).map_err(
                |_| {
                    format!(
                        "comma-separated resolver addresses like `192.0.2.53` or `127.0.0.1:5353` (`{item}` is not one)"
                    )
                },
            )
        })
        .collect()
}

/// A port number 1..=65535.
pub fn port(raw: &str) -> Result<u16, String> {
    match raw.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("a port number from 1 to 65535".into()),
    }
}

/// A positive count.
pub fn positive_count(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number greater than 0".into()),
    }
}

/// An `http://` or `https://` URL.
pub fn http_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))
        .ok_or_else(|| "an http:// or https:// URL".to_string())?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err("an http:// or https:// URL".into());
    }
    Ok(raw.to_string())
}

/// A host name or address of the system: what `gethostname(2)` says. Falls back to
/// `localhost` if the kernel has none.
pub fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or
    // truncates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_ascii_lowercase();
    if name.is_empty() { "localhost".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_lists() {
        let table: &[(&str, Result<Vec<&str>, ()>)] = &[
            (":25", Ok(vec![":25"])),
            ("off", Ok(vec![])),
            ("OFF", Ok(vec![])),
            ("127.0.0.1:2525, [::1]:2525", Ok(vec!["127.0.0.1:2525", "[::1]:2525"])),
            (":0", Ok(vec![":0"])),
            ("25", Err(())),
            (":99999", Err(())),
            ("localhost:25", Err(())),
            ("[::1]", Err(())),
            (":25,:25", Err(())),
            ("", Err(())),
        ];
        for (input, want) in table {
            let got = listen_list(input).map(|v| v.iter().map(|a| a.to_string()).collect::<Vec<_>>());
            match want {
                Ok(w) => {
                    assert_eq!(got.as_deref(), Ok(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]), "{input}")
                }
                Err(()) => assert!(got.is_err(), "{input} should fail, got {got:?}"),
            }
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(cidr_list("10.0.0.0/8, 2001:db8::/32").unwrap().len(), 2);
        assert_eq!(cidr_list("192.0.2.7").unwrap()[0].to_string(), "192.0.2.7/32");
        assert_eq!(cidr_list("10.1.2.3/8").unwrap()[0].to_string(), "10.0.0.0/8");
        assert_eq!(cidr_list("::ffff:127.0.0.0/104").unwrap()[0].to_string(), "127.0.0.0/8");
        assert_eq!(cidr_list("::ffff:192.0.2.7").unwrap()[0].to_string(), "192.0.2.7/32");
        assert_eq!(cidr_list("::ffff:0:0/95").unwrap()[0].to_string(), "::fffe:0:0/95");
        assert_eq!(cidr_list("::1").unwrap()[0].to_string(), "::1/128");
        assert!(cidr_list("10.0.0.0/33").is_err());
        assert!(cidr_list("everyone").is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(domain_name("Example.COM.").unwrap(), "example.com");
        assert_eq!(domain_name("bücher.example").unwrap(), "xn--bcher-kva.example");
        assert!(domain_name("-bad.example").is_err());
        assert!(domain_name("a..b").is_err());
        assert!(domain_name("has space.example").is_err());
        assert_eq!(domain_list("a.example, b.example").unwrap(), vec!["a.example", "b.example"]);
        assert!(domain_list("a.example,a.example").is_err());
    }

    #[test]
    fn default_domains() {
        assert_eq!(default_domain_for("mail.example.com"), "example.com");
        assert_eq!(default_domain_for("example.com"), "example.com");
        assert_eq!(default_domain_for("localhost"), "localhost");
    }

    #[test]
    fn public_names() {
        assert!(is_public_fqdn("mail.mailroom.dev"));
        assert!(!is_public_fqdn("localhost"));
        assert!(!is_public_fqdn("mail.example.com"));
        assert!(!is_public_fqdn("mx.corp.internal"));
        assert!(!is_public_fqdn("3f2a9c"));
        assert!(!is_public_fqdn("mail.test"));
    }

    #[test]
    fn host_ports() {
        assert_eq!(host_port("smtp.Example.net:587").unwrap(), ("smtp.example.net".into(), 587));
        assert_eq!(host_port("[2001:db8::1]:25").unwrap(), ("2001:db8::1".into(), 25));
        assert_eq!(host_port("192.0.2.1:2525").unwrap(), ("192.0.2.1".into(), 2525));
        assert!(host_port("smtp.example.net").is_err());
        assert!(host_port("smtp.example.net:0").is_err());
    }

    #[test]
    fn resolvers() {
        let got = dns_servers("192.0.2.53, 127.0.0.1:5353, [::1]:53").unwrap();
        assert_eq!(got[0].port(), 53);
        assert_eq!(got[1].port(), 5353);
        assert!(dns_servers("dns.example").is_err());
    }

    #[test]
    fn small_values() {
        assert_eq!(port("2525"), Ok(2525));
        assert!(port("0").is_err());
        assert!(positive_count("0").is_err());
        assert!(http_url("http://rspamd:11333").is_ok());
        assert!(http_url("rspamd:11333").is_err());
    }
}
