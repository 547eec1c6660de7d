//! The token layer of the IMAP grammar (RFC 9051 section 9): atoms, quoted strings, literals,
//! numbers, dates. A `Cursor` walks one complete frame (see `framing`) and never reads past
//! its end, so every method is total: on bad input it returns `Err(message)`, it never
//! panics or loops.

/// Token-level result: the message becomes the text of `tag BAD ...`.
pub type Lex<T> = Result<T, String>;

/// `ATOM-CHAR`: any CHAR except atom-specials. Bytes >= 0x80 are accepted for UTF8=ACCEPT
/// clients that send UTF-8 mailbox names as atoms (lenient; RFC 6855 3).
pub fn is_atom_char(b: u8) -> bool {
    !matches!(b, b'(' | b')' | b'{' | b' ' | 0..=0x1f | 0x7f | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials`.
pub fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `tag = 1*<any ASTRING-CHAR except "+">`.
pub fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// `list-char = ATOM-CHAR / list-wildcards / resp-specials`.
fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Literals read so far (APPEND names its messages by literal number).
    literals: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0, literals: 0 }
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// At the end of the command: optional CR, then LF, then nothing (or nothing at all,
    /// for callers that pass a frame without its line end).
    pub fn at_end(&self) -> bool {
        matches!(self.rest(), b"" | b"\n" | b"\r\n")
    }

    pub fn expect_end(&mut self) -> Lex<()> {
        if self.at_end() {
            self.pos = self.buf.len();
            Ok(())
        } else {
            Err("unexpected characters at end of command".into())
        }
    }

    pub fn try_byte(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect_byte(&mut self, b: u8) -> Lex<()> {
        if self.try_byte(b) { Ok(()) } else { Err(format!("expected '{}'", b as char)) }
    }

    pub fn sp(&mut self) -> Lex<()> {
        self.expect_byte(b' ')
    }

    /// Consume `kw` (case-insensitive) if it is next and is not the prefix of a longer atom.
    pub fn try_keyword(&mut self, kw: &str) -> bool {
        let k = kw.as_bytes();
        let rest = self.rest();
        if rest.len() >= k.len() && rest[..k.len()].eq_ignore_ascii_case(k) {
            let next = rest.get(k.len()).copied();
            let boundary = match next {
                None => true,
                // `[` and `<` end a keyword in FETCH (`BODY[`, `BODY.PEEK[1]<0.10>`).
                Some(c) => !is_atom_char(c) || c == b'[' || c == b'<' || k.last().is_some_and(|l| !is_atom_char(*l)),
            };
            if boundary {
                self.pos += k.len();
                return true;
            }
        }
        false
    }

    pub fn expect_keyword(&mut self, kw: &str) -> Lex<()> {
        if self.try_keyword(kw) { Ok(()) } else { Err(format!("expected {kw}")) }
    }

    pub fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    pub fn tag(&mut self) -> Lex<String> {
        let t = self.take_while(is_tag_char);
        if t.is_empty() {
            return Err("missing tag".into());
        }
        Ok(String::from_utf8_lossy(t).into_owned())
    }

    pub fn atom(&mut self) -> Lex<&'a [u8]> {
        let t = self.take_while(is_atom_char);
        if t.is_empty() {
            return Err("expected atom".into());
        }
        Ok(t)
    }

    /// Upper-cased atom as a String (command names, keywords).
    pub fn atom_upper(&mut self) -> Lex<String> {
        Ok(String::from_utf8_lossy(self.atom()?).to_ascii_uppercase())
    }

    /// A flag: `\Atom` or a keyword atom.
    pub fn flag_text(&mut self) -> Lex<String> {
        let backslash = self.try_byte(b'\\');
        let a = self.atom()?;
        let mut s = String::new();
        if backslash {
            s.push('\\');
        }
        s.push_str(&String::from_utf8_lossy(a));
        Ok(s)
    }

    /// `string = quoted / literal` (literal8 accepted too where binary content is allowed).
    pub fn string(&mut self) -> Lex<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') | Some(b'~') => Ok(self.literal()?.0),
            _ => Err("expected string".into()),
        }
    }

    /// `astring = 1*ASTRING-CHAR / string`.
    pub fn astring(&mut self) -> Lex<Vec<u8>> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let t = self.take_while(is_astring_char);
                if t.is_empty() { Err("expected astring".into()) } else { Ok(t.to_vec()) }
            }
        }
    }

    /// astring as UTF-8 text (invalid UTF-8 is replaced, never an error: names are checked
    /// again by whoever uses them).
    pub fn astring_text(&mut self) -> Lex<String> {
        Ok(String::from_utf8_lossy(&self.astring()?).into_owned())
    }

    /// `nstring = string / NIL`.
    pub fn nstring(&mut self) -> Lex<Option<Vec<u8>>> {
        if self.try_keyword("NIL") { Ok(None) } else { Ok(Some(self.string()?)) }
    }

    /// `list-mailbox = 1*list-char / string`.
    pub fn list_mailbox(&mut self) -> Lex<String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => Ok(String::from_utf8_lossy(&self.string()?).into_owned()),
            _ => {
                let t = self.take_while(is_list_char);
                if t.is_empty() {
                    Err("expected mailbox pattern".into())
                } else {
                    Ok(String::from_utf8_lossy(t).into_owned())
                }
            }
        }
    }

    fn quoted(&mut self) -> Lex<Vec<u8>> {
        self.expect_byte(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err("bad escape in quoted string".into()),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `literal` / `literal8`: returns the bytes and whether it was `~{n}` (binary).
    /// Number of literals read so far.
    pub fn literals_read(&self) -> usize {
        self.literals
    }

    pub fn literal(&mut self) -> Lex<(Vec<u8>, bool)> {
        let binary = self.try_byte(b'~');
        self.expect_byte(b'{')?;
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > 19 {
            return Err("bad literal length".into());
        }
        let size: usize = std::str::from_utf8(digits).ok().and_then(|s| s.parse().ok()).ok_or("bad literal length")?;
        self.try_byte(b'+');
        self.expect_byte(b'}')?;
        self.try_byte(b'\r');
        self.expect_byte(b'\n')?;
        let end =
            self.pos.checked_add(size).filter(|e| *e <= self.buf.len()).ok_or("literal shorter than announced")?;
        let data = self.buf[self.pos..end].to_vec();
        self.pos = end;
        self.literals += 1;
        if !binary && data.contains(&0) {
            return Err("NUL in literal (use literal8)".into());
        }
        Ok((data, binary))
    }

    /// `number` (u32) — RFC 9051 `number`.
    pub fn number(&mut self) -> Lex<u32> {
        let d = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(d)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 10)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "expected number".into())
    }

    /// `number64` / `mod-sequence-value` (RFC 7162: up to 2^63-1).
    pub fn number64(&mut self) -> Lex<u64> {
        let d = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(d)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 19)
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| "expected number".into())
    }

    pub fn nz_number(&mut self) -> Lex<u32> {
        match self.number()? {
            0 => Err("zero is not allowed here".into()),
            n => Ok(n),
        }
    }

    /// The raw text of a sequence set (digits, `:`, `,`, `*`, `$`).
    pub fn sequence_set(&mut self) -> Lex<super::super::sequence::SequenceSet> {
        let raw = self.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*' | b'$'));
        super::super::sequence::SequenceSet::parse(raw).ok_or_else(|| "bad sequence set".into())
    }

    /// `date = date-text / DQUOTE date-text DQUOTE` -> days since 1970-01-01.
    pub fn date(&mut self) -> Lex<i64> {
        let quoted = self.try_byte(b'"');
        let day = self.number()?;
        self.expect_byte(b'-')?;
        let mon = self.take_while(|b| b.is_ascii_alphabetic());
        let month = month_number(mon).ok_or("bad month")?;
        self.expect_byte(b'-')?;
        let year = self.number()?;
        if quoted {
            self.expect_byte(b'"')?;
        }
        days_from_civil(year as i64, month, day).ok_or_else(|| "bad date".into())
    }

    /// `date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone
    /// DQUOTE` -> seconds since the epoch (UTC).
    pub fn date_time(&mut self) -> Lex<i64> {
        self.expect_byte(b'"')?;
        self.try_byte(b' ');
        let day = self.number()?;
        self.expect_byte(b'-')?;
        let mon = self.take_while(|b| b.is_ascii_alphabetic());
        let month = month_number(mon).ok_or("bad month")?;
        self.expect_byte(b'-')?;
        let year = self.number()?;
        self.sp()?;
        let h = self.number()?;
        self.expect_byte(b':')?;
        let m = self.number()?;
        self.expect_byte(b':')?;
        let s = self.number()?;
        self.sp()?;
        let sign = match self.peek() {
            Some(b'+') => 1i64,
            Some(b'-') => -1i64,
            _ => return Err("bad zone".into()),
        };
        self.pos += 1;
        let z = self.take_while(|b| b.is_ascii_digit());
        if z.len() != 4 {
            return Err("bad zone".into());
        }
        let zone: i64 = std::str::from_utf8(z).ok().and_then(|s| s.parse().ok()).ok_or("bad zone")?;
        self.expect_byte(b'"')?;
        if h > 23 || m > 59 || s > 60 {
            return Err("bad time".into());
        }
        let days = days_from_civil(year as i64, month, day).ok_or("bad date")?;
        let offset = sign * ((zone / 100) * 3600 + (zone % 100) * 60);
        Ok(days * 86400 + h as i64 * 3600 + m as i64 * 60 + s as i64 - offset)
    }
}

pub const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn month_number(m: &[u8]) -> Option<u32> {
    MONTHS.iter().position(|n| n.as_bytes().eq_ignore_ascii_case(m)).map(|i| i as u32 + 1)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1..=9999).contains(&year) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146097 + doe - 719468)
}

/// Inverse of `days_from_civil`: (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quoted_and_literal() {
        let mut c = Cursor::new(b"\"a\\\"b\" {3}\r\nxyz atom");
        assert_eq!(c.astring().unwrap(), b"a\"b");
        c.sp().unwrap();
        assert_eq!(c.astring().unwrap(), b"xyz");
        c.sp().unwrap();
        assert_eq!(c.astring().unwrap(), b"atom");
        assert!(c.at_end());
    }

    #[test]
    fn keyword_needs_boundary() {
        let mut c = Cursor::new(b"BODYSTRUCTURE");
        assert!(!c.try_keyword("BODY"));
        assert!(c.try_keyword("BODYSTRUCTURE"));
        let mut c = Cursor::new(b"BODY[");
        assert!(c.try_keyword("BODY"));
    }

    #[test]
    fn dates() {
        assert_eq!(Cursor::new(b"1-Jan-1970").date(), Ok(0));
        assert_eq!(Cursor::new(b"\"02-feb-1970\"").date(), Ok(32));
        assert_eq!(Cursor::new(b"\"17-Jul-1996 02:44:25 -0700\"").date_time(), Ok(837_596_665));
        assert_eq!(Cursor::new(b"\" 1-Jan-1970 00:00:00 +0100\"").date_time(), Ok(-3600));
        assert!(Cursor::new(b"32-Jan-1970").date().is_err());
        assert_eq!(civil_from_days(837_596_665 / 86400), (1996, 7, 17));
    }

    #[test]
    fn literal_shorter_than_announced_is_error() {
        assert!(Cursor::new(b"{10}\r\nabc").literal().is_err());
        assert!(Cursor::new(b"{3}\r\na\0c").literal().is_err());
        assert_eq!(Cursor::new(b"~{3}\r\na\0c").literal().unwrap(), (b"a\0c".to_vec(), true));
    }
}
