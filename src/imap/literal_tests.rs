//! Literal bounds and APPEND streaming, as transcripts against a real in-process server.
//!
//! RFC 9051 7.5: "The server MAY reject a synchronizing literal ... by sending a tagged
//! BAD instead of the command continuation request" — so an unauthenticated client gets
//! BAD for anything bigger than a LOGIN needs, without us reading it. RFC 7888 4: a
//! non-synchronizing literal the server will not accept "MUST" be answered by closing the
//! connection (`* BYE`), because its data is already on the wire.

use super::session::PRE_AUTH_COMMAND_MAX;
use super::test_support::*;

/// Files left in the spool directory (streamed literals must not outlive their command).
/// Bob has no quota (alice's 1 MB would refuse the big messages).
async fn login_bob(srv: &TestServer) -> Client {
    let mut c = srv.client().await;
    c.ok("LOGIN bob@example.org bobpw").await;
    c
}

fn spool_files(srv: &TestServer) -> usize {
    std::fs::read_dir(crate::datadir::spool_dir(srv.dir.path())).map(|d| d.count()).unwrap_or(0)
}

/// Poll a condition the server reaches on its own (file system state), for up to 10 s.
async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn literals_before_login_are_a_few_kib() {
    let srv = start_with(|ctx| ctx.limits.max_literal = 25 * 1024 * 1024).await;
    let mut c = srv.client().await;
    // C: a XYZZY {26000000}   S: a BAD Literal too big   (no "+", nothing read)
    for cmd in ["XYZZY {26000000}", "LOGIN {26000000}", "ID ({9000}", "AUTHENTICATE {9000}", "APPEND INBOX {9000}"] {
        let r = c.cmd(cmd).await;
        assert_eq!(r.len(), 1, "{cmd} -> {r:?}");
        assert!(r[0].ends_with(" BAD Literal too big"), "{cmd} -> {r:?}");
    }
    // the connection is still in step, and LOGIN with literals of a sane size works
    let tag = c.next_tag();
    c.send(&format!("{tag} LOGIN {{{}}}\r\n", USER.len())).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&format!("{USER} {{{}}}\r\n", PASS.len())).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&format!("{PASS}\r\n")).await;
    assert!(c.until_tagged(&tag).await.last().unwrap().contains(" OK "));

    // a non-synchronizing literal over the bound is already on its way: BYE and close
    let mut c = srv.client().await;
    c.send("a LOGIN {26000000+}\r\n").await;
    assert_eq!(c.line().await, "* BYE Literal too big");
    assert_eq!(c.line().await, "");
    // and a command line longer than the bound ends the session too (exactly one byte
    // over, so the server has read all we sent when it closes: no reset eats the BYE)
    let mut c = srv.client().await;
    let long = format!("a LOGIN {}", "x".repeat(PRE_AUTH_COMMAND_MAX));
    c.send(&long[..PRE_AUTH_COMMAND_MAX + 1]).await;
    assert_eq!(c.line().await, "* BYE Command line too long");
}

#[tokio::test]
async fn only_append_carries_big_literals_after_login() {
    let srv = start().await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    // C: t3 SEARCH TEXT {70000}   S: t3 BAD Literal too big
    let r = c.cmd("SEARCH TEXT {70000}").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].ends_with(" BAD Literal too big"), "{r:?}");
    let r = c.ok(&format!("SEARCH TEXT {{5+}}\r\n{}", "hello")).await;
    assert!(r[0].starts_with("* SEARCH"), "{r:?}");
    // over the APPENDLIMIT (100000 in tests): NO [TOOBIG] before the data
    assert!(c.cmd("APPEND INBOX {100001}").await[0].contains("NO [TOOBIG]"));
    let body = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(90_000));
    let tag = c.next_tag();
    c.send(&format!("{tag} APPEND INBOX {{{}}}\r\n", body.len())).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&format!("{body}\r\n")).await;
    let r = c.until_tagged(&tag).await;
    assert!(r.last().unwrap().contains("OK [APPENDUID "), "{r:?}");
}

