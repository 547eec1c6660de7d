//! The IMAP command parser: one complete frame (from `framing`) in, a `Command` or a
//! `ParseError` out. Pure (no I/O, no state) and total: any byte string gets an answer and
//! nothing panics, so it can be fuzzed directly. The error keeps the tag when it could be
//! read, so the session can reply `tag BAD ...`, else `* BAD ...` (RFC 9051 7.1.3).
//!
//! Split by grammar area: `lexer` (tokens), `mailbox` (SELECT/LIST/STATUS/APPEND/CREATE),
//! `fetch` (FETCH/STORE), `search` (SEARCH keys).

pub mod fetch;
pub mod lexer;
pub mod mailbox;
pub mod search;

use super::command::{Command, CommandBody, Flag};
use lexer::Cursor;

/// A command we could not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The tag, when the command started with a valid one.
    pub tag: Option<String>,
    pub message: String,
}

/// Parse one complete command (a frame including its trailing CRLF; without it is fine too).
pub fn parse_command(frame: &[u8]) -> Result<Command, ParseError> {
    let mut c = Cursor::new(frame);
    let tag = c.tag().map_err(|message| ParseError { tag: None, message })?;
    let body = parse_body(&mut c).map_err(|message| ParseError { tag: Some(tag.clone()), message })?;
    Ok(Command { tag, body })
}

fn parse_body(c: &mut Cursor<'_>) -> lexer::Lex<CommandBody> {
    c.sp()?;
    let name = c.atom_upper()?;
    let body = match name.as_str() {
        "CAPABILITY" => CommandBody::Capability,
        "NOOP" => CommandBody::Noop,
        "LOGOUT" => CommandBody::Logout,
        "STARTTLS" => CommandBody::StartTls,
        "CHECK" => CommandBody::Check,
        "CLOSE" => CommandBody::Close,
        "UNSELECT" => CommandBody::Unselect,
        "IDLE" => CommandBody::Idle,
        "NAMESPACE" => CommandBody::Namespace,
        "EXPUNGE" => CommandBody::Expunge { uids: None },
        "ID" => {
            c.sp()?;
            CommandBody::Id(parse_id_params(c)?)
        }
        "AUTHENTICATE" => parse_authenticate(c)?,
        "LOGIN" => {
            c.sp()?;
            let username = c.astring_text()?;
            c.sp()?;
            let password = c.astring_text()?;
            CommandBody::Login { username, password }
        }
        "ENABLE" => {
            let mut caps = Vec::new();
            while c.try_byte(b' ') {
                caps.push(c.atom_upper()?);
            }
            if caps.is_empty() {
                return Err("ENABLE needs at least one capability".into());
            }
            CommandBody::Enable(caps)
        }
        "SELECT" | "EXAMINE" => mailbox::parse_select(c, name == "SELECT")?,
        "CREATE" => mailbox::parse_create(c)?,
        "DELETE" => CommandBody::Delete { mailbox: one_mailbox(c)? },
        "SUBSCRIBE" => CommandBody::Subscribe { mailbox: one_mailbox(c)? },
        "UNSUBSCRIBE" => CommandBody::Unsubscribe { mailbox: one_mailbox(c)? },
        "RENAME" => {
            let from = one_mailbox(c)?;
            let to = one_mailbox(c)?;
            CommandBody::Rename { from, to }
        }
        "LIST" => mailbox::parse_list(c)?,
        "LSUB" => {
            let reference = one_mailbox(c)?;
            c.sp()?;
            let pattern = c.list_mailbox()?;
            CommandBody::Lsub { reference, pattern }
        }
        "STATUS" => mailbox::parse_status(c)?,
        "APPEND" => mailbox::parse_append(c)?,
        "GETQUOTA" => CommandBody::GetQuota { root: one_mailbox(c)? },
        "GETQUOTAROOT" => CommandBody::GetQuotaRoot { mailbox: one_mailbox(c)? },
        "SETQUOTA" => {
            let root = one_mailbox(c)?;
            // The resource list is irrelevant: quotas come from MAILROOM_ACCOUNTS and the
            // session always answers NO. Skip to the end without judging it.
            c.expect_byte(b' ')?;
            let _ = c.rest();
            return Ok(CommandBody::SetQuota { root });
        }
        "SEARCH" => CommandBody::Search(search::parse_search(c, false)?),
        "SORT" => CommandBody::Sort(search::parse_sort(c, false)?),
        "THREAD" => CommandBody::Thread(search::parse_thread(c, false)?),
        "FETCH" => CommandBody::Fetch(fetch::parse_fetch(c, false)?),
        "STORE" => CommandBody::Store(fetch::parse_store(c, false)?),
        "COPY" | "MOVE" => parse_copy_move(c, false, name == "MOVE")?,
        "UID" => {
            c.sp()?;
            let sub = c.atom_upper()?;
            match sub.as_str() {
                "SEARCH" => CommandBody::Search(search::parse_search(c, true)?),
                "SORT" => CommandBody::Sort(search::parse_sort(c, true)?),
                "THREAD" => CommandBody::Thread(search::parse_thread(c, true)?),
                "FETCH" => CommandBody::Fetch(fetch::parse_fetch(c, true)?),
                "STORE" => CommandBody::Store(fetch::parse_store(c, true)?),
                "COPY" | "MOVE" => parse_copy_move(c, true, sub == "MOVE")?,
                "EXPUNGE" => {
                    c.sp()?;
                    CommandBody::Expunge { uids: Some(c.sequence_set()?) }
                }
                _ => return Err(format!("unknown UID command {sub}")),
            }
        }
        _ => return Err(format!("unknown command {name}")),
    };
    c.expect_end()?;
    Ok(body)
}

