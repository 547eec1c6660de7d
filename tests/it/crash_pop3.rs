//! kill -9 around a POP3 QUIT and during a long RETR loop, twenty times (nine on PostgreSQL).
//!
//! Each round tops INBOX up to 200 messages (60 on PostgreSQL), each with a Message-ID of
//! its own, dropped into `new/` as any MDA does, and lets poplib
//! (tests/clients/crash_pop3.py) either DELE two messages in three and QUIT — the server is killed with SIGKILL a few ms after
//! the client sends QUIT, from a fixed spread, so before, during or after the UPDATE state
//! — or RETR and DELE every message in turn, killed in the middle of that loop. After the
//! restart on the same data dir a new session lists what is left:
//!
//! - the client got +OK to QUIT: every DELEd message is gone and every other one is there;
//! - it did not: no message it did not DELE is lost (RFC 1939 §6: only the UPDATE state
//!   removes messages), and none is there twice;
//! - the UIDL of every message left is the one it had before (and names the same
//!   message), and no UIDL appears that was not there before;
//! - the messages POP3 lists are exactly the files of the Maildir, and `tmp/` holds nothing
//!   but the server's own retained files.
//!
//! The same again on the PostgreSQL store (messages APPENDed over IMAP instead of files),
//! where the live rows of INBOX are what POP3 lists and an UPDATE is all or nothing.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::crash::{drop_into_new, folder_dir, maildir_ids, run_imap_client};
use common::test_pg::{self, psql};
use common::{Server, env_listening, have_tool, run_client};

const USER: &str = "alice@example.com";
const PASSWORD: &str = "wonderland";
/// How many messages each round starts with, and when the kills come.
struct Plan {
    messages: usize,
    /// Rounds of DELE + QUIT: milliseconds between the client's QUIT and the kill (the
    /// UPDATE state of 130 deletions takes some ms to some tens of ms on Maildir).
    quit_delays_ms: &'static [u64],
    /// Rounds of RETR + DELE of every message: milliseconds between the first RETR and
    /// the kill.
    retr_delays_ms: &'static [u64],
}

const MAILDIR_PLAN: Plan = Plan {
    messages: 200,
    quit_delays_ms: &[0, 0, 1, 1, 2, 3, 5, 8, 12, 20, 35, 60],
    retr_delays_ms: &[5, 15, 30, 50, 80, 120, 170, 250],
};
/// Fewer and smaller rounds: messages are APPENDed, a start on PostgreSQL takes longer.
const PG_PLAN: Plan = Plan { messages: 60, quit_delays_ms: &[0, 1, 3, 8, 20, 50], retr_delays_ms: &[5, 20, 60] };

/// UIDL -> Message-ID of every message a POP3 session lists.
type Maildrop = BTreeMap<String, String>;

/// What a new session lists (crash_pop3.py `state`), with no UIDL and no message twice.
fn maildrop(ctx: &str, server: &Server) -> Maildrop {
    let args = [server.port("pop3").to_string(), USER.into(), PASSWORD.into(), "state".into()];
    let listed: Vec<(String, String)> = serde_json::from_str(&run_client("crash_pop3.py", &args, server)).unwrap();
    let drop: Maildrop = listed.iter().cloned().collect();
    assert_eq!(drop.len(), listed.len(), "{ctx}: a UIDL listed twice: {listed:?}");
    let mut ids: Vec<&String> = drop.values().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), drop.len(), "{ctx}: a message listed twice: {listed:?}");
    drop
}

/// Where the mail is: a Maildir in the data dir, or a PostgreSQL database (URL).
enum Store<'a> {
    Maildir(&'a Path),
    Pg(&'a str),
}

impl Store<'_> {
    /// Adds messages to INBOX until it holds `messages`, Message-IDs
    /// `rROUND.mN@crash.test`: files dropped into the Maildir, or IMAP APPENDs.
    fn top_up(&self, server: &Server, round: usize, held: usize, messages: usize) {
        match self {
            Store::Maildir(data) => {
                let inbox = folder_dir(data, USER, "INBOX");
                for i in held..messages {
                    let id = format!("r{round}.m{i}@crash.test");
                    let text = format!(
                        "From: a@remote.test\r\nTo: {USER}\r\nSubject: {id}\r\nMessage-ID: <{id}>\r\n\r\nbody {id}\r\n"
                    );
                    let name = format!("1700{round:03}{i:03}.M{i}P{round}.crash.test,S={}", text.len());
                    drop_into_new(&inbox, &name, &text);
                }
            }
            Store::Pg(_) => {
                let (count, tag) = ((messages - held).to_string(), format!("r{round}"));
                run_imap_client(server, USER, PASSWORD, &["append", &count, &tag]);
            }
        }
    }

    /// After a kill: the maildrop lease of the dead process (PostgreSQL: a row in `leases`,
    /// so that one session at a time holds the maildrop across replicas) blocks the user
    /// until it expires, two minutes after its last renewal; the test expires it now.
    fn expire_dead_lease(&self) {
        if let Store::Pg(url) = self {
            psql(url, &format!("UPDATE leases SET until = now() - interval '1 second' WHERE name = 'pop3:{USER}'"));
        }
    }

    /// What the store holds is what POP3 listed: the files of the Maildir (and nothing in
    /// `tmp/` but the server's own retained files), or the live rows of INBOX.
    fn assert_holds(&self, ctx: &str, listed: &Maildrop) {
        match self {
            Store::Maildir(data) => {
                let (files, in_tmp) = maildir_ids(&folder_dir(data, USER, "INBOX"));
                let mut ids: Vec<String> = listed.values().cloned().collect();
                ids.sort();
                assert_eq!(ids, files, "{ctx}: what POP3 lists differs from the files");
                let debris: Vec<&String> = in_tmp.iter().filter(|n| !n.starts_with("mailroom-expunged.")).collect();
                assert!(debris.is_empty(), "{ctx}: tmp/ holds {debris:?}");
            }
            Store::Pg(url) => {
                let rows = psql(
                    url,
                    "SELECT m.uidl FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id \
                     JOIN accounts a ON a.id = b.account_id \
                     WHERE a.local = 'alice' AND b.name = 'INBOX' AND m.expunged_modseq IS NULL ORDER BY m.uidl",
                );
                let uidls: Vec<&str> = rows.lines().collect();
                let listed: Vec<&str> = listed.keys().map(String::as_str).collect();
                assert_eq!(listed, uidls, "{ctx}: what POP3 lists differs from the live rows");
            }
        }
    }
}

