//! The default `:port` listeners are one dual-stack `[::]` socket each. An IPv4 client
//! on them must be plain IPv4 to everything that judges or records it: trusted-network
//! relay, per-IP and per-minute limits, DNSBLs, `Received`/`Authentication-Results`,
//! PROXY balancers and the clients they name, and every protocol's log lines; an IPv6
//! client stays IPv6. Real binary, real
//! clients (python smtplib/imaplib/poplib), real DNS (dnsmasq) for the DNSBL zone.
//!
//! The IPv6 halves need `::1`; without it they are skipped locally and fail under CI.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Connections each server accepts per client address per minute: enough for what
/// the tests below do on purpose, few enough that a loop of [`RATE_PROBES`] crosses it.
const RATE: u32 = 5;
const RATE_PROBES: u32 = 2 * RATE + 2;

fn have_ipv6() -> bool {
    let ok = std::net::TcpListener::bind("[::1]:0").is_ok();
    assert!(ok || !in_ci(), "::1 is required under CI=true");
    if !ok {
        eprintln!("skipping the IPv6 parts: no ::1 on this machine");
    }
    ok
}

fn lo4() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn lo6() -> IpAddr {
    "::1".parse().unwrap()
}

/// One SMTP/LMTP session with python's smtplib from `source` to `(host, port)`;
/// prints one `[code, text]` per step. Steps: `["mail", from]`, `["rcpt", to]`,
/// `["data", text]`, `["rset"]`.
const SMTP_CLIENT: &str = r#"
import sys, json, smtplib
host, port, source, lmtp, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "lmtp", json.loads(sys.argv[5])
cls = smtplib.LMTP if lmtp else smtplib.SMTP
s = cls(host, port, source_address=(source, 0), timeout=30)
s.ehlo("client.test")
for op, *args in steps:
    if op == "mail": r = s.mail(args[0])
    elif op == "rcpt": r = s.rcpt(args[0])
    elif op == "data": r = s.data(args[0].encode())
    elif op == "rset": r = s.rset()
    print(json.dumps([r[0], r[1].decode(errors="replace")]), flush=True)
s.quit()
"#;

fn smtp_session(source: IpAddr, port: u16, lmtp: bool, steps: serde_json::Value) -> Vec<(u16, String)> {
    let host = if source.is_ipv4() { "127.0.0.1" } else { "::1" };
    let out = Command::new("python3")
        .args(["-c", SMTP_CLIENT, host, &port.to_string(), &source.to_string()])
        .arg(if lmtp { "lmtp" } else { "smtp" })
        .arg(steps.to_string())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<(u16, String)> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v[0].as_u64().unwrap() as u16, v[1].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        replies.len(),
        steps.as_array().unwrap().len(),
        "smtplib: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    replies
}

/// The replies to MAIL and RCPT for a relay attempt (then RSET: nothing is queued).
fn relay_attempt(source: IpAddr, port: u16) -> (u16, String) {
    let steps = serde_json::json!([["mail", "app@sender.test"], ["rcpt", "erin@remote.test"], ["rset"]]);
    let replies = smtp_session(source, port, false, steps);
    assert_eq!(replies[0].0, 250, "MAIL from {source}: {replies:?}");
    replies[1].clone()
}

fn deliver_to_alice(source: IpAddr, port: u16, subject: &str) {
    let body = format!("From: app@sender.test\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\r\nhello\r\n");
    let steps = serde_json::json!([["mail", "app@sender.test"], ["rcpt", "alice@example.com"], ["data", body]]);
    let replies = smtp_session(source, port, false, steps);
    assert!(replies.iter().all(|r| r.0 == 250), "delivery from {source}: {replies:?}");
}

