//! An account's vacation settings (on/off, subject, text, first and last day), kept as a
//! Sieve script of one reserved name, [`VACATION_SCRIPT`], apart from the user's own
//! scripts.
//!
//! Why a script: delivery already runs Sieve, the vacation action already follows
//! RFC 3834 (`vacation.rs`), and the reply memory is the one user scripts use, so the
//! form adds no second autoresponder. Why a reserved name rather than the active script:
//! the user's ManageSieve scripts stay theirs; delivery includes this one before the
//! active script (`engine.rs`), and ManageSieve neither lists nor changes it.
//!
//! The settings are read back for the form from the script's first line, a comment
//! holding them as JSON; a script without that line (or with settings that no longer
//! validate) reads as the defaults, so the form never shows what it could not save.
//! Disabled settings stay stored (the text is not lost) as a script with no action, and
//! delivery skips it without evaluating anything.
//!
//! Strings go into the script through the `encoded-character` extension (RFC 5228
//! 2.4.2.4) for `"`, `\` and `$`, never through backslash escapes: sieve-rs 0.7 reads
//! `\\"` as an escaped quote and turns `\n` into a newline, so a backslash escape cannot
//! carry every subject. The text is a `text:` literal (dot-stuffed, CRLF lines).
//!
//! Dates: `currentdate :zone "+0000"` (RFC 5260) compared as `YYYY-MM-DD` strings with
//! `:value "ge"`/`"le"` (RFC 5231): both days are included, days are UTC days.

use std::fmt;

use bytes::Bytes;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::ScriptSource;
use crate::store::{MailboxOwner, Store, StoreError};

/// The script name the settings are kept under, for every account.
pub const VACATION_SCRIPT: &str = "mailroom-vacation";
/// Longest subject, in characters (a subject line fits a phone screen at about this).
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Largest reply text, in UTF-8 bytes: a few screens of text, far below the script
/// size limit even with the settings line repeating it.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// `:days` of the reply: one reply per sender per week, RFC 5230's suggested default,
/// so a correspondent writing daily during a long absence is reminded weekly.
pub const REPLY_DAYS: u32 = 7;

/// Starts the script's first line; the settings as JSON follow it.
const SETTINGS_PREFIX: &str = "# mailroom-vacation-settings ";
/// The version of the JSON form, for a later change of it.
const SETTINGS_VERSION: u32 = 1;

/// What the vacation form edits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VacationSettings {
    pub enabled: bool,
    /// The reply's subject; empty: the engine's default (`Auto: ` and the original's).
    pub subject: String,
    /// The reply's text (plain text, any line endings).
    pub text: String,
    /// First day replies go out (UTC), if any.
    pub start: Option<NaiveDate>,
    /// Last day replies go out (UTC), if any.
    pub end: Option<NaiveDate>,
}

/// Which date field of the form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateField {
    Start,
    End,
}

/// Why settings cannot be saved; its `Display` is meant for the user of the form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidVacation {
    SubjectMultiline,
    SubjectTooLong,
    SubjectControl,
    TextEmpty,
    TextTooLong,
    TextControl,
    BadDate { field: DateField, value: String },
    EndBeforeStart,
}

impl fmt::Display for InvalidVacation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidVacation::SubjectMultiline => write!(f, "The subject must be a single line."),
            InvalidVacation::SubjectTooLong => write!(f, "The subject is limited to {MAX_SUBJECT_CHARS} characters."),
            InvalidVacation::SubjectControl => write!(f, "The subject contains a control character."),
            InvalidVacation::TextEmpty => write!(f, "Write the text of the reply to turn the vacation reply on."),
            InvalidVacation::TextTooLong => write!(f, "The text is limited to {} KiB.", MAX_TEXT_BYTES / 1024),
            InvalidVacation::TextControl => write!(f, "The text contains a control character."),
            InvalidVacation::BadDate { field, value } => {
                let which = match field {
                    DateField::Start => "first day",
                    DateField::End => "last day",
                };
                write!(f, "The {which} {value:?} is not a date of the form YYYY-MM-DD.")
            }
            InvalidVacation::EndBeforeStart => write!(f, "The last day is before the first day."),
        }
    }
}

