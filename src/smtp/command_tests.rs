//! Transcript-style tests for the command parser: client line -> command or reply.

use super::*;
use crate::smtp::status::Code;

fn reply_of(line: &str) -> String {
    match parse_command(line.as_bytes()) {
        Ok(c) => panic!("expected an error for {line:?}, got {c:?}"),
        Err(e) => String::from_utf8_lossy(&e.reply().render()).trim_end().to_string(),
    }
}

fn mail(line: &str) -> MailFrom {
    match parse_command(line.as_bytes()) {
        Ok(Command::Mail(m)) => m,
        other => panic!("{line:?} -> {other:?}"),
    }
}

fn rcpt(line: &str) -> ForwardPath {
    match parse_command(line.as_bytes()) {
        Ok(Command::Rcpt(r)) => r.path,
        other => panic!("{line:?} -> {other:?}"),
    }
}

fn mailbox_of(p: ForwardPath) -> Mailbox {
    match p {
        ForwardPath::Mailbox(m) => m,
        ForwardPath::Postmaster => panic!("postmaster"),
    }
}

#[test]
fn greetings() {
    assert_eq!(parse_command(b"EHLO client.example\r\n"), Ok(Command::Ehlo("client.example".into())));
    assert_eq!(parse_command(b"helo [192.0.2.1]"), Ok(Command::Helo("[192.0.2.1]".into())));
    assert_eq!(parse_command(b"LHLO mta\n"), Ok(Command::Lhlo("mta".into())));
    assert_eq!(reply_of("EHLO"), "501 5.5.4 Syntax: EHLO hostname");
    assert_eq!(reply_of("EHLO a b"), "501 5.5.4 Syntax: EHLO hostname");
}

#[test]
fn simple_verbs_case_insensitive() {
    assert_eq!(parse_command(b"data\r\n"), Ok(Command::Data));
    assert_eq!(parse_command(b"RSET"), Ok(Command::Rset));
    assert_eq!(parse_command(b"NOOP hello there"), Ok(Command::Noop));
    assert_eq!(parse_command(b"QuIt\r\n"), Ok(Command::Quit));
    assert_eq!(parse_command(b"STARTTLS\r\n"), Ok(Command::StartTls));
    assert_eq!(parse_command(b"HELP"), Ok(Command::Help(None)));
    assert_eq!(parse_command(b"HELP MAIL"), Ok(Command::Help(Some("MAIL".into()))));
    assert_eq!(parse_command(b"VRFY bob"), Ok(Command::Vrfy("bob".into())));
    assert_eq!(reply_of("VRFY"), "501 5.5.4 Syntax: VRFY address");
    assert_eq!(reply_of("DATA now"), "501 5.5.4 Syntax: DATA");
    assert_eq!(reply_of("STARTTLS x"), "501 5.5.4 Syntax: STARTTLS");
    assert_eq!(reply_of("XYZZY"), "500 5.5.2 Error: command not recognized");
    assert_eq!(reply_of(""), "500 5.5.2 Error: command not recognized");
}

#[test]
fn bdat() {
    assert_eq!(parse_command(b"BDAT 1000\r\n"), Ok(Command::Bdat { size: 1000, last: false }));
    assert_eq!(parse_command(b"bdat 0 last"), Ok(Command::Bdat { size: 0, last: true }));
    for bad in ["BDAT", "BDAT -1", "BDAT 1 FIRST", "BDAT 1 LAST x", "BDAT 99999999999999999999999"] {
        assert_eq!(reply_of(bad), "501 5.5.4 Syntax: BDAT size [LAST]", "{bad}");
    }
}

