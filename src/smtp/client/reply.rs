//! SMTP replies as the client reads them: pure parsing of (multi-line) replies into
//! the crate's one [`Status`], and of the EHLO capability list.
//!
//! Parsing is two-phase like everywhere in mailroom: [`parse_reply`] first checks that
//! a complete reply (every continuation line up to the one with a space after the code)
//! is buffered and only then builds it, so a reply split across TCP reads is never half
//! consumed. It does no I/O and never panics: the bytes come from a remote server we do
//! not trust.

use crate::smtp::status::{Code, Enhanced, Status};

/// Longest reply line we accept (RFC 5321 §4.5.3.1.5 says 512 octets; servers exceed
/// it with long EHLO keywords and diagnostics, so allow some room).
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply (a runaway multi-line reply is refused, not buffered forever).
pub const MAX_LINES: usize = 256;

/// Why the bytes are not an SMTP reply. Any of these ends the connection: the peer does
/// not speak SMTP (or an attacker is in the middle) and nothing later can be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_LINE} octets")]
    LineTooLong,
    #[error("reply has more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    #[error("multi-line reply changes its code from {0} to {1}")]
    CodeChanged(u16, u16),
}

/// Parse one reply from the start of `buf`. `Ok(None)` means "not complete yet, read
/// more"; `Ok(Some((reply, used)))` gives the reply and how many bytes it took.
/// Lines end in CRLF; a bare LF is accepted too (some appliances send it).
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Status, usize)>, ReplyError> {
    // Phase 1: find the end of the last line (the one with a space, or nothing, after
    // the code) without building anything.
    let mut pos = 0;
    let mut line_count = 0;
    let end = loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            if buf.len() - pos > MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        if nl > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        line_count += 1;
        if line_count > MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let line = &buf[pos..pos + nl];
        pos += nl + 1;
        if line.get(3) != Some(&b'-') {
            break pos;
        }
    };
    // Phase 2: build it.
    let mut code = None;
    let mut enhanced = None;
    let mut lines = Vec::with_capacity(line_count);
    for raw in buf[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        let (line_code, rest) = split_code(&text).ok_or_else(|| ReplyError::Malformed(truncate(&text)))?;
        match code {
            None => code = Some(line_code),
            Some(c) if c != line_code => return Err(ReplyError::CodeChanged(c, line_code)),
            Some(_) => {}
        }
        // RFC 2034 §4: every line of the reply repeats the enhanced code; keep the
        // first and strip it from each line's text.
        let rest = match Enhanced::parse_prefix(rest) {
            // The enhanced class must match the reply class to count (RFC 3463 §2).
            Some((e, after)) if u16::from(e.0) == line_code / 100 => {
                enhanced.get_or_insert(e);
                after
            }
            _ => rest,
        };
        lines.push(rest.to_string());
    }
    let code = code.ok_or_else(|| ReplyError::Malformed(String::new()))?;
    Ok(Some((Status { code: Code::Reply(code), enhanced, text: lines }, end)))
}

/// `250-text` / `250 text` / `250` -> (250, "text").
fn split_code(line: &str) -> Option<(u16, &str)> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = line.get(..3)?.parse().ok()?;
    if !(200..=599).contains(&code) {
        return None;
    }
    match bytes.get(3) {
        None => Some((code, "")),
        Some(b' ') | Some(b'-') => Some((code, line.get(4..).unwrap_or(""))),
        Some(_) => None,
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// What the server said it supports in its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub starttls: bool,
    pub pipelining: bool,
    /// RFC 1870: `Some(0)` means SIZE without a fixed limit.
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub enhanced_status_codes: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
    /// RFC 8689: the server keeps REQUIRETLS for the next hop.
    pub require_tls: bool,
}

impl Capabilities {
    /// Read the keywords from an EHLO reply (the first line is the greeting text).
    pub fn from_ehlo(reply: &Status) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.text.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "REQUIRETLS" => caps.require_tls = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                // `AUTH=LOGIN PLAIN` is the pre-standard form some servers still send.
                kw @ ("AUTH" | "AUTH=LOGIN" | "AUTH=PLAIN") => {
                    let mechanisms = kw
                        .strip_prefix("AUTH=")
                        .into_iter()
                        .map(str::to_string)
                        .chain(words.map(|w| w.to_ascii_uppercase()));
                    for m in mechanisms {
                        match m.as_str() {
                            "PLAIN" => caps.auth_plain = true,
                            "LOGIN" => caps.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(s: &str) -> Status {
        let (reply, used) = parse_reply(s.as_bytes()).unwrap().unwrap();
        assert_eq!(used, s.len());
        reply
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let r = parse_all("250 2.1.0 Sender ok\r\n");
        assert_eq!(r.code, Code::Reply(250));
        assert_eq!(r.enhanced, Some(Enhanced(2, 1, 0)));
        assert_eq!(r.text, vec!["Sender ok"]);
        assert_eq!(r.one_line(), "250 2.1.0 Sender ok");
    }

    #[test]
    fn multi_line_is_one_reply_and_leaves_the_next() {
        let buf = b"250-mx.remote.test Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n220 next";
        let (r, used) = parse_reply(buf).unwrap().unwrap();
        assert_eq!(&buf[used..], b"220 next");
        assert_eq!(r.text.len(), 4);
        let caps = Capabilities::from_ehlo(&r);
        assert!(caps.pipelining && caps.starttls);
        assert_eq!(caps.size, Some(1000));
        assert!(!caps.auth_plain);
    }

    #[test]
    fn incomplete_reply_asks_for_more() {
        assert_eq!(parse_reply(b"250-first\r\n250 sec").unwrap(), None);
        assert_eq!(parse_reply(b"").unwrap(), None);
        assert_eq!(parse_reply(b"25").unwrap(), None);
    }

    #[test]
    fn bare_code_and_bare_lf() {
        let r = parse_all("354\n");
        assert_eq!(r.code, Code::Reply(354));
        assert!(r.is_intermediate());
        assert_eq!(r.enhanced, None);
    }

    #[test]
    fn enhanced_code_of_wrong_class_is_text() {
        let r = parse_all("550 2.0.0 odd\r\n");
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text, vec!["2.0.0 odd"]);
        assert!(r.is_permanent());
    }

    #[test]
    fn auth_keywords_both_forms() {
        let r = parse_all("250-relay Hi\r\n250-AUTH=LOGIN\r\n250 AUTH PLAIN CRAM-MD5\r\n");
        let caps = Capabilities::from_ehlo(&r);
        assert!(caps.auth_plain && caps.auth_login);
    }

    #[test]
    fn errors() {
        assert!(matches!(parse_reply(b"hello\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(parse_reply(b"250-a\r\n251 b\r\n"), Err(ReplyError::CodeChanged(250, 251))));
        assert!(matches!(parse_reply(b"999 no\r\n"), Err(ReplyError::Malformed(_))));
        assert_eq!(parse_reply(&vec![b'2'; MAX_LINE + 10]), Err(ReplyError::LineTooLong));
        let many = "250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(parse_reply(many.as_bytes()), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let alphabet = b"0123456789 -.\r\n25x\xff\x00";
        for len in 0..200 {
            let bytes: Vec<u8> = crate::testing::garbage(&mut seed, alphabet, len);
            for cut in 0..bytes.len() {
                let _ = parse_reply(&bytes[..cut]);
            }
        }
    }
}
