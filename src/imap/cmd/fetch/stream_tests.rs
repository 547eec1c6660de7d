//! Transcripts: body parts of a large message are streamed from the file and need none of
//! the server-wide memory budget (a FETCH of BODY[2] runs while another holds all of it);
//! BODYSTRUCTURE still reads the message whole and waits for the budget.

use std::time::Duration;

use base64::Engine;

use crate::imap::test_support::*;
use crate::net::MessageMemory;

/// A 300 KiB attachment (past the size read into memory for parts), base64 in the
/// message; BINARY gives its octets back as they were, LF line ends included.
fn big_message() -> (String, String) {
    let attachment: String = (0..300 * 1024 / 32).map(|i| format!("line {i:07} of the attachment..\n")).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment.as_bytes());
    let mut msg = String::from(
        "From: a@example.org\nSubject: big\nContent-Type: multipart/mixed; boundary=b\n\n\
         --b\nContent-Type: text/plain\n\nsee attached\n\
         --b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n",
    );
    for line in encoded.as_bytes().chunks(76) {
        msg.push_str(&String::from_utf8_lossy(line));
        msg.push('\n');
    }
    msg.push_str("--b--\n");
    (msg, attachment)
}

#[tokio::test]
async fn parts_of_a_large_message_stream_without_the_budget() {
    if !crate::testing::on_maildir() {
        return; // checks ranges of the message file
    }
    let memory = MessageMemory::new(64 * 1024);
    let shared = memory.clone();
    let srv = start_with(move |ctx| ctx.memory = shared).await;
    let (msg, attachment) = big_message();
    srv.deliver("INBOX", &msg).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let all = memory.reserve(u64::MAX).await;

    let n = attachment.len();
    let r = c.ok("FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2] BODY.PEEK[1.MIME] BODY.PEEK[1])").await;
    let expected = format!(
        "* 1 FETCH (BINARY.SIZE[2] {n} BINARY[2] {{{n}}}\r\n{attachment} BODY[1.MIME] {{28}}\r\n\
         Content-Type: text/plain\r\n\r\n BODY[1] {{12}}\r\nsee attached)"
    );
    assert!(r[0] == expected, "{:.300}", r[0]);
    let r = c.ok("FETCH 1 (BINARY.PEEK[2]<32.20> BODY.PEEK[2]<0.8> RFC822.SIZE)").await;
    assert_eq!(
        r[0],
        format!(
            "* 1 FETCH (BINARY[2]<32> {{20}}\r\n{} BODY[2]<0> {{8}}\r\nbGluZSAw RFC822.SIZE {})",
            &attachment[32..52],
            msg.len() + msg.matches('\n').count()
        )
    );

    // BODYSTRUCTURE reads the message whole: it waits for the budget.
    let tag = c.next_tag();
    c.send(&format!("{tag} FETCH 1 (BODYSTRUCTURE)\r\n")).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.line()).await.is_err(),
        "BODYSTRUCTURE without the budget"
    );
    drop(all);
    let r = c.until_tagged(&tag).await;
    assert!(r[0].starts_with("* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\""), "{r:?}");
    assert_eq!(r.last().map(String::as_str), Some(format!("{tag} OK FETCH completed").as_str()));
}
