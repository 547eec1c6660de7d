//! The SMTP command parser: one command line (bytes) in, a [`Command`] or a
//! [`CommandError`] out. Pure: no I/O, no state, never panics on any input.
//!
//! It owns the grammar of RFC 5321 §4.1 (verbs, `MAIL FROM:<path> params`, `RCPT TO:`),
//! the ESMTP parameters we implement (SIZE RFC 1870, BODY RFC 6152/3030, SMTPUTF8 RFC 6531,
//! RET/ENVID/NOTIFY/ORCPT RFC 3461 accepted and ignored, AUTH= RFC 4954 kept for
//! submission) and the mapping of each syntax error to its reply with the right enhanced
//! code (RFC 3463: 5.5.2 unknown command, 5.5.4 bad arguments, 5.1.7 bad sender,
//! 5.1.3 bad recipient). Framing (finding the end of a line, the 2,048-octet limit) is
//! the server's job; what an accepted command *means* in the dialogue is the session's.
//!
//! Addresses are parsed by `accounts::Address::parse` only, so the SMTP layer and alias
//! resolution agree on what an address is: source routes (`<@a:b@c>`, the classic relay
//! trick) are refused, `%` is an ordinary local-part character and quoted local parts are
//! unquoted, never interpreted as routing.
//!
//! Leniency, on purpose and like Postfix's default (`strict_rfc821_envelopes = no`):
//! spaces after `FROM:`/`TO:` and a path without angle brackets are accepted, because
//! old clients and scripts send them and refusing them protects nothing.

use crate::accounts::{Address, AddressError, find_outside_quotes};

use super::status::Status;

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the brackets.
const MAX_PATH: usize = 256;

/// A parsed SMTP (or LMTP) command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    /// LMTP's greeting (RFC 2033 §4.1); only valid in LMTP mode (the session decides).
    Lhlo(String),
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    /// RFC 3030 CHUNKING: exactly `size` octets follow the command line.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Help(Option<String>),
    StartTls,
    /// RFC 4954; parsed now, used by submission. Port 25 answers 503/502.
    Auth {
        mechanism: String,
        initial_response: Option<String>,
    },
}

impl Command {
    /// The verb as written in logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail(_) => "MAIL",
            Command::Rcpt(_) => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Help(_) => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// An address as the client wrote it plus its normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Normalised (lower-cased, punycode domain): what policy and delivery compare.
    pub address: Address,
    /// Exactly what was between the brackets: used for `Return-Path` (remote local parts
    /// may be case-sensitive) and to see whether SMTPUTF8 is needed.
    pub raw: String,
}

impl Mailbox {
    /// True when the address needs SMTPUTF8 (RFC 6531 §3.4).
    pub fn needs_smtputf8(&self) -> bool {
        !self.raw.is_ascii()
    }
}

/// `MAIL FROM:` reverse-path: `<>` is the null sender used by bounces (RFC 5321 §4.5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    Null,
    Mailbox(Mailbox),
}

/// `RCPT TO:` forward-path. `<Postmaster>` without a domain must be accepted (RFC 5321
/// §4.5.1); the session maps it to postmaster@ of the primary domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    Postmaster,
    Mailbox(Mailbox),
}

/// RFC 6152 / RFC 3030 body types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
    BinaryMime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    pub path: ReversePath,
    /// RFC 1870 SIZE= declared size (saturating: an absurd number is simply too big).
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    /// RFC 4954 §5 `AUTH=` parameter (raw xtext), for submission later.
    pub auth: Option<String>,
    /// RFC 8689 `REQUIRETLS`: every hop must use TLS with a validated certificate.
    pub require_tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    pub path: ForwardPath,
}

/// Why a command line was refused; each maps to exactly one reply in [`CommandError::reply`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command not recognized")]
    Unrecognized,
    #[error("command line is not valid UTF-8 or contains control characters")]
    BadCharacters,
    #[error("{0}")]
    Syntax(&'static str),
    #[error("bad sender address: {0}")]
    BadSender(String),
    #[error("bad recipient address: {0}")]
    BadRecipient(String),
    #[error("bad value for parameter {0}")]
    BadParameter(String),
    #[error("parameter {0} given twice")]
    DuplicateParameter(String),
    #[error("parameter {0} not supported")]
    UnknownParameter(String),
}

