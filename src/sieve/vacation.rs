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
/// other side's autoresponder stays quiet (RFC 3834 section 5).
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
    out.extend_from_slice(message);
    out
}
