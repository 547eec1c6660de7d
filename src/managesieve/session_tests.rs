//! Transcript tests of the ManageSieve session alone: client bytes in, server bytes (or
//! effects) out, with the effects' outcomes fed back as the server would.

use bytes::Bytes;

use super::session::{Session, SessionConfig, Step, StoreAnswer, StoreOp};
use crate::net::LoginOutcome;
use crate::store::{SieveScriptInfo, StoreError};

fn config(tls_active: bool) -> SessionConfig {
    SessionConfig {
        tls_available: !tls_active,
        tls_active,
        max_script_size: 100,
        max_scripts: 2,
        max_redirects: 4,
        max_errors: 3,
        max_bad_logins: 2,
    }
}

/// Feed one complete command; the step it gives.
fn feed(s: &mut Session, input: &str) -> Step {
    let (used, step) = s.on_input(input.as_bytes()).unwrap_or_else(|| panic!("incomplete: {input:?}"));
    assert_eq!(used, input.len(), "{input:?}");
    step
}

fn sent(step: Step) -> String {
    match step {
        Step::Send(b) | Step::Close(b) | Step::StartTls(b) => String::from_utf8(b).unwrap(),
        other => panic!("expected bytes, got {other:?}"),
    }
}

fn logged_in() -> Session {
    let mut s = Session::new(config(true));
    let step = feed(&mut s, "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHNlY3JldA==\"\r\n");
    assert_eq!(step, Step::Login { username: "alice".into(), password: "secret".into() });
    assert_eq!(sent(s.login_done(&LoginOutcome::LoggedIn("alice"))), "OK \"Logged in\"\r\n");
    s
}

fn info(name: &str, active: bool) -> SieveScriptInfo {
    SieveScriptInfo { name: name.into(), size: 5, active }
}

#[test]
fn greeting_before_tls_offers_starttls_and_no_sasl() {
    let s = Session::new(config(false));
    let greeting = String::from_utf8(s.greeting()).unwrap();
    assert!(greeting.starts_with("\"IMPLEMENTATION\" \"mailroom\"\r\n\"SIEVE\" \"fileinto mailbox "), "{greeting}");
    assert!(greeting.contains("\"SASL\" \"\"\r\n\"STARTTLS\"\r\n"), "{greeting}");
    assert!(greeting.contains("\"VERSION\" \"1.0\"\r\n") && greeting.contains("\"MAXREDIRECTS\" \"4\"\r\n"));
    assert!(greeting.contains("\"UNAUTHENTICATE\"\r\n"));
    assert!(greeting.ends_with("OK \"mailroom ManageSieve ready\"\r\n"), "{greeting}");
}

#[test]
fn authenticate_before_starttls_is_refused_and_starttls_reissues_capabilities() {
    let mut s = Session::new(config(false));
    assert_eq!(
        sent(feed(&mut s, "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHNlY3JldA==\"\r\n")),
        "NO (ENCRYPT-NEEDED) \"Use STARTTLS first\"\r\n"
    );
    assert_eq!(sent(feed(&mut s, "LISTSCRIPTS\r\n")), "NO \"Authenticate first\"\r\n");
    assert_eq!(feed(&mut s, "STARTTLS\r\n"), Step::StartTls(b"OK \"Begin TLS negotiation now\"\r\n".to_vec()));
    let caps = String::from_utf8(s.tls_started()).unwrap();
    assert!(caps.contains("\"SASL\" \"PLAIN\"\r\n") && !caps.contains("STARTTLS"), "{caps}");
    assert!(caps.ends_with("OK \"TLS negotiation successful\"\r\n"));
    assert_eq!(sent(feed(&mut s, "STARTTLS\r\n")), "NO \"TLS is already active\"\r\n");
}

#[test]
fn plain_with_a_continuation_and_failed_logins_end_in_bye() {
    let mut s = Session::new(config(true));
    assert_eq!(sent(feed(&mut s, "AUTHENTICATE \"PLAIN\"\r\n")), "\"\"\r\n");
    let step = feed(&mut s, "{20+}\r\nAGFsaWNlAHNlY3JldA==\r\n");
    assert_eq!(step, Step::Login { username: "alice".into(), password: "secret".into() });
    assert_eq!(sent(s.login_done(&LoginOutcome::<()>::Failed)), "NO \"Authentication failed\"\r\n");
    assert_eq!(sent(feed(&mut s, "AUTHENTICATE \"PLAIN\"\r\n")), "\"\"\r\n");
    assert_eq!(sent(feed(&mut s, "\"*\"\r\n")), "NO \"Authentication cancelled\"\r\n");
    assert_eq!(sent(feed(&mut s, "AUTHENTICATE \"LOGIN\"\r\n")), "NO \"Only the PLAIN mechanism is supported\"\r\n");
    feed(&mut s, "AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHNlY3JldA==\"\r\n");
    assert!(matches!(s.login_done(&LoginOutcome::<()>::Failed), Step::Close(b) if b.starts_with(b"BYE")));
}

