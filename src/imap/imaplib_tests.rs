//! Interoperability: Python's imaplib (a client nobody here wrote) against the in-process
//! server, over STARTTLS with a self-signed certificate, and over plain TCP for the command
//! tour. Skipped with a note when python3 is missing, unless CI=true.

use super::test_support::*;

fn python_available() -> bool {
    let ok =
        std::process::Command::new("python3").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("python3 is required in CI");
    }
    ok
}

/// Run a Python script with the port as argv[1]; it must print "PASS".
async fn run_python(script: &'static str, port: u16) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg("-c").arg(script).arg(port.to_string()).output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("PASS"), "python failed:\nstdout:\n{stdout}\nstderr:\n{stderr}");
}

const STARTTLS_SCRIPT: &str = r#"
import imaplib, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4("127.0.0.1", port)
assert "LOGINDISABLED" in m.capabilities, m.capabilities
assert "STARTTLS" in m.capabilities
try:
    m.login("alice@example.org", "secret")
    raise SystemExit("login before TLS must fail")
except imaplib.IMAP4.error:
    pass
m.starttls(ssl_context=ctx)
assert "AUTH=PLAIN" in m.capabilities, m.capabilities
assert "STARTTLS" not in m.capabilities
typ, _ = m.login("alice@example.org", "secret")
assert typ == "OK"
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"1"], data
m.logout()
print("PASS")
"#;

#[tokio::test]
async fn imaplib_starttls_then_login() {
    if !python_available() {
        eprintln!("python3 missing: skipped");
        return;
    }
    let srv = start_with(|ctx| {
        ctx.limits.allow_insecure_auth = false;
        ctx.tls = Some(tls_acceptor().0);
    })
    .await;
    srv.deliver("INBOX", SIMPLE).await;
    run_python(STARTTLS_SCRIPT, srv.addr.port()).await;
}

const TOUR_SCRIPT: &str = r#"
import imaplib, sys, time
port = int(sys.argv[1])
m = imaplib.IMAP4("127.0.0.1", port)
typ, _ = m.login("alice@example.org", "secret")
assert typ == "OK"

typ, boxes = m.list()
names = [b.decode() for b in boxes]
for want in ['"/" INBOX', '\\Sent) "/" Sent', '\\Drafts) "/" Drafts', '\\Junk) "/" Junk', '\\Trash) "/" Trash']:
    assert any(want in n for n in names), (want, names)

assert m.create("Work")[0] == "OK"
assert m.subscribe("Work")[0] == "OK"
typ, subs = m.lsub()
assert any(b'"/" Work' in s for s in subs), subs
assert m.rename("Work", "Job")[0] == "OK"
typ, st = m.status("Job", "(MESSAGES UIDNEXT UNSEEN)")
assert st == [b'Job (MESSAGES 0 UIDNEXT 1 UNSEEN 0)'], st

msg = b"From: Dan <dan@example.net>\r\nSubject: via imaplib\r\n\r\nHello from Python\r\n"
typ, data = m.append("INBOX", r"(\Flagged)", imaplib.Time2Internaldate(time.time()), msg)
assert typ == "OK" and b"APPENDUID" in data[0], data

typ, data = m.select("INBOX")
assert data == [b"2"], data
typ, data = m.fetch("1:2", "(UID FLAGS)")
assert data[1] == b'2 (UID 2 FLAGS (\\Flagged \\Recent))', data
typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert data[0][1] == b"Subject: via imaplib\r\n\r\n", data
typ, data = m.fetch("2", "(RFC822)")
assert data[0][1] == msg, data
typ, data = m.fetch("2", "(FLAGS)")
assert b"\\Seen" in data[0], data

typ, data = m.search(None, "UNSEEN")
assert data == [b"1"], data
typ, data = m.uid("SEARCH", None, "TEXT", "python")
assert data == [b"2"], data
typ, data = m.search("UTF-8", "FROM", "bob")
assert data == [b"1"], data

typ, data = m.store("1", "+FLAGS", r"(\Answered)")
assert typ == "OK" and b"\\Answered" in data[0], data
typ, data = m.uid("COPY", "1", "Job")
assert typ == "OK", data
typ, data = m.uid("MOVE", "2", "Job")
assert typ == "OK", data
typ, data = m.store("1", "+FLAGS", r"(\Deleted)")
typ, data = m.expunge()
# imaplib keeps MOVE's "* 2 EXPUNGE" too; ours is the last one
assert data[-1] == b"1", data
typ, data = m.status("Job", "(MESSAGES)")
assert data == [b"Job (MESSAGES 2)"], data
assert m.select("Job", readonly=True)[0] == "OK"
typ, data = m.fetch("1:*", "(ENVELOPE)")
assert b'"via imaplib"' in data[1], data
typ, data = m.getquotaroot("INBOX")
assert typ == "OK", data
typ, data = m.namespace()
assert data == [b'(("" "/")) NIL NIL'], data
assert m.unselect()[0] == "OK"
assert m.delete("Job")[0] == "OK"
assert m.check.__name__
m.logout()
print("PASS")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_command_tour() {
    if !python_available() {
        eprintln!("python3 missing: skipped");
        return;
    }
    let srv = start().await;
    srv.deliver("INBOX", SIMPLE).await;
    run_python(TOUR_SCRIPT, srv.addr.port()).await;
}

const IMPLICIT_TLS_SCRIPT: &str = r#"
import imaplib, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
assert "AUTH=PLAIN" in m.capabilities and "STARTTLS" not in m.capabilities, m.capabilities
typ, _ = m.authenticate("PLAIN", lambda _: b"\0alice@example.org\0secret")
assert typ == "OK"
assert m.select("INBOX")[0] == "OK"
m.logout()
print("PASS")
"#;

#[tokio::test]
async fn imaplib_implicit_tls_authenticate_plain() {
    if !python_available() {
        eprintln!("python3 missing: skipped");
        return;
    }
    let srv = start_full(
        |ctx| {
            ctx.limits.allow_insecure_auth = false;
            ctx.tls = Some(tls_acceptor().0);
        },
        true,
    )
    .await;
    run_python(IMPLICIT_TLS_SCRIPT, srv.addr.port()).await;
}
