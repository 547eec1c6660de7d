//! `mailroom backup DEST` against the real server: a backup taken while SMTP delivers and
//! an IMAP client sets flags and moves messages, restored by starting a second server on
//! it; and the destinations it refuses.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, base_env, env_listening, run, run_client};

const SCRIPT: &str = "backup_load.py";
const ACCOUNT: &str = "alice@example.com";
const PASSWORD: &str = "wonderland";
/// Messages delivered (and acknowledged) before the backup starts.
const BEFORE: usize = 200;

fn with_account(mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.push(("MAILROOM_ACCOUNTS".into(), format!("{ACCOUNT}:{{PLAIN}}{PASSWORD}")));
    env
}

/// A server on `data` with SMTP and IMAP on kernel-chosen loopback ports: (server, smtp,
/// imap, env).
fn start(data: &Path) -> (Server, u16, u16, Vec<(String, String)>) {
    let env = with_account(env_listening(data, &["SMTP", "IMAP"]));
    let server = Server::start_ready(&env, data, Duration::from_secs(30));
    let (smtp, imap) = (server.port("smtp"), server.port("imap"));
    (server, smtp, imap, env)
}

/// What IMAP shows of every folder.
#[derive(serde::Deserialize)]
struct Dump {
    /// folder -> [(Message-ID, flags)]
    messages: HashMap<String, Vec<(String, Vec<String>)>>,
    uidvalidity: HashMap<String, u32>,
}

fn dump(server: &Server, imap: u16) -> Dump {
    let out = run_client(SCRIPT, &["dump".into(), imap.to_string(), ACCOUNT.into(), PASSWORD.into()], server);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_backup_taken_while_mail_moves_restores_every_acknowledged_message_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest, stop) = (tmp.path().join("data"), tmp.path().join("backup"), tmp.path().join("stop"));
    let (mut server, smtp, imap, _) = start(&data);
    let login = || vec![imap.to_string(), ACCOUNT.to_string(), PASSWORD.to_string()];
    run_client(SCRIPT, &["deliver".into(), smtp.to_string(), "pre".into(), BEFORE.to_string()], &server);
    run_client(SCRIPT, &[vec!["prepare".to_string()], login()].concat(), &server);

    // The backup runs with the server's environment, as an operator would run it.
    let backup_env = with_account(base_env(&data));
    let (backup, took, during, churn) = std::thread::scope(|s| {
        let stop_s = stop.display().to_string();
        let server = &server;
        let sender = s.spawn(move || {
            let args = ["deliver-until".into(), smtp.to_string(), "during".into(), stop_s, "5000".into()];
            run_client(SCRIPT, &args, server)
        });
        let stop_s = stop.display().to_string();
        let mover =
            s.spawn(move || run_client(SCRIPT, &[vec!["churn".to_string()], login(), vec![stop_s]].concat(), server));
        // Let both get going so the copy meets moving files from its first file on.
        std::thread::sleep(Duration::from_millis(1500));
        let started = Instant::now();
        let backup = run(&["backup", dest.to_str().unwrap()], &backup_env, "");
        let took = started.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(&stop, b"").unwrap();
        (backup, took, sender.join().unwrap(), mover.join().unwrap())
    });
    let stderr = String::from_utf8_lossy(&backup.stderr);
    assert!(backup.status.success(), "backup: {stderr}\n{}", server.log());
    assert!(stderr.contains("backup written to") && stderr.contains("mailboxes"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one summary line: {stderr}");
    eprintln!("backup took {took:?} while the server worked ({during}, {churn}): {stderr}");
    let sent: usize = during.trim().strip_prefix("sent ").and_then(|n| n.parse().ok()).expect("sent N");
    let moves: usize = churn.trim().strip_prefix("churn ").and_then(|n| n.parse().ok()).expect("churn N");
    assert!(sent > 0 && moves > 0, "traffic during the backup: {during} {churn}");
    let live = dump(&server, imap);
    assert_eq!(server.terminate(Duration::from_secs(30)).map(|s| s.success()), Some(true), "{}", server.log());

    // The backup is a data dir as it is: no lock, accepted by check-config, served.
    assert!(!dest.join("lock").exists(), "the lock file is never copied");
    assert!(dest.join("format").is_file() && dest.join("state/index").is_dir());
    let restored_env = with_account(base_env(&dest));
    let check = run(&["check-config"], &restored_env, "");
    assert!(check.status.success(), "check-config: {}", String::from_utf8_lossy(&check.stderr));
    let (mut restored, _, imap2, _) = start(&dest);
    let got = dump(&restored, imap2);
    let log = restored.log();
    for bad in ["format", "corrupt", "rebuilt", "ERROR"] {
        assert!(!log.contains(bad), "restored server logged {bad:?}:\n{log}");
    }

    // The copied indexes were used as they are, not rebuilt: clients keep their caches.
    // (Drafts, Sent, ... got their first index only when the live dump opened them.)
    for folder in ["INBOX", "Archive"] {
        assert_eq!(got.uidvalidity.get(folder), live.uidvalidity.get(folder), "{folder}");
    }
    let mut seen: HashMap<&str, Vec<(&str, &Vec<String>)>> = HashMap::new();
    for (folder, messages) in &got.messages {
        for (id, flags) in messages {
            seen.entry(id.as_str()).or_default().push((folder.as_str(), flags));
        }
    }
    for n in 0..BEFORE {
        let id = format!("pre-{n}@backup.test");
        let copies = seen.get(id.as_str()).cloned().unwrap_or_default();
        assert_eq!(copies.len(), 1, "{id} must be restored exactly once: {copies:?}");
        let flags = copies[0].1;
        if n < 50 {
            assert!(flags.contains(&"\\Flagged".to_string()), "{id} lost \\Flagged: {flags:?}");
        }
        if (50..60).contains(&n) {
            assert!(flags.contains(&"$Backup".to_string()), "{id} lost its keyword: {flags:?}");
        }
    }
    for (id, copies) in &seen {
        assert!(copies.len() == 1, "{id} restored {} times: {copies:?}", copies.len());
    }
    let pre = seen.keys().filter(|id| id.starts_with("pre-")).count();
    let later = seen.len() - pre;
    assert_eq!(pre, BEFORE);
    let live_total: usize = live.messages.values().map(Vec::len).sum();
    assert!(later <= sent && seen.len() <= live_total, "restored {later} of {sent} delivered during the backup");
    eprintln!(
        "restored {} messages ({pre} from before the backup, {later} of the {sent} delivered during it; {live_total} live at the end)",
        seen.len()
    );
    assert_eq!(restored.terminate(Duration::from_secs(30)).map(|s| s.success()), Some(true));
}

#[test]
fn a_dest_that_is_not_empty_or_inside_the_data_dir_is_refused_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("mail")).unwrap();
    let env = base_env(&data);
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep-me"), b"x").unwrap();
    for (dest, why) in [
        (full.clone(), "exists and is not empty"),
        (data.join("backup"), "is inside the data dir"),
        (data.join("mail"), "is inside the data dir"),
    ] {
        let out = run(&["backup", dest.to_str().unwrap()], &env, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", dest.display());
        assert!(stderr.contains("backup refused") && stderr.contains(why), "{}: {stderr}", dest.display());
    }
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1, "a refused DEST is left as it was");
    assert!(!data.join("backup").exists());
    let help = run(&["backup", "--help"], &env, "");
    assert!(String::from_utf8_lossy(&help.stdout).contains("DEST"));
}
