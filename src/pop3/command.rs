//! POP3 command-line parser: one client line in, one [`Command`] (or a [`CommandError`]) out.
//!
//! Owns the grammar of RFC 1939 (USER, PASS, APOP, STAT, LIST, UIDL, RETR, TOP, DELE, RSET,
//! NOOP, QUIT), RFC 2449 (CAPA), RFC 2595 (STLS), RFC 5034 (AUTH and its continuation lines)
//! and RFC 6856 (UTF8). It is pure: bytes in, value out, no I/O, no knowledge of the session
//! state (whether a command is allowed *now* is `session.rs`'s question) and it never panics
//! on any input.
//!
//! Keywords are case-insensitive (RFC 1939 §3). Lines may end in CRLF or a bare LF (some
//! old clients); the terminator is stripped here. Line length is bounded: RFC 2449 §4 caps a
//! command at 255 octets; we allow slack up to [`MAX_COMMAND_LINE`] for sloppy clients and
//! refuse anything longer, so a client cannot make us hold unbounded input.

use thiserror::Error;

/// Longest command line we accept, terminator included (RFC 2449 says 255; slack for
/// clients that send long user names).
pub const MAX_COMMAND_LINE: usize = 512;

/// Longest SASL continuation line (RFC 5034 §4 lets responses be longer than commands; a
/// PLAIN response with a 255-octet user and password fits well within this).
pub const MAX_SASL_LINE: usize = 4096;

/// A POP3 command as the client sent it, arguments parsed but not yet judged against the
/// session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The whole rest of the line: RFC 1939 §7 lets a password contain spaces.
    Pass(String),
    /// APOP needs the plaintext password on the server; we store only hashes, so it is
    /// always refused (and never advertised).
    Apop,
    /// `AUTH` alone (old clients ask for the mechanism list this way), `AUTH mech` or
    /// `AUTH mech initial-response` (RFC 5034 §4).
    Auth {
        mechanism: Option<String>,
        initial_response: Option<SaslResponse>,
    },
    Capa,
    Stls,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Top {
        msg: u32,
        lines: u64,
    },
    Dele(u32),
    Rset,
    Noop,
    Quit,
    Utf8,
}

impl Command {
    /// The keyword, upper-case, for logs (never log arguments: PASS carries a secret).
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop => "APOP",
            Command::Auth { .. } => "AUTH",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Retr(_) => "RETR",
            Command::Top { .. } => "TOP",
            Command::Dele(_) => "DELE",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Utf8 => "UTF8",
        }
    }
}

/// A SASL client response: base64-decoded data, or `*` (the client cancels, RFC 5034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslResponse {
    Data(Vec<u8>),
    Cancel,
}

/// Why a line is not a valid command. Each maps to one `-ERR` reply in `session.rs`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("line too long")]
    LineTooLong,
    #[error("empty command")]
    Empty,
    #[error("unknown command")]
    Unknown,
    #[error("{0}")]
    BadArguments(&'static str),
    #[error("invalid base64")]
    BadBase64,
}

/// Strip one trailing CRLF or LF. A lone trailing CR (line cut short) is stripped too.
fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parse one command line (with or without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if line.len() > MAX_COMMAND_LINE {
        return Err(CommandError::LineTooLong);
    }
    let line = strip_terminator(line);
    // Control characters (NUL, bare CR inside the line...) have no place in a command;
    // refusing them keeps log lines and user names clean. PASS is the exception: its
    // argument is checked separately below, but NUL is refused there as well.
    let line = std::str::from_utf8(line).map_err(|_| CommandError::BadArguments("not UTF-8"))?;
    if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::BadArguments("control characters in command"));
    }
    if line.trim().is_empty() {
        return Err(CommandError::Empty);
    }
    let (keyword, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let keyword = keyword.to_ascii_uppercase();
    let args: Vec<&str> = rest.split_ascii_whitespace().collect();
    match keyword.as_str() {
        "USER" => match args.as_slice() {
            [name] => Ok(Command::User((*name).to_string())),
            _ => Err(CommandError::BadArguments("USER takes one argument")),
        },
        "PASS" => {
            // The password is everything after the single space, verbatim (RFC 1939 §7):
            // trimming would corrupt passwords with leading or trailing blanks.
            if rest.is_empty() {
                Err(CommandError::BadArguments("PASS takes one argument"))
            } else {
                Ok(Command::Pass(rest.to_string()))
            }
        }
        "APOP" => Ok(Command::Apop),
        "AUTH" => parse_auth(&args),
        "CAPA" => no_args(&args, Command::Capa),
        "STLS" => no_args(&args, Command::Stls),
        "STAT" => no_args(&args, Command::Stat),
        "RSET" => no_args(&args, Command::Rset),
        "NOOP" => no_args(&args, Command::Noop),
        "QUIT" => no_args(&args, Command::Quit),
        "UTF8" => no_args(&args, Command::Utf8),
        "LIST" => optional_msg(&args).map(Command::List),
        "UIDL" => optional_msg(&args).map(Command::Uidl),
        "RETR" => one_msg(&args).map(Command::Retr),
        "DELE" => one_msg(&args).map(Command::Dele),
        "TOP" => match args.as_slice() {
            [msg, lines] => Ok(Command::Top {
                msg: parse_msg_number(msg)?,
                lines: parse_decimal(lines)
                    .ok_or(CommandError::BadArguments("TOP line count must be a non-negative number"))?,
            }),
            _ => Err(CommandError::BadArguments("TOP takes a message number and a line count")),
        },
        _ => Err(CommandError::Unknown),
    }
}

