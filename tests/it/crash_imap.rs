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

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::crash::{
    Seen, check_folders, drop_into_new, folder_dir, imap_state, maildir_ids, run_imap_client, run_imap_op_and_kill,
};
use common::{Server, env_listening, have_tool};

const MESSAGES: usize = 500;
const OPS: [&str; 5] = ["move", "copy", "expunge", "store", "hdrcache"];
/// Milliseconds between the client sending the command and the kill: each operation is
/// cut at four points of this spread (the operations take some to some tens of ms).
const DELAYS_MS: [u64; 4] = [1, 6, 20, 60];

const USER: &str = "alice@example.com";
const PASSWORD: &str = "wonderland";

fn run_client(server: &Server, args: &[&str]) -> String {
    run_imap_client(server, USER, PASSWORD, args)
}

fn check(round: usize, op: &str, data: &Path, state: &serde_json::Value, seen: &mut BTreeMap<String, Seen>) {
    let ctx = format!("round {round} ({op})");
    for (folder, listed) in check_folders(&ctx, state, seen, MESSAGES) {
        let (files, tmp) = maildir_ids(&folder_dir(data, USER, folder));
        assert_eq!(listed, files, "{ctx}: {folder}: what IMAP lists differs from the files");
        let debris: Vec<&String> = tmp.iter().filter(|n| !n.starts_with("mailroom-expunged.")).collect();
        assert!(debris.is_empty(), "{ctx}: {folder}/tmp holds {debris:?}");
    }
}

/// 500 messages dropped into INBOX's `new/` the way any MDA delivers (tmp/ then rename),
/// each with a unique Message-ID and a header block big enough (about 3 KiB) that the
/// header cache of 500 of them passes the size at which it is rewritten.
fn populate(data: &Path) {
    let inbox = folder_dir(data, USER, "INBOX");
    let pad: String = (0..40).map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(60))).collect();
    for i in 0..MESSAGES {
        let name = format!("17000000{i:02}.M{i}P1.crash.test,S=0");
        let text = format!(
            "From: a@remote.test\r\nTo: alice@example.com\r\nSubject: m{i}\r\nMessage-ID: <m{i}@crash.test>\r\n{pad}\r\nbody {i}\r\n"
        );
        drop_into_new(&inbox, &name, &text);
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
    env.push(("MAILROOM_ACCOUNTS".into(), format!("{USER}:{{PLAIN}}{PASSWORD}")));
    let mut server = Server::start_ready(&env, &data, Duration::from_secs(30));
    populate(&data);
    let mut seen = BTreeMap::new();
    run_client(&server, &["prepare", "move"]);
    let state = imap_state(&server, USER, PASSWORD);
    check(0, "start", &data, &state, &mut seen);

    let mut cut = 0;
    for round in 1..=OPS.len() * DELAYS_MS.len() {
        let op = OPS[(round - 1) % OPS.len()];
        let delay = Duration::from_millis(DELAYS_MS[(round - 1) / OPS.len()]);
        run_client(&server, &["prepare", op]);
        if run_imap_op_and_kill(&mut server, USER, PASSWORD, op, delay) {
            cut += 1;
        }
        server = Server::start_ready(&env, &data, Duration::from_secs(30));
        let state = imap_state(&server, USER, PASSWORD);
        check(round, op, &data, &state, &mut seen);
    }
    eprintln!("{cut} of {} operations were cut by the kill, in {:?}", OPS.len() * DELAYS_MS.len(), started.elapsed());
    assert!(cut > 0, "no operation was ever interrupted: the delays are too long");
}
