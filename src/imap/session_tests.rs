//! Session transcripts against a real in-process server on 127.0.0.1:0: each test is a
//! client conversation with the lines the server must answer.

use std::time::Duration;

use super::test_support::*;

#[tokio::test]
async fn greeting_capability_login_logout() {
    let srv = start().await;
    let mut c = srv.client().await;
    assert!(c.greeting.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2"), "{}", c.greeting);
    let caps = c.ok("CAPABILITY").await;
    assert!(has(&caps, "AUTH=PLAIN") && has(&caps, "SASL-IR") && has(&caps, "LITERAL+"));
    assert!(!has(&caps, "STARTTLS"), "no TLS configured: {caps:?}");
    let r = c.ok(&format!("LOGIN {USER} {PASS}")).await;
    assert!(r[0].contains("[CAPABILITY ") && r[0].contains("QRESYNC") && r[0].contains("APPENDLIMIT=100000"), "{r:?}");
    let r = c.cmd("LOGIN a b").await;
    assert!(r[0].contains("BAD"), "{r:?}");
    let r = c.cmd("LOGOUT").await;
    assert_eq!(r[0], "* BYE Logging out");
    assert!(r[1].ends_with("OK LOGOUT completed"));
    assert_eq!(c.line().await, "");
}

#[tokio::test]
async fn login_disabled_without_tls() {
    let srv = start_with(|ctx| ctx.limits.allow_insecure_auth = false).await;
    let mut c = srv.client().await;
    assert!(c.greeting.contains("LOGINDISABLED"), "{}", c.greeting);
    let r = c.cmd(&format!("LOGIN {USER} {PASS}")).await;
    assert!(r[0].contains("NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c.cmd("AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==").await;
    assert!(r[0].contains("NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c.cmd("SELECT INBOX").await;
    assert!(r[0].contains("BAD"), "{r:?}");
}

#[tokio::test]
async fn three_failed_logins_disconnect() {
    let srv = start().await;
    let mut c = srv.client().await;
    for _ in 0..2 {
        let r = c.cmd(&format!("LOGIN {USER} wrong")).await;
        assert!(r[0].contains("NO [AUTHENTICATIONFAILED]"), "{r:?}");
    }
    let r = c.cmd(&format!("LOGIN {USER} wrong")).await;
    assert_eq!(r[0], "* BYE Too many failed logins");
    assert!(r[1].contains("NO [AUTHENTICATIONFAILED]"));
    assert_eq!(c.line().await, "");
}

#[tokio::test]
async fn authenticate_plain_with_and_without_initial_response() {
    let srv = start().await;
    let mut c = srv.client().await;
    // \0alice@example.org\0secret
    c.ok("AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==").await;
    let mut c = srv.client().await;
    let tag = c.next_tag();
    c.send(&format!("{tag} AUTHENTICATE PLAIN\r\n")).await;
    assert_eq!(c.line().await, "+ ");
    c.send("AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\r\n").await;
    let r = c.until_tagged(&tag).await;
    assert!(r[0].contains("OK [CAPABILITY"), "{r:?}");
    let mut c = srv.client().await;
    let tag = c.next_tag();
    c.send(&format!("{tag} AUTHENTICATE PLAIN\r\n")).await;
    assert_eq!(c.line().await, "+ ");
    c.send("*\r\n").await;
    assert!(c.until_tagged(&tag).await[0].contains("BAD"));
}

#[tokio::test]
async fn select_fetch_and_implicit_seen() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    srv.deliver("INBOX", MULTIPART).await;
    let mut c = srv.login().await;
    let r = c.ok("SELECT INBOX").await;
    assert!(has(&r, "* 2 EXISTS"), "{r:?}");
    assert!(has(&r, "* OK [UIDVALIDITY "));
    assert!(has(&r, "* OK [UIDNEXT 3]"));
    assert!(has(&r, "* OK [HIGHESTMODSEQ "));
    assert!(has(&r, "* OK [UNSEEN 1]"));
    assert!(has(&r, "* 2 RECENT"), "{r:?}");
    assert!(has(&r, "\\*)]"));
    assert!(r.last().unwrap().contains("OK [READ-WRITE]"));
    assert_eq!(c.ok("SEARCH RECENT").await[0], "* SEARCH 1 2");
    assert_eq!(c.ok("SEARCH NOT NEW").await[0], "* SEARCH");

    let r = c.ok("FETCH 1:* (UID FLAGS RFC822.SIZE)").await;
    assert!(r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE "), "{r:?}");
    assert!(r[1].starts_with("* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE "));

    let r = c.ok("FETCH 1 (ENVELOPE)").await;
    assert_eq!(
        r[0],
        "* 1 FETCH (ENVELOPE (\"Mon, 3 Feb 2025 10:00:00 +0000\" \"Hello\" ((\"Bob\" NIL \"bob\" \"example.org\")) ((\"Bob\" NIL \"bob\" \"example.org\")) ((\"Bob\" NIL \"bob\" \"example.org\")) ((NIL NIL \"alice\" \"example.org\")) NIL NIL NIL \"<1@example.org>\"))"
    );
    let r = c.ok("FETCH 2 BODYSTRUCTURE").await;
    assert!(r[0].contains("(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\""), "{r:?}");
    assert!(r[0].contains("\"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))"), "{r:?}");

    let r = c.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    assert_eq!(r[0], "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: Hello\r\n\r\n)");
    let r = c.ok("FETCH 1 FLAGS").await;
    assert_eq!(r[0], "* 1 FETCH (FLAGS (\\Recent))");

    // BODY[TEXT] without PEEK sets \Seen and reports it
    let r = c.ok("FETCH 1 BODY[TEXT]<0.8>").await;
    assert_eq!(r[0], "* 1 FETCH (BODY[TEXT]<0> {8}\r\nHi Alice FLAGS (\\Seen \\Recent))");
    let r = c.ok("FETCH 2 (BINARY.PEEK[2] BINARY.SIZE[1])").await;
    assert_eq!(r[0], "* 2 FETCH (BINARY[2] ~{4}\r\n\0\u{1}\u{2}\u{3} BINARY.SIZE[1] 17)");
    let r = c.ok("UID FETCH 2 (BODY.PEEK[1.MIME])").await;
    assert!(r[0].starts_with("* 2 FETCH (BODY[1.MIME] {"), "{r:?}");
    assert!(r[0].ends_with("UID 2)"), "{r:?}");
    let r = c.cmd("FETCH 3 FLAGS").await;
    assert!(r[0].contains("BAD"), "{r:?}");
    let r = c.ok("UID FETCH 99 FLAGS").await;
    assert_eq!(r.len(), 1);
    // whole-message items are streamed from the file
    let r = c.ok("FETCH 1 (UID BODY.PEEK[])").await;
    let expected = SIMPLE.replace('\n', "\r\n");
    assert_eq!(r[0], format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n{expected})", expected.len()));
    // ... and so are byte ranges of it (streamed from their offset), past the end: empty.
    let r = c.ok("FETCH 1 (BODY.PEEK[]<6.12>)").await;
    assert_eq!(r[0], format!("* 1 FETCH (BODY[]<6> {{12}}\r\n{})", &expected[6..18]));
    let r = c.ok("FETCH 1 (BODY.PEEK[]<100000.10>)").await;
    assert_eq!(r[0], "* 1 FETCH (BODY[]<100000> {0}\r\n)");
    let r = c.ok("FETCH 2 RFC822").await;
    assert!(r[0].starts_with("* 2 FETCH (RFC822 {") && r[0].ends_with("--b1--\r\n FLAGS (\\Seen \\Recent))"), "{r:?}");
    let r = c.ok("FETCH 1 FAST").await;
    assert!(r[0].contains("INTERNALDATE \""), "{r:?}");
}

#[tokio::test]
async fn store_flags_silent_and_unchangedsince() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let r = c.ok("STORE 1:2 +FLAGS (\\Flagged $Work)").await;
    // a new keyword: FLAGS and PERMANENTFLAGS first (RFC 3501 7.2.6)
    assert_eq!(r[0], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)");
    assert!(r[1].starts_with("* OK [PERMANENTFLAGS ("), "{r:?}");
    assert_eq!(r[2], "* 1 FETCH (FLAGS (\\Flagged $Work \\Recent))");
    assert_eq!(r[3], "* 2 FETCH (FLAGS (\\Flagged $Work \\Recent))");
    let r = c.ok("STORE 1 -FLAGS.SILENT ($Work)").await;
    assert_eq!(r.len(), 1, "{r:?}");
    let r = c.ok("UID STORE 2 FLAGS (\\Seen)").await;
    assert_eq!(r[0], "* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent))");
    let r = c.ok("FETCH 1:2 (FLAGS MODSEQ)").await;
    let modseq1: u64 =
        r[0].split("MODSEQ (").nth(1).and_then(|s| s.split(')').next()).and_then(|s| s.parse().ok()).expect("modseq");
    let r = c.ok(&format!("STORE 1:2 (UNCHANGEDSINCE {modseq1}) +FLAGS (\\Answered)")).await;
    assert!(r[0].starts_with("* 1 FETCH (FLAGS (\\Answered \\Flagged \\Recent) MODSEQ ("), "{r:?}");
    assert!(r.last().unwrap().contains("OK [MODIFIED 2]"), "{r:?}");
    let r = c.cmd("STORE 1 +FLAGS (\\Recent)").await;
    assert!(r[0].contains("BAD"));
}

#[tokio::test]
async fn search_keys_esearch_and_searchres() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    srv.deliver("INBOX", MULTIPART).await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    c.ok("STORE 2 +FLAGS (\\Seen)").await;
    assert_eq!(c.ok("SEARCH UNSEEN").await[0], "* SEARCH 1 3");
    assert_eq!(c.ok("SEARCH FROM carol").await[0], "* SEARCH 2");
    assert_eq!(c.ok("SEARCH BODY café").await[0], "* SEARCH 2");
    assert_eq!(c.ok("SEARCH CHARSET UTF-8 SUBJECT hello NOT 3").await[0], "* SEARCH 1");
    assert_eq!(c.ok("UID SEARCH OR SEEN LARGER 100000").await[0], "* SEARCH 2");
    assert_eq!(c.ok("SEARCH SENTON 3-Feb-2025").await[0], "* SEARCH 1 3");
    assert_eq!(
        c.ok("SEARCH RETURN (MIN MAX COUNT ALL) ALL").await[0],
        "* ESEARCH (TAG \"t10\") MIN 1 MAX 3 COUNT 3 ALL 1:3"
    );
    let r = c.ok("UID SEARCH RETURN (SAVE) SUBJECT hello").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(c.ok("FETCH $ (UID)").await.len(), 3);
    assert_eq!(c.ok("SEARCH $").await[0], "* SEARCH 1 3");
    let r = c.cmd("SEARCH CHARSET KOI8-R ALL").await;
    assert!(r[0].contains("NO [BADCHARSET"), "{r:?}");
    let r = c.ok("SEARCH MODSEQ 1").await;
    assert!(r[0].starts_with("* SEARCH 1 2 3 (MODSEQ "), "{r:?}");
}

#[tokio::test]
async fn copy_move_expunge_with_uidplus() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 3).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let r = c.cmd("COPY 1 Nowhere").await;
    assert!(r[0].contains("NO [TRYCREATE]"), "{r:?}");
    let r = c.ok("COPY 1:2 Trash").await;
    assert!(r[0].contains("OK [COPYUID ") && r[0].ends_with(" 1:2 1:2] COPY completed"), "{r:?}");
    let r = c.ok("UID MOVE 2 Junk").await;
    assert!(r[0].starts_with("* OK [COPYUID ") && r[0].contains(" 2 1]"), "{r:?}");
    assert_eq!(r[1], "* 2 EXPUNGE");
    c.ok("STORE 1 +FLAGS (\\Deleted)").await;
    let r = c.ok("EXPUNGE").await;
    assert_eq!(r[0], "* 1 EXPUNGE");
    let r = c.ok("STATUS Trash (MESSAGES UIDNEXT UNSEEN)").await;
    assert_eq!(r[0], "* STATUS Trash (MESSAGES 2 UIDNEXT 3 UNSEEN 2)");
    c.ok("STORE 1 +FLAGS (\\Deleted)").await;
    let r = c.ok("UID EXPUNGE 1:2").await;
    assert_eq!(r.len(), 1, "uid 3 is outside the set: {r:?}");
    let r = c.ok("UID EXPUNGE 3").await;
    assert_eq!(r[0], "* 1 EXPUNGE");
}

#[tokio::test]
async fn append_literals_and_limits() {
    let srv = start().await;
    let mut c = srv.login().await;
    let msg = "Subject: appended\r\n\r\nbody\r\n";
    let tag = c.next_tag();
    c.send(&format!("{tag} APPEND Drafts (\\Draft) \"05-Jan-2025 10:00:00 +0100\" {{{}}}\r\n", msg.len())).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&format!("{msg}\r\n")).await;
    let r = c.until_tagged(&tag).await;
    assert!(r[0].contains("OK [APPENDUID ") && r[0].contains(" 1] APPEND completed"), "{r:?}");
    // LITERAL+ multi-append, no continuation
    let r = c.ok(&format!("APPEND Drafts {{{}+}}\r\n{msg} (\\Seen) {{{}+}}\r\n{msg}", msg.len(), msg.len())).await;
    assert!(r[0].contains(" 2:3] APPEND completed"), "{r:?}");
    let r = c.cmd(&format!("APPEND Nowhere {{{}+}}\r\n{msg}", msg.len())).await;
    assert!(r[0].contains("NO [TRYCREATE]"), "{r:?}");
    // too big: refused before the client sends it
    let r = c.cmd("APPEND Drafts {200000}").await;
    assert!(r[0].contains("NO [TOOBIG]"), "{r:?}");
    c.ok("NOOP").await;
    let r = c.ok("EXAMINE Drafts").await;
    assert!(has(&r, "* 3 EXISTS") && r.last().unwrap().contains("[READ-ONLY]"));
    let r = c.ok("FETCH 1 (FLAGS INTERNALDATE)").await;
    assert_eq!(r[0], "* 1 FETCH (FLAGS (\\Draft) INTERNALDATE \"05-Jan-2025 09:00:00 +0000\")");
    let r = c.cmd("STORE 1 +FLAGS (\\Seen)").await;
    assert!(r[0].contains("NO [READ-ONLY]"), "{r:?}");
}

