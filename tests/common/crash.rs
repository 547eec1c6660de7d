//! What the kill -9 tests (crash_imap, crash_lmtp, crash_pop3) share: where a user's
//! folders are in the data dir, which messages their files hold, what a client sees of
//! them (tests/clients/crash_imap.py `state`), and the memory of UIDs across restarts.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Server;

/// The folder's directory in `user`'s Maildir++ (`alice@example.com`, `INBOX`).
pub fn folder_dir(data: &Path, user: &str, folder: &str) -> PathBuf {
    let (local, domain) = user.split_once('@').expect("user@domain");
    let home = data.join("mail").join(domain).join(local);
    if folder == "INBOX" { home } else { home.join(format!(".{folder}")) }
}

/// Puts a message into the folder's `new/` the way any MDA delivers: written in `tmp/`
/// under `base_name`, then renamed.
pub fn drop_into_new(dir: &Path, base_name: &str, text: &str) {
    let tmp = dir.join("tmp").join(base_name);
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("new").join(base_name)).unwrap();
}

/// The Message-ID of every message file of a folder (cur/ and new/), and the names in tmp/.
pub fn maildir_ids(dir: &Path) -> (Vec<String>, Vec<String>) {
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

/// tests/clients/crash_imap.py with the server's IMAP port and `user`'s credentials.
pub fn imap_client(server: &Server, user: &str, password: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{}/tests/clients/crash_imap.py", env!("CARGO_MANIFEST_DIR")))
        .arg(server.port("imap").to_string())
        .args([user, password])
        .args(args);
    cmd
}

/// crash_imap.py `run OP`, with the server killed by SIGKILL `delay` after the client
/// sent the command; true when the kill cut it (no `done`). The server is left dead.
pub fn run_imap_op_and_kill(server: &mut Server, user: &str, password: &str, op: &str, delay: Duration) -> bool {
    let mut child = imap_client(server, user, password, &["run", op])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("go"), "{op}: {}", server.log());
    std::thread::sleep(delay);
    server.kill9();
    let finished = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = child.wait();
    finished != "done"
}

/// Runs [`imap_client`] to its end; fails the test with its output and the server's log
/// unless it exits 0. Returns its stdout.
pub fn run_imap_client(server: &Server, user: &str, password: &str, args: &[&str]) -> String {
    let out = imap_client(server, user, password, args).output().expect("python3");
    assert!(
        out.status.success(),
        "crash_imap.py {user} {args:?}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Per folder, what IMAP said: UIDVALIDITY, UIDNEXT and `[uid, Message-ID, flags]` of
/// every message (crash_imap.py `state`).
pub fn imap_state(server: &Server, user: &str, password: &str) -> serde_json::Value {
    serde_json::from_str(&run_imap_client(server, user, password, &["state"])).expect("state JSON")
}

/// What a test remembers of one folder across restarts.
#[derive(Default)]
pub struct Seen {
    uid_validity: Option<u64>,
    uid_next: u64,
    uids: HashMap<u64, String>,
}

impl Seen {
    /// Checks one folder of an [`imap_state`] against what was seen before and remembers
    /// it: UIDVALIDITY never changes, UIDNEXT never goes down, every UID is below it, a UID
    /// once seen never names another message, no message is listed twice. Returns the
    /// listed Message-IDs, sorted.
    pub fn check(&mut self, ctx: &str, folder: &serde_json::Value) -> Vec<String> {
        let validity = folder["uidvalidity"].as_u64().unwrap();
        let uid_next = folder["uidnext"].as_u64().unwrap();
        assert_eq!(*self.uid_validity.get_or_insert(validity), validity, "{ctx}: UIDVALIDITY changed");
        assert!(uid_next >= self.uid_next, "{ctx}: UIDNEXT went down from {} to {uid_next}", self.uid_next);
        self.uid_next = uid_next;
        let mut listed = Vec::new();
        for m in folder["messages"].as_array().unwrap() {
            let uid = m[0].as_u64().unwrap();
            let id = m[1].as_str().unwrap().to_string();
            assert!(uid < uid_next, "{ctx}: UID {uid} not below UIDNEXT {uid_next}");
            let before = self.uids.entry(uid).or_insert_with(|| id.clone());
            assert_eq!(*before, id, "{ctx}: UID {uid} reused");
            listed.push(id);
        }
        listed.sort();
        let mut dedup = listed.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), listed.len(), "{ctx}: a message listed twice");
        listed
    }
}

/// The folders of crash_imap.py after a round of MOVE/COPY/EXPUNGE/STORE cut by a kill:
/// each checked by its [`Seen`], every one of the `messages` exactly once in INBOX ∪
/// Archive (a MOVE is all or nothing per message), at most once in Copies. Returns the
/// Message-IDs each folder lists, sorted.
pub fn check_folders(
    ctx: &str,
    state: &serde_json::Value,
    seen: &mut BTreeMap<String, Seen>,
    messages: usize,
) -> Vec<(&'static str, Vec<String>)> {
    let mut home: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for folder in ["INBOX", "Archive", "Copies"] {
        let f = state.get(folder).unwrap_or_else(|| panic!("{ctx}: {folder} missing"));
        let listed = seen.entry(folder.to_string()).or_default().check(&format!("{ctx}: {folder}"), f);
        if folder != "Copies" {
            for id in &listed {
                *home.entry(id.clone()).or_default() += 1;
            }
        }
        out.push((folder, listed));
    }
    assert_eq!(home.len(), messages, "{ctx}: messages lost from INBOX and Archive");
    let twice: Vec<_> = home.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "{ctx}: in both INBOX and Archive: {twice:?}");
    out
}
