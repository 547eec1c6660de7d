//! IMAP with a real client (python imaplib over STARTTLS): a mailbox name that is not
//! modified UTF-7 gets NO everywhere and never costs the connection, and a new keyword is
//! announced in FLAGS before a FETCH uses it (RFC 3501 6.3.1, 7.1, 7.2.6).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn odd_mailbox_names_and_new_keywords_with_imaplib() {
    if !have_tool("python3") {
        return;
    }
    let mut m = start_smtp_imap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/imap_odd_names.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([&m.imap.to_string(), "alice@example.com", "wonderland"])
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