impl CommandError {
    /// The reply RFC 5321/3463 prescribe for this error.
    pub fn reply(&self) -> Status {
        match self {
            CommandError::Unrecognized => Status::new(500, (5, 5, 2), "Error: command not recognized"),
            CommandError::BadCharacters => Status::new(500, (5, 5, 2), "Error: bad characters in command"),
            CommandError::Syntax(what) => Status::new(501, (5, 5, 4), format!("Syntax: {what}")),
            CommandError::BadSender(why) => Status::new(501, (5, 1, 7), format!("Bad sender address syntax: {why}")),
            CommandError::BadRecipient(why) => {
                Status::new(501, (5, 1, 3), format!("Bad recipient address syntax: {why}"))
            }
            CommandError::BadParameter(p) => Status::new(501, (5, 5, 4), format!("Bad parameter value: {p}")),
            CommandError::DuplicateParameter(p) => Status::new(501, (5, 5, 4), format!("Parameter given twice: {p}")),
            // RFC 5321 §4.1.1.11 / RFC 1869 §6: 555 for unrecognised MAIL/RCPT parameters.
            CommandError::UnknownParameter(p) => Status::new(555, (5, 5, 4), format!("Unsupported parameter: {p}")),
        }
    }
}

/// Parse one command line. A trailing CRLF (or bare LF: many scripts send it, and on a
/// command line it cannot smuggle anything) is stripped; anything else is the command.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| CommandError::BadCharacters)?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(CommandError::BadCharacters);
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let arg = rest.map(str::trim).filter(|s| !s.is_empty());
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" => Ok(Command::Ehlo(greeting_name(arg, "EHLO hostname")?)),
        "HELO" => Ok(Command::Helo(greeting_name(arg, "HELO hostname")?)),
        "LHLO" => Ok(Command::Lhlo(greeting_name(arg, "LHLO hostname")?)),
        "MAIL" => parse_mail(rest.unwrap_or("")).map(Command::Mail),
        "RCPT" => parse_rcpt(rest.unwrap_or("")).map(Command::Rcpt),
        "DATA" => no_argument(arg, Command::Data, "DATA"),
        "BDAT" => parse_bdat(arg),
        "RSET" => no_argument(arg, Command::Rset, "RSET"),
        // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored.
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_argument(arg, Command::Quit, "QUIT"),
        "VRFY" => match arg {
            Some(a) => Ok(Command::Vrfy(a.to_string())),
            None => Err(CommandError::Syntax("VRFY address")),
        },
        "HELP" => Ok(Command::Help(arg.map(str::to_string))),
        "STARTTLS" => no_argument(arg, Command::StartTls, "STARTTLS"),
        "AUTH" => parse_auth(arg),
        _ => Err(CommandError::Unrecognized),
    }
}

fn no_argument(arg: Option<&str>, cmd: Command, usage: &'static str) -> Result<Command, CommandError> {
    match arg {
        None => Ok(cmd),
        Some(_) => Err(CommandError::Syntax(usage)),
    }
}

/// The EHLO/HELO argument is only logged and put in `Received:`; we require one word of
/// printable characters and do not insist it resolves (RFC 5321 §4.1.4: MUST NOT refuse
/// a message because the name does not match the connection).
fn greeting_name(arg: Option<&str>, usage: &'static str) -> Result<String, CommandError> {
    let name = arg.ok_or(CommandError::Syntax(usage))?;
    if name.len() > 255 || name.contains(char::is_whitespace) {
        return Err(CommandError::Syntax(usage));
    }
    Ok(name.to_string())
}

fn parse_bdat(arg: Option<&str>) -> Result<Command, CommandError> {
    const USAGE: &str = "BDAT size [LAST]";
    let arg = arg.ok_or(CommandError::Syntax(USAGE))?;
    let mut words = arg.split_ascii_whitespace();
    let size_word = words.next().ok_or(CommandError::Syntax(USAGE))?;
    if size_word.is_empty() || !size_word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommandError::Syntax(USAGE));
    }
    let size = size_word.parse::<u64>().map_err(|_| CommandError::Syntax(USAGE))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax(USAGE)),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(arg: Option<&str>) -> Result<Command, CommandError> {
    const USAGE: &str = "AUTH mechanism [initial-response]";
    let arg = arg.ok_or(CommandError::Syntax(USAGE))?;
    let mut words = arg.split_ascii_whitespace();
    let mechanism = words.next().ok_or(CommandError::Syntax(USAGE))?;
    let initial_response = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Auth { mechanism: mechanism.to_ascii_uppercase(), initial_response })
}

/// Which side of the envelope an address is on: decides 5.1.7 versus 5.1.3.
#[derive(Clone, Copy)]
enum Side {
    Sender,
    Recipient,
}

impl Side {
    fn error(self, why: impl Into<String>) -> CommandError {
        match self {
            Side::Sender => CommandError::BadSender(why.into()),
            Side::Recipient => CommandError::BadRecipient(why.into()),
        }
    }
}

/// Strip the case-insensitive `FROM:` / `TO:` keyword and optional spaces after it.
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(rest[keyword.len()..].trim_start_matches(' '))
}

