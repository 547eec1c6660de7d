//! Grammar of SEARCH (RFC 9051 6.4.4): every search key, nested `OR`/`NOT`/parentheses
//! (depth-limited so a hostile `NOT NOT NOT ...` cannot blow the stack), `CHARSET`, ESEARCH
//! `RETURN (...)` (RFC 4731) and the CONDSTORE `MODSEQ` key (RFC 7162 3.1.5).

use super::lexer::{Cursor, Lex};
use crate::imap::command::{
    Flag, SearchCommand, SearchKey, SearchReturn, SortCommand, SortCriterion, SortKey, ThreadAlgorithm, ThreadCommand,
};

/// Deepest nesting of NOT/OR/parentheses we accept.
const MAX_DEPTH: usize = 32;
/// Most keys in one SEARCH.
const MAX_KEYS: usize = 1000;

pub fn parse_search(c: &mut Cursor<'_>, uid: bool) -> Lex<SearchCommand> {
    c.sp()?;
    let mut ret = None;
    if c.try_keyword("RETURN") {
        c.sp()?;
        c.expect_byte(b'(')?;
        let mut opts = Vec::new();
        if !c.try_byte(b')') {
            loop {
                let name = c.atom_upper()?;
                opts.push(match name.as_str() {
                    "MIN" => SearchReturn::Min,
                    "MAX" => SearchReturn::Max,
                    "ALL" => SearchReturn::All,
                    "COUNT" => SearchReturn::Count,
                    "SAVE" => SearchReturn::Save,
                    _ => return Err(format!("unknown RETURN option {name}")),
                });
                if c.try_byte(b')') {
                    break;
                }
                c.sp()?;
            }
        }
        ret = Some(opts);
        c.sp()?;
    }
    let mut charset = None;
    if c.try_keyword("CHARSET") {
        c.sp()?;
        charset = Some(c.astring_text()?.to_ascii_uppercase());
        c.sp()?;
    }
    let mut budget = MAX_KEYS;
    let mut keys = vec![parse_key(c, 0, &mut budget)?];
    while c.try_byte(b' ') {
        keys.push(parse_key(c, 0, &mut budget)?);
    }
    let key = if keys.len() == 1 { keys.pop().unwrap_or(SearchKey::All) } else { SearchKey::And(keys) };
    Ok(SearchCommand { uid, charset, ret, key })
}

/// `SORT (criteria) charset keys` (RFC 5256 5).
pub fn parse_sort(c: &mut Cursor<'_>, uid: bool) -> Lex<SortCommand> {
    c.sp()?;
    c.expect_byte(b'(')?;
    let mut criteria = Vec::new();
    loop {
        let mut name = c.atom_upper()?;
        let reverse = name == "REVERSE";
        if reverse {
            c.sp()?;
            name = c.atom_upper()?;
        }
        let key = match name.as_str() {
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            _ => return Err(format!("unknown sort key {name}")),
        };
        criteria.push(SortCriterion { reverse, key });
        if criteria.len() > 20 {
            return Err("too many sort criteria".into());
        }
        if c.try_byte(b')') {
            break;
        }
        c.sp()?;
    }
    let (charset, key) = charset_and_keys(c)?;
    Ok(SortCommand { uid, criteria, charset, key })
}

/// `SP charset 1*(SP search-key)` as SORT and THREAD write it (charset mandatory).
fn charset_and_keys(c: &mut Cursor<'_>) -> Lex<(String, SearchKey)> {
    c.sp()?;
    let charset = c.astring_text()?.to_ascii_uppercase();
    let mut budget = MAX_KEYS;
    let mut keys = Vec::new();
    while c.try_byte(b' ') {
        keys.push(parse_key(c, 0, &mut budget)?);
    }
    let key = match keys.len() {
        0 => return Err("search criteria missing".into()),
        1 => keys.pop().unwrap_or(SearchKey::All),
        _ => SearchKey::And(keys),
    };
    Ok((charset, key))
}

/// `THREAD algorithm charset keys` (RFC 5256 5).
pub fn parse_thread(c: &mut Cursor<'_>, uid: bool) -> Lex<ThreadCommand> {
    c.sp()?;
    let name = c.atom_upper()?;
    let algorithm = match name.as_str() {
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        "REFERENCES" => ThreadAlgorithm::References,
        _ => return Err(format!("unknown thread algorithm {name}")),
    };
    let (charset, key) = charset_and_keys(c)?;
    Ok(ThreadCommand { uid, algorithm, charset, key })
}

fn text_arg(c: &mut Cursor<'_>) -> Lex<String> {
    c.sp()?;
    Ok(String::from_utf8_lossy(&c.astring()?).into_owned())
}

