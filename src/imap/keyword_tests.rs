//! Keyword limits as transcripts. RFC 3501 7.1: PERMANENTFLAGS `\*` means "it is possible
//! to create new keywords by attempting to store those flags in the mailbox"; RFC 5530 3:
//! `[LIMIT]` "the operation ran into a limit of some kind". A mailbox holds at most
//! `MAX_KEYWORDS` distinct keywords of at most `MAX_KEYWORD_LEN` bytes, whichever command
//! brings them (STORE, APPEND, COPY, MOVE).

use super::test_support::*;
use crate::store::{MAX_KEYWORD_LEN, MAX_KEYWORDS};

fn keywords(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix}{i:03}")).collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn keywords_per_mailbox_and_length_are_bounded() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    srv.deliver("Sent", SIMPLE).await;
    let mut c = srv.login().await;
    let r = c.ok("SELECT INBOX").await;
    assert!(has(&r, "\\*)] Flags permitted"), "{r:?}");
    // C: STORE 1 +FLAGS (k000 ... k255)   S: OK — exactly the limit
    c.ok(&format!("STORE 1 +FLAGS.SILENT ({})", keywords("k", 0..MAX_KEYWORDS))).await;
    // one more distinct keyword, on any message: NO [LIMIT], nothing changed
    let r = c.cmd("STORE 2 +FLAGS (extra)").await;
    assert!(r.last().unwrap().contains("NO [LIMIT] Too many keywords in this mailbox"), "{r:?}");
    assert_eq!(c.ok("FETCH 2 FLAGS").await[0], "* 2 FETCH (FLAGS (\\Recent))");
    // keywords already in the mailbox may still be set anywhere
    c.ok("STORE 2 +FLAGS (k007)").await;
    let r = c.cmd(&format!("APPEND INBOX (newkw) {{{}+}}\r\n{}", SIMPLE.len(), SIMPLE)).await;
    assert!(r.last().unwrap().contains("NO [LIMIT]"), "{r:?}");
    // PERMANENTFLAGS stops offering \* once the mailbox is full
    let r = c.ok("SELECT INBOX").await;
    let perm = r.iter().find(|l| l.contains("PERMANENTFLAGS")).unwrap();
    assert!(perm.contains("k255)] Flags permitted"), "{perm}");
    // COPY/MOVE bring their keywords into the target mailbox: refused when that is full
    c.ok("SELECT Sent").await;
    c.ok("STORE 1 +FLAGS (fromsent)").await;
    let r = c.cmd("COPY 1 INBOX").await;
    assert!(r.last().unwrap().contains("NO [LIMIT]"), "{r:?}");
    let r = c.cmd("MOVE 1 INBOX").await;
    assert!(r.last().unwrap().contains("NO [LIMIT]"), "{r:?}");
    // keywords no message carries any more free their places
    c.ok("SELECT INBOX").await;
    c.ok(&format!("STORE 1:* -FLAGS.SILENT ({})", keywords("k", 0..10))).await;
    c.ok("STORE 2 +FLAGS (extra)").await;
    // length: MAX_KEYWORD_LEN bytes are fine, one more is not
    let r = c.cmd(&format!("STORE 2 +FLAGS ({})", "L".repeat(MAX_KEYWORD_LEN + 1))).await;
    assert!(r.last().unwrap().contains("NO [LIMIT] Keyword too long"), "{r:?}");
    c.ok(&format!("STORE 2 +FLAGS ({})", "L".repeat(MAX_KEYWORD_LEN))).await;
}