/// Split `<path> params` into the text between the brackets and the parameter string.
/// The closing `>` is searched outside quoted strings, so `<"a>b"@c>` works.
fn split_path(s: &str, side: Side) -> Result<(&str, &str), CommandError> {
    let Some(body) = s.strip_prefix('<') else {
        // Lenient form without brackets: the path ends at the first space.
        let (path, params) = s.split_once(' ').unwrap_or((s, ""));
        if path.is_empty() {
            return Err(side.error("missing address"));
        }
        return Ok((path, params));
    };
    let i = find_outside_quotes(body, '>').ok_or_else(|| side.error("missing >"))?;
    let after = &body[i + 1..];
    if !after.is_empty() && !after.starts_with(' ') {
        return Err(side.error("garbage after >"));
    }
    Ok((&body[..i], after))
}

fn parse_mailbox(raw: &str, side: Side) -> Result<Mailbox, CommandError> {
    if raw.len() + 2 > MAX_PATH {
        return Err(side.error("path longer than 256 octets"));
    }
    if raw.starts_with('@') {
        return Err(side.error(AddressError::SourceRoute.to_string()));
    }
    let address = Address::parse(raw).map_err(|e| side.error(e.to_string()))?;
    Ok(Mailbox { address, raw: raw.to_string() })
}

/// ESMTP parameters `KEY[=VALUE]` (RFC 5321 §4.1.2 esmtp-param). Keys are returned
/// upper-cased; a value may not be empty or contain `=`/controls.
fn parse_params(s: &str) -> Result<Vec<(String, Option<&str>)>, CommandError> {
    let mut out: Vec<(String, Option<&str>)> = Vec::new();
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let key_ok = !key.is_empty()
            && key.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !key_ok {
            return Err(CommandError::Syntax("bad ESMTP parameter"));
        }
        if let Some(v) = value
            && (v.is_empty() || v.contains('='))
        {
            return Err(CommandError::BadParameter(key.to_ascii_uppercase()));
        }
        let key = key.to_ascii_uppercase();
        if out.iter().any(|(k, _)| *k == key) {
            return Err(CommandError::DuplicateParameter(key));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn parse_mail(rest: &str) -> Result<MailFrom, CommandError> {
    let s = strip_keyword(rest, "FROM:").ok_or(CommandError::Syntax("MAIL FROM:<address>"))?;
    let (raw, params) = split_path(s, Side::Sender)?;
    let path = if raw.is_empty() { ReversePath::Null } else { ReversePath::Mailbox(parse_mailbox(raw, Side::Sender)?) };
    let mut mail = MailFrom { path, size: None, body: None, smtputf8: false, auth: None, require_tls: false };
    for (key, value) in parse_params(params)? {
        match (key.as_str(), value) {
            ("SIZE", Some(v)) if v.bytes().all(|b| b.is_ascii_digit()) => {
                // Saturate: "SIZE=99999999999999999999999" is too big, not a syntax error.
                mail.size = Some(v.parse::<u64>().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => mail.body = Some(BodyType::SevenBit),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => mail.body = Some(BodyType::EightBitMime),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("BINARYMIME") => mail.body = Some(BodyType::BinaryMime),
            ("SMTPUTF8", None) => mail.smtputf8 = true,
            ("REQUIRETLS", None) => mail.require_tls = true,
            ("AUTH", Some(v)) => mail.auth = Some(v.to_string()),
            // RFC 3461 DSN parameters: accepted so DSN-aware MTAs can talk to us, ignored
            // because we do not advertise DSN and generate our own bounces.
            ("RET", Some(_)) | ("ENVID", Some(_)) => {}
            ("SIZE" | "BODY" | "SMTPUTF8" | "AUTH" | "RET" | "ENVID" | "REQUIRETLS", _) => {
                return Err(CommandError::BadParameter(key));
            }
            _ => return Err(CommandError::UnknownParameter(key)),
        }
    }
    Ok(mail)
}

fn parse_rcpt(rest: &str) -> Result<RcptTo, CommandError> {
    let s = strip_keyword(rest, "TO:").ok_or(CommandError::Syntax("RCPT TO:<address>"))?;
    let (raw, params) = split_path(s, Side::Recipient)?;
    let path = if raw.eq_ignore_ascii_case("postmaster") {
        ForwardPath::Postmaster
    } else if raw.is_empty() {
        return Err(CommandError::BadRecipient("empty address".into()));
    } else {
        ForwardPath::Mailbox(parse_mailbox(raw, Side::Recipient)?)
    };
    for (key, value) in parse_params(params)? {
        match (key.as_str(), value) {
            // RFC 3461: accepted and ignored (see MAIL).
            ("NOTIFY", Some(_)) | ("ORCPT", Some(_)) => {}
            ("NOTIFY" | "ORCPT", None) => return Err(CommandError::BadParameter(key)),
            _ => return Err(CommandError::UnknownParameter(key)),
        }
    }
    Ok(RcptTo { path })
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
