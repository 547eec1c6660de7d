//! SORT ordering (RFC 5256): the values each sort key compares, taken from the index
//! (arrival, size) or the message header (sent date, addresses, base subject), and the
//! comparison itself. Pure; the session reads the header bytes only when a key needs them.

use std::cmp::Ordering;

use super::command::{SortCriterion, SortKey};
use super::render::mime::{decode_encoded_words, header_value, unfold};
use crate::header_address::parse_address_list;

/// Does any criterion need the message header?
pub fn needs_header(criteria: &[SortCriterion]) -> bool {
    criteria.iter().any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size))
}

/// What one message is sorted by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortValues {
    pub seq: u32,
    pub arrival: i64,
    pub size: u64,
    pub date: i64,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
}

impl SortValues {
    /// `header`: the message's header block (None when no criterion needs it).
    pub fn new(seq: u32, arrival: i64, size: u64, header: Option<&[u8]>) -> SortValues {
        let mut v = SortValues { seq, arrival, size, date: arrival, ..SortValues::default() };
        let Some(h) = header else {
            return v;
        };
        v.date = sent_date(h, arrival);
        v.subject = base_subject(&decoded(h, "subject"));
        (v.from, v.display_from) = first_address(h, "from");
        (v.to, v.display_to) = first_address(h, "to");
        v.cc = first_address(h, "cc").0;
        v
    }
}

/// RFC 5256 2.2: the Date: header in UTC; `fallback` (the internal date) when absent or
/// unparsable.
pub fn sent_date(header: &[u8], fallback: i64) -> i64 {
    header_value(header, "date")
        .map(unfold)
        .and_then(|d| mail_parser::DateTime::parse_rfc822(&String::from_utf8_lossy(&d)))
        .map(|d| d.to_timestamp())
        .unwrap_or(fallback)
}

