//! The MIME tree of a raw message as IMAP sees it (RFC 9051 6.4.5 part numbering, RFC 2045/
//! 2046 structure): byte ranges of every part's header block and body, its Content-Type, and
//! its children (multipart) or the encapsulated message (message/rfc822). Ranges index the
//! original bytes, so BODY[section] returns exactly what is on disk.
//!
//! Our own small parser rather than mail-parser's part list: IMAP needs exact byte offsets of
//! header blocks and bodies (including the blank line and the CRLF before a boundary), and a
//! parser that is total on hostile input with depth and part-count bounds.

use std::ops::Range;

use super::mime_source::{MimeSource, SliceSource};

/// Deepest nesting of multiparts/messages we descend into; deeper content is a leaf.
const MAX_DEPTH: usize = 24;
/// Most parts in one message tree; the rest of a hostile message becomes one leaf.
const MAX_PARTS: usize = 5000;

/// A Content-Type as written (case kept for the answer; compare case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub main: String,
    pub sub: String,
    pub params: Vec<(String, String)>,
}

impl ContentType {
    fn text_plain() -> Self {
        ContentType { main: "text".into(), sub: "plain".into(), params: vec![("charset".into(), "us-ascii".into())] }
    }

    fn message_rfc822() -> Self {
        ContentType { main: "message".into(), sub: "rfc822".into(), params: Vec::new() }
    }

    pub fn is(&self, main: &str, sub: &str) -> bool {
        self.main.eq_ignore_ascii_case(main) && self.sub.eq_ignore_ascii_case(sub)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    Single,
    Multipart(Vec<MimePart>),
    /// message/rfc822 (or message/global): the encapsulated message's root part.
    Message(Box<MimePart>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimePart {
    /// Header block including its terminating blank line (may be empty).
    pub header: Range<usize>,
    pub body: Range<usize>,
    pub content_type: ContentType,
    pub kind: PartKind,
}

/// Parse the whole message.
pub fn parse(msg: &[u8]) -> MimePart {
    parse_source(&mut SliceSource(msg))
}

/// Parse a message from any source of its bytes: in memory, or a file read through a
/// window (FETCH of a body part of a large message, `mime_source`). The same parser for
/// both, so a part streamed from the file is exactly the part served from memory.
pub fn parse_source<S: MimeSource>(src: &mut S) -> MimePart {
    let mut budget = MAX_PARTS;
    let all = 0..src.len();
    parse_part(src, all, ContentType::text_plain(), 0, &mut budget)
}

fn parse_part<S: MimeSource>(
    src: &mut S,
    range: Range<usize>,
    default_type: ContentType,
    depth: usize,
    budget: &mut usize,
) -> MimePart {
    *budget = budget.saturating_sub(1);
    let (header, body) = split_header_in(src, range);
    let content_type = header_value(&src.block(header.clone()), "content-type")
        .and_then(|v| parse_content_type(&unfold(v)))
        .unwrap_or(default_type);
    let can_descend = depth < MAX_DEPTH && *budget > 0;
    let kind = if content_type.main.eq_ignore_ascii_case("multipart") && can_descend {
        match content_type.param("boundary").filter(|b| !b.is_empty()) {
            Some(boundary) => {
                let child_default = if content_type.sub.eq_ignore_ascii_case("digest") {
                    ContentType::message_rfc822()
                } else {
                    ContentType::text_plain()
                };
                let mut children = Vec::new();
                for r in split_multipart(src, body.clone(), boundary.as_bytes()) {
                    if *budget == 0 {
                        break;
                    }
                    children.push(parse_part(src, r, child_default.clone(), depth + 1, budget));
                }
                if children.is_empty() {
                    // A multipart needs 1*body in BODYSTRUCTURE: present an empty text part.
                    children.push(MimePart {
                        header: body.end..body.end,
                        body: body.end..body.end,
                        content_type: ContentType::text_plain(),
                        kind: PartKind::Single,
                    });
                }
                PartKind::Multipart(children)
            }
            None => PartKind::Single,
        }
    } else if content_type.main.eq_ignore_ascii_case("message")
        && (content_type.sub.eq_ignore_ascii_case("rfc822") || content_type.sub.eq_ignore_ascii_case("global"))
        && can_descend
    {
        PartKind::Message(Box::new(parse_part(src, body.clone(), ContentType::text_plain(), depth + 1, budget)))
    } else {
        PartKind::Single
    };
    MimePart { header, body, content_type, kind }
}

/// Split `range` into the header block (with its blank line) and the body.
pub fn split_header(msg: &[u8], range: Range<usize>) -> (Range<usize>, Range<usize>) {
    split_header_in(&mut SliceSource(msg), range)
}

fn split_header_in<S: MimeSource>(src: &mut S, range: Range<usize>) -> (Range<usize>, Range<usize>) {
    let (start, end) = (range.start, range.end);
    if src.starts_with(start, end, b"\r\n") {
        return (start..start + 2, start + 2..end);
    }
    if src.starts_with(start, end, b"\n") {
        return (start..start + 1, start + 1..end);
    }
    let mut pos = start;
    while let Some(lf) = src.find_byte(b'\n', pos..end) {
        let after = lf + 1;
        if src.starts_with(after, end, b"\r\n") {
            return (start..after + 2, after + 2..end);
        }
        if src.starts_with(after, end, b"\n") {
            return (start..after + 1, after + 1..end);
        }
        pos = after;
    }
    (range, end..end)
}

/// Body ranges of the parts of a multipart body. The CRLF before a delimiter belongs to the
/// delimiter (RFC 2046 5.1.1); preamble and epilogue are dropped.
fn split_multipart<S: MimeSource>(src: &mut S, body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut line_start = body.start;
    while line_start < body.end {
        let line_end = src.find_byte(b'\n', line_start..body.end).map(|p| p + 1).unwrap_or(body.end);
        let after = line_start + 2 + boundary.len();
        if after <= line_end
            && src.starts_with(line_start, line_end, b"--")
            && src.starts_with(line_start + 2, line_end, boundary)
        {
            let close = src.starts_with(after, line_end, b"--");
            if close || src.all_bytes(after..line_end, |b| b.is_ascii_whitespace()) {
                if let Some(s) = current {
                    let mut end = line_start;
                    if end > s && src.byte(end - 1) == Some(b'\n') {
                        end -= 1;
                        if end > s && src.byte(end - 1) == Some(b'\r') {
                            end -= 1;
                        }
                    }
                    parts.push(s..end.max(s));
                }
                if close {
                    return parts;
                }
                current = Some(line_end);
            }
        }
        line_start = line_end;
    }
    if let Some(s) = current {
        parts.push(s..body.end);
    }
    parts
}

/// One header field: name, raw value (folded, without the final line end) and the whole
/// field with its line end (for HEADER.FIELDS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    pub raw: &'a [u8],
}

/// The fields of a header block, in order. Lines that are neither a field nor a
/// continuation are skipped. An iterator (no allocation): header lookups run per message
/// on every ENVELOPE and header SEARCH.
pub fn header_fields(block: &[u8]) -> HeaderFields<'_> {
    HeaderFields { block, pos: 0 }
}

/// Iterator over the fields of a header block (see [`header_fields`]).
pub struct HeaderFields<'a> {
    block: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for HeaderFields<'a> {
    type Item = HeaderField<'a>;

