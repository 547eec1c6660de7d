//! What submission does to a message between DATA and the queue: check the `From:`
//! header against the authenticated account, add `Message-ID` and `Date` when the client
//! left them out (RFC 6409 §8.2/§8.3 allow the MSA to), and pick the DKIM signing domain.
//!
//! Pure functions over the message bytes (no I/O, never panic); the server runs them and
//! signs with `mailauth::Signers`. Why the `From:` check: without it any user could send
//! mail signed with our DKIM key in someone else's name — DMARC would then vouch for a
//! forgery (Postfix `reject_sender_login_mismatch` for the envelope, and the header rule
//! most hosted providers enforce).

use mail_parser::MessageParser;

use crate::accounts::{Address, Directory};

use super::reply::Reply;

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

/// The addresses of the `From:` header (RFC 5322 §3.6.2 allows a list), lower-cased
/// domain, or `None` when there is not exactly one `From:` field or an entry has no
/// usable address.
pub fn from_addresses(message: &[u8]) -> Option<Vec<Address>> {
    if count_headers(message, "From") != 1 {
        return None;
    }
    let parsed = MessageParser::new().parse_headers(header_section(message))?;
    let from = parsed.from()?;
    let mut out = Vec::new();
    for addr in from.iter() {
        let a = Address::parse(addr.address()?).ok()?;
        out.push(a);
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Check the `From:` header for `account`: every address must be one it may send as.
/// Returns the first address (its domain is the DKIM signing domain) or the 5xx reply.
pub fn check_from(directory: &Directory, account: &Address, message: &[u8]) -> Result<Address, Reply> {
    let Some(addresses) = from_addresses(message) else {
        return Err(Reply::new(550, (5, 6, 0), "Error: the message needs exactly one From: header with an address"));
    };
    for a in &addresses {
        if !directory.may_send_as(account, a) {
            return Err(Reply::new(
                553,
                (5, 7, 1),
                format!("<{a}>: From: header address rejected: not owned by the authenticated user"),
            ));
        }
    }
    addresses.into_iter().next().ok_or_else(|| Reply::new(550, (5, 6, 0), "Error: no From: address"))
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
        assert_eq!(check_from(&d, &alice, ok), Ok(alice.clone()));
        let alias = b"From: \"Sales\" <sales@OURS.example>\r\n\r\nhi\r\n";
        assert_eq!(check_from(&d, &alice, alias).map(|a| a.local), Ok("sales".into()));
        let foreign = b"From: boss@bank.example\r\n\r\nhi\r\n";
        assert_eq!(check_from(&d, &alice, foreign).map_err(|r| r.code), Err(553));
        let list = b"From: alice@ours.example, boss@bank.example\r\n\r\nx\r\n";
        assert_eq!(check_from(&d, &alice, list).map_err(|r| r.code), Err(553), "every address is checked");
        let two = b"From: alice@ours.example\r\nFrom: boss@bank.example\r\n\r\nx\r\n";
        assert_eq!(check_from(&d, &alice, two).map_err(|r| r.code), Err(550), "two From: fields");
        let none = b"Subject: x\r\n\r\nFrom: alice@ours.example\r\n";
        assert_eq!(check_from(&d, &alice, none).map_err(|r| r.code), Err(550), "From: in the body does not count");
        let folded = b"From:\r\n Alice\r\n <alice@ours.example>\r\n\r\nx\r\n";
        assert_eq!(check_from(&d, &alice, folded), Ok(alice));
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
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| b"From:<>@ \r\n,\"a\x00\xff"[(crate::testing::xorshift(&mut seed) % 16) as usize])
                .collect();
            let _ = from_addresses(&bytes);
            let _ = missing_headers(&bytes, "A", "h", "D");
            let _ = header_section(&bytes);
        }
    }
}
