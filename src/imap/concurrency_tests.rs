//! Many sessions on the same few mailboxes at once, each over its own implicit-TLS
//! connection (port 993 style, a fresh self-signed certificate the clients trust), doing
//! random SELECT, FETCH, STORE, EXPUNGE, APPEND, COPY, MOVE and IDLE, while every response
//! is checked against the session's own model of its view (RFC 9051 7.5.1 / RFC 3501
//! 7.4.1, RFC 2180 4): EXISTS never shrinks the view (only EXPUNGE does), sequence numbers
//! stay in range, UIDs ascend with the sequence numbers, flags once seen do not vanish
//! (flags are only ever added here), no message shows up again after its EXPUNGE, every
//! command ends OK and no connection drops. Seeds are fixed; the checks are invariants that
//! hold under every interleaving the scheduler picks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::test_support::*;

const MAILBOXES: [&str; 3] = ["INBOX", "Shared1", "Shared2"];

/// One session's view of its selected mailbox: `uids[seq - 1]`, `None` until learnt.
#[derive(Default)]
struct View {
    uids: Vec<Option<u32>>,
    /// Flags seen per UID (without `\Recent`), which only ever grow here.
    flags: BTreeMap<u32, BTreeSet<String>>,
    /// UIDs this session was told are expunged.
    expunged: HashSet<u32>,
}

struct Checker {
    id: usize,
    view: View,
    errors: Vec<String>,
}

impl Checker {
    fn err(&mut self, what: String) {
        if self.errors.len() < 20 {
            self.errors.push(format!("client {}: {what}", self.id));
        }
    }

    /// Check one untagged line and apply it to the view.
    fn untagged(&mut self, line: &str) {
        let mut words = line.splitn(4, ' ');
        let (Some("*"), Some(n), Some(kind)) = (words.next(), words.next(), words.next()) else {
            return;
        };
        let Ok(n) = n.parse::<usize>() else {
            return;
        };
        let len = self.view.uids.len();
        match kind {
            "EXISTS" if n < len => self.err(format!("EXISTS shrank from {len} to {n}")),
            "EXISTS" => self.view.uids.resize(n, None),
            "RECENT" if n > len => self.err(format!("RECENT {n} > EXISTS {len}")),
            "EXPUNGE" if n == 0 || n > len => self.err(format!("EXPUNGE {n} outside 1..={len}")),
            "EXPUNGE" => {
                if let Some(uid) = self.view.uids.remove(n - 1) {
                    self.view.expunged.insert(uid);
                    self.view.flags.remove(&uid);
                }
            }
            "FETCH" if n == 0 || n > len => self.err(format!("FETCH {n} outside 1..={len}: {line}")),
            "FETCH" => self.fetch(n, line),
            _ => {}
        }
    }

    fn fetch(&mut self, seq: usize, line: &str) {
        let uid = field(line, "UID ").and_then(|v| v.split([' ', ')']).next()?.parse::<u32>().ok());
        let uid = match (uid, self.view.uids[seq - 1]) {
            (Some(u), Some(known)) if u != known => return self.err(format!("seq {seq} was UID {known}, now {u}")),
            (Some(u), _) => u,
            (None, Some(known)) => known,
            (None, None) => return,
        };
        if self.view.expunged.contains(&uid) {
            return self.err(format!("UID {uid} seen after its EXPUNGE: {line}"));
        }
        self.view.uids[seq - 1] = Some(uid);
        let before = self.view.uids[..seq - 1].iter().rev().find_map(|u| *u);
        let after = self.view.uids[seq..].iter().find_map(|u| *u);
        if before.is_some_and(|b| b >= uid) || after.is_some_and(|a| a <= uid) {
            self.err(format!("UIDs not ascending around seq {seq} (UID {uid}): {before:?} {after:?}"));
        }
        if let Some(list) = field(line, "FLAGS (").and_then(|v| v.split(')').next()) {
            let now: BTreeSet<String> =
                list.split(' ').filter(|f| !f.is_empty() && *f != "\\Recent").map(str::to_string).collect();
            let seen = self.view.flags.entry(uid).or_default();
            if let Some(lost) = seen.difference(&now).next() {
                let lost = lost.clone();
                return self.err(format!("UID {uid} lost flag {lost}: {line}"));
            }
            *seen = now;
        }
    }
}

/// The text after `key` in a FETCH line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.find(key).map(|i| &line[i + key.len()..])
}

/// Run a command; check and apply the untagged lines; the tagged status must be OK.
async fn run(c: &mut Client, k: &mut Checker, command: &str) -> Vec<String> {
    let lines = c.cmd(command).await;
    finish(k, command, &lines);
    lines
}

fn finish(k: &mut Checker, command: &str, lines: &[String]) {
    for l in &lines[..lines.len().saturating_sub(1)] {
        k.untagged(l);
    }
    let last = lines.last().map(String::as_str).unwrap_or("");
    if last == "<EOF>" {
        k.err(format!("disconnected after {command}"));
    } else if last.split(' ').nth(1) != Some("OK") {
        k.err(format!("{command} -> {last}"));
    }
}

async fn select(c: &mut Client, k: &mut Checker, mailbox: &str) {
    k.view = View::default();
    run(c, k, &format!("SELECT {mailbox}")).await;
    if !k.view.uids.is_empty() {
        run(c, k, "FETCH 1:* (UID FLAGS)").await;
    }
}

/// The messages a STORE did not change must have been expunged by another session: a
/// NOOP reports it.
async fn settle(c: &mut Client, k: &mut Checker, unstored: &mut Vec<(u32, &str)>) {
    run(c, k, "NOOP").await;
    for (uid, flag) in std::mem::take(unstored) {
        if !k.view.expunged.contains(&uid) {
            k.err(format!("STORE +FLAGS ({flag}) on UID {uid} answered without it, and it was not expunged"));
        }
    }
}

