//! Test harness: an in-memory maildrop behind [`Pop3Backend`], a throw-away CA and server
//! certificate (rcgen), a POP3 server on 127.0.0.1:0 (plaintext+STLS and implicit TLS),
//! and a runner for Python poplib scripts.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::net::{AuthMechanism, LoginOutcome};
use crate::pop3::backend::{BackendError, Pop3Backend};
use crate::pop3::maildrop::MaildropEntry;
use crate::pop3::server::{Endpoint, Pop3Limits, serve_with};
use crate::store::LocalLease;

/// A message as the memory store keeps it.
#[derive(Clone)]
struct Stored {
    uid: u32,
    base: String,
    bytes: Bytes,
}

/// Accounts and INBOXes in memory. `lock_tag` keeps parallel tests' locks apart.
pub struct MemoryBackend {
    lock_tag: String,
    users: Vec<(String, String)>,
    boxes: Mutex<HashMap<String, Vec<Stored>>>,
    next_uid: AtomicU32,
}

static NEXT_TAG: AtomicU32 = AtomicU32::new(1);

impl MemoryBackend {
    pub fn new(users: &[(&str, &str)]) -> MemoryBackend {
        MemoryBackend {
            lock_tag: format!("memory-{}", NEXT_TAG.fetch_add(1, Ordering::Relaxed)),
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
            boxes: Mutex::new(HashMap::new()),
            next_uid: AtomicU32::new(1),
        }
    }

    /// Deliver a message (CRLF wire form) to `account`'s INBOX.
    pub fn deliver(&self, account: &str, bytes: impl Into<Bytes>) -> u32 {
        let uid = self.next_uid.fetch_add(1, Ordering::Relaxed);
        let bytes = bytes.into();
        let base = format!("1764201600.M{uid}P4242Q{uid}.test.example,S={0},W={0}", bytes.len());
        let mut boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        boxes.entry(account.to_string()).or_default().push(Stored { uid, base, bytes });
        uid
    }

    pub fn uids(&self, account: &str) -> Vec<u32> {
        let boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        boxes.get(account).map(|v| v.iter().map(|m| m.uid).collect()).unwrap_or_default()
    }

    /// Remove a message behind POP3's back (as an IMAP EXPUNGE would).
    pub fn remove(&self, account: &str, uid: u32) {
        let mut boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = boxes.get_mut(account) {
            v.retain(|m| m.uid != uid);
        }
    }
}

impl Pop3Backend for MemoryBackend {
    type Account = String;
    type Mailbox = String;
    type Lock = LocalLease;
    type Reader = Cursor<Bytes>;

    async fn authenticate(
        &self,
        _ip: std::net::IpAddr,
        _mechanism: AuthMechanism,
        username: &str,
        password: &str,
    ) -> LoginOutcome<String> {
        match self.users.iter().find(|(u, p)| u.eq_ignore_ascii_case(username) && p == password) {
            Some((u, _)) => LoginOutcome::LoggedIn(u.clone()),
            None => LoginOutcome::Failed,
        }
    }

    async fn lock_maildrop(&self, account: &String) -> Result<Option<LocalLease>, BackendError> {
        Ok(LocalLease::try_acquire(format!("{}\0{account}", self.lock_tag)))
    }

    async fn open_inbox(&self, account: &String) -> Result<(String, Vec<MaildropEntry>), BackendError> {
        if account.starts_with("broken") {
            return Err(BackendError::Store("disk on fire".into()));
        }
        let boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        let entries = boxes
            .get(account)
            .map(|v| v.iter().map(|m| MaildropEntry::new(m.uid, m.bytes.len() as u64, &m.base)).collect())
            .unwrap_or_default();
        Ok((account.clone(), entries))
    }

    async fn open_message(&self, mailbox: &String, uid: u32) -> Result<Cursor<Bytes>, BackendError> {
        let boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        boxes
            .get(mailbox)
            .and_then(|v| v.iter().find(|m| m.uid == uid))
            .map(|m| Cursor::new(m.bytes.clone()))
            .ok_or(BackendError::Vanished)
    }

    async fn expunge(&self, mailbox: &String, uids: &[u32]) -> Result<usize, BackendError> {
        let mut boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = boxes.get_mut(mailbox) {
            v.retain(|m| !uids.contains(&m.uid));
        }
        Ok(uids.len())
    }
}

