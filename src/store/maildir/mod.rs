//! The Maildir backend of the store: Maildir++ mailboxes, their per-mailbox index, quota
//! and change events. It implements [`MailStore`](super::api::MailStore) and
//! [`MailboxOps`](super::api::MailboxOps); consumers reach it through `store::Store` /
//! `store::Mailbox`, never by name, except for the Maildir-only extras below.
//!
//! Owns: everything under `<data>/mail/`, `<data>/home/`, `<data>/state/index/` and
//! `<data>/state/fetch/`. No
//! other module touches a Maildir (backup/ reads the files, through `is_maildir`,
//! `parse_file_name` and `TRASHED_PREFIX`, which is why those are exported). Mail is stored exactly as Dovecot
//! lays it out so Dovecot, mutt and mbsync can read it, and the index can always be rebuilt
//! from the Maildir.
//!
//! Rules kept here: nothing is acknowledged before it is durable (file fsync, rename,
//! directory fsync; group-committed across sessions, see `durable.rs`); one shared
//! in-memory state per open mailbox, so sessions see each other's changes and deliveries
//! wake IDLE at once without polling.
//!
//! Files: `filename.rs` Maildir names and flag letters, `keywords.rs` Dovecot keyword
//! letters, `layout.rs` paths, `durable.rs` group commit, `deliver.rs`, `quota.rs`,
//! `index.rs` the on-disk index log, `header_cache.rs` cached header blocks,
//! `maildir_scan.rs` reading a Maildir directory, `mailbox.rs` an open mailbox,
//! `mailbox_sync.rs` index <-> Maildir reconciliation, `uidlist.rs` Dovecot UID import,
//! `message_ops.rs` append/copy/move, `mailbox_status.rs` STATUS/\Recent/POP3 claim,
//! `folders.rs` folder management and subscriptions, `sieve.rs` Sieve scripts in the
//! account's home (Pigeonhole layout), `retained.rs` expunged messages kept
//! readable for sessions not yet told, `fetch_state.rs` the periodic-fetch records
//! (`<data>/state/fetch/`), `backend.rs` the trait implementations.
//!
//! Maildir-only extras (reach them with `Store::as_maildir` / `Mailbox::as_maildir`):
//! `fsync_stats` (group-commit counters), `tombstones_cover`, `try_claim_exclusive`, and
//! the `Layout` paths.
//!
//! POP3 UIDL: [`MessageMeta::uidl`] is the Maildir base name (`<secs>.M<usec>P<pid>
//! Q<n>.<host>,S=<size>,W=<size>`). It never changes with flags, survives restarts and
//! index rebuilds, and is what Dovecot's `pop3_uidl_format = %f`-style setups expose.

mod backend;
mod credentials;
mod deliver;
#[cfg(test)]
mod dovecot_compat_tests;
mod durable;
mod fetch_state;
mod filename;
mod folders;
mod header_cache;
mod index;
mod keywords;
mod layout;
mod mailbox;
mod mailbox_status;
mod mailbox_sync;
#[cfg(test)]
mod mailbox_tests;
mod maildir_scan;
mod message_list;
mod message_ops;
mod quota;
mod reports;
mod retained;
mod sieve;
mod uidlist;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

// The backend-neutral modules, under the names the Maildir files have always used
// (`super::types::Flag`, `super::error::blocking`).
use super::{error, folder_name, reader, types};

pub use crate::durable::SyncStats;
pub(crate) use filename::parse_file_name;
pub(crate) use folders::TRASHED_PREFIX;
pub use keywords::{MAX_KEYWORD_LEN, MAX_KEYWORDS};
// Shared with the PostgreSQL backend: one keyword table, one header-block rule, one
// set of default folders for every backend.
pub(crate) use header_cache::header_end;
pub(crate) use keywords::intern;
pub(crate) use layout::DEFAULT_FOLDERS;
pub use layout::Layout;
pub(crate) use layout::is_maildir;
pub use mailbox::MaildirMailbox;
pub use mailbox_status::ExclusiveClaim;
pub use retained::ViewTicket;

use error::StoreError;
use folder_name::FolderPath;
use types::{MailboxEvent, MailboxOwner};
// The values the Maildir tests (`use super::*`) work with.
#[cfg(test)]
use types::{Flag, FlagOp, LocalDelivery, MailboxSnapshot, MessageBody, SpecialUse};

use crate::durable::{GroupSync, sync_dir};
use error::blocking;
use layout::create_maildir;
use quota::QuotaTracker;

/// The mail store. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct MaildirStore {
    inner: Arc<StoreInner>,
}

type OpenKey = (MailboxOwner, FolderPath);

