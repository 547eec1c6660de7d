//! "Durable before acknowledged", tested the blunt way: the server runs in a child process
//! (this test binary re-executed with a filter), 50 sessions send mail to it, the child is
//! killed with SIGKILL mid-load, and every message that got its `250` must be complete in
//! the Maildir. Then the server restarts on the same data dir and takes mail again.
//!
//! SIGKILL loses the process, not the page cache, so this proves the ordering (reply only
//! after the rename into `new/`), not the fsyncs; those are the store's tests.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::tests::{Options, start};

const CHILD_ENV: &str = "MAILROOM_SMTP_DURABILITY_CHILD_DIR";
const CHILD_TEST: &str = "smtp::server::durability_tests::durability_server_child";

/// The server side, run only as the child process (ignored in normal runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_loses_no_acknowledged_message"]
async fn durability_server_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let h = start(Options { data_dir: Some(dir.clone()), tls: false, ..Options::default() }).await;
    let tmp = dir.join("port.tmp");
    let _ = std::fs::write(&tmp, h.addr.port().to_string());
    let _ = std::fs::rename(&tmp, dir.join("port"));
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the child server on `dir` and wait for its port.
async fn spawn_server(dir: &Path) -> (Server, u16) {
    let _ = std::fs::remove_file(dir.join("port"));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let child = Process::new(exe)
        .args(["--exact", CHILD_TEST, "--ignored", "--nocapture"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let server = Server(child);
    for _ in 0..300 {
        if let Ok(p) = std::fs::read_to_string(dir.join("port"))
            && let Ok(port) = p.trim().parse::<u16>()
        {
            return (server, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("child server did not start");
}

/// One reply (last line), or `None` when the connection is gone.
async fn reply(r: &mut BufReader<TcpStream>) -> Option<String> {
    loop {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(20), r.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Some(line.trim_end().to_string());
        }
    }
}

async fn say(r: &mut BufReader<TcpStream>, bytes: &[u8]) -> Option<String> {
    r.get_mut().write_all(bytes).await.ok()?;
    reply(r).await
}

/// Send messages until the connection dies; record the subjects that got a 250.
async fn sender(port: u16, session: usize, acked: Arc<Mutex<Vec<String>>>) {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let mut r = BufReader::new(s);
    if reply(&mut r).await.is_none() || say(&mut r, b"EHLO load.example\r\n").await.is_none() {
        return;
    }
    for n in 0.. {
        let subject = format!("s{session}-m{n}");
        let batch = b"MAIL FROM:<bob@remote.example>\r\nRCPT TO:<alice@ours.example>\r\nDATA\r\n";
        if r.get_mut().write_all(batch).await.is_err() {
            return;
        }
        for _ in 0..3 {
            if reply(&mut r).await.is_none() {
                return;
            }
        }
        let body = format!("Subject: {subject}\r\n\r\n{}\r\nend\r\n.\r\n", "x".repeat(2000));
        match say(&mut r, body.as_bytes()).await {
            Some(l) if l.starts_with("250 ") => {
                if let Ok(mut a) = acked.lock() {
                    a.push(subject);
                }
            }
            _ => return,
        }
    }
}

/// Subjects of complete messages in alice's Maildir (new/ and cur/).
fn delivered(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let dir = root.join("mail/ours.example/alice").join(sub);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()).into_owned();
            assert!(text.ends_with("\r\nend\r\n"), "incomplete file in {sub}/: {:?}", e.path());
            if let Some(line) = text.lines().find(|l| l.starts_with("Subject: ")) {
                out.push(line["Subject: ".len()..].to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_message() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().to_path_buf();
    let (server, port) = spawn_server(&root).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..50).map(|i| tokio::spawn(sender(port, i, acked.clone()))).collect();
    // Kill in the middle of the load.
    for _ in 0..600 {
        if acked.lock().map(|a| a.len()).unwrap_or(0) >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
    for t in tasks {
        let _ = t.await;
    }
    let acked: Vec<String> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(acked.len() >= 300, "load did not get going: {} acknowledged", acked.len());
    let on_disk = delivered(&root);
    let unique: HashSet<&String> = on_disk.iter().collect();
    assert_eq!(unique.len(), on_disk.len(), "a message was stored twice");
    let missing: Vec<&String> = acked.iter().filter(|s| !unique.contains(s)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    eprintln!("{} acknowledged, {} on disk after kill -9", acked.len(), on_disk.len());

    // Restart on the same data dir: mail is accepted again, nothing old disappeared.
    let (_server, port) = spawn_server(&root).await;
    let acked_again = Arc::new(Mutex::new(Vec::new()));
    let probe = tokio::spawn(sender(port, 999, acked_again.clone()));
    for _ in 0..200 {
        if acked_again.lock().map(|a| !a.is_empty()).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    probe.abort();
    assert!(acked_again.lock().map(|a| !a.is_empty()).unwrap_or(false), "restarted server took no mail");
    let after = delivered(&root);
    assert!(after.len() > on_disk.len());
    assert!(on_disk.iter().all(|s| after.contains(s)));
}