#[tokio::test]
async fn quota_reporting_and_overquota() {
    let srv = start().await;
    let mut c = srv.login().await;
    let r = c.ok("GETQUOTAROOT INBOX").await;
    assert_eq!(r[0], "* QUOTAROOT INBOX \"\"");
    assert_eq!(r[1], "* QUOTA \"\" (STORAGE 0 1024)");
    assert_eq!(c.ok("GETQUOTA \"\"").await[0], "* QUOTA \"\" (STORAGE 0 1024)");
    assert!(c.cmd("SETQUOTA \"\" (STORAGE 1)").await[0].contains("NO [NOPERM]"));
    let big = "x".repeat(90_000);
    for _ in 0..11 {
        c.cmd(&format!("APPEND INBOX {{{}+}}\r\n{big}", big.len())).await;
    }
    let r = c.cmd(&format!("APPEND INBOX {{{}+}}\r\n{big}", big.len())).await;
    assert!(r[0].contains("NO [OVERQUOTA]"), "{r:?}");
}

#[tokio::test]
async fn mailbox_management_and_list() {
    let srv = start().await;
    let mut c = srv.login().await;
    let r = c.ok("LIST \"\" \"\"").await;
    assert_eq!(r[0], "* LIST (\\Noselect) \"/\" \"\"");
    let r = c.ok("LIST \"\" *").await;
    assert!(has(&r, "* LIST (\\HasNoChildren) \"/\" INBOX"), "{r:?}");
    assert!(has(&r, "* LIST (\\HasNoChildren \\Sent) \"/\" Sent"), "{r:?}");
    assert!(has(&r, "\\Trash) \"/\" Trash") && has(&r, "\\Junk) \"/\" Junk") && has(&r, "\\Drafts) \"/\" Drafts"));
    c.ok("CREATE Projects/2025").await;
    c.ok("CREATE \"Entw&APw-rfe\"").await;
    c.ok("CREATE Archive (USE (\\Archive))").await;
    assert!(c.cmd("CREATE Projects").await[0].contains("NO [ALREADYEXISTS]"));
    assert!(c.cmd("CREATE X (USE (\\Bogus))").await[0].contains("NO [USEATTR]"));
    let r = c.ok("LIST \"\" %").await;
    assert!(has(&r, "(\\HasChildren) \"/\" Projects"), "{r:?}");
    assert!(has(&r, "\"/\" Entw&APw-rfe"), "{r:?}");
    assert!(has(&r, "(\\HasNoChildren \\Archive) \"/\" Archive"), "{r:?}");
    assert!(!has(&r, "Projects/2025"));
    c.ok("RENAME Projects/2025 Projects/2026").await;
    let r = c.ok("LIST Projects/ %").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" Projects/2026");
    c.ok("SUBSCRIBE Projects/2026").await;
    let r = c.ok("LSUB \"\" *").await;
    assert!(has(&r, "* LSUB () \"/\" Projects/2026"), "{r:?}");
    let r = c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (CHILDREN STATUS (MESSAGES))").await;
    assert!(has(&r, "\"/\" Projects (\"CHILDINFO\" (\"SUBSCRIBED\"))"), "{r:?}");
    let r = c.ok("LIST (SPECIAL-USE) \"\" *").await;
    assert_eq!(r.len(), 6, "{r:?}");
    let r = c.ok("LIST \"\" (INBOX Sent) RETURN (STATUS (MESSAGES UIDVALIDITY))").await;
    assert!(has(&r, "* STATUS INBOX (MESSAGES 0 UIDVALIDITY "), "{r:?}");
    c.ok("UNSUBSCRIBE Projects/2026").await;
    c.ok("DELETE Projects/2026").await;
    assert!(c.cmd("DELETE Projects/2026").await[0].contains("NO [NONEXISTENT]"));
    assert!(c.cmd("DELETE INBOX").await[0].contains("NO"));
    assert!(c.cmd("SELECT Nope").await[0].contains("NO [NONEXISTENT]"));
    // UTF-8 names once enabled
    c.ok("ENABLE UTF8=ACCEPT").await;
    let r = c.ok("LIST \"\" Entw*").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" {9}\r\nEntwürfe");
}

