//! The outbound queue with the real SMTP client, on loopback: a test DNS server
//! (dnsmasq) publishes `MX remote.test -> mx.remote.test -> 127.0.0.1`, and the "remote MX"
//! is Postfix's `smtp-sink` or a small SMTP server written here that can answer 4xx/5xx
//! on demand, offer STARTTLS and check AUTH PLAIN. Tests that need dnsmasq or smtp-sink
//! skip when they are missing, unless `CI=true`.

mod common;

use common::free_port;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use mailroom::accounts::Address;
use mailroom::config::{RelayHost, RelayMode};
use mailroom::queue::{BounceDisposition, BounceSink, BoxFuture, ItemOptions, Queue, QueueSettings, RemoteBounces};
use mailroom::smtp::client::{ClientSettings, SmtpTransport};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn have(tool: &str) -> bool {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists());
    if !found {
        assert!(!in_ci(), "{tool} is required under CI=true but is not installed");
        eprintln!("skipping: {tool} not installed");
    }
    found
}

/// A child process killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq answering for remote.test (and here.test, where the DSNs go) with our MX.
fn start_dns() -> (common::Dnsmasq, SocketAddr) {
    start_dns_with(&[])
}

fn start_dns_with(extra: &[&str]) -> (common::Dnsmasq, SocketAddr) {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend([
        "--mx-host=remote.test,mx.remote.test,10",
        "--mx-host=here.test,mx.remote.test,10",
        "--mx-host=nomail.test,.,0",
        "--address=/mx.remote.test/127.0.0.1",
    ]);
    common::dnsmasq(&args)
}

// ---------------------------------------------------------------------------------------
// A small remote MX.

#[derive(Clone, Debug)]
struct Received {
    mail_from: String,
    /// The MAIL command's parameters after the address (`SIZE=… REQUIRETLS`).
    mail_params: String,
    rcpts: Vec<String>,
    data: Vec<u8>,
    tls: bool,
    auth: Option<String>,
}

#[derive(Default)]
struct ServerState {
    received: Mutex<Vec<Received>>,
    connections: AtomicUsize,
    greylisted: Mutex<Vec<String>>,
    /// Advertise REQUIRETLS (RFC 8689) once TLS is on.
    requiretls: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Default)]
struct ServerOptions {
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// `user\0password` that AUTH PLAIN must carry; MAIL is refused without it.
    require_auth: Option<(String, String)>,
    /// Behave like an old server: no PIPELINING, and only `AUTH LOGIN`.
    old_fashioned: bool,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn start_mx(options: ServerOptions) -> (Arc<ServerState>, u16) {
    start_mx_on("127.0.0.1:0", options).await
}

async fn start_mx_on(bind: &str, options: ServerOptions) -> (Arc<ServerState>, u16) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(ServerState::default());
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            st.connections.fetch_add(1, Ordering::SeqCst);
            let (st, options) = (st.clone(), options.clone());
            tokio::spawn(async move {
                let _ = session(Box::new(tcp), st, options).await;
            });
        }
    });
    (state, port)
}