struct StoreInner {
    layout: Layout,
    /// Host part of new file names, escaped.
    host: String,
    sync: GroupSync,
    /// Accounts whose Maildir is known to exist (skip `ensure_account` work per delivery).
    known_accounts: Mutex<HashSet<MailboxOwner>>,
    /// Open mailboxes, so deliveries and other sessions notify them.
    open: Mutex<HashMap<OpenKey, Weak<mailbox::Shared>>>,
    quota: QuotaTracker,
    /// Serialises folder management (create/delete/rename, subscriptions file).
    folders_lock: tokio::sync::Mutex<()>,
    /// Serialises opening (loading or rebuilding) mailbox indexes.
    open_lock: tokio::sync::Mutex<()>,
    /// Serialises Sieve script changes and the Sieve memory (`sieve.rs`): rare writes, so
    /// one lock for every account keeps each check-then-change atomic.
    sieve_lock: tokio::sync::Mutex<()>,
    /// Serialises the read-merge-replace of the DMARC report counters (`dmarc.rs`).
    report_lock: tokio::sync::Mutex<()>,
    /// Serialises credentials writes (`credentials.rs`): the version check and the write
    /// it guards are one step.
    credentials_lock: tokio::sync::Mutex<()>,
    /// Serialises the fetch record files (`fetch_state.rs`), with the size each had when
    /// last compacted: it is compacted again once it has grown past twice that.
    fetch_lock: tokio::sync::Mutex<HashMap<String, u64>>,
    /// Last UIDVALIDITY handed out, so two indexes created in the same second differ.
    last_uid_validity: AtomicU32,
}

impl std::fmt::Debug for MaildirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirStore").field("mail_root", &self.inner.layout.mail_root()).finish()
    }
}

impl MaildirStore {
    /// Open the store under `data_dir` (creating `mail/` and `state/index/`). `hostname`
    /// goes into new file names, as Dovecot and Postfix do.
    pub fn open(data_dir: &Path, hostname: &str) -> Result<MaildirStore, StoreError> {
        let layout = Layout::new(data_dir);
        for d in [layout.mail_root().to_path_buf(), data_dir.join("state").join("index")] {
            std::fs::create_dir_all(&d).map_err(|e| StoreError::io(&d, e))?;
        }
        Ok(MaildirStore {
            inner: Arc::new(StoreInner {
                layout,
                host: filename::escape_host(hostname),
                sync: GroupSync::default(),
                known_accounts: Mutex::new(HashSet::new()),
                open: Mutex::new(HashMap::new()),
                quota: QuotaTracker::default(),
                open_lock: tokio::sync::Mutex::new(()),
                folders_lock: tokio::sync::Mutex::new(()),
                sieve_lock: tokio::sync::Mutex::new(()),
                report_lock: tokio::sync::Mutex::new(()),
                credentials_lock: tokio::sync::Mutex::new(()),
                fetch_lock: tokio::sync::Mutex::new(HashMap::new()),
                last_uid_validity: AtomicU32::new(0),
            }),
        })
    }

    /// Create the account's Maildir with INBOX plus Drafts, Sent, Junk and Trash, subscribed
    /// (idempotent; existing folders and subscriptions are left alone).
    pub async fn ensure_account(&self, account: &MailboxOwner) -> Result<(), StoreError> {
        let root = self.inner.layout.account_dir(account)?;
        let mail_root = self.inner.layout.mail_root().to_path_buf();
        blocking(move || {
            let existed = root.join("cur").is_dir();
            create_maildir(&root, false)?;
            for name in DEFAULT_FOLDERS {
                create_maildir(&root.join(format!(".{name}")), true)?;
            }
            if !existed {
                folders::init_subscriptions(&root)?;
                // The new account directory must survive a crash too.
                if let Some(domain_dir) = root.parent() {
                    sync_dir(domain_dir)?;
                }
                sync_dir(&mail_root)?;
            }
            Ok(())
        })
        .await?;
        if let Ok(mut known) = self.inner.known_accounts.lock() {
            known.insert(account.clone());
        }
        Ok(())
    }

    /// [`MaildirStore::ensure_account`] for many accounts (start-up), 32 at a time: a new account
    /// costs about 28 directory fsyncs, and one after the other 511 accounts took 20 s on a
    /// busy disk (bench/README.md); concurrent fsyncs share journal commits.
    pub async fn ensure_accounts(&self, accounts: impl Iterator<Item = MailboxOwner>) -> Result<(), StoreError> {
        const PARALLEL: usize = 32;
        let mut running = tokio::task::JoinSet::new();
        let mut result = Ok(());
        for account in accounts {
            if running.len() >= PARALLEL
                && let Some(done) = running.join_next().await
            {
                result = result.and(done.unwrap_or_else(|e| Err(StoreError::Background(e.to_string()))));
            }
            let store = self.clone();
            running.spawn(async move { store.ensure_account(&account).await });
        }
        while let Some(done) = running.join_next().await {
            result = result.and(done.unwrap_or_else(|e| Err(StoreError::Background(e.to_string()))));
        }
        result
    }

