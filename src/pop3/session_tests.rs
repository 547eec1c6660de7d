//! Transcript tests of the session state machine: client line in, exact server bytes out.

use super::*;
use crate::pop3::maildrop::MaildropEntry;

fn config(tls_active: bool) -> SessionConfig {
    SessionConfig { tls_available: !tls_active, tls_active, max_bad_logins: 3, max_errors: 10 }
}

fn wire(step: &Step) -> String {
    match step {
        Step::Reply(r) | Step::Close(r) | Step::StartTls(r) => String::from_utf8_lossy(&r.to_bytes()).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Run `client` lines and compare each reply with `server`.
fn transcript(s: &mut Session, exchanges: &[(&str, &str)]) {
    for (client, server) in exchanges {
        let step = s.on_line(format!("{client}\r\n").as_bytes());
        assert_eq!(wire(&step), *server, "C: {client}");
    }
}

fn maildrop() -> Maildrop {
    Maildrop::new(vec![
        MaildropEntry::new(4, 120, "100.M1P1Q1.h,S=120,W=120"),
        MaildropEntry::new(7, 200, "101.M1P1Q2.h,S=200,W=200"),
    ])
}

/// A session already in TRANSACTION with the two-message maildrop.
fn logged_in() -> Session {
    let mut s = Session::new(config(true));
    transcript(&mut s, &[("USER alice@example.com", "+OK Send PASS\r\n")]);
    assert_eq!(
        s.on_line(b"PASS pw\r\n"),
        Step::Authenticate {
            username: "alice@example.com".into(),
            password: "pw".into(),
            mechanism: AuthMechanism::Password
        }
    );
    assert_eq!(s.logged_in(maildrop()).to_bytes(), b"+OK Logged in, 2 messages (320 octets)\r\n");
    s
}

#[test]
fn greeting() {
    assert_eq!(Session::greeting("mx.example.com").to_bytes(), b"+OK mx.example.com POP3 ready\r\n");
}

#[test]
fn plaintext_port_refuses_auth_before_stls() {
    let mut s = Session::new(config(false));
    transcript(
        &mut s,
        &[
            (
                "CAPA",
                "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION mailroom\r\n.\r\n",
            ),
            ("USER alice@example.com", "-ERR [AUTH] Authentication requires TLS: use STLS or port 995\r\n"),
            ("PASS x", "-ERR [AUTH] Authentication requires TLS: use STLS or port 995\r\n"),
            ("AUTH PLAIN", "-ERR [AUTH] Authentication requires TLS: use STLS or port 995\r\n"),
            ("STAT", "-ERR Command not valid before login\r\n"),
            ("STLS", "+OK Begin TLS negotiation\r\n"),
        ],
    );
    s.tls_started();
    transcript(
        &mut s,
        &[
            (
                "CAPA",
                "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nUTF8 USER\r\nIMPLEMENTATION mailroom\r\n.\r\n",
            ),
            ("STLS", "-ERR Command not permitted when TLS active\r\n"),
            ("USER alice@example.com", "+OK Send PASS\r\n"),
        ],
    );
}

#[test]
fn stls_refused_without_a_certificate() {
    let mut s = Session::new(SessionConfig { tls_available: false, ..config(false) });
    transcript(&mut s, &[("STLS", "-ERR TLS not available\r\n")]);
}

#[test]
fn user_pass_and_failed_logins_close_after_three() {
    let mut s = Session::new(config(true));
    transcript(
        &mut s,
        &[
            ("UTF8", "+OK UTF8 enabled\r\n"),
            ("PASS nope", "-ERR USER first\r\n"),
            ("APOP alice 0123456789abcdef", "-ERR APOP is not supported\r\n"),
            ("USER alice@example.com", "+OK Send PASS\r\n"),
        ],
    );
    assert!(matches!(s.on_line(b"PASS wrong\r\n"), Step::Authenticate { .. }));
    assert_eq!(wire(&s.login_failed()), "-ERR [AUTH] Authentication failed\r\n");
    // The failed PASS forgot the user name.
    transcript(&mut s, &[("PASS wrong", "-ERR USER first\r\n")]);
    transcript(&mut s, &[("USER alice@example.com", "+OK Send PASS\r\n")]);
    assert!(matches!(s.on_line(b"PASS wrong\r\n"), Step::Authenticate { .. }));
    assert!(matches!(s.login_failed(), Step::Reply(_)));
    assert!(matches!(s.on_line(b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n"), Step::Authenticate { .. }));
    let last = s.login_failed();
    assert!(matches!(last, Step::Close(_)));
    assert_eq!(wire(&last), "-ERR [AUTH] Authentication failed, too many attempts\r\n");
}

#[test]
fn in_use_and_store_failures_do_not_count_as_bad_logins() {
    let mut s = Session::new(config(true));
    for _ in 0..5 {
        transcript(&mut s, &[("USER alice@example.com", "+OK Send PASS\r\n")]);
        assert!(matches!(s.on_line(b"PASS pw\r\n"), Step::Authenticate { .. }));
        assert_eq!(s.maildrop_in_use().to_bytes(), b"-ERR [IN-USE] Mailbox is in use by another POP3 session\r\n");
    }
    assert!(matches!(s.on_line(b"AUTH PLAIN AGFsaWNlAHB3\r\n"), Step::Authenticate { .. }));
    assert_eq!(s.maildrop_unavailable().to_bytes(), b"-ERR [SYS/TEMP] Mailbox unavailable, try again later\r\n");
    assert!(!s.in_transaction());
}

#[test]
fn auth_plain_with_continuation_and_cancel() {
    let mut s = Session::new(config(true));
    transcript(
        &mut s,
        &[
            ("AUTH", "+OK Supported mechanisms follow\r\nPLAIN\r\n.\r\n"),
            ("AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism\r\n"),
            ("AUTH PLAIN", "+ \r\n"),
            ("*", "-ERR Authentication cancelled\r\n"),
            ("AUTH PLAIN", "+ \r\n"),
            ("not base64!", "-ERR Invalid base64 in authentication response\r\n"),
            ("AUTH PLAIN", "+ \r\n"),
        ],
    );
    assert_eq!(s.line_limit(), MAX_SASL_LINE);
    // "alice\0alice\0pw": authzid equal to authcid is fine.
    assert_eq!(
        s.on_line(b"YWxpY2UAYWxpY2UAcHc=\r\n"),
        Step::Authenticate { username: "alice".into(), password: "pw".into(), mechanism: AuthMechanism::Plain }
    );
    assert_eq!(s.line_limit(), MAX_COMMAND_LINE);
}

#[test]
fn auth_plain_refuses_other_authzid_and_malformed_data() {
    let mut s = Session::new(config(true));
    // "bob\0alice\0pw": alice acting as bob is a failed login.
    transcript(&mut s, &[("AUTH PLAIN Ym9iAGFsaWNlAHB3", "-ERR [AUTH] Authentication failed\r\n")]);
    // "alice\0pw": only two fields.
    transcript(&mut s, &[("AUTH PLAIN YWxpY2UAcHc=", "-ERR Malformed PLAIN response\r\n")]);
    transcript(&mut s, &[("AUTH PLAIN =", "-ERR Malformed PLAIN response\r\n")]);
}

#[test]
fn transaction_listing_commands() {
    let mut s = logged_in();
    transcript(
        &mut s,
        &[
            ("STAT", "+OK 2 320\r\n"),
            ("LIST", "+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"),
            ("LIST 2", "+OK 2 200\r\n"),
            ("LIST 3", "-ERR No such message\r\n"),
            ("UIDL", "+OK\r\n1 100.M1P1Q1.h,S=120,W=120\r\n2 101.M1P1Q2.h,S=200,W=200\r\n.\r\n"),
            ("UIDL 1", "+OK 1 100.M1P1Q1.h,S=120,W=120\r\n"),
            ("NOOP", "+OK\r\n"),
            ("USER bob", "-ERR Already logged in\r\n"),
            ("STLS", "-ERR STLS not valid after login\r\n"),
            ("UTF8", "-ERR Command not valid in this state\r\n"),
            (
                "CAPA",
                "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION mailroom\r\n.\r\n",
            ),
        ],
    );
}

#[test]
fn retr_and_top_ask_the_server_to_stream() {
    let mut s = logged_in();
    assert_eq!(s.on_line(b"RETR 2\r\n"), Step::SendMessage { first_line: Reply::ok("200 octets"), uid: 7, top: None });
    assert_eq!(
        s.on_line(b"TOP 1 5\r\n"),
        Step::SendMessage { first_line: Reply::ok("Top of message follows"), uid: 4, top: Some(5) }
    );
    transcript(
        &mut s,
        &[("RETR 9", "-ERR No such message\r\n"), ("TOP 0 1", "-ERR Syntax error: invalid message number\r\n")],
    );
}

#[test]
fn dele_marks_rset_unmarks_quit_updates() {
    let mut s = logged_in();
    transcript(
        &mut s,
        &[
            ("DELE 1", "+OK Message 1 deleted\r\n"),
            ("DELE 1", "-ERR Message already deleted\r\n"),
            ("RETR 1", "-ERR Message already deleted\r\n"),
            ("LIST 1", "-ERR Message already deleted\r\n"),
            ("STAT", "+OK 1 200\r\n"),
            ("LIST", "+OK 1 messages (200 octets)\r\n2 200\r\n.\r\n"),
            ("RSET", "+OK Maildrop has 2 messages (320 octets)\r\n"),
            ("STAT", "+OK 2 320\r\n"),
            ("DELE 2", "+OK Message 2 deleted\r\n"),
        ],
    );
    assert_eq!(s.on_line(b"QUIT\r\n"), Step::Update { uids: vec![7] });
    assert_eq!(wire(&s.update_done(Ok(1))), "+OK Bye, 1 messages deleted\r\n");
}

#[test]
fn quit_without_deletions_and_failed_update() {
    let mut s = logged_in();
    assert_eq!(s.on_line(b"QUIT\r\n"), Step::Update { uids: vec![] });
    assert_eq!(wire(&s.update_done(Ok(0))), "+OK Bye\r\n");

    let mut s = logged_in();
    transcript(&mut s, &[("DELE 2", "+OK Message 2 deleted\r\n")]);
    assert_eq!(s.on_line(b"QUIT\r\n"), Step::Update { uids: vec![7] });
    assert_eq!(wire(&s.update_done(Err(()))), "-ERR [SYS/TEMP] Some deleted messages not removed\r\n");
}

#[test]
fn quit_in_authorization_just_closes() {
    let mut s = Session::new(config(false));
    let step = s.on_line(b"QUIT\r\n");
    assert_eq!(step, Step::Close(Reply::ok("Bye")));
}

#[test]
fn errors_and_too_many_of_them_close() {
    let mut s = Session::new(config(true));
    transcript(
        &mut s,
        &[
            ("FOO", "-ERR Unknown command\r\n"),
            ("", "-ERR Unknown command\r\n"),
            ("RETR x", "-ERR Syntax error: invalid message number\r\n"),
        ],
    );
    assert_eq!(wire(&s.line_too_long()), "-ERR Line too long\r\n");
    let mut last = Step::Reply(Reply::ok(""));
    for _ in 0..6 {
        last = s.on_line(b"BOGUS\r\n");
    }
    assert_eq!(last, Step::Close(Reply::err("Too many invalid commands, closing")));
}

#[test]
fn a_good_command_resets_the_error_count() {
    let mut s = Session::new(config(true));
    for _ in 0..50 {
        let capa = wire(&Step::Reply(s.capa()));
        transcript(&mut s, &[("BOGUS", "-ERR Unknown command\r\n"), ("CAPA", &capa)]);
    }
}

#[test]
fn garbage_in_never_panics() {
    let mut seed: u64 = 0x0123_4567_89AB_CDEF;
    let mut next = || crate::testing::xorshift(&mut seed);
    let words: &[&[u8]] =
        &[b"USER a", b"PASS b", b"AUTH PLAIN", b"*", b"DELE 1", b"RETR 2", b"QUIT", b"STLS", b"LIST 1"];
    for round in 0..300 {
        let mut s = Session::new(config(round % 2 == 0));
        if round % 3 == 0 {
            s.logged_in(maildrop());
        }
        for _ in 0..40 {
            let line: Vec<u8> = if next() % 2 == 0 {
                words[(next() % words.len() as u64) as usize].to_vec()
            } else {
                (0..next() % 40).map(|_| next() as u8).collect()
            };
            let step = s.on_line(&line);
            match step {
                Step::Authenticate { .. } => {
                    if next() % 2 == 0 {
                        let _ = s.login_failed();
                    } else {
                        s.logged_in(maildrop());
                    }
                }
                Step::StartTls(_) => s.tls_started(),
                Step::Update { .. } | Step::Close(_) => break,
                _ => {}
            }
        }
    }
}

#[test]
fn last_command_is_a_bounded_label() {
    let mut s = Session::new(config(true));
    s.on_line(b"CAPA\r\n");
    assert_eq!(s.last_command(), "CAPA");
    s.on_line(b"RETR x\r\n");
    assert_eq!(s.last_command(), "invalid");
    s.on_line(b"AUTH PLAIN\r\n");
    assert_eq!(s.last_command(), "AUTH");
    s.on_line(b"*\r\n");
    assert_eq!(s.last_command(), "AUTH");
    s.on_line(b"x-anything-the-client-likes\r\n");
    assert_eq!(s.last_command(), "invalid");
}
