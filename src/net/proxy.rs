//! PROXY protocol v1 and v2 header parsing (HAProxy's `proxy-protocol.txt`).
//!
//! A load balancer in front of mailroom (Kubernetes `LoadBalancer`, HAProxy, AWS NLB)
//! hides the client's address; without it SPF, DNSBL checks, relay policy, rate limits
//! and logs would all see the balancer. The balancer therefore prepends a PROXY header
//! to the TCP stream, and this module turns that header into the real endpoints.
//!
//! This module owns only the *parsing*: it is pure (bytes in, [`ProxyParse`] out, no
//! I/O), never panics on any input, and never looks past the header, so the bytes after
//! it (an implicit-TLS ClientHello may arrive in the same segment) stay with the caller.
//! Deciding *who* may send a header (`MAILROOM_PROXY_PROTOCOL_FROM`: required from those
//! CIDRs, refused from everybody else, because a header from an untrusted peer is
//! address spoofing) belongs to the listener in `net/`, not here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 text prefix, including its mandatory single space.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The longest v1 header, CRLF included ("PROXY TCP6 " + two full IPv6 addresses + two
/// ports), per section 2.1 of the spec: a receiver may stop reading after it.
pub const V1_MAX_LEN: usize = 107;

/// The 12-byte v2 signature. It starts with CRLF CRLF NUL so that it can never be a
/// valid first line of SMTP, IMAP, POP3, HTTP or a TLS record (spec section 2.2).
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_FIXED_LEN: usize = 16;

/// Largest v2 payload (addresses plus TLVs) we accept. The field allows 65535 bytes,
/// which is a lot of memory to hold per unauthenticated connection; real balancers send
/// well under 1 KiB (addresses plus AWS/Azure/GCP id or SSL TLVs), so 4 KiB leaves room
/// for a client certificate subject without letting a peer park 64 KiB per socket.
pub const V2_MAX_PAYLOAD: usize = 4096;

/// Most bytes a caller ever needs to buffer before [`parse_proxy_header`] decides:
/// size the read buffer with this and stop reading once it is full.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + V2_MAX_PAYLOAD;

/// Result of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyParse {
    /// Everything so far is a valid start of a header: read more and call again.
    Incomplete,
    /// A complete header of `consumed` bytes; the rest of the buffer belongs to the
    /// protocol behind it. Addresses are `None` when the sender says it has none to give
    /// (v1 `UNKNOWN`, v2 `LOCAL` health checks, v2 `UNSPEC`): the caller then uses the
    /// socket's own endpoints, as the spec requires.
    Done { consumed: usize, source: Option<SocketAddr>, destination: Option<SocketAddr> },
    /// Not a header we accept; close the connection (there is no protocol to answer in).
    Invalid(ProxyError),
}

/// Why a PROXY header was refused. Each variant names the spec rule it breaks so the
/// log line tells an operator which balancer setting is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("connection did not start with a PROXY protocol v1 or v2 signature")]
    NoSignature,
    #[error("PROXY v1 header has no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error("PROXY v1 header contains a byte that is not printable ASCII or a bare CR/LF")]
    V1NotText,
    #[error("PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN")]
    V1UnknownProtocol,
    #[error("PROXY v1 header must have exactly 4 fields after the protocol")]
    V1FieldCount,
    #[error("PROXY v1 {field} is not a valid {family} address")]
    V1BadAddress { field: &'static str, family: &'static str },
    #[error("PROXY v1 {0} port is not a decimal number in 0..=65535")]
    V1BadPort(&'static str),
    #[error("PROXY v2 version nibble is {0}, expected 2")]
    V2BadVersion(u8),
    #[error("PROXY v2 command {0:#x} is neither LOCAL nor PROXY")]
    V2BadCommand(u8),
    #[error("PROXY v2 address family/transport {0:#04x} is not TCP over IPv4/IPv6")]
    V2UnsupportedTransport(u8),
    #[error("PROXY v2 payload of {0} bytes exceeds our bound of {V2_MAX_PAYLOAD}")]
    V2TooLong(usize),
    #[error("PROXY v2 payload of {got} bytes is shorter than the {need}-byte address block")]
    V2AddressTooShort { got: usize, need: usize },
}