    /// `ensure_account` once per account per process.
    async fn ensure_account_cached(&self, account: &MailboxOwner) -> Result<(), StoreError> {
        let known = self.inner.known_accounts.lock().map(|k| k.contains(account)).unwrap_or(false);
        if known { Ok(()) } else { self.ensure_account(account).await }
    }

    /// Bytes used by the account (all folders). A map lookup after the first call, which
    /// walks the Maildir once (reading file names, not files) on the blocking pool, so an
    /// SMTP RCPT never stalls a runtime worker.
    pub async fn quota_usage(&self, account: &MailboxOwner) -> Result<u64, StoreError> {
        if let Some(bytes) = self.inner.quota.cached(account) {
            return Ok(bytes);
        }
        let store = self.clone();
        let account = account.clone();
        blocking(move || Ok(store.inner.quota.usage(&store.inner.layout, &account))).await
    }

    /// Group-commit counters (fsync requests vs. fsyncs issued) for `metrics.rs`.
    pub fn fsync_stats(&self) -> SyncStats {
        self.inner.sync.stats()
    }

    /// Tell an open mailbox (if any) that new mail arrived.
    fn notify_new(&self, owner: &MailboxOwner, folder: &FolderPath) {
        if let Some(shared) = self.lookup_open(owner, folder) {
            shared.notify(MailboxEvent::NewMessages);
        }
    }

    fn lookup_open(&self, owner: &MailboxOwner, folder: &FolderPath) -> Option<Arc<mailbox::Shared>> {
        let map = self.inner.open.lock().ok()?;
        map.get(&(owner.clone(), folder.clone()))?.upgrade()
    }

    /// Forget open-mailbox state for a folder and its children (after delete/rename), so
    /// the next open starts from disk.
    fn forget_open(&self, owner: &MailboxOwner, folder: &FolderPath) {
        if let Ok(mut map) = self.inner.open.lock() {
            map.retain(|(o, f), w| !(o == owner && (f == folder || folder.is_ancestor_of(f))) && w.strong_count() > 0);
        }
    }

    /// A new UIDVALIDITY: the current time in seconds, strictly above any handed out
    /// before in this process and above `previous` (a rebuilt index must change it, RFC
    /// 3501 2.3.1.1).
    fn next_uid_validity(&self, previous: Option<u32>) -> u32 {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let floor = previous.map(|p| p.wrapping_add(1)).unwrap_or(1).max(1);
        let mut candidate = now.max(floor);
        loop {
            let last = self.inner.last_uid_validity.load(Ordering::SeqCst);
            if candidate <= last {
                candidate = last.wrapping_add(1).max(1);
            }
            if self
                .inner
                .last_uid_validity
                .compare_exchange(last, candidate, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return candidate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quota_walk_counts_existing_mail_once_then_tracks_changes() {
        let data = tempfile::tempdir().unwrap();
        let alice = MailboxOwner::new("alice", "example.org");
        {
            let store = MaildirStore::open(data.path(), "mx").unwrap();
            let body = MessageBody::Memory(bytes::Bytes::from_static(b"0123456789"));
            let d = LocalDelivery {
                owner: alice.clone(),
                folder: "Junk".into(),
                header_prefix: b"X: y\r\n".to_vec(),
                flags: Vec::new(),
            };
            store.deliver(&body, &[d.clone(), d]).await;
        }
        // A foreign file without S= is stat'ed by the walk.
        let root = data.path().join("mail/example.org/alice");
        std::fs::write(root.join("cur/123.foreign:2,S"), b"abc").unwrap();
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        assert_eq!(store.quota_usage(&alice).await.unwrap(), 2 * 16 + 3);
        let bob = MailboxOwner::new("bob", "example.org");
        assert_eq!(store.quota_usage(&bob).await.unwrap(), 0);
        let inbox = store.open_mailbox(&alice, "INBOX").await.unwrap();
        let body = MessageBody::Memory(bytes::Bytes::from_static(b"12345"));
        inbox.append(&body, &[], None).await.unwrap();
        assert_eq!(store.quota_usage(&alice).await.unwrap(), 2 * 16 + 3 + 5);
        let bad = MailboxOwner::new("..", "example.org");
        assert_eq!(store.quota_usage(&bad).await.unwrap(), 0);
    }
}
