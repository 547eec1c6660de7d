//! Interoperability with mbsync (isync), a real two-way sync client: server -> local Maildir,
//! then a local new message, a local flag change and a local deletion back to the server,
//! over STARTTLS with the test certificate pinned. Skipped when mbsync is missing, unless
//! CI=true.

use std::path::Path;

use super::test_support::*;

fn mbsync_available() -> bool {
    let ok =
        std::process::Command::new("mbsync").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("mbsync is required in CI");
    }
    ok
}

async fn run_mbsync(config: &Path) {
    let config = config.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("mbsync").arg("-c").arg(&config).arg("-a").output()
    })
    .await
    .expect("join")
    .expect("mbsync runs");
    assert!(
        out.status.success(),
        "mbsync failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            v.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_two_way_sync() {
    if !mbsync_available() {
        eprintln!("mbsync missing: skipped");
        return;
    }
    let (acceptor, pem) = tls_acceptor();
    let srv = start_with(|ctx| {
        ctx.limits.allow_insecure_auth = false;
        ctx.tls = Some(acceptor);
    })
    .await;
    srv.deliver("INBOX", SIMPLE).await;
    srv.deliver("INBOX", MULTIPART).await;
    srv.deliver("Sent", SIMPLE).await;

    let work = tempfile::tempdir().expect("tempdir");
    let cert = work.path().join("cert.pem");
    std::fs::write(&cert, pem).expect("cert");
    let local = work.path().join("mail");
    std::fs::create_dir_all(&local).expect("mail dir");
    let config = work.path().join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount test\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass {PASS}\n\
             TLSType STARTTLS\nCertificateFile {cert}\n\n\
             IMAPStore remote\nAccount test\n\n\
             MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n\
             Expunge Both\nSyncState *\n",
            port = srv.addr.port(),
            cert = cert.display(),
            local = local.display(),
        )
        .replace("TLSType", tls_keyword()),
    )
    .expect("config");

    // 1. server -> local
    run_mbsync(&config).await;
    let inbox = local.join("INBOX");
    assert_eq!(files_in(&inbox).len(), 2, "{:?}", files_in(&inbox));
    assert_eq!(files_in(&local.join("Sent")).len(), 1);

    // 2. local changes -> server: a new message, \Seen on one, delete the other
    std::fs::write(
        inbox.join("new").join("1700000000.local1.host"),
        "From: me@example.org\r\nSubject: written locally\r\n\r\nhi\r\n",
    )
    .expect("new local message");
    let existing = files_in(&inbox);
    let seen = &existing[0];
    let seen_name = seen.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let base = seen_name.split(":2,").next().unwrap_or("").to_string();
    std::fs::rename(seen, inbox.join("cur").join(format!("{base}:2,S"))).expect("flag");
    let deleted = &existing[1];
    let del_name = deleted.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let del_base = del_name.split(":2,").next().unwrap_or("").to_string();
    std::fs::rename(deleted, inbox.join("cur").join(format!("{del_base}:2,T"))).expect("trash");
    run_mbsync(&config).await;

    let srv_view = srv.store.open_mailbox(&owner(), "INBOX").await.expect("open").sync().await.expect("sync");
    // 2 delivered + 1 written locally - 1 deleted locally
    assert_eq!(srv_view.messages.len(), 2, "{:?}", srv_view.messages);
    let new_uid = srv_view.messages.iter().map(|m| m.uid).max().unwrap_or(0);
    assert_eq!(new_uid, 3, "the local message was appended as UID 3");
    assert!(srv_view.messages.iter().any(|m| m.flags.contains(&crate::store::Flag::Seen)), "{:?}", srv_view.messages);

    // 3. a second run changes nothing
    run_mbsync(&config).await;
    assert_eq!(files_in(&inbox).len(), 2);
}

/// isync 1.4 spells it `SSLType`, 1.5 `TLSType`.
fn tls_keyword() -> &'static str {
    let v = std::process::Command::new("mbsync")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if v.contains("isync 1.4") || v.contains("isync 1.3") { "SSLType" } else { "TLSType" }
}
