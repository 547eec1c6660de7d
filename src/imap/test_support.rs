//! Test harness for IMAP sessions: a real server on 127.0.0.1:0 over a temp data dir with
//! one account, and a small raw client that reads responses with their literals, so tests
//! read as transcripts (client line -> expected server lines).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::driver::serve_connection;
use super::session::{ImapContext, ImapLimits};
use crate::accounts::{Directory, parse_accounts};
use crate::store::{LocalDelivery, MailboxOwner, MessageBody, Store};

pub const USER: &str = "alice@example.org";
pub const PASS: &str = "secret";

pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub shutdown: watch::Sender<bool>,
    /// The data dir (kept alive with the server; shared on `restart`).
    pub dir: Arc<tempfile::TempDir>,
    pub ctx: Arc<ImapContext>,
}

pub fn owner() -> MailboxOwner {
    MailboxOwner::new("alice", "example.org")
}

/// Start a server; `tweak` adjusts the context (TLS, limits) before it runs.
pub async fn start_with(tweak: impl FnOnce(&mut ImapContext)) -> TestServer {
    start_full(tweak, false).await
}

/// As `start_with`; `implicit_tls` serves like port 993.
pub async fn start_full(tweak: impl FnOnce(&mut ImapContext), implicit_tls: bool) -> TestServer {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    start_in(dir, tweak, implicit_tls).await
}

/// A server on an existing data dir (a restart).
pub async fn start_in(
    dir: Arc<tempfile::TempDir>,
    tweak: impl FnOnce(&mut ImapContext),
    implicit_tls: bool,
) -> TestServer {
    let store = crate::testing::test_store(dir.path(), "mail.example.org");
    let accounts =
        parse_accounts(&format!("{USER}:{{PLAIN}}{PASS}:1M\nbob@example.org:{{PLAIN}}bobpw")).expect("accounts");
    let directory = Directory::new(vec!["example.org".into()], accounts, vec![]).expect("directory");
    let mut ctx = ImapContext::new(
        "mail.example.org".into(),
        Arc::new(directory),
        store.clone(),
        crate::datadir::spool_dir(dir.path()),
        None,
        ImapLimits {
            allow_insecure_auth: true,
            auth_failure_delay: Duration::from_millis(1),
            max_literal: 100_000,
            ..ImapLimits::default()
        },
    );
    tweak(&mut ctx);
    let ctx = Arc::new(ctx);
    let served = ctx.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((sock, peer)) = listener.accept().await {
            // as net/ should do for every mail protocol: small replies go out at once
            let _ = sock.set_nodelay(true);
            tokio::spawn(serve_connection(served.clone(), sock, peer, implicit_tls, rx.clone()));
        }
    });
    TestServer { addr, store, shutdown: tx, dir, ctx }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

impl TestServer {
    /// Deliver a message into a folder of alice, as SMTP would.
    pub async fn deliver(&self, folder: &str, msg: &str) {
        let body = MessageBody::Memory(bytes::Bytes::from(msg.replace('\n', "\r\n")));
        let r = self
            .store
            .deliver(
                &body,
                &[LocalDelivery {
                    owner: owner(),
                    folder: folder.into(),
                    header_prefix: Vec::new(),
                    flags: Vec::new(),
                }],
            )
            .await;
        assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
    }

    /// Deliver `n` copies of a message into a folder of alice.
    pub async fn deliver_copies(&self, folder: &str, msg: &str, n: usize) {
        for _ in 0..n {
            self.deliver(folder, msg).await;
        }
    }

