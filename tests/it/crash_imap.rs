//! kill -9 in the middle of IMAP writes on a Maildir of 500 messages, twenty times.
//!
//! Each round brings the folders to a known state (INBOX holds every message once), lets
//! imaplib start one big operation — `UID MOVE 1:*`, `UID COPY 1:*`, `EXPUNGE`, flag
//! changes that make the index log be rewritten, a SELECT that rewrites the header cache —
//! kills the server with SIGKILL after a delay taken from a fixed spread, restarts it on
//! the same data dir and checks what a client and the files say:
//!
//! - UIDVALIDITY of every folder never changes, UIDNEXT never goes down, every UID is
//!   below UIDNEXT, and a UID once seen never names another message (no reuse);
//! - every message is exactly once in INBOX ∪ Archive (a MOVE is all or nothing per
//!   message), at most once in Copies, never twice in one folder;
//! - the messages IMAP lists in each folder are exactly the files in its `cur/` and `new/`
//!   (the index matches the Maildir), and nothing is left in `tmp/`.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, env_listening, have_tool};

const MESSAGES: usize = 500;
const OPS: [&str; 5] = ["move", "copy", "expunge", "store", "hdrcache"];
/// Milliseconds between the client sending the command and the kill: each operation is
/// cut at four points of this spread (the operations take some to some tens of ms).
const DELAYS_MS: [u64; 4] = [1, 6, 20, 60];

fn client(server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{}/tests/clients/crash_imap.py", env!("CARGO_MANIFEST_DIR")))
        .arg(server.port("imap").to_string())
        .args(["alice@example.com", "wonderland"])
        .args(args);
    cmd
}

fn run_client(server: &Server, args: &[&str]) -> String {
    let out = client(server, args).output().expect("python3");
    assert!(
        out.status.success(),
        "crash_imap.py {args:?}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The folder's directory in alice's Maildir++.
fn folder_dir(data: &Path, folder: &str) -> PathBuf {
    let home = data.join("mail/example.com/alice");
    if folder == "INBOX" { home } else { home.join(format!(".{folder}")) }
}

/// The Message-ID of every message file of a folder (cur/ and new/), and the names in tmp/.
fn maildir_ids(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries.flatten() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()).into_owned();
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: <")?.strip_suffix('>').map(str::to_string))
                .unwrap_or_default();
            ids.push(id);
        }
    }
    ids.sort();
    let tmp = std::fs::read_dir(dir.join("tmp"))
        .map(|es| es.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    (ids, tmp)
}

/// What the test remembers across rounds, per folder.
#[derive(Default)]
struct Seen {
    uid_validity: Option<u64>,
    uid_next: u64,
    uids: HashMap<u64, String>,
}

fn check(round: usize, op: &str, data: &Path, state: &serde_json::Value, seen: &mut BTreeMap<String, Seen>) {
    let ctx = format!("round {round} ({op})");
    let mut home: HashMap<String, usize> = HashMap::new();
    for folder in ["INBOX", "Archive", "Copies"] {
        let f = state.get(folder).unwrap_or_else(|| panic!("{ctx}: {folder} missing"));
        let validity = f["uidvalidity"].as_u64().unwrap();
        let uid_next = f["uidnext"].as_u64().unwrap();
        let s = seen.entry(folder.to_string()).or_default();
        assert_eq!(*s.uid_validity.get_or_insert(validity), validity, "{ctx}: UIDVALIDITY of {folder} changed");
        assert!(uid_next >= s.uid_next, "{ctx}: UIDNEXT of {folder} went down from {} to {uid_next}", s.uid_next);
        s.uid_next = uid_next;
        let mut listed = Vec::new();
        for m in f["messages"].as_array().unwrap() {
            let uid = m[0].as_u64().unwrap();
            let id = m[1].as_str().unwrap().to_string();
            assert!(uid < uid_next, "{ctx}: {folder} UID {uid} not below UIDNEXT {uid_next}");
            let before = s.uids.entry(uid).or_insert_with(|| id.clone());
            assert_eq!(*before, id, "{ctx}: {folder} UID {uid} reused");
            listed.push(id);
        }
        listed.sort();
        let mut dedup = listed.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), listed.len(), "{ctx}: a message twice in {folder}");
        let (files, tmp) = maildir_ids(&folder_dir(data, folder));
        assert_eq!(listed, files, "{ctx}: {folder}: what IMAP lists differs from the files");
        let debris: Vec<&String> = tmp.iter().filter(|n| !n.starts_with("mailroom-expunged.")).collect();
        assert!(debris.is_empty(), "{ctx}: {folder}/tmp holds {debris:?}");
        if folder != "Copies" {
            for id in listed {
                *home.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(home.len(), MESSAGES, "{ctx}: messages lost from INBOX and Archive");
    let twice: Vec<_> = home.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "{ctx}: in both INBOX and Archive: {twice:?}");
}

/// 500 messages dropped into INBOX's `new/` the way any MDA delivers (tmp/ then rename),
/// each with a unique Message-ID and a header block big enough (about 3 KiB) that the
/// header cache of 500 of them passes the size at which it is rewritten.
fn populate(data: &Path) {
    let inbox = folder_dir(data, "INBOX");
    let pad: String = (0..40).map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(60))).collect();
    for i in 0..MESSAGES {
        let name = format!("17000000{i:02}.M{i}P1.crash.test,S=0");
        let text = format!(
            "From: a@remote.test\r\nTo: alice@example.com\r\nSubject: m{i}\r\nMessage-ID: <m{i}@crash.test>\r\n{pad}\r\nbody {i}\r\n"
        );
        let tmp = inbox.join("tmp").join(&name);
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, inbox.join("new").join(&name)).unwrap();
    }
}

#[test]
fn kill_9_in_the_middle_of_big_imap_writes_loses_and_duplicates_nothing() {
    if !have_tool("python3") {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = env_listening(&data, &["IMAP"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    let mut server = Server::start_ready(&env, &data, Duration::from_secs(30));
    populate(&data);
    let mut seen = BTreeMap::new();
    run_client(&server, &["prepare", "move"]);
    let state: serde_json::Value = serde_json::from_str(&run_client(&server, &["state"])).unwrap();
    check(0, "start", &data, &state, &mut seen);

    let mut cut = 0;
    for round in 1..=OPS.len() * DELAYS_MS.len() {
        let op = OPS[(round - 1) % OPS.len()];
        let delay = Duration::from_millis(DELAYS_MS[(round - 1) / OPS.len()]);
        run_client(&server, &["prepare", op]);
        let mut child = client(&server, &["run", op]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("go"), "round {round}: {}", server.log());
        std::thread::sleep(delay);
        server.kill9();
        let finished = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = child.wait();
        if finished != "done" {
            cut += 1;
        }
        server = Server::start_ready(&env, &data, Duration::from_secs(30));
        let state: serde_json::Value = serde_json::from_str(&run_client(&server, &["state"])).unwrap();
        check(round, op, &data, &state, &mut seen);
    }
    eprintln!("{cut} of {} operations were cut by the kill, in {:?}", OPS.len() * DELAYS_MS.len(), started.elapsed());
    assert!(cut > 0, "no operation was ever interrupted: the delays are too long");
}