    fn next(&mut self) -> Option<HeaderField<'a>> {
        let block = self.block;
        while self.pos < block.len() {
            let pos = self.pos;
            let mut end = memchr::memchr(b'\n', &block[pos..]).map(|r| pos + r + 1).unwrap_or(block.len());
            let line = &block[pos..end];
            if line == b"\r\n" || line == b"\n" {
                self.pos = block.len();
                return None;
            }
            // continuation lines
            while end < block.len() && matches!(block[end], b' ' | b'\t') {
                end = memchr::memchr(b'\n', &block[end..]).map(|r| end + r + 1).unwrap_or(block.len());
            }
            self.pos = end;
            let raw = &block[pos..end];
            if let Some(colon) = memchr::memchr(b':', line) {
                let name = trim(&line[..colon]);
                if !name.is_empty() && !name.iter().any(|b| b.is_ascii_whitespace()) {
                    let mut value = &raw[colon + 1..];
                    value = value.strip_suffix(b"\n").unwrap_or(value);
                    value = value.strip_suffix(b"\r").unwrap_or(value);
                    return Some(HeaderField { name, value, raw });
                }
            }
        }
        None
    }
}

/// First value of a field (case-insensitive name).
pub fn header_value<'a>(block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header_fields(block).find(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).map(|f| f.value)
}

/// Unfold (drop CR/LF of folded lines, RFC 5322 2.2.3) and trim.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    unfold_into(value, &mut Vec::new()).to_vec()
}

/// [`unfold`] into a caller's buffer (cleared first), for loops that unfold many values.
pub fn unfold_into<'b>(value: &[u8], buf: &'b mut Vec<u8>) -> &'b [u8] {
    buf.clear();
    buf.extend(value.iter().copied().filter(|b| *b != b'\r' && *b != b'\n'));
    trim(buf)
}

/// Unstructured header text with its RFC 2047 encoded words decoded (also inside what
/// was a quoted display name or a comment, as mail clients write them), folding undone.
/// Text without encoded words is returned as it is.
pub fn decode_encoded_words(text: &[u8]) -> String {
    let unfolded = unfold(text);
    if memchr::memmem::find(&unfolded, b"=?").is_none() {
        return String::from_utf8_lossy(&unfolded).into_owned();
    }
    let mut mini = b"Subject: ".to_vec();
    mini.extend_from_slice(&unfolded);
    mini.extend_from_slice(b"\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse_headers(&mini)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&unfolded).into_owned())
}

pub fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map(|p| p + 1).unwrap_or(start);
    &v[start..end.max(start)]
}