    /// Two clients logged in as alice with `folder` selected in both: one acts, the other
    /// sees what it did (expunges, flags, deliveries by others).
    pub async fn two_selected(&self, folder: &str) -> (Client, Client) {
        let mut a = self.login().await;
        let mut b = self.login().await;
        a.ok(&format!("SELECT {folder}")).await;
        b.ok(&format!("SELECT {folder}")).await;
        (a, b)
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// A client already logged in as alice.
    pub async fn login(&self) -> Client {
        let mut c = self.client().await;
        c.ok(&format!("LOGIN {USER} {PASS}")).await;
        c
    }
}

/// Either half of a plain TCP or a TLS connection.
type ReadHalf = Box<dyn AsyncRead + Unpin + Send>;
type WriteHalf = Box<dyn AsyncWrite + Unpin + Send>;

pub struct Client {
    r: BufReader<ReadHalf>,
    w: WriteHalf,
    n: u32,
    pub greeting: String,
}

const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.expect("connect");
        let (r, w) = s.into_split();
        Client::with_halves(Box::new(r), Box::new(w)).await
    }

    /// Connect to an implicit-TLS server (port 993 style) whose certificate is `pem`, as
    /// made by `tls_acceptor` (valid for `localhost`), and read the greeting.
    pub async fn connect_tls(addr: SocketAddr, pem: &str) -> Client {
        let connector = crate::testing::tls_connector_trusting(pem.as_bytes());
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(READ_TIMEOUT, connector.connect(name, tcp))
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake");
        let (r, w) = tokio::io::split(tls);
        Client::with_halves(Box::new(r), Box::new(w)).await
    }

    async fn with_halves(r: ReadHalf, w: WriteHalf) -> Client {
        let mut c = Client { r: BufReader::new(r), w, n: 0, greeting: String::new() };
        c.greeting = c.line().await;
        c
    }

    /// One response line with any literals inlined (`{n}\r\n` + bytes kept verbatim).
    /// Empty string on EOF.
    pub async fn line(&mut self) -> String {
        let out = read_response_line(&mut self.r).await;
        let s = String::from_utf8_lossy(&out).into_owned();
        s.strip_suffix("\r\n").unwrap_or(&s).to_string()
    }

    pub async fn send(&mut self, raw: &str) {
        self.send_bytes(raw.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, raw: &[u8]) {
        self.w.write_all(raw).await.expect("write");
        // a no-op for TCP; pushes out any TLS record still buffered
        self.w.flush().await.expect("flush");
    }

    /// Send `tN command`, return every line up to and including the tagged one.
    pub async fn cmd(&mut self, command: &str) -> Vec<String> {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.send(&format!("{tag} {command}\r\n")).await;
        self.until_tagged(&tag).await
    }

    pub async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            if l.is_empty() {
                lines.push("<EOF>".into());
                return lines;
            }
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    /// Run a command that must end in tagged OK; returns the untagged lines and the OK.
    pub async fn ok(&mut self, command: &str) -> Vec<String> {
        let lines = self.cmd(command).await;
        let last = lines.last().cloned().unwrap_or_default();
        assert!(last.split(' ').nth(1) == Some("OK"), "{command} -> {lines:#?}");
        lines
    }

    pub fn next_tag(&mut self) -> String {
        self.n += 1;
        format!("t{}", self.n)
    }
}

/// One response line as sent, CRLF included, with the data of any literals it announces
/// and the rest of the line after them; empty on EOF. Fails the test after `READ_TIMEOUT`.
pub async fn read_response_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(READ_TIMEOUT, r.read_until(b'\n', &mut buf))
            .await
            .expect("server response timed out")
            .expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf);
        let trimmed = buf.strip_suffix(b"\r\n").unwrap_or(&buf);
        match super::framing::literal_marker(trimmed) {
            Some(m) => {
                let mut data = vec![0u8; m.size as usize];
                tokio::time::timeout(READ_TIMEOUT, r.read_exact(&mut data))
                    .await
                    .expect("literal timed out")
                    .expect("read literal");
                out.extend_from_slice(&data);
            }
            None => break,
        }
    }
    out
}

/// Does any line contain `needle`?
pub fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

pub const SIMPLE: &str = "From: Bob <bob@example.org>\nTo: alice@example.org\nSubject: Hello\nDate: Mon, 3 Feb 2025 10:00:00 +0000\nMessage-ID: <1@example.org>\n\nHi Alice,\nlunch?\n";

pub const MULTIPART: &str = "From: Carol <carol@example.net>\nTo: alice@example.org\nSubject: Report\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nThe caf=C3=A9 numbers\n--b1\nContent-Type: application/octet-stream; name=\"data.bin\"\nContent-Transfer-Encoding: base64\n\nAAECAw==\n--b1--\n";

/// A TLS acceptor with a fresh self-signed certificate for localhost/127.0.0.1, and that
/// certificate as PEM (for clients that pin it).
pub fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("cert");
    let pem = ck.cert.pem();
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem)
}
