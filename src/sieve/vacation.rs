//! Vacation (RFC 5230, `:seconds` from RFC 6131) the way RFC 3834 wants automatic
//! replies: never to another robot, a list, bulk mail, the null sender or ourselves.
//!
//! `sieve-rs` already skips some of these; the rules are checked here again, before the
//! "already answered" memory is consulted, so mail that must not be answered never
//! records its sender (a list message would otherwise silence the reply to a personal
//! one from the same address for `:days`).

use super::actions::header_fields;

/// Whether a message with this header section and envelope sender may get an automatic
/// reply. `own` are the recipient's own addresses (never answer ourselves).
pub fn may_answer(headers: &[u8], envelope_from: &str, own: &[String]) -> bool {
    let from = envelope_from.trim().to_ascii_lowercase();
    let local = from.split('@').next().unwrap_or("");
    if from.is_empty()
        || !from.contains('@')
        || local == "mailer-daemon"
        || local == "postmaster"
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-bounces")
        || own.iter().any(|a| a.eq_ignore_ascii_case(&from))
    {
        return false;
    }
    for (name, value) in header_fields(headers) {
        let name = name.to_ascii_lowercase();
        let value = value.trim().to_ascii_lowercase();
        let refused = match name.as_str() {
            // RFC 3834 section 2: anything but `no` is automatic.
            "auto-submitted" => value != "no",
            "precedence" => matches!(value.as_str(), "bulk" | "list" | "junk"),
            // RFC 2369 / RFC 2919: mail from a list.
            n if n.starts_with("list-") => true,
            "x-auto-response-suppress" => value.split(',').any(|v| matches!(v.trim(), "all" | "oof")),
            _ => false,
        };
        if refused {
            return false;
        }
    }
    true
}

/// The reply as it leaves: what the script built, with `MIME-Version` when missing (the
/// reply declares a Content-Type) and `Auto-Submitted: auto-replied` guaranteed, so the
/// other side's autoresponder stays quiet (RFC 3834 section 5). A non-ASCII `Subject`
/// (sieve-rs writes the script's UTF-8 as it is) becomes RFC 2047 encoded words, so
/// the reply needs no SMTPUTF8 on its way.
pub fn reply_with_headers(message: &[u8]) -> Vec<u8> {
    let fields = header_fields(message);
    let mut head = String::new();
    if !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case("MIME-Version")) {
        head.push_str("MIME-Version: 1.0\r\n");
    }
    if !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case("Auto-Submitted")) {
        head.push_str("Auto-Submitted: auto-replied\r\n");
    }
    let mut out = head.into_bytes();
    let mut rest = message;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
        let (line, next) = rest.split_at(end);
        rest = next;
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            out.extend_from_slice(line);
            out.extend_from_slice(rest);
            break;
        }
        match subject_value(bare) {
            Some(value) if !value.is_ascii() => {
                out.extend_from_slice(b"Subject: ");
                out.extend_from_slice(encoded_words(value.trim()).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}

/// The value of a one-line `Subject:` field, when `line` is one and is UTF-8.
fn subject_value(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    let (name, value) = text.split_once(':')?;
    name.trim().eq_ignore_ascii_case("Subject").then_some(value)
}

/// `text` as RFC 2047 B-encoded words of at most 75 characters each (45 bytes of UTF-8,
/// never splitting a character), folded onto continuation lines.
fn encoded_words(text: &str) -> String {
    use base64::Engine as _;
    const CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + CHUNK).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end == start {
            break;
        }
        words.push(format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(&text[start..end])));
        start = end;
    }
    words.join("\r\n ")
}
