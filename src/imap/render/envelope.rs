//! ENVELOPE (RFC 9051 7.5.2 `envelope`): date, subject, the address lists and ids from a
//! header block. Strings are sent as found in the header (unfolded), as Dovecot does, so
//! clients decode RFC 2047 words themselves. Address syntax (groups, quoted names, comments,
//! obsolete forms) is parsed by `header_address`, the same parser that judges DMARC on port
//! 25; a raw UTF-8 name (RFC 6532) is encoded as an RFC 2047 word so the response stays
//! 7-bit for IMAP4rev1 clients.

use super::mime::{header_fields, unfold_into};
use super::{nstring, string};
use crate::header_address::{Entry, Mailbox, parse_address_list};
use base64::Engine as _;

/// The header fields ENVELOPE is made of, in response order.
const FIELDS: [&str; 10] =
    ["date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id"];

/// Append the parenthesised ENVELOPE of the message whose header block is `header`.
/// Written straight into `out` (one scratch buffer for unfolding): clients list folders
/// with `FETCH n:m (... ENVELOPE)`, so this runs for every message they show.
pub fn envelope(out: &mut Vec<u8>, header: &[u8]) {
    // One pass over the header for all ten fields (the first occurrence of each counts).
    let mut values: [Option<&[u8]>; 10] = [None; 10];
    for f in header_fields(header) {
        if let Some(i) = FIELDS.iter().position(|n| f.name.eq_ignore_ascii_case(n.as_bytes()))
            && values[i].is_none()
        {
            values[i] = Some(f.value);
        }
    }
    let mut scratch = Vec::new();
    out.push(b'(');
    unfolded(out, &mut scratch, values[0]);
    out.push(b' ');
    unfolded(out, &mut scratch, values[1]);
    out.push(b' ');
    let from_start = out.len();
    let has_from = addresses(out, values[2]);
    if !has_from {
        out.extend_from_slice(b"NIL");
    }
    let from = from_start..out.len();
    // Sender and Reply-To default to From (RFC 9051 7.5.2); To, Cc and Bcc to NIL.
    for (i, value) in values.iter().enumerate().take(8).skip(3) {
        out.push(b' ');
        if !addresses(out, *value) {
            if i <= 4 && has_from {
                out.extend_from_within(from.clone());
            } else {
                out.extend_from_slice(b"NIL");
            }
        }
    }
    out.push(b' ');
    unfolded(out, &mut scratch, values[8]);
    out.push(b' ');
    unfolded(out, &mut scratch, values[9]);
    out.push(b')');
}

/// A field's value unfolded, as an nstring, through a reused buffer.
fn unfolded(out: &mut Vec<u8>, scratch: &mut Vec<u8>, value: Option<&[u8]>) {
    nstring(out, value.map(|v| unfold_into(v, scratch)));
}

/// Append the address list `((name adl mailbox host) ...)` of a field's value; `false`
/// (nothing appended) when the field is absent or holds no address. Parsed by
/// `header_address`, the parser port 25's DMARC check and submission's ownership check
/// use, so what the reader sees is what was checked.
fn addresses(out: &mut Vec<u8>, value: Option<&[u8]>) -> bool {
    let Some(value) = value else {
        return false;
    };
    let start = out.len();
    out.push(b'(');
    for entry in &parse_address_list(value).entries {
        match entry {
            Entry::Mailbox(m) => address(out, m),
            Entry::Group { name, members } => {
                // RFC 9051 7.5.2: group start (NIL NIL name NIL), end (NIL NIL NIL NIL)
                out.extend_from_slice(b"(NIL NIL ");
                string(out, encode_word(name).as_bytes());
                out.extend_from_slice(b" NIL)");
                for m in members {
                    address(out, m);
                }
                out.extend_from_slice(b"(NIL NIL NIL NIL)");
            }
        }
    }
    if out.len() == start + 1 {
        out.truncate(start);
        return false;
    }
    out.push(b')');
    true
}

fn address(out: &mut Vec<u8>, m: &Mailbox) {
    if m.local.is_empty() && m.domain.is_none() {
        return;
    }
    out.push(b'(');
    match m.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => string(out, encode_word(n).as_bytes()),
        None => out.extend_from_slice(b"NIL"),
    }
    // RFC 3501 §7.4.2: the at-domain-list (source route) is the second field.
    out.push(b' ');
    nstring(out, m.route.as_deref().map(str::as_bytes));
    out.push(b' ');
    string(out, m.local.as_bytes());
    out.push(b' ');
    // Dovecot's convention for an address without a domain.
    string(out, m.domain.as_deref().unwrap_or("MISSING_DOMAIN").as_bytes());
    out.push(b')');
}

