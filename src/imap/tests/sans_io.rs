//! The session alone, with no stream at all: the test plays the driver. It frames client
//! bytes as the driver would, hands complete commands to the session, reads the bytes the
//! session put in its `Output`, and answers each effect (`Next`) by hand, so every
//! suspended command (AUTHENTICATE, IDLE, STARTTLS, a long FETCH) is shown to finish
//! without the session ever touching a connection.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::harness::*;
use crate::imap::framing::{Frame, Resume, resume_frame};
use crate::imap::output::Output;
use crate::imap::session::{Flow, Next, Session};
use crate::store::Store;

/// The session under test with the store it works on.
struct Direct {
    session: Session,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Direct {
    /// A session in Not Authenticated state, greeting already taken; `tls` offers STARTTLS.
    fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Direct {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ctx, store) = context(dir.path(), tls);
        let mut session = Session::new(ctx, PEER, false);
        session.greet();
        let _greeting = session.out.take();
        Direct { session, store, _dir: dir }
    }

    /// Frame `client` (one command) as the driver would and run it.
    async fn command(&mut self, client: &str) -> Next {
        let frame = resume_frame(client.as_bytes(), self.session.frame_limits(), &Resume::default());
        assert!(matches!(frame, Frame::Complete { len } if len == client.len()), "not one complete command: {client}");
        self.session.command(client.as_bytes(), Vec::new()).await.expect("command")
    }

    /// Run a command that completes at once; its response bytes.
    async fn step(&mut self, client: &str) -> String {
        let next = self.command(client).await;
        assert_eq!(effect(&next), "continue", "C: {client}");
        self.output().await
    }

    async fn login(&mut self) {
        let r = self.step(&format!("l1 LOGIN {USER} {PASS}\r\n")).await;
        assert!(r.starts_with("l1 OK [CAPABILITY "), "{r}");
    }

    /// Everything the session wrote since the last call, literals read from their files.
    async fn output(&mut self) -> String {
        String::from_utf8(drain(&mut self.session.out).await).expect("utf-8")
    }
}

/// The bytes a driver would send for `out`, taken from it.
async fn drain(out: &mut Output) -> Vec<u8> {
    let (mut bytes, literals) = out.take();
    for (literal, after) in literals {
        let mut data = Vec::new();
        literal.reader.take(literal.size).read_to_end(&mut data).await.expect("read literal");
        assert_eq!(data.len() as u64, literal.size);
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&after);
    }
    bytes
}

/// What the session asks of its driver, as a word for assertions.
fn effect(next: &Next) -> &'static str {
    match next {
        Next::Done(Flow::Continue) => "continue",
        Next::Done(Flow::Close) => "close",
        Next::Done(Flow::Bye) => "bye",
        Next::Flush => "flush",
        Next::StartTls(_) => "starttls",
        Next::AuthContinue => "auth-continue",
        Next::Idle => "idle",
    }
}

#[tokio::test]
async fn login_select_fetch() {
    let mut t = Direct::start(None);
    deliver(&t.store, "INBOX", FIRST).await;
    deliver(&t.store, "INBOX", SECOND).await;
    t.login().await;
    let r = t.step("a1 SELECT INBOX\r\n").await;
    assert!(r.contains("* 2 EXISTS\r\n* 2 RECENT\r\n"), "{r}");
    assert!(r.ends_with("a1 OK [READ-WRITE] SELECT completed\r\n"), "{r}");
    let r = t.step("a2 FETCH 1:2 (UID FLAGS RFC822.SIZE)\r\n").await;
    assert_eq!(
        r,
        "* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE 118)\r\n\
         * 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE 58)\r\n\
         a2 OK FETCH completed\r\n"
    );
    // One small literal: the session asks for it to go out before it goes on.
    assert_eq!(effect(&t.command("a3 FETCH 2 BODY[]\r\n").await), "flush");
    assert_eq!(
        t.output().await,
        "* 2 FETCH (BODY[] {58}\r\nFrom: Carol <carol@example.org>\r\nSubject: Lunch\r\n\r\nNoon?\r\n FLAGS (\\Seen \\Recent))\r\n"
    );
    assert_eq!(effect(&t.session.resume().await.expect("resume")), "continue");
    assert_eq!(t.output().await, "a3 OK FETCH completed\r\n");
    assert_eq!(effect(&t.command("a4 LOGOUT\r\n").await), "close");
    assert_eq!(t.output().await, "* BYE Logging out\r\na4 OK LOGOUT completed\r\n");
}

#[tokio::test]
async fn authenticate_plain_after_a_continuation_request() {
    let mut t = Direct::start(None);
    assert_eq!(effect(&t.command("a1 AUTHENTICATE PLAIN\r\n").await), "auth-continue");
    assert_eq!(t.output().await, "+ \r\n");
    // base64 of "\0alice@example.org\0secret"
    let next = t.session.auth_response(b"AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==").await;
    assert_eq!(effect(&next), "continue");
    let r = t.output().await;
    assert!(r.starts_with("a1 OK [CAPABILITY IMAP4rev1 ") && r.ends_with("] Logged in\r\n"), "{r}");
    let r = t.step("a2 SELECT INBOX\r\n").await;
    assert!(r.ends_with("a2 OK [READ-WRITE] SELECT completed\r\n"), "{r}");
}

#[tokio::test]
async fn authenticate_cancelled_with_a_star() {
    let mut t = Direct::start(None);
    assert_eq!(effect(&t.command("a1 AUTHENTICATE PLAIN\r\n").await), "auth-continue");
    assert_eq!(t.output().await, "+ \r\n");
    assert_eq!(effect(&t.session.auth_response(b"*").await), "continue");
    assert_eq!(t.output().await, "a1 BAD Authentication cancelled\r\n");
    // Still not logged in; an answer out of turn is not taken as a response.
    assert_eq!(effect(&t.session.auth_response(b"AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==").await), "continue");
    assert_eq!(t.output().await, "");
    assert_eq!(t.step("a2 SELECT INBOX\r\n").await, "a2 BAD Log in first\r\n");
}

