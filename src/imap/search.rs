//! SEARCH evaluation (RFC 9051 6.4.4): does one message match a key? Metadata keys (flags,
//! UIDs, sizes, internal date, modseq) use the index only; header/body keys need the
//! message bytes, and `needs_content` tells the session whether to read the file at all,
//! so `SEARCH UNSEEN` on a big mailbox never opens a message file.
//!
//! Text matching is a case-insensitive substring test (RFC 9051: "case-insensitive
//! substring") on the unfolded header value and its RFC 2047-decoded form (for address
//! keys also on each parsed address: display name, addr-spec, group name), and for BODY/TEXT
//! on the transfer-decoded text parts, so `caf=C3=A9` in quoted-printable matches "café".

use std::cell::OnceCell;

use super::command::{Flag, SearchKey};
use super::parser::lexer::days_from_civil;
use super::render::mime::{self, MimePart, PartKind, decode_encoded_words, header_fields, unfold};
use super::render::section::binary;
use super::sequence::SequenceSet;
use crate::header_address::{Entry, parse_address_list};

/// What the index knows about one message, plus its bytes when the key needs them.
#[derive(Debug, Clone, Copy)]
pub struct SearchMessage<'a> {
    pub seq: u32,
    pub uid: u32,
    pub flags: &'a [Flag],
    pub modseq: u64,
    pub size: u64,
    /// Seconds since the epoch.
    pub internal_date: i64,
    /// RFC 3501 `\Recent`: this session is the first to see the message.
    pub recent: bool,
    /// The message, or only its header block when the key does not [`needs_body`].
    pub raw: Option<&'a [u8]>,
}

/// The mailbox-wide facts a key may refer to.
#[derive(Debug, Clone, Copy)]
pub struct SearchScope<'a> {
    pub max_seq: u32,
    pub max_uid: u32,
    /// The SEARCHRES saved result (`$`), as UIDs (RFC 5182 2.1).
    pub saved: &'a [u32],
}

/// Does evaluating `key` need the message bytes?
pub fn needs_content(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(keys) => keys.iter().any(needs_content),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::Not(k) => needs_content(k),
        SearchKey::Header(..)
        | SearchKey::Bcc(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Subject(_)
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        _ => false,
    }
}

/// Does evaluating `key` need more than the top-level header block (BODY, TEXT)?
pub fn needs_body(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(keys) => keys.iter().any(needs_body),
        SearchKey::Or(a, b) => needs_body(a) || needs_body(b),
        SearchKey::Not(k) => needs_body(k),
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        _ => false,
    }
}

/// Does the key use the SEARCHRES result `$`?
pub fn uses_saved(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(keys) => keys.iter().any(uses_saved),
        SearchKey::Or(a, b) => uses_saved(a) || uses_saved(b),
        SearchKey::Not(k) => uses_saved(k),
        SearchKey::SequenceSet(SequenceSet::Saved) | SearchKey::Uid(SequenceSet::Saved) => true,
        _ => false,
    }
}

/// Evaluate `key` for one message.
pub fn matches(key: &SearchKey, msg: &SearchMessage<'_>, scope: &SearchScope<'_>) -> bool {
    let ctx = Ctx { msg, scope, tree: OnceCell::new() };
    ctx.eval(key)
}

struct Ctx<'a, 'b> {
    msg: &'b SearchMessage<'a>,
    scope: &'b SearchScope<'b>,
    tree: OnceCell<Option<MimePart>>,
}

impl Ctx<'_, '_> {
    fn tree(&self) -> Option<&MimePart> {
        self.tree.get_or_init(|| self.msg.raw.map(mime::parse)).as_ref()
    }

    /// The top-level header block, found without parsing the MIME structure (header
    /// searches over a big mailbox need nothing else; the tree's root has the same range).
    fn header_block(&self) -> Option<&[u8]> {
        let raw = self.msg.raw?;
        let (header, _) = mime::split_header(raw, 0..raw.len());
        Some(&raw[header])
    }

