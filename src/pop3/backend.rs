//! What a POP3 session needs from the rest of the server, as one small trait: check a
//! login, open INBOX as a snapshot, stream one message, expunge.
//!
//! The production implementation ([`crate::pop3::Pop3Context`]) answers from `accounts/`
//! and `store/`; tests plug in an in-memory maildrop. Keeping the seam this narrow keeps
//! `server.rs` about the protocol and I/O only, and documents exactly which store
//! operations POP3 relies on (and so which must be durable: only `expunge`).

use std::future::Future;

use thiserror::Error;
use tokio::io::AsyncRead;

use crate::net::{AuthMechanism, LoginOutcome};
use crate::pop3::maildrop::MaildropEntry;

/// A store-side failure, mapped to `-ERR [SYS/TEMP]` (or "no longer available").
#[derive(Debug, Error)]
pub enum BackendError {
    /// The message was expunged by someone else (IMAP) since the snapshot.
    #[error("message no longer exists")]
    Vanished,
    #[error("store: {0}")]
    Store(String),
}

pub trait Pop3Backend: Send + Sync + 'static {
    /// The authenticated account (its canonical address).
    type Account: Clone + std::fmt::Display + Send + Sync + 'static;
    /// An open INBOX, held for the whole TRANSACTION state.
    type Mailbox: Send + Sync + 'static;
    /// The maildrop lock, held until the session ends.
    type Lock: Send + Sync + 'static;
    /// A message's CRLF wire bytes.
    type Reader: AsyncRead + Unpin + Send + 'static;

    /// Verify a login from `ip` (production: the shared `net::verify_login`, which also
    /// counts it in the metrics): unknown user and wrong password are one `Failed`.
    fn authenticate(
        &self,
        ip: std::net::IpAddr,
        mechanism: AuthMechanism,
        username: &str,
        password: &str,
    ) -> impl Future<Output = LoginOutcome<Self::Account>> + Send;

    /// Take the maildrop's exclusive lock for the TRANSACTION state (RFC 1939 §8: one
    /// session per maildrop, on every replica), `Ok(None)` while another session holds it.
    fn lock_maildrop(
        &self,
        account: &Self::Account,
    ) -> impl Future<Output = Result<Option<Self::Lock>, BackendError>> + Send;

    /// Open INBOX and take the snapshot the session will number, sorted by UID.
    fn open_inbox(
        &self,
        account: &Self::Account,
    ) -> impl Future<Output = Result<(Self::Mailbox, Vec<MaildropEntry>), BackendError>> + Send;

    fn open_message(
        &self,
        mailbox: &Self::Mailbox,
        uid: u32,
    ) -> impl Future<Output = Result<Self::Reader, BackendError>> + Send;

    /// Remove these messages durably (UPDATE state); returns how many were removed.
    /// Messages already gone (expunged by IMAP meanwhile) count as removed.
    fn expunge(
        &self,
        mailbox: &Self::Mailbox,
        uids: &[u32],
    ) -> impl Future<Output = Result<usize, BackendError>> + Send;
}