#[tokio::test]
async fn inbox_rename_keeps_inbox() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut c = srv.login().await;
    c.ok("RENAME inbox Old").await;
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS INBOX (MESSAGES 0)");
    let r = c.ok("STATUS Old (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS Old (MESSAGES 1)");
}

#[tokio::test]
async fn misc_any_state_commands() {
    let srv = start().await;
    let mut c = srv.client().await;
    assert_eq!(
        c.ok("ID (\"name\" \"test\")").await[0],
        format!("* ID (\"name\" \"mailroom\" \"version\" \"{}\")", env!("CARGO_PKG_VERSION"))
    );
    assert!(c.cmd("NAMESPACE").await[0].contains("BAD"));
    c.ok(&format!("LOGIN {USER} {PASS}")).await;
    assert_eq!(c.ok("NAMESPACE").await[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL");
    assert_eq!(c.ok("ENABLE CONDSTORE X-UNKNOWN").await[0], "* ENABLED CONDSTORE");
    assert!(c.cmd("FETCH 1 FLAGS").await[0].contains("BAD"));
    c.ok("SELECT INBOX").await;
    assert!(c.cmd("ENABLE QRESYNC").await[0].contains("BAD"));
    c.ok("CHECK").await;
    c.ok("UNSELECT").await;
    assert!(c.cmd("CLOSE").await[0].contains("BAD"));
    let r = c.cmd("FROBNICATE").await;
    assert!(r[0].starts_with("t") && r[0].contains(" BAD "), "{r:?}");
    c.send("\r\n").await;
    assert!(c.line().await.starts_with("* BAD"));
}

#[tokio::test]
async fn close_expunges_silently() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("CLOSE").await;
    assert_eq!(r.len(), 1, "{r:?}");
    let r = c.ok("SELECT INBOX").await;
    assert!(has(&r, "* 1 EXISTS"), "{r:?}");
}

#[tokio::test]
async fn other_sessions_changes_are_reported() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let mut a = srv.login().await;
    let mut b = srv.login().await;
    a.ok("SELECT INBOX").await;
    // \Recent goes to the first session only
    assert!(has(&b.ok("SELECT INBOX").await, "* 0 RECENT"));
    b.ok("STORE 2 +FLAGS (\\Flagged)").await;
    let r = a.ok("NOOP").await;
    assert_eq!(r[0], "* 2 FETCH (FLAGS (\\Flagged \\Recent))");
    b.ok("STORE 1 +FLAGS (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    // FETCH must not report the expunge (sequence numbers would shift mid-command)...
    let r = a.ok("FETCH 1:2 (UID)").await;
    assert!(!has(&r, "EXPUNGE"), "{r:?}");
    // ...but NOOP does
    let r = a.ok("NOOP").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");
    srv.deliver("INBOX", SIMPLE).await;
    let r = a.ok("NOOP").await;
    assert!(has(&r, "* 2 EXISTS"), "{r:?}");
}

#[tokio::test]
async fn idle_reports_new_mail_quickly() {
    let srv = start().await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let tag = c.next_tag();
    c.send(&format!("{tag} IDLE\r\n")).await;
    assert_eq!(c.line().await, "+ idling");
    let started = std::time::Instant::now();
    srv.deliver("INBOX", SIMPLE).await;
    assert_eq!(c.line().await, "* 1 EXISTS");
    assert!(started.elapsed() < Duration::from_secs(1));
    // IMAP4rev1 client: the new message is \Recent for this session
    assert_eq!(c.line().await, "* 1 RECENT");
    c.send("DONE\r\n").await;
    let r = c.until_tagged(&tag).await;
    assert!(r[0].ends_with("OK IDLE terminated"), "{r:?}");
}

#[tokio::test]
async fn condstore_and_qresync() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 3).await;
    let mut c = srv.login().await;
    c.ok("ENABLE QRESYNC").await;
    let r = c.ok("SELECT INBOX").await;
    let uidvalidity: u32 = r
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|s| s.split(']').next())
        .and_then(|s| s.parse().ok())
        .expect("uidvalidity");
    let hms: u64 = r
        .iter()
        .find_map(|l| l.strip_prefix("* OK [HIGHESTMODSEQ "))
        .and_then(|s| s.split(']').next())
        .and_then(|s| s.parse().ok())
        .expect("highestmodseq");
    c.ok("STORE 1 +FLAGS (\\Seen)").await;
    c.ok("STORE 3 +FLAGS (\\Deleted)").await;
    let r = c.ok("EXPUNGE").await;
    assert_eq!(r[0], "* VANISHED 3");
    let r = c.ok(&format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hms} VANISHED)")).await;
    assert_eq!(r[0], "* VANISHED (EARLIER) 3");
    assert!(r[1].starts_with("* 1 FETCH (FLAGS (\\Seen \\Recent) UID 1 MODSEQ ("), "{r:?}");
    c.ok("UNSELECT").await;
    let r = c.ok(&format!("SELECT INBOX (QRESYNC ({uidvalidity} {hms} 1:3))")).await;
    assert!(has(&r, "* VANISHED (EARLIER) 3"), "{r:?}");
    assert!(has(&r, "* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ("), "{r:?}");
    let r = c.ok("SELECT Sent").await;
    assert_eq!(r[0], "* OK [CLOSED] Previous mailbox closed");
}