/// The stored message whose Subject is `subject`, in `folder` of alice's Maildir.
fn stored(data: &Path, folder: &str, subject: &str) -> String {
    let dir = data.join("mail/example.com/alice").join(folder);
    ["new", "cur"]
        .iter()
        .flat_map(|s| std::fs::read_dir(dir.join(s)).into_iter().flatten())
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .find(|m| m.contains(&format!("Subject: {subject}\r\n")))
        .unwrap_or_else(|| panic!("no message {subject:?} in {}", dir.display()))
}

/// Connect from `source` (bound first, so 127.0.0.2 is a real client address) and read
/// the first line the server says.
fn connect_from(source: IpAddr, to: SocketAddr) -> (TcpStream, String) {
    let domain = if source.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect_timeout(&to.into(), Duration::from_secs(10)).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut line = String::new();
    BufReader::new(stream.try_clone().unwrap()).read_line(&mut line).unwrap();
    (stream, line)
}

/// Open and close connections from `source`, one after another, until one is refused
/// or `RATE_PROBES` were accepted; returns the refusal line, if any.
fn probe_rate(source: IpAddr, to: SocketAddr) -> Option<String> {
    for _ in 0..RATE_PROBES {
        let (mut s, line) = connect_from(source, to);
        if !line.starts_with("220 ") {
            return Some(line);
        }
        let _ = s.write_all(b"QUIT\r\n");
        let _ = s.read_to_end(&mut Vec::new());
    }
    None
}