/// A CA and a server certificate for 127.0.0.1/localhost, signed by it.
pub struct TestPki {
    pub acceptor: TlsAcceptor,
    pub ca_file: PathBuf,
}

pub fn make_pki(dir: &Path) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "mailroom test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf params");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf cert");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write ca");

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    TestPki { acceptor: TlsAcceptor::from(Arc::new(config)), ca_file }
}

/// Limits for tests: no login tarpit, short idle timeout where a test wants one.
pub fn test_limits() -> Pop3Limits {
    Pop3Limits { auth_failure_delay: Duration::ZERO, ..Pop3Limits::default() }
}

struct Shared<B> {
    backend: Arc<B>,
    hostname: String,
    tls: TlsAcceptor,
    limits: Pop3Limits,
}

/// A running server: `plain` speaks POP3 with STLS (110-style), `tls` is implicit TLS
/// (995-style).
pub struct TestServer<B> {
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub ca_file: PathBuf,
    pub backend: Arc<B>,
    pub shutdown: watch::Sender<bool>,
    pub dir: tempfile::TempDir,
}

pub async fn start<B: Pop3Backend>(backend: Arc<B>, limits: Pop3Limits) -> TestServer<B> {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let (shutdown, _) = watch::channel(false);
    let shared =
        Arc::new(Shared { backend: backend.clone(), hostname: "pop.test.example".into(), tls: pki.acceptor, limits });
    let mut addrs = Vec::new();
    for implicit in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.push(listener.local_addr().expect("addr"));
        let shared = shared.clone();
        let rx = shutdown.subscribe();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let shared = shared.clone();
                let rx = rx.clone();
                tokio::spawn(async move {
                    let endpoint =
                        Endpoint { hostname: &shared.hostname, tls: Some(&shared.tls), limits: &shared.limits };
                    serve_with(shared.backend.as_ref(), endpoint, stream, peer, implicit, rx).await;
                });
            }
        });
    }
    TestServer { plain: addrs[0], tls: addrs[1], ca_file: pki.ca_file, backend, shutdown, dir }
}

pub use crate::test_tools::tool_available;

/// The poplib driver: reads a JSON job on stdin, prints one transcript line per event.
const POPLIB_DRIVER: &str = r#"
import json, poplib, ssl, sys
job = json.load(sys.stdin)
ctx = ssl.create_default_context(cafile=job["cafile"])
poplib._MAXLINE = 4096
if job["mode"] == "implicit":
    p = poplib.POP3_SSL("127.0.0.1", job["port"], context=ctx, timeout=300)
else:
    p = poplib.POP3("127.0.0.1", job["port"], timeout=300)
out = ["S: " + p.getwelcome().decode("latin-1")]
def show(r):
    if isinstance(r, bytes):
        out.append("S: " + r.decode("latin-1"))
    elif isinstance(r, tuple) and len(r) == 3:
        out.append("S: " + r[0].decode("latin-1"))
        out.extend("S| " + l.decode("latin-1") for l in r[1])
    elif isinstance(r, tuple):
        out.append("S: " + " ".join(str(x) for x in r))
    elif r is not None:
        out.append("S: " + str(r))
for step in job["steps"]:
    name, args = step[0], step[1:]
    out.append("C: " + " ".join([name] + [str(a) for a in args]))
    try:
        if name == "stls":
            show(p.stls(context=ctx))
        elif name == "long":
            show(p._longcmd(args[0]))
        elif name == "short":
            show(p._shortcmd(args[0]))
        elif name == "save":
            resp, lines, octets = p.retr(args[0])
            with open(args[1], "wb") as f:
                for l in lines:
                    f.write(l + b"\r\n")
            show(resp)
            out.append("S= %d" % octets)
        else:
            show(getattr(p, name)(*args))
    except poplib.error_proto as e:
        a = e.args[0]
        out.append("E: " + (a.decode("latin-1") if isinstance(a, bytes) else str(a)))
    except Exception as e:
        out.append("X: %s" % type(e).__name__)
        break
print("\n".join(out))
"#;

