//! A full disk, end to end: the real server on a data dir that is its own 8 MiB tmpfs, a
//! filler file eating the space, Python's smtplib and imaplib as clients.
//!
//! What must hold: a message that cannot be stored is answered `452 4.3.1` (SMTP) or
//! `NO [OVERQUOTA]` (IMAP), never accepted and never left half-written; below
//! `MAILROOM_DISK_MIN_FREE` new transactions are refused at MAIL, `/readyz` fails and
//! `mailroom_disk_free_bytes` shows it; a queued item survives; and once the filler is
//! gone everything works again without a restart.
//!
//! Mounting needs root (as in CI). Elsewhere the test is skipped, and fails under
//! `CI=true`.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, env_listening, http_get, in_ci, missing, run, run_client};

const MIB: u64 = 1024 * 1024;

/// A tmpfs mounted for the test, unmounted (lazily, in case a process still holds it)
/// when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(!in_ci(), "mounting a tmpfs is required under CI=true: {why}");
            missing(&format!("permission to mount a tmpfs ({})", why.trim()));
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wait_for<T>(what: &str, timeout: Duration, server: &Server, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of an unlabelled gauge in `/metrics`.
fn gauge(server: &Server, name: &str) -> Option<u64> {
    let (_, body) = http_get(server.metrics.unwrap(), "/metrics").ok()?;
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).map(|v| v as u64)
}

/// Files under `dir` (recursively) whose path contains `part`.
fn files_under(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p, part));
        } else if p.to_string_lossy().contains(part) {
            out.push(p);
        }
    }
    out
}

/// Every message file of alice's INBOX (new/ and cur/) holding `needle`, and everything in
/// its tmp/ and in the spool: a refused message must leave none of them.
fn traces(data: &Path, needle: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let inbox = data.join("mail/example.com/alice");
    let mut stored = Vec::new();
    for sub in ["new", "cur"] {
        for f in files_under(&inbox.join(sub), "") {
            if std::fs::read(&f).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                stored.push(f);
            }
        }
    }
    let mut partial = files_under(&inbox.join("tmp"), "");
    partial.extend(files_under(&data.join("state/spool"), ""));
    (stored, partial)
}

fn smtp(server: &Server, rcpt: &str, size: u64, subject: &str) -> String {
    let port = server.port("smtp").to_string();
    run_client("disk_full_probe.py", &["smtp".into(), port, rcpt.into(), size.to_string(), subject.into()], server)
        .trim()
        .to_string()
}

fn append(server: &Server, size: u64, subject: &str) -> String {
    let port = server.port("imap").to_string();
    let args = ["imap", &port, "alice@example.com", "wonderland", &size.to_string(), subject].map(String::from);
    run_client("disk_full_probe.py", &args, server).trim().to_string()
}

/// Grow `filler` until at most `leave` bytes are free on its file system (0: until the
/// file system refuses more).
fn fill(filler: &Path, leave: u64) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        let (free, _) = mailroom::disk::sample(filler.parent().unwrap()).unwrap();
        if free <= leave {
            return;
        }
        let n = usize::try_from((free - leave).min(chunk.len() as u64)).unwrap();
        match f.write_all(&chunk[..n]) {
            Ok(()) => {}
            Err(e) if mailroom::disk::is_full(&e) => return,
            Err(e) => panic!("filling {}: {e}", filler.display()),
        }
    }
}

fn queue_list(env: &[(String, String)]) -> String {
    String::from_utf8_lossy(&run(&["queue", "list"], env, "").stdout).into_owned()
}

