//! Python poplib transcripts for every command and error path (skipped without python3
//! unless CI=true).

use std::sync::Arc;

use serde_json::json;

use super::harness::{MemoryBackend, assert_transcript, poplib, start, test_limits, tool_available};

const ALICE: &str = "alice@example.com";

/// Lines starting with dots, a lone dot line: the stuffing cases.
const DOTTED: &[u8] = b"From: bob@example.com\r\nSubject: dots\r\n\r\nHello\r\n.dot line\r\n..two dots\r\n.\r\nend\r\n";
const SMALL: &[u8] = b"Subject: two\r\n\r\nbody\r\n";

fn backend() -> Arc<MemoryBackend> {
    let b = MemoryBackend::new(&[(ALICE, "secret pw"), ("broken@example.com", "pw")]);
    b.deliver(ALICE, DOTTED);
    b.deliver(ALICE, SMALL);
    Arc::new(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_transaction_over_implicit_tls() {
    if !tool_available("python3") {
        return;
    }
    let server = start(backend(), test_limits()).await;
    let steps = json!([
        ["long", "CAPA"],
        ["user", ALICE],
        ["pass_", "secret pw"],
        ["stat"],
        ["list"],
        ["list", 2],
        ["list", 3],
        ["uidl"],
        ["uidl", 1],
        ["retr", 1],
        ["top", 1, 0],
        ["top", 1, 2],
        ["dele", 1],
        ["dele", 1],
        ["retr", 1],
        ["list", 1],
        ["stat"],
        ["rset"],
        ["stat"],
        ["noop"],
        ["short", "XYZZY"],
        ["short", "RETR 0"],
        ["short", "USER again"],
        ["dele", 2],
        ["quit"]
    ]);
    let got = poplib(server.tls.port(), "implicit", &server.ca_file, steps).await;
    assert_transcript(
        &got,
        r"
        S: +OK pop.test.example POP3 ready
        C: long CAPA
        S: +OK Capability list follows
        S| TOP
        S| UIDL
        S| RESP-CODES
        S| AUTH-RESP-CODE
        S| PIPELINING
        S| USER
        S| SASL PLAIN
        S| UTF8 USER
        S| IMPLEMENTATION mailroom
        C: user alice@example.com
        S: +OK Send PASS
        C: pass_ secret pw
        S: +OK Logged in, 2 messages (100 octets)
        C: stat
        S: 2 100
        C: list
        S: +OK 2 messages (100 octets)
        S| 1 78
        S| 2 22
        C: list 2
        S: +OK 2 22
        C: list 3
        E: -ERR No such message
        C: uidl
        S: +OK
        S| 1 1764201600.M1P4242Q1.test.example,S=78,W=78
        S| 2 1764201600.M2P4242Q2.test.example,S=22,W=22
        C: uidl 1
        S: +OK 1 1764201600.M1P4242Q1.test.example,S=78,W=78
        C: retr 1
        S: +OK 78 octets
        S| From: bob@example.com
        S| Subject: dots
        S|
        S| Hello
        S| .dot line
        S| ..two dots
        S| .
        S| end
        C: top 1 0
        S: +OK Top of message follows
        S| From: bob@example.com
        S| Subject: dots
        S|
        C: top 1 2
        S: +OK Top of message follows
        S| From: bob@example.com
        S| Subject: dots
        S|
        S| Hello
        S| .dot line
        C: dele 1
        S: +OK Message 1 deleted
        C: dele 1
        E: -ERR Message already deleted
        C: retr 1
        E: -ERR Message already deleted
        C: list 1
        E: -ERR Message already deleted
        C: stat
        S: 1 22
        C: rset
        S: +OK Maildrop has 2 messages (100 octets)
        C: stat
        S: 2 100
        C: noop
        S: +OK
        C: short XYZZY
        E: -ERR Unknown command
        C: short RETR 0
        E: -ERR Syntax error: invalid message number
        C: short USER again
        E: -ERR Already logged in
        C: dele 2
        S: +OK Message 2 deleted
        C: quit
        S: +OK Bye, 1 messages deleted
        ",
    );
    // QUIT applied the deletion: only the first message is left.
    assert_eq!(server.backend.uids(ALICE), vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_port_requires_stls_then_works() {
    if !tool_available("python3") {
        return;
    }
    let server = start(backend(), test_limits()).await;
    let steps = json!([
        ["long", "CAPA"],
        ["user", ALICE],
        ["pass_", "secret pw"],
        ["short", "AUTH PLAIN"],
        ["stat"],
        ["stls"],
        ["stls"],
        ["user", ALICE],
        ["pass_", "secret pw"],
        ["stat"],
        ["quit"]
    ]);
    let got = poplib(server.plain.port(), "plain", &server.ca_file, steps).await;
    assert_transcript(
        &got,
        r"
        S: +OK pop.test.example POP3 ready
        C: long CAPA
        S: +OK Capability list follows
        S| TOP
        S| UIDL
        S| RESP-CODES
        S| AUTH-RESP-CODE
        S| PIPELINING
        S| STLS
        S| IMPLEMENTATION mailroom
        C: user alice@example.com
        E: -ERR [AUTH] Authentication requires TLS: use STLS or port 995
        C: pass_ secret pw
        E: -ERR [AUTH] Authentication requires TLS: use STLS or port 995
        C: short AUTH PLAIN
        E: -ERR [AUTH] Authentication requires TLS: use STLS or port 995
        C: stat
        E: -ERR Command not valid before login
        C: stls
        S: +OK Begin TLS negotiation
        C: stls
        E: -ERR TLS session already established
        C: user alice@example.com
        S: +OK Send PASS
        C: pass_ secret pw
        S: +OK Logged in, 2 messages (100 octets)
        C: stat
        S: 2 100
        C: quit
        S: +OK Bye
        ",
    );
    assert_eq!(server.backend.uids(ALICE), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failed_logins_close_the_connection() {
    if !tool_available("python3") {
        return;
    }
    let server = start(backend(), test_limits()).await;
    let steps = json!([
        ["short", "APOP alice@example.com 0123456789abcdef0123456789abcdef"],
        ["pass_", "no user yet"],
        ["user", "nobody@example.com"],
        ["pass_", "whatever"],
        ["user", ALICE],
        ["pass_", "wrong"],
        ["short", "AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHdyb25n"],
        ["user", ALICE]
    ]);
    let got = poplib(server.tls.port(), "implicit", &server.ca_file, steps).await;
    assert_transcript(
        &got,
        r"
        S: +OK pop.test.example POP3 ready
        C: short APOP alice@example.com 0123456789abcdef0123456789abcdef
        E: -ERR APOP is not supported
        C: pass_ no user yet
        E: -ERR USER first
        C: user nobody@example.com
        S: +OK Send PASS
        C: pass_ whatever
        E: -ERR [AUTH] Authentication failed
        C: user alice@example.com
        S: +OK Send PASS
        C: pass_ wrong
        E: -ERR [AUTH] Authentication failed
        C: short AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHdyb25n
        E: -ERR [AUTH] Authentication failed, too many attempts
        C: user alice@example.com
        E: -ERR EOF
        ",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_login_and_store_failure() {
    if !tool_available("python3") {
        return;
    }
    let server = start(backend(), test_limits()).await;
    // "\0alice@example.com\0secret pw" and "\0broken@example.com\0pw".
    let steps = json!([
        ["long", "AUTH"],
        ["short", "AUTH PLAIN AGJyb2tlbkBleGFtcGxlLmNvbQBwdw=="],
        ["short", "AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldCBwdw=="],
        ["stat"],
        ["quit"]
    ]);
    let got = poplib(server.tls.port(), "implicit", &server.ca_file, steps).await;
    assert_transcript(
        &got,
        r"
        S: +OK pop.test.example POP3 ready
        C: long AUTH
        S: +OK Supported mechanisms follow
        S| PLAIN
        C: short AUTH PLAIN AGJyb2tlbkBleGFtcGxlLmNvbQBwdw==
        E: -ERR [SYS/TEMP] Mailbox unavailable, try again later
        C: short AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldCBwdw==
        S: +OK Logged in, 2 messages (100 octets)
        C: stat
        S: 2 100
        C: quit
        S: +OK Bye
        ",
    );
}

/// 20 MiB through Python's poplib over TLS. Under load the socket is often full when the
/// terminator is written: this is the test that caught the missing flush after a
/// streamed message (the client then waited for `.` until its own timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_message_is_streamed_byte_exact() {
    if !tool_available("python3") {
        return;
    }
    let backend = MemoryBackend::new(&[(ALICE, "pw")]);
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while big.len() < 20 * 1024 * 1024 {
        if i.is_multiple_of(7) {
            big.extend_from_slice(b"..");
        }
        big.extend_from_slice(format!("line {i:08} of a large message, padding padding padding\r\n").as_bytes());
        i += 1;
    }
    big.extend_from_slice(b".\r\n");
    backend.deliver(ALICE, big.clone());
    let server = start(Arc::new(backend), test_limits()).await;
    let saved = server.dir.path().join("big.eml");
    let steps = json!([["user", ALICE], ["pass_", "pw"], ["save", 1, saved], ["quit"]]);
    let got = poplib(server.tls.port(), "implicit", &server.ca_file, steps).await;
    assert!(got.contains(&format!("S: +OK {} octets", big.len())), "{got}");
    let received = std::fs::read(&saved).unwrap_or_default();
    assert!(received == big, "received {} octets, sent {}", received.len(), big.len());
}