/// `type/subtype *(; name=value)` (RFC 2045 5.1). Comments are not stripped inside
/// values; a value may be a token or a quoted-string.
pub fn parse_content_type(value: &[u8]) -> Option<ContentType> {
    let text = String::from_utf8_lossy(value);
    let mut parts = split_params(&text);
    let first = parts.next()?;
    let (main, sub) = first.split_once('/')?;
    let (main, sub) = (main.trim(), sub.trim());
    if main.is_empty() || sub.is_empty() {
        return None;
    }
    Some(ContentType { main: main.to_string(), sub: sub.to_string(), params: parse_params(parts) })
}

/// Parameters after the first `;`-separated item (also used for Content-Disposition).
pub fn parse_params<'a>(parts: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut params = Vec::new();
    for p in parts.take(64) {
        if let Some((name, value)) = p.split_once('=') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                unquote(&value[1..value.len() - 1])
            } else {
                value.to_string()
            };
            if !name.is_empty() {
                params.push((name, value));
            }
        }
    }
    params
}

/// Split on `;` outside quoted strings.
pub fn split_params(text: &str) -> impl Iterator<Item = &str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, ch) in text.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => {
                pieces.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&text[start..]);
    pieces.into_iter().filter(|p| !p.trim().is_empty())
}

fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for ch in s.chars() {
        if escaped {
            out.push(ch);
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const MULTI: &[u8] = b"From: a@b.c\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--XX--\r\nepilogue\r\n";

    #[test]
    fn splits_multipart_with_nested_message() {
        let root = parse(MULTI);
        let PartKind::Multipart(children) = &root.kind else { panic!("{root:?}") };
        assert_eq!(children.len(), 2);
        assert_eq!(&MULTI[children[0].body.clone()], b"hello");
        let PartKind::Message(inner) = &children[1].kind else { panic!() };
        assert_eq!(&MULTI[inner.header.clone()], b"Subject: inner\r\n\r\n");
        assert_eq!(&MULTI[inner.body.clone()], b"inner body");
    }

    #[test]
    fn header_fields_with_folding() {
        let block = b"Subject: a\r\n b\r\nX: y\r\nbroken line\r\n\r\n";
        let f: Vec<_> = header_fields(block).collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].value, b" a\r\n b");
        assert_eq!(unfold(f[0].value), b"a b");
        assert_eq!(f[1].raw, b"X: y\r\n");
        // Over a whole message the fields end at the blank line, CRLF or bare LF: body
        // lines that look like fields are not fields.
        for msg in [&b"From: a\r\n b\r\n\r\nFrom: body\r\n"[..], b"From: a\n b\n\nFrom: body\n", b"\r\nFrom: body\r\n"]
        {
            let names: Vec<_> = header_fields(msg).map(|f| f.value).collect();
            let (header, _) = split_header(msg, 0..msg.len());
            assert_eq!(names, header_fields(&msg[header]).map(|f| f.value).collect::<Vec<_>>());
            assert!(names.len() <= 1 && !names.iter().any(|v| v.ends_with(b"body")), "{names:?}");
        }
    }

    #[test]
    fn content_type_params() {
        let ct = parse_content_type(b"Text/HTML; charset=\"utf-8\"; name=\"a;b.html\"").unwrap();
        assert!(ct.is("text", "html"));
        assert_eq!(ct.param("CHARSET"), Some("utf-8"));
        assert_eq!(ct.param("name"), Some("a;b.html"));
        assert_eq!(parse_content_type(b"garbage"), None);
    }

    #[test]
    fn message_without_body_or_header() {
        let root = parse(b"Subject: x\r\n");
        assert_eq!(root.body, 12..12);
        let root = parse(b"\r\nbody");
        assert_eq!(root.header, 0..2);
        let root = parse(b"");
        assert_eq!(root.body, 0..0);
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed = 99u32;
        let pieces: [&[u8]; 8] = [
            b"--XX",
            b"\r\n",
            b"Content-Type: multipart/mixed; boundary=XX",
            b"Content-Type: message/rfc822",
            b"\n",
            b"--",
            b": ",
            b"x",
        ];
        for _ in 0..3000 {
            let mut v = Vec::new();
            for _ in 0..(seed % 40) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                v.extend_from_slice(pieces[(seed >> 16) as usize % pieces.len()]);
            }
            seed = seed.wrapping_add(1);
            let _ = parse(&v);
        }
        // deep nesting is bounded
        let mut deep = Vec::new();
        for _ in 0..200 {
            deep.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        let _ = parse(&deep);
    }
}
