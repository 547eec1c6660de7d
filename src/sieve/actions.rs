//! The small translations between what a script says and what the store and the queue
//! take: imap4flags strings to [`Flag`]s, and the redirect loop rules.

use std::sync::Arc;

use crate::store::Flag;

use super::MAX_REDIRECTS;

/// The header field a Sieve redirect adds to the copy it sends, naming the account that
/// redirected it. Counting them bounds a redirect loop between mailboxes, servers
/// included (each hop adds one), where a per-run cap alone would not.
pub const REDIRECT_HEADER: &str = "X-Mailroom-Sieve-Redirected-From";

/// Longest keyword kept (the store refuses longer ones).
const MAX_KEYWORD: usize = 100;

/// imap4flags (RFC 5232) strings to store flags. System flags by their IMAP names, any
/// other atom as a keyword; `\Recent` and malformed names are dropped, not refused, so a
/// typo in a script never costs the message.
pub fn flags_from_sieve(names: &[String]) -> Vec<Flag> {
    let mut out: Vec<Flag> = Vec::new();
    for name in names.iter().flat_map(|n| n.split_whitespace()) {
        let flag = match name.to_ascii_lowercase().as_str() {
            "\\seen" => Flag::Seen,
            "\\answered" => Flag::Answered,
            "\\flagged" => Flag::Flagged,
            "\\deleted" => Flag::Deleted,
            "\\draft" => Flag::Draft,
            _ if name.starts_with('\\') => continue,
            _ if name.len() <= MAX_KEYWORD && name.bytes().all(is_atom_char) => Flag::Keyword(Arc::from(name)),
            _ => continue,
        };
        if !out.contains(&flag) {
            out.push(flag);
        }
    }
    out
}

/// RFC 3501 ATOM-CHAR, less `]` (not allowed in a flag keyword either).
fn is_atom_char(b: u8) -> bool {
    b > b' ' && b < 0x7f && !b"(){%*\"\\]".contains(&b)
}

/// Whether a message whose header section is `headers` may be redirected by `account`:
/// not if this account redirected it before (a loop through it) nor once it carries
/// [`MAX_REDIRECTS`] redirect marks.
pub fn redirect_allowed(headers: &[u8], account: &str) -> bool {
    let mut marks = 0;
    for (name, value) in header_fields(headers) {
        if name.eq_ignore_ascii_case(REDIRECT_HEADER) {
            marks += 1;
            if value.trim().eq_ignore_ascii_case(account) {
                return false;
            }
        }
    }
    marks < MAX_REDIRECTS
}

/// The unfolded header fields (name, value) of a header section, up to its end.
pub(super) fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(text.trim());
            }
            continue;
        }
        if let Some((name, value)) = text.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    fields
}
