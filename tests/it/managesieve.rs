//! ManageSieve (RFC 5804) against the real binary, with clients we did not write:
//! sievelib and the `managesieve` package (PyPI) upload, activate, list, get, rename and
//! delete scripts over STARTTLS; sieve-connect uploads and lists; and raw transcripts
//! check the rules those clients never break: no AUTHENTICATE before STARTTLS, quotas.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

const USER: &str = "alice@example.com";
const PASSWORD: &str = "sieve-test-password";

fn start(extra: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let data = tempfile::tempdir().unwrap();
    let mut env = env_listening(data.path(), &["MANAGESIEVE"]);
    env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
    env.push(("MAILROOM_ACCOUNTS".into(), format!("{USER}:{{PLAIN}}{PASSWORD}")));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let server = Server::start_ready(&env, data.path(), Duration::from_secs(30));
    (data, server)
}

/// Read response lines up to and including the one that starts with OK, NO or BYE.
fn read_response(r: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "server closed after {all:?}");
        all.push_str(&line);
        if ["OK", "NO", "BYE"].iter().any(|s| line.starts_with(s)) {
            return all;
        }
    }
}

#[test]
fn sievelib_and_managesieve_clients_manage_scripts_over_starttls() {
    if !have_tool("python3") {
        return;
    }
    let probe = Command::new("python3").args(["-c", "import sievelib.managesieve, managesieve"]).output().unwrap();
    if !probe.status.success() {
        missing("python3 sievelib/managesieve (pip install sievelib managesieve)");
        return;
    }
    let (data, server) = start(&[]);
    let port = server.port("managesieve").to_string();
    let out = run_client("managesieve_sievelib.py", &["127.0.0.1".into(), port, USER.into(), PASSWORD.into()], &server);
    assert!(out.trim_end().ends_with("ok"), "{out}");
    // Counted: the logins, each command's latency, the bytes sent, and the sessions,
    // which all leave the gauge once their clients hung up.
    let scrape = scrape_until(&server, "every session gauge back at 0", |s| sessions_open(s) == 0);
    for family in [
        "mailroom_auth_attempts_total{mechanism=\"plain\",protocol=\"managesieve\",result=\"success\"}",
        "mailroom_managesieve_command_duration_seconds_count{command=\"PUTSCRIPT\"}",
        "mailroom_bytes_sent_total{service=\"managesieve\"}",
        "mailroom_sessions{service=\"managesieve\",state=\"authenticated\"} 0",
    ] {
        assert!(scrape.contains(family), "no {family} in\n{scrape}");
    }
    // What Dovecot Pigeonhole would find in the home: the one script left, no active link.
    let home = data.path().join("home/example.com/alice");
    assert_eq!(std::fs::read(home.join("sieve/other.sieve")).unwrap(), b"keep;\r\n");
    assert!(std::fs::symlink_metadata(home.join(".dovecot.sieve")).is_err());
}

/// The same clients on the PostgreSQL store: what they leave is one row, inactive.
#[test]
fn sievelib_clients_on_the_postgres_store() {
    if !have_tool("python3") {
        return;
    }
    let probe = Command::new("python3").args(["-c", "import sievelib.managesieve, managesieve"]).output().unwrap();
    if !probe.status.success() {
        missing("python3 sievelib/managesieve (pip install sievelib managesieve)");
        return;
    }
    let Some(url) = test_pg::database() else { return };
    let (_data, server) = start(&[("MAILROOM_STORE", url.as_str())]);
    let port = server.port("managesieve").to_string();
    let out = run_client("managesieve_sievelib.py", &["127.0.0.1".into(), port, USER.into(), PASSWORD.into()], &server);
    assert!(out.trim_end().ends_with("ok"), "{out}");
    let rows = test_pg::psql(&url, "SELECT name, active, convert_from(content, 'UTF8') FROM sieve_scripts");
    assert_eq!(rows.trim_end(), "other|f|keep;", "{rows}");
}

