//! What submission does to a message between DATA and the queue: check the `From:`,
//! `Sender:` and `Resent-From:`/`Resent-Sender:` headers against the authenticated account, add `Message-ID` and `Date` when the client
//! left them out (RFC 6409 §8.2/§8.3 allow the MSA to), and pick the DKIM signing domain.
//!
//! Pure functions over the message bytes (no I/O, never panic); the server runs them and
//! signs with `mailauth::Signers`. Why the `From:` check: without it any user could send
//! mail signed with our DKIM key in someone else's name — DMARC would then vouch for a
//! forgery (Postfix `reject_sender_login_mismatch` for the envelope, and the header rule
//! most hosted providers enforce).

use crate::accounts::{Address, Directory};
use crate::header_address::{self, Mailbox};

use super::status::Status;

/// The header section: everything up to and including the blank line (or the whole
/// message when there is no body).
pub fn header_section(message: &[u8]) -> &[u8] {
    match find(message, b"\r\n\r\n") {
        Some(i) => &message[..i + 4],
        None if message.starts_with(b"\r\n") => &message[..2],
        None => message,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How many header fields named `name` (case-insensitive) the header section has.
pub fn count_headers(message: &[u8], name: &str) -> usize {
    let headers = header_section(message);
    let mut count = 0;
    for line in headers.split(|b| *b == b'\n') {
        // A field starts at column 0 (continuations start with WSP, RFC 5322 §2.2.3).
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()..].trim_ascii_start().starts_with(b":")
            && !line.starts_with(b" ")
            && !line.starts_with(b"\t")
        {
            count += 1;
        }
    }
    count
}

/// The fields besides `From:` that name who sent the message (RFC 5322 §3.6.2 `Sender`,
/// §3.6.6 the `Resent-*` block a client adds when it redirects a message): a reader sees
/// them as "on behalf of", so they are held to the same ownership rule as `From:`.
pub const SENDER_FIELDS: [&str; 3] = ["Sender", "Resent-From", "Resent-Sender"];

/// Check the `From:`, `Sender:`, `Resent-From:` and `Resent-Sender:` headers for
/// `account`: exactly one `From:` (read by `header_address`, as port 25 and IMAP read
/// it), and every address in these fields one the account may send as. Returns the first
/// `From:` address (its domain is the DKIM signing domain) or the 5xx reply.
pub fn check_sender_headers(directory: &Directory, account: &Address, message: &[u8]) -> Result<Address, Status> {
    let authors = header_address::authors(message).map_err(|e| Status::new(550, (5, 6, 0), format!("Error: {e}")))?;
    let mut first = None;
    for m in &authors {
        let a = owned(directory, account, m, "From")?;
        first.get_or_insert(a);
    }
    for field in SENDER_FIELDS {
        let mailboxes = header_address::field_mailboxes(message, field)
            .map_err(|e| Status::new(550, (5, 6, 0), format!("Error: {e}")))?;
        for m in &mailboxes {
            owned(directory, account, m, field)?;
        }
    }
    first.ok_or_else(|| Status::new(550, (5, 6, 0), "Error: no From: address"))
}

/// `m` as an [`Address`] the account may send as, or 553 5.7.1 naming the field.
fn owned(directory: &Directory, account: &Address, m: &Mailbox, field: &str) -> Result<Address, Status> {
    let refused = || {
        Status::new(
            553,
            (5, 7, 1),
            format!("<{}>: {field}: header address rejected: not owned by the authenticated user", m.address()),
        )
    };
    let a = Address::parse(&m.address()).map_err(|_| refused())?;
    if directory.may_send_as(account, &a) { Ok(a) } else { Err(refused()) }
}

/// The headers to add to a submitted message (CRLF-terminated), placed at the top: a
/// `Message-ID` (`<queue-id.random@hostname>`) and a `Date` when missing.
pub fn missing_headers(message: &[u8], msgid: &str, hostname: &str, date: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if count_headers(message, "Message-ID") == 0 {
        let random: u64 = rand::random();
        out.extend_from_slice(format!("Message-ID: <{msgid}.{random:016x}@{hostname}>\r\n").as_bytes());
    }
    if count_headers(message, "Date") == 0 {
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{parse_accounts, parse_aliases};
    use crate::smtp::status::Code;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap_or_else(|_| Address { local: "x".into(), domain: "invalid".into() })
    }

    fn directory() -> Directory {
        let entries = parse_accounts("alice@ours.example:{PLAIN}pw").unwrap_or_else(|e| panic!("{e:?}"));
        let aliases = parse_aliases("sales@ours.example:alice@ours.example").unwrap_or_else(|e| panic!("{e:?}"));
        Directory::new(vec!["ours.example".into()], entries, aliases).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn from_header_transcripts() {
        let d = directory();
        let alice = addr("alice@ours.example");
        let ok = b"From: Alice <alice@ours.example>\r\nTo: bob@remote.example\r\n\r\nhi\r\n";
        assert_eq!(check_sender_headers(&d, &alice, ok), Ok(alice.clone()));
        let alias = b"From: \"Sales\" <sales@OURS.example>\r\n\r\nhi\r\n";
        assert_eq!(check_sender_headers(&d, &alice, alias).map(|a| a.local), Ok("sales".into()));
        let foreign = b"From: boss@bank.example\r\n\r\nhi\r\n";
        assert_eq!(check_sender_headers(&d, &alice, foreign).map_err(|r| r.code), Err(Code::Reply(553)));
        let list = b"From: alice@ours.example, boss@bank.example\r\n\r\nx\r\n";
        assert_eq!(
            check_sender_headers(&d, &alice, list).map_err(|r| r.code),
            Err(Code::Reply(553)),
            "every address is checked"
        );
        let two = b"From: alice@ours.example\r\nFrom: boss@bank.example\r\n\r\nx\r\n";
        assert_eq!(
            check_sender_headers(&d, &alice, two).map_err(|r| r.code),
            Err(Code::Reply(550)),
            "two From: fields"
        );
        let none = b"Subject: x\r\n\r\nFrom: alice@ours.example\r\n";
        assert_eq!(
            check_sender_headers(&d, &alice, none).map_err(|r| r.code),
            Err(Code::Reply(550)),
            "From: in the body does not count"
        );
        let folded = b"From:\r\n Alice\r\n <alice@ours.example>\r\n\r\nx\r\n";
        assert_eq!(check_sender_headers(&d, &alice, folded), Ok(alice));
    }

    #[test]
    fn sender_and_resent_headers_transcripts() {
        let d = directory();
        let alice = addr("alice@ours.example");
        let code = |m: &[u8]| check_sender_headers(&d, &alice, m).map_or_else(|r| r.code, |_| Code::Reply(250));
        assert_eq!(code(b"From: alice@ours.example\r\nSender: sales@ours.example\r\n\r\nx\r\n"), Code::Reply(250));
        let bob =
            check_sender_headers(&d, &alice, b"From: alice@ours.example\r\nSender: bob@ours.example\r\n\r\nx\r\n");
        let bob = bob.map_err(|r| String::from_utf8_lossy(&r.render()).into_owned());
        assert_eq!(
            bob,
            Err("553 5.7.1 <bob@ours.example>: Sender: header address rejected: not owned by the authenticated user\r\n"
                .into())
        );
        assert_eq!(
            code(b"From: alice@ours.example\r\nresent-from: Boss <boss@bank.example>\r\n\r\nx\r\n"),
            Code::Reply(553)
        );
        assert_eq!(
            code(b"From: alice@ours.example\r\nResent-Sender: boss@bank.example.\r\n\r\nx\r\n"),
            Code::Reply(553)
        );
        let resent =
            b"Resent-From: alice@ours.example\r\nResent-Sender: sales@ours.example\r\nFrom: a@ours.example\r\n\r\n";
        assert_eq!(code(resent), Code::Reply(553), "the original From: is still checked");
        let resent = b"Resent-From: alice@ours.example\r\nFrom: sales@ours.example\r\n\r\nx\r\n";
        assert_eq!(code(resent), Code::Reply(250));
        assert_eq!(
            code(b"From: alice@ours.example\r\nSender: <alice@ours.example> boss@bank.example\r\n\r\n"),
            Code::Reply(550)
        );
        assert_eq!(code(b"From: alice@ours.example\r\nSender: boss@(x)bank.example\r\n\r\n"), Code::Reply(553));
        assert_eq!(
            code(b"From: alice@ours.example\r\nSender: alice@ours.example\r\nSENDER: boss@bank.example\r\n\r\n"),
            Code::Reply(553)
        );
        assert_eq!(
            code(b"FROM: alice@ours.example\r\nfrom: alice@ours.example\r\n\r\nx\r\n"),
            Code::Reply(550),
            "two From: fields"
        );
    }

    #[test]
    fn adds_message_id_and_date_only_when_missing() {
        let bare = b"From: alice@ours.example\r\n\r\nhi\r\n";
        let added = String::from_utf8_lossy(&missing_headers(bare, "ABC", "mail.ours.example", "D")).into_owned();
        assert!(added.starts_with("Message-ID: <ABC."), "{added}");
        assert!(added.contains("@mail.ours.example>\r\nDate: D\r\n"), "{added}");
        let full = b"message-id: <x@y>\r\nDATE: Fri, 27 Nov 2026 00:00:00 +0000\r\n\r\nhi\r\n";
        assert!(missing_headers(full, "ABC", "h", "D").is_empty());
        let in_body = b"From: a@b\r\n\r\nMessage-ID: <x@y>\r\n";
        assert!(!missing_headers(in_body, "A", "h", "D").is_empty());
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let (d, alice) = (directory(), addr("alice@ours.example"));
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| b"From:<>@ \r\n,\"a\x00\xff"[(crate::testing::xorshift(&mut seed) % 16) as usize])
                .collect();
            let _ = check_sender_headers(&d, &alice, &bytes);
            let _ = missing_headers(&bytes, "A", "h", "D");
            let _ = header_section(&bytes);
        }
    }
}
