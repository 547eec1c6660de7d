//! `mailroom import` against a real Dovecot serving the "remote" account over TLS (its
//! certificate signed by the test's CA, given as `--ca-file`): a folder tree with flags,
//! keywords and internal dates arrives identically (both sides listed by imaplib), the
//! remote Sent lands in our Sent, a second run copies nothing; a wrong password, a closed
//! port and an untrusted certificate each fail naming the source, the password is never
//! logged; the quota stops it; the same on the PostgreSQL store.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dovecot::{Dovecot, REMOTE_PASSWORD};
use common::{Server, env_listening, free_port, run_client};

const WAIT: Duration = Duration::from_secs(60);
const ACCOUNT: &str = "alice@example.com";

/// Dovecot's default namespace with a special-use Sent under a name that is not ours.
const SPECIAL_USE: &str = r#"
namespace inbox {
  inbox = yes
  mailbox "Sent Messages" {
    special_use = \Sent
  }
}
"#;

/// Per folder: each message's flags, internal date, size and body digest (imap_import.py).
type Listing = BTreeMap<String, Vec<serde_json::Value>>;

struct Rig {
    dovecot: Dovecot,
    server: Server,
    env: Vec<(String, String)>,
    password_file: std::path::PathBuf,
    _data: tempfile::TempDir,
}

impl Rig {
    /// Dovecot and our server (alice, IMAPS) with `extra` variables (replacing ours).
    fn start(extra: &[(&str, &str)]) -> Option<Rig> {
        if !common::have_tool("python3") {
            return None;
        }
        let dovecot = Dovecot::start_with(&["remote"], SPECIAL_USE)?;
        let data = tempfile::tempdir().unwrap();
        let mut env = env_listening(data.path(), &["IMAPS"]);
        env.push(("MAILROOM_ACCOUNTS".into(), format!("{ACCOUNT}:{{PLAIN}}wonderland")));
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let server = Server::start_ready(&env, data.path(), WAIT);
        let password_file = data.path().with_extension("password");
        std::fs::write(&password_file, format!("{REMOTE_PASSWORD}\n")).unwrap();
        Some(Rig { dovecot, server, env, password_file, _data: data })
    }

    fn url(&self, port: u16) -> String {
        format!("imaps://remote@127.0.0.1:{port}")
    }

    /// `mailroom import URL --to alice@example.com --password-file F` plus `extra`.
    fn import(&self, url: &str, extra: &[&str]) -> std::process::Output {
        let file = self.password_file.display().to_string();
        let mut args = vec!["import", url, "--to", ACCOUNT, "--password-file", &file];
        args.extend_from_slice(extra);
        common::run(&args, &self.env, "")
    }

    /// Fill the remote account (imap_import.py's tree: 5 folders, 8 messages).
    fn fill(&self) {
        let ca = self.dovecot.ca().display().to_string();
        let port = self.dovecot.imaps.to_string();
        run_client(
            "imap_import.py",
            &["fill", "127.0.0.1", &port, "remote", REMOTE_PASSWORD, &ca].map(String::from),
            &self.server,
        );
    }

    fn remote_listing(&self) -> Listing {
        let ca = self.dovecot.ca().display().to_string();
        self.listing(self.dovecot.imaps, "remote", REMOTE_PASSWORD, &ca)
    }

    fn local_listing(&self) -> Listing {
        self.listing(self.server.port("imaps"), ACCOUNT, "wonderland", "-")
    }

    fn listing(&self, port: u16, user: &str, password: &str, ca: &str) -> Listing {
        let args: Vec<String> =
            ["list", "127.0.0.1", &port.to_string(), user, password, ca].iter().map(|s| s.to_string()).collect();
        serde_json::from_str(&run_client("imap_import.py", &args, &self.server)).unwrap()
    }
}