    /// The fields of the top-level header. [`header_fields`] stops at the blank line
    /// itself, so the bytes (the header block or the whole message) need no split first:
    /// that split was a second pass over every line of every message a header key reads.
    fn fields(&self) -> Option<mime::HeaderFields<'_>> {
        self.msg.raw.map(header_fields)
    }

    fn eval(&self, key: &SearchKey) -> bool {
        let m = self.msg;
        match key {
            SearchKey::All => true,
            SearchKey::And(keys) => keys.iter().all(|k| self.eval(k)),
            SearchKey::Or(a, b) => self.eval(a) || self.eval(b),
            SearchKey::Not(k) => !self.eval(k),
            SearchKey::SequenceSet(SequenceSet::Saved) | SearchKey::Uid(SequenceSet::Saved) => {
                self.scope.saved.contains(&m.uid)
            }
            SearchKey::SequenceSet(set) => set.contains(m.seq, self.scope.max_seq),
            SearchKey::Uid(set) => set.contains(m.uid, self.scope.max_uid),
            SearchKey::Flag(f) => has_flag(m.flags, f),
            SearchKey::NotFlag(f) => !has_flag(m.flags, f),
            SearchKey::Recent => m.recent,
            SearchKey::New => m.recent && !has_flag(m.flags, &Flag::Seen),
            SearchKey::Old => !m.recent,
            SearchKey::Larger(n) => m.size > *n,
            SearchKey::Smaller(n) => m.size < *n,
            SearchKey::ModSeq(n) => m.modseq >= *n,
            SearchKey::Before(d) => day_of(m.internal_date) < *d,
            SearchKey::On(d) => day_of(m.internal_date) == *d,
            SearchKey::Since(d) => day_of(m.internal_date) >= *d,
            SearchKey::SentBefore(d) => self.sent_day().is_some_and(|s| s < *d),
            SearchKey::SentOn(d) => self.sent_day().is_some_and(|s| s == *d),
            SearchKey::SentSince(d) => self.sent_day().is_some_and(|s| s >= *d),
            SearchKey::Header(name, value) => self.header_contains(name, value),
            SearchKey::Bcc(v) => self.address_contains("bcc", v),
            SearchKey::Cc(v) => self.address_contains("cc", v),
            SearchKey::From(v) => self.address_contains("from", v),
            SearchKey::To(v) => self.address_contains("to", v),
            SearchKey::Subject(v) => self.header_contains("subject", v),
            SearchKey::Body(v) => self.body_contains(v),
            SearchKey::Text(v) => {
                self.header_block().is_some_and(|h| contains_ci(&String::from_utf8_lossy(h), v))
                    || self.body_contains(v)
            }
        }
    }

    /// Day of the Date: header in its own zone (RFC 9051: "disregarding time and
    /// timezone"); the internal date when there is no parsable Date.
    fn sent_day(&self) -> Option<i64> {
        let parsed = mime::header_value(self.msg.raw?, "date")
            .map(unfold)
            .and_then(|v| mail_parser::DateTime::parse_rfc822(&String::from_utf8_lossy(&v)));
        match parsed {
            Some(dt) => days_from_civil(dt.year as i64, dt.month as u32, dt.day as u32),
            None => Some(day_of(self.msg.internal_date)),
        }
    }

    fn header_contains(&self, name: &str, needle: &str) -> bool {
        let Some(fields) = self.fields() else {
            return false;
        };
        fields
            .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
            // RFC 9051: HEADER with an empty string matches every message with the field.
            .any(|f| {
                needle.is_empty() || quick_answer(f.value, needle).unwrap_or_else(|| text_matches(f.value, needle))
            })
    }

    /// FROM/TO/CC/BCC (RFC 3501 §6.4.4: the field "contains the specified string"): the
    /// field as written and decoded (comments included), and each address as the reader
    /// sees it — decoded display name, `local@domain` (quoting, CFWS and obsolete spacing
    /// undone by `header_address`), `name <local@domain>` and group names.
    fn address_contains(&self, name: &str, needle: &str) -> bool {
        let Some(fields) = self.fields() else {
            return false;
        };
        fields.filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).any(|f| {
            needle.is_empty()
                || quick_answer(f.value, needle)
                    .unwrap_or_else(|| text_matches(f.value, needle) || address_forms_match(f.value, needle))
        })
    }

    fn body_contains(&self, needle: &str) -> bool {
        let (Some(raw), Some(root)) = (self.msg.raw, self.tree()) else {
            return false;
        };
        if contains_ci(&String::from_utf8_lossy(&raw[root.body.clone()]), needle) {
            return true;
        }
        let mut found = false;
        walk_leaves(root, &mut Vec::new(), &mut |path, part| {
            if found || !part.content_type.main.eq_ignore_ascii_case("text") {
                return;
            }
            if let Ok(bytes) = binary(raw, root, path) {
                let charset = part.content_type.param("charset").unwrap_or("us-ascii");
                found = contains_ci(&to_text(&bytes, charset), needle);
            }
        });
        found
    }
}