impl std::error::Error for InvalidVacation {}

/// What [`load`] and [`save`] fail with.
#[derive(Debug, thiserror::Error)]
pub enum VacationError {
    /// The settings were refused; the reason is for the user.
    #[error("{0}")]
    Invalid(InvalidVacation),
    #[error("vacation settings: {0}")]
    Store(#[from] StoreError),
}

/// A form date: empty means none; otherwise exactly `YYYY-MM-DD`, a real day.
pub fn parse_date(field: DateField, value: &str) -> Result<Option<NaiveDate>, InvalidVacation> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || InvalidVacation::BadDate { field, value: value.chars().take(40).collect() };
    let b = value.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| value[r].parse::<u32>().map_err(|_| bad());
    let year = i32::try_from(num(0..4)?).map_err(|_| bad())?;
    NaiveDate::from_ymd_opt(year, num(5..7)?, num(8..10)?).map(Some).ok_or_else(bad)
}

impl VacationSettings {
    /// The settings from the form's fields, validated.
    pub fn from_form(
        enabled: bool,
        subject: &str,
        text: &str,
        start: &str,
        end: &str,
    ) -> Result<VacationSettings, InvalidVacation> {
        let settings = VacationSettings {
            enabled,
            subject: subject.trim().to_string(),
            text: text.to_string(),
            start: parse_date(DateField::Start, start)?,
            end: parse_date(DateField::End, end)?,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Whether these settings may be saved (the first problem found).
    pub fn validate(&self) -> Result<(), InvalidVacation> {
        if self.subject.contains(['\r', '\n']) {
            return Err(InvalidVacation::SubjectMultiline);
        }
        if self.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(InvalidVacation::SubjectTooLong);
        }
        if self.subject.chars().any(forbidden) {
            return Err(InvalidVacation::SubjectControl);
        }
        if self.enabled && self.text.trim().is_empty() {
            return Err(InvalidVacation::TextEmpty);
        }
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(InvalidVacation::TextTooLong);
        }
        if self.text.chars().any(|c| c != '\r' && c != '\n' && forbidden(c)) {
            return Err(InvalidVacation::TextControl);
        }
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end < start
        {
            return Err(InvalidVacation::EndBeforeStart);
        }
        Ok(())
    }

    /// The Sieve script that keeps these settings (and, enabled, acts on them). Call it
    /// on validated settings: it writes whatever it is given, correctly escaped.
    pub fn to_script(&self) -> String {
        let stored = Stored {
            v: SETTINGS_VERSION,
            enabled: self.enabled,
            subject: self.subject.clone(),
            text: self.text.clone(),
            start: self.start.map(|d| d.format("%Y-%m-%d").to_string()),
            end: self.end.map(|d| d.format("%Y-%m-%d").to_string()),
        };
        // serde_json escapes every control character, so the JSON stays on one line.
        let json = serde_json::to_string(&stored).unwrap_or_default();
        let mut s = format!("{SETTINGS_PREFIX}{json}\r\n");
        s.push_str("# Written by the account pages of mailroom; change it there.\r\n");
        if !self.enabled {
            s.push_str("# The vacation reply is off.\r\n");
            return s;
        }
        let dated = self.start.is_some() || self.end.is_some();
        s.push_str(if dated {
            "require [\"vacation\", \"encoded-character\", \"date\", \"relational\"];\r\n"
        } else {
            "require [\"vacation\", \"encoded-character\"];\r\n"
        });
        let mut window = Vec::new();
        if let Some(start) = self.start {
            window.push(format!("currentdate :zone \"+0000\" :value \"ge\" \"date\" \"{}\"", start.format("%Y-%m-%d")));
        }
        if let Some(end) = self.end {
            window.push(format!("currentdate :zone \"+0000\" :value \"le\" \"date\" \"{}\"", end.format("%Y-%m-%d")));
        }
        if dated {
            s.push_str(&format!("if allof ({}) {{\r\n", window.join(", ")));
        }
        s.push_str(&format!("vacation :days {REPLY_DAYS}"));
        if !self.subject.is_empty() {
            s.push_str(&format!(" :subject {}", quoted(&self.subject)));
        }
        s.push_str(" text:\r\n");
        s.push_str(&multiline(&self.text));
        s.push_str(";\r\n");
        if dated {
            s.push_str("}\r\n");
        }
        s
    }

