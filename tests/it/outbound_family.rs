//! Outbound address family and reverse DNS, end to end with the real binary: mail is
//! relayed on port 25 to `remote.test`, whose MX (served by dnsmasq) has both A
//! 127.0.0.1 and AAAA ::1 and points at a sink listening on both, so the sink's peer
//! address says which family was used. The source addresses are pinned to 127.0.0.1
//! and ::1.
//!
//! Their reverse DNS cannot come from dnsmasq: the resolver answers loopback reverse
//! names itself with `localhost` (RFC 6761 section 6.3) and `localhost` with the
//! loopback addresses, without asking any server. So the PTR of ::1 is always
//! `localhost`, forward-confirmed; the hostname decides whether it counts:
//! `MAILROOM_HOSTNAME=localhost` confirms, `mail.here.test` does not (outside its
//! domain). The lookups of other names through dnsmasq, with `--ptr-record`, are tested
//! in `dns::reverse`.
//!
//! Needs `::1` and dnsmasq; without them it is skipped locally and fails under CI.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn prerequisites() -> bool {
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let dnsmasq = have_tool("dnsmasq");
    assert!((v6 && dnsmasq) || !in_ci(), "::1 and dnsmasq are required under CI=true");
    if !v6 || !dnsmasq {
        eprintln!("skipping: needs ::1 and dnsmasq");
    }
    v6 && dnsmasq
}

/// `1.0.0.0.…ip6.arpa.` for ::1.
fn v6_loopback_ptr_name() -> String {
    let mut nibbles = vec!["1"];
    nibbles.extend(std::iter::repeat_n("0", 31));
    format!("{}.ip6.arpa.", nibbles.join("."))
}

/// dnsmasq for `remote.test`: MX on 127.0.0.1 and ::1.
fn start_dns() -> (Dnsmasq, SocketAddr) {
    dnsmasq(&[
        "--local=/test/",
        "--mx-host=remote.test,mx.remote.test,10",
        "--address=/mx.remote.test/127.0.0.1",
        "--address=/mx.remote.test/::1",
    ])
}

