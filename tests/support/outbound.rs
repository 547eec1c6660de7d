//! What the outbound tests share (tests/it/queue.rs, tests/it/outbound_tls.rs): a test DNS
//! server (dnsmasq) publishing `MX remote.test -> mx.remote.test -> 127.0.0.1`, a small
//! remote MX written here that can answer 4xx/5xx on demand, offer STARTTLS (and
//! REQUIRETLS) and check AUTH, test certificates, an MTA-STS policy server, and a queue
//! wired to the real SMTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use mailroom::accounts::Address;
use mailroom::queue::{BounceDisposition, BounceSink, BoxFuture, ItemOptions, Queue, QueueSettings, RemoteBounces};
use mailroom::smtp::client::{ClientSettings, SmtpTransport};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn have(tool: &str) -> bool {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists());
    if !found {
        assert!(!in_ci(), "{tool} is required under CI=true but is not installed");
        eprintln!("skipping: {tool} not installed");
    }
    found
}

/// A child process killed on drop.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq answering for remote.test (and here.test, where the DSNs go) with our MX.
pub fn start_dns() -> (common::Dnsmasq, SocketAddr) {
    start_dns_with(&[])
}

pub fn start_dns_with(extra: &[&str]) -> (common::Dnsmasq, SocketAddr) {
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
pub struct Received {
    pub mail_from: String,
    /// The MAIL command's parameters after the address (`SIZE=… REQUIRETLS`).
    pub mail_params: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    pub tls: bool,
    pub auth: Option<String>,
}

#[derive(Default)]
pub struct ServerState {
    pub received: Mutex<Vec<Received>>,
    pub connections: AtomicUsize,
    pub greylisted: Mutex<Vec<String>>,
    /// Advertise REQUIRETLS (RFC 8689) once TLS is on.
    pub requiretls: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Default)]
