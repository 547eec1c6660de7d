//! ManageSieve responses (RFC 5804 section 4): `OK`/`NO`/`BYE`, an optional response
//! code in parentheses, an optional human-readable string; and the strings themselves,
//! quoted when they can be, a literal `{n}` otherwise (scripts, multi-line messages).

/// The three response kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bye,
}

/// One response line (plus a literal when its text needs one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// The response code without parentheses: `NONEXISTENT`, `QUOTA/MAXSIZE`,
    /// `TAG "x"`.
    pub code: Option<String>,
    pub text: String,
}

impl Response {
    pub fn ok(text: impl Into<String>) -> Response {
        Response { status: Status::Ok, code: None, text: text.into() }
    }

    pub fn no(text: impl Into<String>) -> Response {
        Response { status: Status::No, code: None, text: text.into() }
    }

    pub fn bye(text: impl Into<String>) -> Response {
        Response { status: Status::Bye, code: None, text: text.into() }
    }

    /// Add a response code (RFC 5804 1.3).
    pub fn code(mut self, code: impl Into<String>) -> Response {
        self.code = Some(code.into());
        self
    }

    /// The response on the wire, CRLF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 32);
        out.extend_from_slice(match self.status {
            Status::Ok => b"OK",
            Status::No => b"NO",
            Status::Bye => b"BYE",
        });
        if let Some(code) = &self.code {
            out.extend_from_slice(b" (");
            out.extend_from_slice(code.as_bytes());
            out.push(b')');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            push_string(&mut out, self.text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Append `s` as a ManageSieve string: quoted when short and free of CR, LF, NUL (the
/// characters a quoted string cannot hold), else a literal `{n}` CRLF bytes.
pub fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 1024 && !s.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// Append `s` as a literal, always (GETSCRIPT: RFC 5804 2.9 shows the script as one).
pub fn push_literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_render_with_codes_and_strings() {
        assert_eq!(Response::ok("").to_bytes(), b"OK\r\n");
        assert_eq!(
            Response::no("Script \"x\" is active").code("ACTIVE").to_bytes(),
            b"NO (ACTIVE) \"Script \\\"x\\\" is active\"\r\n"
        );
        assert_eq!(Response::no("line 1\nline 2").to_bytes(), b"NO {13}\r\nline 1\nline 2\r\n");
        assert_eq!(Response::bye("Idle").to_bytes(), b"BYE \"Idle\"\r\n");
    }
}