fn parse_auth(args: &[&str]) -> Result<Command, CommandError> {
    match args {
        [] => Ok(Command::Auth { mechanism: None, initial_response: None }),
        [mech] => Ok(Command::Auth { mechanism: Some(mech.to_ascii_uppercase()), initial_response: None }),
        [mech, initial] => Ok(Command::Auth {
            mechanism: Some(mech.to_ascii_uppercase()),
            // RFC 5034 §4: a single "=" is an empty initial response.
            initial_response: Some(if *initial == "=" {
                SaslResponse::Data(Vec::new())
            } else {
                decode_sasl(initial)?
            }),
        }),
        _ => Err(CommandError::BadArguments("AUTH takes a mechanism and an optional response")),
    }
}

/// Parse a SASL continuation line (the client's answer to our `+ ` challenge).
pub fn parse_sasl_response(line: &[u8]) -> Result<SaslResponse, CommandError> {
    if line.len() > MAX_SASL_LINE {
        return Err(CommandError::LineTooLong);
    }
    let line = strip_terminator(line);
    let text = std::str::from_utf8(line).map_err(|_| CommandError::BadBase64)?;
    decode_sasl(text.trim())
}

fn decode_sasl(text: &str) -> Result<SaslResponse, CommandError> {
    use base64::Engine as _;
    if text == "*" {
        return Ok(SaslResponse::Cancel);
    }
    base64::engine::general_purpose::STANDARD.decode(text).map(SaslResponse::Data).map_err(|_| CommandError::BadBase64)
}

fn no_args(args: &[&str], cmd: Command) -> Result<Command, CommandError> {
    if args.is_empty() { Ok(cmd) } else { Err(CommandError::BadArguments("command takes no arguments")) }
}

fn optional_msg(args: &[&str]) -> Result<Option<u32>, CommandError> {
    match args {
        [] => Ok(None),
        [n] => parse_msg_number(n).map(Some),
        _ => Err(CommandError::BadArguments("too many arguments")),
    }
}

fn one_msg(args: &[&str]) -> Result<u32, CommandError> {
    match args {
        [n] => parse_msg_number(n),
        _ => Err(CommandError::BadArguments("command takes one message number")),
    }
}

/// Message numbers are 1-based decimal (RFC 1939 §3); 0, signs and overflow are refused
/// here so the session only ever sees numbers that could exist.
fn parse_msg_number(s: &str) -> Result<u32, CommandError> {
    match parse_decimal(s).and_then(|n| u32::try_from(n).ok()) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(CommandError::BadArguments("invalid message number")),
    }
}