#[tokio::test]
async fn big_appends_stream_through_a_spool_file() {
    let srv = start_with(|ctx| ctx.limits.max_literal = 4 * 1024 * 1024).await;
    let mut c = login_bob(&srv).await;
    let big = format!("Subject: big\r\n\r\n{}\r\n", "z".repeat(3 * 1024 * 1024));
    let small = "Subject: small\r\n\r\nhi\r\n";
    let mut binary = b"Subject: bin\r\n\r\n".to_vec();
    binary.extend((0..200_000u32).map(|i| (i % 251) as u8));
    // MULTIAPPEND mixing a synchronizing big literal, a small one, a literal8 with NULs and
    // the mailbox name as a literal: C: t2 APPEND {5}  S: +  C: Sent {N}  S: + ...
    let tag = c.next_tag();
    c.send(&format!("{tag} APPEND {{4}}\r\n")).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&format!("Sent (\\Seen) {{{}}}\r\n", big.len())).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&big).await;
    c.send(&format!(" {{{}+}}\r\n{small} ~{{{}+}}\r\n", small.len(), binary.len())).await;
    let mut tail = binary.clone();
    tail.extend_from_slice(b"\r\n");
    c.send_bytes(&tail).await;
    let r = c.until_tagged(&tag).await;
    assert!(r.last().unwrap().contains(" 1:3] APPEND completed"), "{r:?}");
    assert_eq!(spool_files(&srv), 0, "spool files are removed after the APPEND");

    c.ok("SELECT Sent").await;
    let r = c.ok("FETCH 1:3 (FLAGS RFC822.SIZE)").await;
    assert!(r[0].starts_with("* 1 FETCH (FLAGS (\\Seen \\Recent) RFC822.SIZE 3145746)"), "{r:?}");
    assert!(r[1].contains(&format!("RFC822.SIZE {}", small.len())), "{r:?}");
    assert!(r[2].contains(&format!("RFC822.SIZE {}", binary.len())), "{r:?}");
    let r = c.ok("FETCH 1 BODY.PEEK[]").await;
    assert!(r[0].ends_with(&format!("{big})")), "the streamed message comes back byte for byte");
    let r = c.ok("FETCH 3 BINARY.PEEK[]").await;
    assert!(r[0].contains(&format!("~{{{}}}", binary.len())), "{}", &r[0][..60]);

    // a NUL in a plain (not literal8) streamed literal is refused like a buffered one
    let mut nul = big.clone().into_bytes();
    nul[100] = 0;
    let tag = c.next_tag();
    c.send(&format!("{tag} APPEND Sent {{{}+}}\r\n", nul.len())).await;
    nul.extend_from_slice(b"\r\n");
    c.send_bytes(&nul).await;
    let r = c.until_tagged(&tag).await;
    assert!(r.last().unwrap().contains(" BAD NUL in literal"), "{r:?}");
    // a missing target is TRYCREATE after the data, and the spool is cleaned up
    let r = c.cmd(&format!("APPEND Nowhere {{{}+}}\r\n{big}", big.len())).await;
    assert!(r.last().unwrap().contains("NO [TRYCREATE]"), "{r:?}");
    assert_eq!(spool_files(&srv), 0);
    c.ok("NOOP").await;
}

#[tokio::test]
async fn client_gone_during_a_streamed_literal_leaves_no_spool_file() {
    let srv = start_with(|ctx| ctx.limits.max_literal = 4 * 1024 * 1024).await;
    let mut c = login_bob(&srv).await;
    c.send(&format!("a APPEND INBOX {{3000000+}}\r\nSubject: cut\r\n\r\n{}", "q".repeat(2_000_000))).await;
    // The server has the first part in its spool file; now the client disappears, the
    // session sees EOF and the file goes with it.
    wait_for(|| spool_files(&srv) == 1).await;
    drop(c);
    wait_for(|| spool_files(&srv) == 0).await;
    let mut probe = login_bob(&srv).await;
    assert!(probe.ok("STATUS INBOX (MESSAGES)").await[0].contains("MESSAGES 0"));
}
