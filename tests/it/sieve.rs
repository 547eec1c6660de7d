//! Sieve at delivery through the real binary: the admin scripts of
//! `MAILROOM_SIEVE_BEFORE`/`_AFTER` file mail delivered over LMTP, with flags, refuse it
//! in LMTP's reply with `reject`, and a
//! script that does not compile stops the start naming the variable and the line.
//! (Accounts' own scripts, uploaded over ManageSieve: tests/it/sieve_e2e.rs.)

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// One LMTP transaction to `alice@example.com`; returns the reply to the message.
fn lmtp_send(port: u16, message: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    };
    reply();
    for cmd in ["LHLO client.test", "MAIL FROM:<bob@remote.test>", "RCPT TO:<alice@example.com>", "DATA"] {
        write!(w, "{cmd}\r\n").unwrap();
        let r = reply();
        assert!(r.starts_with('2') || r.starts_with('3'), "{cmd}: {r}");
    }
    write!(w, "{message}\r\n.\r\n").unwrap();
    let r = reply();
    write!(w, "QUIT\r\n").unwrap();
    r
}

fn files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn admin_scripts_file_mail_with_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let after = tmp.path().join("after.sieve");
    std::fs::write(&after, "require [\"fileinto\", \"mailbox\"];\r\nif header :contains \"Subject\" \"invoice\" { fileinto :create \"Invoices\"; }\r\n").unwrap();
    let mut env = env_listening(&data, &["LMTP"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push((
        "MAILROOM_SIEVE_BEFORE".into(),
        "require [\"fileinto\", \"imap4flags\", \"mailbox\", \"reject\"];\r\nif header :contains \"Subject\" \"[list]\" { fileinto :create :flags \"\\\\Seen\" \"Lists\"; stop; }\r\nif header :contains \"Subject\" \"[ad]\" { reject \"no ads\"; }\r\n".into(),
    ));
    env.push(("MAILROOM_SIEVE_AFTER".into(), after.display().to_string()));
    let server = Server::start_ready(&env, &data, Duration::from_secs(30));
    let port = server.port("lmtp");
    let mailbox = data.join("mail/example.com/alice");

    let r = lmtp_send(port, "From: bob@remote.test\r\nSubject: [list] news\r\n\r\nhello");
    assert!(r.starts_with("250"), "{r}\n{}", server.log());
    let lists = files(&mailbox.join(".Lists/cur"));
    assert_eq!(lists.len(), 1, "{lists:?}\n{}", server.log());
    assert!(lists[0].ends_with(":2,S"), "{lists:?}");

    // `stop` in the before-script: the after-script did not run for it.
    assert!(files(&mailbox.join(".Invoices/new")).is_empty());
    let r = lmtp_send(port, "From: bob@remote.test\r\nSubject: your invoice\r\n\r\npay");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(files(&mailbox.join(".Invoices/new")).len(), 1, "{}", server.log());

    // Neither script acts: the implicit keep, INBOX.
    let r = lmtp_send(port, "From: bob@remote.test\r\nSubject: hi\r\n\r\nhi");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(files(&mailbox.join("new")).len(), 1);

    // A reject is LMTP's reply for that recipient (RFC 5429 section 2.1), not a DSN.
    let r = lmtp_send(port, "From: bob@remote.test\r\nSubject: [ad] buy now\r\n\r\nbuy");
    assert_eq!(r, "550 5.7.1 Message rejected by the recipient's filter: no ads\r\n", "{}", server.log());
    assert_eq!(files(&mailbox.join("new")).len(), 1);

    let (status, metrics) = http_get(server.metrics.unwrap(), "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("mailroom_sieve_scripts_run_total 4"), "{metrics}");
    assert!(metrics.contains("mailroom_sieve_actions_total{action=\"reject\"} 1"), "{metrics}");
    assert!(metrics.contains("mailroom_sieve_actions_total{action=\"fileinto\"} 2"), "{metrics}");
}

#[test]
fn a_script_that_does_not_compile_is_exit_2_naming_the_variable_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = base_env(&data);
    env.push(("MAILROOM_SIEVE_AFTER".into(), "require \"fileinto\";\r\nfileinto;\r\n".into()));
    let out = run(&["check-config"], &env, "");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAILROOM_SIEVE_AFTER") && stderr.contains("line 2"), "{stderr}");
}
