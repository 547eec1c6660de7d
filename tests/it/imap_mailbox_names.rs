//! IMAP with a real client (python imaplib over STARTTLS): a mailbox name that is not
//! modified UTF-7 gets NO everywhere and never costs the connection, and a new keyword is
//! announced in FLAGS before a FETCH uses it (RFC 3501 6.3.1, 7.1, 7.2.6).

use crate::common;

use std::time::Duration;

use common::*;

#[test]
fn odd_mailbox_names_and_new_keywords_with_imaplib() {
    if !have_tool("python3") {
        return;
    }
    let mut m = start_smtp_imap();
    run_client("imap_odd_names.py", &[m.imap.to_string(), "alice@example.com".into(), "wonderland".into()], &m.server);
    assert!(m.server.terminate(Duration::from_secs(10)).unwrap().success());
}
