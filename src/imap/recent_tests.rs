//! `\Recent` transcripts (RFC 3501 2.3.2, 6.3.1, 6.3.2, 6.3.10, 6.4.4, 7.3.2), with the
//! semantics Dovecot has: a message is recent in exactly one session, the first that
//! SELECTs the mailbox after it arrived; EXAMINE claims nothing; the claim is kept in the
//! index, so a restart does not hand it out again. IMAP4rev2 has no `\Recent` (RFC 9051 E.1).

use std::sync::Arc;

use super::test_support::*;

/// The untagged line starting with `prefix`, for exact comparison.
fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines.iter().find(|l| l.starts_with(prefix)).map(String::as_str).unwrap_or("<missing>")
}

/// RFC 3501 6.3.1 / 6.3.2: SELECT reports and claims the recent messages, EXAMINE reports
/// none and leaves them to the next SELECT.
#[tokio::test]
async fn examine_does_not_claim_select_does() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let mut a = srv.login().await;
    let r = a.ok("EXAMINE INBOX").await;
    assert_eq!(line(&r, "* 0 RECENT"), "* 0 RECENT", "{r:?}");
    assert_eq!(a.ok("FETCH 1 FLAGS").await[0], "* 1 FETCH (FLAGS ())");
    let r = a.ok("SELECT INBOX").await;
    assert_eq!(line(&r, "* 2 RECENT"), "* 2 RECENT", "{r:?}");
    assert_eq!(a.ok("FETCH 1:2 FLAGS").await[..2], ["* 1 FETCH (FLAGS (\\Recent))", "* 2 FETCH (FLAGS (\\Recent))"]);
    // Still recent for this session on re-select? No: the claim is spent (RFC 3501 2.3.2).
    let r = a.ok("SELECT INBOX").await;
    assert_eq!(line(&r, "* 0 RECENT"), "* 0 RECENT", "{r:?}");
}

/// RFC 3501 2.3.2: "If it is not possible to determine whether or not this session is the
/// first session to be notified about a message, then that message SHOULD be considered
/// recent" — we can, so only the first selecter sees `\Recent`.
#[tokio::test]
async fn only_the_first_selecter_sees_recent() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut a = srv.login().await;
    let mut b = srv.login().await;
    assert_eq!(line(&a.ok("SELECT INBOX").await, "* 1 RECENT"), "* 1 RECENT");
    assert_eq!(line(&b.ok("SELECT INBOX").await, "* 0 RECENT"), "* 0 RECENT");
    assert_eq!(a.cmd("FETCH 1 (FLAGS)").await, ["* 1 FETCH (FLAGS (\\Recent))", "t3 OK FETCH completed"]);
    assert_eq!(b.cmd("FETCH 1 (FLAGS)").await, ["* 1 FETCH (FLAGS ())", "t3 OK FETCH completed"]);
    // STORE answers carry \Recent too; it cannot be set or cleared (RFC 3501 2.3.2).
    assert_eq!(
        a.cmd("STORE 1 +FLAGS (\\Seen)").await,
        ["* 1 FETCH (FLAGS (\\Seen \\Recent))", "t4 OK STORE completed"]
    );
    assert!(a.cmd("STORE 1 -FLAGS (\\Recent)").await[0].starts_with("t5 BAD"));
    // The other session's unsolicited FETCH has no \Recent.
    assert_eq!(b.cmd("NOOP").await, ["* 1 FETCH (FLAGS (\\Seen))", "t4 OK NOOP completed"]);
}

/// RFC 3501 6.3.10 STATUS RECENT: messages no session has claimed yet.
#[tokio::test]
async fn status_recent_counts_unclaimed_messages() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let mut a = srv.login().await;
    assert_eq!(a.cmd("STATUS INBOX (RECENT)").await, ["* STATUS INBOX (RECENT 2)", "t2 OK STATUS completed"]);
    a.ok("EXAMINE INBOX").await;
    a.ok("UNSELECT").await;
    assert_eq!(a.cmd("STATUS INBOX (RECENT)").await, ["* STATUS INBOX (RECENT 2)", "t5 OK STATUS completed"]);
    a.ok("SELECT INBOX").await;
    a.ok("UNSELECT").await;
    assert_eq!(a.cmd("STATUS INBOX (RECENT)").await, ["* STATUS INBOX (RECENT 0)", "t8 OK STATUS completed"]);
    srv.deliver("INBOX", SIMPLE).await;
    assert_eq!(a.cmd("STATUS INBOX (RECENT)").await, ["* STATUS INBOX (RECENT 1)", "t9 OK STATUS completed"]);
}