fn parse_key(c: &mut Cursor<'_>, depth: usize, budget: &mut usize) -> Lex<SearchKey> {
    if depth > MAX_DEPTH {
        return Err("search keys nested too deeply".into());
    }
    *budget = budget.checked_sub(1).ok_or("too many search keys")?;
    match c.peek() {
        Some(b'(') => {
            c.expect_byte(b'(')?;
            let mut keys = vec![parse_key(c, depth + 1, budget)?];
            while c.try_byte(b' ') {
                keys.push(parse_key(c, depth + 1, budget)?);
            }
            c.expect_byte(b')')?;
            return Ok(if keys.len() == 1 { keys.pop().unwrap_or(SearchKey::All) } else { SearchKey::And(keys) });
        }
        Some(b) if b.is_ascii_digit() || b == b'*' || b == b'$' => {
            return Ok(SearchKey::SequenceSet(c.sequence_set()?));
        }
        _ => {}
    }
    let name = c.atom_upper()?;
    let key = match name.as_str() {
        "ALL" => SearchKey::All,
        "ANSWERED" => SearchKey::Flag(Flag::Answered),
        "DELETED" => SearchKey::Flag(Flag::Deleted),
        "DRAFT" => SearchKey::Flag(Flag::Draft),
        "FLAGGED" => SearchKey::Flag(Flag::Flagged),
        "SEEN" => SearchKey::Flag(Flag::Seen),
        "UNANSWERED" => SearchKey::NotFlag(Flag::Answered),
        "UNDELETED" => SearchKey::NotFlag(Flag::Deleted),
        "UNDRAFT" => SearchKey::NotFlag(Flag::Draft),
        "UNFLAGGED" => SearchKey::NotFlag(Flag::Flagged),
        "UNSEEN" => SearchKey::NotFlag(Flag::Seen),
        "RECENT" => SearchKey::Recent,
        "NEW" => SearchKey::New,
        "OLD" => SearchKey::Old,
        "KEYWORD" => {
            c.sp()?;
            SearchKey::Flag(Flag::Keyword(String::from_utf8_lossy(c.atom()?).into_owned()))
        }
        "UNKEYWORD" => {
            c.sp()?;
            SearchKey::NotFlag(Flag::Keyword(String::from_utf8_lossy(c.atom()?).into_owned()))
        }
        "BCC" => SearchKey::Bcc(text_arg(c)?),
        "CC" => SearchKey::Cc(text_arg(c)?),
        "FROM" => SearchKey::From(text_arg(c)?),
        "TO" => SearchKey::To(text_arg(c)?),
        "SUBJECT" => SearchKey::Subject(text_arg(c)?),
        "BODY" => SearchKey::Body(text_arg(c)?),
        "TEXT" => SearchKey::Text(text_arg(c)?),
        "HEADER" => {
            let field = text_arg(c)?;
            let value = text_arg(c)?;
            SearchKey::Header(field, value)
        }
        "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
            c.sp()?;
            let d = c.date()?;
            match name.as_str() {
                "BEFORE" => SearchKey::Before(d),
                "ON" => SearchKey::On(d),
                "SINCE" => SearchKey::Since(d),
                "SENTBEFORE" => SearchKey::SentBefore(d),
                "SENTON" => SearchKey::SentOn(d),
                _ => SearchKey::SentSince(d),
            }
        }
        "LARGER" => {
            c.sp()?;
            SearchKey::Larger(c.number64()?)
        }
        "SMALLER" => {
            c.sp()?;
            SearchKey::Smaller(c.number64()?)
        }
        "UID" => {
            c.sp()?;
            SearchKey::Uid(c.sequence_set()?)
        }
        "NOT" => {
            c.sp()?;
            SearchKey::Not(Box::new(parse_key(c, depth + 1, budget)?))
        }
        "OR" => {
            c.sp()?;
            let a = parse_key(c, depth + 1, budget)?;
            c.sp()?;
            let b = parse_key(c, depth + 1, budget)?;
            SearchKey::Or(Box::new(a), Box::new(b))
        }
        "MODSEQ" => {
            c.sp()?;
            // Optional `entry-name SP entry-type-req`; we keep one modseq per message, so
            // the entry is accepted and ignored (RFC 7162 3.1.5 allows that).
            if c.peek() == Some(b'"') {
                c.string()?;
                c.sp()?;
                let t = c.atom_upper()?;
                if !matches!(t.as_str(), "PRIV" | "SHARED" | "ALL") {
                    return Err("bad MODSEQ entry type".into());
                }
                c.sp()?;
            }
            SearchKey::ModSeq(c.number64()?)
        }
        _ => return Err(format!("unknown search key {name}")),
    };
    Ok(key)
}
