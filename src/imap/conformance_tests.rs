//! RFC conformance as transcripts: keywords announced in FLAGS before a FETCH FLAGS uses
//! them, mailbox names that are not modified UTF-7, CONDSTORE's implicit enabling and the
//! ESEARCH MODSEQ, LIST-EXTENDED CHILDINFO and LSUB's `\Noselect` parents. A session that
//! did not ENABLE IMAP4rev2 gets RFC 3501 behaviour throughout. STARTTLS drops what was
//! pipelined after it in plaintext.

use super::test_support::*;

/// RFC 3501 7.2.6: FLAGS "MUST be recorded by the client" and lists the flags a FETCH
/// FLAGS may carry; a new keyword is announced (FLAGS + PERMANENTFLAGS, 7.1) before the
/// first response that uses it, in this session and in others at their next report point.
#[tokio::test]
async fn new_keyword_is_announced_before_use() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let mut c = srv.login().await;
    let mut other = srv.login().await;
    c.ok("SELECT INBOX").await;
    other.ok("SELECT INBOX").await;
    assert_eq!(
        c.cmd("STORE 1 +FLAGS ($keyword1)").await,
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $keyword1)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $keyword1 \\*)] Flags permitted",
            "* 1 FETCH (FLAGS ($keyword1 \\Recent))",
            "t3 OK STORE completed",
        ]
    );
    // a keyword already announced needs no new FLAGS (c selected first: it holds \Recent,
    // RFC 3501 2.3.2; the other session does not)
    assert_eq!(
        c.cmd("STORE 2 +FLAGS ($keyword1)").await,
        ["* 2 FETCH (FLAGS ($keyword1 \\Recent))", "t4 OK STORE completed"]
    );
    assert_eq!(
        other.cmd("NOOP").await,
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $keyword1)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $keyword1 \\*)] Flags permitted",
            "* 1 FETCH (FLAGS ($keyword1))",
            "* 2 FETCH (FLAGS ($keyword1))",
            "t3 OK NOOP completed",
        ]
    );
    // APPEND into the selected mailbox: FLAGS comes with the new message
    let r = c.ok(&format!("APPEND INBOX ($keyword2) {{{}+}}\r\n{}", SIMPLE.len(), SIMPLE)).await;
    assert_eq!(r[0], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $keyword1 $keyword2)", "{r:#?}");
    assert!(
        r[1].starts_with(
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $keyword1 $keyword2 \\*)]"
        )
    );
    assert_eq!(r[2], "* 3 EXISTS", "{r:#?}");
    // COPY from another mailbox brings its keywords along
    c.ok("SELECT Sent").await;
    c.ok(&format!("APPEND Sent ($fromsent) {{{}+}}\r\n{}", SIMPLE.len(), SIMPLE)).await;
    c.ok("COPY 1 INBOX").await;
    let r = other.ok("NOOP").await;
    assert!(r[0].starts_with("* FLAGS (") && r[0].contains(" $fromsent"), "{r:#?}");
    assert!(r[1].starts_with("* OK [PERMANENTFLAGS (") && r[1].contains("$fromsent"), "{r:#?}");
}

/// RFC 3501 9: `flag-keyword = atom`; `NIL` and 8-bit text are refused, not stored.
#[tokio::test]
async fn keywords_that_are_not_atoms_are_refused() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    for flags in ["(NIL)", "(nil)", "(a\"b)", "(a]b)", "(a(b)", "(\u{e9}t\u{e9})"] {
        let r = c.cmd(&format!("STORE 1 +FLAGS {flags}")).await;
        assert_eq!(r.len(), 1, "{flags} -> {r:?}");
        assert!(r[0].starts_with("t") && r[0].contains(" BAD "), "{flags} -> {r:?}");
    }
    let r = c.cmd(&format!("APPEND INBOX (NIL) {{{}+}}\r\n{}", SIMPLE.len(), SIMPLE)).await;
    assert!(r.last().unwrap().contains(" BAD "), "{r:?}");
    assert_eq!(c.ok("FETCH 1:* FLAGS").await, ["* 1 FETCH (FLAGS (\\Recent))", "t10 OK FETCH completed"]);
}

const ODD_NAME: &str = "!#$&'+,-.0123456789:;<=>?@^_`|[}";