async fn read_line(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..pos]).into_owned();
            buf.drain(..pos + 2);
            return Ok(Some(line));
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn session(mut io: Box<dyn Io>, st: Arc<ServerState>, options: ServerOptions) -> std::io::Result<()> {
    io.write_all(b"220 mx.remote.test ESMTP test\r\n").await?;
    let mut buf = Vec::new();
    let (mut tls, mut authed) = (false, None::<String>);
    let mut mail_from = String::new();
    let mut mail_params = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    while let Some(line) = read_line(&mut io, &mut buf).await? {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut r = String::from("250-mx.remote.test\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n");
            if !options.old_fashioned {
                r.push_str("250-PIPELINING\r\n");
            }
            if options.tls.is_some() && !tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if tls && st.requiretls.load(Ordering::SeqCst) {
                r.push_str("250-REQUIRETLS\r\n");
            }
            if tls && options.require_auth.is_some() {
                r.push_str(if options.old_fashioned { "250-AUTH=LOGIN\r\n" } else { "250-AUTH PLAIN LOGIN\r\n" });
            }
            r.push_str("250 ENHANCEDSTATUSCODES\r\n");
            r
        } else if upper == "STARTTLS" && options.tls.is_some() && !tls {
            io.write_all(b"220 2.0.0 go ahead\r\n").await?;
            let acceptor = options.tls.clone().unwrap();
            io = Box::new(acceptor.accept(io).await?);
            tls = true;
            buf.clear();
            continue;
        } else if let Some(token) = upper.strip_prefix("AUTH PLAIN ").map(|_| &line[11..]) {
            let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).unwrap_or_default();
            let parts: Vec<String> =
                decoded.split(|&b| b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            match (&options.require_auth, parts.as_slice()) {
                (Some((u, p)), [_, user, pass]) if user == u && pass == p && tls => {
                    authed = Some(user.clone());
                    "235 2.7.0 authenticated\r\n".into()
                }
                _ => "535 5.7.8 bad credentials\r\n".into(),
            }
        } else if upper == "AUTH LOGIN" {
            let b64 = base64::engine::general_purpose::STANDARD;
            io.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let user = read_line(&mut io, &mut buf).await?.unwrap_or_default();
            io.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let pass = read_line(&mut io, &mut buf).await?.unwrap_or_default();
            let user = String::from_utf8(b64.decode(user.trim()).unwrap_or_default()).unwrap_or_default();
            let pass = String::from_utf8(b64.decode(pass.trim()).unwrap_or_default()).unwrap_or_default();
            match &options.require_auth {
                Some((u, p)) if &user == u && &pass == p && tls => {
                    authed = Some(user);
                    "235 2.7.0 authenticated\r\n".into()
                }
                _ => "535 5.7.8 bad credentials\r\n".into(),
            }
        } else if upper.starts_with("MAIL FROM:") {
            if options.require_auth.is_some() && authed.is_none() {
                "530 5.7.0 authentication required\r\n".into()
            } else {
                let mut words = line[10..].split_whitespace();
                mail_from = words.next().unwrap_or("").to_string();
                mail_params = words.collect::<Vec<_>>().join(" ");
                rcpts.clear();
                "250 2.1.0 ok\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = line[8..].trim().trim_matches(['<', '>']).to_string();
            let local = rcpt.split('@').next().unwrap_or("").to_string();
            match local.as_str() {
                "unknown" => "550 5.1.1 no such user here\r\n".into(),
                "down" => "450 4.2.0 mailbox busy\r\n".into(),
                "greylist" => {
                    let mut g = st.greylisted.lock().unwrap();
                    if g.contains(&rcpt) {
                        rcpts.push(rcpt);
                        "250 2.1.5 ok\r\n".into()
                    } else {
                        g.push(rcpt);
                        "451 4.7.1 greylisted, come back later\r\n".into()
                    }
                }
                _ => {
                    rcpts.push(rcpt);
                    "250 2.1.5 ok\r\n".into()
                }
            }
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                "554 5.5.1 no valid recipients\r\n".into()
            } else {
                io.write_all(b"354 end with .\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let Some(l) = read_line(&mut io, &mut buf).await? else { return Ok(()) };
                    if l == "." {
                        break;
                    }
                    data.extend_from_slice(l.strip_prefix('.').unwrap_or(&l).as_bytes());
                    data.extend_from_slice(b"\r\n");
                }
                st.received.lock().unwrap().push(Received {
                    mail_from: mail_from.clone(),
                    mail_params: mail_params.clone(),
                    rcpts: std::mem::take(&mut rcpts),
                    data,
                    tls,
                    auth: authed.clone(),
                });
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper == "RSET" {
            rcpts.clear();
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            io.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 unknown command\r\n".into()
        };
        io.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The queue under test.

fn a(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn queue_settings(lifetime: Duration) -> QueueSettings {
    QueueSettings {
        hostname: "mx.here.test".into(),
        lifetime,
        retry_min: Duration::from_millis(200),
        retry_max: Duration::from_millis(500),
        delay_warning: None,
        max_concurrency: 8,
        per_domain_concurrency: 1,
    }
}

fn client_settings(dns: Option<SocketAddr>, port: u16) -> ClientSettings {
    ClientSettings {
        hostname: "mx.here.test".into(),
        port,
        relay: None,
        dns_servers: dns.into_iter().collect(),
        extra_roots: Vec::new(),
        connect_timeout: Duration::from_secs(5),
        mta_sts: true,
        mta_sts_port: 443,
        dane: true,
        dnssec_anchors: None,
        route: Arc::new(mailroom::smtp::client::OutboundRoute::any_family()),
    }
}

fn open_queue(dir: &Path, settings: QueueSettings, client: ClientSettings) -> Queue {
    let transport = Arc::new(SmtpTransport::new(client).unwrap());
    Queue::open(dir, settings, transport, Arc::new(RemoteBounces)).unwrap()
}

async fn wait_empty(queue: &Queue, secs: u64) {
    for _ in 0..secs * 20 {
        if queue.list().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("queue not empty after {secs}s: {:#?}", queue.list().await);
}

const MSG: &[u8] = b"From: alice@here.test\r\nTo: bob@remote.test\r\nSubject: outbound test\r\nMessage-ID: <t1@here.test>\r\n\r\nHello.\r\n.leading dot\r\n";

#[tokio::test]
async fn delivers_to_postfix_smtp_sink_found_through_dns() {
    if !have("dnsmasq") || !have("smtp-sink") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let dump = tempfile::tempdir().unwrap();
    let port = free_port();
    let _sink = Proc(
        Command::new("smtp-sink")
            .args(["-u", "root", "-d", &format!("{}/%M.", dump.path().display()), &format!("127.0.0.1:{port}"), "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<t1@here.test>").await.unwrap();
    wait_empty(&queue, 20).await;
    // smtp-sink dumps each transaction (envelope and content) to a file.
    let mut found = String::new();
    for _ in 0..40 {
        for entry in std::fs::read_dir(dump.path()).unwrap() {
            found.push_str(&String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()));
        }
        if found.contains("Subject: outbound test") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found.contains("Subject: outbound test"), "{found}");
    assert!(found.contains("bob@remote.test"), "{found}");
}

#[tokio::test]
async fn greylisted_then_delivered_and_connections_reused() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("greylist@remote.test")], MSG, "<t1@here.test>").await.unwrap();
    for i in 0..3 {
        queue.enqueue(Some(&a("alice@here.test")), &[a(&format!("r{i}@remote.test"))], MSG, "<t>").await.unwrap();
    }
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 4, "{received:#?}");
    let grey = received.iter().find(|r| r.rcpts == ["greylist@remote.test"]).unwrap();
    assert_eq!(grey.mail_from, "<alice@here.test>");
    let text = String::from_utf8_lossy(&grey.data);
    assert!(text.contains("\r\n.leading dot\r\n"), "dot-stuffing undone by the server: {text}");
    // One domain, one worker at a time: later messages reuse the open connection.
    let connections = mx.connections.load(Ordering::SeqCst);
    assert!(connections < 4, "{connections} connections for 4 messages");
}

#[tokio::test]
async fn rejected_recipient_bounces_with_rfc3464_dsn() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue
        .enqueue(Some(&a("alice@here.test")), &[a("unknown@remote.test"), a("bob@remote.test")], MSG, "<t1@here.test>")
        .await
        .unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[0].rcpts, ["bob@remote.test"]);
    let dsn = &received[1];
    assert_eq!(dsn.mail_from, "<>");
    assert_eq!(dsn.rcpts, ["alice@here.test"]);
    let parsed = mail_parser::MessageParser::default().parse(&dsn.data).unwrap();
    assert_eq!(parsed.subject(), Some("Undelivered Mail Returned to Sender"));
    let status = String::from_utf8_lossy(parsed.parts[2].contents()).into_owned();
    assert!(status.contains("Final-Recipient: rfc822; unknown@remote.test"), "{status}");
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 5.1.1"), "{status}");
    assert!(status.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"), "{status}");
    assert!(!status.contains("bob@remote.test"), "{status}");
}

#[tokio::test]
async fn expired_message_bounces() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(1)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("down@remote.test")], MSG, "<t1@here.test>").await.unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:#?}");
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains("Status: 5.4.7"), "{text}");
    assert!(text.contains("450 4.2.0 mailbox busy"), "{text}");
}