#[test]
fn auth_kept_for_submission() {
    assert_eq!(
        parse_command(b"AUTH plain AGJvYgBwdw=="),
        Ok(Command::Auth { mechanism: "PLAIN".into(), initial_response: Some("AGJvYgBwdw==".into()) })
    );
    assert_eq!(reply_of("AUTH"), "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
}

#[test]
fn mail_from_forms() {
    let m = mail("MAIL FROM:<Alice@Example.ORG>\r\n");
    match m.path {
        ReversePath::Mailbox(mb) => {
            assert_eq!(mb.address.to_string(), "alice@example.org");
            assert_eq!(mb.raw, "Alice@Example.ORG");
        }
        ReversePath::Null => panic!("null"),
    }
    assert_eq!(mail("MAIL FROM:<>").path, ReversePath::Null);
    assert_eq!(mail("mail from: <>").path, ReversePath::Null);
    // Lenient: no brackets.
    assert!(matches!(mail("MAIL FROM:bob@example.org").path, ReversePath::Mailbox(_)));
    assert_eq!(reply_of("MAIL <a@b.example>"), "501 5.5.4 Syntax: MAIL FROM:<address>");
    assert_eq!(reply_of("MAIL"), "501 5.5.4 Syntax: MAIL FROM:<address>");
    assert_eq!(reply_of("MAIL FROM:<a@b.example"), "501 5.1.7 Bad sender address syntax: missing >");
    assert_eq!(reply_of("MAIL FROM:<a@b.example>x"), "501 5.1.7 Bad sender address syntax: garbage after >");
    assert!(reply_of("MAIL FROM:<nodomain>").starts_with("501 5.1.7 "));
}

#[test]
fn mail_parameters() {
    let m = mail("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x");
    assert_eq!(m.size, Some(1000));
    assert_eq!(m.body, Some(BodyType::EightBitMime));
    assert!(m.smtputf8);
    assert_eq!(mail("MAIL FROM:<> body=7bit").body, Some(BodyType::SevenBit));
    assert_eq!(mail("MAIL FROM:<> BODY=BINARYMIME").body, Some(BodyType::BinaryMime));
    assert_eq!(mail("MAIL FROM:<> SIZE=99999999999999999999999").size, Some(u64::MAX));
    assert_eq!(mail("MAIL FROM:<> AUTH=<>").auth.as_deref(), Some("<>"));
    assert_eq!(reply_of("MAIL FROM:<> SIZE=abc"), "501 5.5.4 Bad parameter value: SIZE");
    assert_eq!(reply_of("MAIL FROM:<> BODY=9BIT"), "501 5.5.4 Bad parameter value: BODY");
    assert_eq!(reply_of("MAIL FROM:<> SMTPUTF8=yes"), "501 5.5.4 Bad parameter value: SMTPUTF8");
    assert_eq!(reply_of("MAIL FROM:<> SIZE=1 size=2"), "501 5.5.4 Parameter given twice: SIZE");
    assert_eq!(reply_of("MAIL FROM:<> XFOO=1"), "555 5.5.4 Unsupported parameter: XFOO");
    assert_eq!(reply_of("MAIL FROM:<> =1"), "501 5.5.4 Syntax: bad ESMTP parameter");
    assert_eq!(reply_of("MAIL FROM:<> SIZE="), "501 5.5.4 Bad parameter value: SIZE");
}

#[test]
fn rcpt_forms() {
    let mb = mailbox_of(rcpt("RCPT TO:<Bob@Example.com>"));
    assert_eq!(mb.address.to_string(), "bob@example.com");
    assert_eq!(rcpt("RCPT TO:<Postmaster>"), ForwardPath::Postmaster);
    assert_eq!(rcpt("rcpt to:<postmaster>"), ForwardPath::Postmaster);
    assert!(matches!(
        rcpt("RCPT TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b.example"),
        ForwardPath::Mailbox(_)
    ));
    assert_eq!(reply_of("RCPT TO:<>"), "501 5.1.3 Bad recipient address syntax: empty address");
    assert_eq!(reply_of("RCPT TO:<a@b.example> FOO"), "555 5.5.4 Unsupported parameter: FOO");
    assert_eq!(reply_of("RCPT TO:<a@b.example> NOTIFY"), "501 5.5.4 Bad parameter value: NOTIFY");
    assert_eq!(reply_of("RCPT FROM:<a@b.example>"), "501 5.5.4 Syntax: RCPT TO:<address>");
}

#[test]
fn relay_tricks_are_not_routing() {
    // Source routes: refused outright, on both sides.
    assert_eq!(
        reply_of("RCPT TO:<@ours.example:victim@remote.example>"),
        "501 5.1.3 Bad recipient address syntax: source routes (@host:…) are not accepted"
    );
    assert!(reply_of("MAIL FROM:<@a,@b:c@d.example>").starts_with("501 5.1.7 "));
    // The %-hack is just a character of the local part: the domain stays ours.
    let mb = mailbox_of(rcpt("RCPT TO:<victim%remote.example@ours.example>"));
    assert_eq!(mb.address.domain, "ours.example");
    assert_eq!(mb.address.local, "victim%remote.example");
    // Quoted local parts are unquoted, never re-parsed as an address.
    let mb = mailbox_of(rcpt("RCPT TO:<\"john.doe\"@ours.example>"));
    assert_eq!(mb.address.local, "john.doe");
    assert!(reply_of("RCPT TO:<\"victim@remote.example\"@ours.example>").starts_with("501 5.1.3 "));
    // A `>` inside quotes does not end the path (the address parser then refuses it).
    assert_eq!(
        reply_of("RCPT TO:<\"a>b\"@ours.example>"),
        "501 5.1.3 Bad recipient address syntax: local part contains '>', which is not allowed"
    );
}

#[test]
fn smtputf8_detection_and_limits() {
    let mb = mailbox_of(rcpt("RCPT TO:<jörg@ours.example>"));
    assert!(mb.needs_smtputf8());
    let mb = mailbox_of(rcpt("RCPT TO:<jorg@ours.example>"));
    assert!(!mb.needs_smtputf8());
    let long = format!("RCPT TO:<{}@ours.example>", "a".repeat(250));
    assert_eq!(reply_of(&long), "501 5.1.3 Bad recipient address syntax: path longer than 256 octets");
}

#[test]
fn control_characters_and_bad_utf8() {
    assert_eq!(reply_of("NOOP \u{0}"), "500 5.5.2 Error: bad characters in command");
    assert_eq!(reply_of("RSET\rQUIT"), "500 5.5.2 Error: bad characters in command");
    assert_eq!(parse_command(b"MAIL FROM:<\xff@x>").map_err(|e| e.reply().code), Err(Code::Reply(500)));
}

/// Garbage in: random and truncated lines never panic.
#[test]
fn garbage_in_never_panics() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || crate::testing::xorshift(&mut seed);
    let alphabet = b"<>@:\"\\ =%.,MAILFROMRCPTTOBDATEHLOSIZE0123456789\r\n\xc3\xa9\xff\x00";
    let samples: &[&[u8]] = &[
        b"MAIL FROM:<\"a\\\"@b.example> SIZE=12",
        b"RCPT TO:<@a:b@c> NOTIFY=NEVER",
        b"BDAT 12 LAST",
        b"EHLO \xc3\xa9",
    ];
    for s in samples {
        for cut in 0..=s.len() {
            let _ = parse_command(&s[..cut]);
        }
    }
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut line: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        if next() % 2 == 0 {
            let prefix: &[u8] = [b"MAIL FROM:<".as_slice(), b"RCPT TO:<", b"BDAT "][(next() % 3) as usize];
            line.splice(0..0, prefix.iter().copied());
        }
        let _ = parse_command(&line);
    }
}