#[test]
fn a_full_disk_refuses_mail_cleanly_and_recovers_without_a_restart() {
    if !common::have_tool("mount") || !common::have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(&tmp.path().join("fs"), "8m") else {
        return;
    };
    let fs = tmp.path().join("fs");
    let data = fs.join("data");
    let filler = fs.join("filler");
    let mut env = env_listening(&data, &["SMTP", "IMAP"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    // Forwarded mail is queued for a relay that refuses connections: the item stays.
    env.push(("MAILROOM_ALIASES".into(), "fwd@example.com:bob@remote.test".into()));
    env.push(("MAILROOM_RELAY_HOST".into(), format!("smtp+insecure://127.0.0.1:{}", common::free_port())));
    env.push(("MAILROOM_DISK_MIN_FREE".into(), "1M".into()));
    let server = Server::start_ready(&env, &data, Duration::from_secs(30));

    assert_eq!(smtp(&server, "alice@example.com", 2000, "before"), "250");
    assert_eq!(smtp(&server, "fwd@example.com", 2000, "queued"), "250");
    let item = wait_for("the forwarded copy in the queue", Duration::from_secs(10), &server, || {
        let list = queue_list(&env);
        list.contains("bob@remote.test").then_some(list)
    });
    let total = gauge(&server, "mailroom_disk_size_bytes").expect("total gauge");
    assert!((7 * MIB..=9 * MIB).contains(&total), "the tmpfs is 8 MiB: {total}");

    // 3 MiB free, above the threshold: the transaction starts, the 5 MiB message cannot be
    // stored, and nothing of it stays behind.
    fill(&filler, 3 * MIB);
    wait_for("the gauge to see the filler", Duration::from_secs(10), &server, || {
        gauge(&server, "mailroom_disk_free_bytes").filter(|f| *f <= 3 * MIB)
    });
    let reply = smtp(&server, "alice@example.com", 5 * MIB, "toobig-smtp");
    assert!(reply.starts_with("452 4.3.1"), "SMTP: {reply}");
    let reply = append(&server, 5 * MIB, "toobig-imap");
    assert!(reply.starts_with("NO") && reply.contains("[OVERQUOTA]"), "IMAP APPEND: {reply}");
    for subject in ["toobig-smtp", "toobig-imap"] {
        let (stored, partial) = traces(&data, subject);
        assert!(stored.is_empty() && partial.is_empty(), "{subject}: stored {stored:?}, left {partial:?}");
    }
    assert_eq!(http_get(server.metrics.unwrap(), "/readyz").unwrap().0, 200, "still above the threshold");

    // Full: refused at MAIL, not ready, the gauge says so; a small APPEND finds no room.
    fill(&filler, 0);
    let (code, body) = wait_for("/readyz to fail", Duration::from_secs(10), &server, || {
        http_get(server.metrics.unwrap(), "/readyz").ok().filter(|(c, _)| *c != 200)
    });
    assert!(code == 503 && body.contains("MAILROOM_DISK_MIN_FREE"), "{code} {body}");
    assert!(gauge(&server, "mailroom_disk_free_bytes").unwrap() < MIB);
    let reply = smtp(&server, "alice@example.com", 2000, "while-full");
    assert!(reply.starts_with("452 4.3.1"), "MAIL while full: {reply}");
    let reply = append(&server, 200_000, "while-full-imap");
    assert!(reply.starts_with("NO") && reply.contains("[OVERQUOTA]"), "IMAP APPEND while full: {reply}");
    for subject in ["while-full", "while-full-imap"] {
        let (stored, partial) = traces(&data, subject);
        assert!(stored.is_empty() && partial.is_empty(), "{subject}: stored {stored:?}, left {partial:?}");
    }
    // Both SMTP refusals are our own trouble in the transaction metrics.
    let (_, metrics) = http_get(server.metrics.unwrap(), "/metrics").unwrap();
    let refused = "mailroom_smtp_transactions_total{outcome=\"refused\",reason=\"local\",service=\"smtp\"} 2";
    assert!(metrics.contains(refused), "{metrics}");
    // A delivery attempt while full cannot write its result back: the item must stay.
    let before = server.log().matches("stage=\"deferred\"").count();
    // The retry itself cannot be recorded (the operator is told), but the attempt runs.
    let _ = run(&["queue", "retry"], &env, "");
    wait_for("a delivery attempt while full", Duration::from_secs(20), &server, || {
        (server.log().matches("stage=\"deferred\"").count() > before).then_some(())
    });
    assert!(queue_list(&env).contains("bob@remote.test"), "the queued item survives a full disk");

    // Space returns: ready again and mail flows, without a restart.
    std::fs::remove_file(&filler).unwrap();
    wait_for("/readyz to recover", Duration::from_secs(10), &server, || {
        http_get(server.metrics.unwrap(), "/readyz").ok().filter(|(c, _)| *c == 200)
    });
    assert_eq!(smtp(&server, "alice@example.com", 2 * MIB, "after"), "250");
    assert!(append(&server, 2000, "after-imap").starts_with("OK"));
    assert_eq!(traces(&data, "after").0.len(), 2, "both messages stored after recovery");
    assert_eq!(traces(&data, "before").0.len(), 1);
    let list = queue_list(&env);
    let id = item.split_whitespace().next().unwrap();
    assert!(list.contains(id) && list.contains("bob@remote.test"), "same item still queued:\n{list}");
}
