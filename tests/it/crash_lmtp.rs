//! kill -9 while an MTA streams deliveries over LMTP, twenty times.
//!
//! Each round smtplib.LMTP (tests/clients/crash_lmtp.py) delivers messages one after the
//! other, each to two or three of three accounts with a Message-ID of its own, every
//! seventh big enough to be spooled to a file while it arrives; the server is killed with
//! SIGKILL after a delay taken from a fixed spread and restarted on the same data dir.
//! Then, per account, what imaplib and the files say:
//!
//! - every message a recipient got its 250 for is in that recipient's INBOX, exactly once
//!   (LMTP answers per recipient: RFC 2033 4.2), and stays there in later rounds; a
//!   message whose 250 the kill swallowed may be there too, at most once;
//! - every file in `cur/` and `new/` is a whole message (its last line is there); the
//!   messages IMAP lists are exactly those files (the index matches the Maildir);
//!   UIDVALIDITY never changes and no UID names two messages;
//! - a copy cut while being written leaves nothing (a file without a name yet, freed by
//!   the kernel) or, on a system where delivery takes `tmp/`, stays there, never seen by
//!   clients, and is removed at a later start once older than the Maildir rule's 36
//!   hours; a message cut while it arrived leaves nothing in `state/spool/` after the
//!   restart.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::crash::{Seen, folder_dir, imap_state, maildir_ids};
use common::test_pg::PgCluster;
use common::{Server, env_listening, have_tool};

const USERS: [&str; 3] = ["alice@example.com", "bob@example.com", "carol@example.com"];
const PASSWORD: &str = "wonderland";
/// Milliseconds between the client's start and the kill: from before its first message
/// is complete to after some tens of messages.
const DELAYS_MS: [u64; 20] =
    [10, 30, 50, 70, 90, 110, 130, 150, 170, 190, 210, 240, 270, 300, 330, 360, 400, 450, 500, 600];

/// What the client printed: the messages it sent, (Message-ID, recipient) per 250, how
/// each 4xx reply or broken connection it met (the code or the error), and how it ended (`cut`, `stopped`).
#[derive(Default)]
struct Deliveries {
    sent: Vec<String>,
    acked: Vec<(String, String)>,
    deferred: Vec<String>,
    ended: Option<String>,
}

impl Deliveries {
    fn take(&mut self, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["sent", id] => self.sent.push(id.to_string()),
            ["ack", id, rcpt] => self.acked.push((id.to_string(), rcpt.to_string())),
            ["defer", why] => self.deferred.push(why.to_string()),
            ["cut"] | ["stopped"] => self.ended = Some(line.to_string()),
            _ => panic!("the client said {line:?}"),
        }
    }
}

/// The accounts on LMTP (and IMAP, to check them).
fn lmtp_env(data: &Path) -> Vec<(String, String)> {
    let mut env = env_listening(data, &["LMTP", "IMAP"]);
    let accounts: Vec<String> = USERS.iter().map(|u| format!("{u}:{{PLAIN}}{PASSWORD}")).collect();
    env.push(("MAILROOM_ACCOUNTS".into(), accounts.join(",")));
    env
}

