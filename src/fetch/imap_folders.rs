//! What a migration (`mailroom import`) reads from an IMAP server besides message bodies:
//! its folders (LIST, with the RFC 6154 special-use attributes when the server offers
//! SPECIAL-USE) and, per folder, each message's UID, flags, internal date and size (one
//! `UID FETCH 1:*` without bodies). Bodies are streamed one at a time by
//! [`ImapSession::retrieve`], never held here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::FetchError;
use super::imap::{Completion, ImapSession, number_after};
use crate::imap::parser::lexer::Cursor;
use crate::store::{Flag, SpecialUse};

/// One folder of the remote account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFolder {
    /// The name as the server spells it (modified UTF-7 unless it speaks UTF8=ACCEPT):
    /// what EXAMINE is given back.
    pub name: String,
    /// The hierarchy delimiter (`None`: a flat namespace).
    pub delimiter: Option<char>,
    pub special_use: Option<SpecialUse>,
    /// `\Noselect` or `\NonExistent` folders hold no messages (only children).
    pub selectable: bool,
}

/// One message of the examined folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMessage {
    pub uid: u32,
    /// System flags and keywords; `\Recent` is the server's session state and not copied.
    pub flags: Vec<Flag>,
    pub internal_date: SystemTime,
    pub size: u64,
}

impl ImapSession {
    /// Every folder, with special-use attributes: `LIST ... RETURN (SPECIAL-USE)` when the
    /// server announces SPECIAL-USE (RFC 6154 5.1), a plain LIST otherwise (servers that
    /// know the attributes show them there too).
    pub async fn folders(&mut self) -> Result<Vec<RemoteFolder>, FetchError> {
        let mut special = false;
        self.command("CAPABILITY", |line| {
            let text = String::from_utf8_lossy(line);
            if text.starts_with("* CAPABILITY ") {
                special |= text.split_ascii_whitespace().any(|c| c.eq_ignore_ascii_case("SPECIAL-USE"));
            }
            Ok(())
        })
        .await?;
        let command = if special { "LIST \"\" \"*\" RETURN (SPECIAL-USE)" } else { "LIST \"\" \"*\"" };
        let mut out = Vec::new();
        let done = self
            .command(command, |line| {
                if let Some(rest) = line.strip_prefix(b"* LIST ") {
                    out.push(parse_list(rest)?);
                }
                Ok(())
            })
            .await?;
        if let Completion::No(text) = done {
            return Err(FetchError::Protocol(format!("LIST: {text}")));
        }
        Ok(out)
    }

    /// UID, flags, internal date and size of every message of the opened folder (which
    /// holds `exists` messages: `1:*` of an empty folder is an error on some servers).
    pub async fn messages(&mut self, exists: u32) -> Result<Vec<RemoteMessage>, FetchError> {
        let mut out = Vec::new();
        if exists == 0 {
            return Ok(out);
        }
        let done = self
            .command("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)", |line| {
                let text = String::from_utf8_lossy(line);
                if text.starts_with("* ") && text.contains(" FETCH ") {
                    out.push(parse_fetch(&text)?);
                }
                Ok(())
            })
            .await?;
        if let Completion::No(text) = done {
            return Err(FetchError::Protocol(format!("UID FETCH: {text}")));
        }
        out.sort_by_key(|m| m.uid);
        out.dedup_by_key(|m| m.uid);
        Ok(out)
    }
}

/// `(attributes) delimiter name` of a LIST response.
fn parse_list(rest: &[u8]) -> Result<RemoteFolder, FetchError> {
    let bad = || FetchError::Protocol(format!("a LIST answer we cannot read: {}", String::from_utf8_lossy(rest)));
    let close = rest.iter().position(|&b| b == b')').ok_or_else(bad)?;
    let attributes = String::from_utf8_lossy(rest.get(1..close).ok_or_else(bad)?).into_owned();
    let mut cursor = Cursor::new(&rest[close + 1..]);
    cursor.sp().map_err(|_| bad())?;
    let delimiter = if cursor.try_byte(b'"') {
        let escaped = cursor.try_byte(b'\\');
        let c = cursor.peek().ok_or_else(bad)?;
        if !escaped && c == b'\\' {
            return Err(bad());
        }
        cursor.expect_byte(c).map_err(|_| bad())?;
        cursor.expect_byte(b'"').map_err(|_| bad())?;
        Some(c as char)
    } else {
        let nil = cursor.atom().map_err(|_| bad())?;
        if !nil.eq_ignore_ascii_case(b"NIL") {
            return Err(bad());
        }
        None
    };
    cursor.sp().map_err(|_| bad())?;
    if cursor.peek() == Some(b'{') {
        return Err(FetchError::Protocol(
            "the server names a folder with a literal (a name with line breaks or 8-bit bytes): not supported".into(),
        ));
    }
    let name = cursor.astring_text().map_err(|_| bad())?;
    let words: Vec<&str> = attributes.split_ascii_whitespace().collect();
    let has = |a: &str| words.iter().any(|w| w.eq_ignore_ascii_case(a));
    Ok(RemoteFolder {
        name,
        delimiter,
        special_use: words.iter().find_map(|w| SpecialUse::from_attribute(w)),
        selectable: !has("\\Noselect") && !has("\\NonExistent"),
    })
}