/// RFC 3501 6.4.4: RECENT, NEW (`RECENT UNSEEN`) and OLD (`NOT RECENT`).
#[tokio::test]
async fn search_new_old_recent() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut other = srv.login().await;
    other.ok("SELECT INBOX").await;
    other.ok("LOGOUT").await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let mut a = srv.login().await;
    assert_eq!(line(&a.ok("SELECT INBOX").await, "* 2 RECENT"), "* 2 RECENT");
    a.ok("STORE 3 +FLAGS.SILENT (\\Seen)").await;
    assert_eq!(a.cmd("SEARCH RECENT").await, ["* SEARCH 2 3", "t4 OK SEARCH completed"]);
    assert_eq!(a.cmd("SEARCH NEW").await, ["* SEARCH 2", "t5 OK SEARCH completed"]);
    assert_eq!(a.cmd("SEARCH OLD").await, ["* SEARCH 1", "t6 OK SEARCH completed"]);
    assert_eq!(a.cmd("UID SEARCH NOT OLD").await, ["* SEARCH 2 3", "t7 OK UID SEARCH completed"]);
}

/// RFC 3501 7.3.2 / 7.4.1: mail that arrives while the mailbox is selected is recent in
/// this session, announced with RECENT after EXISTS; an EXAMINE session only gets EXISTS
/// counts and leaves the claim to the next SELECT.
#[tokio::test]
async fn delivery_while_selected_is_recent_here() {
    let srv = start().await;
    let mut a = srv.login().await;
    let mut watcher = srv.login().await;
    a.ok("SELECT INBOX").await;
    watcher.ok("EXAMINE INBOX").await;
    srv.deliver("INBOX", SIMPLE).await;
    assert_eq!(a.cmd("NOOP").await, ["* 1 EXISTS", "* 1 RECENT", "t3 OK NOOP completed"]);
    assert_eq!(watcher.cmd("NOOP").await, ["* 1 EXISTS", "* 0 RECENT", "t3 OK NOOP completed"]);
    assert_eq!(a.cmd("FETCH 1 FLAGS").await, ["* 1 FETCH (FLAGS (\\Recent))", "t4 OK FETCH completed"]);
    srv.deliver("INBOX", SIMPLE).await;
    assert_eq!(a.cmd("NOOP").await, ["* 2 EXISTS", "* 2 RECENT", "t5 OK NOOP completed"]);
    // Expunging a recent message drops it from the count too.
    a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    a.ok("EXPUNGE").await;
    srv.deliver("INBOX", SIMPLE).await;
    assert_eq!(a.cmd("NOOP").await, ["* 2 EXISTS", "* 2 RECENT", "t8 OK NOOP completed"]);
}

/// The claim lives in the index: after a restart (a new Store on the same data dir) the
/// claimed messages are not recent again, and what arrived since is.
#[tokio::test]
async fn recent_claim_survives_restart() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut a = srv.login().await;
    assert_eq!(line(&a.ok("SELECT INBOX").await, "* 1 RECENT"), "* 1 RECENT");
    a.ok("LOGOUT").await;
    let _ = srv.shutdown.send(true);
    let dir = Arc::clone(&srv.dir);
    drop(srv);
    let srv = start_in(dir, |_| {}, false).await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut b = srv.login().await;
    assert_eq!(b.cmd("STATUS INBOX (RECENT)").await, ["* STATUS INBOX (RECENT 1)", "t2 OK STATUS completed"]);
    assert_eq!(line(&b.ok("SELECT INBOX").await, "* 1 RECENT"), "* 1 RECENT");
    assert_eq!(
        b.cmd("FETCH 1:2 FLAGS").await,
        ["* 1 FETCH (FLAGS ())", "* 2 FETCH (FLAGS (\\Recent))", "t4 OK FETCH completed"]
    );
}

/// RFC 9051 E.1: IMAP4rev2 removed `\Recent`; an IMAP4rev2 session neither sees nor claims it.
#[tokio::test]
async fn imap4rev2_has_no_recent() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut a = srv.login().await;
    a.ok("ENABLE IMAP4rev2").await;
    let r = a.ok("SELECT INBOX").await;
    assert!(!has(&r, "RECENT"), "{r:?}");
    assert_eq!(a.cmd("FETCH 1 FLAGS").await, ["* 1 FETCH (FLAGS ())", "t4 OK FETCH completed"]);
    srv.deliver("INBOX", SIMPLE).await;
    assert_eq!(a.cmd("NOOP").await, ["* 2 EXISTS", "t5 OK NOOP completed"]);
    // The rev1 session that selects next gets both.
    let mut b = srv.login().await;
    assert_eq!(line(&b.ok("SELECT INBOX").await, "* 2 RECENT"), "* 2 RECENT");
}