/// RFC 3501 6.3.1 / 7.1: a name that is not valid modified UTF-7 is a syntactically valid
/// `mailbox`, so the answer is NO, not BAD; and BADs count towards the limit of invalid
/// commands, so answering them BAD got a client cut off after 20 such names.
#[tokio::test]
async fn name_that_is_not_modified_utf7_gets_no_and_list_pattern_survives() {
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    for cmd in [
        // COPY and MOVE first: a failed SELECT leaves no mailbox selected
        format!("COPY 1 {ODD_NAME}"),
        format!("MOVE 1 {ODD_NAME}"),
        format!("UID COPY 1 {ODD_NAME}"),
        format!("SELECT {ODD_NAME}"),
        format!("EXAMINE {ODD_NAME}"),
        format!("CREATE {ODD_NAME}"),
        format!("DELETE {ODD_NAME}"),
        format!("RENAME {ODD_NAME} x"),
        format!("SUBSCRIBE {ODD_NAME}"),
        format!("UNSUBSCRIBE {ODD_NAME}"),
        format!("STATUS {ODD_NAME} (MESSAGES)"),
        format!("APPEND {ODD_NAME} {{2+}}\r\nhi"),
        format!("GETQUOTAROOT {ODD_NAME}"),
    ] {
        let r = c.cmd(&cmd).await;
        assert_eq!(r.len(), 1, "{cmd} -> {r:?}");
        assert!(r[0].ends_with(" NO [CANNOT] Mailbox name is not valid modified UTF-7"), "{cmd} -> {r:?}");
    }
    // more than the invalid-command limit (20) of them, then the same characters as a
    // LIST pattern: a legal command, answered, never a disconnect
    for _ in 0..25 {
        let r = c.cmd(&format!("SELECT {ODD_NAME}")).await;
        assert!(r[0].contains(" NO [CANNOT] "), "{r:?}");
    }
    assert_eq!(c.cmd(&format!("LIST \"\" {ODD_NAME}%*")).await, ["t41 OK LIST completed"]);
    assert_eq!(c.cmd(&format!("LIST \"\" \"{ODD_NAME}%*\"")).await, ["t42 OK LIST completed"]);
    assert_eq!(c.cmd(&format!("LSUB \"\" {ODD_NAME}%*")).await, ["t43 OK LSUB completed"]);
    c.ok("NOOP").await;
}

/// RFC 7162 3.1: the first CONDSTORE-enabling command (here FETCH MODSEQ) with a mailbox
/// selected reports HIGHESTMODSEQ in its tagged OK; later ones do not.
#[tokio::test]
async fn first_fetch_modseq_enables_condstore_with_highestmodseq() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 2).await;
    let mut c = srv.login().await;
    let r = c.ok("SELECT INBOX").await;
    let highest = r.iter().find_map(|l| l.strip_prefix("* OK [HIGHESTMODSEQ ")).unwrap().split(']').next().unwrap();
    let highest: u64 = highest.parse().unwrap();
    let r = c.cmd("FETCH 1 (UID MODSEQ)").await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].starts_with("* 1 FETCH (UID 1 MODSEQ ("), "{r:?}");
    assert_eq!(r[1], format!("t3 OK [HIGHESTMODSEQ {highest}] FETCH completed"));
    // CONDSTORE is on: STORE responses carry MODSEQ, and no second HIGHESTMODSEQ
    let r = c.cmd("FETCH 2 (FLAGS) (CHANGEDSINCE 1)").await;
    assert_eq!(r.last().unwrap(), "t4 OK FETCH completed", "{r:?}");
    // CHANGEDSINCE alone enables it too, in a fresh session
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let r = c.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)").await;
    assert_eq!(r.last().unwrap(), &format!("t3 OK [HIGHESTMODSEQ {highest}] UID FETCH completed"), "{r:?}");
}

/// RFC 7162 3.1.5 with RFC 4731 3.2: the MODSEQ of an ESEARCH is the highest mod-sequence
/// of the messages it returns: MIN alone -> that message's, MAX alone -> that one's.
#[tokio::test]
async fn esearch_min_max_modseq_is_of_the_returned_message() {
    let srv = start().await;
    srv.deliver_copies("INBOX", SIMPLE, 3).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    c.ok("STORE 3 +FLAGS (\\Flagged)").await;
    c.ok("STORE 1 +FLAGS (\\Seen)").await;
    let r = c.ok("FETCH 1:3 (MODSEQ)").await;
    let modseq = |i: usize| -> u64 { r[i].split("MODSEQ (").nth(1).unwrap().trim_end_matches("))").parse().unwrap() };
    let (m1, m2, m3) = (modseq(0), modseq(1), modseq(2));
    assert!(m1 > m3 && m3 > m2, "{r:?}");
    assert_eq!(c.cmd("SEARCH RETURN (MIN) MODSEQ 1").await[0], format!("* ESEARCH (TAG \"t6\") MIN 1 MODSEQ {m1}"));
    assert_eq!(c.cmd("SEARCH RETURN (MAX) MODSEQ 1").await[0], format!("* ESEARCH (TAG \"t7\") MAX 3 MODSEQ {m3}"));
    assert_eq!(
        c.cmd("UID SEARCH RETURN (MIN MAX) MODSEQ 1 2:3").await[0],
        format!("* ESEARCH (TAG \"t8\") UID MIN 2 MAX 3 MODSEQ {m3}")
    );
    assert_eq!(c.cmd("SEARCH RETURN (COUNT) MODSEQ 1").await[0], format!("* ESEARCH (TAG \"t9\") COUNT 3 MODSEQ {m1}"));
}