/// Open connections per protocol right now, from the metrics port (that scrape itself
/// is left out).
fn open_connections(metrics: SocketAddr) -> u64 {
    let (_, body) = http_get(metrics, "/metrics").unwrap();
    body.lines()
        .filter(|l| l.starts_with("mailroom_connections_active{") && !l.contains("protocol=\"metrics\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn wait_until_no_connections(metrics: SocketAddr) {
    let start = Instant::now();
    while open_connections(metrics) != 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "connections still open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Started {
    server: Server,
    metrics: SocketAddr,
    data: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

fn start(listen: &[(&str, String)], extra: &[(&str, &str)]) -> Started {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut env = base_env(&data);
    let replaced: Vec<&str> = listen.iter().map(|(k, _)| *k).chain(extra.iter().map(|(k, _)| *k)).collect();
    env.retain(|(k, _)| k != "MAILROOM_METRICS_LISTEN" && !replaced.contains(&k.as_str()));
    env.push(("MAILROOM_METRICS_LISTEN".into(), metrics.to_string()));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    for (k, v) in listen {
        env.push((k.to_string(), v.clone()));
    }
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    let mut server = Server::start(&env, Some(metrics), &data);
    server.wait_ready(Duration::from_secs(60));
    Started { server, metrics, data, _tmp: tmp }
}

/// dnsmasq for the sender's domain (so the sender-domain check passes) and a DNSBL
/// zone that lists 127.0.0.2 only.
fn start_dns() -> (Dnsmasq, SocketAddr) {
    dnsmasq(&[
        "--local=/test/",
        "--host-record=mx.sender.test,192.0.2.10",
        "--mx-host=sender.test,mx.sender.test,10",
        "--host-record=2.0.0.127.bl.test,127.0.0.2",
    ])
}

/// Port 25 on `:p` trusting `127.0.0.0/8`: IPv4 clients relay and are counted as one
/// address whichever listener form they use; IPv6 clients are untrusted, judged, and
/// recorded as IPv6. (Trusted clients skip SPF/DKIM/DMARC and the DNSBL: those are
/// checked for IPv4 in the next test, where IPv4 is the untrusted family.)
#[test]
fn port_25_dual_stack_trusting_ipv4() {
    if !have_tool("dnsmasq") || !have_tool("python3") {
        return;
    }
    let v6 = have_ipv6();
    let (_dns, dns) = start_dns();
    let (dual, plain) = (free_port(), free_port());
    let rate = RATE.to_string();
    let s = start(
        &[("MAILROOM_SMTP_LISTEN", format!(":{dual},127.0.0.1:{plain}"))],
        &[
            ("MAILROOM_TRUSTED_NETWORKS", "127.0.0.0/8"),
            ("MAILROOM_DNS_SERVERS", &dns.to_string()),
            ("MAILROOM_MAX_CONNECTIONS_PER_IP", "2"),
            ("MAILROOM_CONNECTIONS_PER_MINUTE", &rate),
        ],
    );

    // Trusted-network relay by an IPv4 CIDR, on the dual-stack socket.
    let (code, text) = relay_attempt(lo4(), dual);
    assert_eq!(code, 250, "IPv4 client in 127.0.0.0/8 relays on :{dual}: {text}");
    deliver_to_alice(lo4(), dual, "over ipv4");
    let msg = stored(&s.data, "", "over ipv4");
    assert!(msg.contains("Received: from client.test ([127.0.0.1])"), "{msg}");
    assert!(!msg.contains("::ffff:"), "{msg}");
    if v6 {
        let (code, text) = relay_attempt(lo6(), dual);
        assert_eq!(code, 554, "::1 is not in 127.0.0.0/8: {text}");
        assert!(text.starts_with("5.7.1"), "{text}");
        deliver_to_alice(lo6(), dual, "over ipv6");
        let msg = stored(&s.data, "", "over ipv6");
        assert!(msg.contains("Received: from client.test ([IPv6:::1])"), "{msg}");
        assert!(msg.contains("smtp.remote-ip=\"::1\"") || msg.contains("smtp.remote-ip=::1"), "{msg}");
    }

    // MAILROOM_MAX_CONNECTIONS_PER_IP=2 counts 127.0.0.1 once over both listener forms:
    // the third connection is refused whichever listener it uses.
    wait_until_no_connections(s.metrics);
    let dual4 = SocketAddr::new(lo4(), dual);
    let plain4 = SocketAddr::new(lo4(), plain);
    let (a, greeting) = connect_from(lo4(), plain4);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let (b, greeting) = connect_from(lo4(), dual4);
    assert!(greeting.starts_with("220 "), "{greeting}");
    for to in [dual4, plain4] {
        let (_c, refused) = connect_from(lo4(), to);
        assert!(refused.starts_with("421 4.7.0"), "third connection via {to}: {refused}");
    }
    if v6 {
        let (_d, greeting) = connect_from(lo6(), SocketAddr::new(lo6(), dual));
        assert!(greeting.starts_with("220 "), "::1 is another address: {greeting}");
    }
    drop((a, b));

    // Trusted loopback is exempt from MAILROOM_CONNECTIONS_PER_MINUTE.
    wait_until_no_connections(s.metrics);
    assert_eq!(probe_rate(lo4(), dual4), None, "trusted 127.0.0.1 is never rate-limited");

    let log = s.server.log();
    assert!(!log.contains("::ffff:"), "the mapped form never reaches the logs:\n{log}");
}

/// Port 25 on `:p` trusting only `::1/128`: IPv6 relays, IPv4 does not; IPv4 mail is
/// judged with its IPv4 address (`Received`, `Authentication-Results`, a DNSBL that
/// lists 127.0.0.2 by its octets), and untrusted loopback is held to
/// MAILROOM_CONNECTIONS_PER_MINUTE like any other client.
#[test]
fn port_25_dual_stack_trusting_ipv6() {
    if !have_tool("dnsmasq") || !have_tool("python3") {
        return;
    }
    let v6 = have_ipv6();
    let (_dns, dns) = start_dns();
    let dual = free_port();
    let rate = RATE.to_string();
    let s = start(
        &[("MAILROOM_SMTP_LISTEN", format!(":{dual}"))],
        &[
            ("MAILROOM_TRUSTED_NETWORKS", "::1/128"),
            ("MAILROOM_DNS_SERVERS", &dns.to_string()),
            ("MAILROOM_DNSBL", "bl.test"),
            ("MAILROOM_CONNECTIONS_PER_MINUTE", &rate),
        ],
    );
    let (code, text) = relay_attempt(lo4(), dual);
    assert_eq!(code, 554, "127.0.0.1 is not in ::1/128: {text}");
    if v6 {
        let (code, text) = relay_attempt(lo6(), dual);
        assert_eq!(code, 250, "::1 relays: {text}");
        assert_eq!(probe_rate(lo6(), SocketAddr::new(lo6(), dual)), None, "trusted ::1 is never rate-limited");
    }

    deliver_to_alice(lo4(), dual, "over ipv4");
    let msg = stored(&s.data, "", "over ipv4");
    assert!(msg.contains("Received: from client.test ([127.0.0.1])"), "{msg}");
    assert!(msg.contains("smtp.remote-ip=127.0.0.1"), "{msg}");
    assert!(!msg.contains("::ffff:"), "{msg}");

    // The DNSBL lists 127.0.0.2 (as 2.0.0.127.bl.test): an IPv4 client on the dual-stack
    // port is looked up by its octets and its message goes to Junk.
    let body = "From: app@sender.test\r\nTo: alice@example.com\r\nSubject: listed\r\n\r\nspam\r\n";
    let steps = serde_json::json!([["mail", "app@sender.test"], ["rcpt", "alice@example.com"], ["data", body]]);
    let replies = smtp_session("127.0.0.2".parse().unwrap(), dual, false, steps);
    assert!(replies.iter().all(|r| r.0 == 250), "{replies:?}");
    let junk = stored(&s.data, ".Junk", "listed");
    assert!(junk.contains("127.0.0.2 listed in bl.test (127.0.0.2)"), "{junk}");
    assert!(junk.contains("Received: from client.test ([127.0.0.2])"), "{junk}");

    wait_until_no_connections(s.metrics);
    let refused = probe_rate(lo4(), SocketAddr::new(lo4(), dual)).expect("untrusted 127.0.0.1 is rate-limited");
    assert!(refused.starts_with("421 4.7.0"), "{refused}");
    // The server logs before it answers, but its stderr reaches us through a pipe and a
    // reader thread: wait for the line rather than race it.
    assert!(s.server.wait_log("connection rate limit reached", Duration::from_secs(10)), "{}", s.server.log());
    let log = s.server.log();
    assert!(!log.contains("::ffff:"), "the mapped form never reaches the logs:\n{log}");
}

/// The log line each protocol writes about a client names it canonically.
fn assert_logged(log: &str, what: &str, client: &str) {
    assert!(log.lines().any(|l| l.contains(what) && l.contains(client)), "no {what:?} line naming {client}:\n{log}");
}

/// One IMAPS, POP3S (wrong password each) and SMTPS submission session, by python.
const TLS_CLIENTS: &str = r#"
import sys, ssl, imaplib, poplib, smtplib
host, imaps, pop3s, subs, lmtp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ctx = ssl._create_unverified_context()
i = imaplib.IMAP4_SSL(host, imaps, ssl_context=ctx, timeout=30)
try:
    i.login("alice@example.com", "wrong")
except imaplib.IMAP4.error:
    pass
i.logout()
p = poplib.POP3_SSL(host, pop3s, context=ctx, timeout=30)
p.user("alice@example.com")
try:
    p.pass_("wrong")
except poplib.error_proto:
    pass
p.quit()
s = smtplib.SMTP_SSL(host, subs, context=ctx, timeout=30)
s.login("alice@example.com", "wonderland")
s.sendmail("alice@example.com", ["alice@example.com"], b"From: alice@example.com\r\nSubject: sub\r\n\r\nx\r\n")
s.quit()
l = smtplib.LMTP(host, lmtp, timeout=30)
l.sendmail("app@example.com", ["alice@example.com"], b"From: app@example.com\r\nSubject: lmtp\r\n\r\nx\r\n")
l.quit()
print("done")
"#;

/// IMAP, POP3, submission and LMTP on `:p` see IPv4 clients as `127.0.0.1` (their own
/// log lines say so), and IPv6 clients as `::1`.
#[test]
fn imap_pop3_submission_lmtp_on_dual_stack_log_canonical_clients() {
    if !have_tool("python3") {
        return;
    }
    let v6 = have_ipv6();
    let (imaps, pop3s, subs, lmtp) = (free_port(), free_port(), free_port(), free_port());
    let s = start(
        &[
            ("MAILROOM_IMAPS_LISTEN", format!(":{imaps}")),
            ("MAILROOM_POP3S_LISTEN", format!(":{pop3s}")),
            ("MAILROOM_SUBMISSIONS_LISTEN", format!(":{subs}")),
            ("MAILROOM_LMTP_LISTEN", format!(":{lmtp}")),
        ],
        &[],
    );
    let hosts: &[&str] = if v6 { &["127.0.0.1", "::1"] } else { &["127.0.0.1"] };
    for host in hosts {
        let out = Command::new("python3")
            .args(["-c", TLS_CLIENTS, host])
            .args([imaps, pop3s, subs, lmtp].map(|p| p.to_string()))
            .output()
            .expect("python3");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("done"),
            "{host}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Two accepted messages per client: submission and LMTP.
    let start = Instant::now();
    while s.server.log().matches("stage=\"received\"").count() < 2 * hosts.len() {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", s.server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = s.server.log();
    assert_logged(&log, "login failed protocol=\"imap\"", "client=127.0.0.1 ");
    assert_logged(&log, "login failed protocol=\"pop3\"", "client=127.0.0.1 ");
    assert_logged(&log, "service=\"submissions\" client=127.0.0.1}", "client=\"127.0.0.1\" helo=");
    assert_logged(&log, "service=\"lmtp\" client=127.0.0.1}", "client=\"127.0.0.1\" helo=");
    if v6 {
        assert_logged(&log, "login failed protocol=\"imap\"", "client=::1 ");
        assert_logged(&log, "login failed protocol=\"pop3\"", "client=::1 ");
        assert_logged(&log, "service=\"submissions\" client=::1}", "client=\"::1\" helo=");
        assert_logged(&log, "service=\"lmtp\" client=::1}", "client=\"::1\" helo=");
    }
    assert!(!log.contains("::ffff:"), "the mapped form never reaches the logs:\n{log}");
}

/// A balancer reaching a dual-stack `:p` over IPv4 is matched by an IPv4
/// `MAILROOM_PROXY_PROTOCOL_FROM` CIDR, and a client its header names in the mapped form
/// (a dual-stack balancer's habit) is used as plain IPv4.
#[test]
fn proxy_header_on_dual_stack_port() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut env = base_env(&data);
    env.retain(|(k, _)| k != "MAILROOM_METRICS_LISTEN");
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!(":{port}")));
    env.push(("MAILROOM_PROXY_PROTOCOL_FROM".into(), "127.0.0.0/8".into()));
    env.push(("MAILROOM_LOG".into(), "debug".into()));
    let server = Server::start(&env, None, &data);
    // /readyz needs a header now; wait for the banner instead.
    assert!(server.wait_log("mailroom started", Duration::from_secs(30)), "{}", server.log());

    for (header, client) in [
        (format!("PROXY TCP6 ::ffff:203.0.113.7 ::ffff:127.0.0.1 40000 {port}\r\n"), "client=203.0.113.7:40000"),
        (format!("PROXY TCP4 198.51.100.9 127.0.0.1 41000 {port}\r\n"), "client=198.51.100.9:41000"),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(header.as_bytes()).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{header:?}: {reply}\n{}", server.log());
        assert!(server.wait_log(client, Duration::from_secs(10)), "{client}:\n{}", server.log());
    }
    assert!(!server.log().contains("::ffff:"), "{}", server.log());
}
