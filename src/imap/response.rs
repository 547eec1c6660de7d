//! What a command answers: the tagged completion (`Tagged`), the mapping of store failures
//! to response codes (the one place they become IMAP codes), flag conversion and rendering,
//! and the extensions the client enabled (they change how responses are written). Below
//! the session and the handlers: it imports neither, so `selected` and `cmd` can share it.

use std::borrow::Cow;

use super::command::Flag;
use crate::store::{self as st, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    /// Reply already written by the handler (STARTTLS).
    Silent,
}

/// The tagged completion of a command: status, optional response code, text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub status: Status,
    pub code: Option<Cow<'static, str>>,
    pub text: Cow<'static, str>,
}

impl Tagged {
    pub fn ok(text: impl Into<Cow<'static, str>>) -> Tagged {
        Tagged { status: Status::Ok, code: None, text: text.into() }
    }

    pub fn no(text: impl Into<Cow<'static, str>>) -> Tagged {
        Tagged { status: Status::No, code: None, text: text.into() }
    }

    pub fn bad(text: impl Into<Cow<'static, str>>) -> Tagged {
        Tagged { status: Status::Bad, code: None, text: text.into() }
    }

    pub fn silent() -> Tagged {
        Tagged { status: Status::Silent, code: None, text: "".into() }
    }

    pub fn code(mut self, code: impl Into<Cow<'static, str>>) -> Tagged {
        self.code = Some(code.into());
        self
    }

    /// `tag OK [CODE] text` (the command name is used when the text is empty).
    pub fn write(&self, out: &mut Vec<u8>, tag: &str, command: &str) {
        let status = match self.status {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Silent => return,
        };
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.as_bytes());
        if let Some(code) = &self.code {
            out.extend_from_slice(format!(" [{code}]").as_bytes());
        }
        out.push(b' ');
        if self.text.is_empty() {
            out.extend_from_slice(format!("{command} completed").as_bytes());
        } else {
            out.extend_from_slice(self.text.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Extensions the client turned on (RFC 5161 ENABLE, or implicitly for CONDSTORE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enabled {
    pub condstore: bool,
    pub qresync: bool,
    pub utf8_accept: bool,
    pub imap4rev2: bool,
}

impl Enabled {
    /// Mailbox names travel as UTF-8 (RFC 6855 / RFC 9051) instead of modified UTF-7.
    pub fn utf8_names(&self) -> bool {
        self.utf8_accept || self.imap4rev2
    }
}

/// Map a store failure to a tagged NO with the RFC 5530 response code a client can act on.
/// Internal faults are logged here, once.
pub fn store_error(e: &StoreError, peer: &std::net::SocketAddr) -> Tagged {
    match e {
        StoreError::NoSuchFolder(_) => Tagged::no("Mailbox does not exist").code("NONEXISTENT"),
        StoreError::FolderExists(_) => Tagged::no("Mailbox already exists").code("ALREADYEXISTS"),
        StoreError::InvalidFolderName(_) => Tagged::no("Invalid mailbox name").code("CANNOT"),
        StoreError::HasChildren(_) => Tagged::no("Mailbox has sub-mailboxes; delete them first").code("INUSE"),
        StoreError::NotPermitted(_) => Tagged::no("Not permitted on this mailbox").code("CANNOT"),
        StoreError::NoSuchMessage(_) => Tagged::no("Some messages were expunged").code("EXPUNGEISSUED"),
        StoreError::Limit(what) => Tagged::no(*what).code("LIMIT"),
        // RFC 5530 has no "disk full" code. OVERQUOTA ("the user would be over quota after
        // the operation") is what a client can act on: stop adding, delete something, try
        // later — and what Dovecot answers to ENOSPC. SERVERBUG would blame a bug, LIMIT an
        // administrator's per-command limit; neither is true here.
        e if e.is_disk_full() => {
            tracing::warn!(%peer, error = %e, "IMAP write failed: disk full");
            Tagged::no("Not enough disk space").code("OVERQUOTA")
        }
        // IMAP never touches Sieve scripts: reaching these is an internal fault.
        StoreError::InvalidAccount(_)
        | StoreError::InvalidScriptName(_)
        | StoreError::NoSuchScript(_)
        | StoreError::ScriptExists(_)
        | StoreError::ScriptActive(_)
        | StoreError::Io { .. }
        | StoreError::Background(_)
        | StoreError::Unavailable(_)
        | StoreError::Conflict(_) => {
            tracing::warn!(%peer, error = %e, "IMAP store failure");
            Tagged::no("Internal error, try again later").code("UNAVAILABLE")
        }
    }
}

pub fn to_store_flag(f: &Flag) -> st::Flag {
    match f {
        Flag::Seen => st::Flag::Seen,
        Flag::Answered => st::Flag::Answered,
        Flag::Flagged => st::Flag::Flagged,
        Flag::Deleted => st::Flag::Deleted,
        Flag::Draft => st::Flag::Draft,
        Flag::Keyword(k) => st::Flag::Keyword(k.as_str().into()),
    }
}

pub fn from_store_flag(f: &st::Flag) -> Flag {
    match f {
        st::Flag::Seen => Flag::Seen,
        st::Flag::Answered => Flag::Answered,
        st::Flag::Flagged => Flag::Flagged,
        st::Flag::Deleted => Flag::Deleted,
        st::Flag::Draft => Flag::Draft,
        st::Flag::Keyword(k) => Flag::Keyword(k.to_string()),
    }
}

/// `(\Seen $Junk \Recent)`: store flags and, for a message recent in this session,
/// `\Recent` (RFC 3501 2.3.2: a session flag, never stored).
pub fn write_flags_recent(out: &mut Vec<u8>, flags: &[st::Flag], recent: bool) {
    write_flags(out, flags);
    if recent {
        out.pop();
        if !flags.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\Recent)");
    }
}

/// `(\Seen $Junk)` for store flags.
pub fn write_flags(out: &mut Vec<u8>, flags: &[st::Flag]) {
    let converted: Vec<Flag> = flags.iter().map(from_store_flag).collect();
    super::render::flag_list(out, &converted);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_lines() {
        let mut out = Vec::new();
        Tagged::no("Mailbox does not exist").code("TRYCREATE").write(&mut out, "a1", "COPY");
        Tagged::ok("").write(&mut out, "a2", "UID FETCH");
        Tagged::silent().write(&mut out, "a3", "STARTTLS");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a1 NO [TRYCREATE] Mailbox does not exist\r\na2 OK UID FETCH completed\r\n"
        );
    }

    #[test]
    fn an_unreachable_store_is_no_unavailable() {
        let peer: std::net::SocketAddr = ([192, 0, 2, 1], 1143).into();
        let mut out = Vec::new();
        store_error(&StoreError::Unavailable("database down".into()), &peer).write(&mut out, "a1", "SELECT");
        assert_eq!(String::from_utf8(out).unwrap(), "a1 NO [UNAVAILABLE] Internal error, try again later\r\n");
    }
}