#[tokio::test]
async fn idle_reports_new_mail_until_done() {
    let mut t = Direct::start(None);
    deliver(&t.store, "INBOX", FIRST).await;
    t.login().await;
    t.step("a1 SELECT INBOX\r\n").await;
    assert_eq!(effect(&t.command("a2 IDLE\r\n").await), "idle");
    assert_eq!(t.output().await, "+ idling\r\n");
    deliver(&t.store, "INBOX", SECOND).await;
    // What the driver waits on wakes up for the delivery.
    let events = t.session.idle_events().expect("a mailbox is selected");
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("no mailbox event").expect("event");
    t.session.idle_changed().await;
    assert_eq!(t.output().await, "* 2 EXISTS\r\n* 2 RECENT\r\n");
    assert_eq!(effect(&t.session.idle_done(b"DONE")), "continue");
    assert_eq!(t.output().await, "a2 OK IDLE terminated\r\n");
    assert_eq!(t.step("a3 NOOP\r\n").await, "a3 OK NOOP completed\r\n");
}

#[tokio::test]
async fn idle_ends_bad_on_anything_but_done() {
    let mut t = Direct::start(None);
    t.login().await;
    assert_eq!(effect(&t.command("a1 IDLE\r\n").await), "idle");
    assert_eq!(t.output().await, "+ idling\r\n");
    assert!(t.session.idle_events().is_none());
    assert_eq!(effect(&t.session.idle_done(b"NOOP")), "continue");
    assert_eq!(t.output().await, "a1 BAD Expected DONE\r\n");
}

#[tokio::test]
async fn starttls_asks_for_the_handshake() {
    let (acceptor, _pem) = crate::imap::test_support::tls_acceptor();
    let mut t = Direct::start(Some(acceptor));
    assert!(t.step("a1 CAPABILITY\r\n").await.contains(" STARTTLS "));
    assert_eq!(effect(&t.command("a2 STARTTLS\r\n").await), "starttls");
    // The OK goes out in plaintext before the handshake; nothing after it.
    assert_eq!(t.output().await, "a2 OK Begin TLS negotiation now\r\n");
    assert_eq!(effect(&t.session.tls_started()), "continue");
    assert_eq!(t.output().await, "");
    assert!(!t.step("a3 CAPABILITY\r\n").await.contains("STARTTLS"));
    assert_eq!(t.step("a4 STARTTLS\r\n").await, "a4 BAD TLS is already active\r\n");
}

#[tokio::test]
async fn a_failed_handshake_ends_the_session() {
    let (acceptor, _pem) = crate::imap::test_support::tls_acceptor();
    let mut t = Direct::start(Some(acceptor));
    assert_eq!(effect(&t.command("a1 STARTTLS\r\n").await), "starttls");
    t.output().await;
    assert_eq!(effect(&t.session.tls_failed()), "close");
    assert_eq!(t.output().await, "");
}

/// Run a FETCH to the end, answering each flush; `send` takes the output at each one
/// as a driver would, else it piles up. The whole output and how many flushes it took.
async fn fetch_all(t: &mut Direct, command: &str, send: bool) -> (String, usize) {
    let mut bytes = Vec::new();
    let mut flushes = 0;
    let mut next = t.command(command).await;
    while effect(&next) == "flush" {
        flushes += 1;
        if send {
            bytes.extend_from_slice(&drain(&mut t.session.out).await);
        }
        next = t.session.resume().await.expect("resume");
    }
    assert_eq!(effect(&next), "continue");
    bytes.extend_from_slice(&drain(&mut t.session.out).await);
    (String::from_utf8(bytes).expect("utf-8"), flushes)
}

#[tokio::test]
async fn a_long_fetch_flushes_and_resumes_with_the_same_bytes() {
    let mut t = Direct::start(None);
    // 100 KiB bodies: parts are cut in memory, so the output bound (256 KiB) is what stops.
    let body = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n".repeat(1600);
    for n in 0..5 {
        deliver(&t.store, "INBOX", &format!("Subject: {n}\n\n{body}")).await;
    }
    t.login().await;
    t.step("a1 SELECT INBOX\r\n").await;
    let (sent, flushes) = fetch_all(&mut t, "a2 FETCH 1:5 BODY.PEEK[TEXT]\r\n", true).await;
    assert_eq!(flushes, 1, "one stop after the third message");
    let (piled, _) = fetch_all(&mut t, "a2 FETCH 1:5 BODY.PEEK[TEXT]\r\n", false).await;
    assert_eq!(sent, piled);
    let crlf = body.replace('\n', "\r\n");
    let expected: String =
        (1..=5).map(|n| format!("* {n} FETCH (BODY[TEXT] {{{}}}\r\n{crlf})\r\n", crlf.len())).collect();
    assert_eq!(sent, format!("{expected}a2 OK FETCH completed\r\n"));

    // Whole messages stream from their files: a stop after every one.
    let (sent, flushes) = fetch_all(&mut t, "a3 FETCH 1:5 BODY.PEEK[]\r\n", true).await;
    assert_eq!(flushes, 5);
    let (piled, _) = fetch_all(&mut t, "a3 FETCH 1:5 BODY.PEEK[]\r\n", false).await;
    assert_eq!(sent, piled);
    assert!(sent.starts_with("* 1 FETCH (BODY[] {") && sent.ends_with(")\r\na3 OK FETCH completed\r\n"));
}