#[tokio::test]
async fn bad_input_gets_answers_not_panics() {
    let srv = start().await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    for junk in ["FETCH", "FETCH 1:* (BODY[", "SEARCH OR", "STORE 1 FLAGS", "UID", "LIST", "APPEND"] {
        let r = c.cmd(junk).await;
        assert!(r.last().unwrap().contains(" BAD "), "{junk} -> {r:?}");
    }
    // an oversized non-synchronizing literal cannot be skipped: BYE
    let tag = c.next_tag();
    c.send(&format!("{tag} APPEND INBOX {{999999+}}\r\n")).await;
    assert_eq!(c.line().await, "* BYE Literal too big");
}

#[tokio::test]
async fn too_many_bad_commands_disconnect() {
    let srv = start_with(|ctx| ctx.limits.max_bad_commands = 3).await;
    let mut c = srv.client().await;
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(c.line().await.contains("BAD"));
    assert!(c.line().await.contains("BAD"));
    assert!(c.line().await.contains("BAD"));
    assert_eq!(c.line().await, "* BYE Too many invalid commands");
}

#[tokio::test]
async fn shutdown_and_timeout_say_bye() {
    let srv = start_with(|ctx| ctx.limits.login_timeout = Duration::from_millis(300)).await;
    let mut idle = srv.client().await;
    assert_eq!(idle.line().await, "* BYE Autologout; idle for too long");
    let mut c = srv.login().await;
    srv.shutdown.send(true).expect("shutdown");
    assert_eq!(c.line().await, "* BYE Server shutting down");
}

