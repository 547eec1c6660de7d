//! Pure parsers for configuration values. Each returns the typed value or a sentence
//! saying what was expected; the caller adds the variable name and the bad value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use super::sections::{OutboundIpv6, PgUrl, StoreConfig};

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

/// `MAILROOM_OUTBOUND_IPV6_MODE`.
pub fn outbound_ipv6_mode(raw: &str) -> Result<OutboundIpv6, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(OutboundIpv6::Auto),
        "on" => Ok(OutboundIpv6::On),
        "off" => Ok(OutboundIpv6::Off),
        _ => Err("`auto`, `on` or `off`".into()),
    }
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

/// What `MAILROOM_STORE` takes; the start of every error about it.
const STORE_EXPECTED: &str =
    "`maildir` or a PostgreSQL URL like `postgres://user:password@host[:port]/dbname?sslmode=verify-full`";

/// The query parameters a `MAILROOM_STORE` URL may carry: few, each one the connector
/// (sqlx) understands.
const PG_PARAMS: &[&str] = &["sslmode", "sslrootcert", "application_name"];
const PG_SSLMODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

/// `maildir`, or a PostgreSQL URL (see [`postgres_url`]).
pub fn store(raw: &str) -> Result<StoreConfig, String> {
    let v = raw.trim();
    if v == "maildir" {
        return Ok(StoreConfig::Maildir);
    }
    if pg_scheme(v).is_some() { postgres_url(v).map(StoreConfig::Postgres) } else { Err(STORE_EXPECTED.into()) }
}

/// The length of `postgres://` or `postgresql://` (any case) at the start of `v`.
fn pg_scheme(v: &str) -> Option<usize> {
    let (scheme, _) = v.split_once("://")?;
    let known = scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql");
    known.then_some(scheme.len() + 3)
}

/// `postgres[ql]://[user[:password]@]host[:port]/dbname[?param=value&…]`, host a DNS
/// name, an IPv4 address or `[ipv6]`, params from [`PG_PARAMS`].
///
/// The value may hold a password, so no error contains any part of it. A password
/// with an unencoded `/`, `?` or `#` would end the host part early and leave an `@`
/// (or a `#`) behind it: that is refused, so whatever parses has its password where
/// [`PgUrl::redacted`] hides it.
pub fn postgres_url(raw: &str) -> Result<PgUrl, String> {
    let expected = |what: &str| {
        format!("a PostgreSQL URL like `postgres://user:password@host[:port]/dbname?sslmode=verify-full` ({what})")
    };
    let url = raw.trim();
    if url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(expected("with no spaces or control characters; percent-encode them"));
    }
    let start = pg_scheme(url).ok_or_else(|| expected("starting with `postgres://` or `postgresql://`"))?;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if tail.contains(['@', '#']) {
        return Err(expected(
            "`/`, `?`, `#` and `@` in the user name and password percent-encoded as `%2F`, `%3F`, `%23`, `%40`; no `#` fragment",
        ));
    }

    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let mut password = None;
    if let Some(userinfo) = userinfo {
        let (user, pass) = match userinfo.split_once(':') {
            Some((user, pass)) => (user, Some(pass)),
            None => (userinfo, None),
        };
        let decodes = percent_decode(user, false).is_some() && pass.is_none_or(|p| percent_decode(p, false).is_some());
        if !decodes {
            return Err(expected("with a user name and password that are percent-encoded UTF-8"));
        }
        if let Some(pass) = pass.filter(|p| !p.is_empty()) {
            let pass_start = start + user.len() + 1;
            password = Some(pass_start..pass_start + pass.len());
        }
    }

    let (host, port) = pg_host_port(host_port).map_err(&expected)?;

    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let database = path.strip_prefix('/').filter(|db| !db.is_empty());
    let Some(database) = database else {
        return Err(expected("with a database name after the host, like `/mail`"));
    };
    if database.contains('/') {
        return Err(expected("with one database name after the host; percent-encode a `/` in it as `%2F`"));
    }
    let database = percent_decode(database, false)
        .filter(|db| !db.is_empty())
        .ok_or_else(|| expected("with a database name that is percent-encoded UTF-8"))?;

    let mut seen: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key, true)
            .filter(|k| PG_PARAMS.contains(&k.as_str()))
            .ok_or_else(|| expected("with no query parameters but `sslmode`, `sslrootcert` and `application_name`"))?;
        if seen.contains(&key) {
            return Err(expected("with each query parameter at most once"));
        }
        let value = percent_decode(value, true)
            .ok_or_else(|| expected("with query parameter values that are percent-encoded UTF-8"))?;
        match key.as_str() {
            "sslmode" if !PG_SSLMODES.contains(&value.as_str()) => {
                return Err(expected(
                    "with `sslmode` one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`",
                ));
            }
            "sslrootcert" if value.is_empty() || std::fs::File::open(&value).is_err() => {
                return Err(expected("with `sslrootcert` naming a readable PEM file"));
            }
            _ => {}
        }
        seen.push(key);
    }

    Ok(PgUrl { url: url.to_string(), password, host, port, database })
}

