//! Drives one IMAP session in memory: command bytes in, response bytes out, no TCP. The
//! session and its driver run over one end of an in-memory pipe with the same code as a
//! real connection (framing, literals, continuation requests, BYE), so a transcript shows
//! what a client on the wire would see, and a test needs neither a port nor a listener.
//! The context and delivery helpers also serve the tests that drive the session alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::watch;

use crate::accounts::{Directory, parse_accounts};
use crate::imap::serve_connection;
use crate::imap::session::{ImapContext, ImapLimits};
use crate::imap::test_support::read_response_line;
use crate::store::{LocalDelivery, MailboxOwner, MessageBody, Store};

pub const USER: &str = "alice@example.org";
pub const PASS: &str = "secret";

pub const FIRST: &str = "From: Bob <bob@example.org>\nTo: alice@example.org\nSubject: Hello\nDate: Mon, 3 Feb 2025 10:00:00 +0000\n\nHi Alice\n";
pub const SECOND: &str = "From: Carol <carol@example.org>\nSubject: Lunch\n\nNoon?\n";

/// The client's address in every test session.
pub const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)), 40000);

/// A store in `dir` with alice's account, and the context of a server on it (insecure
/// auth allowed, fast login failures, 100 kB APPENDLIMIT); `tls` offers STARTTLS.
pub fn context(dir: &std::path::Path, tls: Option<tokio_rustls::TlsAcceptor>) -> (Arc<ImapContext>, Store) {
    let store = crate::testing::test_store(dir, "mail.example.org");
    let accounts = parse_accounts(&format!("{USER}:{{PLAIN}}{PASS}:1M")).expect("accounts");
    let directory = Directory::new(vec!["example.org".into()], accounts, vec![]).expect("directory");
    let limits = ImapLimits {
        allow_insecure_auth: true,
        auth_failure_delay: Duration::from_millis(1),
        max_literal: 100_000,
        ..ImapLimits::default()
    };
    let ctx = ImapContext::new(
        "mail.example.org".into(),
        Arc::new(directory),
        store.clone(),
        crate::datadir::spool_dir(dir),
        tls,
        limits,
    );
    (Arc::new(ctx), store)
}

/// Deliver a message (LF line ends are made CRLF) into one of alice's folders.
pub async fn deliver(store: &Store, folder: &str, msg: &str) {
    let body = MessageBody::Memory(bytes::Bytes::from(msg.replace('\n', "\r\n")));
    let owner = MailboxOwner::new("alice", "example.org");
    let to = [LocalDelivery { owner, folder: folder.into(), header_prefix: Vec::new(), flags: Vec::new() }];
    let r = store.deliver(&body, &to).await;
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
}

/// How long a transcript waits for the session before the test fails (never hangs).
const WAIT: Duration = Duration::from_secs(10);

/// One session over an in-memory pipe, with the store it works on.
pub struct Transcript {
    r: BufReader<ReadHalf<DuplexStream>>,
    w: WriteHalf<DuplexStream>,
    pub store: Store,
    /// The greeting, read when the session starts.
    pub greeting: String,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Transcript {
    /// A fresh data dir with alice's account and a session in Not Authenticated state.
    pub async fn start() -> Transcript {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ctx, store) = context(dir.path(), None);
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve_connection(ctx, server, PEER, false, rx));
        let (r, w) = tokio::io::split(client);
        let mut t = Transcript { r: BufReader::new(r), w, store, greeting: String::new(), _shutdown: tx, _dir: dir };
        t.greeting = t.read_until(|_| true).await;
        t
    }

    /// Deliver a message (LF line ends are made CRLF) into one of alice's folders.
    pub async fn deliver(&self, folder: &str, msg: &str) {
        deliver(&self.store, folder, msg).await;
    }

    /// Send `client` (one or more CRLF-terminated lines) and return everything the session
    /// answers up to and including the tagged reply to the tag of its last line, or up to
    /// a continuation request (`+ ...`) if that comes first.
    pub async fn send(&mut self, client: &str) -> String {
        let last = client.trim_end_matches("\r\n").rsplit("\r\n").next().unwrap_or("");
        let tag = last.split(' ').next().unwrap_or("").to_string();
        self.send_for(&tag, client).await
    }

    /// As `send`, for input that does not end in a command line of its own (the data of
    /// a literal): the answer ends with the tagged reply to `tag`.
    pub async fn send_for(&mut self, tag: &str, client: &str) -> String {
        let tag = format!("{tag} ");
        self.w.write_all(client.as_bytes()).await.expect("write to the session");
        self.read_until(|line| line.starts_with(&tag) || line.starts_with("+ ")).await
    }

    /// Send `client` and compare the response bytes exactly.
    pub async fn step(&mut self, client: &str, server: &str) {
        let got = self.send(client).await;
        assert_eq!(got, server, "C: {client}");
    }

    /// `send_for` and compare the response bytes exactly.
    pub async fn step_for(&mut self, tag: &str, client: &str, server: &str) {
        let got = self.send_for(tag, client).await;
        assert_eq!(got, server, "C: {client}");
    }

    /// Log in as alice (its tagged OK carries the capabilities; not compared here).
    pub async fn login(&mut self) {
        let r = self.send(&format!("l1 LOGIN {USER} {PASS}\r\n")).await;
        assert!(r.starts_with("l1 OK [CAPABILITY "), "{r}");
    }

    /// Whatever the session sends until it closes the pipe.
    pub async fn rest(&mut self) -> String {
        let mut buf = Vec::new();
        tokio::time::timeout(WAIT, self.r.read_to_end(&mut buf)).await.expect("session did not close").expect("read");
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Response lines (literals included verbatim) until a line for which `done` holds.
    async fn read_until(&mut self, done: impl Fn(&str) -> bool) -> String {
        let mut out = Vec::new();
        loop {
            let line = read_response_line(&mut self.r).await;
            if line.is_empty() {
                break;
            }
            let finished = done(&String::from_utf8_lossy(&line));
            out.extend_from_slice(&line);
            if finished {
                break;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Transcript {
    /// UIDVALIDITY of one of alice's folders (random per folder, so transcripts ask).
    pub async fn uid_validity(&self, folder: &str) -> u32 {
        let owner = MailboxOwner::new("alice", "example.org");
        let mailbox = self.store.open_mailbox(&owner, folder).await.expect("open mailbox");
        mailbox.sync().await.expect("sync").uid_validity
    }
}
