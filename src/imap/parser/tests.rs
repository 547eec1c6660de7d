//! Parser transcripts: example commands from RFC 9051/3501 and the extension RFCs, each
//! with the tree it must produce, plus garbage that must be refused without a panic.

use super::*;
use crate::imap::command::*;
use crate::imap::sequence::SequenceSet;

fn ok(line: &str) -> CommandBody {
    match parse_command(format!("{line}\r\n").as_bytes()) {
        Ok(c) => c.body,
        Err(e) => panic!("{line}: {e}"),
    }
}

fn bad(line: &str) -> ParseError {
    match parse_command(format!("{line}\r\n").as_bytes()) {
        Ok(c) => panic!("{line} parsed as {c:?}"),
        Err(e) => e,
    }
}

fn set(s: &str) -> SequenceSet {
    SequenceSet::parse(s.as_bytes()).unwrap()
}

#[test]
fn any_state_commands() {
    assert_eq!(ok("a001 CAPABILITY"), CommandBody::Capability);
    assert_eq!(ok("a002 noop"), CommandBody::Noop);
    assert_eq!(ok("A023 LOGOUT"), CommandBody::Logout);
    assert_eq!(ok("a STARTTLS"), CommandBody::StartTls);
    assert_eq!(ok("a NAMESPACE"), CommandBody::Namespace);
    assert_eq!(ok("a IDLE"), CommandBody::Idle);
    assert_eq!(ok("a CHECK"), CommandBody::Check);
    assert_eq!(ok("a CLOSE"), CommandBody::Close);
    assert_eq!(ok("a UNSELECT"), CommandBody::Unselect);
    assert_eq!(ok("a EXPUNGE"), CommandBody::Expunge { uids: None });
}

#[test]
fn id_rfc2971() {
    assert_eq!(
        ok(r#"a023 ID ("name" "sodr" "version" NIL)"#),
        CommandBody::Id(Some(vec![("name".into(), Some("sodr".into())), ("version".into(), None)]))
    );
    assert_eq!(ok("a ID NIL"), CommandBody::Id(None));
}

#[test]
fn login_forms() {
    assert_eq!(
        ok("a001 LOGIN SMITH SESAME"),
        CommandBody::Login { username: "SMITH".into(), password: "SESAME".into() }
    );
    let frame = b"a LOGIN {10}\r\nfred@x.org \"p\\\"w\"\r\n";
    assert_eq!(
        parse_command(frame).unwrap().body,
        CommandBody::Login { username: "fred@x.org".into(), password: "p\"w".into() }
    );
}

#[test]
fn authenticate_with_and_without_sasl_ir() {
    assert_eq!(
        ok("a AUTHENTICATE PLAIN AGZyZWQAc2VjcmV0"),
        CommandBody::Authenticate { mechanism: "PLAIN".into(), initial: Some(b"\0fred\0secret".to_vec()) }
    );
    assert_eq!(
        ok("a AUTHENTICATE plain ="),
        CommandBody::Authenticate { mechanism: "PLAIN".into(), initial: Some(vec![]) }
    );
    assert_eq!(ok("a AUTHENTICATE PLAIN"), CommandBody::Authenticate { mechanism: "PLAIN".into(), initial: None });
    bad("a AUTHENTICATE PLAIN !!!");
}

#[test]
fn enable_select_examine() {
    assert_eq!(ok("t2 ENABLE CONDSTORE qresync"), CommandBody::Enable(vec!["CONDSTORE".into(), "QRESYNC".into()]));
    assert_eq!(
        ok("A142 SELECT INBOX"),
        CommandBody::Select { mailbox: "INBOX".into(), params: SelectParams::default() }
    );
    assert_eq!(
        ok("a EXAMINE \"blurdybloop\" (CONDSTORE)"),
        CommandBody::Examine { mailbox: "blurdybloop".into(), params: SelectParams { condstore: true, qresync: None } }
    );
    // RFC 7162 3.2.5.2 example
    assert_eq!(
        ok("A03 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))"),
        CommandBody::Select {
            mailbox: "INBOX".into(),
            params: SelectParams {
                condstore: false,
                qresync: Some(QresyncParams {
                    uid_validity: 67890007,
                    mod_seq: 20050715194045000,
                    known_uids: Some(set("41,43:211,214:541")),
                    seq_match: None
                })
            }
        }
    );
    let CommandBody::Select { params, .. } = ok(
        "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
    ) else {
        panic!()
    };
    assert!(params.qresync.unwrap().seq_match.is_some());
    bad("a SELECT INBOX (FOO)");
}

#[test]
fn mailbox_management() {
    assert_eq!(
        ok("A003 CREATE owatagusiam/"),
        CommandBody::Create { mailbox: "owatagusiam/".into(), special_use: vec![] }
    );
    assert_eq!(
        ok("t1 CREATE \"Important Messages\" (USE (\\Important))"),
        CommandBody::Create { mailbox: "Important Messages".into(), special_use: vec!["\\Important".into()] }
    );
    assert_eq!(
        ok("A683 RENAME blurdybloop sarasoop"),
        CommandBody::Rename { from: "blurdybloop".into(), to: "sarasoop".into() }
    );
    assert_eq!(ok("A684 DELETE foo"), CommandBody::Delete { mailbox: "foo".into() });
    assert_eq!(
        ok("A002 SUBSCRIBE #news.comp.mail.mime"),
        CommandBody::Subscribe { mailbox: "#news.comp.mail.mime".into() }
    );
    assert_eq!(ok("A002 UNSUBSCRIBE \"x y\""), CommandBody::Unsubscribe { mailbox: "x y".into() });
    assert_eq!(
        ok("A042 STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ SIZE DELETED)"),
        CommandBody::Status {
            mailbox: "blurdybloop".into(),
            items: vec![
                StatusItem::UidNext,
                StatusItem::Messages,
                StatusItem::HighestModSeq,
                StatusItem::Size,
                StatusItem::Deleted
            ]
        }
    );
}

#[test]
fn list_basic_and_extended() {
    assert_eq!(
        ok("A101 LIST \"\" \"\""),
        CommandBody::List(ListCommand { reference: "".into(), patterns: vec!["".into()], ..Default::default() })
    );
    assert_eq!(
        ok("A202 LIST ~/Mail/ %"),
        CommandBody::List(ListCommand {
            reference: "~/Mail/".into(),
            patterns: vec!["%".into()],
            ..Default::default()
        })
    );
    let CommandBody::List(l) = ok(
        "A04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" INBOX*) RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))",
    ) else {
        panic!()
    };
    assert!(l.select.subscribed && l.select.recursive_match);
    assert_eq!(l.patterns, vec!["%".to_string(), "INBOX*".to_string()]);
    assert!(l.ret.children && l.ret.special_use);
    assert_eq!(l.ret.status, vec![StatusItem::Messages, StatusItem::Unseen]);
    bad("a LIST (RECURSIVEMATCH) \"\" *");
    assert_eq!(
        ok("a LSUB \"#news.\" \"comp.mail.*\""),
        CommandBody::Lsub { reference: "#news.".into(), pattern: "comp.mail.*".into() }
    );
}