/// Parse a PROXY v1 or v2 header at the start of `buf`.
///
/// Call it each time more bytes arrive until it returns `Done` or `Invalid`; it fails
/// as early as the bytes allow (a TLS ClientHello or an SMTP `EHLO` is refused from the
/// first byte) so a misconfigured balancer is reported at once instead of timing out.
pub fn parse_proxy_header(buf: &[u8]) -> ProxyParse {
    match buf.first() {
        None => ProxyParse::Incomplete,
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => ProxyParse::Invalid(ProxyError::NoSignature),
    }
}

fn invalid(e: ProxyError) -> ProxyParse {
    ProxyParse::Invalid(e)
}

/// Section 2.1: `PROXY <TCP4|TCP6|UNKNOWN> <src> <dst> <sport> <dport>\r\n`, single
/// spaces, at most 107 bytes. After `UNKNOWN` the rest of the line is ignored.
fn parse_v1(buf: &[u8]) -> ProxyParse {
    let prefix_len = buf.len().min(V1_PREFIX.len());
    if buf[..prefix_len] != V1_PREFIX[..prefix_len] {
        return invalid(ProxyError::NoSignature);
    }
    if buf.len() < V1_PREFIX.len() {
        return ProxyParse::Incomplete;
    }
    let Some(line_end) = find_v1_line_end(buf) else {
        return if buf.len() >= V1_MAX_LEN { invalid(ProxyError::V1TooLong) } else { ProxyParse::Incomplete };
    };
    let line_end = match line_end {
        Ok(i) => i,
        Err(e) => return invalid(e),
    };
    // `line_end` indexes the '\r'; the header ends after the following '\n'.
    let consumed = line_end + 2;
    // Only ASCII was accepted above, so this cannot fail; treat failure as bad text anyway.
    let Ok(line) = std::str::from_utf8(&buf[V1_PREFIX.len()..line_end]) else {
        return invalid(ProxyError::V1NotText);
    };
    let (proto, rest) = line.split_once(' ').unwrap_or((line, ""));
    let family = match proto {
        "UNKNOWN" => {
            return ProxyParse::Done { consumed, source: None, destination: None };
        }
        "TCP4" => V1Family::Tcp4,
        "TCP6" => V1Family::Tcp6,
        _ => return invalid(ProxyError::V1UnknownProtocol),
    };
    match parse_v1_endpoints(family, rest) {
        Ok((source, destination)) => {
            ProxyParse::Done { consumed, source: Some(source), destination: Some(destination) }
        }
        Err(e) => invalid(e),
    }
}

#[derive(Clone, Copy)]
enum V1Family {
    Tcp4,
    Tcp6,
}

/// `<src> <dst> <sport> <dport>`, each separated by exactly one space.
fn parse_v1_endpoints(family: V1Family, rest: &str) -> Result<(SocketAddr, SocketAddr), ProxyError> {
    let fields: Vec<&str> = rest.split(' ').collect();
    let [src, dst, sport, dport] = fields.as_slice() else {
        return Err(ProxyError::V1FieldCount);
    };
    let ip = |text: &str, field: &'static str| match family {
        V1Family::Tcp4 => {
            text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| ProxyError::V1BadAddress { field, family: "IPv4" })
        }
        V1Family::Tcp6 => {
            text.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| ProxyError::V1BadAddress { field, family: "IPv6" })
        }
    };
    Ok((
        SocketAddr::new(ip(src, "source")?, parse_v1_port(sport, "source")?),
        SocketAddr::new(ip(dst, "destination")?, parse_v1_port(dport, "destination")?),
    ))
}

