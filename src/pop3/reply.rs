//! POP3 replies: status indicator, RFC 2449 response code, text, and an optional multi-line
//! body, rendered to the exact wire bytes.
//!
//! Every `+OK`/`-ERR` the server sends is built here, so the framing rules live in one
//! place: CRLF line ends, a multi-line body dot-stuffed and closed by `.` CRLF (RFC 1939 §3),
//! and response codes in brackets right after the status (RFC 2449 §8, RFC 3206). Message
//! bodies (RETR/TOP) are streamed by `dotstuff.rs` instead, never built in memory.

use std::fmt;

/// Extended response codes (RFC 2449 §8 and RFC 3206).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// Credentials refused, or authentication not possible now (e.g. before STLS).
    Auth,
    /// The maildrop is already locked by another POP3 session.
    InUse,
    /// A temporary server fault: trying again later may work.
    SysTemp,
    /// A permanent server fault: trying again will not help.
    SysPerm,
}

impl fmt::Display for RespCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RespCode::Auth => "AUTH",
            RespCode::InUse => "IN-USE",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Err,
    /// The SASL challenge line `+ <base64>` (RFC 5034 §4).
    Continue,
}

/// One reply. `lines` is `Some` for multi-line replies (CAPA, LIST, UIDL, AUTH listing),
/// even when empty: an empty listing still needs its terminating dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub code: Option<RespCode>,
    pub text: String,
    pub lines: Option<Vec<String>>,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply { status: Status::Ok, code: None, text: text.into(), lines: None }
    }

    pub fn err(text: impl Into<String>) -> Reply {
        Reply { status: Status::Err, code: None, text: text.into(), lines: None }
    }

    pub fn err_code(code: RespCode, text: impl Into<String>) -> Reply {
        Reply { code: Some(code), ..Reply::err(text) }
    }

    /// The empty SASL challenge PLAIN uses (`+ ` followed by CRLF).
    pub fn challenge() -> Reply {
        Reply { status: Status::Continue, code: None, text: String::new(), lines: None }
    }

    pub fn multiline(text: impl Into<String>, lines: Vec<String>) -> Reply {
        Reply { lines: Some(lines), ..Reply::ok(text) }
    }

    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The wire form, CRLF-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64);
        out.push_str(match self.status {
            Status::Ok => "+OK",
            Status::Err => "-ERR",
            Status::Continue => "+",
        });
        if let Some(code) = self.code {
            out.push_str(" [");
            out.push_str(&code.to_string());
            out.push(']');
        }
        if !self.text.is_empty() || self.status == Status::Continue {
            out.push(' ');
            out.push_str(&self.text);
        }
        out.push_str("\r\n");
        if let Some(lines) = &self.lines {
            for line in lines {
                if line.starts_with('.') {
                    out.push('.');
                }
                out.push_str(line);
                out.push_str("\r\n");
            }
            out.push_str(".\r\n");
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        String::from_utf8_lossy(&r.to_bytes()).into_owned()
    }

    #[test]
    fn single_line_replies() {
        assert_eq!(wire(&Reply::ok("2 320")), "+OK 2 320\r\n");
        assert_eq!(wire(&Reply::ok("")), "+OK\r\n");
        assert_eq!(wire(&Reply::err("no such message")), "-ERR no such message\r\n");
        assert_eq!(wire(&Reply::err_code(RespCode::InUse, "maildrop locked")), "-ERR [IN-USE] maildrop locked\r\n");
        assert_eq!(wire(&Reply::err_code(RespCode::SysTemp, "x")), "-ERR [SYS/TEMP] x\r\n");
        assert_eq!(wire(&Reply::err_code(RespCode::SysPerm, "x")), "-ERR [SYS/PERM] x\r\n");
        assert_eq!(wire(&Reply::err_code(RespCode::Auth, "x")), "-ERR [AUTH] x\r\n");
        assert_eq!(wire(&Reply::challenge()), "+ \r\n");
    }

    #[test]
    fn multiline_is_dot_stuffed_and_terminated() {
        let r = Reply::multiline("listing", vec!["1 120".into(), ".odd".into()]);
        assert_eq!(wire(&r), "+OK listing\r\n1 120\r\n..odd\r\n.\r\n");
        assert_eq!(wire(&Reply::multiline("empty", vec![])), "+OK empty\r\n.\r\n");
    }
}