/// Order two messages by the criteria, the sequence number breaking ties (RFC 5256 3).
pub fn compare(a: &SortValues, b: &SortValues, criteria: &[SortCriterion]) -> Ordering {
    for c in criteria {
        let o = match c.key {
            SortKey::Arrival => a.arrival.cmp(&b.arrival),
            SortKey::Size => a.size.cmp(&b.size),
            SortKey::Date => a.date.cmp(&b.date),
            SortKey::Subject => a.subject.cmp(&b.subject),
            SortKey::From => a.from.cmp(&b.from),
            SortKey::To => a.to.cmp(&b.to),
            SortKey::Cc => a.cc.cmp(&b.cc),
            SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
            SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
        };
        let o = if c.reverse { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.seq.cmp(&b.seq)
}

/// A header as text with RFC 2047 words decoded.
pub fn decoded(header: &[u8], name: &str) -> String {
    header_value(header, name).map(decode_encoded_words).unwrap_or_default()
}

/// (addr-mailbox, display value) of the first mailbox of an address field, lower-cased
/// (the i;unicode-casemap comparison of RFC 5256 §2.2, near enough). RFC 5256 §3: FROM,
/// TO and CC sort by the addr-mailbox (local part) of the first address. RFC 5957 §3:
/// DISPLAYFROM/DISPLAYTO by its display name, RFC 2047-decoded, or by its addr-spec when
/// it has none. Parsed by `header_address`, as ENVELOPE shows the address.
fn first_address(header: &[u8], name: &str) -> (String, String) {
    let Some(first) = header_value(header, name).and_then(|v| parse_address_list(v).mailboxes().next().cloned()) else {
        return (String::new(), String::new());
    };
    let display = first
        .name
        .as_deref()
        .map(|n| decode_encoded_words(n.as_bytes()))
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| first.address());
    (first.local.to_lowercase(), display.to_lowercase())
}

/// RFC 5256 2.1 base subject: drop `Re:`, `Fwd:`, `Fw:`, `[blob]` prefixes, `(fwd)`
/// trailers and `[Fwd: ...]` wrappers; collapse whitespace; compare case-insensitively.
pub fn base_subject(subject: &str) -> String {
    let mut s: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    s = s.to_lowercase();
    loop {
        let before = s.clone();
        // (2) trailers
        loop {
            let t = s.trim_end();
            match t.strip_suffix("(fwd)") {
                Some(rest) => s = rest.trim_end().to_string(),
                None => {
                    s = t.to_string();
                    break;
                }
            }
        }
        // (3)/(4) leaders
        loop {
            let t = s.trim_start().to_string();
            if let Some(rest) = strip_refwd(&t) {
                s = rest;
                continue;
            }
            if let Some(rest) = strip_blob(&t)
                && !rest.trim().is_empty()
            {
                s = rest;
                continue;
            }
            s = t;
            break;
        }
        // (6) [fwd: ...] wrapper
        if let Some(inner) = s.strip_prefix("[fwd:").and_then(|r| r.strip_suffix(']')) {
            s = inner.trim().to_string();
        }
        if s == before {
            return s;
        }
    }
}

/// `("re" / ("fw" ["d"])) *WSP [subj-blob] ":"` at the start.
fn strip_refwd(s: &str) -> Option<String> {
    let rest = s.strip_prefix("re").or_else(|| s.strip_prefix("fwd")).or_else(|| s.strip_prefix("fw"))?;
    let rest = rest.trim_start();
    let rest = match strip_blob(rest) {
        Some(r) => r,
        None => rest.to_string(),
    };
    rest.trim_start().strip_prefix(':').map(str::to_string)
}

/// `"[" *BLOBCHAR "]" *WSP` at the start.
fn strip_blob(s: &str) -> Option<String> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(['[', ']'])?;
    if rest.as_bytes().get(end) != Some(&b']') {
        return None;
    }
    Some(rest[end + 1..].trim_start().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        assert_eq!(base_subject("Re: Fwd: [list] Hello  world (fwd)"), "hello world");
        assert_eq!(base_subject("RE [x]: re: hi"), "hi");
        assert_eq!(base_subject("[Fwd: Re: lunch]"), "lunch");
        assert_eq!(base_subject("[only a blob]"), "[only a blob]");
        assert_eq!(base_subject("Reply needed"), "reply needed");
        assert_eq!(base_subject(""), "");
        assert_eq!(base_subject("re:"), "");
        // RFC 5256 2.1 steps (2)-(6) repeated until nothing changes
        assert_eq!(base_subject("[Fwd: Re: lunch] (fwd)"), "lunch");
        assert_eq!(base_subject("Fwd: [Fwd: x]"), "x");
        assert_eq!(base_subject("[PATCH] [v2] Re: x"), "x");
        assert_eq!(base_subject("Re[2]:\tRe:  x  (fwd) (FWD)"), "x");
    }

    #[test]
    fn values_and_order() {
        let a = SortValues::new(
            1,
            100,
            10,
            Some(b"From: Zed <a@x>\r\nSubject: Re: B\r\nDate: Mon, 3 Feb 2025 10:00:00 +0000\r\n\r\n"),
        );
        let b = SortValues::new(
            2,
            50,
            20,
            Some(b"From: Amy <z@x>\r\nSubject: a\r\nDate: Mon, 3 Feb 2025 09:00:00 +0000\r\n\r\n"),
        );
        let crit = |key, reverse| [SortCriterion { reverse, key }];
        assert_eq!(compare(&a, &b, &crit(SortKey::Subject, false)), Ordering::Greater);
        assert_eq!(compare(&a, &b, &crit(SortKey::From, false)), Ordering::Less);
        assert_eq!(compare(&a, &b, &crit(SortKey::DisplayFrom, false)), Ordering::Greater);
        assert_eq!(compare(&a, &b, &crit(SortKey::Date, false)), Ordering::Greater);
        assert_eq!(compare(&a, &b, &crit(SortKey::Arrival, true)), Ordering::Less);
        assert_eq!(compare(&a, &b, &crit(SortKey::Size, false)), Ordering::Less);
        assert_eq!(compare(&a, &a, &crit(SortKey::Cc, false)), Ordering::Equal);
    }

    #[test]
    fn garbage_subjects_never_panic() {
        for s in ["[", "]", "re[", "re [x", "[fwd:", "(fwd)(fwd)", "fw:[]:", "ü[ä]:"] {
            let _ = base_subject(s);
        }
    }
}
