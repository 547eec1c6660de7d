//! offlineimap (a real IMAP sync client we did not write) against the real binary:
//! a first sync copies the server's mail into a local Maildir; a flag set locally
//! reaches the server on the next sync; a message deleted on the server disappears
//! locally.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn offlineimap(conf: &std::path::Path) -> String {
    let out = Command::new("offlineimap").args(["-o", "-u", "basic", "-c"]).arg(conf).output().expect("offlineimap");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "offlineimap failed:\n{text}");
    text
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = ["cur", "new"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

#[test]
fn offlineimap_two_way_sync() {
    if !have_tool("offlineimap") || !have_tool("swaks") {
        return;
    }
    // Keep the whole MailServer alive: it owns the temp data dir.
    let mut m = start_smtp_imap();
    let (smtp, imap, data) = (m.smtp, m.imap, m.data.clone());
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{smtp}"), "--from", "bob@example.com", "--to", "alice@example.com"])
            .args(["--header", &format!("Subject: message {i}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }

    let local = tmp.path().join("local");
    let conf = tmp.path().join("offlineimaprc");
    std::fs::write(
        &conf,
        format!(
            "[general]\naccounts = test\nmetadata = {meta}\n\n[Account test]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {local}\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {imap}\nremoteuser = alice@example.com\n\
             remotepass = wonderland\nssl = no\nstarttls = yes\nsslcacertfile = OS-DEFAULT\ntls_level = tls_compat\n\
             cert_fingerprint = \n",
            meta = tmp.path().join("meta").display(),
            local = local.display(),
        ),
    )
    .unwrap();
    // The self-signed certificate cannot be verified; pin its fingerprint instead.
    let cert = std::fs::read(data.join("tls/selfsigned.crt")).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&cert)
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let fp = ring::digest::digest(&ring::digest::SHA256, &der);
    let hex: String = fp.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("cert_fingerprint = \n", &format!("cert_fingerprint = {hex}\n"));
    std::fs::write(&conf, text).unwrap();

    let log = offlineimap(&conf);
    let inbox = local.join("INBOX");
    assert_eq!(files(&inbox).len(), 3, "first sync copies 3 messages:\n{log}");
    for folder in ["Sent", "Drafts", "Junk", "Trash"] {
        assert!(local.join(folder).is_dir(), "{folder} synced:\n{log}");
    }

    // Flag one message locally (Maildir flag F = \Flagged) and sync up.
    let first = files(&inbox).into_iter().find(|n| !n.is_empty()).unwrap();
    let sub = if inbox.join("cur").join(&first).exists() { "cur" } else { "new" };
    let base = first.split(":2,").next().unwrap().to_string();
    let flags = first.split(":2,").nth(1).unwrap_or("");
    let mut new_flags: Vec<char> = flags.chars().chain(['F']).collect();
    new_flags.sort();
    new_flags.dedup();
    std::fs::rename(
        inbox.join(sub).join(&first),
        inbox.join("cur").join(format!("{base}:2,{}", new_flags.iter().collect::<String>())),
    )
    .unwrap();
    offlineimap(&conf);
    let server_inbox = data.join("mail/example.com/alice");
    let flagged =
        files(&server_inbox).iter().filter(|n| n.split(":2,").nth(1).is_some_and(|f| f.contains('F'))).count();
    assert_eq!(flagged, 1, "the flag reached the server: {:?}", files(&server_inbox));

    // Delete one message on the server (as another client would), sync down.
    let victim = files(&server_inbox).into_iter().find(|n| !n.contains('F')).unwrap();
    for sub in ["cur", "new"] {
        let _ = std::fs::remove_file(server_inbox.join(sub).join(&victim));
    }
    offlineimap(&conf);
    assert_eq!(files(&inbox).len(), 2, "the deletion reached the local copy");
    assert!(m.server.terminate(Duration::from_secs(10)).unwrap().success());
}