#[test]
fn append_single_multi_and_binary() {
    let frame = b"A003 APPEND saved-messages (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {5}\r\nhello\r\n";
    let CommandBody::Append { mailbox, messages } = parse_command(frame).unwrap().body else { panic!() };
    assert_eq!(mailbox, "saved-messages");
    assert_eq!(
        messages,
        vec![AppendMessage {
            flags: vec![Flag::Seen],
            internal_date: Some(837_596_665),
            data: b"hello".to_vec(),
            binary: false,
            literal: 0
        }]
    );
    let frame = b"a APPEND x {2+}\r\nab (\\Draft $Label1) {1+}\r\nc ~{2}\r\n\0d\r\n";
    let CommandBody::Append { messages, .. } = parse_command(frame).unwrap().body else { panic!() };
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1].flags, vec![Flag::Draft, Flag::Keyword("$Label1".into())]);
    assert!(messages[2].binary);
    assert_eq!(messages.iter().map(|m| m.literal).collect::<Vec<_>>(), vec![0, 1, 2]);
    // A mailbox name sent as a literal is literal 0; the message is literal 1.
    let frame = b"a APPEND {5}\r\nINBOX {2}\r\nhi\r\n";
    let CommandBody::Append { mailbox, messages } = parse_command(frame).unwrap().body else { panic!() };
    assert_eq!((mailbox.as_str(), messages[0].literal), ("INBOX", 1));
    assert!(parse_command(b"a APPEND x (\\Recent) {1}\r\nc\r\n").is_err());
    assert!(parse_command(b"a APPEND x\r\n").is_err());
    let frame = b"a APPEND x UTF8 (~{1}\r\nc)\r\n";
    assert!(parse_command(frame).is_ok());
}

