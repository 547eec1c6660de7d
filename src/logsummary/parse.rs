//! One log line -> one mail log [`Event`], or `None` for every other line. Both formats
//! of `MAILROOM_LOG_FORMAT`: JSON (one object per line, the event's fields at top level,
//! `target` `mailroom::mail`) and text (tracing's `fmt` output: timestamp, level, spans,
//! the message and `key=value` fields, strings quoted as Rust's `{:?}` quotes them; the
//! server leaves the target out, so the fields say what is a mail log line). Pure; no
//! line is ever trusted to be well-formed.

use crate::maillog::{Stage, TARGET};

/// The fields of one mail log line that the summary uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `YYYY-MM-DD` (UTC, as the log writes its timestamps).
    pub day: String,
    pub hour: u8,
    pub stage: Option<Stage>,
    pub msgid: String,
    pub from: String,
    pub to: String,
    pub size: u64,
    pub status: String,
    pub reason: String,
    pub reply: String,
    pub spf: String,
    pub dkim: String,
    pub dmarc: String,
}

impl Event {
    fn set(&mut self, key: &str, value: &str) {
        match key {
            "stage" => self.stage = Stage::parse(value),
            "msgid" => self.msgid = value.to_string(),
            "from" => self.from = value.to_string(),
            "to" => self.to = value.to_string(),
            "size" => self.size = value.parse().unwrap_or(0),
            "status" => self.status = value.to_string(),
            "reason" => self.reason = value.to_string(),
            "reply" => self.reply = value.to_string(),
            "spf" => self.spf = value.to_string(),
            "dkim" => self.dkim = value.to_string(),
            "dmarc" => self.dmarc = value.to_string(),
            _ => {}
        }
    }

    /// Day and hour from an RFC 3339 timestamp (`2026-12-07T13:04:05.123Z`).
    fn set_time(&mut self, timestamp: &str) -> Option<()> {
        let day = timestamp.get(..10)?;
        let hour: u8 = timestamp.get(11..13)?.parse().ok()?;
        let date_like = day.len() == 10 && day.as_bytes()[4] == b'-' && day.as_bytes()[7] == b'-';
        if !date_like || hour > 23 || timestamp.as_bytes().get(10) != Some(&b'T') {
            return None;
        }
        self.day = day.to_string();
        self.hour = hour;
        Some(())
    }
}

/// The mail log event on `line`, if it is one (either format).
pub fn parse_line(line: &str) -> Option<Event> {
    let line = line.trim();
    if line.starts_with('{') { parse_json(line) } else { parse_text(line) }
}

fn parse_json(line: &str) -> Option<Event> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    if object.get("target")?.as_str()? != TARGET {
        return None;
    }
    let mut event = Event::default();
    event.set_time(object.get("timestamp")?.as_str()?)?;
    for (key, value) in object {
        match value {
            serde_json::Value::String(s) => event.set(key, s),
            serde_json::Value::Number(n) => event.set(key, &n.to_string()),
            _ => {}
        }
    }
    event.stage?;
    Some(event)
}

fn parse_text(line: &str) -> Option<Event> {
    let plain = strip_ansi(line);
    let (timestamp, _) = plain.split_once(' ')?;
    // The server's text format leaves the target out: a mail log event is the one whose
    // fields start with a quoted `msgid` (spans show theirs unquoted) and that has a
    // `stage` (no other event has one).
    let start = plain.find(" msgid=\"")?;
    let fields = &plain[start..];
    let mut event = Event::default();
    event.set_time(timestamp)?;
    for (key, value) in text_fields(fields) {
        event.set(key, &value);
    }
    event.stage?;
    Some(event)
}

/// The `key=value` pairs of a text line's field part; a value is a `{:?}`-quoted
/// string (`\"` and `\\` unescaped) or runs to the next space. Words without `=` (the
/// message) are skipped.
fn text_fields(mut rest: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        if !rest[word_end..].starts_with('=') {
            rest = &rest[word_end..];
            continue;
        }
        let key = &rest[..word_end];
        rest = &rest[word_end + 1..];
        if let Some(quoted) = rest.strip_prefix('"') {
            let (value, used) = unquote(quoted);
            out.push((key, value));
            rest = &quoted[used..];
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            out.push((key, rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
}

/// The string up to the closing quote, and how many bytes of `s` it took (quote
/// included); an unterminated string takes the rest.
fn unquote(s: &str) -> (String, usize) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, i + 1),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, other)) => value.push(other),
                None => break,
            },
            c => value.push(c),
        }
    }
    (value, s.len())
}

/// The line without ANSI colour sequences (a log written to a terminal has them).
fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\x1b') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
