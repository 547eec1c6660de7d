//! The ManageSieve command parser (RFC 5804 section 4), pure: bytes in, a [`Command`] out.
//!
//! Two questions, as every protocol here asks them: is a complete command buffered, and
//! what is it. [`parse_command`] answers both in one pass that never copies a literal
//! until the whole command is there: a literal's bytes are skipped by its length, so
//! parsing again after each read costs the length of the command lines, not of the
//! script. Bounds: a line (the text between literals) is at most `max_line` bytes, a
//! literal at most `max_literal`, and a command has at most [`MAX_ARGS`] arguments;
//! past a bound the answer is [`Parsed::Fatal`] and the connection ends, since the rest
//! of the input cannot be framed.
//!
//! Literals: clients send `{n+}` (RFC 5804 4: non-synchronising); `{n}` is accepted the
//! same way, without a continuation, as Dovecot and Cyrus do for old clients.

use memchr::memchr;

/// Most arguments any command takes plus slack (RENAMESCRIPT: 2).
pub const MAX_ARGS: usize = 4;
/// Longest quoted string (RFC 5804 4: "quoted strings ... limited to 1024 octets").
pub const MAX_QUOTED: usize = 1024;

/// A client command, its arguments decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Authenticate { mechanism: String, initial: Option<Vec<u8>> },
    StartTls,
    Logout,
    Capability,
    HaveSpace { name: String, size: u64 },
    PutScript { name: String, content: Vec<u8> },
    CheckScript { content: Vec<u8> },
    ListScripts,
    SetActive { name: String },
    GetScript { name: String },
    DeleteScript { name: String },
    RenameScript { old: String, new: String },
    Noop { tag: Option<Vec<u8>> },
    Unauthenticate,
}

impl Command {
    /// The command's name, for metric labels and logs (a bounded set).
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::StartTls => "STARTTLS",
            Command::Logout => "LOGOUT",
            Command::Capability => "CAPABILITY",
            Command::HaveSpace { .. } => "HAVESPACE",
            Command::PutScript { .. } => "PUTSCRIPT",
            Command::CheckScript { .. } => "CHECKSCRIPT",
            Command::ListScripts => "LISTSCRIPTS",
            Command::SetActive { .. } => "SETACTIVE",
            Command::GetScript { .. } => "GETSCRIPT",
            Command::DeleteScript { .. } => "DELETESCRIPT",
            Command::RenameScript { .. } => "RENAMESCRIPT",
            Command::Noop { .. } => "NOOP",
            Command::Unauthenticate => "UNAUTHENTICATE",
        }
    }
}

/// The bounds the parser keeps.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// Longest line between literals, without its CRLF.
    pub max_line: usize,
    /// Largest literal.
    pub max_literal: u64,
}

/// What the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Not a whole command yet: read more and ask again.
    Incomplete,
    /// A command and the number of bytes it took.
    Complete(T, usize),
    /// A malformed command: answer `NO` with the reason and drop `consumed` bytes.
    Bad { reason: String, consumed: usize },
    /// Input that cannot be framed (a line or literal past its bound): say BYE and close.
    Fatal(Unframeable),
}

/// Why input cannot be framed.
#[derive(Debug, PartialEq, Eq)]
pub enum Unframeable {
    LineTooLong,
    /// A literal past the size bound (its announced size, when it fits a number).
    LiteralTooLarge(Option<u64>),
}

impl std::fmt::Display for Unframeable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unframeable::LineTooLong => f.write_str("Line too long"),
            Unframeable::LiteralTooLarge(Some(n)) => write!(f, "Literal of {n} octets is too large"),
            Unframeable::LiteralTooLarge(None) => f.write_str("Literal too large"),
        }
    }
}

/// One argument as it appeared.
#[derive(Debug, PartialEq, Eq)]
enum Arg {
    Atom(String),
    Number(u64),
    Str(Vec<u8>),
}