/// Find the CR of the terminating CRLF within the first [`V1_MAX_LEN`] bytes.
/// `None`: not there yet. `Err`: a byte that cannot be part of a v1 line (binary data,
/// a bare LF, or CR followed by something other than LF).
fn find_v1_line_end(buf: &[u8]) -> Option<Result<usize, ProxyError>> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => {
                return match window.get(i + 1) {
                    Some(b'\n') => Some(Ok(i)),
                    Some(_) => Some(Err(ProxyError::V1NotText)),
                    None if i + 1 >= V1_MAX_LEN => Some(Err(ProxyError::V1TooLong)),
                    None => None,
                };
            }
            0x20..=0x7e => {}
            _ => return Some(Err(ProxyError::V1NotText)),
        }
    }
    None
}

/// Ports are plain decimal in 0..=65535; no sign, no leading zeros (spec 2.1), so one
/// port has exactly one spelling and logs cannot be confused by `025`.
fn parse_v1_port(text: &str, field: &'static str) -> Result<u16, ProxyError> {
    let bad = ProxyError::V1BadPort(field);
    if text.is_empty()
        || text.len() > 5
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(bad);
    }
    text.parse::<u16>().map_err(|_| bad)
}

/// Section 2.2: 12-byte signature, `ver_cmd` (0x20 LOCAL / 0x21 PROXY), `fam`
/// (0x11 TCP/IPv4, 0x21 TCP/IPv6, 0x00 UNSPEC), big-endian payload length, then the
/// address block and TLVs, which we skip.
fn parse_v2(buf: &[u8]) -> ProxyParse {
    let sig_len = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig_len] != V2_SIGNATURE[..sig_len] {
        return invalid(ProxyError::NoSignature);
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return ProxyParse::Incomplete;
    };
    if ver_cmd >> 4 != 2 {
        return invalid(ProxyError::V2BadVersion(ver_cmd >> 4));
    }
    let is_local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        other => return invalid(ProxyError::V2BadCommand(other)),
    };
    let Some(&fam) = buf.get(13) else {
        return ProxyParse::Incomplete;
    };
    // LOCAL (a balancer health check) carries no addresses that matter: the spec says to
    // ignore the family, so only PROXY is held to TCP over IPv4/IPv6. UDP and AF_UNIX are
    // refused: a mail listener is TCP, and a Unix peer has no IP to apply policy to.
    let need = match (is_local, fam) {
        (true, _) | (false, 0x00) => 0,
        (false, 0x11) => 12,
        (false, 0x21) => 36,
        (false, other) => return invalid(ProxyError::V2UnsupportedTransport(other)),
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return ProxyParse::Incomplete;
    };
    let payload_len = usize::from(u16::from_be_bytes([hi, lo]));
    if payload_len > V2_MAX_PAYLOAD {
        return invalid(ProxyError::V2TooLong(payload_len));
    }
    if payload_len < need {
        return invalid(ProxyError::V2AddressTooShort { got: payload_len, need });
    }
    let consumed = V2_FIXED_LEN + payload_len;
    let Some(payload) = buf.get(V2_FIXED_LEN..consumed) else {
        return ProxyParse::Incomplete;
    };
    let endpoints = match (is_local, fam) {
        (false, 0x11) => v2_endpoints::<4>(payload, |o| IpAddr::V4(Ipv4Addr::from(o))),
        (false, 0x21) => v2_endpoints::<16>(payload, |o| IpAddr::V6(Ipv6Addr::from(o))),
        _ => {
            return ProxyParse::Done { consumed, source: None, destination: None };
        }
    };
    match endpoints {
        Some((source, destination)) => {
            ProxyParse::Done { consumed, source: Some(source), destination: Some(destination) }
        }
        // Unreachable after the `need` check above; refuse rather than trust that.
        None => invalid(ProxyError::V2AddressTooShort { got: payload_len, need }),
    }
}

