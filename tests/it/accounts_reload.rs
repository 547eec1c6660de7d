//! Accounts and aliases files re-read while running (a Kubernetes Secret updated in
//! place, `mailroom reset-password`): a valid new set applies within seconds without a
//! restart and without dropping sessions; an invalid one is refused whole and the old set
//! stays. Python's imaplib over implicit TLS is the client.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Keeps one IMAP session (alice) open across the reload; each stdin line is a login to
/// try ("user password") or "noop" on the open session; answers one line each.
const CLIENT: &str = r#"
import imaplib, ssl, sys
port = int(sys.argv[1])
ctx = ssl._create_unverified_context()
def login(user, password):
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=20)
    try:
        m.login(user, password)
        m.logout()
        return "OK"
    except imaplib.IMAP4.error:
        return "NO"
held = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=20)
held.login("alice@example.com", "a1")
held.select("INBOX")
print("READY", flush=True)
for line in sys.stdin:
    words = line.split()
    if words == ["noop"]:
        print(held.noop()[0], flush=True)
    else:
        print(login(words[0], words[1]), flush=True)
"#;

struct Client {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Client {
    fn start(port: u16) -> Client {
        let mut child = Command::new("python3")
            .args(["-c", CLIENT, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "READY");
        Client { child, out }
    }

    fn ask(&mut self, request: &str) -> String {
        writeln!(self.child.stdin.as_mut().unwrap(), "{request}").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replace `path` the way a Secret volume does: new content appears at once, whole.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn count_in_log(server: &Server, needle: &str) -> usize {
    server.log().matches(needle).count()
}

fn wait_for_count(server: &Server, needle: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count_in_log(server, needle) < n {
        assert!(std::time::Instant::now() < deadline, "no {n}th {needle:?}:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn changed_accounts_and_aliases_files_apply_without_a_restart() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (accounts, aliases) = (tmp.path().join("accounts"), tmp.path().join("aliases"));
    std::fs::write(&accounts, "alice@example.com:{PLAIN}a1\n").unwrap();
    std::fs::write(&aliases, "info@example.com:alice@example.com\n").unwrap();
    let mut env = env_listening(&data, &["IMAPS"]);
    env.push(("MAILROOM_ACCOUNTS_FILE".into(), accounts.display().to_string()));
    env.push(("MAILROOM_ALIASES_FILE".into(), aliases.display().to_string()));
    let server = Server::start_ready(&env, &data, Duration::from_secs(20));
    let imaps = server.port("imaps");
    assert!(server.wait_log("accounts loaded version=", Duration::from_secs(10)));

    let mut client = Client::start(imaps);
    assert_eq!(client.ask("bob@example.com b1"), "NO");

    // A new account and a changed password: applied, the open session untouched.
    replace(&accounts, "alice@example.com:{PLAIN}a2\nbob@example.com:{PLAIN}b1\n");
    wait_for_count(&server, "accounts reloaded", 1);
    assert_eq!(client.ask("bob@example.com b1"), "OK");
    assert_eq!(client.ask("alice@example.com a1"), "NO", "the old password is gone");
    assert_eq!(client.ask("alice@example.com a2"), "OK");
    assert_eq!(client.ask("noop"), "OK", "sessions survive a reload");
    assert!(data.join("mail/example.com/bob").is_dir(), "the new account got its Maildir");

    // An alias to nobody: refused whole, loudly; the previous set stays in use.
    replace(&aliases, "info@example.com:ghost@example.com\n");
    wait_for_count(&server, "accounts NOT reloaded", 1);
    assert!(server.log().contains("ghost@example.com"), "the problem is named");
    assert_eq!(client.ask("bob@example.com b1"), "OK");
    let (_, body) = http_get(server.addr("metrics"), "/metrics").unwrap();
    assert!(body.contains("mailroom_accounts_reloads_total{result=\"applied\"} 1"), "{body}");
    assert!(body.contains("mailroom_accounts_reloads_total{result=\"invalid\"} 1"), "{body}");

    // Fixed again: applied.
    replace(&aliases, "info@example.com:bob@example.com\n");
    wait_for_count(&server, "accounts reloaded", 2);
    assert_eq!(client.ask("noop"), "OK");
}

#[test]
fn reset_password_applies_to_the_running_server() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = env_listening(&data, &["IMAPS"]);
    let server = Server::start_ready(&env, &data, Duration::from_secs(20));
    let imaps = server.port("imaps");
    let out = run(&["reset-password"], &env, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let password = printed.split("new password ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
    wait_for_count(&server, "accounts reloaded", 1);
    let script = r#"
import imaplib, ssl, sys
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ssl._create_unverified_context(), timeout=20)
print(m.login(sys.argv[2], sys.argv[3])[0])
"#;
    let out = Command::new("python3")
        .args(["-c", script, &imaps.to_string(), "postmaster@example.com", password])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK", "{}", String::from_utf8_lossy(&out.stderr));
}