/// Parse one command from the start of `buf`.
pub fn parse_command(buf: &[u8], limits: ParseLimits) -> Parsed<Command> {
    match tokenize(buf, limits) {
        Parsed::Complete(args, n) => match interpret(args) {
            Ok(cmd) => Parsed::Complete(cmd, n),
            Err(reason) => Parsed::Bad { reason, consumed: n },
        },
        Parsed::Incomplete => Parsed::Incomplete,
        Parsed::Bad { reason, consumed } => Parsed::Bad { reason, consumed },
        Parsed::Fatal(r) => Parsed::Fatal(r),
    }
}

/// Parse a SASL client response (RFC 5804 2.1): one string on a line. `None` is the
/// client's cancel, `"*"`.
pub fn parse_sasl_response(buf: &[u8], limits: ParseLimits) -> Parsed<Option<Vec<u8>>> {
    match tokenize(buf, limits) {
        Parsed::Complete(mut args, n) => match (args.pop(), args.is_empty()) {
            (Some(Arg::Str(s)), true) if s == b"*" => Parsed::Complete(None, n),
            (Some(Arg::Str(s)), true) => Parsed::Complete(Some(s), n),
            _ => Parsed::Bad { reason: "Expected one string".into(), consumed: n },
        },
        Parsed::Incomplete => Parsed::Incomplete,
        Parsed::Bad { reason, consumed } => Parsed::Bad { reason, consumed },
        Parsed::Fatal(r) => Parsed::Fatal(r),
    }
}

/// Split the command into arguments, finding where it ends (see the module doc).
fn tokenize(buf: &[u8], limits: ParseLimits) -> Parsed<Vec<Arg>> {
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        let Some(lf) = memchr(b'\n', &buf[pos..]) else {
            if buf.len() - pos > limits.max_line {
                return Parsed::Fatal(Unframeable::LineTooLong);
            }
            return Parsed::Incomplete;
        };
        if lf > limits.max_line + 1 {
            return Parsed::Fatal(Unframeable::LineTooLong);
        }
        let line_end = pos + lf;
        let content_end = if lf > 0 && buf[line_end - 1] == b'\r' { line_end - 1 } else { line_end };
        let line = &buf[pos..content_end];
        let consumed = line_end + 1;
        let bad = |reason: &str| Parsed::Bad { reason: reason.to_string(), consumed };
        let mut i = 0;
        let mut literal = None;
        while i < line.len() {
            if line[i] == b' ' {
                i += 1;
                continue;
            }
            if args.len() >= MAX_ARGS {
                return bad("Too many arguments");
            }
            match line[i] {
                b'"' => match quoted(&line[i + 1..]) {
                    Some((s, used)) => {
                        args.push(Arg::Str(s));
                        i += 1 + used;
                    }
                    None => return bad("Bad quoted string"),
                },
                b'{' => {
                    let Some(n) = literal_header(&line[i..]) else { return bad("Bad literal") };
                    if n > limits.max_literal {
                        return Parsed::Fatal(Unframeable::LiteralTooLarge(Some(n)));
                    }
                    literal = Some(n);
                    break;
                }
                b'0'..=b'9' => {
                    let end = line[i..].iter().position(|b| !b.is_ascii_digit()).map_or(line.len(), |p| i + p);
                    let Some(n) = std::str::from_utf8(&line[i..end]).ok().and_then(|s| s.parse().ok()) else {
                        return bad("Bad number");
                    };
                    args.push(Arg::Number(n));
                    i = end;
                }
                b if b.is_ascii_alphabetic() => {
                    let end = line[i..].iter().position(|b| !b.is_ascii_alphanumeric()).map_or(line.len(), |p| i + p);
                    args.push(Arg::Atom(String::from_utf8_lossy(&line[i..end]).to_ascii_uppercase()));
                    i = end;
                }
                _ => return bad("Unexpected character"),
            }
            if i < line.len() && line[i] != b' ' {
                return bad("Expected a space between arguments");
            }
        }
        match literal {
            None => return Parsed::Complete(args, consumed),
            Some(n) => {
                let start = consumed;
                let Some(end) = usize::try_from(n).ok().and_then(|n| start.checked_add(n)) else {
                    return Parsed::Fatal(Unframeable::LiteralTooLarge(None));
                };
                if buf.len() < end {
                    return Parsed::Incomplete;
                }
                args.push(Arg::Str(buf[start..end].to_vec()));
                pos = end;
            }
        }
    }
}