fn server_env(data: &std::path::Path, dns: SocketAddr, mx_port: u16, host: &str, mode: &str) -> Vec<(String, String)> {
    let mut env = env_listening(data, &["SMTP"]);
    env.retain(|(k, _)| k != "MAILROOM_HOSTNAME" && k != "MAILROOM_DNS_SERVERS");
    env.extend(
        [
            ("MAILROOM_HOSTNAME", host.to_string()),
            ("MAILROOM_DOMAINS", "here.test".into()),
            ("MAILROOM_DNS_SERVERS", dns.to_string()),
            ("MAILROOM_OUTBOUND_SMTP_PORT", mx_port.to_string()),
            ("MAILROOM_TRUSTED_NETWORKS", "127.0.0.0/8".into()),
            ("MAILROOM_OUTBOUND_IPV4", "127.0.0.1".into()),
            ("MAILROOM_OUTBOUND_IPV6", "::1".into()),
            ("MAILROOM_OUTBOUND_IPV6_MODE", mode.into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    env
}

/// Relay one message to erin@remote.test through port 25 (trusted client, no AUTH).
fn relay(smtp: SocketAddr) {
    let stream = TcpStream::connect(smtp).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut expect = |send: &str, code: &str| {
        if !send.is_empty() {
            w.write_all(send.as_bytes()).unwrap();
        }
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "after {send:?}: {line:?}");
            if line.as_bytes().get(3) == Some(&b' ') {
                return;
            }
        }
    };
    expect("", "220");
    expect("EHLO app.here.test\r\n", "250");
    expect("MAIL FROM:<app@here.test>\r\n", "250");
    expect("RCPT TO:<erin@remote.test>\r\n", "250");
    expect("DATA\r\n", "354");
    expect("From: app@here.test\r\nTo: erin@remote.test\r\nSubject: family\r\n\r\nhello\r\n.\r\n", "250");
    expect("QUIT\r\n", "221");
}

fn wait_arrival(arrivals: &common::sink::Received, server: &Server) -> IpAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(ip) = arrivals.lock().unwrap().first().map(|g| g.peer) {
            return ip;
        }
        assert!(Instant::now() < deadline, "nothing arrived:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gauge(server: &Server, family: &str) -> Option<String> {
    let (_, body) = http_get(server.metrics.unwrap(), "/metrics").unwrap();
    let prefix = format!("mailroom_dns_reverse_ok{{family=\"{family}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// Start with `MAILROOM_HOSTNAME=host`, relay one message, and return the address it
/// arrived from, with the server and its environment.
fn deliver(host: &str, mode: &str) -> (IpAddr, Server, Vec<(String, String)>, tempfile::TempDir, Dnsmasq) {
    let (dns_server, dns) = start_dns();
    let (arrivals, port) = common::sink::start_dual_sink();
    let tmp = tempfile::tempdir().unwrap();
    let env = server_env(tmp.path(), dns, port, host, mode);
    let server = Server::start_ready(&env, tmp.path(), Duration::from_secs(30));
    relay(server.addr("smtp"));
    let ip = wait_arrival(&arrivals, &server);
    (ip, server, env, tmp, dns_server)
}

fn v4() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn v6() -> IpAddr {
    "::1".parse().unwrap()
}

#[test]
fn auto_uses_ipv6_only_with_confirmed_reverse_dns() {
    if !prerequisites() {
        return;
    }
    let (ip, server, env, _tmp, _dns) = deliver("localhost", "auto");
    assert_eq!(ip, v6(), "PTR localhost = the hostname: IPv6 first\n{}", server.log());
    assert_eq!(gauge(&server, "ipv6").as_deref(), Some("1"));
    assert_eq!(gauge(&server, "ipv4").as_deref(), Some("1"));
    assert!(!server.log().contains("reverse DNS: ask"), "{}", server.log());
    let out = run(&["dns", "--check"], &env, "");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&format!("ok       PTR {}", v6_loopback_ptr_name())), "{text}");
    assert!(text.contains("ok       PTR 1.0.0.127.in-addr.arpa."), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
    drop(server);

    let (ip, server, env, _tmp, _dns) = deliver("mail.here.test", "auto");
    assert_eq!(ip, v4(), "PTR localhost is outside here.test: IPv4 only\n{}", server.log());
    assert_eq!(gauge(&server, "ipv6").as_deref(), Some("0"));
    assert_eq!(gauge(&server, "ipv4").as_deref(), Some("0"));
    let advice = "ask your hosting provider to set the PTR of ::1 to mail.here.test (it is now: localhost, outside the domain of mail.here.test)";
    let log = server.log();
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains(advice)), "{log}");
    let out = run(&["dns", "--check"], &env, "");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("wrong    PTR {}", v6_loopback_ptr_name())), "{text}");
    assert!(text.contains(&format!("FAILED:   {advice}")), "{text}");
    assert!(text.contains("wrong    PTR 1.0.0.127.in-addr.arpa."), "{text}");
}

#[test]
fn off_never_uses_ipv6_and_on_always_does() {
    if !prerequisites() {
        return;
    }
    let (ip, server, _env, _tmp, _dns) = deliver("localhost", "off");
    assert_eq!(ip, v4(), "{}", server.log());
    assert_eq!(gauge(&server, "ipv4").as_deref(), Some("1"));
    assert_eq!(gauge(&server, "ipv6"), None, "IPv6 is not checked when it is off");
    drop(server);

    let (ip, server, _env, _tmp, _dns) = deliver("mail.here.test", "on");
    assert_eq!(ip, v6(), "{}", server.log());
    assert_eq!(gauge(&server, "ipv6").as_deref(), Some("0"), "checked and warned about, but used");
}

#[test]
fn a_source_address_not_on_this_host_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = base_env(tmp.path());
    env.push(("MAILROOM_OUTBOUND_IPV4".into(), "192.0.2.254".into()));
    let out = run(&["check-config"], &env, "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("MAILROOM_OUTBOUND_IPV4") && err.contains("on no network interface"), "{err}");
}