#[test]
fn fetch_items_and_macros() {
    let CommandBody::Fetch(f) = ok("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])") else { panic!() };
    assert_eq!(f.set, set("2:4"));
    assert_eq!(
        f.items,
        vec![
            FetchItem::Flags,
            FetchItem::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields(vec!["DATE".into(), "FROM".into()]))
                },
                partial: None
            }
        ]
    );
    let CommandBody::Fetch(f) = ok("a FETCH 1:* ALL") else { panic!() };
    assert_eq!(f.items.len(), 4);
    let CommandBody::Fetch(f) = ok("a FETCH 1 FULL") else { panic!() };
    assert!(f.items.contains(&FetchItem::Body));
    let CommandBody::Fetch(f) = ok(
        "a FETCH 1 (BODY.PEEK[1.2.MIME] BODY[]<0.2048> BINARY.PEEK[1]<10.5> BINARY.SIZE[2] BODYSTRUCTURE ENVELOPE RFC822.SIZE INTERNALDATE MODSEQ RFC822 RFC822.HEADER RFC822.TEXT BODY BODY[TEXT] BODY[1.HEADER.FIELDS.NOT (X-A)])",
    ) else {
        panic!()
    };
    assert_eq!(
        f.items[0],
        FetchItem::BodySection {
            peek: true,
            section: Section { part: vec![1, 2], text: Some(SectionText::Mime) },
            partial: None
        }
    );
    assert_eq!(
        f.items[1],
        FetchItem::BodySection { peek: false, section: Section::default(), partial: Some((0, 2048)) }
    );
    assert_eq!(f.items[2], FetchItem::Binary { peek: true, part: vec![1], partial: Some((10, 5)) });
    assert_eq!(f.items[3], FetchItem::BinarySize { part: vec![2] });
    assert_eq!(f.items.len(), 15);
    bad("a FETCH 1 (BODY[MIME])");
    bad("a FETCH 1 (BODY[1.FOO])");
    bad("a FETCH 0 FLAGS");
    bad("a FETCH 1 (FLAGS");
}

#[test]
fn uid_fetch_condstore_qresync() {
    let CommandBody::Fetch(f) = ok("s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)") else { panic!() };
    assert!(f.uid && f.vanished);
    assert_eq!(f.changed_since, Some(12345));
    assert!(f.items.contains(&FetchItem::Uid));
    bad("a FETCH 1 FLAGS (VANISHED)");
    bad("a UID FETCH 1 FLAGS (VANISHED)");
}

#[test]
fn store_forms() {
    let CommandBody::Store(s) = ok("A003 STORE 2:4 +FLAGS (\\Deleted)") else { panic!() };
    assert_eq!(s.op, StoreOp::Add);
    assert!(!s.silent);
    assert_eq!(s.flags, vec![Flag::Deleted]);
    let CommandBody::Store(s) = ok("a UID STORE 1,3 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT \\Seen $Junk") else {
        panic!()
    };
    assert!(s.uid && s.silent);
    assert_eq!(s.op, StoreOp::Remove);
    assert_eq!(s.unchanged_since, Some(320162338));
    assert_eq!(s.flags, vec![Flag::Seen, Flag::Keyword("$Junk".into())]);
    let CommandBody::Store(s) = ok("a STORE $ FLAGS ()") else { panic!() };
    assert_eq!(s.set, SequenceSet::Saved);
    assert!(s.flags.is_empty());
    bad("a STORE 1 +FLAGS (\\Recent)");
    bad("a STORE 1 XFLAGS (\\Seen)");
}

#[test]
fn copy_move_expunge() {
    assert_eq!(
        ok("A003 COPY 2:4 MEETING"),
        CommandBody::Copy { uid: false, set: set("2:4"), mailbox: "MEETING".into() }
    );
    assert_eq!(ok("a UID MOVE 42:69 foo"), CommandBody::Move { uid: true, set: set("42:69"), mailbox: "foo".into() });
    assert_eq!(ok("A202 UID EXPUNGE 3000:3002"), CommandBody::Expunge { uids: Some(set("3000:3002")) });
}

