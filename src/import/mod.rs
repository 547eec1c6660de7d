//! `mailroom import`: a one-shot migration of a whole IMAP account from another server into
//! a local account, folders with their hierarchy, flags, keywords and internal dates.
//!
//! Who does what, and why: the running server does the copying (job.rs), the command
//! only asks for it and draws the progress (client.rs). With the Maildir backend the
//! server owns each folder's in-process state (UID index, keyword table, handles shared by
//! sessions), so a second process appending behind its back would corrupt it; going
//! through the server's own `Store` is correct for every backend, PostgreSQL included, and
//! open IMAP sessions see the new mail at once. The request travels over the control
//! socket (`state/control.sock`, mode 0600, only the server's user may connect): one line
//! `import {json request}`, then the remote password alone on the next line (never in
//! argv, never logged). The server answers with one JSON [`Event`] per line, then the
//! socket's closing `.`; when the command goes away (Ctrl-C), the next event cannot be
//! sent and the job stops between two messages.
//!
//! Resuming needs no state of its own: a remote message is already here when the local
//! folder holds a message with the same internal date (to the second) and size, counted
//! as a multiset so identical copies on the remote side each get one local copy. That
//! survives a crash between an append and any bookkeeping, a changed remote UIDVALIDITY
//! (UIDs then mean nothing, dates and sizes still do) and the PostgreSQL backend alike.
//! The price: a different local message with the very same second and byte count in the
//! same folder hides a remote one (plan.rs).
//!
//! Never: writes the password anywhere but the TLS connection to the source, speaks to the
//! source without verified TLS, or goes through Sieve (a migration is not a delivery); it
//! does respect the account's quota and stops with a clear error when it is reached.

use serde::{Deserialize, Serialize};

pub mod client;
pub mod job;
pub mod plan;
pub mod progress;

pub use job::{Importer, run, spawn_job};

/// The control socket's command word.
pub const COMMAND: &str = "import";

/// What the command asks the server to import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRequest {
    /// `imaps://user@host[:port]` or `imap://user@host[:port]` (STARTTLS).
    pub source: String,
    /// The local account, `local@domain`.
    pub to: String,
    /// Remote folders to copy (each with its children); empty: all of them.
    #[serde(default)]
    pub folders: Vec<String>,
    /// A PEM file of roots trusted for the source besides the web PKI and
    /// `MAILROOM_FETCH_CA_FILE`, read by the server.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Messages that were already here.
    pub skipped: u64,
    /// Messages that could not be copied (too big, vanished meanwhile).
    pub errors: u64,
}

/// One line of the server's answer: the job's progress as the command shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// What will be copied: messages and bytes missing here, messages already here.
    Plan { folders: u64, messages: u64, bytes: u64, skipped: u64 },
    /// A folder's copying starts.
    Folder { remote: String, local: String, messages: u64 },
    /// Copied so far, all folders together.
    Progress { messages: u64, bytes: u64 },
    /// A message that was not copied; the import goes on.
    Warning { text: String },
    /// The import is complete.
    Done { summary: Summary },
    /// The import stopped; `text` names the source or the local side.
    Failed { text: String },
}

impl Event {
    /// The event as one line (no line break inside: JSON escapes them).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"event":"failed","text":"unencodable event"}"#.into())
    }

    pub fn from_line(line: &str) -> Option<Event> {
        serde_json::from_str(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_single_lines_both_ways() {
        let events = [
            Event::Plan { folders: 2, messages: 3, bytes: 4, skipped: 5 },
            Event::Warning { text: "a\nb".into() },
            Event::Done { summary: Summary { folders: 1, messages: 2, bytes: 3, skipped: 4, errors: 5 } },
        ];
        for e in events {
            let line = e.to_line();
            assert!(!line.contains('\n') && line != ".", "{line}");
            assert_eq!(Event::from_line(&line), Some(e));
        }
        assert_eq!(Event::from_line("error: nope"), None);
    }
}
