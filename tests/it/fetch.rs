//! Periodic fetch (`MAILROOM_FETCH`) against a real Dovecot serving the "remote"
//! accounts over TLS on loopback ports (its certificate signed by the test's CA, given to
//! mailroom as `MAILROOM_FETCH_CA_FILE`): each message arrives exactly once, `keep`
//! leaves mail on the server and a restart does not fetch it again, deletion follows the
//! local copy, kill -9 in the middle loses and duplicates nothing, and failures are
//! logged, counted and shown by `mailroom status` per source: a full account and an
//! oversized message stop the source with the mail left on the server.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::dovecot::{Dovecot, REMOTE_PASSWORD, message};
use common::{Server, env_listening, free_port, have_tool};

const WAIT: Duration = Duration::from_secs(60);
const ACCOUNTS: &str = "alice@example.com:{PLAIN}wonderland,bob@example.com:{PLAIN}builder";

/// The local messages of a folder of alice@example.com, by Message-ID (each ID's count).
fn local_messages(data: &Path, folder: &str) -> BTreeMap<String, Vec<String>> {
    let mut dir = data.join("mail/example.com/alice");
    if folder != "INBOX" {
        dir = dir.join(format!(".{folder}"));
    }
    // The server may move a file from new/ to cur/ (syncing the folder) while this looks:
    // a file gone between the listing and the read means look again, and one seen in both
    // (read in new/, then listed in cur/) counts once, by its base name.
    'again: loop {
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
            for e in entries.flatten() {
                let text = match std::fs::read_to_string(e.path()) {
                    Ok(t) => t,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue 'again,
                    Err(err) => panic!("{}: {err}", e.path().display()),
                };
                let name = e.file_name().to_string_lossy().into_owned();
                files.insert(name.split(':').next().unwrap_or_default().to_string(), text);
            }
        }
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for text in files.into_values() {
            let id = text.lines().find_map(|l| l.strip_prefix("Message-ID: ")).unwrap_or("?").to_string();
            out.entry(id).or_default().push(text);
        }
        return out;
    }
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
    let entry = dovecot.pop3s_entry("remote1");
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
    let entry = dovecot.pop3s_entry("remote3");
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

/// `mailroom status` of the running server, as JSON.
fn status_json(env: &[(String, String)]) -> serde_json::Value {
    let out = common::run(&["status"], env, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `env` with `key` set to `value` instead.
fn with(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.into(), value.into()));
    env
}

/// The first source's status once its last error says `needle`.
fn failing_source(server: &Server, env: &[(String, String)], needle: &str) -> serde_json::Value {
    let mut source = serde_json::Value::Null;
    wait_until(&format!("status showing {needle:?}"), server, || {
        source = status_json(env)["fetch"][0].clone();
        source["last_error"]["message"].as_str().is_some_and(|m| m.contains(needle))
    });
    let at = source["last_error"]["at"].as_u64().unwrap();
    assert!(at > 1_700_000_000, "{source}");
    assert!(source["failures"].as_u64().unwrap() >= 1, "{source}");
    assert!(source["next_try"].as_u64().unwrap() > at, "the back-off is shown: {source}");
    source
}

#[test]
fn a_full_account_stops_the_source_keeps_the_mail_remote_and_resumes_when_there_is_room() {
    let Some(dovecot) = Dovecot::start(&["remote5"]) else { return };
    dovecot.put("remote5", 0, 2);
    let data = tempfile::tempdir().unwrap();
    let entry = dovecot.pop3s_entry("remote5");
    let env = fetch_env(data.path(), &dovecot, &[entry]);
    let tiny = with(&env, "MAILROOM_ACCOUNTS", "alice@example.com:{PLAIN}wonderland:100");
    let mut server = Server::start_ready(&tiny, data.path(), WAIT);
    let source = failing_source(&server, &tiny, "over quota");
    assert_eq!(source["over_quota"], true, "{source}");
    assert!(source["name"].as_str().unwrap().starts_with("#1 alice@example.com <- pop3s://remote5@"), "{source}");
    assert_eq!(metric(&server, "mailroom_fetch_over_quota{source=\"1\"}"), Some(1.0));
    assert!(metric(&server, "mailroom_fetch_errors_total{kind=\"over_quota\",source=\"1\"}").unwrap() >= 1.0);
    assert_eq!(dovecot.count("remote5"), 2, "nothing deleted on the server");
    assert!(local_messages(data.path(), "INBOX").is_empty());
    server.terminate(WAIT).expect("stops");

    // The quota raised: the next run delivers both, once, and empties the server.
    let roomy = with(&env, "MAILROOM_ACCOUNTS", "alice@example.com:{PLAIN}wonderland:1M");
    let server = Server::start_ready(&roomy, data.path(), WAIT);
    wait_until("both messages", &server, || {
        local_messages(data.path(), "INBOX").len() == 2 && dovecot.count("remote5") == 0
    });
    assert!(local_messages(data.path(), "INBOX").values().all(|c| c.len() == 1));
    wait_until("a successful run", &server, || runs(&server) >= 1);
    assert_eq!(metric(&server, "mailroom_fetch_over_quota{source=\"1\"}"), Some(0.0));
    let source = status_json(&roomy)["fetch"][0].clone();
    assert_eq!((source["failures"].as_u64(), &source["over_quota"]), (Some(0), &serde_json::json!(false)));
    assert!(source["last_success"].as_u64().unwrap() > 1_700_000_000, "{source}");
}

