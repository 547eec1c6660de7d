//! Grammar of the mailbox-level commands: SELECT/EXAMINE parameters (RFC 7162), CREATE with
//! USE (RFC 6154), LIST-EXTENDED (RFC 5258) with LIST-STATUS (RFC 5819), STATUS, and APPEND
//! with MULTIAPPEND (RFC 3502), BINARY literals (RFC 3516) and UTF8 (RFC 6855).

use super::lexer::{Cursor, Lex};
use super::{one_mailbox, parse_flag_list};
use crate::imap::command::{AppendMessage, CommandBody, ListCommand, QresyncParams, SelectParams, StatusItem};

/// Most messages one MULTIAPPEND may carry.
pub const MAX_APPEND_MESSAGES: usize = 1000;

pub fn parse_select(c: &mut Cursor<'_>, select: bool) -> Lex<CommandBody> {
    let mailbox = one_mailbox(c)?;
    let mut params = SelectParams::default();
    if c.try_byte(b' ') {
        c.expect_byte(b'(')?;
        loop {
            let name = c.atom_upper()?;
            match name.as_str() {
                "CONDSTORE" => params.condstore = true,
                "QRESYNC" => {
                    c.sp()?;
                    params.qresync = Some(parse_qresync(c)?);
                }
                _ => return Err(format!("unknown select parameter {name}")),
            }
            if c.try_byte(b')') {
                break;
            }
            c.sp()?;
        }
    }
    Ok(if select { CommandBody::Select { mailbox, params } } else { CommandBody::Examine { mailbox, params } })
}

/// `"(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"`.
fn parse_qresync(c: &mut Cursor<'_>) -> Lex<QresyncParams> {
    c.expect_byte(b'(')?;
    let uid_validity = c.nz_number()?;
    c.sp()?;
    let mod_seq = c.number64()?;
    let mut known_uids = None;
    let mut seq_match = None;
    if c.try_byte(b' ') {
        if c.peek() != Some(b'(') {
            known_uids = Some(c.sequence_set()?);
            if !c.try_byte(b' ') {
                c.expect_byte(b')')?;
                return Ok(QresyncParams { uid_validity, mod_seq, known_uids, seq_match });
            }
        }
        c.expect_byte(b'(')?;
        let seqs = c.sequence_set()?;
        c.sp()?;
        let uids = c.sequence_set()?;
        c.expect_byte(b')')?;
        seq_match = Some((seqs, uids));
    }
    c.expect_byte(b')')?;
    Ok(QresyncParams { uid_validity, mod_seq, known_uids, seq_match })
}

pub fn parse_create(c: &mut Cursor<'_>) -> Lex<CommandBody> {
    let mailbox = one_mailbox(c)?;
    let mut special_use = Vec::new();
    if c.try_byte(b' ') {
        c.expect_byte(b'(')?;
        c.expect_keyword("USE")?;
        c.sp()?;
        c.expect_byte(b'(')?;
        loop {
            c.expect_byte(b'\\')?;
            special_use.push(format!("\\{}", String::from_utf8_lossy(c.atom()?)));
            if c.try_byte(b')') {
                break;
            }
            c.sp()?;
        }
        c.expect_byte(b')')?;
    }
    Ok(CommandBody::Create { mailbox, special_use })
}

pub fn parse_list(c: &mut Cursor<'_>) -> Lex<CommandBody> {
    let mut cmd = ListCommand::default();
    c.sp()?;
    if c.try_byte(b'(') {
        if !c.try_byte(b')') {
            loop {
                match c.atom_upper()?.as_str() {
                    "SUBSCRIBED" => cmd.select.subscribed = true,
                    "REMOTE" => cmd.select.remote = true,
                    "RECURSIVEMATCH" => cmd.select.recursive_match = true,
                    "SPECIAL-USE" => cmd.select.special_use = true,
                    other => return Err(format!("unknown LIST selection option {other}")),
                }
                if c.try_byte(b')') {
                    break;
                }
                c.sp()?;
            }
        }
        c.sp()?;
    }
    cmd.reference = c.astring_text()?;
    c.sp()?;
    if c.try_byte(b'(') {
        loop {
            cmd.patterns.push(c.list_mailbox()?);
            if c.try_byte(b')') {
                break;
            }
            c.sp()?;
        }
    } else {
        cmd.patterns.push(c.list_mailbox()?);
    }
    if c.try_byte(b' ') {
        c.expect_keyword("RETURN")?;
        c.sp()?;
        c.expect_byte(b'(')?;
        if !c.try_byte(b')') {
            loop {
                match c.atom_upper()?.as_str() {
                    "SUBSCRIBED" => cmd.ret.subscribed = true,
                    "CHILDREN" => cmd.ret.children = true,
                    "SPECIAL-USE" => cmd.ret.special_use = true,
                    "STATUS" => {
                        c.sp()?;
                        cmd.ret.status = parse_status_items(c)?;
                    }
                    other => return Err(format!("unknown LIST return option {other}")),
                }
                if c.try_byte(b')') {
                    break;
                }
                c.sp()?;
            }
        }
    }
    // RFC 5258 3: RECURSIVEMATCH alone is a syntax error.
    if cmd.select.recursive_match && !cmd.select.subscribed && !cmd.select.special_use {
        return Err("RECURSIVEMATCH needs another selection option".into());
    }
    Ok(CommandBody::List(cmd))
}

pub fn parse_status(c: &mut Cursor<'_>) -> Lex<CommandBody> {
    let mailbox = one_mailbox(c)?;
    c.sp()?;
    let items = parse_status_items(c)?;
    Ok(CommandBody::Status { mailbox, items })
}

fn parse_status_items(c: &mut Cursor<'_>) -> Lex<Vec<StatusItem>> {
    c.expect_byte(b'(')?;
    let mut items = Vec::new();
    loop {
        let name = c.atom_upper()?;
        items.push(match name.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            _ => return Err(format!("unknown status item {name}")),
        });
        if c.try_byte(b')') {
            return Ok(items);
        }
        c.sp()?;
    }
}

pub fn parse_append(c: &mut Cursor<'_>) -> Lex<CommandBody> {
    let mailbox = one_mailbox(c)?;
    let mut messages = Vec::new();
    while c.try_byte(b' ') {
        if messages.len() >= MAX_APPEND_MESSAGES {
            return Err("too many messages in one APPEND".into());
        }
        let mut flags = Vec::new();
        let mut internal_date = None;
        if c.peek() == Some(b'(') {
            flags = parse_flag_list(c)?;
            c.sp()?;
        }
        if c.peek() == Some(b'"') {
            internal_date = Some(c.date_time()?);
            c.sp()?;
        }
        let literal = c.literals_read();
        let (data, binary) = if c.try_keyword("UTF8") {
            // RFC 6855 4: APPEND ... UTF8 (literal8)
            c.sp()?;
            c.expect_byte(b'(')?;
            let lit = c.literal()?;
            c.expect_byte(b')')?;
            lit
        } else {
            c.literal()?
        };
        messages.push(AppendMessage { flags, internal_date, data, binary, literal });
    }
    if messages.is_empty() {
        return Err("APPEND needs a message".into());
    }
    Ok(CommandBody::Append { mailbox, messages })
}