#[tokio::test]
async fn restart_with_a_full_queue_delivers_everything() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let queue =
            open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
        for i in 0..6 {
            queue.enqueue(Some(&a("alice@here.test")), &[a(&format!("r{i}@remote.test"))], MSG, "<t>").await.unwrap();
        }
        assert_eq!(queue.list().await.len(), 6);
        // Dropped before any worker ran, as after a crash.
    }
    assert!(mx.received.lock().unwrap().is_empty());
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    wait_empty(&queue, 20).await;
    let mut got: Vec<String> = mx.received.lock().unwrap().iter().flat_map(|r| r.rcpts.clone()).collect();
    got.sort();
    assert_eq!(got, (0..6).map(|i| format!("r{i}@remote.test")).collect::<Vec<_>>());
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn test_tls() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    test_tls_for(&["127.0.0.1", "localhost"])
}

/// A CA and a server certificate for `names` signed by it.
fn test_tls_for(names: &[&str]) -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "mailroom test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.der().clone())
}

#[tokio::test]
async fn smarthost_requires_tls_and_authenticates() {
    let (acceptor, ca) = test_tls();
    let options = ServerOptions {
        tls: Some(acceptor),
        require_auth: Some(("relayuser".into(), "s3cret pass".into())),
        old_fashioned: false,
    };
    let (mx, port) = start_mx(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(None, 1);
    client.mta_sts = false;
    client.extra_roots = vec![ca];
    client.relay = Some(RelayHost {
        mode: RelayMode::StartTls,
        host: "127.0.0.1".into(),
        port,
        username: Some("relayuser".into()),
        password: Some("s3cret pass".into()),
    });
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue
        .enqueue(Some(&a("alice@here.test")), &[a("bob@anywhere.example"), a("carol@elsewhere.example")], MSG, "<t1>")
        .await
        .unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    let mut rcpts: Vec<String> = received.iter().flat_map(|r| r.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["bob@anywhere.example", "carol@elsewhere.example"]);
    for r in &received {
        assert!(r.tls, "relay traffic must be encrypted");
        assert_eq!(r.auth.as_deref(), Some("relayuser"));
    }
}

#[tokio::test]
async fn smarthost_with_untrusted_certificate_is_deferred_not_sent() {
    let (acceptor, _ca) = test_tls();
    let options =
        ServerOptions { tls: Some(acceptor), require_auth: Some(("u".into(), "p".into())), old_fashioned: false };
    let (mx, port) = start_mx(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(None, 1);
    client.mta_sts = false;
    client.relay = Some(RelayHost {
        mode: RelayMode::StartTls,
        host: "127.0.0.1".into(),
        port,
        username: Some("u".into()),
        password: Some("p".into()),
    });
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    let id = queue.enqueue(Some(&a("alice@here.test")), &[a("bob@anywhere.example")], MSG, "<t1>").await.unwrap();
    for _ in 0..100 {
        if queue.show(&id).await.is_some_and(|d| d.envelope.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let detail = queue.show(&id).await.unwrap();
    let reply = detail.envelope.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(reply.starts_with("4.7.5"), "{reply}");
    assert!(mx.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn opportunistic_starttls_accepts_any_certificate() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    // A certificate from a CA the client has never heard of, for the wrong name.
    let (acceptor, _unknown_ca) = test_tls_for(&["wrong.example"]);
    let (mx, port) = start_mx(ServerOptions { tls: Some(acceptor), require_auth: None, old_fashioned: false }).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<t1>").await.unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls, "STARTTLS offered, so it must be used");
}

/// An HTTPS server answering every request with `policy` (the MTA-STS policy host).
async fn start_policy_server(acceptor: tokio_rustls::TlsAcceptor, policy: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&got);
                assert!(request.starts_with("GET /.well-known/mta-sts.txt HTTP/1."), "{request}");
                let response = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{policy}",
                    policy.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// Keeps a copy of each DSN, then lets the queue send it on as [`RemoteBounces`] does.
struct RecordedBounces(Arc<Mutex<Vec<Vec<u8>>>>);

impl BounceSink for RecordedBounces {
    fn bounce<'a>(&'a self, _to: &'a Address, dsn: &'a [u8]) -> BoxFuture<'a, Result<BounceDisposition, String>> {
        self.0.lock().unwrap().push(dsn.to_vec());
        Box::pin(async { Ok(BounceDisposition::Remote) })
    }
}

/// Everything one MTA-STS case keeps alive.
struct StsCase {
    mx: Arc<ServerState>,
    /// The DSNs the queue produced (they also go on through the queue).
    dsns: Arc<Mutex<Vec<Vec<u8>>>>,
    queue: Queue,
    id: mailroom::queue::QueueId,
    _dns: common::Dnsmasq,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn mta_sts_case(policy: &'static str) -> StsCase {
    mta_sts_case_with(policy, ItemOptions::default(), false, MSG).await
}

/// An MTA-STS case whose MX advertises REQUIRETLS or not, for a message sent with
/// `options`.
async fn mta_sts_case_with(
    policy: &'static str,
    options: ItemOptions,
    advertise_requiretls: bool,
    message: &[u8],
) -> StsCase {
    let (acceptor, ca) = test_tls_for(&["mx.remote.test", "mta-sts.remote.test"]);
    let (dns, dns_addr) = start_dns_with(&[
        "--txt-record=_mta-sts.remote.test,v=STSv1; id=20261127",
        "--address=/mta-sts.remote.test/127.0.0.1",
    ]);
    let https = start_policy_server(acceptor.clone(), policy).await;
    let (mx, port) = start_mx(ServerOptions { tls: Some(acceptor), require_auth: None, old_fashioned: false }).await;
    mx.requiretls.store(advertise_requiretls, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(Some(dns_addr), port);
    client.extra_roots = vec![ca];
    client.mta_sts_port = https;
    let dsns = Arc::new(Mutex::new(Vec::new()));
    let transport = Arc::new(SmtpTransport::new(client).unwrap());
    let sink = Arc::new(RecordedBounces(dsns.clone()));
    let queue = Queue::open(dir.path(), queue_settings(Duration::from_secs(60)), transport, sink).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    let parts = vec![bytes::Bytes::copy_from_slice(message)];
    let id =
        queue.enqueue_with(Some(&a("alice@here.test")), &[a("bob@remote.test")], parts, "<t1>", options).await.unwrap();
    StsCase { mx, dsns, queue, id, _dns: dns, _dir: dir, _stop: stop }
}

#[tokio::test]
async fn mta_sts_enforce_delivers_over_verified_tls() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    let case = mta_sts_case(policy).await;
    wait_empty(&case.queue, 20).await;
    let received = case.mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
}

#[tokio::test]
async fn mta_sts_enforce_refuses_an_mx_outside_the_policy() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: *.other.test\r\nmax_age: 86400\r\n";
    let StsCase { mx, queue, id, .. } = &mta_sts_case(policy).await;
    for _ in 0..200 {
        if queue.show(id).await.is_some_and(|d| d.envelope.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let detail = queue.show(id).await.unwrap();
    let reply = detail.envelope.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(reply.starts_with("4.7.5") && reply.contains("MTA-STS"), "{reply}");
    assert!(mx.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn smarthost_without_pipelining_using_auth_login() {
    let (acceptor, ca) = test_tls();
    let options =
        ServerOptions { tls: Some(acceptor), require_auth: Some(("old".into(), "timer".into())), old_fashioned: true };
    let (mx, port) = start_mx(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(None, 1);
    client.mta_sts = false;
    client.extra_roots = vec![ca];
    client.relay = Some(RelayHost {
        mode: RelayMode::StartTls,
        host: "127.0.0.1".into(),
        port,
        username: Some("old".into()),
        password: Some("timer".into()),
    });
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue
        .enqueue(
            Some(&a("alice@here.test")),
            &[a("bob@remote.test"), a("unknown@remote.test"), a("carol@remote.test")],
            MSG,
            "<t1>",
        )
        .await
        .unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    // The message itself, then the DSN for unknown@ (also through the relay).
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[0].rcpts, ["bob@remote.test", "carol@remote.test"]);
    assert_eq!(received[0].auth.as_deref(), Some("old"));
    assert_eq!(received[1].mail_from, "<>");
    assert!(String::from_utf8_lossy(&received[1].data).contains("unknown@remote.test"));
}

#[tokio::test]
async fn unreachable_first_mx_falls_back_to_the_next_over_ipv6() {
    if !have("dnsmasq") {
        return;
    }
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        assert!(!in_ci(), "IPv6 loopback is required under CI=true");
        eprintln!("skipping: no IPv6 loopback");
        return;
    }
    let (_dns, dns_addr) = start_dns_with(&[
        "--mx-host=fallback.test,dead.fallback.test,5",
        "--mx-host=fallback.test,v6.fallback.test,10",
        "--address=/dead.fallback.test/127.0.0.2",
        "--address=/v6.fallback.test/::1",
    ]);
    // Nothing listens on 127.0.0.2 at this port: the preferred MX refuses connections.
    let (mx, port) = start_mx_on("[::1]:0", ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("dave@fallback.test")], MSG, "<t1>").await.unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpts, ["dave@fallback.test"]);
}

#[tokio::test]
async fn null_mx_bounces_at_once() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("eve@nomail.test")], MSG, "<t1>").await.unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "only the DSN reaches a server: {received:#?}");
    assert_eq!(received[0].rcpts, ["alice@here.test"]);
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains("Final-Recipient: rfc822; eve@nomail.test"), "{text}");
    assert!(text.contains("Status: 5.1.10"), "{text}");
}

