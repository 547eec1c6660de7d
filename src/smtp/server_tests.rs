//! Transcript tests over real sockets on 127.0.0.1:0: raw bytes in, reply lines out,
//! files in the Maildir checked afterwards. External clients (Python smtplib, swaks) are
//! in `server_client_tests.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::accounts::{Directory, parse_accounts, parse_aliases};
use crate::smtp::policy::StaticDomains;

pub(super) struct Harness {
    pub addr: SocketAddr,
    /// The data dir (a temp dir unless `Options::data_dir` named one).
    pub root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub client_tls: Option<tokio_rustls::TlsConnector>,
    _stop: watch::Sender<bool>,
}

pub(super) struct Options {
    pub mode: SmtpMode,
    pub limits: SmtpLimits,
    pub tls: bool,
    pub trusted: Vec<IpNet>,
    /// Use this data dir instead of a fresh temp dir (durability test restarts).
    pub data_dir: Option<PathBuf>,
    /// The outbound queue for remote copies (none: they get 451).
    pub queue: Option<crate::queue::Queue>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: SmtpMode::Mx,
            limits: SmtpLimits::default(),
            tls: true,
            trusted: Vec::new(),
            data_dir: None,
            queue: None,
        }
    }
}

fn tls_pair() -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap_or_else(|e| panic!("rcgen: {e}"));
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(vec![cert.clone()], key.into()))
        .unwrap_or_else(|e| panic!("server config: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap_or_else(|e| panic!("root: {e}"));
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|e| panic!("client config: {e}"));
    (tokio_rustls::TlsAcceptor::from(Arc::new(server)), tokio_rustls::TlsConnector::from(Arc::new(client)))
}

/// Start a server for `ours.example` with alice, bob (quota 1 byte, so always full once
/// he has mail: we pre-fill), aliases `team` (alice+bob) and `fwd` (remote).
pub(super) async fn start(opts: Options) -> Harness {
    let (root, tmp) = match opts.data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            (t.path().to_path_buf(), Some(t))
        }
    };
    let accounts =
        parse_accounts("alice@ours.example:{PLAIN}pw\nbob@ours.example:{PLAIN}pw\nfull@ours.example:{PLAIN}pw:1K")
            .unwrap_or_else(|e| panic!("{e:?}"));
    let aliases =
        parse_aliases("team@ours.example:alice@ours.example bob@ours.example\nfwd@ours.example:someone@remote.example")
            .unwrap_or_else(|e| panic!("{e:?}"));
    let directory = Directory::new(vec!["ours.example".into()], accounts, aliases).unwrap_or_else(|e| panic!("{e:?}"));
    let store = Store::open(&root, "mx.ours.example").unwrap_or_else(|e| panic!("{e}"));
    // Fill full@ beyond its 1 KiB quota.
    let filler = crate::store::MessageBody::Memory(bytes::Bytes::from(vec![b'x'; 4096]));
    let owner = crate::store::MailboxOwner::new("full", "ours.example");
    let _ = store
        .deliver(
            &filler,
            &[crate::store::LocalDelivery {
                owner,
                folder: "INBOX".into(),
                header_prefix: Vec::new(),
                flags: Vec::new(),
            }],
        )
        .await;
    let (acceptor, connector) = tls_pair();
    let directory = Arc::new(directory);
    let courier = crate::smtp::courier::LocalCourier::new(directory.clone(), store.clone());
    let ctx = Arc::new(SmtpContext {
        hostname: "mx.ours.example".into(),
        directory,
        store,
        tls: opts.tls.then_some(acceptor),
        limits: opts.limits,
        trusted_networks: opts.trusted,
        sender_domains: Arc::new(StaticDomains {
            not_found: vec!["nxdomain.example".into()],
            failing: vec!["dnsfail.example".into()],
        }),
        spool_dir: root.join("state/spool"),
        mode: opts.mode,
        implicit_tls: false,
        queue: opts.queue,
        signers: None,
        limiter: Arc::new(crate::net::Limiter::new(crate::net::LimiterConfig::default(), vec![])),
        inbound: None,
        memory: crate::net::MessageMemory::default(),
        courier,
        recent: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (stop, rx) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((s, peer)) = listener.accept().await {
            tokio::spawn(serve_connection(ctx.clone(), s, peer, rx.clone()));
        }
    });
    Harness { addr, root, _tmp: tmp, client_tls: opts.tls.then_some(connector), _stop: stop }
}