#[tokio::test]
async fn idle_ends_with_bye_on_shutdown() {
    let srv = start().await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let tag = c.next_tag();
    c.send(&format!("{tag} IDLE\r\n")).await;
    assert_eq!(c.line().await, "+ idling");
    srv.shutdown.send(true).expect("shutdown");
    assert_eq!(c.line().await, "* BYE Server shutting down");
    assert_eq!(c.line().await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_one_mailbox_while_mail_arrives() {
    const CLIENTS: usize = 50;
    const MESSAGES: usize = 10;
    let srv = std::sync::Arc::new(start_with(|ctx| ctx.limits.max_connections_per_user_ip = 100).await);
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = srv.login().await;
            // poll until every delivery is visible (SELECT itself may already show them)
            let mut exists = 0;
            let mut command = "SELECT INBOX";
            for _ in 0..200 {
                for l in c.ok(command).await {
                    if let Some(n) = l.strip_prefix("* ").and_then(|r| r.strip_suffix(" EXISTS")) {
                        exists = n.parse().unwrap_or(exists);
                    }
                }
                if exists == MESSAGES {
                    break;
                }
                command = "NOOP";
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(exists, MESSAGES, "client {i} saw {exists}");
            let uid = i % MESSAGES + 1;
            c.ok(&format!("UID STORE {uid} +FLAGS.SILENT ($c{i})")).await;
            c.ok("LOGOUT").await;
        }));
    }
    for _ in 0..MESSAGES {
        srv.deliver("INBOX", SIMPLE).await;
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 1:* (FLAGS)").await;
    let keywords = r.iter().map(|l| l.matches("$c").count()).sum::<usize>();
    assert_eq!(keywords, CLIENTS, "{r:?}");
}

