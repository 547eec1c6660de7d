//! PROXY protocol on a real listener: required from MAILROOM_PROXY_PROTOCOL_FROM,
//! the named client address used for the connection, refused from anyone else.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

fn start(proxy_from: &str) -> (Server, SocketAddr, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut env = base_env(&data);
    env.retain(|(k, _)| k != "MAILROOM_METRICS_LISTEN");
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!("127.0.0.1:{port}")));
    env.push(("MAILROOM_PROXY_PROTOCOL_FROM".into(), proxy_from.into()));
    env.push(("MAILROOM_LOG".into(), "debug".into()));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = Server::start(&env, None, &data);
    // Readiness can't be probed through /readyz without a header; wait for the banner.
    assert!(server.wait_log("mailroom started", Duration::from_secs(20)), "{}", server.log());
    (server, addr, tmp)
}

fn request(addr: SocketAddr, prefix: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(prefix).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&9090u16.to_be_bytes());
    h
}

#[test]
fn trusted_balancer_v1_and_v2_headers_name_the_client() {
    let (server, addr, _tmp) = start("127.0.0.0/8");
    let reply = request(addr, b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 9090\r\n");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(server.wait_log("client=203.0.113.7:40000", Duration::from_secs(5)), "{}", server.log());

    let reply = request(addr, &v2_header([198, 51, 100, 9], 41000));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(server.wait_log("client=198.51.100.9:41000", Duration::from_secs(5)), "{}", server.log());
}

#[test]
fn trusted_balancer_without_header_is_refused() {
    let (server, addr, _tmp) = start("127.0.0.0/8");
    let reply = request(addr, b"");
    assert!(reply.is_empty(), "{reply}");
    assert!(server.wait_log("invalid PROXY header", Duration::from_secs(5)), "{}", server.log());
}

#[test]
fn header_from_untrusted_peer_is_not_believed() {
    let (server, addr, _tmp) = start("192.0.2.0/24");
    let reply = request(addr, b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 9090\r\n");
    assert!(!reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(!server.log().contains("203.0.113.7"), "{}", server.log());
}
