//! Periodic fetch: mail of remote POP3 and IMAP accounts (`MAILROOM_FETCH`) brought into
//! local mailboxes through the one local delivery (`smtp::courier::LocalCourier`, with
//! Sieve), as if it had arrived on port 25 for the account.
//!
//! Owns: the entry syntax (entry.rs), the passwords file (passwords.rs), the two client
//! protocols over verified TLS only (wire.rs, pop3.rs, imap.rs), what each source has
//! fetched (state.rs), and the loop that runs each source (run.rs). The IMAP client also
//! serves `mailroom import` (imap_folders.rs: folder list and message metadata). Never sends a
//! password without TLS, never logs one, and never deletes a remote message before its
//! local copy is durable and recorded.

use std::sync::Mutex;
use std::time::SystemTime;

use thiserror::Error;

pub mod entry;
mod imap;
mod imap_folders;
pub mod passwords;
mod pop3;
pub mod run;
pub mod state;
mod wire;

pub use entry::{FetchConfig, FetchSource, TlsStart, parse_import_url};
pub use imap::{Access, ImapSession};
pub use imap_folders::{RemoteFolder, RemoteMessage};
pub use passwords::Passwords;
pub use run::{Fetcher, Sources, run_all};
pub use wire::connector;

/// Why a fetch run stopped. The run is retried after a back-off; the message being
/// fetched stays on the server.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    #[error("cannot reach the server: {0}")]
    Io(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("login refused: {0}")]
    Login(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("a message of {size} bytes is over the limit of {max} (MAILROOM_MAX_MESSAGE_SIZE); it stays on the server")]
    TooBig { size: u64, max: u64 },
    #[error("the local account is over quota ({used} of {quota} bytes used); fetching stops until there is room")]
    OverQuota { used: u64, quota: u64 },
    #[error("the message vanished from the server while being fetched")]
    Vanished,
    #[error("local delivery failed: {0}")]
    Delivery(String),
    #[error("local: {0}")]
    Local(String),
}

impl FetchError {
    /// The `kind` label of `mailroom_fetch_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Io(_) => "connect",
            FetchError::Tls(_) => "tls",
            FetchError::Login(_) => "login",
            FetchError::Protocol(_) | FetchError::Vanished => "protocol",
            FetchError::TooBig { .. } => "too_big",
            FetchError::OverQuota { .. } => "over_quota",
            FetchError::Delivery(_) => "delivery",
            FetchError::Local(_) => "local",
        }
    }
}

/// One message on the server: POP3 message number or IMAP UID, the id kept in the state
/// (UIDL, or the UID in decimal), and the size the server announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub number: u32,
    pub id: String,
    pub size: u64,
}

/// What the admin page can show about one source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// [`FetchSource::name`]: no password in it.
    pub name: String,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<(SystemTime, String)>,
    pub over_quota: bool,
    pub messages: u64,
}

/// Every source's status, updated by the fetch loop, read by whoever shows it.
#[derive(Debug, Default)]
pub struct FetchStatus {
    sources: Mutex<Vec<SourceStatus>>,
}

impl FetchStatus {
    pub fn new(sources: &[FetchSource]) -> FetchStatus {
        let rows = sources.iter().map(|s| SourceStatus { name: s.name(), ..SourceStatus::default() }).collect();
        FetchStatus { sources: Mutex::new(rows) }
    }

    pub fn snapshot(&self) -> Vec<SourceStatus> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Change the row of the source at 1-based `index`.
    fn update(&self, index: usize, f: impl FnOnce(&mut SourceStatus)) {
        if let Ok(mut rows) = self.sources.lock()
            && let Some(row) = rows.get_mut(index.wrapping_sub(1))
        {
            f(row);
        }
    }
}