/// `* n FETCH (UID u FLAGS (...) INTERNALDATE "..." RFC822.SIZE s)`, items in any order.
fn parse_fetch(text: &str) -> Result<RemoteMessage, FetchError> {
    let bad = |what: &str| FetchError::Protocol(format!("no {what} in a FETCH answer: {text}"));
    let uid = number_after(text, "UID").and_then(|u| u32::try_from(u).ok()).ok_or_else(|| bad("UID"))?;
    let size = number_after(text, "RFC822.SIZE").ok_or_else(|| bad("RFC822.SIZE"))?;
    let flags_at = text.find("FLAGS (").ok_or_else(|| bad("FLAGS"))? + "FLAGS (".len();
    let flags_end = text[flags_at..].find(')').ok_or_else(|| bad("FLAGS"))? + flags_at;
    let flags = text[flags_at..flags_end].split_ascii_whitespace().filter_map(flag).collect();
    let date_at = text.find("INTERNALDATE \"").ok_or_else(|| bad("INTERNALDATE"))? + "INTERNALDATE ".len();
    let date_end = text[date_at + 1..].find('"').ok_or_else(|| bad("INTERNALDATE"))? + date_at + 2;
    let secs = Cursor::new(&text.as_bytes()[date_at..date_end]).date_time().map_err(|_| bad("valid INTERNALDATE"))?;
    let internal_date = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    Ok(RemoteMessage { uid, flags, internal_date, size })
}

/// A flag of a FETCH answer as the store keeps it; `\Recent` and unknown system flags
/// (`\*` never appears in FETCH) are dropped.
fn flag(word: &str) -> Option<Flag> {
    let flag = match word.to_ascii_lowercase().as_str() {
        "\\seen" => Flag::Seen,
        "\\answered" => Flag::Answered,
        "\\flagged" => Flag::Flagged,
        "\\deleted" => Flag::Deleted,
        "\\draft" => Flag::Draft,
        _ if word.starts_with('\\') => return None,
        _ => Flag::Keyword(word.into()),
    };
    Some(flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_answers() {
        let f = parse_list(b"(\\HasNoChildren \\Sent) \"/\" \"Sent Items\"").unwrap();
        assert_eq!(f.name, "Sent Items");
        assert_eq!(f.delimiter, Some('/'));
        assert_eq!(f.special_use, Some(SpecialUse::Sent));
        assert!(f.selectable);
        let f = parse_list(b"(\\Noselect \\HasChildren) \".\" Archive").unwrap();
        assert_eq!((f.name.as_str(), f.delimiter, f.special_use, f.selectable), ("Archive", Some('.'), None, false));
        let f = parse_list(b"() NIL INBOX").unwrap();
        assert_eq!((f.name.as_str(), f.delimiter), ("INBOX", None));
        let f = parse_list(b"() \"\\\\\" \"a\\\\b\"").unwrap();
        assert_eq!((f.name.as_str(), f.delimiter), ("a\\b", Some('\\')));
        assert!(parse_list(b"() \"/\" {5}").is_err());
        assert!(parse_list(b"garbage").is_err());
    }

    #[test]
    fn fetch_answers() {
        let m = parse_fetch(
            "* 2 FETCH (UID 7 FLAGS (\\Seen \\Recent $Forwarded custom) INTERNALDATE \"02-Jan-2020 03:04:05 +0100\" RFC822.SIZE 321)",
        )
        .unwrap();
        assert_eq!(m.uid, 7);
        assert_eq!(m.size, 321);
        assert_eq!(m.flags, vec![Flag::Seen, Flag::Keyword("$Forwarded".into()), Flag::Keyword("custom".into())]);
        assert_eq!(m.internal_date, UNIX_EPOCH + Duration::from_secs(1_577_930_645));
        assert!(parse_fetch("* 2 FETCH (UID 7 FLAGS ())").is_err());
    }
}