#[test]
fn putscript_compiles_checks_quotas_then_stores() {
    let mut s = logged_in();
    let step = feed(&mut s, "PUTSCRIPT \"main\" {6+}\r\nkeep;\n\r\n");
    assert_eq!(step, Step::Store(StoreOp::List));
    let step = s.store_done(Ok(StoreAnswer::List(vec![info("other", false)])));
    assert_eq!(step, Step::Store(StoreOp::Put { name: "main".into(), content: b"keep;\n".to_vec() }));
    assert_eq!(sent(s.store_done(Ok(StoreAnswer::Done))), "OK \"Putscript completed\"\r\n");

    // A third script is one too many; replacing one of the two is not.
    feed(&mut s, "PUTSCRIPT \"new\" \"keep;\"\r\n");
    let full = vec![info("main", true), info("other", false)];
    assert_eq!(
        sent(s.store_done(Ok(StoreAnswer::List(full.clone())))),
        "NO (QUOTA/MAXSCRIPTS) \"At most 2 scripts per account\"\r\n"
    );
    feed(&mut s, "PUTSCRIPT \"main\" \"keep;\"\r\n");
    assert!(matches!(s.store_done(Ok(StoreAnswer::List(full))), Step::Store(StoreOp::Put { .. })));
    s.store_done(Ok(StoreAnswer::Done));

    let big = format!("PUTSCRIPT \"big\" {{101+}}\r\n{}\r\n", "#".repeat(101));
    assert_eq!(sent(feed(&mut s, &big)), "NO (QUOTA/MAXSIZE) \"Scripts are limited to 100 octets\"\r\n");
    let broken = sent(feed(&mut s, "PUTSCRIPT \"bad\" {19+}\r\nkeep;\r\nfrobnicate\r\n\r\n"));
    assert!(broken.starts_with("NO ") && broken.contains("line 2"), "{broken}");
    assert_eq!(sent(feed(&mut s, "PUTSCRIPT \"a/b\" \"keep;\"\r\n")), "NO \"Invalid script name\"\r\n");
}

#[test]
fn checkscript_and_havespace_answer_without_storing() {
    let mut s = logged_in();
    assert_eq!(sent(feed(&mut s, "CHECKSCRIPT \"keep;\"\r\n")), "OK \"Script is valid\"\r\n");
    let broken = sent(feed(&mut s, "CHECKSCRIPT {11+}\r\nif true {\r\n\r\n"));
    assert!(broken.starts_with("NO ") && broken.contains("line"), "{broken}");
    assert_eq!(
        sent(feed(&mut s, "HAVESPACE \"x\" 101\r\n")),
        "NO (QUOTA/MAXSIZE) \"Scripts are limited to 100 octets\"\r\n"
    );
    assert_eq!(feed(&mut s, "HAVESPACE \"x\" 10\r\n"), Step::Store(StoreOp::List));
    assert_eq!(sent(s.store_done(Ok(StoreAnswer::List(vec![])))), "OK \"Putscript would succeed\"\r\n");
}

#[test]
fn list_get_setactive_rename_delete_and_their_refusals() {
    let mut s = logged_in();
    assert_eq!(feed(&mut s, "LISTSCRIPTS\r\n"), Step::Store(StoreOp::List));
    let list = vec![info("main", true), info("vacation \"x\"", false)];
    assert_eq!(
        sent(s.store_done(Ok(StoreAnswer::List(list)))),
        "\"main\" ACTIVE\r\n\"vacation \\\"x\\\"\"\r\nOK \"Listscripts completed\"\r\n"
    );
    assert_eq!(feed(&mut s, "GETSCRIPT \"main\"\r\n"), Step::Store(StoreOp::Get("main".into())));
    assert_eq!(
        sent(s.store_done(Ok(StoreAnswer::Script(Some(Bytes::from("keep;\r\n")))))),
        "{7}\r\nkeep;\r\n\r\nOK \"Getscript completed\"\r\n"
    );
    feed(&mut s, "GETSCRIPT \"nope\"\r\n");
    assert_eq!(
        sent(s.store_done(Ok(StoreAnswer::Script(None)))),
        "NO (NONEXISTENT) \"There is no script by that name\"\r\n"
    );
    assert_eq!(feed(&mut s, "SETACTIVE \"\"\r\n"), Step::Store(StoreOp::SetActive(None)));
    assert_eq!(sent(s.store_done(Ok(StoreAnswer::Done))), "OK \"Setactive completed\"\r\n");
    feed(&mut s, "DELETESCRIPT \"main\"\r\n");
    assert_eq!(
        sent(s.store_done(Err(StoreError::ScriptActive("main".into())))),
        "NO (ACTIVE) \"The script is active; deactivate it first\"\r\n"
    );
    assert_eq!(
        feed(&mut s, "RENAMESCRIPT \"a\" \"b\"\r\n"),
        Step::Store(StoreOp::Rename { old: "a".into(), new: "b".into() })
    );
    assert_eq!(
        sent(s.store_done(Err(StoreError::ScriptExists("b".into())))),
        "NO (ALREADYEXISTS) \"A script by that name exists already\"\r\n"
    );
    feed(&mut s, "SETACTIVE \"x\"\r\n");
    assert_eq!(
        sent(s.store_done(Err(StoreError::Unavailable("db down".into())))),
        "NO (TRYLATER) \"Temporary failure, try again later\"\r\n"
    );
}