#[tokio::test]
async fn imap4rev2_client_gets_rev2_answers() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut c = srv.login().await;
    assert_eq!(c.ok("ENABLE IMAP4rev2").await[0], "* ENABLED IMAP4REV2");
    let r = c.ok("SELECT inbox").await;
    assert!(!has(&r, "RECENT") && !has(&r, "[UNSEEN"), "{r:?}");
    assert!(has(&r, "* LIST () \"/\" INBOX"), "{r:?}");
    // ESEARCH is the only search answer in IMAP4rev2
    let r = c.ok("SEARCH ALL").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t4\") ALL 1");
    let r = c.ok("UID SEARCH UNSEEN").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t5\") UID ALL 1");
    let r = c.ok("SEARCH SEEN").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t6\")");
}

#[tokio::test]
async fn restart_keeps_uidvalidity_and_uids() {
    let first = start().await;
    first.deliver("INBOX", SIMPLE).await;
    first.deliver("INBOX", SIMPLE).await;
    let mut c = first.login().await;
    let before = c.ok("SELECT INBOX").await;
    c.ok("STORE 2 +FLAGS (\\Flagged)").await;
    c.ok("LOGOUT").await;
    let dir = first.dir.clone();
    first.shutdown.send(true).expect("shutdown");
    drop(first);
    let second = start_in(dir, |_| {}, false).await;
    let mut c = second.login().await;
    let after = c.ok("SELECT INBOX").await;
    let validity = |r: &[String]| r.iter().find(|l| l.contains("[UIDVALIDITY")).cloned();
    assert_eq!(validity(&before), validity(&after));
    assert_eq!(
        c.ok("FETCH 1:* (UID FLAGS)").await[..2],
        ["* 1 FETCH (UID 1 FLAGS ())".to_string(), "* 2 FETCH (UID 2 FLAGS (\\Flagged))".to_string()]
    );
}