/// Plain decimal digits only (`str::parse` would accept a leading `+`).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        match parse_command(line.as_bytes()) {
            Ok(c) => c,
            Err(e) => panic!("{line:?} -> {e}"),
        }
    }

    fn err(line: &str) -> CommandError {
        match parse_command(line.as_bytes()) {
            Ok(c) => panic!("{line:?} parsed as {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn rfc1939_commands() {
        assert_eq!(ok("USER alice@example.com\r\n"), Command::User("alice@example.com".into()));
        assert_eq!(ok("PASS secret\r\n"), Command::Pass("secret".into()));
        assert_eq!(ok("STAT\r\n"), Command::Stat);
        assert_eq!(ok("LIST\r\n"), Command::List(None));
        assert_eq!(ok("LIST 2\r\n"), Command::List(Some(2)));
        assert_eq!(ok("UIDL\r\n"), Command::Uidl(None));
        assert_eq!(ok("UIDL 7\r\n"), Command::Uidl(Some(7)));
        assert_eq!(ok("RETR 1\r\n"), Command::Retr(1));
        assert_eq!(ok("TOP 1 10\r\n"), Command::Top { msg: 1, lines: 10 });
        assert_eq!(ok("TOP 3 0\r\n"), Command::Top { msg: 3, lines: 0 });
        assert_eq!(ok("DELE 1\r\n"), Command::Dele(1));
        assert_eq!(ok("RSET\r\n"), Command::Rset);
        assert_eq!(ok("NOOP\r\n"), Command::Noop);
        assert_eq!(ok("QUIT\r\n"), Command::Quit);
        assert_eq!(ok("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"), Command::Apop);
    }

    #[test]
    fn extension_commands() {
        assert_eq!(ok("CAPA\r\n"), Command::Capa);
        assert_eq!(ok("STLS\r\n"), Command::Stls);
        assert_eq!(ok("UTF8\r\n"), Command::Utf8);
        assert_eq!(ok("AUTH\r\n"), Command::Auth { mechanism: None, initial_response: None });
        assert_eq!(ok("AUTH plain\r\n"), Command::Auth { mechanism: Some("PLAIN".into()), initial_response: None });
        // "\0alice\0pw" in base64.
        assert_eq!(
            ok("AUTH PLAIN AGFsaWNlAHB3\r\n"),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some(SaslResponse::Data(b"\0alice\0pw".to_vec()))
            }
        );
        assert_eq!(
            ok("AUTH PLAIN =\r\n"),
            Command::Auth { mechanism: Some("PLAIN".into()), initial_response: Some(SaslResponse::Data(Vec::new())) }
        );
        assert_eq!(err("AUTH PLAIN !!!\r\n"), CommandError::BadBase64);
    }

    #[test]
    fn keywords_are_case_insensitive_and_lf_is_accepted() {
        assert_eq!(ok("stat"), Command::Stat);
        assert_eq!(ok("Retr 5\n"), Command::Retr(5));
        assert_eq!(ok("uidl\r\n"), Command::Uidl(None));
    }

    #[test]
    fn password_keeps_spaces() {
        assert_eq!(ok("PASS  two  words \r\n"), Command::Pass(" two  words ".into()));
        assert_eq!(err("PASS\r\n"), CommandError::BadArguments("PASS takes one argument"));
    }

    #[test]
    fn bad_arguments() {
        assert!(matches!(err("RETR\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("RETR 0\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("RETR +1\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("RETR -1\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("RETR 4294967296\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("RETR 1 2\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("TOP 1\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("TOP 1 x\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("STAT 1\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("USER\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("USER a b\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("USER a\0b\r\n"), CommandError::BadArguments(_)));
        assert!(matches!(err("LIST 1 2\r\n"), CommandError::BadArguments(_)));
        assert_eq!(err("XYZZY\r\n"), CommandError::Unknown);
        assert_eq!(err("\r\n"), CommandError::Empty);
        assert_eq!(err("   \r\n"), CommandError::Empty);
    }

    #[test]
    fn line_length_is_bounded() {
        let long = format!("USER {}\r\n", "a".repeat(MAX_COMMAND_LINE));
        assert_eq!(err(&long), CommandError::LineTooLong);
        let fits = format!("USER {}\r\n", "a".repeat(200));
        assert!(matches!(ok(&fits), Command::User(_)));
    }

    #[test]
    fn sasl_continuation_lines() {
        assert_eq!(parse_sasl_response(b"*\r\n"), Ok(SaslResponse::Cancel));
        assert_eq!(parse_sasl_response(b"AGFsaWNlAHB3\r\n"), Ok(SaslResponse::Data(b"\0alice\0pw".to_vec())));
        assert_eq!(parse_sasl_response(b"\r\n"), Ok(SaslResponse::Data(Vec::new())));
        assert_eq!(parse_sasl_response(b"%%%\r\n"), Err(CommandError::BadBase64));
        assert_eq!(parse_sasl_response(&vec![b'A'; MAX_SASL_LINE + 1]), Err(CommandError::LineTooLong));
    }

    /// Garbage in: random and truncated bytes must give a value or an error, never a panic.
    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || crate::testing::xorshift(&mut seed);
        let samples: &[&[u8]] =
            &[b"TOP 1 10\r\n", b"AUTH PLAIN AGFsaWNlAHB3\r\n", b"PASS p w\r\n", b"LIST 99999999999999999999\r\n"];
        for _ in 0..20_000 {
            let len = (next() % 600) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse_command(&bytes);
            let _ = parse_sasl_response(&bytes);
        }
        for sample in samples {
            for cut in 0..=sample.len() {
                let _ = parse_command(&sample[..cut]);
                let _ = parse_sasl_response(&sample[..cut]);
            }
        }
    }
}
