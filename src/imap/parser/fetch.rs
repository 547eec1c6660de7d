//! Grammar of FETCH and STORE (RFC 9051 6.4.5/6.4.6): data items with the ALL/FAST/FULL
//! macros, `BODY[section]<partial>`, BINARY (RFC 3516), and the CONDSTORE/QRESYNC
//! modifiers CHANGEDSINCE, VANISHED and UNCHANGEDSINCE (RFC 7162).

use super::lexer::{Cursor, Lex};
use super::{flag_from_text, parse_flag_list};
use crate::imap::command::{FetchCommand, FetchItem, Section, SectionText, StoreCommand, StoreOp};

/// Most items (and header field names) one FETCH may ask for.
const MAX_ITEMS: usize = 100;

pub fn parse_fetch(c: &mut Cursor<'_>, uid: bool) -> Lex<FetchCommand> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mut items = Vec::new();
    if c.try_keyword("ALL") {
        items = vec![FetchItem::Flags, FetchItem::InternalDate, FetchItem::Rfc822Size, FetchItem::Envelope];
    } else if c.try_keyword("FAST") {
        items = vec![FetchItem::Flags, FetchItem::InternalDate, FetchItem::Rfc822Size];
    } else if c.try_keyword("FULL") {
        items = vec![
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
            FetchItem::Body,
        ];
    } else if c.try_byte(b'(') {
        loop {
            if items.len() >= MAX_ITEMS {
                return Err("too many FETCH items".into());
            }
            items.push(parse_item(c)?);
            if c.try_byte(b')') {
                break;
            }
            c.sp()?;
        }
    } else {
        items.push(parse_item(c)?);
    }
    let mut cmd = FetchCommand { uid, set, items, changed_since: None, vanished: false };
    if c.try_byte(b' ') {
        c.expect_byte(b'(')?;
        loop {
            let name = c.atom_upper()?;
            match name.as_str() {
                "CHANGEDSINCE" => {
                    c.sp()?;
                    cmd.changed_since = Some(c.number64()?);
                }
                "VANISHED" => cmd.vanished = true,
                _ => return Err(format!("unknown FETCH modifier {name}")),
            }
            if c.try_byte(b')') {
                break;
            }
            c.sp()?;
        }
        // RFC 7162 3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
        if cmd.vanished && (!uid || cmd.changed_since.is_none()) {
            return Err("VANISHED needs UID FETCH with CHANGEDSINCE".into());
        }
    }
    if uid && !cmd.items.contains(&FetchItem::Uid) {
        // RFC 9051 6.4.9: UID FETCH always returns UID.
        cmd.items.push(FetchItem::Uid);
    }
    Ok(cmd)
}

fn parse_item(c: &mut Cursor<'_>) -> Lex<FetchItem> {
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let item = match name.as_str() {
        "ENVELOPE" => FetchItem::Envelope,
        "FLAGS" => FetchItem::Flags,
        "INTERNALDATE" => FetchItem::InternalDate,
        "RFC822" => FetchItem::Rfc822,
        "RFC822.HEADER" => FetchItem::Rfc822Header,
        "RFC822.SIZE" => FetchItem::Rfc822Size,
        "RFC822.TEXT" => FetchItem::Rfc822Text,
        "BODYSTRUCTURE" => FetchItem::BodyStructure,
        "UID" => FetchItem::Uid,
        "MODSEQ" => FetchItem::ModSeq,
        "BODY" | "BODY.PEEK" => {
            if c.peek() != Some(b'[') {
                if name == "BODY.PEEK" {
                    return Err("BODY.PEEK needs a section".into());
                }
                return Ok(FetchItem::Body);
            }
            let section = parse_section(c)?;
            let partial = parse_partial(c)?;
            FetchItem::BodySection { peek: name == "BODY.PEEK", section, partial }
        }
        "BINARY" | "BINARY.PEEK" => {
            let part = parse_binary_part(c)?;
            let partial = parse_partial(c)?;
            FetchItem::Binary { peek: name == "BINARY.PEEK", part, partial }
        }
        "BINARY.SIZE" => FetchItem::BinarySize { part: parse_binary_part(c)? },
        _ => return Err(format!("unknown FETCH item {name}")),
    };
    Ok(item)
}