#[tokio::test]
async fn sort_by_subject_date_and_size() {
    let srv = start().await;
    srv.deliver(
        "INBOX",
        "From: Zed <zed@x.org>\nSubject: Re: beta\nDate: Tue, 4 Feb 2025 10:00:00 +0000\n\nlong body here\n",
    )
    .await;
    srv.deliver("INBOX", "From: Amy <amy@x.org>\nSubject: alpha\nDate: Wed, 5 Feb 2025 10:00:00 +0000\n\nx\n").await;
    srv.deliver(
        "INBOX",
        "From: Bob <bob@x.org>\nSubject: [list] Fwd: Beta (fwd)\nDate: Mon, 3 Feb 2025 10:00:00 +0000\n\nxy\n",
    )
    .await;
    let mut c = srv.login().await;
    assert!(has(&c.ok("CAPABILITY").await, " SORT "));
    c.ok("SELECT INBOX").await;
    assert_eq!(c.ok("SORT (SUBJECT) UTF-8 ALL").await[0], "* SORT 2 1 3");
    assert_eq!(c.ok("SORT (REVERSE DATE) UTF-8 ALL").await[0], "* SORT 2 1 3");
    assert_eq!(c.ok("SORT (FROM) UTF-8 NOT 2").await[0], "* SORT 3 1");
    assert_eq!(c.ok("UID SORT (SIZE) US-ASCII ALL").await[0], "* SORT 2 1 3");
    assert_eq!(c.ok("SORT (ARRIVAL) UTF-8 ALL").await[0], "* SORT 1 2 3");
    assert!(c.cmd("SORT (SUBJECT) KOI8-R ALL").await[0].contains("NO [BADCHARSET"));
}