/// RFC 5258 3.5: CHILDINFO marks a parent that matches the pattern but not the selection
/// and has a subscribed descendant that is not listed itself; RFC 5258 3.1 `\NonExistent`
/// for subscribed names without a mailbox. RFC 3501 6.3.9: LSUB with `%` returns the
/// unsubscribed parent of a subscribed mailbox as `\Noselect`.
#[tokio::test]
async fn list_extended_childinfo_and_lsub_parents() {
    let srv = start().await;
    let mut c = srv.login().await;
    c.ok("CREATE a/test1").await;
    c.ok("CREATE a/test2/test1").await;
    c.ok("SUBSCRIBE a/test2/test1").await;
    c.ok("SUBSCRIBE gone/child").await;
    assert_eq!(
        c.cmd("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (a/test2 a/test2/test1)").await,
        ["* LIST (\\HasNoChildren \\Subscribed) \"/\" a/test2/test1", "t6 OK LIST completed"]
    );
    assert_eq!(
        c.cmd("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" a/%").await,
        ["* LIST (\\HasChildren) \"/\" a/test2 (\"CHILDINFO\" (\"SUBSCRIBED\"))", "t7 OK LIST completed"]
    );
    assert_eq!(
        c.cmd("LIST (SUBSCRIBED) \"\" gone/*").await,
        ["* LIST (\\NonExistent \\Subscribed) \"/\" gone/child", "t8 OK LIST completed"]
    );
    assert_eq!(c.cmd("LSUB \"\" a/%").await, ["* LSUB (\\Noselect) \"/\" a/test2", "t9 OK LSUB completed"]);
    assert_eq!(c.cmd("LSUB \"\" a/*").await, ["* LSUB () \"/\" a/test2/test1", "t10 OK LSUB completed"]);
    assert_eq!(c.cmd("LSUB \"\" gone%").await, ["* LSUB (\\Noselect) \"/\" gone", "t11 OK LSUB completed"]);
    assert_eq!(c.cmd("LSUB \"\" gone/*").await, ["* LSUB (\\Noselect) \"/\" gone/child", "t12 OK LSUB completed"]);
    let r = c.ok("LSUB \"\" %").await;
    assert!(r.contains(&"* LSUB (\\Noselect) \"/\" a".to_string()), "{r:#?}");
    assert!(r.contains(&"* LSUB (\\Noselect) \"/\" gone".to_string()), "{r:#?}");
}

/// RFC 7817 3.1 (CVE-2011-0411): a command pipelined after STARTTLS in plaintext is
/// discarded with the handshake, never run inside the TLS session.
#[tokio::test]
async fn starttls_discards_pipelined_plaintext() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let wait = std::time::Duration::from_secs(10);
    let (acceptor, pem) = tls_acceptor();
    let srv = start_with(|ctx| ctx.tls = Some(acceptor)).await;
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.expect("connect");
    let mut plain = BufReader::new(tcp);
    let mut line = String::new();
    tokio::time::timeout(wait, plain.read_line(&mut line)).await.expect("greeting").expect("read");
    assert!(line.contains(" STARTTLS "), "{line}");
    plain.get_mut().write_all(b"a STARTTLS\r\nb LOGOUT\r\n").await.expect("write");
    line.clear();
    tokio::time::timeout(wait, plain.read_line(&mut line)).await.expect("STARTTLS reply").expect("read");
    assert_eq!(line, "a OK Begin TLS negotiation now\r\n");
    assert!(plain.buffer().is_empty(), "nothing after the OK in plaintext");
    let connector = crate::testing::tls_connector_trusting(pem.as_bytes());
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio::time::timeout(wait, connector.connect(name, plain.into_inner()))
        .await
        .expect("handshake timed out")
        .expect("handshake");
    let mut secure = BufReader::new(tls);
    secure.get_mut().write_all(b"c NOOP\r\n").await.expect("write");
    secure.get_mut().flush().await.expect("flush");
    line.clear();
    tokio::time::timeout(wait, secure.read_line(&mut line)).await.expect("NOOP reply").expect("read");
    assert_eq!(line, "c OK NOOP completed\r\n", "the plaintext LOGOUT was not run");
}