// ---------------------------------------------------------------------------------------
// RFC 8689 REQUIRETLS.

const REQUIRETLS: ItemOptions = ItemOptions { require_tls: true };

/// The original fails for good at its first attempt with 5.7.30 and `why`, and never
/// reaches the MX.
async fn bounced_with(case: &StsCase, why: &str) {
    for _ in 0..200 {
        if case.queue.show(&case.id).await.is_none_or(|d| d.envelope.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut dsn = String::new();
    for _ in 0..200 {
        if let Some(d) = case.dsns.lock().unwrap().first() {
            dsn = String::from_utf8_lossy(d).into_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dsn.contains("Status: 5.7.30") && dsn.contains(why), "{dsn}");
    assert!(case.mx.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn requiretls_goes_over_verified_tls_to_a_server_that_keeps_it() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: testing\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    let case = mta_sts_case_with(policy, REQUIRETLS, true, MSG).await;
    wait_empty(&case.queue, 20).await;
    let received = case.mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    assert!(received[0].mail_params.split(' ').any(|p| p == "REQUIRETLS"), "{:?}", received[0].mail_params);
}

#[tokio::test]
async fn requiretls_bounces_when_the_server_does_not_support_it() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    let case = mta_sts_case_with(policy, REQUIRETLS, false, MSG).await;
    bounced_with(&case, "does not support REQUIRETLS").await;
}

#[tokio::test]
async fn requiretls_bounces_when_no_policy_validates_the_mx() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: none\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    let case = mta_sts_case_with(policy, REQUIRETLS, true, MSG).await;
    bounced_with(&case, "cannot be validated").await;
}

/// `TLS-Required: No` (RFC 8689 section 5): the recipient's enforced policy, which
/// excludes this MX, does not stop the message.
#[tokio::test]
async fn tls_required_no_waives_an_enforced_policy() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: *.other.test\r\nmax_age: 86400\r\n";
    let message = b"From: alice@here.test\r\nTo: bob@remote.test\r\nTLS-Required: No\r\nSubject: alert\r\n\r\nThe certificate expired.\r\n";
    let case = mta_sts_case_with(policy, ItemOptions::default(), false, message).await;
    wait_empty(&case.queue, 20).await;
    let received = case.mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(!received[0].mail_params.contains("REQUIRETLS"));
}