/// RFC 2047 B-encoding for a non-ASCII display name; ASCII stays as it is.
fn encode_word(name: &str) -> String {
    if name.is_ascii() {
        return name.to_string();
    }
    format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(header: &str) -> String {
        let mut out = Vec::new();
        envelope(&mut out, header.as_bytes());
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn rfc_example_envelope() {
        // Shape of the RFC 3501 6.4.5 example, checked field by field; host names come
        // lower-cased (they are case-insensitive), as port 25 judged them.
        let h = "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
                 From: Terry Gray <gray@cac.washington.edu>\r\n\
                 Subject: IMAP4rev1 WG mtg summary and minutes\r\n\
                 To: imap@cac.washington.edu\r\n\
                 cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n\
                 Message-Id: <B27397-0100000@cac.washington.edu>\r\n\r\n";
        assert_eq!(
            env(h),
            "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" \
             ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
             ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
             ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
             ((NIL NIL \"imap\" \"cac.washington.edu\")) \
             ((NIL NIL \"minutes\" \"cnri.reston.va.us\")(\"John Klensin\" NIL \"KLENSIN\" \"mit.edu\")) \
             NIL NIL \"<B27397-0100000@cac.washington.edu>\")"
        );
    }

    #[test]
    fn empty_header_is_all_nil() {
        assert_eq!(env("\r\n"), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }

    #[test]
    fn groups_folded_subject_and_utf8_names() {
        let h = "Subject: =?utf-8?q?caf=C3=A9?=\r\n and more\r\n\
                 To: undisclosed-recipients:;\r\n\
                 From: \"Jürgen\" <j@example.org>\r\n\
                 Cc: team: a@x.org, b@y.org;\r\n\r\n";
        let e = env(h);
        assert!(e.contains("\"=?utf-8?q?caf=C3=A9?= and more\""), "{e}");
        assert!(e.contains("((\"=?utf-8?b?SsO8cmdlbg==?=\" NIL \"j\" \"example.org\"))"), "{e}");
        assert!(
            e.contains("((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"x.org\")(NIL NIL \"b\" \"y.org\")(NIL NIL NIL NIL))"),
            "{e}"
        );
    }

    /// The author a reader sees is the one port 25 judged: the same normalisation as
    /// `header_address::authors` for the inputs of the DMARC bypass attempts.
    #[test]
    fn from_shows_the_judged_author() {
        let from = |value: &str| {
            let e = env(&format!("From:{value}\r\n\r\n"));
            // The third element, after `(NIL NIL ` (no date, no subject), is the From list.
            let rest = &e["(NIL NIL ".len()..];
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find_map(|(i, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    (depth == 0).then_some(i + 1)
                })
                .unwrap_or(rest.len());
            rest[..end].to_string()
        };
        let ceo = "((NIL NIL \"ceo\" \"rejecter.example\"))";
        assert_eq!(from(" ceo@rejecter.example."), ceo);
        assert_eq!(from(" ceo@(x)rejecter.example"), ceo);
        assert_eq!(from(" ceo@Rejecter.Example"), ceo);
        // The route is shown in its own field; the mailbox and host are the judged ones.
        assert_eq!(
            from(" <@route.example:ceo@rejecter.example>"),
            "((NIL \"@route.example\" \"ceo\" \"rejecter.example\"))"
        );
        assert_eq!(
            from(" <ceo@rejecter.example> x@sender.example"),
            "((NIL NIL \"ceo\" \"rejecter.example\")(NIL NIL \"x\" \"sender.example\"))"
        );
        assert_eq!(
            from(" ceo@rejecter.example, x@sender.example"),
            "((NIL NIL \"ceo\" \"rejecter.example\")(NIL NIL \"x\" \"sender.example\"))"
        );
        assert_eq!(from(" ceo"), "((NIL NIL \"ceo\" \"MISSING_DOMAIN\"))");
    }

    #[test]
    fn garbage_in_never_panics() {
        for h in [
            "From: <<<>>>\r\n\r\n",
            "From: \"unterminated\r\n\r\n",
            "From: a@\r\nTo: @b\r\nCc: ,,,;;;:::\r\n\r\n",
            "From: =?x?q?\r\n\r\n",
            "From:\r\n\r\n",
        ] {
            let _ = env(h);
        }
    }
}
