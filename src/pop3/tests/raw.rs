//! Raw-protocol tests with our own client: the corner cases real clients avoid —
//! concurrent sessions, dropped connections, pipelining, STLS injection, bounds, timeouts.

use std::sync::Arc;
use std::time::Duration;

use super::harness::{MemoryBackend, RawClient, start, test_limits, tls_client_stream};
use crate::pop3::server::Pop3Limits;

const ALICE: &str = "alice@example.com";

fn backend() -> Arc<MemoryBackend> {
    let b = MemoryBackend::new(&[(ALICE, "pw"), ("bob@example.com", "pw")]);
    b.deliver(ALICE, &b"Subject: one\r\n\r\nfirst\r\n"[..]);
    b.deliver(ALICE, &b"Subject: two\r\n\r\nsecond\r\n"[..]);
    Arc::new(b)
}

#[tokio::test]
async fn second_session_on_same_maildrop_is_in_use_until_the_first_ends() {
    let server = start(backend(), test_limits()).await;
    let mut first = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;

    let mut second = RawClient::tls(server.tls, &server.ca_file).await;
    second.expect(&format!("USER {ALICE}"), "+OK Send PASS").await;
    second.expect("PASS pw", "-ERR [IN-USE] Mailbox is in use by another POP3 session").await;
    // Also across ports: the lock is process-wide.
    let mut third = RawClient::plain(server.plain).await;
    third.expect("STLS", "+OK Begin TLS negotiation").await;
    let mut third = RawClient::new(tls_client_stream(third.into_stream(), &server.ca_file).await);
    third.expect(&format!("USER {ALICE}"), "+OK Send PASS").await;
    third.expect("PASS pw", "-ERR [IN-USE] Mailbox is in use by another POP3 session").await;
    // Another mailbox is not affected.
    RawClient::login(server.tls, &server.ca_file, "bob@example.com", "pw").await;

    first.expect("QUIT", "+OK Bye").await;
    assert_eq!(first.line().await, "<EOF>");
    second.expect(&format!("USER {ALICE}"), "+OK Send PASS").await;
    second.expect("PASS pw", "+OK Logged in, 2 messages (47 octets)").await;
}

#[tokio::test]
async fn dropped_connection_deletes_nothing_and_releases_the_lock() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("DELE 1", "+OK Message 1 deleted").await;
    c.expect("DELE 2", "+OK Message 2 deleted").await;
    drop(c);
    // The lock goes when the server notices the close; poll briefly for it.
    let mut again = None;
    for _ in 0..50 {
        let mut c = RawClient::tls(server.tls, &server.ca_file).await;
        c.expect(&format!("USER {ALICE}"), "+OK Send PASS").await;
        c.send("PASS pw").await;
        if c.line().await.starts_with("+OK") {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = again.expect("lock released after drop");
    c.expect("STAT", "+OK 2 47").await;
    assert_eq!(server.backend.uids(ALICE), vec![1, 2]);
}

#[tokio::test]
async fn mail_arriving_during_a_session_shows_in_the_next() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("STAT", "+OK 2 47").await;
    let uid = server.backend.deliver(ALICE, &b"Subject: three\r\n\r\nthird\r\n"[..]);
    c.expect("STAT", "+OK 2 47").await;
    c.expect("LIST 3", "-ERR No such message").await;
    c.expect("DELE 1", "+OK Message 1 deleted").await;
    c.expect("QUIT", "+OK Bye, 1 messages deleted").await;
    // The new message survived the UPDATE of the session that never saw it.
    assert_eq!(server.backend.uids(ALICE), vec![2, uid]);
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("STAT", "+OK 2 49").await;
}

#[tokio::test]
async fn message_expunged_elsewhere_gives_err_not_a_broken_stream() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    server.backend.remove(ALICE, 1);
    c.expect("RETR 1", "-ERR Message was removed by another session").await;
    c.expect("RETR 2", "+OK 24 octets").await;
    assert_eq!(c.body().await, vec!["Subject: two", "", "second"]);
    c.expect("DELE 1", "+OK Message 1 deleted").await;
    c.expect("QUIT", "+OK Bye, 1 messages deleted").await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::tls(server.tls, &server.ca_file).await;
    c.send_raw(format!("USER {ALICE}\r\nPASS pw\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 2\r\nNOOP\r\nQUIT\r\n").as_bytes())
        .await;
    let mut got = Vec::new();
    loop {
        let l = c.line().await;
        if l == "<EOF>" {
            break;
        }
        got.push(l);
    }
    assert_eq!(
        got,
        vec![
            "+OK Send PASS",
            "+OK Logged in, 2 messages (47 octets)",
            "+OK 2 47",
            "+OK 2 messages (47 octets)",
            "1 23",
            "2 24",
            ".",
            "+OK 23 octets",
            "Subject: one",
            "",
            "first",
            ".",
            "+OK Message 2 deleted",
            "+OK",
            "+OK Bye, 1 messages deleted",
        ]
    );
    assert_eq!(server.backend.uids(ALICE), vec![1]);
    // Counted per command and result (global counters: other tests add to them too).
    let m = crate::metrics::metrics();
    assert!(m.pop3_commands_total.with_label_values(&["DELE", "ok"]).get() >= 1);
    assert!(m.pop3_commands_total.with_label_values(&["RETR", "ok"]).get() >= 1);
}

