//! The mail store: mailboxes, their messages, quota and change events, behind one boundary.
//!
//! Owns: every stored message. SMTP/LMTP delivery (`deliver`), IMAP and POP3
//! (`open_mailbox` -> [`Mailbox`]) all go through [`Store`]; no other module touches the
//! storage (backup/ reads Maildir files itself and is Maildir-only).
//!
//! Layout: `api.rs` the traits a backend implements ([`MailStore`], [`MailboxOps`],
//! [`ViewRetention`]); `types.rs` the backend-neutral values, `error.rs` [`StoreError`],
//! `folder_name.rs` folder names and mUTF-7, `reader.rs` [`MessageReader`] (CRLF message
//! streams), `sieve.rs` the Sieve script-name rule and the sieve delegation,
//! `credentials.rs` the per-account credentials record and its delegation, `fetch_state.rs`
//! what each periodic-fetch source has fetched and its delegation, `metered.rs` the
//! latency and error metrics of the delegation; `maildir/`
//! and `pg/` the backends. [`Store`], [`Mailbox`] and [`ViewTicket`] are
//! enums with one variant per backend that delegate through the traits, so consumers keep
//! these names whatever the backend, and a new backend is a new variant (docs/architecture.md,
//! "Store"). `contract_tests.rs` runs one suite against every backend's factory.
//!
//! Rules every backend keeps: nothing is acknowledged before it is durable; all handles of
//! one open mailbox share its state, so sessions see each other's changes and deliveries
//! wake IDLE at once without polling.

pub mod api;
#[cfg(test)]
mod contract_tests;
mod credentials;
mod error;
mod fetch_state;
pub mod folder_name;
mod lease;
pub mod maildir;
pub mod metered;
pub mod open;
pub mod pg;
mod reader;
mod reports;
mod sieve;
mod types;

use std::ops::Range;
use std::path::Path;
use std::time::SystemTime;

use tokio::sync::broadcast;

use metered::{StoreOp, metered};

pub use api::{MailStore, MailboxOps, ViewRetention};
pub use credentials::{AppPasswordEntry, CredentialRecord, CredentialsPut, PasswordOverride, VersionedCredentials};
pub use error::StoreError;
pub use fetch_state::{FetchEvent, FetchPending, FetchState, MAX_FETCH_ID_LEN};
pub use folder_name::{FolderPath, decode_mutf7, encode_mutf7};
pub use lease::{Lease, LocalLease};
pub use maildir::{MAX_KEYWORD_LEN, MAX_KEYWORDS, MaildirMailbox, MaildirStore};
pub use pg::{PgMailbox, PgStore};
pub use reader::MessageReader;
pub use reports::{MAX_REPORT_ROWS, MAX_REPORT_ROWS_PER_DAY, ReportCount, ReportKind};
pub use sieve::{MAX_REMEMBERED_KEYS, MAX_SCRIPT_NAME_LEN, check_script_name};
pub use types::{
    DeliveredMessage, Flag, FlagChange, FlagOp, FolderInfo, LocalDelivery, MailboxChanges, MailboxEvent, MailboxId,
    MailboxOwner, MailboxSnapshot, MailboxStatus, MessageBody, MessageList, MessageMeta, SieveScriptInfo, SpecialUse,
    StoreFlagsOutcome, uid_position,
};

/// The mail store, whichever backend holds the mail. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub enum Store {
    /// Maildir++ under the data dir (`maildir/`).
    Maildir(MaildirStore),
    /// PostgreSQL, shared by every replica.
    Pg(PgStore),
}

/// An open folder. Cloning gives another handle to the same shared state.
#[derive(Clone, Debug)]
pub enum Mailbox {
    Maildir(MaildirMailbox),
    Pg(PgMailbox),
}

/// A session's view of a mailbox: expunged messages stay readable for it until released
/// (RFC 2180 4.1.1). Dropping it releases everything.
pub enum ViewTicket {
    Maildir(maildir::ViewTicket),
    Pg(pg::PgViewTicket),
}