#[test]
fn noop_tags_unauthenticate_logout_and_bad_commands() {
    let mut s = logged_in();
    assert_eq!(sent(feed(&mut s, "NOOP \"t1\"\r\n")), "OK (TAG \"t1\") \"Done\"\r\n");
    assert_eq!(sent(feed(&mut s, "NOOP {3+}\r\na\nb\r\n")), "OK \"Done\"\r\n", "no line break in a code");
    assert_eq!(sent(feed(&mut s, "UNAUTHENTICATE\r\n")), "OK \"Unauthenticated\"\r\n");
    assert_eq!(sent(feed(&mut s, "LISTSCRIPTS\r\n")), "NO \"Authenticate first\"\r\n");
    assert_eq!(sent(feed(&mut s, "FROB\r\n")), "NO \"Unknown command\"\r\n");
    assert_eq!(sent(feed(&mut s, "FROB\r\n")), "NO \"Unknown command\"\r\n");
    assert!(matches!(feed(&mut s, "FROB\r\n"), Step::Close(b) if b == b"BYE \"Too many bad commands\"\r\n"));
    let mut s = logged_in();
    assert!(matches!(feed(&mut s, "LOGOUT\r\n"), Step::Close(b) if b == b"OK \"Logout completed\"\r\n"));
}

#[test]
fn input_past_the_bounds_ends_the_session() {
    let mut s = logged_in();
    assert_eq!(s.on_input(b"PUTSCRIPT \"x\" {50+}\r\nkeep;"), None, "waits for the literal");
    let huge = format!("PUTSCRIPT \"x\" {{{}+}}\r\n", 100 + super::session::LITERAL_SLACK + 1);
    let (_, step) = s.on_input(huge.as_bytes()).unwrap();
    assert!(matches!(step, Step::Close(b) if b.starts_with(b"BYE (QUOTA/MAXSIZE)")));
    let mut s = logged_in();
    let (_, step) = s.on_input(&vec![b'A'; super::session::MAX_LINE + 10]).unwrap();
    assert!(matches!(step, Step::Close(b) if b == b"BYE \"Line too long\"\r\n"));
}

#[test]
fn the_vacation_script_of_the_account_pages_is_not_ours_to_change() {
    let mut s = logged_in();
    let refusal = "NO \"The name mailroom-vacation is reserved for the vacation reply of the account pages; change it there\"\r\n";
    for command in [
        "PUTSCRIPT \"mailroom-vacation\" \"keep;\"\r\n",
        "HAVESPACE \"mailroom-vacation\" 10\r\n",
        "DELETESCRIPT \"mailroom-vacation\"\r\n",
        "SETACTIVE \"mailroom-vacation\"\r\n",
        "RENAMESCRIPT \"mailroom-vacation\" \"mine\"\r\n",
        "RENAMESCRIPT \"mine\" \"mailroom-vacation\"\r\n",
    ] {
        assert_eq!(sent(feed(&mut s, command)), refusal, "{command}");
    }
    // Reading it is fine (a user script may include it), and other names are unaffected.
    assert_eq!(
        feed(&mut s, "GETSCRIPT \"mailroom-vacation\"\r\n"),
        Step::Store(StoreOp::Get("mailroom-vacation".into()))
    );
    s.store_done(Ok(StoreAnswer::Script(None)));
    assert_eq!(
        feed(&mut s, "SETACTIVE \"mailroom-vacation2\"\r\n"),
        Step::Store(StoreOp::SetActive(Some("mailroom-vacation2".into())))
    );
}