#[test]
fn sieve_connect_uploads_activates_and_lists_over_starttls() {
    if !have_tool("sieve-connect") {
        return;
    }
    let (data, server) = start(&[]);
    let port = server.port("managesieve").to_string();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("vacation.sieve");
    std::fs::write(&script, "require \"vacation\";\r\nvacation :days 3 \"Away\";\r\n").unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, PASSWORD).unwrap();
    let sieve_connect = |args: &[&str]| {
        let out = Command::new("sieve-connect")
            .args(["--server", "127.0.0.1", "--port", &port, "--user", USER, "--notlsverify", "--authmech", "PLAIN"])
            .arg("--passwordfd")
            .arg("0")
            .args(args)
            .stdin(std::fs::File::open(&password_file).unwrap())
            .output()
            .expect("sieve-connect");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "sieve-connect {args:?}: {text}\n{}", server.log());
        text
    };
    sieve_connect(&["--localsieve", script.to_str().unwrap(), "--upload", "--remotesieve", "vacation"]);
    sieve_connect(&["--remotesieve", "vacation", "--activate"]);
    let listing = sieve_connect(&["--list"]);
    assert!(listing.contains("\"vacation\" ACTIVE"), "{listing}");
    let link = data.path().join("home/example.com/alice/.dovecot.sieve");
    assert_eq!(std::fs::read_link(link).unwrap(), std::path::Path::new("sieve/vacation.sieve"));
}

#[test]
fn authenticate_before_starttls_is_refused_and_quotas_are_enforced() {
    let (_data, server) = start(&[("MAILROOM_SIEVE_MAX_SCRIPT_SIZE", "1K"), ("MAILROOM_SIEVE_MAX_SCRIPTS", "1")]);
    let stream = TcpStream::connect(server.addr("managesieve")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let greeting = read_response(&mut r);
    assert!(greeting.contains("\"STARTTLS\"\r\n") && greeting.contains("\"SASL\" \"\"\r\n"), "{greeting}");
    w.write_all(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUuY29tAHNpZXZlLXRlc3QtcGFzc3dvcmQ=\"\r\n").unwrap();
    assert_eq!(read_response(&mut r), "NO (ENCRYPT-NEEDED) \"Use STARTTLS first\"\r\n");
    w.write_all(b"LOGOUT\r\n").unwrap();
    assert_eq!(read_response(&mut r), "OK \"Logout completed\"\r\n");
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);

    // Quotas need a login, so inside TLS: python's ssl does the handshake.
    if !have_tool("python3") {
        return;
    }
    let script = r##"
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
def resp(f):
    out = b""
    while True:
        line = f.readline()
        assert line, out
        out += line
        if line[:2] in (b"OK", b"NO") or line.startswith(b"BYE"):
            return out.decode()
resp(f)
s.sendall(b"STARTTLS\r\n"); resp(f)
t = ssl._create_unverified_context().wrap_socket(s, server_hostname="mx.example.com")
f = t.makefile("rb"); resp(f)
t.sendall(b'AUTHENTICATE "PLAIN" "AGFsaWNlQGV4YW1wbGUuY29tAHNpZXZlLXRlc3QtcGFzc3dvcmQ="\r\n'); print(resp(f), end="")
t.sendall(b'HAVESPACE "a" 2000\r\n'); print(resp(f), end="")
t.sendall(b'PUTSCRIPT "a" {5+}\r\nkeep;\r\n'); print(resp(f), end="")
t.sendall(b'PUTSCRIPT "b" {5+}\r\nkeep;\r\n'); print(resp(f), end="")
big = b"#" * 1500
t.sendall(b'PUTSCRIPT "a" {%d+}\r\n' % len(big) + big + b"\r\n"); print(resp(f), end="")
t.sendall(b"LOGOUT\r\n"); print(resp(f), end="")
"##;
    let out = Command::new("python3").args(["-c", script, &server.port("managesieve").to_string()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    assert_eq!(
        text,
        "OK \"Logged in\"\r\n\
         NO (QUOTA/MAXSIZE) \"Scripts are limited to 1024 octets\"\r\n\
         OK \"Putscript completed\"\r\n\
         NO (QUOTA/MAXSCRIPTS) \"At most 1 scripts per account\"\r\n\
         NO (QUOTA/MAXSIZE) \"Scripts are limited to 1024 octets\"\r\n\
         OK \"Logout completed\"\r\n"
    );
}