impl Harness {
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join("mail/ours.example").join(user).join("new")
    }

    /// Messages delivered to `user`, oldest name first.
    pub fn messages(&self, user: &str) -> Vec<String> {
        messages_in(&self.maildir(user))
    }

    pub async fn connect(&self) -> Client<TcpStream> {
        let s = TcpStream::connect(self.addr).await.unwrap_or_else(|e| panic!("{e}"));
        let mut c = Client { r: BufReader::new(s) };
        let banner = c.reply().await;
        assert_eq!(banner, "220 mx.ours.example ESMTP");
        c
    }
}

pub(super) fn messages_in(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files.iter().map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()).collect()
}

pub(super) struct Client<S> {
    pub r: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).await.unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// One complete reply, lines joined with `\n`, without CRLF ("" on EOF).
    pub async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
                .await
                .unwrap_or_else(|_| panic!("no reply within 10 s; so far {lines:?}"));
            match read {
                Ok(0) | Err(_) => return lines.join("\n"),
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let done = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if done {
                return lines.join("\n");
            }
        }
    }

    /// Send a line and return the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Send a line and assert the reply.
    pub async fn expect(&mut self, line: &str, expected: &str) {
        let got = self.cmd(line).await;
        assert_eq!(got, expected, "after {line:?}");
    }

    /// Read `n` replies.
    pub async fn replies(&mut self, n: usize) -> Vec<String> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.reply().await);
        }
        v
    }

    /// True when the server closed the connection.
    pub async fn closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

const EHLO_REPLY: &str = "250-mx.ours.example\n250-PIPELINING\n250-SIZE 26214400\n250-8BITMIME\n\
                          250-SMTPUTF8\n250-ENHANCEDSTATUSCODES\n250-STARTTLS\n250 CHUNKING";

pub(super) fn queued(reply: &str) -> bool {
    reply.starts_with("250 2.0.0 Ok: queued as ") && reply.len() == "250 2.0.0 Ok: queued as ".len() + 12
}

#[tokio::test]
async fn one_message_lands_in_the_maildir_with_trace_headers() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    assert_eq!(c.cmd("EHLO client.example").await, EHLO_REPLY);
    c.expect("MAIL FROM:<Bob@Remote.example>", "250 2.1.0 Ok").await;
    c.expect("RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    c.expect("DATA", "354 End data with <CR><LF>.<CR><LF>").await;
    c.send(b"Subject: hello\r\n\r\n..dot\r\nline\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(queued(&r), "{r}");
    let id = &r["250 2.0.0 Ok: queued as ".len()..];
    c.expect("QUIT", "221 2.0.0 mx.ours.example closing connection").await;
    let msgs = h.messages("alice");
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert!(m.starts_with("Return-Path: <Bob@Remote.example>\r\nDelivered-To: alice@ours.example\r\n"), "{m}");
    assert!(
        m.contains("Received: from client.example ([127.0.0.1])\r\n\tby mx.ours.example (mailroom) with ESMTP id "),
        "{m}"
    );
    assert!(m.contains(id), "message id {id} in Received: {m}");
    assert!(m.ends_with("Subject: hello\r\n\r\n.dot\r\nline\r\n"), "{m}");
}

#[tokio::test]
async fn pipelined_batch_is_answered_in_order() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.send(
        b"EHLO client.example\r\nMAIL FROM:<bob@remote.example>\r\nRCPT TO:<alice@ours.example>\r\n\
          RCPT TO:<nobody@ours.example>\r\nRCPT TO:<team@ours.example>\r\nDATA\r\n",
    )
    .await;
    let r = c.replies(6).await;
    assert_eq!(r[0], EHLO_REPLY);
    assert_eq!(r[1], "250 2.1.0 Ok");
    assert_eq!(r[2], "250 2.1.5 Ok");
    assert_eq!(r[3], "550 5.1.1 <nobody@ours.example>: Recipient address rejected: User unknown");
    assert_eq!(r[4], "250 2.1.5 Ok");
    assert_eq!(r[5], "354 End data with <CR><LF>.<CR><LF>");
    // End of data, next transaction and QUIT in one packet.
    c.send(b"hi\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<bob@ours.example>\r\nDATA\r\n").await;
    let r = c.replies(4).await;
    assert!(queued(&r[0]), "{r:?}");
    assert_eq!(r[1..], ["250 2.1.0 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>"]);
    c.send(b"second\r\n.\r\nQUIT\r\n").await;
    let r = c.replies(2).await;
    assert!(queued(&r[0]), "{r:?}");
    // alice once (direct + via team: one copy), bob twice (team, then direct).
    assert_eq!(h.messages("alice").len(), 1);
    assert_eq!(h.messages("bob").len(), 2);
}