/// The `host[:port]` of a PostgreSQL URL: the host without brackets, and the port
/// ([`PgUrl::DEFAULT_PORT`] when none is given); or what was expected.
fn pg_host_port(host_port: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (v6, after) = bracketed.split_once(']').ok_or("with an IPv6 host in brackets, like `[2001:db8::5]`")?;
        v6.parse::<Ipv6Addr>().map_err(|_| "with an IPv6 host in brackets, like `[2001:db8::5]`")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("with `:port` after the host")?),
        };
        (v6, port)
    } else {
        let (host, port) = match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err("with an IPv6 host in brackets, like `[2001:db8::5]`");
        }
        if host.is_empty() {
            return Err("with a host");
        }
        let ipv4_like = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let ok = if ipv4_like { host.parse::<Ipv4Addr>().is_ok() } else { is_host_name(host) };
        if !ok {
            return Err("with a host that is a DNS name, an IPv4 address or an IPv6 address in brackets");
        }
        (host, port)
    };
    let port = match port {
        None => PgUrl::DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err("with a port from 1 to 65535 after the host"),
        },
    };
    Ok((host.to_string(), port))
}

/// A DNS name as a PostgreSQL host: labels of letters, digits, hyphens and, for the
/// names Docker gives containers, underscores.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `%XX` decoded (a `%` not followed by two hex digits stays as it is, as the
/// connector does), and `+` as a space in query parts; `None` when the result is not
/// UTF-8.
pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let byte = hex.and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], byte) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
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
    fn postgres_urls() {
        // (url, host, port, database, redacted)
        let good: &[(&str, &str, u16, &str, &str)] = &[
            (
                "postgres://mail:pw@db.example.org:5432/mail?sslmode=verify-full",
                "db.example.org",
                5432,
                "mail",
                "postgres://mail:****@db.example.org:5432/mail?sslmode=verify-full",
            ),
            ("postgresql://mail:pw@db/mail", "db", 5432, "mail", "postgresql://mail:****@db/mail"),
            ("POSTGRES://db/mail", "db", 5432, "mail", "POSTGRES://db/mail"),
            ("postgres://mail@192.0.2.5:6432/mail", "192.0.2.5", 6432, "mail", "postgres://mail@192.0.2.5:6432/mail"),
            (
                "postgres://u:pw@[2001:db8::5]:5433/m",
                "2001:db8::5",
                5433,
                "m",
                "postgres://u:****@[2001:db8::5]:5433/m",
            ),
            ("postgres://u:pw@[::1]/m", "::1", 5432, "m", "postgres://u:****@[::1]/m"),
            // Percent-encoded and raw `@` / `:` in the password; the last `@` ends it.
            ("postgres://u:p%2Fw%40x@db/m", "db", 5432, "m", "postgres://u:****@db/m"),
            ("postgres://u:p@ss:w@db/m", "db", 5432, "m", "postgres://u:****@db/m"),
            ("postgres://u:100%pure@db/m", "db", 5432, "m", "postgres://u:****@db/m"),
            ("postgres://u:@db/m", "db", 5432, "m", "postgres://u:@db/m"),
            ("postgres://mailroom_db_1/my%20db", "mailroom_db_1", 5432, "my db", "postgres://mailroom_db_1/my%20db"),
            (
                "  postgres://u:pw@db/m?sslmode=disable&application_name=mail+room&  ",
                "db",
                5432,
                "m",
                "postgres://u:****@db/m?sslmode=disable&application_name=mail+room&",
            ),
        ];
        for (url, host, port, database, redacted) in good {
            let pg = postgres_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((pg.host(), pg.port(), pg.database()), (*host, *port, *database), "{url}");
            assert_eq!(pg.redacted(), *redacted);
            assert_eq!(pg.url(), url.trim());
            assert_eq!(format!("{pg:?}"), format!("PgUrl({redacted:?})"));
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        assert!(postgres_url(&format!("postgres://db/m?sslrootcert={}&sslmode=verify-ca", ca.display())).is_ok());
    }

    /// Every refused URL holds the password `Hunter2x`: no error may show it, nor the
    /// parts a misplaced delimiter splits it into.
    #[test]
    fn bad_postgres_urls_say_why_without_the_value() {
        let bad: &[(&str, &str)] = &[
            ("mysql://u:Hunter2x@pgh/m", "`maildir` or a PostgreSQL URL"),
            ("postgres:/u:Hunter2x@pgh/m", "`maildir` or a PostgreSQL URL"),
            ("postgres://u:Hunter2x@/m", "with a host"),
            ("postgres://u:Hunter2x@pgh", "database name"),
            ("postgres://u:Hunter2x@pgh/", "database name"),
            ("postgres://u:Hunter2x@pgh?sslmode=require", "database name"),
            ("postgres://u:Hunter2x@pgh/m/x", "one database name"),
            ("postgres://u:Hunter2x@pgh:0/m", "port from 1 to 65535"),
            ("postgres://u:Hunter2x@pgh:99999/m", "port from 1 to 65535"),
            ("postgres://u:Hunter2x@pgh:+5432/m", "port from 1 to 65535"),
            ("postgres://u:Hunter2x@pgh:/m", "port from 1 to 65535"),
            ("postgres://u:Hunter2x@pgh:pg/m", "port from 1 to 65535"),
            ("postgres://u:Hunter2x@2001:db8::5/m", "IPv6 host in brackets"),
            ("postgres://u:Hunter2x@[2001:db8::zz]/m", "IPv6 host in brackets"),
            ("postgres://u:Hunter2x@[::1]x/m", "`:port`"),
            ("postgres://u:Hunter2x@300.1.1.1/m", "DNS name, an IPv4 address"),
            ("postgres://u:Hunter2x@pgh-.example/m", "DNS name, an IPv4 address"),
            ("postgres://u:Hunter2x@pgh,pgh2/m", "DNS name, an IPv4 address"),
            ("postgres://u:Hunter2x@pgh/m?sslmode=allow", "`sslmode` one of"),
            ("postgres://u:Hunter2x@pgh/m?sslmode=Require", "`sslmode` one of"),
            ("postgres://u:Hunter2x@pgh/m?sslmode=require&sslmode=disable", "at most once"),
            ("postgres://u:Hunter2x@pgh/m?password=Hunter2x", "no query parameters but"),
            ("postgres://u:Hunter2x@pgh/m?connect_timeout=10", "no query parameters but"),
            ("postgres://u:Hunter2x@pgh/m?sslrootcert=/nonexistent/ca.pem", "readable PEM file"),
            ("postgres://u:Hunter2x@pgh/m?sslrootcert=", "readable PEM file"),
            ("postgres://u:Hunter2x@pgh/m#zq9", "percent-encoded"),
            ("postgres://u:Hunter2x @pgh/m", "no spaces"),
            ("postgres://u:%FFHunter2x@pgh/m", "percent-encoded UTF-8"),
            ("postgres://u@pgh/m%FF", "percent-encoded UTF-8"),
            // An unencoded `/`, `?` or `#` in the password ends the host part early.
            ("postgres://u:Hun/ter2x@pgh/m", "`%2F`"),
            ("postgres://u:Hun?ter2x@pgh/m", "`%2F`"),
            ("postgres://u:Hun#ter2x@pgh/m", "`%2F`"),
            ("postgres://u:5432/Hunter2x@pgh/m", "`%2F`"),
        ];
        for (url, why) in bad {
            let e = store(url).expect_err(url);
            assert!(e.contains(why), "{url}: {e:?} should say {why:?}");
            for part in ["Hunter2x", "Hun", "ter2x", "pgh", "zq9"] {
                assert!(!e.contains(part), "{url}: {e:?} shows {part:?}");
            }
        }
        assert_eq!(store("maildir"), Ok(StoreConfig::Maildir));
        assert_eq!(store(" maildir "), Ok(StoreConfig::Maildir));
        assert!(store("Maildir").is_err());
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