/// One client's random session of `ops` commands, over implicit TLS to a server whose
/// certificate is `pem`.
async fn client(srv_addr: std::net::SocketAddr, pem: Arc<str>, id: usize, ops: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + id as u64);
    let mut c = Client::connect_tls(srv_addr, &pem).await;
    let mut k = Checker { id, view: View::default(), errors: Vec::new() };
    run(&mut c, &mut k, &format!("LOGIN {USER} {PASS}")).await;
    select(&mut c, &mut k, MAILBOXES[id % MAILBOXES.len()]).await;
    let mut unstored: Vec<(u32, &str)> = Vec::new();
    for _ in 0..ops {
        let len = k.view.uids.len();
        let seq = if len > 0 { rng.random_range(1..=len) } else { 0 };
        let other = MAILBOXES[rng.random_range(0..MAILBOXES.len())];
        match rng.random_range(0..100) {
            0..8 => {
                settle(&mut c, &mut k, &mut unstored).await;
                select(&mut c, &mut k, other).await;
            }
            8..30 if seq > 0 => {
                let items =
                    ["(UID FLAGS)", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "(UID RFC822.SIZE BODY.PEEK[])"]
                        [rng.random_range(0..3)];
                run(&mut c, &mut k, &format!("FETCH {seq} {items}")).await;
            }
            30..38 => {
                if len > 0 {
                    run(&mut c, &mut k, "FETCH 1:* (UID FLAGS)").await;
                }
            }
            38..52 if seq > 0 => {
                let flag = ["\\Flagged", "\\Seen", "\\Answered", "$k1", "$k2"][rng.random_range(0..5)];
                let lines = run(&mut c, &mut k, &format!("STORE {seq} +FLAGS ({flag})")).await;
                // The answer (the last FETCH for it) carries the flag just stored, unless
                // another session expunged the message first (RFC 2180 4.2.1: then it is
                // reported as expunged before this session ends).
                let prefix = format!("* {seq} FETCH ");
                let answered = lines.iter().rev().find(|l| l.starts_with(&prefix)).is_some_and(|l| l.contains(flag));
                if let (false, Some(Some(uid))) = (answered, k.view.uids.get(seq - 1)) {
                    unstored.push((*uid, flag));
                }
            }
            52..62 if seq > 0 => {
                run(&mut c, &mut k, &format!("STORE {seq} +FLAGS.SILENT (\\Deleted)")).await;
                run(&mut c, &mut k, "EXPUNGE").await;
            }
            62..74 => {
                let msg = format!("Subject: stress {id}\r\n\r\nbody {}\r\n", rng.random::<u32>());
                run(&mut c, &mut k, &format!("APPEND {other} {{{}+}}\r\n{msg}", msg.len())).await;
            }
            74..82 if seq > 0 => {
                run(&mut c, &mut k, &format!("COPY {seq} {other}")).await;
            }
            82..90 if seq > 0 => {
                run(&mut c, &mut k, &format!("MOVE {seq} {other}")).await;
            }
            90..96 => {
                let tag = c.next_tag();
                c.send(&format!("{tag} IDLE\r\n")).await;
                let mut lines = Vec::new();
                loop {
                    let l = c.line().await;
                    if l.is_empty() || l.starts_with(&format!("{tag} ")) {
                        lines.push(if l.is_empty() { "<EOF>".into() } else { l });
                        break;
                    }
                    if l.starts_with('+') {
                        c.send("DONE\r\n").await;
                        continue;
                    }
                    lines.push(l);
                }
                finish(&mut k, "IDLE", &lines);
            }
            _ => {
                run(&mut c, &mut k, "NOOP").await;
            }
        }
    }
    settle(&mut c, &mut k, &mut unstored).await;
    let lines = c.cmd("LOGOUT").await;
    if !lines.last().is_some_and(|l| l.contains("OK LOGOUT")) {
        k.err(format!("LOGOUT -> {lines:?}"));
    }
    k.errors
}

async fn stress(clients: usize, ops: usize) {
    let (acceptor, pem) = tls_acceptor();
    let pem: Arc<str> = pem.into();
    let srv = start_full(
        |ctx| {
            ctx.limits.max_connections_per_user_ip = 100;
            ctx.tls = Some(acceptor);
        },
        true,
    )
    .await;
    let mut admin = Client::connect_tls(srv.addr, &pem).await;
    admin.ok(&format!("LOGIN {USER} {PASS}")).await;
    admin.ok("CREATE Shared1").await;
    admin.ok("CREATE Shared2").await;
    for m in MAILBOXES {
        for _ in 0..4 {
            srv.deliver(m, SIMPLE).await;
            srv.deliver(m, MULTIPART).await;
        }
    }
    let tasks: Vec<_> = (0..clients).map(|id| tokio::spawn(client(srv.addr, pem.clone(), id, ops))).collect();
    let mut errors = Vec::new();
    for (id, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(e) => errors.extend(e),
            Err(e) => errors.push(format!("client {id} panicked: {e}")),
        }
    }
    assert!(errors.is_empty(), "{} protocol errors:\n{}", errors.len(), errors.join("\n"));
    // Every session has logged out (its view went before the tagged OK): every expunged
    // file kept for a view has been released.
    admin.ok("LOGOUT").await;
    assert_eq!(super::expunge_tests::retained(&srv), 0);
}

/// 30 TLS sessions on three shared mailboxes: 0 errors, 0 disconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_stay_consistent() {
    stress(30, 200).await;
}

/// The long run: 50 TLS sessions, many more commands each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long stress run; cargo test --lib concurrent_sessions_long -- --ignored"]
async fn concurrent_sessions_long() {
    stress(50, 400).await;
}