fn text(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_folder_tree_migrates_identically_and_a_second_run_copies_nothing() {
    let Some(rig) = Rig::start(&[]) else { return };
    migrate_and_resume(&rig);
}

#[test]
fn the_same_on_the_postgres_store() {
    let Some(url) = common::test_pg::database() else { return };
    let Some(rig) = Rig::start(&[("MAILROOM_STORE", &url)]) else { return };
    migrate_and_resume(&rig);
}

/// One subtree first (an import cut short), then everything: only the rest is copied, the
/// two sides list the same, and a third run copies nothing.
fn migrate_and_resume(rig: &Rig) {
    rig.fill();
    let ca = rig.dovecot.ca().display().to_string();
    let url = rig.url(rig.dovecot.imaps);

    // Only one subtree, named with the server's delimiter.
    let part = rig.import(&url, &["--ca-file", &ca, "--folders", "Work.2024"]);
    let (stdout, stderr) = text(&part);
    assert_eq!(part.status.code(), Some(0), "{stdout}{stderr}\n{}", rig.server.log());
    assert!(stdout.contains("imported 2 folder(s): 3 message(s) copied"), "{stdout}");

    let first = rig.import(&url, &["--ca-file", &ca]);
    let (stdout, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{stdout}{stderr}\n{}", rig.server.log());
    assert!(stdout.contains("import: 5 folder(s), 5 message(s)"), "{stdout}");
    assert!(stdout.contains("import: 5/5 messages"), "a plain progress line: {stdout}");
    assert!(stdout.contains("Sent Messages -> Sent: 1 message(s) to copy"), "{stdout}");
    assert!(stdout.contains("Work.2024.Q1 -> Work/2024/Q1: 0 message(s) to copy"), "{stdout}");
    assert!(stdout.contains("5 message(s) copied") && stdout.contains(", 3 already here, 0 error(s)"), "{stdout}");

    let mut remote = rig.remote_listing();
    let sent = remote.remove("Sent Messages").unwrap();
    remote.insert("Sent".into(), sent);
    let local = rig.local_listing();
    for (folder, messages) in &remote {
        assert_eq!(local.get(folder), Some(messages), "{folder}: remote {remote:#?}\nlocal {local:#?}");
    }
    for (folder, messages) in &local {
        assert!(remote.contains_key(folder) || messages.is_empty(), "{folder} was not on the remote side");
    }
    let keywords = serde_json::to_string(&local["Work/2024"]).unwrap();
    assert!(keywords.contains("$Forwarded") && keywords.contains("project-x"), "{keywords}");

    // Again, this time with STARTTLS on the plain port.
    let starttls = format!("imap://remote@127.0.0.1:{}", rig.dovecot.imap);
    let second = rig.import(&starttls, &["--ca-file", &ca]);
    let (stdout, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("0 message(s) copied (0 bytes), 8 already here"), "{stdout}");
    assert_eq!(rig.local_listing(), local, "the second run changed nothing");

    let log = rig.server.log();
    assert!(log.contains("import done"), "{log}");
    assert!(!log.contains(REMOTE_PASSWORD), "the password was logged: {log}");
}

/// Under `script` (a pseudo-terminal): the password is asked for without echo, the bar is
/// drawn and redrawn, and the summary follows.
#[test]
fn on_a_terminal_the_password_is_asked_and_a_bar_drawn() {
    if !common::have_tool("script") {
        return;
    }
    let Some(rig) = Rig::start(&[]) else { return };
    rig.fill();
    let ca = rig.dovecot.ca().display().to_string();
    let url = rig.url(rig.dovecot.imaps);
    let command = format!("{} import {url} --to {ACCOUNT} --ca-file {ca}", common::BIN);
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .envs(rig.env.iter().map(|(k, v)| (k, v)))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The terminal keeps the line until the prompt reads it; stdin stays open until the end.
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, format!("{REMOTE_PASSWORD}\n").as_bytes()).unwrap();
    let mut screen = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut screen).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "{screen}\n{}", rig.server.log());
    assert!(screen.contains(&format!("Password for {url}: ")), "{screen}");
    assert!(screen.contains("\r\x1b[2K[########################] 8/8 messages"), "{screen:?}");
    assert!(screen.contains("imported 5 folder(s): 8 message(s) copied"), "{screen}");
}

#[test]
fn the_quota_stops_the_import_with_a_clear_error() {
    let accounts = format!("{ACCOUNT}:{{PLAIN}}wonderland:1K");
    let Some(rig) = Rig::start(&[("MAILROOM_ACCOUNTS", &accounts)]) else { return };
    rig.fill();
    let ca = rig.dovecot.ca().display().to_string();
    let out = rig.import(&rig.url(rig.dovecot.imaps), &["--ca-file", &ca]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("alice@example.com is over quota") && stderr.contains("of 1024 bytes used"), "{stderr}");
    let copied: usize = rig.local_listing().values().map(Vec::len).sum();
    assert!((1..8).contains(&copied), "{copied} copied before the quota stopped it");
}

#[test]
fn wrong_password_closed_port_and_untrusted_certificate_fail_naming_the_source() {
    let Some(rig) = Rig::start(&[]) else { return };
    let ca = rig.dovecot.ca().display().to_string();
    let url = rig.url(rig.dovecot.imaps);
    let check = |out: std::process::Output, url: &str, reason: &str| {
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stderr.contains(&format!("mailroom: import from {url} failed: ")), "{stderr}");
        assert!(stderr.contains(reason), "{reason}: {stderr}");
        assert!(!stderr.contains(REMOTE_PASSWORD) && !stdout.contains(REMOTE_PASSWORD), "{stderr}");
    };

    std::fs::write(&rig.password_file, "not the password\n").unwrap();
    check(rig.import(&url, &["--ca-file", &ca]), &url, "login refused");
    std::fs::write(&rig.password_file, format!("{REMOTE_PASSWORD}\n")).unwrap();

    let closed = rig.url(free_port());
    check(rig.import(&closed, &["--ca-file", &ca]), &closed, "cannot reach the server");

    // Without --ca-file the test CA is unknown.
    check(rig.import(&url, &[]), &url, "certificate");

    // Bad arguments: exit 2 before the server is asked.
    for (args, reason) in [
        (vec!["import", "pop3s://remote@127.0.0.1:1", "--to", ACCOUNT], "only imaps:// and imap://"),
        (vec!["import", &url, "--to", "not an address"], "--to"),
        (vec!["import", &url, "--to", ACCOUNT], "no --password-file"),
    ] {
        let out = common::run(&args, &rig.env, "");
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
    assert!(!rig.server.log().contains(REMOTE_PASSWORD));
}

#[test]
fn without_a_running_server_the_import_says_so() {
    let data = tempfile::tempdir().unwrap();
    let mut env = env_listening(data.path(), &[]);
    env.push(("MAILROOM_ACCOUNTS".into(), format!("{ACCOUNT}:{{PLAIN}}wonderland")));
    let password = data.path().join("password");
    std::fs::write(&password, "secret\n").unwrap();
    let file = password.display().to_string();
    let out = common::run(&["import", "imaps://u@127.0.0.1:1", "--to", ACCOUNT, "--password-file", &file], &env, "");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is the server running?"), "{stderr}");
}