/// A quoted string's content after the opening quote, and the bytes used through the
/// closing one. `None` when unterminated, too long, or with a bad escape.
fn quoted(s: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return Some((out, i + 1)),
            b'\\' => match s.get(i + 1) {
                Some(&c @ (b'"' | b'\\')) => {
                    out.push(c);
                    i += 2;
                }
                _ => return None,
            },
            0 => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
        if out.len() > MAX_QUOTED {
            return None;
        }
    }
    None
}

/// `{n+}` or `{n}` ending the line: n.
fn literal_header(s: &[u8]) -> Option<u64> {
    let inner = s.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A script name argument: a UTF-8 string (RFC 5804 1.6).
fn name(arg: Arg) -> Result<String, String> {
    match arg {
        Arg::Str(s) => String::from_utf8(s).map_err(|_| "Script name is not UTF-8".to_string()),
        _ => Err("Expected a string".into()),
    }
}

fn string(arg: Arg) -> Result<Vec<u8>, String> {
    match arg {
        Arg::Str(s) => Ok(s),
        _ => Err("Expected a string".into()),
    }
}

/// Arguments to a command.
fn interpret(args: Vec<Arg>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let Some(Arg::Atom(word)) = args.next() else { return Err("Expected a command".into()) };
    let rest: Vec<Arg> = args.collect();
    let count = rest.len();
    let arity = |n: usize| if count == n { Ok(()) } else { Err(format!("{word} takes {n} argument(s)")) };
    let mut rest_iter = rest.into_iter();
    let mut next = || rest_iter.next().ok_or_else(|| "Missing argument".to_string());
    match word.as_str() {
        "AUTHENTICATE" => {
            let mechanism = String::from_utf8(string(next()?)?).map_err(|_| "Bad mechanism".to_string())?;
            let initial = next().ok().map(string).transpose()?;
            if next().is_ok() {
                return Err("AUTHENTICATE takes at most 2 arguments".into());
            }
            Ok(Command::Authenticate { mechanism: mechanism.to_ascii_uppercase(), initial })
        }
        "NOOP" => {
            let tag = next().ok().map(string).transpose()?;
            if next().is_ok() {
                return Err("NOOP takes at most 1 argument".into());
            }
            Ok(Command::Noop { tag })
        }
        "STARTTLS" => arity(0).map(|()| Command::StartTls),
        "LOGOUT" => arity(0).map(|()| Command::Logout),
        "CAPABILITY" => arity(0).map(|()| Command::Capability),
        "LISTSCRIPTS" => arity(0).map(|()| Command::ListScripts),
        "UNAUTHENTICATE" => arity(0).map(|()| Command::Unauthenticate),
        "HAVESPACE" => {
            arity(2)?;
            let name = name(next()?)?;
            let Arg::Number(size) = next()? else { return Err("Expected a number".into()) };
            Ok(Command::HaveSpace { name, size })
        }
        "PUTSCRIPT" => {
            arity(2)?;
            Ok(Command::PutScript { name: name(next()?)?, content: string(next()?)? })
        }
        "CHECKSCRIPT" => arity(1).and_then(|()| Ok(Command::CheckScript { content: string(next()?)? })),
        "SETACTIVE" => arity(1).and_then(|()| Ok(Command::SetActive { name: name(next()?)? })),
        "GETSCRIPT" => arity(1).and_then(|()| Ok(Command::GetScript { name: name(next()?)? })),
        "DELETESCRIPT" => arity(1).and_then(|()| Ok(Command::DeleteScript { name: name(next()?)? })),
        "RENAMESCRIPT" => {
            arity(2)?;
            Ok(Command::RenameScript { old: name(next()?)?, new: name(next()?)? })
        }
        _ => Err("Unknown command".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: ParseLimits = ParseLimits { max_line: 100, max_literal: 1000 };

    fn ok(input: &[u8]) -> Command {
        match parse_command(input, L) {
            Parsed::Complete(c, n) => {
                assert_eq!(n, input.len(), "{input:?}");
                c
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn commands_with_quoted_strings_literals_and_numbers() {
        assert_eq!(ok(b"capability\r\n"), Command::Capability);
        assert_eq!(ok(b"HAVESPACE \"main\" 1234\r\n"), Command::HaveSpace { name: "main".into(), size: 1234 });
        assert_eq!(
            ok(b"PUTSCRIPT \"a \\\"b\\\"\" {7+}\r\nkeep;\r\n\r\n"),
            Command::PutScript { name: "a \"b\"".into(), content: b"keep;\r\n".to_vec() }
        );
        assert_eq!(
            ok(b"RENAMESCRIPT {3}\r\nold \"new\"\r\n"),
            Command::RenameScript { old: "old".into(), new: "new".into() }
        );
        assert_eq!(
            ok(b"Authenticate \"PLAIN\" \"AGEAYg==\"\r\n"),
            Command::Authenticate { mechanism: "PLAIN".into(), initial: Some(b"AGEAYg==".to_vec()) }
        );
        assert_eq!(ok(b"NOOP\n"), Command::Noop { tag: None });
        assert_eq!(ok(b"SETACTIVE \"\"\r\n"), Command::SetActive { name: String::new() });
    }

    #[test]
    fn partial_input_waits_and_literals_are_not_copied_early() {
        for cut in [b"PUTSCRIPT".as_slice(), b"PUTSCRIPT \"x\" {10+}\r\n", b"PUTSCRIPT \"x\" {10+}\r\nkeep;"] {
            assert_eq!(parse_command(cut, L), Parsed::Incomplete, "{cut:?}");
        }
        let two = b"NOOP\r\nLOGOUT\r\n";
        assert_eq!(parse_command(two, L), Parsed::Complete(Command::Noop { tag: None }, 6));
    }

    #[test]
    fn malformed_commands_are_refused_and_skipped() {
        for (input, want) in [
            (b"FROB\r\n".as_slice(), "Unknown command"),
            (b"GETSCRIPT\r\n", "GETSCRIPT takes 1 argument(s)"),
            (b"GETSCRIPT \"unterminated\r\n", "Bad quoted string"),
            (b"GETSCRIPT {x+}\r\n", "Bad literal"),
            (b"HAVESPACE \"a\" \"b\"\r\n", "Expected a number"),
            (b"GETSCRIPT \"a\"\"b\"\r\n", "Expected a space between arguments"),
            (b"\x01\r\n", "Unexpected character"),
        ] {
            match parse_command(input, L) {
                Parsed::Bad { reason, consumed } => {
                    assert_eq!((reason.as_str(), consumed), (want, input.len()), "{input:?}")
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn bounds_end_the_connection() {
        assert!(matches!(parse_command(&[b'A'; 200], L), Parsed::Fatal(_)));
        assert!(matches!(parse_command(b"PUTSCRIPT \"a\" {1001+}\r\n", L), Parsed::Fatal(_)));
        assert!(matches!(parse_command(b"PUTSCRIPT \"a\" {99999999999999999999+}\r\n", L), Parsed::Bad { .. }));
        let many = b"NOOP {1+}\r\na {1+}\r\nb {1+}\r\nc {1+}\r\nd {1+}\r\ne\r\n";
        assert!(matches!(parse_command(many, L), Parsed::Bad { .. }));
    }

    #[test]
    fn sasl_responses_and_cancel() {
        assert_eq!(parse_sasl_response(b"\"AGEAYg==\"\r\n", L), Parsed::Complete(Some(b"AGEAYg==".to_vec()), 12));
        assert_eq!(parse_sasl_response(b"{4+}\r\nabcd\r\n", L), Parsed::Complete(Some(b"abcd".to_vec()), 12));
        assert_eq!(parse_sasl_response(b"\"*\"\r\n", L), Parsed::Complete(None, 5));
        assert!(matches!(parse_sasl_response(b"AUTH\r\n", L), Parsed::Bad { .. }));
    }
}
