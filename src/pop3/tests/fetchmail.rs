//! fetchmail (a client nobody here wrote) pulling over implicit TLS into a file MDA: the
//! delivered files must be byte-for-byte the stored messages, and a `keep` + UIDL run must
//! find nothing new the second time (stable UIDLs). Skipped without fetchmail unless CI=true.

use std::path::Path;
use std::sync::Arc;

use super::harness::{MemoryBackend, TestServer, start, test_limits, tool_available};
use crate::pop3::backend::Pop3Backend;

const ALICE: &str = "alice@example.com";

pub const MESSAGES: [&[u8]; 3] = [
    b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nlast line\r\n",
    b"Subject: plain\r\n\r\nhello\r\n",
    b"Subject: trailing blank lines\r\n\r\nbody\r\n\r\n\r\n",
];

/// Run fetchmail once with the given extra poll options; returns its exit code.
/// `server_opts` go on the poll line (`uidl`), `user_opts` after the user (`keep`, `fetchall`).
pub async fn fetchmail<B: Pop3Backend>(
    server: &TestServer<B>,
    home: &Path,
    out: &Path,
    server_opts: &str,
    user_opts: &str,
) -> i32 {
    use std::os::unix::fs::PermissionsExt;
    let rc = home.join("fetchmailrc");
    let config = format!(
        "set no bouncemail\nset invisible\n\
         poll 127.0.0.1 service {port} protocol pop3 timeout 300 {server_opts}\n\
         user \"{ALICE}\" there with password \"pw\" is \"alice\" here\n\
         ssl sslcertck sslcertfile \"{ca}\" sslcommonname \"localhost\" sslproto \"TLS1.2+\"\n\
         no stripcr no forcecr {user_opts}\n\
         mda \"sh -c 'cat > {out}/msg-$(ls {out} | wc -l)'\"\n",
        port = server.tls.port(),
        ca = server.ca_file.display(),
        out = out.display(),
    );
    std::fs::write(&rc, config).expect("write rc");
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod rc");
    let output = tokio::process::Command::new("fetchmail")
        .arg("-f")
        .arg(&rc)
        .arg("--nosyslog")
        .arg("--nodetach")
        .arg("-i")
        .arg(home.join("idfile"))
        .arg("--pidfile")
        .arg(home.join("pid"))
        .env("HOME", home)
        .env("FETCHMAILHOME", home)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run fetchmail");
    let code = output.status.code().unwrap_or(-1);
    if code > 1 {
        panic!(
            "fetchmail exit {code}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    code
}

pub fn delivered(out: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> =
        std::fs::read_dir(out).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap_or_default()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_over_995_delivers_exact_bytes_and_deletes() {
    if !tool_available("fetchmail") {
        return;
    }
    let backend = MemoryBackend::new(&[(ALICE, "pw")]);
    for m in MESSAGES {
        backend.deliver(ALICE, m);
    }
    let server = start(Arc::new(backend), test_limits()).await;
    let home = server.dir.path().join("home");
    let out = server.dir.path().join("out");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::create_dir_all(&out).expect("out");

    assert_eq!(fetchmail(&server, &home, &out, "", "fetchall").await, 0);
    let got = delivered(&out);
    assert_eq!(got.len(), 3);
    for (got, want) in got.iter().zip(MESSAGES) {
        assert!(got == want, "got {:?}\nwant {:?}", String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    }
    // fetchmail deleted what it fetched (QUIT in TRANSACTION applied the DELEs).
    assert!(server.backend.uids(ALICE).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_keep_with_uidl_downloads_each_message_once() {
    if !tool_available("fetchmail") {
        return;
    }
    let backend = MemoryBackend::new(&[(ALICE, "pw")]);
    backend.deliver(ALICE, MESSAGES[0]);
    let server = start(Arc::new(backend), test_limits()).await;
    let home = server.dir.path().join("home");
    let out = server.dir.path().join("out");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::create_dir_all(&out).expect("out");

    assert_eq!(fetchmail(&server, &home, &out, "uidl", "keep").await, 0);
    assert_eq!(delivered(&out).len(), 1);
    // Same UIDL on the next connection: nothing new to fetch.
    assert_eq!(fetchmail(&server, &home, &out, "uidl", "keep").await, 1);
    assert_eq!(delivered(&out).len(), 1);
    server.backend.deliver(ALICE, MESSAGES[1]);
    assert_eq!(fetchmail(&server, &home, &out, "uidl", "keep").await, 0);
    let got = delivered(&out);
    assert_eq!(got.len(), 2);
    assert!(got[1] == MESSAGES[1]);
    assert_eq!(server.backend.uids(ALICE).len(), 2);
}
