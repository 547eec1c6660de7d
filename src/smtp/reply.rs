//! SMTP replies: a three-digit code, an RFC 3463 enhanced status code and text, rendered
//! as one or more `code[-| ]enhanced text` lines (RFC 5321 §4.2.1).
//!
//! Every reply the session builds carries an enhanced status code because we advertise
//! ENHANCEDSTATUSCODES (RFC 2034). RFC 2034 §3 exempts only the greeting and the replies
//! to HELO/EHLO, and RFC 3463 has no class 3, so `354` cannot carry one; those are the
//! only replies built with [`Reply::plain`]. Reply texts live next to the logic that
//! decides them (session, server); this module only knows the shape of a reply.

use std::fmt;

/// An RFC 3463 enhanced status code `class.subject.detail`; class is 2, 4 or 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply, possibly multi-line (each element of `text` is one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<Enhanced>,
    pub text: Vec<String>,
}

impl Reply {
    /// A reply with an enhanced status code, e.g. `Reply::new(250, (2, 1, 0), "Ok")`.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply { code, enhanced: Some(Enhanced(enhanced.0, enhanced.1, enhanced.2)), text: vec![text.into()] }
    }

    /// A reply without an enhanced code: only the banner, HELO/EHLO answers and 354.
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply { code, enhanced: None, text: vec![text.into()] }
    }

    /// A multi-line reply without enhanced code (EHLO: name line then extensions).
    pub fn lines(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, enhanced: None, text: lines }
    }

    /// Positive completion (2xx) or positive intermediate (3xx).
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Transient (4xx) or permanent (5xx) failure.
    pub fn is_error(&self) -> bool {
        self.code >= 400
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
    pub fn render_into(&self, out: &mut Vec<u8>) {
        let empty = [String::new()];
        let lines: &[String] = if self.text.is_empty() { &empty } else { &self.text };
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            push_number(out, u32::from(self.code));
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
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.render()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Reply::new(250, (2, 1, 0), "Ok");
        assert_eq!(r.render(), b"250 2.1.0 Ok\r\n");
        assert!(r.is_positive());
    }

    #[test]
    fn multi_line_uses_dash_until_last() {
        let mut r = Reply::new(214, (2, 0, 0), "first");
        r.text.push("second".into());
        assert_eq!(r.render(), b"214-2.0.0 first\r\n214 2.0.0 second\r\n");
    }

    #[test]
    fn ehlo_style_reply_without_enhanced_code() {
        let r = Reply::lines(250, vec!["mx.example".into(), "PIPELINING".into()]);
        assert_eq!(r.render(), b"250-mx.example\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(550, (5, 1, 1), "a\r\n250 ok");
        assert_eq!(r.render(), b"550 5.1.1 a  250 ok\r\n");
        assert!(r.is_error());
    }

    #[test]
    fn numbers_and_non_ascii_text_render_unchanged() {
        let r = Reply::new(421, (4, 10, 0), "délai\nrépété");
        assert_eq!(r.render(), "421 4.10.0 délai répété\r\n".as_bytes());
        let r = Reply::plain(0, "x");
        assert_eq!(r.render(), b"0 x\r\n");
        let mut out = Vec::new();
        push_number(&mut out, u32::MAX);
        assert_eq!(out, b"4294967295");
    }

    #[test]
    fn empty_text_still_renders_one_line() {
        let r = Reply::lines(250, vec![]);
        assert_eq!(r.render(), b"250 \r\n");
    }
}
