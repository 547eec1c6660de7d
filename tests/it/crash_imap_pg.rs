//! kill -9 in the middle of IMAP writes on the PostgreSQL store: crash_imap's scenario,
//! lighter (300 messages, MOVE, COPY and EXPUNGE, four delays each), with the mail in the
//! database (`MAILROOM_STORE=postgres://…`). PostgreSQL keeps running; only mailroom
//! dies and is restarted on the same database. After each round imaplib and SQL agree:
//!
//! - UIDVALIDITY of every folder never changes, UIDNEXT never goes down, no UID is reused,
//!   every message is exactly once in INBOX ∪ Archive and at most once in Copies
//!   (`common::crash::check_folders`, as for Maildir);
//! - in the tables, each folder's `uid_validity` is the one IMAP reports, its live rows
//!   (not expunged) are exactly the messages IMAP lists, and none has a UID at or above
//!   the folder's `uid_next`.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::crash::{Seen, check_folders, imap_state, run_imap_client, run_imap_op_and_kill};
use common::test_pg::{self, psql};
use common::{Server, env_listening};

const USER: &str = "alice@example.com";
const PASSWORD: &str = "wonderland";
const MESSAGES: usize = 300;
const OPS: [&str; 3] = ["move", "copy", "expunge"];
/// Milliseconds between the client sending the command and the kill.
const DELAYS_MS: [u64; 4] = [2, 10, 30, 80];

/// What the tables say of one folder: uid_validity, uid_next, live rows, highest live UID.
fn folder_row(url: &str, folder: &str) -> (u64, u64, usize, u64) {
    let row = psql(
        url,
        &format!(
            "SELECT b.uid_validity, b.uid_next, count(m.uid), coalesce(max(m.uid), 0) \
             FROM mailboxes b JOIN accounts a ON a.id = b.account_id \
             LEFT JOIN messages m ON m.mailbox_id = b.id AND m.expunged_modseq IS NULL \
             WHERE a.local = 'alice' AND a.domain = 'example.com' AND b.name = '{folder}' \
             GROUP BY b.id"
        ),
    );
    let v: Vec<u64> = row.split('|').map(|n| n.parse().unwrap_or_else(|_| panic!("{folder}: {row:?}"))).collect();
    (v[0], v[1], v[2] as usize, v[3])
}

fn check(ctx: &str, url: &str, server: &Server, seen: &mut BTreeMap<String, Seen>) {
    let state = imap_state(server, USER, PASSWORD);
    for (folder, listed) in check_folders(ctx, &state, seen, MESSAGES) {
        let (validity, uid_next, live, highest) = folder_row(url, folder);
        assert_eq!(Some(validity), state[folder]["uidvalidity"].as_u64(), "{ctx}: {folder}: uid_validity in SQL");
        assert_eq!(live, listed.len(), "{ctx}: {folder}: live rows in SQL differ from what IMAP lists");
        assert!(highest < uid_next, "{ctx}: {folder}: UID {highest} at or above uid_next {uid_next}");
    }
}

#[test]
fn kill_9_in_the_middle_of_imap_writes_on_postgresql_loses_and_duplicates_nothing() {
    let Some(url) = test_pg::database() else { return };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = env_listening(&data, &["IMAP"]);
    env.push(("MAILROOM_ACCOUNTS".into(), format!("{USER}:{{PLAIN}}{PASSWORD}")));
    env.push(("MAILROOM_STORE".into(), url.clone()));
    let start = || Server::start_ready(&env, &data, Duration::from_secs(60));
    let mut server = start();
    run_imap_client(&server, USER, PASSWORD, &["append", &MESSAGES.to_string()]);
    run_imap_client(&server, USER, PASSWORD, &["prepare", "move"]);
    let mut seen = BTreeMap::new();
    check("start", &url, &server, &mut seen);

    let mut cut = 0;
    for round in 1..=OPS.len() * DELAYS_MS.len() {
        let op = OPS[(round - 1) % OPS.len()];
        let delay = Duration::from_millis(DELAYS_MS[(round - 1) / OPS.len()]);
        run_imap_client(&server, USER, PASSWORD, &["prepare", op]);
        if run_imap_op_and_kill(&mut server, USER, PASSWORD, op, delay) {
            cut += 1;
        }
        server = start();
        check(&format!("round {round} ({op}, {delay:?})"), &url, &server, &mut seen);
    }
    eprintln!("{cut} of {} operations were cut by the kill, in {:?}", OPS.len() * DELAYS_MS.len(), started.elapsed());
    assert!(cut > 0, "no operation was ever interrupted: the delays are too long");
}