impl Store {
    /// The `backend` label of the store metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Maildir(_) => "maildir",
            Store::Pg(_) => "pg",
        }
    }

    /// Open the Maildir store under `data_dir` (creating `mail/` and `state/index/`).
    /// `hostname` goes into new file names, as Dovecot and Postfix do.
    pub fn open(data_dir: &Path, hostname: &str) -> Result<Store, StoreError> {
        Ok(Store::Maildir(MaildirStore::open(data_dir, hostname)?))
    }

    /// The Maildir backend, for its extras (group-commit counters, paths); `None` on
    /// another backend.
    pub fn as_maildir(&self) -> Option<&MaildirStore> {
        match self {
            Store::Maildir(s) => Some(s),
            Store::Pg(_) => None,
        }
    }

    /// Take the exclusive lease `name` (a POP3 maildrop, a fetch source), or `None` while another session
    /// holds it, on this replica or, with a shared backend, any other.
    pub async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        match self {
            // The store's identity (its mail root, via `Debug`) keeps several stores in
            // one process (tests) apart.
            Store::Maildir(s) => Ok(LocalLease::try_acquire(format!("{s:?}\0{name}")).map(Lease::Local)),
            Store::Pg(s) => Ok(s.try_lease(name).await?.map(Lease::Pg)),
        }
    }

    /// See [`MailStore::open_mailbox`].
    pub async fn open_mailbox(&self, account: &MailboxOwner, folder: &str) -> Result<Mailbox, StoreError> {
        metered(self.backend(), StoreOp::Open, async {
            match self {
                Store::Maildir(s) => MailStore::open_mailbox(s, account, folder).await.map(Mailbox::Maildir),
                Store::Pg(s) => MailStore::open_mailbox(s, account, folder).await.map(Mailbox::Pg),
            }
        })
        .await
    }

    /// See [`MailStore::deliver`].
    pub async fn deliver(
        &self,
        body: &MessageBody,
        deliveries: &[LocalDelivery],
    ) -> Vec<Result<DeliveredMessage, StoreError>> {
        let started = std::time::Instant::now();
        let results = match self {
            Store::Maildir(s) => MailStore::deliver(s, body, deliveries).await,
            Store::Pg(s) => MailStore::deliver(s, body, deliveries).await,
        };
        metered::observe(self.backend(), StoreOp::Deliver, started);
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            metered::count_error(self.backend(), StoreOp::Deliver, e);
        }
        results
    }

    /// See [`MailStore::ensure_account`].
    pub async fn ensure_account(&self, account: &MailboxOwner) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::ensure_account(s, account).await,
            Store::Pg(s) => MailStore::ensure_account(s, account).await,
        }
    }

    /// See [`MailStore::ensure_accounts`].
    pub async fn ensure_accounts(&self, accounts: impl Iterator<Item = MailboxOwner> + Send) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::ensure_accounts(s, accounts).await,
            Store::Pg(s) => MailStore::ensure_accounts(s, accounts).await,
        }
    }

    /// See [`MailStore::quota_usage`].
    pub async fn quota_usage(&self, account: &MailboxOwner) -> Result<u64, StoreError> {
        metered(self.backend(), StoreOp::Quota, async {
            match self {
                Store::Maildir(s) => MailStore::quota_usage(s, account).await,
                Store::Pg(s) => MailStore::quota_usage(s, account).await,
            }
        })
        .await
    }

    /// See [`MailStore::list_folders`].
    pub async fn list_folders(&self, account: &MailboxOwner) -> Result<Vec<FolderInfo>, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::list_folders(s, account).await,
            Store::Pg(s) => MailStore::list_folders(s, account).await,
        }
    }

    /// See [`MailStore::create_folder`].
    pub async fn create_folder(
        &self,
        account: &MailboxOwner,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::create_folder(s, account, name, special_use).await,
            Store::Pg(s) => MailStore::create_folder(s, account, name, special_use).await,
        }
    }

    /// See [`MailStore::delete_folder`].
    pub async fn delete_folder(&self, account: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::delete_folder(s, account, name).await,
            Store::Pg(s) => MailStore::delete_folder(s, account, name).await,
        }
    }

    /// See [`MailStore::rename_folder`].
    /// Renaming INBOX is the same on every backend, built from the other operations: its
    /// messages move to a new folder and INBOX stays, empty (RFC 3501 6.3.5).
    pub async fn rename_folder(&self, account: &MailboxOwner, from: &str, to: &str) -> Result<(), StoreError> {
        if FolderPath::for_rename(from, to)?.0.is_inbox() {
            self.create_folder(account, to, None).await?;
            let inbox = self.open_mailbox(account, "INBOX").await?;
            let target = self.open_mailbox(account, to).await?;
            let uids: Vec<u32> = inbox.sync().await?.messages.iter().map(|m| m.uid).collect();
            inbox.move_to(&uids, &target).await?;
            return Ok(());
        }
        match self {
            Store::Maildir(s) => MailStore::rename_folder(s, account, from, to).await,
            Store::Pg(s) => MailStore::rename_folder(s, account, from, to).await,
        }
    }

    /// See [`MailStore::set_subscribed`].
    pub async fn set_subscribed(&self, account: &MailboxOwner, name: &str, on: bool) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::set_subscribed(s, account, name, on).await,
            Store::Pg(s) => MailStore::set_subscribed(s, account, name, on).await,
        }
    }

    /// See [`MailStore::subscriptions`].
    pub async fn subscriptions(&self, account: &MailboxOwner) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::subscriptions(s, account).await,
            Store::Pg(s) => MailStore::subscriptions(s, account).await,
        }
    }
}