#[tokio::test]
async fn bdat_chunks_are_exact() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.cmd("EHLO c").await;
    // BDAT before MAIL: the 8 octets are swallowed, then 503 — no desync.
    c.send(b"BDAT 8\r\nRSET\r\n\r\n").await;
    assert_eq!(c.reply().await, "503 5.5.1 Error: need MAIL command");
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<alice@ours.example>\r\nBDAT 12\r\nSubject: x\r\nBDAT 9 LAST\r\n\r\n.\r\nbody")
        .await;
    let r = c.replies(4).await;
    assert_eq!(r[..3], ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.0.0 12 octets received"]);
    assert!(queued(&r[3]), "{r:?}");
    let m = &h.messages("alice")[0];
    assert!(m.ends_with("+0000\r\nSubject: x\r\n\r\n.\r\nbody"), "{m:?}");
    c.expect("NOOP", "250 2.0.0 Ok").await;
}

#[tokio::test]
async fn size_limits() {
    let limits = SmtpLimits { max_message_size: 100, ..SmtpLimits::default() };
    let h = start(Options { limits, ..Options::default() }).await;
    let mut c = h.connect().await;
    let ehlo = c.cmd("EHLO c").await;
    assert!(ehlo.contains("250-SIZE 100\n"), "{ehlo}");
    c.expect("MAIL FROM:<> SIZE=101", "552 5.3.4 Error: message size exceeds fixed limit").await;
    c.expect("MAIL FROM:<> SIZE=100", "250 2.1.0 Ok").await;
    c.expect("RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    c.expect("DATA", "354 End data with <CR><LF>.<CR><LF>").await;
    let big = format!("{}\r\nMAIL FROM:<x@y>\r\n.\r\n", "x".repeat(5000));
    c.send(big.as_bytes()).await;
    assert_eq!(c.reply().await, "552 5.3.4 Error: message size exceeds fixed limit");
    // Still in step: the text after the big body was content, not commands.
    c.expect("MAIL FROM:<>", "250 2.1.0 Ok").await;
    assert!(h.messages("alice").is_empty());
}

#[tokio::test]
async fn long_command_lines_and_too_many_errors() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.cmd("EHLO c").await;
    let long = format!("NOOP {}\r\n", "x".repeat(3000));
    c.send(long.as_bytes()).await;
    assert_eq!(c.reply().await, "500 5.5.2 Error: line too long");
    c.expect("NOOP", "250 2.0.0 Ok").await;
    for _ in 0..8 {
        c.expect("XYZZY", "500 5.5.2 Error: command not recognized").await;
    }
    c.send(b"XYZZY\r\n").await;
    assert_eq!(
        c.replies(2).await,
        ["500 5.5.2 Error: command not recognized", "421 4.7.0 mx.ours.example Error: too many errors"]
    );
    assert!(c.closed().await);
}

#[tokio::test]
async fn command_timeout_gets_421() {
    let limits = SmtpLimits { command_timeout: Duration::from_millis(200), ..SmtpLimits::default() };
    let h = start(Options { limits, ..Options::default() }).await;
    let mut c = h.connect().await;
    assert_eq!(c.reply().await, "421 4.4.2 mx.ours.example Error: timeout exceeded");
    assert!(c.closed().await);
}

