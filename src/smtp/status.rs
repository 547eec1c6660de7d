//! The one SMTP status of mailroom: a three-digit reply code, an RFC 3463 enhanced
//! status code and text. The server renders it as reply lines (RFC 5321 §4.2.1), the
//! client parses remote replies into it (`client::reply`), the queue carries it as each
//! recipient's outcome, and DSNs take their `Status:` and `Diagnostic-Code:` fields from
//! it — so no layer ever has to find a code again by reading text.
//!
//! Every reply the server session builds carries an enhanced status code because we
//! advertise ENHANCEDSTATUSCODES (RFC 2034). RFC 2034 §3 exempts only the greeting and
//! the replies to HELO/EHLO, and RFC 3463 has no class 3, so `354` cannot carry one;
//! those are the only replies built with [`Status::plain`]. Texts live next to the logic
//! that decides them; this module only knows the shape of a status.

use std::fmt;

/// An RFC 3463 enhanced status code `class.subject.detail`; class is 2, 4 or 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl Enhanced {
    /// Parse `X.Y.Z` at the start of `text` (RFC 3463 §2: class 2, 4 or 5; subject and
    /// detail up to three digits). Returns the code and the rest after one space.
    pub fn parse_prefix(text: &str) -> Option<(Enhanced, &str)> {
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        let mut parts = word.split('.');
        let class: u8 = parts.next().filter(|p| p.len() == 1)?.parse().ok()?;
        let subject: u16 = parts.next().filter(|p| (1..=3).contains(&p.len()))?.parse().ok()?;
        let detail: u16 = parts.next().filter(|p| (1..=3).contains(&p.len()))?.parse().ok()?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some((Enhanced(class, subject, detail), rest))
    }
}

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Who said a status: an SMTP server with its three-digit reply code, or mailroom
/// itself about trouble no server reported (DNS, connection, spool trouble in the
/// queue). DSNs report the first as `smtp` and the second as `X-mailroom`
/// (RFC 3464 §2.3.6), so the difference is a type, not a reserved number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Reply(u16),
    Local,
}

/// One SMTP status, possibly multi-line (each element of `text` is one line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    #[serde(with = "code_on_disk")]
    pub code: Code,
    pub enhanced: Option<Enhanced>,
    pub text: Vec<String>,
}

/// Queue items store the code as a number, with `0` for [`Code::Local`]: the form
/// items spooled by earlier versions have, and reply codes start at 200 so it never
/// collides. The number stays in this module; everywhere else a local diagnostic is
/// [`Code::Local`].
mod code_on_disk {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Code;

    const LOCAL: u16 = 0;

    pub fn serialize<S: Serializer>(code: &Code, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(match code {
            Code::Reply(n) => *n,
            Code::Local => LOCAL,
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        Ok(match u16::deserialize(d)? {
            LOCAL => Code::Local,
            n => Code::Reply(n),
        })
    }
}

impl Status {
    /// A status with an enhanced code, e.g. `Status::new(250, (2, 1, 0), "Ok")`.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Status {
        Status::with_code(Code::Reply(code), enhanced, text)
    }

    /// A reply without an enhanced code: only the banner, HELO/EHLO answers and 354.
    pub fn plain(code: u16, text: impl Into<String>) -> Status {
        Status { code: Code::Reply(code), enhanced: None, text: vec![text.into()] }
    }

    /// A multi-line reply without enhanced code (EHLO: name line then extensions).
    pub fn lines(code: u16, lines: Vec<String>) -> Status {
        Status { code: Code::Reply(code), enhanced: None, text: lines }
    }

    /// A diagnostic of our own, with no SMTP reply code ([`Code::Local`]).
    pub fn local(enhanced: (u8, u16, u16), text: impl Into<String>) -> Status {
        Status::with_code(Code::Local, enhanced, text)
    }

    fn with_code(code: Code, enhanced: (u8, u16, u16), text: impl Into<String>) -> Status {
        Status { code, enhanced: Some(Enhanced(enhanced.0, enhanced.1, enhanced.2)), text: vec![text.into()] }
    }

    /// Whether an SMTP server (remote or ours) said this, rather than our own diagnosis.
    pub fn is_reply(&self) -> bool {
        matches!(self.code, Code::Reply(_))
    }

    /// The class (2, 3, 4 or 5): the reply code's first digit, or for a local
    /// diagnostic its enhanced code's class (0 when it has none).
    pub fn class(&self) -> u16 {
        match (self.code, self.enhanced) {
            (Code::Reply(code), _) => code / 100,
            (Code::Local, Some(e)) => u16::from(e.0),
            (Code::Local, None) => 0,
        }
    }

    /// Positive completion (2xx) or positive intermediate (3xx), as the server sees it.
    pub fn is_positive(&self) -> bool {
        matches!(self.class(), 2 | 3)
    }

    /// Positive completion only (2xx), as the client needs it.
    pub fn is_completion(&self) -> bool {
        self.class() == 2
    }

    pub fn is_intermediate(&self) -> bool {
        self.class() == 3
    }

    /// Transient (4xx) or permanent (5xx) failure.
    pub fn is_error(&self) -> bool {
        self.class() >= 4
    }

    pub fn is_transient(&self) -> bool {
        self.class() == 4
    }

    pub fn is_permanent(&self) -> bool {
        self.class() >= 5
    }

    /// The whole status on one line, for logs, envelopes and DSN `Diagnostic-Code`:
    /// `550 5.1.1 text`, or `4.4.2 text` for a local diagnostic.
    pub fn one_line(&self) -> String {
        let mut out = match self.code {
            Code::Reply(code) => code.to_string(),
            Code::Local => String::new(),
        };
        if let Some(e) = self.enhanced {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&e.to_string());
        }
        for line in self.text.iter().filter(|l| !l.is_empty()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(line);
        }
        out
    }