impl ViewTicket {
    /// See [`ViewRetention::release`].
    pub fn release(&self, uids: &[u32]) {
        match self {
            ViewTicket::Maildir(t) => ViewRetention::release(t, uids),
            ViewTicket::Pg(t) => ViewRetention::release(t, uids),
        }
    }

    /// See [`ViewRetention::release_absent`].
    pub fn release_absent(&self, in_view: impl Fn(u32) -> bool) {
        match self {
            ViewTicket::Maildir(t) => ViewRetention::release_absent(t, in_view),
            ViewTicket::Pg(t) => ViewRetention::release_absent(t, in_view),
        }
    }
}

impl Mailbox {
    /// The `backend` label of the store metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Mailbox::Maildir(_) => "maildir",
            Mailbox::Pg(_) => "pg",
        }
    }

    /// The Maildir backend's mailbox, for its extras; `None` on another backend.
    pub fn as_maildir(&self) -> Option<&MaildirMailbox> {
        match self {
            Mailbox::Maildir(m) => Some(m),
            Mailbox::Pg(_) => None,
        }
    }

    /// See [`MailboxOps::id`].
    pub fn id(&self) -> MailboxId {
        match self {
            Mailbox::Maildir(m) => MailboxOps::id(m),
            Mailbox::Pg(m) => MailboxOps::id(m),
        }
    }

    /// True when both handles refer to the same mailbox (COPY into the selected mailbox
    /// uses quota, MOVE within it does not).
    pub fn same_mailbox(&self, other: &Mailbox) -> bool {
        self.id() == other.id()
    }

    /// See [`MailboxOps::uid_validity`].
    pub fn uid_validity(&self) -> u32 {
        match self {
            Mailbox::Maildir(m) => MailboxOps::uid_validity(m),
            Mailbox::Pg(m) => MailboxOps::uid_validity(m),
        }
    }

    /// See [`MailboxOps::owner`].
    pub fn owner(&self) -> &MailboxOwner {
        match self {
            Mailbox::Maildir(m) => MailboxOps::owner(m),
            Mailbox::Pg(m) => MailboxOps::owner(m),
        }
    }

    /// See [`MailboxOps::folder_name`].
    pub fn folder_name(&self) -> String {
        match self {
            Mailbox::Maildir(m) => MailboxOps::folder_name(m),
            Mailbox::Pg(m) => MailboxOps::folder_name(m),
        }
    }

    /// See [`MailboxOps::register_view`].
    pub fn register_view(&self) -> ViewTicket {
        match self {
            Mailbox::Maildir(m) => ViewTicket::Maildir(MailboxOps::register_view(m)),
            Mailbox::Pg(m) => ViewTicket::Pg(MailboxOps::register_view(m)),
        }
    }

    /// See [`MailboxOps::subscribe`].
    pub fn subscribe(&self) -> broadcast::Receiver<MailboxEvent> {
        match self {
            Mailbox::Maildir(m) => MailboxOps::subscribe(m),
            Mailbox::Pg(m) => MailboxOps::subscribe(m),
        }
    }

    /// See [`MailboxOps::sync`].
    pub async fn sync(&self) -> Result<MailboxSnapshot, StoreError> {
        metered(self.backend(), StoreOp::Sync, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::sync(m).await,
                Mailbox::Pg(m) => MailboxOps::sync(m).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::changes_since`].
    pub async fn changes_since(&self, uid_validity: u32, modseq: u64) -> Result<Option<MailboxChanges>, StoreError> {
        metered(self.backend(), StoreOp::Sync, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::changes_since(m, uid_validity, modseq).await,
                Mailbox::Pg(m) => MailboxOps::changes_since(m, uid_validity, modseq).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::vanished_since`].
    pub async fn vanished_since(&self, modseq: u64) -> Vec<u32> {
        match self {
            Mailbox::Maildir(m) => MailboxOps::vanished_since(m, modseq).await,
            Mailbox::Pg(m) => MailboxOps::vanished_since(m, modseq).await,
        }
    }

    /// See [`MailboxOps::take_recent`].
    pub async fn take_recent(&self, until: u32) -> Range<u32> {
        match self {
            Mailbox::Maildir(m) => MailboxOps::take_recent(m, until).await,
            Mailbox::Pg(m) => MailboxOps::take_recent(m, until).await,
        }
    }

    /// See [`MailboxOps::status`].
    pub async fn status(&self) -> Result<MailboxStatus, StoreError> {
        match self {
            Mailbox::Maildir(m) => MailboxOps::status(m).await,
            Mailbox::Pg(m) => MailboxOps::status(m).await,
        }
    }

    /// See [`MailboxOps::store_flags`].
    pub async fn store_flags(
        &self,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        metered(self.backend(), StoreOp::Flags, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::store_flags(m, uids, op, flags, unchanged_since).await,
                Mailbox::Pg(m) => MailboxOps::store_flags(m, uids, op, flags, unchanged_since).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::expunge`].
    pub async fn expunge(&self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        metered(self.backend(), StoreOp::Expunge, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::expunge(m, uids).await,
                Mailbox::Pg(m) => MailboxOps::expunge(m, uids).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::append`].
    pub async fn append(
        &self,
        body: &MessageBody,
        flags: &[Flag],
        internal_date: Option<SystemTime>,
    ) -> Result<u32, StoreError> {
        metered(self.backend(), StoreOp::Append, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::append(m, body, flags, internal_date).await,
                Mailbox::Pg(m) => MailboxOps::append(m, body, flags, internal_date).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::copy_to`]. Both mailboxes are of one store, so of one backend.
    pub async fn copy_to(&self, uids: &[u32], dest: &Mailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        metered(self.backend(), StoreOp::Copy, async {
            match (self, dest) {
                (Mailbox::Maildir(m), Mailbox::Maildir(d)) => MailboxOps::copy_to(m, uids, d).await,
                (Mailbox::Pg(m), Mailbox::Pg(d)) => MailboxOps::copy_to(m, uids, d).await,
                _ => Err(StoreError::NotPermitted(dest.folder_name())),
            }
        })
        .await
    }

    /// See [`MailboxOps::move_to`].
    pub async fn move_to(&self, uids: &[u32], dest: &Mailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        metered(self.backend(), StoreOp::Move, async {
            match (self, dest) {
                (Mailbox::Maildir(m), Mailbox::Maildir(d)) => MailboxOps::move_to(m, uids, d).await,
                (Mailbox::Pg(m), Mailbox::Pg(d)) => MailboxOps::move_to(m, uids, d).await,
                _ => Err(StoreError::NotPermitted(dest.folder_name())),
            }
        })
        .await
    }

    /// See [`MailboxOps::open_message`].
    pub async fn open_message(&self, uid: u32) -> Result<MessageReader, StoreError> {
        metered(self.backend(), StoreOp::Fetch, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::open_message(m, uid).await,
                Mailbox::Pg(m) => MailboxOps::open_message(m, uid).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::read_message`].
    pub async fn read_message(&self, uid: u32, max: usize) -> Result<bytes::Bytes, StoreError> {
        metered(self.backend(), StoreOp::Fetch, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::read_message(m, uid, max).await,
                Mailbox::Pg(m) => MailboxOps::read_message(m, uid, max).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::read_headers`].
    pub async fn read_headers(&self, uids: &[u32]) -> Result<Vec<Option<bytes::Bytes>>, StoreError> {
        metered(self.backend(), StoreOp::Fetch, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::read_headers(m, uids).await,
                Mailbox::Pg(m) => MailboxOps::read_headers(m, uids).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::read_header_block`].
    pub async fn read_header_block(&self, uid: u32) -> Result<bytes::Bytes, StoreError> {
        metered(self.backend(), StoreOp::Fetch, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::read_header_block(m, uid).await,
                Mailbox::Pg(m) => MailboxOps::read_header_block(m, uid).await,
            }
        })
        .await
    }

    /// See [`MailboxOps::header_block_reader`].
    pub async fn header_block_reader(&self, uid: u32) -> Result<(MessageReader, u64), StoreError> {
        metered(self.backend(), StoreOp::Fetch, async {
            match self {
                Mailbox::Maildir(m) => MailboxOps::header_block_reader(m, uid).await,
                Mailbox::Pg(m) => MailboxOps::header_block_reader(m, uid).await,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}
    fn assert_error<T: Send + Sync + std::error::Error + 'static>() {}

    #[test]
    fn handles_are_send_sync_and_cheap_to_clone() {
        assert_send_sync::<Store>();
        assert_send_sync::<Mailbox>();
        assert_send_sync::<maildir::MaildirStore>();
        assert_send_sync::<maildir::MaildirMailbox>();
        assert_error::<StoreError>();
    }
}