#[test]
fn search_keys() {
    let CommandBody::Search(s) = ok("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"") else { panic!() };
    assert_eq!(
        s.key,
        SearchKey::And(vec![
            SearchKey::Flag(Flag::Flagged),
            SearchKey::Since(8797),
            SearchKey::Not(Box::new(SearchKey::From("Smith".into())))
        ])
    );
    let CommandBody::Search(s) = ok("A284 SEARCH CHARSET UTF-8 TEXT {4}\r\nXXXX") else { panic!() };
    assert_eq!(s.charset.as_deref(), Some("UTF-8"));
    let CommandBody::Search(s) =
        ok("a UID SEARCH RETURN (MIN MAX COUNT SAVE) OR (UNSEEN LARGER 100) HEADER X-Spam yes 1:5,*")
    else {
        panic!()
    };
    assert!(s.uid);
    assert_eq!(s.ret, Some(vec![SearchReturn::Min, SearchReturn::Max, SearchReturn::Count, SearchReturn::Save]));
    assert!(matches!(s.key, SearchKey::And(ref v) if v.len() == 2));
    let CommandBody::Search(s) = ok("a SEARCH RETURN () MODSEQ \"/flags/\\\\draft\" all 620162338") else { panic!() };
    assert_eq!(s.ret, Some(vec![]));
    assert_eq!(s.key, SearchKey::ModSeq(620162338));
    for line in [
        "a SEARCH ALL ANSWERED DELETED DRAFT FLAGGED SEEN NEW OLD RECENT",
        "a SEARCH UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN KEYWORD $x UNKEYWORD $y",
        "a SEARCH BCC a CC b TO c SUBJECT d BODY e TEXT f",
        "a SEARCH BEFORE 1-Jan-2000 ON \"2-Jan-2000\" SENTBEFORE 3-Jan-2000 SENTON 4-Jan-2000 SENTSINCE 5-Jan-2000",
        "a SEARCH SMALLER 5 UID 1:* $ (ALL)",
    ] {
        ok(line);
    }
    bad("a SEARCH");
    bad("a SEARCH FOO");
    bad("a SEARCH OR ALL");
    let deep = format!("a SEARCH {}ALL", "NOT ".repeat(100));
    bad(&deep);
}

#[test]
fn quota_commands() {
    assert_eq!(ok("G0001 GETQUOTA \"!partition/sda4\""), CommandBody::GetQuota { root: "!partition/sda4".into() });
    assert_eq!(ok("A003 GETQUOTAROOT INBOX"), CommandBody::GetQuotaRoot { mailbox: "INBOX".into() });
    assert_eq!(
        ok("S0000 SETQUOTA \"#user/alice\" (STORAGE 510)"),
        CommandBody::SetQuota { root: "#user/alice".into() }
    );
}

#[test]
fn errors_keep_the_tag() {
    assert_eq!(bad("a1 FROB").tag.as_deref(), Some("a1"));
    assert_eq!(bad("+ FROB").tag, None);
    assert_eq!(bad("").tag, None);
    assert_eq!(bad("a1").tag.as_deref(), Some("a1"));
    bad("a1 NOOP extra");
}

#[test]
fn garbage_in_never_panics() {
    let corpus: &[&[u8]] = &[
        b"a FETCH 1:* (BODY.PEEK[HEADER.FIELDS (A B)]<0.10> FLAGS) (CHANGEDSINCE 1)\r\n",
        b"a UID SEARCH RETURN (ALL) CHARSET UTF-8 OR NOT (FROM x) HEADER a b\r\n",
        b"a APPEND x (\\Seen) \"17-Jul-1996 02:44:25 -0700\" ~{3+}\r\nabc\r\n",
        b"a SELECT x (QRESYNC (1 2 1:5 (1 2)))\r\n",
        b"a LIST (SUBSCRIBED) \"\" (a b) RETURN (STATUS (MESSAGES))\r\n",
        b"a STORE 1 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Seen)\r\n",
        b"a ID (\"a\" \"b\")\r\n",
    ];
    let mut seed = 7u32;
    for base in corpus {
        for cut in 0..base.len() {
            let _ = parse_command(&base[..cut]);
        }
        for _ in 0..300 {
            let mut v = base.to_vec();
            for _ in 0..3 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (seed as usize >> 8) % v.len();
                v[i] = (seed >> 16) as u8;
            }
            let _ = parse_command(&v);
        }
    }
    for n in 0..2000u32 {
        let bytes: Vec<u8> = (0..(n % 60)).map(|i| (n.wrapping_mul(31).wrapping_add(i * 17) % 256) as u8).collect();
        let _ = parse_command(&bytes);
    }
}

#[test]
fn sort_rfc5256() {
    let CommandBody::Sort(s) = ok("A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL") else { panic!() };
    assert!(!s.uid);
    assert_eq!(
        s.criteria,
        vec![
            SortCriterion { reverse: false, key: SortKey::Subject },
            SortCriterion { reverse: true, key: SortKey::Date }
        ]
    );
    assert_eq!(s.charset, "UTF-8");
    assert_eq!(s.key, SearchKey::All);
    let CommandBody::Sort(s) = ok("A285 UID SORT (ARRIVAL) US-ASCII SINCE 1-Feb-1994 UNSEEN") else { panic!() };
    assert!(s.uid);
    assert!(matches!(s.key, SearchKey::And(ref v) if v.len() == 2));
    bad("a SORT (SUBJECT) UTF-8");
    bad("a SORT SUBJECT UTF-8 ALL");
    bad("a SORT (BOGUS) UTF-8 ALL");
}

#[test]
fn thread_rfc5256() {
    let CommandBody::Thread(t) = ok("A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000") else { panic!() };
    assert_eq!(t.algorithm, ThreadAlgorithm::OrderedSubject);
    assert_eq!(t.key, SearchKey::Since(11021));
    let CommandBody::Thread(t) = ok("A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\"") else { panic!() };
    assert!(t.uid);
    assert_eq!(t.algorithm, ThreadAlgorithm::References);
    bad("a THREAD FOO UTF-8 ALL");
    bad("a THREAD REFERENCES UTF-8");
}