    /// The settings a stored script keeps; the defaults for one that keeps none (another
    /// program's script, a damaged one) or keeps settings that do not validate.
    pub fn from_script(script: &[u8]) -> VacationSettings {
        let first = script.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        let parsed = std::str::from_utf8(first)
            .ok()
            .and_then(|line| line.strip_prefix(SETTINGS_PREFIX))
            .and_then(|json| serde_json::from_str::<Stored>(json).ok())
            .filter(|s| s.v == SETTINGS_VERSION)
            .and_then(|s| {
                let date = |field, d: Option<String>| parse_date(field, d.as_deref().unwrap_or("")).ok();
                Some(VacationSettings {
                    enabled: s.enabled,
                    subject: s.subject,
                    text: s.text,
                    start: date(DateField::Start, s.start)?,
                    end: date(DateField::End, s.end)?,
                })
            });
        parsed.filter(|s| s.validate().is_ok()).unwrap_or_default()
    }
}

/// The JSON of the settings line.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    enabled: bool,
    subject: String,
    text: String,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

/// Characters refused in the subject and the text (line ends aside): control characters
/// and the Unicode line and paragraph separators, which no mail header or Sieve string
/// should carry unnoticed. A tab is fine.
fn forbidden(c: char) -> bool {
    (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
}

/// `value` as a Sieve quoted string, `"`, `\` and `$` as `${hex:..}` (the script requires
/// `encoded-character`, so a literal `${hex:41}` typed by the user must not decode).
fn quoted(value: &str) -> String {
    format!("\"{}\"", encode_specials(value, &['"', '\\', '$']))
}

/// `text` as a `text:` body: CRLF lines, a line starting with `.` doubled, `$` encoded
/// as in [`quoted`], and the closing `.` line.
fn multiline(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(&encode_specials(line, &['$']));
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

fn encode_specials(value: &str, specials: &[char]) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if specials.contains(&c) {
            out.push_str(&format!("${{hex:{:02X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The account's vacation settings, for the form (the defaults when none are stored).
pub async fn load(store: &Store, owner: &MailboxOwner) -> Result<VacationSettings, VacationError> {
    Ok(store.sieve_get(owner, VACATION_SCRIPT).await?.map(|s| VacationSettings::from_script(&s)).unwrap_or_default())
}

/// Validate and store `settings` (durable when it returns). Disabled settings are kept
/// too, as a script that does nothing, so turning the reply on again keeps the text.
pub async fn save(store: &Store, owner: &MailboxOwner, settings: &VacationSettings) -> Result<(), VacationError> {
    settings.validate().map_err(VacationError::Invalid)?;
    store.sieve_put(owner, VACATION_SCRIPT, settings.to_script().as_bytes()).await?;
    Ok(())
}

/// The vacation script delivery runs for `owner`: stored and enabled, else `None`.
pub async fn delivery_script(source: &dyn ScriptSource, owner: &MailboxOwner) -> Result<Option<Bytes>, StoreError> {
    let script = source.get(owner, VACATION_SCRIPT).await?;
    Ok(script.filter(|s| VacationSettings::from_script(s).enabled))
}