/// Run a poplib job against `port` and return its transcript (see [`POPLIB_DRIVER`]).
pub async fn poplib(port: u16, mode: &str, ca_file: &Path, steps: serde_json::Value) -> String {
    use tokio::io::AsyncWriteExt;
    let job = serde_json::json!({"port": port, "mode": mode, "cafile": ca_file, "steps": steps});
    let mut child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(POPLIB_DRIVER)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(job.to_string().as_bytes()).await.expect("write job");
    }
    let output = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .expect("python3 timed out")
        .expect("python3 output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "python3 failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Compare transcripts line by line, with a readable diff on failure.
pub fn assert_transcript(got: &str, want: &str) {
    let got: Vec<&str> = got.lines().map(str::trim_end).collect();
    let want: Vec<&str> = want.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {i}\n--- got:\n{}", got.join("\n"));
    }
    assert_eq!(got.len(), want.len(), "--- got:\n{}", got.join("\n"));
}

/// Our own minimal client, for what real clients never do (pipelining batches, injected
/// plaintext, dropped connections, over-long lines).
pub struct RawClient<S> {
    reader: tokio::io::BufReader<S>,
}

pub type TlsClientStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

pub async fn tls_client_stream(stream: tokio::net::TcpStream, ca_file: &Path) -> TlsClientStream {
    let connector = crate::testing::tls_connector_trusting(&std::fs::read(ca_file).expect("read ca"));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, stream).await.expect("tls handshake")
}

impl RawClient<TlsClientStream> {
    /// Connect to the implicit-TLS port and read the greeting.
    pub async fn tls(addr: SocketAddr, ca_file: &Path) -> RawClient<TlsClientStream> {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut c = RawClient { reader: tokio::io::BufReader::new(tls_client_stream(tcp, ca_file).await) };
        assert_eq!(c.line().await, "+OK pop.test.example POP3 ready");
        c
    }

    pub async fn login(addr: SocketAddr, ca_file: &Path, user: &str, pass: &str) -> RawClient<TlsClientStream> {
        let mut c = RawClient::tls(addr, ca_file).await;
        c.send(&format!("USER {user}")).await;
        assert_eq!(c.line().await, "+OK Send PASS");
        c.send(&format!("PASS {pass}")).await;
        let reply = c.line().await;
        assert!(reply.starts_with("+OK Logged in"), "{reply}");
        c
    }
}

impl RawClient<tokio::net::TcpStream> {
    pub async fn plain(addr: SocketAddr) -> RawClient<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut c = RawClient { reader: tokio::io::BufReader::new(tcp) };
        assert_eq!(c.line().await, "+OK pop.test.example POP3 ready");
        c
    }

    pub fn into_stream(self) -> tokio::net::TcpStream {
        self.reader.into_inner()
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> RawClient<S> {
    pub fn new(stream: S) -> RawClient<S> {
        RawClient { reader: tokio::io::BufReader::new(stream) }
    }

    /// The stream, for reading past the line protocol (what was buffered is dropped).
    pub fn into_inner(self) -> S {
        self.reader.into_inner()
    }

    /// Send raw bytes (several commands at once for pipelining).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let s = self.reader.get_mut();
        s.write_all(bytes).await.expect("send");
        s.flush().await.expect("flush");
    }

    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// One reply line without CRLF; "<EOF>" when the server closed.
    pub async fn line(&mut self) -> String {
        use tokio::io::AsyncBufReadExt;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(120), self.reader.read_until(b'\n', &mut buf))
            .await
            .expect("reply timed out");
        match read {
            Ok(0) | Err(_) => "<EOF>".into(),
            Ok(_) => {
                assert!(buf.ends_with(b"\r\n"), "reply not CRLF-terminated: {buf:?}");
                String::from_utf8_lossy(&buf[..buf.len() - 2]).into_owned()
            }
        }
    }

    /// One reply line, `None` at end of stream; tolerant of anything the server sends.
    pub async fn line_lossy(&mut self) -> Option<String> {
        use tokio::io::AsyncBufReadExt;
        let mut buf = Vec::new();
        match tokio::time::timeout(Duration::from_secs(120), self.reader.read_until(b'\n', &mut buf)).await {
            Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf).into_owned()),
            _ => None,
        }
    }

    /// Send a command and check the one-line reply.
    pub async fn expect(&mut self, command: &str, reply: &str) {
        self.send(command).await;
        assert_eq!(self.line().await, reply, "C: {command}");
    }

    /// Lines of a multi-line body up to (not including) the terminating dot, raw
    /// (still dot-stuffed).
    pub async fn body(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            if l == "." || l == "<EOF>" {
                return lines;
            }
            lines.push(l);
        }
    }
}