/// Each smuggling variant must stay inside the first message: one message delivered,
/// the fake second transaction is body text with CRLF line ends.
#[tokio::test]
async fn smuggling_variants_are_content() {
    let h = start(Options::default()).await;
    for (i, sep) in ["\n.\n", "\n.\r\n", "\r.\r", "\r\n.\n"].iter().enumerate() {
        let mut c = h.connect().await;
        c.cmd("EHLO c").await;
        c.cmd("MAIL FROM:<bob@remote.example>").await;
        c.cmd("RCPT TO:<alice@ours.example>").await;
        c.cmd("DATA").await;
        let body = format!(
            "Subject: {i}\r\n\r\nhello{sep}MAIL FROM:<admin@ours.example>\r\nRCPT TO:<bob@ours.example>\r\nDATA\r\nsmuggled\r\n.\r\n"
        );
        c.send(body.as_bytes()).await;
        let r = c.reply().await;
        assert!(queued(&r), "{sep:?}: {r}");
        c.expect("QUIT", "221 2.0.0 mx.ours.example closing connection").await;
    }
    let msgs = h.messages("alice");
    assert_eq!(msgs.len(), 4);
    for m in &msgs {
        assert!(
            m.contains("\r\nMAIL FROM:<admin@ours.example>\r\nRCPT TO:<bob@ours.example>\r\nDATA\r\nsmuggled\r\n"),
            "{m:?}"
        );
        let body = &m[m.find("\r\n\r\n").unwrap_or(0)..];
        assert!(!body.replace("\r\n", "").contains(['\r', '\n']), "bare newline stored: {m:?}");
    }
    assert!(h.messages("bob").is_empty(), "smuggled message delivered");
}

#[tokio::test]
async fn relay_attempts_are_refused() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.cmd("EHLO c").await;
    c.cmd("MAIL FROM:<bob@remote.example>").await;
    c.expect("RCPT TO:<victim@remote.example>", "554 5.7.1 <victim@remote.example>: Relay access denied").await;
    c.expect(
        "RCPT TO:<victim%remote.example@ours.example>",
        "550 5.1.1 <victim%remote.example@ours.example>: Recipient address rejected: User unknown",
    )
    .await;
    c.expect(
        "RCPT TO:<@ours.example:victim@remote.example>",
        "501 5.1.3 Bad recipient address syntax: source routes (@host:…) are not accepted",
    )
    .await;
    c.expect(
        "RCPT TO:<\"victim@remote.example\"@ours.example>",
        "501 5.1.3 Bad recipient address syntax: quoted local part contains @",
    )
    .await;
    // A harmless quoted local part is just alice.
    c.expect("RCPT TO:<\"alice\"@ours.example>", "250 2.1.5 Ok").await;
    // An alias with a remote target needs the queue: temporary, so nothing is lost.
    c.expect(
        "RCPT TO:<fwd@ours.example>",
        "451 4.3.0 <fwd@ours.example>: Forwarding to remote addresses is not available yet, try again later",
    )
    .await;
    c.expect("RCPT TO:<full@ours.example>", "452 4.2.2 <full@ours.example>: Mailbox full, try again later").await;
    c.expect("RCPT TO:<Postmaster>", "250 2.1.5 Ok").await;
}

#[tokio::test]
async fn trusted_networks_may_relay_once_the_queue_exists() {
    let trusted = vec!["127.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))];
    let h = start(Options { trusted, ..Options::default() }).await;
    let mut c = h.connect().await;
    c.cmd("EHLO c").await;
    // Trusted: sender domain not checked, relay not denied (but no queue yet: 451).
    c.expect("MAIL FROM:<x@nxdomain.example>", "250 2.1.0 Ok").await;
    c.expect(
        "RCPT TO:<someone@remote.example>",
        "451 4.3.0 <someone@remote.example>: Forwarding to remote addresses is not available yet, try again later",
    )
    .await;
}

#[tokio::test]
async fn sender_domains_are_checked() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.cmd("EHLO c").await;
    c.expect(
        "MAIL FROM:<x@nxdomain.example>",
        "550 5.1.8 <x@nxdomain.example>: Sender address rejected: Domain not found",
    )
    .await;
    c.expect(
        "MAIL FROM:<x@dnsfail.example>",
        "450 4.1.8 <x@dnsfail.example>: Sender address rejected: Domain lookup failed",
    )
    .await;
    c.expect("MAIL FROM:<>", "250 2.1.0 Ok").await;
}

/// STARTTLS on `c` (after its EHLO) and return the TLS client.
pub(super) async fn upgrade(
    h: &Harness,
    mut c: Client<TcpStream>,
) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
    assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready to start TLS");
    let tcp = c.r.into_inner();
    let connector = h.client_tls.clone().unwrap_or_else(|| panic!("tls"));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
    let tls = connector.connect(name, tcp).await.unwrap_or_else(|e| panic!("handshake: {e}"));
    Client { r: BufReader::new(tls) }
}