/// `SP mailbox`.
pub(crate) fn one_mailbox(c: &mut Cursor<'_>) -> lexer::Lex<String> {
    c.sp()?;
    c.astring_text()
}

fn parse_authenticate(c: &mut Cursor<'_>) -> lexer::Lex<CommandBody> {
    c.sp()?;
    let mechanism = c.atom_upper()?;
    let mut initial = None;
    if c.try_byte(b' ') {
        // SASL-IR (RFC 4959): base64, or "=" for an empty initial response.
        if c.try_byte(b'=') {
            initial = Some(Vec::new());
        } else {
            let raw = c.atom()?;
            initial = Some(decode_base64(raw).ok_or("bad base64 in initial response")?);
        }
    }
    Ok(CommandBody::Authenticate { mechanism, initial })
}

/// Base64 as SASL uses it (RFC 4648, padding required, no line breaks).
pub fn decode_base64(raw: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(raw).ok()
}

/// `id-params-list = "(" *(string SP nstring) ")" / nil` (RFC 2971). At most 30 pairs.
/// RFC 2971 field list: `None` for NIL.
type IdParams = Option<Vec<(String, Option<String>)>>;

fn parse_id_params(c: &mut Cursor<'_>) -> lexer::Lex<IdParams> {
    if c.try_keyword("NIL") {
        return Ok(None);
    }
    c.expect_byte(b'(')?;
    let mut out = Vec::new();
    if c.try_byte(b')') {
        return Ok(Some(out));
    }
    loop {
        let k = String::from_utf8_lossy(&c.string()?).into_owned();
        c.sp()?;
        let v = c.nstring()?.map(|v| String::from_utf8_lossy(&v).into_owned());
        out.push((k, v));
        if out.len() > 30 {
            return Err("too many ID fields".into());
        }
        if c.try_byte(b')') {
            return Ok(Some(out));
        }
        c.sp()?;
    }
}

fn parse_copy_move(c: &mut Cursor<'_>, uid: bool, is_move: bool) -> lexer::Lex<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    let mailbox = one_mailbox(c)?;
    Ok(if is_move { CommandBody::Move { uid, set, mailbox } } else { CommandBody::Copy { uid, set, mailbox } })
}

/// A flag from its wire text. `\Recent` and other unknown system flags are refused where
/// a client may set flags (RFC 9051 2.3.2: `\Recent` cannot be stored). A keyword must be
/// an atom (RFC 3501 9 `flag-keyword = atom`: 7-bit only) and not `NIL`, which a client
/// reading `FLAGS (NIL)` could not tell from the nil of other items.
pub fn flag_from_text(text: &str) -> lexer::Lex<Flag> {
    let flag = if let Some(name) = text.strip_prefix('\\') {
        match name.to_ascii_lowercase().as_str() {
            "seen" => Flag::Seen,
            "answered" => Flag::Answered,
            "flagged" => Flag::Flagged,
            "deleted" => Flag::Deleted,
            "draft" => Flag::Draft,
            _ => return Err(format!("cannot set flag {text}")),
        }
    } else if !text.is_ascii() {
        return Err(format!("keyword is not an atom: {text}"));
    } else if text.eq_ignore_ascii_case("NIL") {
        return Err("NIL is not a valid keyword".into());
    } else {
        Flag::Keyword(text.to_string())
    };
    Ok(flag)
}

/// `flag-list = "(" [flag *(SP flag)] ")"`.
pub fn parse_flag_list(c: &mut Cursor<'_>) -> lexer::Lex<Vec<Flag>> {
    c.expect_byte(b'(')?;
    let mut flags = Vec::new();
    if c.try_byte(b')') {
        return Ok(flags);
    }
    loop {
        flags.push(flag_from_text(&c.flag_text()?)?);
        if c.try_byte(b')') {
            return Ok(flags);
        }
        c.sp()?;
    }
}

#[cfg(test)]
mod tests;