fn walk_leaves(part: &MimePart, path: &mut Vec<u32>, f: &mut dyn FnMut(&[u32], &MimePart)) {
    match &part.kind {
        PartKind::Multipart(children) => {
            for (i, c) in children.iter().enumerate() {
                path.push(i as u32 + 1);
                walk_leaves(c, path, f);
                path.pop();
            }
        }
        _ => {
            if path.is_empty() {
                f(&[1], part);
            } else {
                f(path, part);
            }
        }
    }
}

/// Bytes in a declared charset -> text. UTF-8 and ASCII decode as such; Latin-1 and
/// Windows-1252 map byte to code point (close enough for search); anything else lossily.
fn to_text(bytes: &[u8], charset: &str) -> String {
    let cs = charset.to_ascii_lowercase();
    if matches!(cs.as_str(), "iso-8859-1" | "latin1" | "windows-1252" | "iso-8859-15") {
        bytes.iter().map(|b| *b as char).collect()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// A raw header value matches when its unfolded text or its RFC 2047-decoded text holds
/// the needle, white space runs counting as one space (a fold may have left a tab).
fn text_matches(value: &[u8], needle: &str) -> bool {
    let raw = String::from_utf8_lossy(&unfold(value)).into_owned();
    let decoded = decode_encoded_words(value);
    [raw, decoded].iter().any(|text| contains_ci(text, needle) || contains_ci(&collapse_space(text), needle))
}

/// Does any address of an address field, in a form a reader knows it by, hold the needle?
fn address_forms_match(value: &[u8], needle: &str) -> bool {
    any_address_form(value, |form| contains_ci(form, needle))
}

/// Does `hit` hold for any form a reader knows an address of this field by: group names,
/// decoded display names, `local@domain` and `name <local@domain>`? Stops at the first.
fn any_address_form(value: &[u8], mut hit: impl FnMut(&str) -> bool) -> bool {
    let list = parse_address_list(value);
    let group_hit = list.entries.iter().any(|e| match e {
        Entry::Group { name, .. } => hit(&decode_encoded_words(name.as_bytes())),
        Entry::Mailbox(_) => false,
    });
    group_hit
        || list.mailboxes().any(|m| {
            let address = m.address();
            if hit(&address) {
                return true;
            }
            let Some(name) = m.name.as_deref().map(|n| decode_encoded_words(n.as_bytes())) else {
                return false;
            };
            hit(&name) || hit(&format!("{name} <{address}>"))
        })
}

/// The answer for one header value read straight off its bytes, when they settle it;
/// `None` sends the value the full way (unfolding, RFC 2047 decoding, address parsing).
/// A header SEARCH over a big mailbox so decodes and parses only the few values that
/// might match but do not hold the needle as written.
///
/// Both tests are for ASCII. **Yes** when the value holds the needle as written (a
/// needle without CR, LF or white space at its ends stays whole in the unfolded text).
/// **No** for values in which every form re-joins the value's own words with separators:
/// no encoded words (`=?`), quoted pairs (`\`), domain literals (`[`, whose spaces are
/// dropped) or bare CRs (unfolding drops them and joins their neighbours). There each run
/// of word bytes (atext without the dot) in a form — the unfolded and collapsed text, the
/// display name, `local@domain`, `name <local@domain>`, a group name — lies inside one
/// such run of the value, so a needle with a run the value lacks is in no form.
fn quick_answer(value: &[u8], needle: &str) -> Option<bool> {
    if !value.is_ascii() || !needle.is_ascii() {
        return None;
    }
    let n = needle.as_bytes();
    let whole = !n.iter().any(|b| matches!(b, b'\r' | b'\n')) && mime::trim(n).len() == n.len();
    if whole && find_ascii_ci(value, n) {
        return Some(true);
    }
    let plain = !value.iter().any(|b| matches!(b, b'\\' | b'['))
        && memchr::memmem::find(value, b"=?").is_none()
        && memchr::memchr_iter(b'\r', value).all(|i| value.get(i + 1) == Some(&b'\n'));
    let missing = || n.split(|b| !is_word_byte(*b)).any(|run| !run.is_empty() && !find_ascii_ci(value, run));
    (plain && missing()).then_some(false)
}

/// `atext` (RFC 5322 §3.2.3) without the dot: what the address parser keeps together.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// ASCII case-insensitive substring test, led by a memchr for the needle's first byte
/// in either case.
fn find_ascii_ci(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let Some(last_start) = haystack.len().checked_sub(needle.len()) else {
        return false;
    };
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    memchr::memchr2_iter(lower, upper, &haystack[..=last_start])
        .any(|i| haystack[i + 1..i + needle.len()].eq_ignore_ascii_case(rest))
}

/// Runs of white space as one space.
fn collapse_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle.is_ascii() {
        return find_ascii_ci(haystack.as_bytes(), needle.as_bytes());
    }
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn has_flag(flags: &[Flag], f: &Flag) -> bool {
    flags.iter().any(|x| match (x, f) {
        (Flag::Keyword(a), Flag::Keyword(b)) => a.eq_ignore_ascii_case(b),
        _ => x == f,
    })
}

fn day_of(secs: i64) -> i64 {
    secs.div_euclid(86400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::command::CommandBody;
    use crate::imap::parser::parse_command;

    const MSG: &[u8] = b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\n\
To: Team <team@example.org>\r\nSubject: Quarterly numbers\r\n\
Date: Mon, 3 Feb 2025 23:30:00 -0800\r\nX-Spam: yes\r\n\
Content-Type: multipart/alternative; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Le caf=C3=A9 est pr=C3=AAt\r\n--b--\r\n";

    fn search(criteria: &str, flags: &[Flag], raw: Option<&[u8]>) -> bool {
        let CommandBody::Search(s) = parse_command(format!("a SEARCH {criteria}\r\n").as_bytes()).unwrap().body else {
            panic!()
        };
        let msg = SearchMessage {
            seq: 3,
            uid: 30,
            flags,
            modseq: 7,
            size: 2000,
            internal_date: 1_738_656_000, // 2025-02-04 08:00 UTC
            recent: false,
            raw,
        };
        let scope = SearchScope { max_seq: 5, max_uid: 50, saved: &[30] };
        matches(&s.key, &msg, &scope)
    }

    #[test]
    fn metadata_keys_do_not_need_content() {
        let seen = [Flag::Seen, Flag::Keyword("$Work".into())];
        assert!(search("SEEN", &seen, None));
        assert!(search("UNFLAGGED KEYWORD $work", &seen, None));
        assert!(!search("UNSEEN", &seen, None));
        assert!(search("3 UID 30:* LARGER 1999 SMALLER 2001 MODSEQ 7", &[], None));
        assert!(search("$", &[], None));
        assert!(search("*:3", &[], None));
        assert!(!search("1:2", &[], None));
        assert!(search("OR 1 NOT 2", &[], None));
        assert!(search("ON 4-Feb-2025 SINCE 4-Feb-2025 BEFORE 5-Feb-2025", &[], None));
        assert!(!search("NEW", &[], None));
        assert!(search("OLD", &[], None));
    }

    #[test]
    fn header_and_body_keys() {
        let r = Some(MSG);
        assert!(search("FROM jürgen", &[], r));
        assert!(search("FROM J@EXAMPLE.ORG", &[], r));
        assert!(search("TO team SUBJECT quarterly", &[], r));
        assert!(!search("CC team", &[], r));
        assert!(search("HEADER X-Spam \"\"", &[], r));
        assert!(search("HEADER x-spam YES", &[], r));
        assert!(!search("HEADER X-Other \"\"", &[], r));
        assert!(search("BODY café", &[], r));
        assert!(search("BODY prêt", &[], r));
        assert!(search("TEXT quarterly", &[], r));
        assert!(!search("BODY quarterly", &[], r));
        // Date: header day in its own zone (3 Feb), not the UTC day (4 Feb).
        assert!(search("SENTON 3-Feb-2025", &[], r));
        assert!(search("SENTBEFORE 4-Feb-2025 SENTSINCE 2-Feb-2025", &[], r));
        assert!(!search("FROM x", &[], None));
        // RFC 2047 5(2): encoded words in a comment are decoded too.
        let commented = b"From: bob@example.com (=?utf-8?q?B=C3=B6b?= the builder)\r\n\r\n";
        assert!(search("CHARSET UTF-8 FROM b\u{f6}b", &[], Some(commented)));
        assert!(search("FROM \"the builder\"", &[], Some(commented)));
    }

    /// Whenever the quick answer speaks, it is the full answer: for every substring of
    /// every form of these values, in both cases, and for needles they do not hold.
    #[test]
    fn the_quick_answer_is_the_full_answer() {
        let values: &[&[u8]] = &[
            b" Alice Example <alice.ex@Example.ORG>",
            b" \"Last, First\" <first.last@example.org>, bob@example.com (Bob the builder)",
            b" j . doe @ example . org",
            b" a(x).b@y.example, c.(z)d@e.example",
            b" \"john\".doe@x.example, \"ja\"\"ne\" <jane@x.example>",
            b" Team: ann@x.example,\r\n\tben@x.example;, <@route.example:r@x.example>",
            b" Carol\r\n Smith <carol@x.example>",
            b" Undisclosed recipients:;",
            b" john(comment)doe@x.example, x@a(c)b.example",
            b" Name<name@x.example>",
            b" =?utf-8?q?J=C3=BCrgen?= <j@example.org>",
            b" \"a\\\"b\" <x@example.org>",
            b" x@[127.0. 0.1], y@[ab cd]",
            b" ab\rcd@example.org",
        ];
        let full = |value: &[u8], needle: &str| text_matches(value, needle) || address_forms_match(value, needle);
        let mut spoke = 0;
        for value in values {
            let mut forms: Vec<String> = Vec::new();
            any_address_form(value, |form| {
                forms.push(form.to_string());
                false
            });
            let text = String::from_utf8_lossy(&unfold(value)).into_owned();
            forms.push(collapse_space(&text));
            forms.push(decode_encoded_words(value));
            forms.push(text);
            let mut needles = vec!["mallory".to_string(), "example.net".into(), "zz".into(), " x".into()];
            for form in &forms {
                for start in (0..form.len()).filter(|i| form.is_char_boundary(*i)) {
                    for end in (start + 1..=form.len()).filter(|i| form.is_char_boundary(*i)) {
                        needles.push(form[start..end].to_string());
                        needles.push(form[start..end].to_uppercase());
                    }
                }
            }
            for needle in &needles {
                if let Some(answer) = quick_answer(value, needle) {
                    spoke += 1;
                    assert_eq!(answer, full(value, needle), "{needle:?} in {value:?}");
                }
            }
        }
        assert!(spoke > 10_000, "the quick answer spoke {spoke} times");
        assert_eq!(quick_answer(b" Alice <alice@example.org>", "mallory"), Some(false));
        assert_eq!(quick_answer(b" Alice <alice@example.org>", "alice@EXAMPLE"), Some(true));
        // What it cannot judge goes the full way.
        assert_eq!(quick_answer(b" =?utf-8?q?J=C3=BCrgen?= <j@example.org>", "zz"), None);
        assert_eq!(quick_answer(b" x@[127.0. 0.1]", "zz"), None);
        assert_eq!(quick_answer(b" J\xc3\xbcrgen <j@example.org>", "zz"), None);
    }

    #[test]
    fn ascii_search_ignores_case_and_finds_every_position() {
        assert!(find_ascii_ci(b"Hello World", b"wORLD"));
        assert!(find_ascii_ci(b"aaab", b"AAB"));
        assert!(find_ascii_ci(b"x", b""));
        assert!(!find_ascii_ci(b"ab", b"abc"));
        assert!(!find_ascii_ci(b"Hello", b"hellp"));
        assert!(find_ascii_ci(b"1-2@3", b"2@3"));
    }

    #[test]
    fn needs_content_only_for_text_keys() {
        let key = |c: &str| {
            let CommandBody::Search(s) = parse_command(format!("a SEARCH {c}").as_bytes()).unwrap().body else {
                panic!()
            };
            s.key
        };
        assert!(!needs_content(&key("UNSEEN 1:* NOT DELETED")));
        assert!(needs_content(&key("OR SEEN BODY x")));
        assert!(uses_saved(&key("NOT $")));
    }
}