#[tokio::test]
async fn starttls_discards_pipelined_plaintext() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.cmd("EHLO c").await;
    // CVE-2011-0411: RSET and MAIL injected after STARTTLS in the same packet.
    c.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@remote.example>\r\n").await;
    assert_eq!(c.reply().await, "220 2.0.0 Ready to start TLS");
    assert!(c.r.buffer().is_empty(), "server answered the injected commands");
    let tcp = c.r.into_inner();
    let connector = h.client_tls.clone().unwrap_or_else(|| panic!("tls"));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
    let tls = connector.connect(name, tcp).await.unwrap_or_else(|e| panic!("handshake: {e}"));
    let mut c = Client { r: BufReader::new(tls) };
    // The injected MAIL did not survive: the session starts over.
    c.expect("MAIL FROM:<>", "503 5.5.1 Error: send HELO/EHLO first").await;
    let ehlo = c.cmd("EHLO c").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.cmd("MAIL FROM:<bob@remote.example>").await;
    c.cmd("RCPT TO:<alice@ours.example>").await;
    c.cmd("DATA").await;
    c.send(b"secret\r\n.\r\n").await;
    assert!(queued(&c.reply().await));
    let m = &h.messages("alice")[0];
    assert!(m.contains("with ESMTPS id"), "{m}");
    assert!(m.contains("(using TLSv1.3 with cipher TLS13_"), "{m}");
}

#[tokio::test]
async fn no_starttls_without_certificate() {
    let h = start(Options { tls: false, ..Options::default() }).await;
    let mut c = h.connect().await;
    let ehlo = c.cmd("EHLO c").await;
    assert!(!ehlo.contains("STARTTLS"));
    c.expect("STARTTLS", "502 5.5.1 Error: command not implemented").await;
    c.expect("AUTH PLAIN AGFsaWNlAHB3", "503 5.5.1 Error: authentication not enabled").await;
}

#[tokio::test]
async fn large_message_goes_through_the_spool_file() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.cmd("EHLO c").await;
    c.cmd("MAIL FROM:<>").await;
    c.cmd("RCPT TO:<alice@ours.example>").await;
    c.cmd("DATA").await;
    let line = format!("{}\r\n", "y".repeat(998));
    let mut body = String::new();
    while body.len() < 3 * 1024 * 1024 {
        body.push_str(&line);
    }
    body.push_str(".\r\n");
    c.send(body.as_bytes()).await;
    assert!(queued(&c.reply().await));
    let m = &h.messages("alice")[0];
    assert!(m.len() > 3 * 1024 * 1024);
    let spool = h.root.join("state/spool");
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "spool file not removed");
}

#[tokio::test]
async fn lmtp_answers_per_recipient() {
    let h = start(Options { mode: SmtpMode::Lmtp, ..Options::default() }).await;
    let s = TcpStream::connect(h.addr).await.unwrap_or_else(|e| panic!("{e}"));
    let mut c = Client { r: BufReader::new(s) };
    assert_eq!(c.reply().await, "220 mx.ours.example LMTP");
    c.expect("EHLO c", "500 5.5.1 Error: this is LMTP, use LHLO").await;
    assert!(c.cmd("LHLO mta").await.starts_with("250-mx.ours.example\n"));
    c.cmd("MAIL FROM:<bob@remote.example>").await;
    c.expect("RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    c.expect("RCPT TO:<bob@ours.example>", "250 2.1.5 Ok").await;
    c.cmd("DATA").await;
    c.send(b"Subject: lmtp\r\n\r\nhi\r\n.\r\n").await;
    let r = c.replies(2).await;
    assert!(r[0].starts_with("250 2.0.0 <alice@ours.example> Ok: delivered as "), "{r:?}");
    assert!(r[1].starts_with("250 2.0.0 <bob@ours.example> Ok: delivered as "), "{r:?}");
    assert!(h.messages("bob")[0].contains("with LMTP id"));
}

#[tokio::test]
async fn shutdown_says_421_to_idle_sessions() {
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.cmd("EHLO c").await;
    h._stop.send_replace(true);
    assert_eq!(c.reply().await, "421 4.3.2 mx.ours.example Service shutting down, try again later");
    assert!(c.closed().await);
}
