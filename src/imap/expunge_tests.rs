//! Reads of messages another session expunged (RFC 2180 4.1.1): until this session has
//! been told (`* n EXPUNGE`), FETCH by the old sequence number still returns the message,
//! as Dovecot does; once every session has been told, the data is gone from disk.

use std::path::{Path, PathBuf};

use super::test_support::*;

/// Every file under `dir` whose name satisfies `pick`.
fn files(dir: &Path, pick: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, pick));
        } else if pick(&p) {
            out.push(p);
        }
    }
    out
}

/// Expunged files kept for sessions that may still read them.
pub(super) fn retained(srv: &TestServer) -> usize {
    files(srv.dir.path(), &|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("mailroom-expunged."))
    })
    .len()
}

fn in_cur(srv: &TestServer) -> usize {
    files(srv.dir.path(), &|p| p.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "cur")).len()
}

/// RFC 2180 4.1.1: "the server MAY ... return the data", and Dovecot does.
#[tokio::test]
async fn fetch_of_a_message_expunged_elsewhere_returns_it_until_reported() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    srv.deliver("INBOX", MULTIPART).await;
    srv.deliver("INBOX", SIMPLE).await;
    let (mut a, mut b) = srv.two_selected("INBOX").await;
    // What A reads of message 2 before the expunge (the file names, not the delivery
    // order, decide which message got which UID).
    let items = ["UID BODY.PEEK[]", "BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE", "BODYSTRUCTURE"];
    let mut before = Vec::new();
    for i in items {
        before.push(a.ok(&format!("FETCH 2 ({i})")).await[0].clone());
    }
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert_eq!(b.cmd("EXPUNGE").await, ["* 2 EXPUNGE", "t4 OK EXPUNGE completed"]);
    // Dovecot sees a correct Maildir at once: the file is out of cur/.
    if crate::testing::on_maildir() {
        assert_eq!(in_cur(&srv), 2);
        assert_eq!(retained(&srv), 1);
    }
    // A has not been told: message 2 is still there, whole, by its old number, and so
    // are its header and structure (read through the other paths).
    assert_eq!(a.cmd("FETCH 2 (UID BODY.PEEK[])").await, [before[0].clone(), "t6 OK FETCH completed".into()]);
    assert!(before[0].ends_with("\r\n)") && before[0].len() > 150, "{before:?}");
    assert_eq!(a.ok(&format!("FETCH 2 ({})", items[1])).await[0], before[1]);
    assert_eq!(a.ok(&format!("FETCH 2 ({})", items[2])).await[0], before[2]);
    // Once A is told, nobody can see it any more: the data is gone.
    assert_eq!(a.cmd("NOOP").await, ["* 2 EXPUNGE", "t9 OK NOOP completed"]);
    if crate::testing::on_maildir() {
        assert_eq!(retained(&srv), 0);
        assert_eq!(in_cur(&srv), 2);
    }
    let uid = before[0].split("UID ").nth(1).and_then(|s| s.split(' ').next()).expect("uid");
    assert_eq!(a.cmd(&format!("UID FETCH {uid} (BODY.PEEK[])")).await, ["t10 OK UID FETCH completed"]);
}

/// A session that deselects releases what it held; a MOVE elsewhere keeps the source's
/// data readable the same way, and a session selecting after the expunge holds nothing.
#[tokio::test]
async fn move_and_deselect_release_retained_files() {
    if !crate::testing::on_maildir() {
        return; // checks the retained Maildir files
    }
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let (mut a, mut b) = srv.two_selected("INBOX").await;
    b.ok("MOVE 1 Trash").await;
    assert_eq!(retained(&srv), 1);
    let r = a.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    assert_eq!(r[0], "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: Hello\r\n\r\n)", "{r:?}");
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    c.ok("LOGOUT").await;
    assert_eq!(retained(&srv), 1, "A still holds it");
    a.ok("UNSELECT").await;
    assert_eq!(retained(&srv), 0);
}

/// A crash leaves retained files in `tmp/` with no session to release them: opening the
/// mailbox again sweeps them, and they were never in `cur/` for anyone to read as mail.
#[tokio::test]
async fn crash_leftovers_are_swept_at_open() {
    if !crate::testing::on_maildir() {
        return; // checks Maildir files a crash left
    }
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let (mut a, mut b) = srv.two_selected("INBOX").await;
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    assert_eq!(retained(&srv), 1);
    // "Crash": a copy of the retained file survives a server that never released it.
    let leftover = files(srv.dir.path(), &|p| p.to_str().is_some_and(|n| n.contains("mailroom-expunged.")))[0].clone();
    let saved = std::fs::read(&leftover).unwrap();
    a.ok("LOGOUT").await;
    b.ok("LOGOUT").await;
    assert_eq!(retained(&srv), 0);
    std::fs::write(&leftover, saved).unwrap();
    let _ = srv.shutdown.send(true);
    let dir = std::sync::Arc::clone(&srv.dir);
    drop(srv);
    let srv = start_in(dir, |_| {}, false).await;
    let mut c = srv.login().await;
    let r = c.ok("SELECT INBOX").await;
    assert!(has(&r, "* 1 EXISTS"), "{r:?}");
    assert_eq!(retained(&srv), 0);
}

/// The data is really gone (another program deleted the file): NO [EXPUNGEISSUED].
#[tokio::test]
async fn data_really_gone_is_expungeissued() {
    if !crate::testing::on_maildir() {
        return; // checks message files deleted behind the server
    }
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut a = srv.login().await;
    a.ok("SELECT INBOX").await;
    for f in files(srv.dir.path(), &|p| p.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "cur")) {
        std::fs::remove_file(f).unwrap();
    }
    let r = a.cmd("FETCH 1 (BODY.PEEK[])").await;
    assert_eq!(r.last().unwrap(), "t3 NO [EXPUNGEISSUED] Some messages were expunged", "{r:?}");
}