    /// Render as wire bytes. Line breaks inside a text line are replaced by spaces so a
    /// text never produces a reply line the client would mis-frame.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(&mut out);
        out
    }

    /// Append the wire form to `out` (replies are batched for PIPELINING, RFC 2920).
    ///
    /// Written straight into `out`, without `format!` or a cleaned copy of the text: the
    /// callgrind profile of SMTP ingest (bench/README.md) had reply rendering at ~10% of
    /// all instructions, almost all of it formatting machinery and short-lived Strings.
    ///
    /// Only the server's own replies are rendered, and those always have a reply code; a
    /// local diagnostic, should one ever get here, goes out as the invalid code `0` so
    /// the mistake shows instead of passing for a real reply.
    pub fn render_into(&self, out: &mut Vec<u8>) {
        let code = match self.code {
            Code::Reply(code) => u32::from(code),
            Code::Local => 0,
        };
        let empty = [String::new()];
        let lines: &[String] = if self.text.is_empty() { &empty } else { &self.text };
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            push_number(out, code);
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(Enhanced(class, subject, detail)) = self.enhanced {
                push_number(out, u32::from(class));
                out.push(b'.');
                push_number(out, u32::from(subject));
                out.push(b'.');
                push_number(out, u32::from(detail));
                out.push(b' ');
            }
            let start = out.len();
            out.extend_from_slice(line.as_bytes());
            // CR and LF are ASCII, so they never occur inside a multi-byte UTF-8 sequence:
            // replacing the bytes is the same as replacing the characters.
            for b in &mut out[start..] {
                if *b == b'\r' || *b == b'\n' {
                    *b = b' ';
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Decimal digits of `n` (no allocation, no formatter).
fn push_number(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Status::new(250, (2, 1, 0), "Ok");
        assert_eq!(r.render(), b"250 2.1.0 Ok\r\n");
        assert!(r.is_positive());
    }

    #[test]
    fn multi_line_uses_dash_until_last() {
        let mut r = Status::new(214, (2, 0, 0), "first");
        r.text.push("second".into());
        assert_eq!(r.render(), b"214-2.0.0 first\r\n214 2.0.0 second\r\n");
    }

    #[test]
    fn ehlo_style_reply_without_enhanced_code() {
        let r = Status::lines(250, vec!["mx.example".into(), "PIPELINING".into()]);
        assert_eq!(r.render(), b"250-mx.example\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Status::new(550, (5, 1, 1), "a\r\n250 ok");
        assert_eq!(r.render(), b"550 5.1.1 a  250 ok\r\n");
        assert!(r.is_error());
    }

    #[test]
    fn numbers_and_non_ascii_text_render_unchanged() {
        let r = Status::new(421, (4, 10, 0), "délai\nrépété");
        assert_eq!(r.render(), "421 4.10.0 délai répété\r\n".as_bytes());
        let mut out = Vec::new();
        push_number(&mut out, 0);
        assert_eq!(out, b"0");
        out.clear();
        push_number(&mut out, u32::MAX);
        assert_eq!(out, b"4294967295");
    }

    #[test]
    fn empty_text_still_renders_one_line() {
        let r = Status::lines(250, vec![]);
        assert_eq!(r.render(), b"250 \r\n");
    }

    #[test]
    fn one_line_of_replies_and_local_diagnostics() {
        assert_eq!(Status::new(550, (5, 1, 1), "no such user").one_line(), "550 5.1.1 no such user");
        let local = Status::local((4, 4, 2), "connection lost");
        assert_eq!(local.one_line(), "4.4.2 connection lost");
        assert!(local.is_transient() && !local.is_reply());
        assert!(Status::local((5, 1, 2), "no domain").is_permanent());
        assert_eq!(Status::plain(354, "").one_line(), "354");
    }

    #[test]
    fn queue_files_keep_the_numeric_code() {
        let local = Status::local((4, 4, 2), "connection lost");
        let json = serde_json::to_string(&local).unwrap();
        assert_eq!(json, r#"{"code":0,"enhanced":[4,4,2],"text":["connection lost"]}"#);
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), local);
        let reply = Status::new(550, (5, 1, 1), "no such user");
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(json, r#"{"code":550,"enhanced":[5,1,1],"text":["no such user"]}"#);
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), reply);
    }

    #[test]
    fn enhanced_prefix() {
        assert_eq!(Enhanced::parse_prefix("5.1.10 x y"), Some((Enhanced(5, 1, 10), "x y")));
        assert_eq!(Enhanced::parse_prefix("3.0.0 x"), None);
        assert_eq!(Enhanced::parse_prefix("5.1"), None);
        assert_eq!(Enhanced::parse_prefix("5.1.1.1"), None);
    }
}