/// RFC 2595 §4 / CVE-2011-0411: commands sent in plaintext right behind STLS must not be
/// executed after the handshake.
#[tokio::test]
async fn plaintext_injected_after_stls_is_discarded() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::plain(server.plain).await;
    c.send_raw(format!("STLS\r\nUSER {ALICE}\r\n").as_bytes()).await;
    assert_eq!(c.line().await, "+OK Begin TLS negotiation");
    let mut c = RawClient::new(tls_client_stream(c.into_stream(), &server.ca_file).await);
    // Had the injected USER run, PASS would be attempted instead of refused.
    c.expect("PASS pw", "-ERR USER first").await;
}

#[tokio::test]
async fn over_long_lines_get_err_and_the_session_continues() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::tls(server.tls, &server.ca_file).await;
    c.expect(&format!("USER {}", "a".repeat(600)), "-ERR Line too long").await;
    c.expect("AUTH PLAIN", "+ ").await;
    c.expect(&"A".repeat(5000), "-ERR Line too long").await;
    // The SASL exchange was abandoned: this is a command again.
    c.expect("NOOP", "-ERR Command not valid before login").await;
    c.expect("QUIT", "+OK Bye").await;
}

#[tokio::test]
async fn garbage_flood_is_cut_off() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::tls(server.tls, &server.ca_file).await;
    for _ in 0..19 {
        c.expect("\u{1}\u{2}garbage", "-ERR Syntax error: control characters in command").await;
    }
    c.expect("BOGUS", "-ERR Too many invalid commands, closing").await;
    assert_eq!(c.line().await, "<EOF>");
}

#[tokio::test]
async fn idle_clients_are_disconnected() {
    let limits = Pop3Limits { idle_timeout: Duration::from_millis(300), ..test_limits() };
    let server = start(backend(), limits).await;
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("DELE 1", "+OK Message 1 deleted").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.line().await, "-ERR Disconnected for inactivity");
    assert_eq!(c.line().await, "<EOF>");
    assert_eq!(server.backend.uids(ALICE), vec![1, 2]);
}

#[tokio::test]
async fn shutdown_closes_sessions_without_deleting() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("DELE 1", "+OK Message 1 deleted").await;
    let _ = server.shutdown.send(true);
    assert_eq!(c.line().await, "-ERR [SYS/TEMP] Server shutting down, nothing was deleted");
    assert_eq!(c.line().await, "<EOF>");
    assert_eq!(server.backend.uids(ALICE), vec![1, 2]);
}

#[tokio::test]
async fn failed_login_is_delayed() {
    let limits = Pop3Limits { auth_failure_delay: Duration::from_millis(300), ..test_limits() };
    let server = start(backend(), limits).await;
    let mut c = RawClient::tls(server.tls, &server.ca_file).await;
    c.expect(&format!("USER {ALICE}"), "+OK Send PASS").await;
    let started = std::time::Instant::now();
    c.expect("PASS wrong", "-ERR [AUTH] Authentication failed").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_large_pipelined_batch_is_answered_completely() {
    let server = start(backend(), test_limits()).await;
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    let batch = "LIST\r\n".repeat(3000);
    c.send_raw(batch.as_bytes()).await;
    for _ in 0..3000 {
        assert_eq!(c.line().await, "+OK 2 messages (47 octets)");
        assert_eq!(c.body().await, vec!["1 23", "2 24"]);
    }
    c.expect("QUIT", "+OK Bye").await;
}

/// Garbage in over a real socket: random bytes (with some line ends) get `-ERR`s and a
/// close, never a crash; the server keeps serving others.
#[tokio::test]
async fn random_bytes_on_the_wire_are_survived() {
    let server = start(backend(), test_limits()).await;
    let mut seed: u64 = 0xFEED_FACE_0BAD_F00D;
    let mut next = || crate::testing::xorshift(&mut seed);
    for _ in 0..5 {
        let mut c = RawClient::tls(server.tls, &server.ca_file).await;
        let junk: Vec<u8> = (0..4096).map(|_| if next() % 40 == 0 { b'\n' } else { next() as u8 }).collect();
        c.send_raw(&junk).await;
        // Read until the server gives up on us.
        let mut replies = 0;
        while c.line_lossy().await.is_some() {
            replies += 1;
        }
        assert!(replies > 0);
    }
    RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
}
