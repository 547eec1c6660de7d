//! The accept point: every client address is canonical before any consumer sees it
//! (dual-stack accept and PROXY headers alike), and the connection rate limit spares
//! trusted networks only, never loopback as such.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::config::ListenAddr;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn canonical_peer_makes_mapped_ipv4_plain_ipv4() {
    for (given, want) in [
        ("[::ffff:127.0.0.1]:2525", "127.0.0.1:2525"),
        ("[::ffff:192.0.2.99]:40000", "192.0.2.99:40000"),
        ("127.0.0.1:25", "127.0.0.1:25"),
        ("[::1]:25", "[::1]:25"),
        ("[2001:db8::7]:51000", "[2001:db8::7]:51000"),
        // IPv4-compatible (deprecated, RFC 4291 2.5.5.1) is not a dual-stack artefact.
        ("[::192.0.2.1]:25", "[::192.0.2.1]:25"),
    ] {
        assert_eq!(canonical_peer(sa(given)), sa(want), "{given}");
    }
    // A real IPv6 peer keeps its scope (link-local clients).
    let scoped = SocketAddr::V6(std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 25, 0, 3));
    assert_eq!(canonical_peer(scoped), scoped);
}

/// What DNSBL lookups see for an IPv4 client of a dual-stack listener: its octets.
#[test]
fn dnsbl_query_of_a_dual_stack_ipv4_client_uses_its_octets() {
    let client = canonical_peer(sa("[::ffff:192.0.2.99]:40000")).ip();
    assert_eq!(crate::scan::dnsbl::query_name(client, "bl.test."), "99.2.0.192.bl.test");
}

/// A connected pair on loopback: (client side, server side).
async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, peer) = listener.accept().await.unwrap();
    (client, server, peer)
}

#[tokio::test]
async fn proxy_header_naming_a_mapped_client_gives_ipv4() {
    let v1 = b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::25 51000 25\r\nEHLO x\r\n".to_vec();
    let mut v2 = proxy::V2_SIGNATURE.to_vec();
    v2.extend_from_slice(&[0x21, 0x21, 0, 36]);
    v2.extend_from_slice(&std::net::Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets());
    v2.extend_from_slice(&"2001:db8::25".parse::<std::net::Ipv6Addr>().unwrap().octets());
    v2.extend_from_slice(&51000u16.to_be_bytes());
    v2.extend_from_slice(&25u16.to_be_bytes());
    v2.extend_from_slice(b"EHLO x\r\n");
    for header in [v1, v2] {
        let (mut client, mut server, balancer) = pair().await;
        client.write_all(&header).await.unwrap();
        assert_eq!(read_proxy_header(&mut server, balancer).await, Ok(sa("192.0.2.7:51000")));
        let mut rest = [0u8; 8];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"EHLO x\r\n", "nothing past the header is consumed");
    }
}

/// A service that tells the test which client it saw, answers `OK`, and closes.
fn reporting_service() -> (Service, mpsc::UnboundedReceiver<SocketAddr>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |mut conn: Connection| -> BoxFuture {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(conn.peer);
            let _ = conn.stream.write_all(b"OK\r\n").await;
            let _ = conn.stream.shutdown().await;
        })
    };
    (Service { handler: Arc::new(handler), busy_reply: b"BUSY\r\n" }, rx)
}

fn context(rate: Option<Limiter>) -> AcceptContext {
    AcceptContext {
        limiter: ConnectionLimiter::new(100, 100),
        shutdown: Shutdown::new(),
        proxy_from: Arc::new(Vec::new()),
        rate: rate.map(Arc::new),
    }
}

/// Connect, read the whole answer.
async fn answer(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn have_ipv6_loopback() -> bool {
    let ok = std::net::TcpListener::bind("[::1]:0").is_ok();
    let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
    assert!(ok || !ci, "::1 is required under CI=true");
    ok
}

#[tokio::test]
async fn dual_stack_listener_hands_out_canonical_clients() {
    let bound = bind(Protocol::Smtp, &[ListenAddr::AllInterfaces(0)]).unwrap().remove(0);
    let port = bound.local_addr.port();
    let (service, mut seen) = reporting_service();
    let ctx = context(None);
    tokio::spawn(serve(bound, service, ctx.clone()));

    assert_eq!(answer(sa(&format!("127.0.0.1:{port}"))).await, "OK\r\n");
    assert_eq!(seen.recv().await.unwrap().ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    if have_ipv6_loopback() {
        assert_eq!(answer(sa(&format!("[::1]:{port}"))).await, "OK\r\n");
        assert_eq!(seen.recv().await.unwrap().ip(), "::1".parse::<IpAddr>().unwrap());
    }
    ctx.shutdown.begin();
}

fn rate_limiter(trusted: &[&str]) -> Limiter {
    let config = LimiterConfig { connections_per_minute: 2, ..LimiterConfig::default() };
    Limiter::new(config, trusted.iter().map(|n| n.parse().unwrap()).collect())
}

/// A proxy or webmail on the same host must not exempt everyone behind it: loopback is
/// rate-limited like any client unless it is in the trusted networks.
#[tokio::test]
async fn loopback_is_rate_limited_unless_trusted() {
    for (trusted, third) in [(&[][..], "BUSY\r\n"), (&["127.0.0.0/8"][..], "OK\r\n")] {
        let bound = bind(Protocol::Imap, &[ListenAddr::AllInterfaces(0)]).unwrap().remove(0);
        let addr = sa(&format!("127.0.0.1:{}", bound.local_addr.port()));
        let (service, _seen) = reporting_service();
        let ctx = context(Some(rate_limiter(trusted)));
        tokio::spawn(serve(bound, service, ctx.clone()));
        assert_eq!(answer(addr).await, "OK\r\n");
        assert_eq!(answer(addr).await, "OK\r\n");
        assert_eq!(answer(addr).await, third, "trusted: {trusted:?}");
        ctx.shutdown.begin();
    }
}