/// A message over `MAILROOM_MESSAGE_SIZE_LIMIT` is never truncated: the source stops at
/// it, leaving it (and what follows it) on the server, until the limit is raised.
#[test]
fn an_oversized_message_stops_the_source_whole_and_undeleted() {
    let Some(dovecot) = Dovecot::start(&["remote6"]) else { return };
    dovecot.put("remote6", 0, 1);
    let data = tempfile::tempdir().unwrap();
    let entry = dovecot.pop3s_entry("remote6");
    let env = fetch_env(data.path(), &dovecot, &[entry]);
    let small = with(&env, "MAILROOM_MESSAGE_SIZE_LIMIT", "2K");
    let mut server = Server::start_ready(&small, data.path(), WAIT);
    wait_until("the small message", &server, || {
        local_messages(data.path(), "INBOX").len() == 1 && dovecot.count("remote6") == 0
    });
    let big_body = "x".repeat(70) + "\r\n";
    let big = message(1).replace("Body of message 1.", &big_body.repeat(80));
    dovecot.put_text("remote6", 1, &big);
    let source = failing_source(&server, &small, "over the limit");
    assert!(source["last_error"]["message"].as_str().unwrap().contains("it stays on the server"), "{source}");
    // Listed after it, the next message waits behind it.
    dovecot.put("remote6", 2, 1);
    let errors = "mailroom_fetch_errors_total{kind=\"too_big\",source=\"1\"}";
    let seen = metric(&server, errors).unwrap();
    wait_until("two more refusals", &server, || metric(&server, errors).unwrap() >= seen + 2.0);
    assert_eq!(dovecot.count("remote6"), 2, "the big message and the next stay on the server");
    assert_eq!(local_messages(data.path(), "INBOX").len(), 1, "nothing truncated was delivered");
    server.terminate(WAIT).expect("stops");

    let server = Server::start_ready(&env, data.path(), WAIT);
    wait_until("every message", &server, || {
        local_messages(data.path(), "INBOX").len() == 3 && dovecot.count("remote6") == 0
    });
    let local = local_messages(data.path(), "INBOX");
    let copy = &local["<m1@remote.test>"][0];
    let tail = format!("{}\r\n.leading dot line\r\n", big_body.repeat(80));
    assert!(copy.ends_with(&tail), "whole: {} bytes", copy.len());
}

/// Without `keep`, IMAP deletes a message on the server only once its local copy exists:
/// watched from a second IMAP session on Dovecot while the fetch runs.
#[test]
fn imap_without_keep_deletes_on_the_server_only_after_the_local_copy() {
    let Some(dovecot) = Dovecot::start(&["remote7"]) else { return };
    if !have_tool("python3") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let entry = format!("alice@example.com <- imaps://remote7@127.0.0.1:{}/INBOX interval=1s", dovecot.imaps);
    let server = Server::start_ready(&fetch_env(data.path(), &dovecot, &[entry]), data.path(), WAIT);
    let inbox = data.path().join("mail/example.com/alice");
    let args = [
        "watch".into(),
        dovecot.imaps.to_string(),
        dovecot.ca().display().to_string(),
        "remote7".into(),
        REMOTE_PASSWORD.into(),
        inbox.display().to_string(),
        "40".into(),
    ];
    let out = common::run_client("fetch_imap.py", &args, &server);
    println!("{out}");
    let local = local_messages(data.path(), "INBOX");
    assert_eq!(local.len(), 40);
    assert!(local.values().all(|c| c.len() == 1 && c[0].contains("with IMAPS id fetch.")));
    // The script stops once no message is left undeleted on the server; the last one's
    // UID EXPUNGE may still be on its way, so its file may stay a moment longer.
    wait_until("the remote account expunged", &server, || dovecot.count("remote7") == 0);
}

/// Two replicas on one PostgreSQL store with the same `MAILROOM_FETCH`: the source's lease
/// lets one of them fetch at a time and the record in the store keeps what either
/// fetched, so each message arrives once.
#[test]
fn two_replicas_on_postgresql_fetch_each_message_once() {
    let Some(dovecot) = Dovecot::start(&["remote8"]) else { return };
    let Some(url) = common::test_pg::database() else { return };
    dovecot.put("remote8", 0, 30);
    let entry = dovecot.pop3s_entry("remote8");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = |dir: &Path| {
        let data = dir.join("data");
        let env = fetch_env(&data, &dovecot, std::slice::from_ref(&entry));
        let mut env = with(&env, "MAILROOM_IMAP_LISTEN", "127.0.0.1:0");
        env.push(("MAILROOM_STORE".into(), url.clone()));
        Server::start_ready(&env, &data, WAIT)
    };
    let (a, b) = (replica(dir_a.path()), replica(dir_b.path()));
    let local = |server: &Server| -> Vec<String> {
        let out = common::run_client("fetch_imap.py", &["local".into(), server.port("imap").to_string()], server);
        out.lines().map(str::to_string).collect()
    };
    let once = |ids: &[String], n: usize| {
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (n, n), "{ids:?}");
    };
    wait_until("the remote emptied", &a, || dovecot.count("remote8") == 0);
    let before = runs(&a) + runs(&b);
    wait_until("more runs on the replicas", &a, || runs(&a) + runs(&b) >= before + 4);
    once(&local(&a), 30);
    dovecot.put("remote8", 30, 5);
    wait_until("the new messages", &b, || dovecot.count("remote8") == 0 && local(&b).len() >= 35);
    let before = runs(&a) + runs(&b);
    wait_until("more runs on the replicas", &b, || runs(&a) + runs(&b) >= before + 4);
    once(&local(&b), 35);
}
