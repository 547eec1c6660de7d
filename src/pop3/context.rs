//! The production wiring of POP3: [`Pop3Context`] (what `app.rs` builds once and shares
//! between the 110 and 995 listeners) and [`serve_connection`], the handler each listener
//! calls per accepted connection.
//!
//! The context answers the session's [`Pop3Backend`] questions from `accounts/` (login)
//! and `store/` (INBOX snapshot, message streams, durable expunge). Mapping of store errors
//! to POP3 lives here and in `server.rs`: a message expunged by another session since the
//! snapshot is "no longer available"; anything else is `-ERR [SYS/TEMP]`.
//!
//! IMAP sessions on the same mailbox learn of POP3 deletions through the store's own change
//! events (`Mailbox::expunge` notifies every holder of the mailbox); nothing POP3-specific
//! is needed for that.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::accounts::{Address, Directory};
use crate::net::{AuthMechanism, LoginOutcome};
use crate::pop3::backend::{BackendError, Pop3Backend};
use crate::pop3::maildrop::MaildropEntry;
use crate::pop3::server::{Endpoint, Pop3Limits, serve_with};
use crate::store::{Lease, Mailbox, MailboxOwner, MessageReader, Store, StoreError};

/// What `net/` sends a client refused by the connection limits before closing (RFC 2449
/// §8.1.2: SYS/TEMP means "try again later").
pub const BUSY_REPLY: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n";

/// Everything a POP3 connection needs; build once, share through `Arc`.
pub struct Pop3Context {
    /// Our name in the greeting.
    pub hostname: String,
    pub directory: Arc<Directory>,
    pub store: Store,
    /// `None` only when no certificate exists at all; then STLS is refused and, since
    /// logins need TLS, nobody can log in on the plaintext port (secure by default).
    pub tls: Option<TlsAcceptor>,
    pub limits: Pop3Limits,
    /// The login limiter shared with SMTP AUTH and IMAP: throttles guessing.
    pub limiter: Arc<crate::net::Limiter>,
}

/// Serve one accepted POP3 connection (`implicit_tls`: port 995) until it ends. Per-IP and
/// global connection limits are applied by `net/` before this is called.
pub async fn serve_connection(
    ctx: Arc<Pop3Context>,
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    shutdown: watch::Receiver<bool>,
) {
    let endpoint = Endpoint { hostname: &ctx.hostname, tls: ctx.tls.as_ref(), limits: &ctx.limits };
    serve_with(ctx.as_ref(), endpoint, stream, peer, implicit_tls, shutdown).await;
}

fn owner(account: &Address) -> MailboxOwner {
    MailboxOwner::new(account.local.clone(), account.domain.clone())
}

fn backend_error(e: StoreError) -> BackendError {
    match e {
        StoreError::NoSuchMessage(_) => BackendError::Vanished,
        other => BackendError::Store(other.to_string()),
    }
}

impl Pop3Backend for Pop3Context {
    type Account = Address;
    type Mailbox = Mailbox;
    type Lock = Lease;
    type Reader = MessageReader;

    async fn authenticate(
        &self,
        ip: std::net::IpAddr,
        mechanism: AuthMechanism,
        username: &str,
        password: &str,
    ) -> LoginOutcome {
        let via = crate::net::LoginVia::new("pop3", mechanism);
        crate::net::verify_login(&self.limiter, &self.directory, &self.store, via, ip, username, password).await
    }

    async fn lock_maildrop(&self, account: &Address) -> Result<Option<Lease>, BackendError> {
        self.store.try_lease(&format!("pop3:{account}")).await.map_err(backend_error)
    }

    async fn open_inbox(&self, account: &Address) -> Result<(Mailbox, Vec<MaildropEntry>), BackendError> {
        let owner = owner(account);
        // An account that never received mail may have no Maildir yet.
        self.store.ensure_account(&owner).await.map_err(backend_error)?;
        let mailbox = self.store.open_mailbox(&owner, "INBOX").await.map_err(backend_error)?;
        let snapshot = mailbox.sync().await.map_err(backend_error)?;
        let entries = snapshot.messages.iter().map(|m| MaildropEntry::new(m.uid, m.size, &m.uidl)).collect();
        Ok((mailbox, entries))
    }

    async fn open_message(&self, mailbox: &Mailbox, uid: u32) -> Result<MessageReader, BackendError> {
        mailbox.open_message(uid).await.map_err(backend_error)
    }

    async fn expunge(&self, mailbox: &Mailbox, uids: &[u32]) -> Result<usize, BackendError> {
        // Messages already expunged elsewhere are not returned by the store but are gone
        // all the same: the client's DELE is satisfied.
        mailbox.expunge(uids).await.map_err(backend_error)?;
        Ok(uids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unreachable store is a store failure, which the server answers with
    /// `-ERR [SYS/TEMP]` (RFC 2449 8.1.2), never "message removed": the client must keep
    /// its copy and retry.
    #[test]
    fn an_unreachable_store_is_sys_temp() {
        let e = backend_error(StoreError::Unavailable("database down".into()));
        assert!(matches!(e, BackendError::Store(_)), "{e:?}");
        assert!(matches!(backend_error(StoreError::NoSuchMessage(3)), BackendError::Vanished));
    }
}