#[tokio::test]
async fn random_garbage_never_kills_the_server() {
    let srv = start_with(|ctx| ctx.limits.max_bad_commands = 1000).await;
    let mut seed = 42u32;
    let mut next = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (seed >> 16) as u8
    };
    let words: [&str; 12] = ["FETCH", "1:*", "(", ")", "BODY[", "]", "UID", "SEARCH", "OR", "\"", "*", "{1}"];
    let commands: [&str; 14] = [
        "FETCH",
        "UID FETCH",
        "SEARCH",
        "UID SEARCH",
        "STORE",
        "SELECT",
        "LIST",
        "STATUS",
        "COPY",
        "SORT",
        "EXPUNGE",
        "CREATE",
        "ENABLE",
        "NOOP",
    ];
    srv.deliver("INBOX", MULTIPART).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    for n in 0..400 {
        let tag = format!("g{n}");
        let mut line = format!("{tag} {}", commands[usize::from(next()) % commands.len()]);
        for _ in 0..(next() % 8) {
            line.push(' ');
            if next() % 3 == 0 {
                line.push(char::from(b'!' + next() % 90));
            } else {
                line.push_str(words[usize::from(next()) % words.len()]);
            }
        }
        // no literal markers at the line end: those would wait for data
        let line = line.trim_end_matches('}').to_string();
        c.send(&format!("{line}\r\n")).await;
        let r = c.until_tagged(&tag).await;
        let last = r.last().cloned().unwrap_or_default();
        assert!(last.starts_with(&format!("{tag} ")), "{line} -> {r:?}");
        if !has(&r, "* OK [READ-WRITE]") && !last.contains(" OK ") {
            assert!(last.contains(" BAD ") || last.contains(" NO "), "{line} -> {r:?}");
        }
    }
    // still serving
    srv.deliver("INBOX", SIMPLE).await;
    let mut d = srv.login().await;
    assert!(has(&d.ok("SELECT INBOX").await, " EXISTS"));
}

#[tokio::test]
async fn connections_per_user_and_ip_are_capped() {
    let srv = start_with(|ctx| ctx.limits.max_connections_per_user_ip = 2).await;
    let a = srv.login().await;
    let _b = srv.login().await;
    let mut c = srv.client().await;
    let r = c.cmd(&format!("LOGIN {USER} {PASS}")).await;
    assert!(r[0].contains("NO [LIMIT]"), "{r:?}");
    // bob is not affected
    c.ok("LOGIN bob@example.org bobpw").await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut d = srv.client().await;
    d.ok(&format!("LOGIN {USER} {PASS}")).await;
}

#[tokio::test]
async fn thread_references_and_orderedsubject() {
    let srv = start().await;
    srv.deliver("INBOX", "Message-ID: <a@x>\nSubject: plan\nDate: Mon, 3 Feb 2025 10:00:00 +0000\n\n1\n").await;
    srv.deliver(
        "INBOX",
        "Message-ID: <b@x>\nIn-Reply-To: <a@x>\nSubject: Re: plan\nDate: Mon, 3 Feb 2025 11:00:00 +0000\n\n2\n",
    )
    .await;
    srv.deliver("INBOX", "Message-ID: <c@x>\nSubject: other\nDate: Mon, 3 Feb 2025 09:00:00 +0000\n\n3\n").await;
    srv.deliver(
        "INBOX",
        "Message-ID: <d@x>\nReferences: <a@x> <b@x>\nSubject: Re: plan\nDate: Mon, 3 Feb 2025 12:00:00 +0000\n\n4\n",
    )
    .await;
    let mut c = srv.login().await;
    assert!(has(&c.ok("CAPABILITY").await, "THREAD=REFERENCES"));
    c.ok("SELECT INBOX").await;
    assert_eq!(c.ok("THREAD REFERENCES UTF-8 ALL").await[0], "* THREAD (3)(1 2 4)");
    assert_eq!(c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL").await[0], "* THREAD (3)(1 (2)(4))");
    assert_eq!(c.ok("UID THREAD REFERENCES UTF-8 NOT 2").await[0], "* THREAD (3)(1 4)");
}

#[tokio::test]
async fn selected_mailbox_deleted_elsewhere() {
    let srv = start().await;
    let mut a = srv.login().await;
    let mut b = srv.login().await;
    a.ok("CREATE Work").await;
    a.ok("SELECT Work").await;
    b.ok("DELETE Work").await;
    // the session keeps answering (the folder just looks empty) and can move on
    a.ok("NOOP").await;
    a.ok("SELECT INBOX").await;
    assert!(a.cmd("SELECT Work").await[0].contains("NO [NONEXISTENT]"));
}
