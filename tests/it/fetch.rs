//! Periodic fetch (`MAILROOM_FETCH`) against a real Dovecot serving the "remote"
//! accounts over TLS on loopback ports (its certificate signed by the test's CA, given to
//! mailroom as `MAILROOM_FETCH_CA_FILE`): each message arrives exactly once, `keep`
//! leaves mail on the server and a restart does not fetch it again, deletion follows the
//! local copy, kill -9 in the middle loses and duplicates nothing, and failures are
//! logged and counted per source.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::dovecot::{Dovecot, REMOTE_PASSWORD};
use common::{Server, env_listening, free_port};

const WAIT: Duration = Duration::from_secs(60);
const ACCOUNTS: &str = "alice@example.com:{PLAIN}wonderland,bob@example.com:{PLAIN}builder";

/// The local messages of a folder of alice@example.com, by Message-ID (each ID's count).
fn local_messages(data: &Path, folder: &str) -> BTreeMap<String, Vec<String>> {
    let mut dir = data.join("mail/example.com/alice");
    if folder != "INBOX" {
        dir = dir.join(format!(".{folder}"));
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let id = text.lines().find_map(|l| l.strip_prefix("Message-ID: ")).unwrap_or("?").to_string();
            out.entry(id).or_default().push(text);
        }
    }
    out
}