/// `"[" [section-spec] "]"`.
fn parse_section(c: &mut Cursor<'_>) -> Lex<Section> {
    c.expect_byte(b'[')?;
    let mut section = Section::default();
    if c.try_byte(b']') {
        return Ok(section);
    }
    loop {
        if c.peek().is_some_and(|b| b.is_ascii_digit()) {
            section.part.push(c.nz_number()?);
            if section.part.len() > 32 {
                return Err("section part too deep".into());
            }
            if c.try_byte(b'.') {
                continue;
            }
            break;
        }
        let spec = c.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
        let spec = String::from_utf8_lossy(spec).to_ascii_uppercase();
        section.text = Some(match spec.as_str() {
            "HEADER" => SectionText::Header,
            "TEXT" => SectionText::Text,
            "MIME" if !section.part.is_empty() => SectionText::Mime,
            "HEADER.FIELDS" => SectionText::HeaderFields(parse_header_list(c)?),
            "HEADER.FIELDS.NOT" => SectionText::HeaderFieldsNot(parse_header_list(c)?),
            _ => return Err(format!("bad section {spec}")),
        });
        break;
    }
    c.expect_byte(b']')?;
    Ok(section)
}

/// `SP "(" header-fld-name *(SP header-fld-name) ")"`.
fn parse_header_list(c: &mut Cursor<'_>) -> Lex<Vec<String>> {
    c.sp()?;
    c.expect_byte(b'(')?;
    let mut names = Vec::new();
    loop {
        if names.len() >= MAX_ITEMS {
            return Err("too many header fields".into());
        }
        names.push(c.astring_text()?.to_ascii_uppercase());
        if c.try_byte(b')') {
            return Ok(names);
        }
        c.sp()?;
    }
}

/// `"[" [section-part] "]"` for BINARY.
fn parse_binary_part(c: &mut Cursor<'_>) -> Lex<Vec<u32>> {
    c.expect_byte(b'[')?;
    let mut part = Vec::new();
    if c.try_byte(b']') {
        return Ok(part);
    }
    loop {
        part.push(c.nz_number()?);
        if part.len() > 32 {
            return Err("section part too deep".into());
        }
        if !c.try_byte(b'.') {
            break;
        }
    }
    c.expect_byte(b']')?;
    Ok(part)
}

/// `"<" number "." nz-number ">"`.
fn parse_partial(c: &mut Cursor<'_>) -> Lex<Option<(u32, u32)>> {
    if !c.try_byte(b'<') {
        return Ok(None);
    }
    let start = c.number()?;
    c.expect_byte(b'.')?;
    let len = c.nz_number()?;
    c.expect_byte(b'>')?;
    Ok(Some((start, len)))
}

pub fn parse_store(c: &mut Cursor<'_>, uid: bool) -> Lex<StoreCommand> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.try_byte(b'(') {
        loop {
            let name = c.atom_upper()?;
            match name.as_str() {
                "UNCHANGEDSINCE" => {
                    c.sp()?;
                    unchanged_since = Some(c.number64()?);
                }
                _ => return Err(format!("unknown STORE modifier {name}")),
            }
            if c.try_byte(b')') {
                break;
            }
            c.sp()?;
        }
        c.sp()?;
    }
    let op = if c.try_byte(b'+') {
        StoreOp::Add
    } else if c.try_byte(b'-') {
        StoreOp::Remove
    } else {
        StoreOp::Replace
    };
    let name = c.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
    let silent = match String::from_utf8_lossy(name).to_ascii_uppercase().as_str() {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return Err("expected FLAGS or FLAGS.SILENT".into()),
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        parse_flag_list(c)?
    } else {
        let mut flags = vec![flag_from_text(&c.flag_text()?)?];
        while c.try_byte(b' ') {
            flags.push(flag_from_text(&c.flag_text()?)?);
        }
        flags
    };
    Ok(StoreCommand { uid, set, unchanged_since, op, silent, flags })
}