/// What the client said: the UIDLs it got +OK to DELE for, and whether QUIT got +OK.
struct Session {
    deleted: Vec<String>,
    quit_ok: bool,
}

/// Runs crash_pop3.py `mode` and kills the server `delay` after the client printed
/// `trigger` (`quit` or `go`).
fn run_and_kill(server: &mut Server, mode: &str, trigger: &str, delay: Duration) -> Session {
    let mut child = Command::new("python3")
        .arg(format!("{}/tests/clients/crash_pop3.py", env!("CARGO_MANIFEST_DIR")))
        .args([&server.port("pop3").to_string(), USER, PASSWORD, mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut session = Session { deleted: Vec::new(), quit_ok: false };
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        match line.split_once(' ') {
            Some(("dele", uidl)) => session.deleted.push(uidl.to_string()),
            _ if line == "quitok" => session.quit_ok = true,
            _ if line == "cut" || line == "quit" || line == "go" => {}
            _ => panic!("client said {line:?}"),
        }
        if line == trigger {
            std::thread::sleep(delay);
            server.kill9();
            killed = true;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && killed, "{mode}: client: {}", String::from_utf8_lossy(&out.stderr));
    session
}

#[test]
fn kill_9_around_pop3_quit_deletes_exactly_what_was_committed() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    rounds(&data, &Store::Maildir(&data), &[], &MAILDIR_PLAN);
}

/// The same on the PostgreSQL store, where the UPDATE state is one transaction: never cut
/// half-way.
#[test]
fn kill_9_around_pop3_quit_on_postgresql_deletes_exactly_what_was_committed() {
    if !have_tool("python3") {
        return;
    }
    let Some(url) = test_pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    rounds(&tmp.path().join("data"), &Store::Pg(&url), &[("MAILROOM_STORE", &url)], &PG_PLAN);
}

fn rounds(data: &Path, store: &Store, more_env: &[(&str, &str)], plan: &Plan) {
    let started = Instant::now();
    let mut env = env_listening(data, &["POP3", "IMAP"]);
    env.push(("MAILROOM_ACCOUNTS".into(), format!("{USER}:{{PLAIN}}{PASSWORD}")));
    env.extend(more_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let start = || Server::start_ready(&env, data, Duration::from_secs(60));
    let mut server = start();

    let rounds = plan
        .quit_delays_ms
        .iter()
        .map(|d| ("dele-quit", "quit", d))
        .chain(plan.retr_delays_ms.iter().map(|d| ("retr-dele", "go", d)));
    let mut held = 0;
    let (mut committed, mut cut_after_quit, mut partly) = (0, 0, 0);
    for (i, (mode, trigger, delay)) in rounds.enumerate() {
        let round = i + 1;
        let ctx = format!("round {round} ({mode}, {delay} ms)");
        store.top_up(&server, round, held, plan.messages);
        let before = maildrop(&ctx, &server);
        assert_eq!(before.len(), plan.messages, "{ctx}: after the top-up");
        let session = run_and_kill(&mut server, mode, trigger, Duration::from_millis(*delay));
        store.expire_dead_lease();
        server = start();
        let after = maildrop(&ctx, &server);

        for (uidl, id) in &after {
            assert_eq!(before.get(uidl), Some(id), "{ctx}: UIDL {uidl} did not name {id} before");
        }
        let kept: Maildrop =
            before.iter().filter(|(u, _)| !session.deleted.contains(u)).map(|(u, i)| (u.clone(), i.clone())).collect();
        let lost: Vec<&String> = kept.keys().filter(|u| !after.contains_key(*u)).collect();
        assert!(lost.is_empty(), "{ctx}: never DELEd but gone: {lost:?}");
        if session.quit_ok {
            committed += 1;
            assert_eq!(after, kept, "{ctx}: QUIT said +OK but not every DELEd message is gone");
        } else if trigger == "quit" {
            cut_after_quit += 1;
        }
        if after != kept && after != before {
            partly += 1;
            // One transaction in the database: all of the UPDATE or nothing.
            assert!(matches!(store, Store::Maildir(_)), "{ctx}: the UPDATE state was cut half-way on PostgreSQL");
        }
        store.assert_holds(&ctx, &after);
        held = after.len();
    }
    eprintln!(
        "{committed} QUITs answered +OK, {cut_after_quit} cut after the client sent QUIT, {partly} updates cut half-way, in {:?}",
        started.elapsed()
    );
    assert!(committed > 0 && cut_after_quit > 0, "the kills never landed on both sides of the QUIT's +OK");
}
