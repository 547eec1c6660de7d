//! Response writing: the one place that decides how a value goes on the wire (atom, quoted
//! string, literal or NIL — RFC 9051 4.3), so every response is well-formed whatever bytes a
//! message holds. Submodules derive FETCH data from raw message bytes: `envelope`,
//! `bodystructure`, `section` (BODY[...] and BINARY[...] extraction).

pub mod bodystructure;
pub mod envelope;
pub mod mime;
pub mod mime_source;
pub mod section;
pub mod transfer;

use super::command::Flag;
use super::parser::lexer::{MONTHS, civil_from_days, is_astring_char};

/// Longest value sent as a quoted string; longer ones go as literals (easier for clients).
const MAX_QUOTED: usize = 1024;

/// Can `s` travel inside a quoted string? Only 7-bit text without CR/LF/NUL: 8-bit goes as
/// a literal, which every client (with or without UTF8=ACCEPT) accepts.
fn quotable(s: &[u8]) -> bool {
    s.len() <= MAX_QUOTED && s.iter().all(|b| (0x01..0x80).contains(b) && *b != b'\r' && *b != b'\n')
}

/// `string`: quoted when possible, else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    if quotable(s) {
        out.push(b'"');
        if memchr::memchr2(b'"', b'\\', s).is_none() {
            out.extend_from_slice(s);
        } else {
            for &b in s {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// `literal`: `{n}` CRLF and the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'{');
    number(out, s.len());
    out.extend_from_slice(b"}\r\n");
    out.extend_from_slice(s);
}

/// A number in decimal, without the formatter and its allocation: responses carry many
/// (a SEARCH result, every FETCH line's sequence number, UID and size).
pub fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A `literal` of message text (BODY[...], RFC822*). A plain literal may not hold NUL
/// (RFC 9051 4.3 `CHAR8`); only BINARY's literal8 may (RFC 3516 4.2). A NUL stored by an
/// APPEND with literal8 goes out as 0x80, as Dovecot sends it, so the response stays
/// parseable for every client.
pub fn text_literal(out: &mut Vec<u8>, s: &[u8]) {
    let start = out.len();
    literal(out, s);
    replace_nuls(&mut out[start..]);
}

/// NUL -> 0x80 in place (see [`text_literal`]); also used on streamed message text.
pub fn replace_nuls(buf: &mut [u8]) {
    let mut from = 0;
    while let Some(p) = memchr::memchr(0, &buf[from..]) {
        buf[from + p] = 0x80;
        from += p + 1;
    }
}

/// `nstring`: NIL for `None`.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => string(out, s),
    }
}

/// `astring`: a bare atom when the text allows it (and is not the word NIL), else string.
pub fn astring(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty() && s.iter().all(|b| is_astring_char(*b) && *b < 0x80) && !s.eq_ignore_ascii_case(b"NIL") {
        out.extend_from_slice(s);
    } else {
        string(out, s);
    }
}

/// `(\Seen $Label)`.
pub fn flag_list<'a>(out: &mut Vec<u8>, flags: impl IntoIterator<Item = &'a Flag>) {
    out.push(b'(');
    for (i, f) in flags.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_str().as_bytes());
    }
    out.push(b')');
}

/// INTERNALDATE `date-time` for seconds since the epoch, in UTC:
/// `"17-Jul-1996 09:44:25 +0000"` (with quotes).
pub fn date_time(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let month = MONTHS.get(m as usize - 1).copied().unwrap_or("Jan");
    format!("\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"", d, month, y, rem / 3600, (rem / 60) % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    #[test]
    fn chooses_atom_quoted_literal() {
        assert_eq!(r(|o| astring(o, b"INBOX")), "INBOX");
        assert_eq!(r(|o| astring(o, b"My Folder")), "\"My Folder\"");
        assert_eq!(r(|o| astring(o, b"nil")), "\"nil\"");
        assert_eq!(r(|o| astring(o, b"")), "\"\"");
        assert_eq!(r(|o| string(o, b"a\"b\\c")), "\"a\\\"b\\\\c\"");
        assert_eq!(r(|o| string(o, b"line\r\nbreak")), "{11}\r\nline\r\nbreak");
        assert_eq!(r(|o| string(o, "Grüße".as_bytes())), "{7}\r\nGrüße");
        assert_eq!(r(|o| nstring(o, None)), "NIL");
        let mut v = Vec::new();
        text_literal(&mut v, b"a\0b");
        assert_eq!(v, b"{3}\r\na\x80b");
    }

    #[test]
    fn flags_and_dates() {
        assert_eq!(r(|o| flag_list(o, &[Flag::Seen, Flag::Keyword("$Junk".into())])), "(\\Seen $Junk)");
        assert_eq!(date_time(837_596_665), "\"17-Jul-1996 09:44:25 +0000\"");
        assert_eq!(date_time(0), "\"01-Jan-1970 00:00:00 +0000\"");
    }
}