pub struct ServerOptions {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `user\0password` that AUTH PLAIN must carry; MAIL is refused without it.
    pub require_auth: Option<(String, String)>,
    /// Behave like an old server: no PIPELINING, and only `AUTH LOGIN`.
    pub old_fashioned: bool,
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub async fn start_mx(options: ServerOptions) -> (Arc<ServerState>, u16) {
    start_mx_on("127.0.0.1:0", options).await
}

pub async fn start_mx_on(bind: &str, options: ServerOptions) -> (Arc<ServerState>, u16) {
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

pub async fn read_line(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> std::io::Result<Option<String>> {
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

pub async fn session(mut io: Box<dyn Io>, st: Arc<ServerState>, options: ServerOptions) -> std::io::Result<()> {
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

pub fn a(s: &str) -> Address {
    Address::parse(s).unwrap()
}

pub fn queue_settings(lifetime: Duration) -> QueueSettings {
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

pub fn client_settings(dns: Option<SocketAddr>, port: u16) -> ClientSettings {
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
        tls_recorder: None,
    }
}

pub fn open_queue(dir: &Path, settings: QueueSettings, client: ClientSettings) -> Queue {
    let transport = Arc::new(SmtpTransport::new(client).unwrap());
    Queue::open(dir, settings, transport, Arc::new(RemoteBounces)).unwrap()
}

pub async fn wait_empty(queue: &Queue, secs: u64) {
    for _ in 0..secs * 20 {
        if queue.list().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("queue not empty after {secs}s: {:#?}", queue.list().await);
}

pub const MSG: &[u8] = b"From: alice@here.test\r\nTo: bob@remote.test\r\nSubject: outbound test\r\nMessage-ID: <t1@here.test>\r\n\r\nHello.\r\n.leading dot\r\n";

pub fn test_tls() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    test_tls_for(&["127.0.0.1", "localhost"])
}

/// A CA and a server certificate for `names` signed by it.
pub fn test_tls_for(names: &[&str]) -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    let (acceptor, ca, _) = test_tls_chain(names);
    (acceptor, ca)
}

/// [`test_tls_for`], also giving the server's own certificate (DANE-EE records hash it).
pub fn test_tls_chain(names: &[&str]) -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>, CertificateDer<'static>) {
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
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.der().clone(), leaf.der().clone())
}

/// An HTTPS server answering every request with `policy` (the MTA-STS policy host).
pub async fn start_policy_server(acceptor: tokio_rustls::TlsAcceptor, policy: &'static str) -> u16 {
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
pub struct RecordedBounces(pub Arc<Mutex<Vec<Vec<u8>>>>);

impl BounceSink for RecordedBounces {
    fn bounce<'a>(&'a self, _to: &'a Address, dsn: &'a [u8]) -> BoxFuture<'a, Result<BounceDisposition, String>> {
        self.0.lock().unwrap().push(dsn.to_vec());
        Box::pin(async { Ok(BounceDisposition::Remote) })
    }
}

/// The TLS-report events the client emitted (`TlsRecorder`), in order.
#[derive(Debug, Default)]
pub struct TlsLog(pub Mutex<Vec<mailroom::smtp::client::tls_outcome::TlsOutcome>>);

impl mailroom::smtp::client::tls_outcome::TlsRecorder for TlsLog {
    fn tls_outcome(&self, outcome: mailroom::smtp::client::tls_outcome::TlsOutcome) {
        self.0.lock().unwrap().push(outcome);
    }
}

/// Everything one MTA-STS case keeps alive.
pub struct StsCase {
    pub mx: Arc<ServerState>,
    /// What the client reported of its TLS sessions.
    pub tls: Arc<TlsLog>,
    /// The DSNs the queue produced (they also go on through the queue).
    pub dsns: Arc<Mutex<Vec<Vec<u8>>>>,
    pub queue: Queue,
    pub id: mailroom::queue::QueueId,
    pub _dns: common::Dnsmasq,
    pub _dir: tempfile::TempDir,
    pub _stop: tokio::sync::watch::Sender<bool>,
}

pub async fn mta_sts_case(policy: &'static str) -> StsCase {
    mta_sts_case_with(policy, ItemOptions::default(), false, MSG).await
}

/// An MTA-STS case whose MX advertises REQUIRETLS or not, for a message sent with
/// `options`.
pub async fn mta_sts_case_with(
    policy: &'static str,
    options: ItemOptions,
    advertise_requiretls: bool,
    message: &[u8],
) -> StsCase {
    mta_sts_case_trusting(policy, options, advertise_requiretls, message, PolicyHost::Trusted).await
}

/// How the client reaches the MTA-STS policy host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PolicyHost {
    /// Its certificate's CA is trusted.
    Trusted,
    /// Its CA is not: the fetch fails on the certificate.
    Untrusted,
    /// Nothing listens where it should be.
    Down,
}

/// [`mta_sts_case_with`], reaching the policy host as `host` says.
pub async fn mta_sts_case_trusting(
    policy: &'static str,
    options: ItemOptions,
    advertise_requiretls: bool,
    message: &[u8],
    host: PolicyHost,
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
    if host != PolicyHost::Untrusted {
        client.extra_roots = vec![ca];
    }
    client.mta_sts_port = if host == PolicyHost::Down { common::free_port() } else { https };
    let tls = Arc::new(TlsLog::default());
    client.tls_recorder = Some(tls.clone());
    let dsns = Arc::new(Mutex::new(Vec::new()));
    let transport = Arc::new(SmtpTransport::new(client).unwrap());
    let sink = Arc::new(RecordedBounces(dsns.clone()));
    let queue = Queue::open(dir.path(), queue_settings(Duration::from_secs(60)), transport, sink).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    let parts = vec![bytes::Bytes::copy_from_slice(message)];
    let id =
        queue.enqueue_with(Some(&a("alice@here.test")), &[a("bob@remote.test")], parts, "<t1>", options).await.unwrap();
    StsCase { mx, tls, dsns, queue, id, _dns: dns, _dir: dir, _stop: stop }
}