/// The address block: source address, destination address (N bytes each), then source
/// and destination ports, big-endian. TLVs after it are ignored.
fn v2_endpoints<const N: usize>(payload: &[u8], ip: fn([u8; N]) -> IpAddr) -> Option<(SocketAddr, SocketAddr)> {
    let (src, rest) = payload.split_first_chunk::<N>()?;
    let (dst, rest) = rest.split_first_chunk::<N>()?;
    let (sport, rest) = rest.split_first_chunk::<2>()?;
    let (dport, _tlvs) = rest.split_first_chunk::<2>()?;
    Some((SocketAddr::new(ip(*src), u16::from_be_bytes(*sport)), SocketAddr::new(ip(*dst), u16::from_be_bytes(*dport))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(consumed: usize, src: &str, dst: &str) -> ProxyParse {
        ProxyParse::Done { consumed, source: Some(src.parse().unwrap()), destination: Some(dst.parse().unwrap()) }
    }

    fn no_addresses(consumed: usize) -> ProxyParse {
        ProxyParse::Done { consumed, source: None, destination: None }
    }

    /// Build a v2 header: signature, ver_cmd, fam, length, payload.
    fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(fam);
        h.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn v2_tcp4_payload() -> Vec<u8> {
        let mut p = vec![192, 0, 2, 7, 10, 1, 2, 3];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&25u16.to_be_bytes());
        p
    }

    fn v2_tcp6_payload() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::25".parse().unwrap();
        let mut p = src.octets().to_vec();
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&51000u16.to_be_bytes());
        p.extend_from_slice(&993u16.to_be_bytes());
        p
    }

    /// Every strict prefix of a valid header must ask for more bytes, never fail or
    /// succeed early: this is what makes byte-at-a-time reads from a slow balancer safe.
    fn assert_every_prefix_incomplete(header: &[u8]) {
        for cut in 0..header.len() {
            assert_eq!(
                parse_proxy_header(&header[..cut]),
                ProxyParse::Incomplete,
                "prefix of {cut} bytes of {header:?}"
            );
        }
    }

    // ---- v1 -------------------------------------------------------------------------

    #[test]
    fn v1_tcp4_then_smtp_bytes_are_left_alone() {
        let buf = b"PROXY TCP4 192.0.2.7 10.1.2.3 40000 25\r\nEHLO client.example\r\n";
        assert_eq!(parse_proxy_header(buf), done(40, "192.0.2.7:40000", "10.1.2.3:25"));
        assert_eq!(&buf[40..], b"EHLO client.example\r\n");
    }

    #[test]
    fn v1_tcp6() {
        let buf = b"PROXY TCP6 2001:db8::7 2001:db8::25 51000 993\r\n";
        assert_eq!(parse_proxy_header(buf), done(buf.len(), "[2001:db8::7]:51000", "[2001:db8::25]:993"));
    }

    /// A dual-stack balancer names IPv4 clients `::ffff:a.b.c.d`; the parser reports what
    /// the header says and `net::canonical_peer` (where the header is read) makes it IPv4.
    #[test]
    fn ipv4_mapped_ipv6_clients_are_reported_as_sent() {
        let buf = b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::25 51000 25\r\n";
        assert_eq!(parse_proxy_header(buf), done(buf.len(), "[::ffff:192.0.2.7]:51000", "[2001:db8::25]:25"));
        let mut payload = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets().to_vec();
        payload.extend_from_slice(&"2001:db8::25".parse::<Ipv6Addr>().unwrap().octets());
        payload.extend_from_slice(&51000u16.to_be_bytes());
        payload.extend_from_slice(&25u16.to_be_bytes());
        let mapped = "[::ffff:192.0.2.7]:51000";
        assert_eq!(parse_proxy_header(&v2(0x21, 0x21, &payload)), done(52, mapped, "[2001:db8::25]:25"));
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_the_line() {
        assert_eq!(parse_proxy_header(b"PROXY UNKNOWN\r\n"), no_addresses(15));
        let buf = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nX";
        assert_eq!(parse_proxy_header(buf), no_addresses(buf.len() - 1));
    }

    /// The spec's worst case is `UNKNOWN` followed by two full IPv6 addresses: exactly
    /// 107 bytes, which must still fit; the longest TCP6 line is 104.
    #[test]
    fn v1_longest_headers_fit_in_107_bytes() {
        let a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let unknown = format!("PROXY UNKNOWN {a} {a} 65535 65535\r\n");
        assert_eq!(unknown.len(), V1_MAX_LEN);
        assert_eq!(parse_proxy_header(unknown.as_bytes()), no_addresses(107));
        let tcp6 = format!("PROXY TCP6 {a} {a} 65535 65535\r\n");
        let sock = format!("[{a}]:65535");
        assert_eq!(parse_proxy_header(tcp6.as_bytes()), done(104, &sock, &sock));
    }

    #[test]
    fn v1_truncated_at_every_byte_is_incomplete() {
        assert_every_prefix_incomplete(b"PROXY TCP4 192.0.2.7 10.1.2.3 40000 25\r\n");
        assert_every_prefix_incomplete(b"PROXY TCP6 2001:db8::7 2001:db8::25 51000 993\r\n");
        assert_every_prefix_incomplete(b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v1_without_crlf_in_107_bytes_is_too_long() {
        let mut buf = b"PROXY UNKNOWN ".to_vec();
        buf.resize(V1_MAX_LEN - 1, b'x');
        assert_eq!(parse_proxy_header(&buf), ProxyParse::Incomplete);
        buf.push(b'\r');
        assert_eq!(parse_proxy_header(&buf), invalid(ProxyError::V1TooLong));
        buf.push(b'\n');
        assert_eq!(parse_proxy_header(&buf), invalid(ProxyError::V1TooLong));
    }

    #[test]
    fn v1_malformed_lines_are_refused_with_the_reason() {
        let cases: &[(&[u8], ProxyError)] = &[
            (b"PROXY TCP4 192.0.2.7 10.1.2.3 40000 25\n", ProxyError::V1NotText),
            (b"PROXY TCP4 192.0.2.7\r10.1.2.3", ProxyError::V1NotText),
            (b"PROXY TCP4 192.0.2.7 10.1.2.3 40000 25\0\r\n", ProxyError::V1NotText),
            (b"PROXY UDP4 192.0.2.7 10.1.2.3 40000 25\r\n", ProxyError::V1UnknownProtocol),
            (b"PROXY tcp4 192.0.2.7 10.1.2.3 40000 25\r\n", ProxyError::V1UnknownProtocol),
            (b"PROXY \r\n", ProxyError::V1UnknownProtocol),
            (b"PROXY TCP4 192.0.2.7 10.1.2.3 40000\r\n", ProxyError::V1FieldCount),
            (b"PROXY TCP4 192.0.2.7  10.1.2.3 40000 25\r\n", ProxyError::V1FieldCount),
            (b"PROXY TCP4 192.0.2.7 10.1.2.3 40000 25 \r\n", ProxyError::V1FieldCount),
            (
                b"PROXY TCP4 2001:db8::7 10.1.2.3 40000 25\r\n",
                ProxyError::V1BadAddress { field: "source", family: "IPv4" },
            ),
            (
                b"PROXY TCP6 2001:db8::7 10.1.2.3 40000 25\r\n",
                ProxyError::V1BadAddress { field: "destination", family: "IPv6" },
            ),
            (
                b"PROXY TCP4 192.0.2.256 10.1.2.3 40000 25\r\n",
                ProxyError::V1BadAddress { field: "source", family: "IPv4" },
            ),
            (b"PROXY TCP4 192.0.2.7 10.1.2.3 65536 25\r\n", ProxyError::V1BadPort("source")),
            (b"PROXY TCP4 192.0.2.7 10.1.2.3 40000 025\r\n", ProxyError::V1BadPort("destination")),
            (b"PROXY TCP4 192.0.2.7 10.1.2.3 +4000 25\r\n", ProxyError::V1BadPort("source")),
            (b"PROXY TCP4 192.0.2.7 10.1.2.3 40000 \r\n", ProxyError::V1BadPort("destination")),
        ];
        for (input, reason) in cases {
            assert_eq!(parse_proxy_header(input), invalid(reason.clone()), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn v1_port_zero_is_a_port() {
        assert_eq!(
            parse_proxy_header(b"PROXY TCP4 192.0.2.7 10.1.2.3 0 25\r\n"),
            done(36, "192.0.2.7:0", "10.1.2.3:25")
        );
    }

    // ---- v2 -------------------------------------------------------------------------

    #[test]
    fn v2_proxy_tcp4_then_tls_bytes_are_left_alone() {
        let mut buf = v2(0x21, 0x11, &v2_tcp4_payload());
        let header_len = buf.len();
        buf.extend_from_slice(&[0x16, 0x03, 0x01]); // start of a TLS ClientHello
        assert_eq!(header_len, 28);
        assert_eq!(parse_proxy_header(&buf), done(28, "192.0.2.7:40000", "10.1.2.3:25"));
    }

    #[test]
    fn v2_proxy_tcp6() {
        let buf = v2(0x21, 0x21, &v2_tcp6_payload());
        assert_eq!(parse_proxy_header(&buf), done(52, "[2001:db8::7]:51000", "[2001:db8::25]:993"));
    }

    #[test]
    fn v2_tlvs_after_the_addresses_are_skipped() {
        let mut payload = v2_tcp4_payload();
        payload.extend_from_slice(&[0x04, 0x00, 0x00]); // PP2_TYPE_NOOP, empty
        payload.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c']); // UNIQUE_ID
        let mut buf = v2(0x21, 0x11, &payload);
        buf.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(parse_proxy_header(&buf), done(16 + 12 + 9, "192.0.2.7:40000", "10.1.2.3:25"));
    }

    #[test]
    fn v2_local_health_check_has_no_addresses_whatever_the_family() {
        assert_eq!(parse_proxy_header(&v2(0x20, 0x00, &[])), no_addresses(16));
        assert_eq!(parse_proxy_header(&v2(0x20, 0x11, &v2_tcp4_payload())), no_addresses(28));
        assert_eq!(parse_proxy_header(&v2(0x20, 0x31, &[1, 2, 3])), no_addresses(19));
    }

    #[test]
    fn v2_proxy_unspec_means_use_the_socket_addresses() {
        assert_eq!(parse_proxy_header(&v2(0x21, 0x00, &[9, 9])), no_addresses(18));
    }

    #[test]
    fn v2_truncated_at_every_byte_is_incomplete() {
        assert_every_prefix_incomplete(&v2(0x21, 0x11, &v2_tcp4_payload()));
        assert_every_prefix_incomplete(&v2(0x21, 0x21, &v2_tcp6_payload()));
        assert_every_prefix_incomplete(&v2(0x20, 0x00, &[]));
        let mut with_tlv = v2_tcp6_payload();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]);
        assert_every_prefix_incomplete(&v2(0x21, 0x21, &with_tlv));
    }

    #[test]
    fn v2_malformed_headers_are_refused_with_the_reason() {
        let tcp4 = v2_tcp4_payload();
        let cases: Vec<(Vec<u8>, ProxyError)> = vec![
            (v2(0x11, 0x11, &tcp4), ProxyError::V2BadVersion(1)),
            (v2(0x31, 0x11, &tcp4), ProxyError::V2BadVersion(3)),
            (v2(0x22, 0x11, &tcp4), ProxyError::V2BadCommand(2)),
            (v2(0x21, 0x12, &tcp4), ProxyError::V2UnsupportedTransport(0x12)), // UDP
            (v2(0x21, 0x31, &tcp4), ProxyError::V2UnsupportedTransport(0x31)), // AF_UNIX
            (v2(0x21, 0x41, &tcp4), ProxyError::V2UnsupportedTransport(0x41)),
            (v2(0x21, 0x11, &tcp4[..11]), ProxyError::V2AddressTooShort { got: 11, need: 12 }),
            (v2(0x21, 0x21, &tcp4), ProxyError::V2AddressTooShort { got: 12, need: 36 }),
        ];
        for (input, reason) in cases {
            assert_eq!(parse_proxy_header(&input), invalid(reason), "{input:?}");
        }
    }

    #[test]
    fn v2_length_bound_is_checked_before_waiting_for_the_payload() {
        let mut head = V2_SIGNATURE.to_vec();
        head.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse_proxy_header(&head), invalid(ProxyError::V2TooLong(65535)));
        let at_bound = v2(0x21, 0x11, &vec![0; V2_MAX_PAYLOAD]);
        assert_eq!(at_bound.len(), MAX_HEADER_LEN);
        assert!(
            matches!(parse_proxy_header(&at_bound), ProxyParse::Done { consumed, .. } if consumed == MAX_HEADER_LEN)
        );
    }

    #[test]
    fn v2_errors_are_reported_as_soon_as_the_byte_arrives() {
        let mut buf = V2_SIGNATURE.to_vec();
        buf.push(0x23);
        assert_eq!(parse_proxy_header(&buf), invalid(ProxyError::V2BadCommand(3)));
        buf[12] = 0x21;
        buf.push(0x22);
        assert_eq!(parse_proxy_header(&buf), invalid(ProxyError::V2UnsupportedTransport(0x22)));
    }

    // ---- not a PROXY header at all --------------------------------------------------

    #[test]
    fn other_protocols_are_refused_from_the_first_byte() {
        for input in [
            &b"EHLO client.example\r\n"[..],
            b"a1 LOGIN user pass\r\n",
            b"USER bob\r\n",
            b"GET / HTTP/1.1\r\n",
            &[0x16, 0x03, 0x01, 0x02, 0x00],
            b"PROXX TCP4",
            b"P",
            b"\r\n\r\n\0\r\nQUIT\r",
            b"\r\nQUIT",
        ] {
            let expected = if input == b"P" { ProxyParse::Incomplete } else { invalid(ProxyError::NoSignature) };
            assert_eq!(parse_proxy_header(input), expected, "{input:?}");
        }
        assert_eq!(parse_proxy_header(b""), ProxyParse::Incomplete);
    }

    /// Garbage in: random bytes, random bytes behind each signature, and valid headers
    /// with one byte flipped. Nothing may panic, and `Done` never claims more bytes
    /// than the buffer holds.
    #[test]
    fn garbage_in_never_panics() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<Vec<u8>> = vec![
            Vec::new(),
            V1_PREFIX.to_vec(),
            b"PROXY TCP4 ".to_vec(),
            b"PROXY TCP6 ".to_vec(),
            V2_SIGNATURE.to_vec(),
            v2(0x21, 0x11, &v2_tcp4_payload()),
            v2(0x21, 0x21, &v2_tcp6_payload()),
            b"PROXY TCP4 192.0.2.7 10.1.2.3 40000 25\r\n".to_vec(),
        ];
        let check = |buf: &[u8]| {
            if let ProxyParse::Done { consumed, .. } = parse_proxy_header(buf) {
                assert!(consumed <= buf.len(), "{buf:?}");
            }
        };
        for round in 0..20_000 {
            let seed = &seeds[round % seeds.len()];
            let mut buf = seed.clone();
            if round % 3 == 0 && !buf.is_empty() {
                let at = usize::try_from(next()).unwrap_or(0) % buf.len();
                buf[at] ^= u8::try_from(next() % 255 + 1).unwrap_or(1);
            } else {
                let extra = usize::try_from(next() % 140).unwrap_or(0);
                buf.extend((0..extra).map(|_| next().to_le_bytes()[0]));
            }
            for cut in 0..=buf.len() {
                check(&buf[..cut]);
            }
        }
    }
}