/// crash_lmtp.py on the server's LMTP port (`stop` as it takes it), once it said `go`;
/// the lines it prints after that.
fn start_client(server: &Server, round: usize, stop: &str) -> (Child, impl Iterator<Item = String> + Send + 'static) {
    let mut child = Command::new("python3")
        .arg(format!("{}/tests/clients/crash_lmtp.py", env!("CARGO_MANIFEST_DIR")))
        .arg(server.port("lmtp").to_string())
        .args([&round.to_string(), stop])
        .args(USERS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    assert_eq!(lines.next().as_deref(), Some("go"), "round {round}: {}", server.log());
    (child, lines)
}

fn deliver_until_killed(server: &mut Server, round: usize, delay: Duration) -> Deliveries {
    let (child, lines) = start_client(server, round, "-");
    std::thread::sleep(delay);
    server.kill9();
    let mut r = Deliveries::default();
    lines.for_each(|line| r.take(&line));
    let out = child.wait_with_output().unwrap();
    let cut = r.ended.as_deref() == Some("cut");
    assert!(out.status.success() && cut, "round {round}: client: {}", String::from_utf8_lossy(&out.stderr));
    r
}

/// What IMAP says of every account, asked in parallel.
fn imap_states(server: &Server) -> Vec<serde_json::Value> {
    std::thread::scope(|s| {
        let asked: Vec<_> = USERS.map(|user| s.spawn(move || imap_state(server, user, PASSWORD))).into();
        asked.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Every message file of the folder ends with the line the client put last: nothing
/// outside `tmp/` is half-written. `whole`: the files checked in earlier rounds (by name,
/// as Maildir never rewrites a file in place; unflagged, a file's name changes only when
/// it moves from `new/` to `cur/`).
fn assert_whole(ctx: &str, dir: &Path, whole: &mut HashSet<PathBuf>) {
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            if whole.contains(&e.path()) {
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            let id = text.lines().find_map(|l| l.strip_prefix("Message-ID: <")?.strip_suffix('>'));
            let complete = id.is_some_and(|id| text.ends_with(&format!("\r\nend {id}\r\n")));
            assert!(complete, "{ctx}: {} is not a whole message ({} bytes)", e.path().display(), text.len());
            if sub == "cur" {
                whole.insert(e.path());
            }
        }
    }
}

fn spool_files(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("state/spool"))
        .map(|es| es.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn kill_9_while_lmtp_delivers_loses_nothing_acknowledged_and_duplicates_nothing() {
    if !have_tool("python3") {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = lmtp_env(&data);
    let start = || Server::start_ready(&env, &data, Duration::from_secs(30));
    let mut server = start();

    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    let mut acked: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut sent = BTreeSet::new();
    let (mut whole, mut spooled_cut, mut tmp_left) = (HashSet::new(), 0, BTreeSet::new());
    for (i, delay) in DELAYS_MS.iter().enumerate() {
        let round = i + 1;
        let r = deliver_until_killed(&mut server, round, Duration::from_millis(*delay));
        sent.extend(r.sent.iter().cloned());
        for (id, rcpt) in r.acked {
            acked.entry(USERS.iter().find(|u| **u == rcpt).unwrap()).or_default().insert(id);
        }
        // The message the kill cut was big: its spool file was there when the server died.
        spooled_cut += usize::from(r.sent.last().is_some_and(|id| is_big(id)));
        server = start();
        let ctx = format!("round {round} ({delay} ms)");
        let spool = spool_files(&data);
        assert!(spool.is_empty(), "{ctx}: state/spool after the restart holds {spool:?}");
        let states = imap_states(&server);
        for (user, state) in USERS.into_iter().zip(states) {
            let ctx = format!("{ctx}: {user}");
            let listed = seen.entry(user).or_default().check(&ctx, &state["INBOX"]);
            let dir = folder_dir(&data, user, "INBOX");
            let (files, in_tmp) = maildir_ids(&dir);
            assert_eq!(listed, files, "{ctx}: what IMAP lists differs from the files");
            assert_whole(&ctx, &dir, &mut whole);
            tmp_left.extend(in_tmp.into_iter().map(|name| dir.join("tmp").join(name)));
            let listed: BTreeSet<String> = listed.into_iter().collect();
            let lost: Vec<_> = acked.get(user).into_iter().flatten().filter(|id| !listed.contains(*id)).collect();
            assert!(lost.is_empty(), "{ctx}: acknowledged with 250 but not in INBOX: {lost:?}");
            let unknown: Vec<_> = listed.iter().filter(|id| !sent.contains(*id)).collect();
            assert!(unknown.is_empty(), "{ctx}: never sent: {unknown:?}");
        }
    }
    let total: usize = acked.values().map(BTreeSet::len).sum();
    eprintln!(
        "{} messages sent, {total} copies acknowledged, {} delivered without their 250, \
         {spooled_cut} big messages cut, {} copies cut in tmp/, in {:?}",
        sent.len(),
        whole.len() - total,
        tmp_left.len(),
        started.elapsed()
    );
    assert!(total > 100, "too few deliveries to mean anything: {total}");

    // Copies cut in tmp/ are ignored above (not listed, not files of the folder); once
    // older than 36 hours the first open of the folder after a start removes them.
    let old = SystemTime::now() - Duration::from_secs(37 * 3600);
    for path in &tmp_left {
        std::fs::File::options().write(true).open(path).unwrap().set_modified(old).unwrap();
    }
    server.kill9();
    server = start();
    for (user, state) in USERS.into_iter().zip(imap_states(&server)) {
        seen.get_mut(user).unwrap().check(user, &state["INBOX"]);
        let (_, in_tmp) = maildir_ids(&folder_dir(&data, user, "INBOX"));
        assert!(in_tmp.is_empty(), "{user}: stale files kept in tmp/: {in_tmp:?}");
    }
}

/// The client makes every seventh message big (crash_lmtp.py): `rR.mN@crash.test` with
/// N % 7 == 3.
fn is_big(id: &str) -> bool {
    let n = id.split_once(".m").and_then(|(_, rest)| rest.split_once('@')).and_then(|(n, _)| n.parse::<u64>().ok());
    n.is_some_and(|n| n % 7 == 3)
}

/// A PostgreSQL restart (not mailroom's) while the client streams deliveries over LMTP
/// into the PostgreSQL store: every copy that got its 250 is in its INBOX once, and
/// deliveries are acknowledged again afterwards without restarting mailroom. The client
/// goes on through the 4xx replies and dropped connections of the restart, as an MTA does.
#[test]
fn a_postgresql_restart_during_lmtp_ingest_loses_nothing_acknowledged() {
    if !have_tool("python3") {
        return;
    }
    let Some(cluster) = PgCluster::start(true) else { return };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = lmtp_env(&data);
    env.push(("MAILROOM_STORE".into(), cluster.url("postgres")));
    let server = Server::start_ready(&env, &data, Duration::from_secs(60));
    let stop = tmp.path().join("stop");
    let (child, lines) = start_client(&server, 1, stop.to_str().unwrap());
    let got = Arc::new(Mutex::new(Deliveries::default()));
    let reader = {
        let got = got.clone();
        std::thread::spawn(move || lines.for_each(|line| got.lock().unwrap().take(&line)))
    };
    let acked = || got.lock().unwrap().acked.len();
    let wait_for = |n: usize, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked() < n {
            assert!(Instant::now() < deadline, "{what}: only {} copies acknowledged\n{}", acked(), server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(30, "before the restart");
    cluster.restart();
    let at_restart = acked();
    wait_for(at_restart + 30, "after the database restart");
    std::fs::write(&stop, "").unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let got = std::mem::take(&mut *got.lock().unwrap());
    let stopped = got.ended.as_deref() == Some("stopped");
    assert!(out.status.success() && stopped, "client: {}", String::from_utf8_lossy(&out.stderr));

    let sent: BTreeSet<&String> = got.sent.iter().collect();
    for (user, state) in USERS.into_iter().zip(imap_states(&server)) {
        let listed: BTreeSet<String> = Seen::default().check(user, &state["INBOX"]).into_iter().collect();
        let lost: Vec<_> = got.acked.iter().filter(|(id, r)| r == user && !listed.contains(id)).collect();
        assert!(lost.is_empty(), "{user}: acknowledged with 250 but not in INBOX: {lost:?}");
        let unknown: Vec<_> = listed.iter().filter(|id| !sent.contains(id)).collect();
        assert!(unknown.is_empty(), "{user}: never sent: {unknown:?}");
    }
    eprintln!(
        "{} messages sent, {} copies acknowledged ({at_restart} before the restart), deferred: {:?}, in {:?}",
        got.sent.len(),
        got.acked.len(),
        got.deferred,
        started.elapsed()
    );
}
