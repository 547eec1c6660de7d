//! End to end with the real binary: mail in over SMTP, out over IMAP, through
//! clients nobody here wrote (Python's smtplib and imaplib, swaks).

use crate::common;

use std::time::Duration;

use common::*;

#[test]
fn smtplib_in_imaplib_out() {
    if !have_tool("python3") {
        return;
    }
    let mut m = start_smtp_imap();
    let args =
        [m.smtp.to_string(), m.imap.to_string(), "alice@example.com".into(), "wonderland".into(), "e2e-smtplib".into()];
    run_client("mail_roundtrip.py", &args, &m.server);
    assert!(m.server.terminate(Duration::from_secs(10)).unwrap().success());
}

#[test]
fn swaks_delivers_and_relay_is_refused() {
    if !have_tool("swaks") {
        return;
    }
    let m = start_smtp_imap();
    let server = format!("127.0.0.1:{}", m.smtp);
    let ok = std::process::Command::new("swaks")
        .args(["--server", &server, "--tls", "--from", "bob@example.com", "--to", "alice@example.com"])
        .args(["--header", "Subject: via swaks", "--body", "hello from swaks"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("250 2.0.0"), "{text}");
    let relay = std::process::Command::new("swaks")
        .args(["--server", &server, "--from", "bob@example.com", "--to", "victim@elsewhere.example"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&relay.stdout);
    assert!(!relay.status.success(), "{text}");
    assert!(text.contains("554 5.7.1"), "relay must be denied: {text}");
    let new = m.data.join("mail/example.com/alice/new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
    assert_eq!(files.len(), 1, "exactly the swaks message in {new:?}");
}
