//! End to end with the real binary: mail in over SMTP, out over IMAP, through
//! clients nobody here wrote (Python's smtplib and imaplib, swaks).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

struct Mailroom {
    server: Server,
    smtp: u16,
    imap: u16,
    _tmp: tempfile::TempDir,
}

fn start() -> Mailroom {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (smtp, imap, metrics) = (free_port(), free_port(), free_port());
    let mut env = base_env(&data);
    env.retain(|(k, _)| {
        !matches!(k.as_str(), "MAILROOM_SMTP_LISTEN" | "MAILROOM_IMAP_LISTEN" | "MAILROOM_METRICS_LISTEN")
    });
    env.push(("MAILROOM_SMTP_LISTEN".into(), format!("127.0.0.1:{smtp}")));
    env.push(("MAILROOM_IMAP_LISTEN".into(), format!("127.0.0.1:{imap}")));
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!("127.0.0.1:{metrics}")));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_DNS_SERVERS".into(), "127.0.0.1:9".into()));
    let mut server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], metrics))), &data);
    server.wait_ready(Duration::from_secs(30));
    Mailroom { server, smtp, imap, _tmp: tmp }
}

#[test]
fn smtplib_in_imaplib_out() {
    if !have_tool("python3") {
        return;
    }
    let mut m = start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mail_roundtrip.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([&m.smtp.to_string(), &m.imap.to_string(), "alice@example.com", "wonderland", "e2e-smtplib"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.server.log()
    );
    assert!(m.server.terminate(Duration::from_secs(10)).unwrap().success());
}

#[test]
fn swaks_delivers_and_relay_is_refused() {
    if !have_tool("swaks") {
        return;
    }
    let m = start();
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
    let new = m._tmp.path().join("data/mail/example.com/alice/new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
    assert_eq!(files.len(), 1, "exactly the swaks message in {new:?}");
}