fn wait_until(what: &str, server: &Server, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server fetching `entries` (with `{pop3s}`-style ports already filled in).
fn fetch_env(data: &Path, dovecot: &Dovecot, entries: &[String]) -> Vec<(String, String)> {
    let mut env = env_listening(data, &[]);
    env.push(("MAILROOM_ACCOUNTS".into(), ACCOUNTS.into()));
    env.push(("MAILROOM_FETCH".into(), entries.join("\n")));
    let passwords = data.with_extension("passwords");
    let lines: String =
        entries.iter().map(|e| format!("{} {REMOTE_PASSWORD}\n", e.split_whitespace().nth(2).unwrap())).collect();
    std::fs::write(&passwords, lines).unwrap();
    env.push(("MAILROOM_FETCH_PASSWORDS_FILE".into(), passwords.display().to_string()));
    env.push(("MAILROOM_FETCH_CA_FILE".into(), dovecot.ca().display().to_string()));
    env
}

/// Completed runs so far (`fetch done` lines).
fn runs(server: &Server) -> usize {
    server.log().lines().filter(|l| l.contains("fetch done")).count()
}

fn metric(server: &Server, name: &str) -> Option<f64> {
    let (_, text) = common::http_get(server.metrics.unwrap(), "/metrics").unwrap();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn pop3s_fetches_each_message_once_and_deletes_it_after_the_local_copy() {
    let Some(dovecot) = Dovecot::start(&["remote1"]) else { return };
    dovecot.put("remote1", 0, 3);
    let data = tempfile::tempdir().unwrap();
    let entry = format!("alice@example.com <- pop3s://remote1@127.0.0.1:{} interval=1s", dovecot.pop3s);
    let server = Server::start_ready(&fetch_env(data.path(), &dovecot, &[entry]), data.path(), WAIT);
    wait_until("3 local messages", &server, || local_messages(data.path(), "INBOX").len() == 3);
    wait_until("the remote account emptied", &server, || dovecot.count("remote1") == 0);
    let local = local_messages(data.path(), "INBOX");
    for (id, copies) in &local {
        assert_eq!(copies.len(), 1, "{id} delivered {} times", copies.len());
        let text = &copies[0];
        assert!(text.starts_with("Return-Path: <sender"), "{text}");
        assert!(text.contains("by mx.example.com (mailroom) with POP3S id fetch."), "{text}");
        assert!(text.contains("for <alice@example.com>"), "{text}");
        assert!(text.contains("Authentication-Results: remote.test; dkim=pass header.d=remote.test\r\n"), "{text}");
        assert!(text.contains("\r\n.leading dot line\r\n"), "dot-unstuffed once: {text}");
    }
    dovecot.put("remote1", 3, 1);
    wait_until("the fourth message", &server, || local_messages(data.path(), "INBOX").len() == 4);
    let after = runs(&server);
    wait_until("two more runs", &server, || runs(&server) >= after + 2);
    let local = local_messages(data.path(), "INBOX");
    assert!(local.values().all(|c| c.len() == 1) && local.len() == 4, "{:?}", local.keys());
    assert_eq!(metric(&server, "mailroom_fetch_messages_total{source=\"1\"}"), Some(4.0));
    assert!(metric(&server, "mailroom_fetch_last_success_timestamp_seconds{source=\"1\"}").unwrap() > 0.0);
}

#[test]
fn imap_keep_leaves_mail_and_a_restart_does_not_fetch_it_again() {
    let Some(dovecot) = Dovecot::start(&["remote2"]) else { return };
    dovecot.put("remote2", 0, 2);
    let data = tempfile::tempdir().unwrap();
    // STARTTLS, into a folder of its own.
    let entry =
        format!("alice@example.com <- imap://remote2@127.0.0.1:{}/INBOX interval=1s keep folder=Remote", dovecot.imap);
    let env = fetch_env(data.path(), &dovecot, &[entry]);
    let mut server = Server::start_ready(&env, data.path(), WAIT);
    wait_until("2 local messages", &server, || local_messages(data.path(), "Remote").len() == 2);
    let after = runs(&server);
    wait_until("two more runs", &server, || runs(&server) >= after + 2);
    assert_eq!(dovecot.count("remote2"), 2, "keep leaves the mail on the server");
    let text = &local_messages(data.path(), "Remote").into_values().next().unwrap()[0];
    assert!(text.contains("with IMAPS id fetch."), "{text}");
    server.terminate(WAIT).expect("stops");

    let server = Server::start_ready(&env, data.path(), WAIT);
    wait_until("two runs after the restart", &server, || runs(&server) >= 2);
    assert_eq!(local_messages(data.path(), "Remote").len(), 2);
    assert!(local_messages(data.path(), "Remote").values().all(|c| c.len() == 1));
    dovecot.put("remote2", 2, 1);
    wait_until("the new message", &server, || local_messages(data.path(), "Remote").len() == 3);
    assert_eq!(dovecot.count("remote2"), 3);
}

/// kill -9 at several points of a long POP3 fetch (deleting on the server): after the
/// restarts every message is there exactly once and the remote accounts are empty.
#[test]
fn kill_9_in_the_middle_loses_nothing_and_duplicates_nothing() {
    const N: usize = 150;
    let Some(dovecot) = Dovecot::start(&["remote3"]) else { return };
    dovecot.put("remote3", 0, N);
    let data = tempfile::tempdir().unwrap();
    let entry = format!("alice@example.com <- pop3s://remote3@127.0.0.1:{} interval=1s", dovecot.pop3s);
    let env = fetch_env(data.path(), &dovecot, &[entry]);
    for stop_at in [10, 60, 110] {
        let mut server = Server::start_ready(&env, data.path(), WAIT);
        wait_until("some progress", &server, || {
            local_messages(data.path(), "INBOX").values().map(Vec::len).sum::<usize>() >= stop_at
        });
        server.kill9();
    }
    let server = Server::start_ready(&env, data.path(), WAIT);
    wait_until("every message", &server, || {
        local_messages(data.path(), "INBOX").len() == N && dovecot.count("remote3") == 0
    });
    let after = runs(&server);
    wait_until("another run", &server, || runs(&server) > after);
    let local = local_messages(data.path(), "INBOX");
    let dups: Vec<&String> = local.iter().filter(|(_, c)| c.len() > 1).map(|(id, _)| id).collect();
    assert!(dups.is_empty(), "delivered twice: {dups:?}");
    assert_eq!(local.len(), N);
}

#[test]
fn wrong_password_unreachable_host_and_bad_certificate_are_logged_per_source() {
    let Some(dovecot) = Dovecot::start(&["remote4"]) else { return };
    dovecot.put("remote4", 0, 1);
    let data = tempfile::tempdir().unwrap();
    let closed = free_port();
    let entries = [
        // POP3 with STLS: the login is refused after the upgrade.
        format!("alice@example.com <- pop3://remote4@127.0.0.1:{} interval=1s", dovecot.pop3),
        format!("bob@example.com <- imaps://remote4@127.0.0.1:{closed}/INBOX interval=1s"),
        // The certificate names 127.0.0.1, not localhost.
        format!("bob@example.com <- imaps://remote4@localhost:{}/INBOX interval=1s", dovecot.imaps),
    ];
    let mut env = fetch_env(data.path(), &dovecot, &entries);
    let passwords = data.path().with_extension("passwords");
    let text = std::fs::read_to_string(&passwords).unwrap();
    std::fs::write(&passwords, text.replacen(REMOTE_PASSWORD, "not the password", 1)).unwrap();
    env.retain(|(k, _)| k != "MAILROOM_LOG");
    let server = Server::start_ready(&env, data.path(), WAIT);
    for (source, kind) in [("1", "login"), ("2", "connect"), ("3", "tls")] {
        wait_until(&format!("source {source} failing with {kind}"), &server, || {
            server.log().lines().any(|l| {
                l.contains("fetch failed") && l.contains(&format!("#{source} ")) && l.contains(&format!("kind={kind}"))
            })
        });
        let name = format!("mailroom_fetch_errors_total{{kind=\"{kind}\",source=\"{source}\"}}");
        assert!(metric(&server, &name).unwrap_or(0.0) >= 1.0, "{name}");
        assert!(
            metric(&server, &format!("mailroom_fetch_last_error_timestamp_seconds{{source=\"{source}\"}}")).unwrap()
                > 0.0
        );
    }
    let log = server.log();
    assert!(log.contains(&format!("#1 alice@example.com <- pop3://remote4@127.0.0.1:{}", dovecot.pop3)), "{log}");
    assert!(!log.contains("not the password") && !log.contains(REMOTE_PASSWORD), "a password was logged");
    assert!(log.lines().any(|l| l.contains("#3 ") && l.contains("certificate")), "{log}");
    assert_eq!(dovecot.count("remote4"), 1, "nothing fetched with the wrong password");
}

#[test]
fn a_source_without_password_or_account_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    let mut env = env_listening(data.path(), &[]);
    env.push(("MAILROOM_ACCOUNTS".into(), ACCOUNTS.into()));
    env.push((
        "MAILROOM_FETCH".into(),
        "alice@example.com <- pop3s://u@127.0.0.1:1\ncarol@example.com <- imaps://u@127.0.0.1:1".into(),
    ));
    let passwords = data.path().with_extension("passwords");
    std::fs::write(&passwords, "imaps://u@127.0.0.1:1 pw\n").unwrap();
    env.push(("MAILROOM_FETCH_PASSWORDS_FILE".into(), passwords.display().to_string()));
    let out = common::run(&["check-config"], &env, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("MAILROOM_FETCH_PASSWORDS_FILE: has no password for pop3s://u@127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("MAILROOM_FETCH: carol@example.com is not an account"), "{stderr}");
    assert!(!stderr.contains(" pw"), "{stderr}");
}
