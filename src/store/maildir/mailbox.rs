//! One open mailbox, shared by every session that opened it.
//!
//! Owns: the in-memory index of an open folder and the operations IMAP and POP3 perform on
//! it (flags, expunge, reading messages; sync is in `mailbox_sync.rs`, append/copy/move in
//! `message_ops.rs`).
//! All sessions on a mailbox share one [`Shared`] (registered weakly in the [`MaildirStore`]), so a
//! change made by one is seen by all, and deliveries can wake IDLE through the broadcast
//! channel without any polling loop.
//!
//! Locking: one `tokio::sync::Mutex` per mailbox, held across the durable commit (file
//! renames/unlinks, directory fsync, index log fsync) so no session ever observes a UID or
//! flag that a crash could take back. Different mailboxes commit in parallel and share
//! fsync batches through `GroupSync`. An operation touching two mailboxes locks them in
//! address order (no deadlock).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, MutexGuard, broadcast};

use super::MaildirStore;
use super::error::{StoreError, blocking};
use super::filename::{FlagSet, parse_file_name};
use super::folder_name::FolderPath;
use super::header_cache::{HeaderCache, header_end, read_header_from_file};
use super::index::{IndexData, IndexEntry, IndexLog, Opened, Record};
use super::keywords::{KeywordTable, KeywordsInUse};
use super::layout::is_maildir;
use super::maildir_scan::Trust;
use super::message_list::SharedList;
use super::reader::MessageReader;
use super::retained;
use super::types::{
    Flag, FlagOp, MailboxEvent, MailboxId, MailboxOwner, MailboxSnapshot, MessageMeta, StoreFlagsOutcome,
};

/// Events buffered per mailbox for slow subscribers (they then see `Lagged` and resync).
const EVENT_CAPACITY: usize = 256;
/// Messages up to this size are read into memory whole by `open_message`; larger ones are
/// streamed from the file.
const SMALL_MESSAGE: usize = 128 * 1024;
/// Read size when looking for the end of a header block the cache does not keep.
pub(crate) const HEADER_READ_CHUNK: usize = 64 * 1024;

/// State shared by all handles of one open mailbox.
pub(crate) struct Shared {
    pub(crate) owner: MailboxOwner,
    pub(crate) folder: FolderPath,
    /// The folder's Maildir directory.
    pub(crate) dir: PathBuf,
    events: broadcast::Sender<MailboxEvent>,
    uid_validity: AtomicU32,
    /// Held by a POP3 session (RFC 1939: exclusive access while in TRANSACTION state).
    pub(crate) exclusive: AtomicBool,
    pub(crate) state: Mutex<State>,
    /// The header cache file of this folder, and the cache once loaded (lazily: a session
    /// that only SELECTs and IDLEs never pays for it). A std mutex: only blocking-pool
    /// threads take it.
    header_path: PathBuf,
    headers: Arc<std::sync::Mutex<Option<HeaderCache>>>,
    /// Sessions with the mailbox selected, and expunged files they may still read.
    pub(crate) retained: std::sync::Mutex<super::retained::Retained>,
}

impl Shared {
    /// Broadcast a change (no receivers is fine).
    pub(crate) fn notify(&self, e: MailboxEvent) {
        let _ = self.events.send(e);
    }
}

/// The mutable part, behind the mailbox lock.
pub(crate) struct State {
    pub(crate) index: IndexData,
    pub(crate) log: IndexLog,
    pub(crate) by_base: HashMap<String, u32>,
    /// Keyword letters of this folder (`dovecot-keywords`).
    pub(crate) keywords: KeywordTable,
    /// The distinct keywords of this folder, for the per-mailbox limit.
    pub(crate) keywords_in_use: KeywordsInUse,
    /// Messages from this uid on have not been reported as \Recent to any session yet.
    pub(crate) first_recent_uid: u32,
    /// UIDs from Dovecot's uidlist for files not indexed yet (first scan after import).
    pub(crate) imported: HashMap<String, u32>,
    /// Directory mtimes the state is known to reflect (`None`: full scan next time).
    pub(crate) trust: Option<Trust>,
    /// The index's messages as snapshots share them.
    pub(crate) list: SharedList,
}

impl State {
    /// Record a new message (or return the uid it already has: a concurrent scan may have
    /// found the file first).
    pub(crate) fn add(&mut self, mut entry: IndexEntry) -> (u32, Option<Record>) {
        if let Some(uid) = self.by_base.get(&entry.base) {
            return (*uid, None);
        }
        let uid = self.index.uid_next;
        entry.modseq = self.index.highest_modseq + 1;
        self.by_base.insert(entry.base.clone(), uid);
        self.list.upsert(uid, &entry);
        let rec = Record::Add { uid, entry };
        self.index.apply(&rec);
        (uid, Some(rec))
    }

    /// Record a new message under a UID chosen elsewhere (Dovecot import), if still free.
    pub(crate) fn add_with_uid(&mut self, mut entry: IndexEntry, uid: u32) -> (u32, Option<Record>) {
        if self.by_base.contains_key(&entry.base) || self.index.messages.contains_key(&uid) || uid == 0 {
            return self.add(entry);
        }
        entry.modseq = self.index.highest_modseq + 1;
        self.by_base.insert(entry.base.clone(), uid);
        self.list.upsert(uid, &entry);
        let rec = Record::Add { uid, entry };
        self.index.apply(&rec);
        (uid, Some(rec))
    }

    /// Change flags, bumping the modseq.
    pub(crate) fn set_flags(&mut self, uid: u32, flags: FlagSet) -> Record {
        let rec = Record::Flags { uid, modseq: self.index.highest_modseq + 1, flags };
        self.index.apply(&rec);
        if let Some(e) = self.index.messages.get(&uid) {
            self.list.upsert(uid, e);
        }
        rec
    }

    /// Remove a message, leaving a tombstone.
    pub(crate) fn remove(&mut self, uid: u32) -> Option<(Record, IndexEntry)> {
        let entry = self.index.messages.get(&uid)?.clone();
        self.by_base.remove(&entry.base);
        let rec = Record::Expunge { uid, modseq: self.index.highest_modseq + 1 };
        self.index.apply(&rec);
        self.list.remove(uid);
        Some((rec, entry))
    }

    /// The index as sessions see it: the message list is shared, not copied.
    fn snapshot(&mut self) -> MailboxSnapshot {
        MailboxSnapshot {
            uid_validity: self.index.uid_validity,
            uid_next: self.index.uid_next,
            highest_modseq: self.index.highest_modseq,
            messages: self.list.get(&self.index),
        }
    }
}

/// The public view of one index entry.
pub(crate) fn meta(uid: u32, e: &IndexEntry) -> MessageMeta {
    MessageMeta {
        uid,
        flags: e.flags.to_flags(),
        modseq: e.modseq,
        size: e.size,
        internal_date: e.internal_date,
        uidl: e.base.as_str().into(),
    }
}

/// An open mailbox. Cloning gives another handle to the same shared state.
#[derive(Clone)]
pub struct MaildirMailbox {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: MaildirStore,
}

impl std::fmt::Debug for MaildirMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirMailbox")
            .field("owner", &self.shared.owner)
            .field("folder", &self.shared.folder)
            .finish()
    }
}

fn lock_cache(m: &std::sync::Mutex<Option<HeaderCache>>) -> std::sync::MutexGuard<'_, Option<HeaderCache>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MaildirStore {
    /// Open a folder (`"INBOX"` case-insensitive, `"Archive/2024"`). Every caller gets a
    /// handle to the same shared state. Call [`MaildirMailbox::sync`] for its content.
    pub async fn open_mailbox(&self, account: &MailboxOwner, folder: &str) -> Result<MaildirMailbox, StoreError> {
        let path = FolderPath::from_api(folder)?;
        self.open_path(account, &path).await
    }

    pub(crate) async fn open_path(
        &self,
        account: &MailboxOwner,
        path: &FolderPath,
    ) -> Result<MaildirMailbox, StoreError> {
        if path.is_inbox() {
            self.ensure_account_cached(account).await?;
        }
        let dir = self.inner.layout.folder_dir(account, path)?;
        let index_path = self.inner.layout.index_path(account, path)?;
        let header_path = self.inner.layout.header_cache_path(account, path)?;
        // Serialise opens so two sessions never load (or rebuild) the same index twice.
        let _opening = self.inner.open_lock.lock().await;
        if let Some(shared) = self.lookup_open(account, path) {
            return Ok(MaildirMailbox { shared, store: self.clone() });
        }
        let dir2 = dir.clone();
        // No session has this mailbox open: expunged files a crash left behind can go.
        let Some(keywords) = blocking(move || {
            Ok(is_maildir(&dir2).then(|| {
                super::retained::sweep(&dir2);
                KeywordTable::load(&dir2)
            }))
        })
        .await?
        else {
            return Err(StoreError::NoSuchFolder(path.api_name()));
        };
        let store = self.clone();
        let stale_headers = header_path.clone();
        let opened = blocking(move || {
            let opened = IndexLog::open(&index_path, |prev| store.next_uid_validity(prev))?;
            if matches!(opened, Opened::Rebuilt(..)) {
                // New UIDs: cached headers of the old ones must go, even if a same-second
                // rebuild reused the UIDVALIDITY.
                let _ = std::fs::remove_file(&stale_headers);
            }
            Ok(opened)
        })
        .await?;
        let (index, log, imported) = match opened {
            Opened::Loaded(d, l) => (d, l, HashMap::new()),
            Opened::Rebuilt(d, l, Some(_)) => {
                tracing::warn!(account = %account, folder = %path.api_name(), "mailbox index rebuilt with a new UIDVALIDITY");
                (d, l, HashMap::new())
            }
            // First time we see this Maildir: keep Dovecot's UIDs if it was Dovecot's.
            Opened::Rebuilt(d, l, None) => super::mailbox_sync::import_dovecot(&dir, d, l).await?,
        };
        let first_recent_uid = index.first_recent_uid.unwrap_or(index.uid_next);
        let by_base = index.messages.iter().map(|(uid, e)| (e.base.clone(), *uid)).collect();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            owner: account.clone(),
            folder: path.clone(),
            dir,
            events,
            uid_validity: AtomicU32::new(index.uid_validity),
            exclusive: AtomicBool::new(false),
            state: Mutex::new(State {
                index,
                log,
                by_base,
                keywords,
                keywords_in_use: KeywordsInUse::default(),
                trust: None,
                first_recent_uid,
                imported,
                list: SharedList::default(),
            }),
            header_path,
            headers: Arc::new(std::sync::Mutex::new(None)),
            retained: std::sync::Mutex::default(),
        });
        if let Ok(mut map) = self.inner.open.lock() {
            map.retain(|_, w| w.strong_count() > 0);
            map.insert((account.clone(), path.clone()), Arc::downgrade(&shared));
        }
        Ok(MaildirMailbox { shared, store: self.clone() })
    }
}

impl MaildirMailbox {
    /// IMAP UIDVALIDITY.
    pub fn uid_validity(&self) -> u32 {
        self.shared.uid_validity.load(Ordering::Relaxed)
    }

    /// The account owning this mailbox.
    pub fn owner(&self) -> &MailboxOwner {
        &self.shared.owner
    }

    /// The folder's API name (`"INBOX"`, `"Archive/2024"`).
    pub fn folder_name(&self) -> String {
        self.shared.folder.api_name()
    }

    /// Which mailbox this is: its Maildir directory (which also names the data dir) and
    /// UIDVALIDITY, so a folder deleted and created again under the same name differs.
    pub fn id(&self) -> MailboxId {
        MailboxId { location: format!("maildir:{}", self.shared.dir.display()), uid_validity: self.uid_validity() }
    }

    /// True when both handles refer to the same mailbox (COPY into the selected mailbox
    /// uses quota, MOVE within it does not).
    pub fn same_mailbox(&self, other: &MaildirMailbox) -> bool {
        self.id() == other.id()
    }

    /// True when both handles share one in-memory state, whose lock must then be taken
    /// once, not twice (COPY/MOVE within a mailbox).
    pub(crate) fn shares_state(&self, other: &MaildirMailbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Register a session's view (SELECT/EXAMINE): until the ticket releases them, messages
    /// expunged meanwhile stay readable for it (RFC 2180 4.1.1).
    pub fn register_view(&self) -> super::retained::ViewTicket {
        super::retained::ViewTicket::register(&self.shared)
    }

    /// Change notifications (new mail, flags, expunges) from any session or delivery.
    pub fn subscribe(&self) -> broadcast::Receiver<MailboxEvent> {
        self.shared.events.subscribe()
    }

    /// Bring the index up to date with the Maildir and return a snapshot. New files (in
    /// `new/`, or dropped into `cur/` by anyone) get UIDs durably; vanished files become
    /// expunges; flag letters changed by another program are adopted. Cheap when the
    /// directory mtimes show no change.
    pub async fn sync(&self) -> Result<MailboxSnapshot, StoreError> {
        let mut st = self.shared.state.lock().await;
        self.sync_locked(&mut st, false).await?;
        Ok(st.snapshot())
    }

    pub(crate) async fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().await
    }

    /// Give keyword letters to new keywords and persist the table before any file name uses
    /// them (so a crash never leaves letters Dovecot cannot map).
    pub(crate) async fn assign_keywords<'a>(
        &self,
        st: &mut State,
        sets: impl Iterator<Item = &'a FlagSet>,
    ) -> Result<(), StoreError> {
        let sets: Vec<&FlagSet> = sets.collect();
        let index = &st.index;
        st.keywords_in_use.admit(&sets, || index.messages.values().flat_map(|e| e.flags.keywords().iter().cloned()))?;
        let mut changed = false;
        for set in sets {
            changed |= st.keywords.assign(set);
        }
        if changed {
            let (table, dir) = (st.keywords.clone(), self.shared.dir.clone());
            blocking(move || table.save(&dir)).await?;
        }
        Ok(())
    }

    /// Remove from `fs` each keyword this mailbox's limits refuse ([`MAX_KEYWORD_LEN`],
    /// [`MAX_KEYWORDS`]), with a debug log: for deliveries, which must not fail for them.
    /// The rest are admitted (counted as in use); `assign_keywords` then gives them letters.
    ///
    /// [`MAX_KEYWORD_LEN`]: super::keywords::MAX_KEYWORD_LEN
    /// [`MAX_KEYWORDS`]: super::keywords::MAX_KEYWORDS
    pub(crate) fn drop_refused_keywords(&self, st: &mut State, fs: &mut FlagSet) {
        let wanted: Vec<Arc<str>> = fs.keywords().to_vec();
        for k in wanted {
            let one = FlagSet::from_flags(&[Flag::Keyword(k.clone())]);
            let index = &st.index;
            let admitted = st
                .keywords_in_use
                .admit(&[&one], || index.messages.values().flat_map(|e| e.flags.keywords().iter().cloned()));
            if let Err(e) = admitted {
                tracing::debug!(
                    account = %self.shared.owner,
                    folder = %self.shared.folder.api_name(),
                    keyword = %k,
                    reason = %e,
                    "keyword dropped at delivery"
                );
                fs.remove(&Flag::Keyword(k));
            }
        }
    }

    /// Append records to the log and wait until they and `dirs` are durable; compact the
    /// log when it has grown past twice the live records. On failure the in-memory state
    /// is reloaded from the log, so nobody sees a change that is not on disk.
    pub(crate) async fn commit(
        &self,
        st: &mut State,
        records: Vec<Record>,
        dirs: Vec<PathBuf>,
    ) -> Result<(), StoreError> {
        let written = if records.is_empty() {
            Ok(Vec::new())
        } else {
            st.log.append(&records).map(|()| vec![(st.log.path().to_path_buf(), st.log.file())])
        };
        let result = match written {
            Ok(logs) => self.store.inner.sync.sync_many(logs, dirs).await.map_err(StoreError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.reload(st).await;
            return Err(e);
        }
        self.maybe_compact(st).await
    }

    /// Replace the in-memory index by what the log on disk says (after a failed commit),
    /// as a restart would. The next sync rescans the directory.
    pub(crate) async fn reload(&self, st: &mut State) {
        let path = st.log.path().to_path_buf();
        let store = self.store.clone();
        let opened = blocking(move || IndexLog::open(&path, |prev| store.next_uid_validity(prev))).await;
        match opened {
            Ok(Opened::Loaded(index, log)) | Ok(Opened::Rebuilt(index, log, _)) => {
                if index.uid_validity != self.uid_validity() {
                    // Rebuilt: the next header read reopens the cache, which starts afresh
                    // for the new UIDVALIDITY.
                    *lock_cache(&self.shared.headers) = None;
                }
                st.by_base = index.messages.iter().map(|(uid, e)| (e.base.clone(), *uid)).collect();
                self.shared.uid_validity.store(index.uid_validity, Ordering::Relaxed);
                st.index = index;
                st.list.invalidate();
                st.log = log;
            }
            Err(e) => {
                tracing::error!(folder = %self.shared.folder.api_name(), error = %e, "cannot reload mailbox index");
            }
        }
        st.trust = None;
    }

    pub(crate) async fn maybe_compact(&self, st: &mut State) -> Result<(), StoreError> {
        if st.log.needs_compaction(&st.index) {
            let data = st.index.clone();
            let path = st.log.path().to_path_buf();
            st.log = blocking(move || IndexLog::write_fresh(&path, &data)).await?;
        }
        Ok(())
    }

    /// Change flags (IMAP STORE). The Maildir file is renamed so Dovecot and mbsync see the
    /// flags, and the change is durable before this returns. With `unchanged_since`
    /// (CONDSTORE), messages modified after that modseq are refused into `failed`.
    pub async fn store_flags(
        &self,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        let mut st = self.lock().await;
        self.sync_locked(&mut st, false).await?;
        let mut outcome = StoreFlagsOutcome::default();
        let mut pending: Vec<(u32, String, String, FlagSet)> = Vec::new();
        for uid in uids.iter().copied().collect::<BTreeSet<u32>>() {
            let Some(e) = st.index.messages.get(&uid) else {
                continue;
            };
            if unchanged_since.is_some_and(|m| e.modseq > m) {
                outcome.failed.push(uid);
                continue;
            }
            let mut nf = e.flags.clone();
            match op {
                FlagOp::Add => flags.iter().for_each(|f| nf.insert(f)),
                FlagOp::Remove => flags.iter().for_each(|f| nf.remove(f)),
                FlagOp::Replace => nf = FlagSet::from_flags(flags),
            }
            if nf == e.flags {
                outcome.unchanged.push((uid, e.flags.to_flags(), e.modseq));
                continue;
            }
            pending.push((uid, e.file_name.clone(), String::new(), nf));
        }
        if pending.is_empty() {
            return Ok(outcome);
        }
        self.assign_keywords(&mut st, pending.iter().map(|p| &p.3)).await?;
        for (uid, old, new, nf) in pending.iter_mut() {
            let base = st.index.messages.get(uid).map(|e| e.base.clone());
            let info = parse_file_name(old).and_then(|p| p.flags);
            *new = st.keywords.file_name(&base.unwrap_or_default(), nf, info);
        }
        let cur = self.shared.dir.join("cur");
        let renames: Vec<(String, String)> =
            pending.iter().map(|(_, old, new, _)| (old.clone(), new.clone())).collect();
        let cur2 = cur.clone();
        let done: Vec<bool> = blocking(move || {
            let mut done = Vec::with_capacity(renames.len());
            for (old, new) in renames {
                if old == new {
                    done.push(true);
                    continue;
                }
                match std::fs::rename(cur2.join(&old), cur2.join(&new)) {
                    Ok(()) => done.push(true),
                    // Gone behind our back: the next sync reconciles it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => done.push(false),
                    Err(e) => return Err(StoreError::io(cur2.join(&old), e)),
                }
            }
            Ok(done)
        })
        .await?;
        let mut records = Vec::new();
        let mut changed = Vec::new();
        for ((uid, _, new_name, nf), ok) in pending.into_iter().zip(done) {
            if !ok {
                st.trust = None;
                continue;
            }
            if let Some(e) = st.index.messages.get_mut(&uid) {
                e.file_name = new_name;
            }
            let rec = st.set_flags(uid, nf.clone());
            if let Record::Flags { modseq, .. } = rec {
                outcome.updated.push((uid, nf.to_flags(), modseq));
            }
            records.push(rec);
            changed.push(uid);
        }
        if !records.is_empty() {
            self.commit(&mut st, records, vec![cur]).await?;
            self.note_own_change(&mut st).await?;
            let modseq = outcome.updated.iter().map(|u| u.2).max().unwrap_or_default();
            let known = Some(outcome.updated.clone().into());
            self.shared.notify(MailboxEvent::FlagsChanged { uids: changed, modseq, known });
        }
        Ok(outcome)
    }

    /// Remove messages for good (IMAP EXPUNGE / UID EXPUNGE, POP3 UPDATE): unlink, fsync the
    /// directory and the index. Returns the uids actually expunged, sorted.
    pub async fn expunge(&self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let mut st = self.lock().await;
        self.sync_locked(&mut st, false).await?;
        let targets: Vec<(u32, String)> = uids
            .iter()
            .copied()
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .filter_map(|u| st.index.messages.get(&u).map(|e| (u, e.file_name.clone())))
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let cur = self.shared.dir.join("cur");
        // Sessions with the mailbox selected may still FETCH these (RFC 2180 4.1.1): the
        // files move aside instead of going (retained.rs).
        let keep = retained::lock(&self.shared.retained).has_views();
        let (dir, uid_validity) = (self.shared.dir.clone(), st.index.uid_validity);
        let plans: Vec<(u32, String, Option<PathBuf>)> = targets
            .iter()
            .map(|(u, n)| (*u, n.clone(), keep.then(|| retained::retained_path(&dir, uid_validity, *u))))
            .collect();
        let cur2 = cur.clone();
        let kept: Vec<(u32, PathBuf)> = blocking(move || {
            let mut kept = Vec::new();
            for (uid, n, aside) in plans {
                let from = cur2.join(&n);
                let r = match &aside {
                    Some(to) => std::fs::rename(&from, to),
                    None => std::fs::remove_file(&from),
                };
                match r {
                    Ok(()) => kept.extend(aside.map(|p| (uid, p))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(from, e)),
                }
            }
            Ok(kept)
        })
        .await?;
        {
            let mut r = retained::lock(&self.shared.retained);
            for (uid, path) in kept {
                let size = st.index.messages.get(&uid).map_or(0, |e| e.size);
                r.keep(uid, path, size);
            }
        }
        let mut records = Vec::with_capacity(targets.len());
        let mut freed = 0u64;
        let mut gone = Vec::with_capacity(targets.len());
        for (uid, _) in targets {
            if let Some((rec, entry)) = st.remove(uid) {
                records.push(rec);
                freed += entry.size;
                gone.push(uid);
            }
        }
        self.commit(&mut st, records, vec![cur]).await?;
        self.note_own_change(&mut st).await?;
        drop(st);
        self.store.inner.quota.adjust(&self.store.inner.layout, &self.shared.owner, -(freed as i64));
        self.shared.notify(MailboxEvent::Expunged { uids: gone.clone() });
        Ok(gone)
    }

    /// Open a message for streaming (FETCH BODY[], RETR): CRLF bytes and the wire size.
    /// Messages up to [`SMALL_MESSAGE`] are read whole in one blocking call.
    pub async fn open_message(&self, uid: u32) -> Result<MessageReader, StoreError> {
        if let Some(data) = self.read_fast(uid, SMALL_MESSAGE, true).await? {
            return Ok(MessageReader::from_bytes(data));
        }
        let mut st = self.lock().await;
        for attempt in 0..2 {
            let Some(e) = st.index.messages.get(&uid) else {
                return self.open_retained(uid).await;
            };
            let path = self.shared.dir.join("cur").join(&e.file_name);
            let size = e.size;
            match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    let physical = file.metadata().await.map_err(|e| StoreError::io(&path, e))?.len();
                    return Ok(MessageReader::new(file, size, physical != size));
                }
                // Renamed by another program (flags) or deleted: rescan once.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound && attempt == 0 => {
                    self.sync_locked(&mut st, true).await?;
                }
                Err(err) => return Err(StoreError::io(&path, err)),
            }
        }
        Err(StoreError::NoSuchMessage(uid))
    }

    /// The top-level header blocks (CRLF, up to and including the empty line) of `uids`,
    /// for ENVELOPE, HEADER.FIELDS and header SEARCH keys: from the header cache, else from
    /// the message file (then cached). One blocking hop for the whole batch. `None` for a
    /// UID not in the index, or one the caller must read with [`MaildirMailbox::read_message`]
    /// (bare-LF files, moved files, headers the cache does not keep): the caller then reads
    /// the header with [`MaildirMailbox::read_header_block`].
    pub async fn read_headers(&self, uids: &[u32]) -> Result<Vec<Option<bytes::Bytes>>, StoreError> {
        let (files, uid_validity, live) = {
            let st = self.lock().await;
            let files: Vec<Option<(String, u64)>> =
                uids.iter().map(|u| st.index.messages.get(u).map(|e| (e.file_name.clone(), e.size))).collect();
            let uid_validity = st.index.uid_validity;
            let (loaded, due) = match lock_cache(&self.shared.headers).as_ref() {
                Some(c) if c.uid_validity() == uid_validity => (true, c.compaction_due()),
                _ => (false, false),
            };
            let live: Option<BTreeSet<u32>> = (!loaded || due).then(|| st.index.messages.keys().copied().collect());
            (files, uid_validity, live)
        };
        let (cache, path, cur) =
            (self.shared.headers.clone(), self.shared.header_path.clone(), self.shared.dir.join("cur"));
        let uids = uids.to_vec();
        blocking(move || {
            let mut guard = lock_cache(&cache);
            if guard.as_ref().is_none_or(|c| c.uid_validity() != uid_validity) {
                *guard = Some(HeaderCache::open(&path, uid_validity, |u| live.as_ref().is_none_or(|l| l.contains(&u))));
            }
            let Some(cache) = guard.as_mut() else {
                return Ok(Vec::new());
            };
            if let Some(live) = live.as_ref().filter(|_| cache.compaction_due()) {
                cache.compact(|u| live.contains(&u));
            }
            let cached = cache.get_many(&uids);
            let mut out = Vec::with_capacity(uids.len());
            for ((uid, file), hit) in uids.into_iter().zip(files).zip(cached) {
                let Some((name, size)) = file else {
                    out.push(None);
                    continue;
                };
                if hit.is_some() {
                    out.push(hit);
                    continue;
                }
                // Errors (a file renamed by another program) go to the caller's slow path,
                // which rescans and reports what is really wrong.
                let read = read_header_from_file(&cur.join(&name), size).ok().flatten();
                if let Some(h) = &read {
                    cache.put(uid, h);
                }
                out.push(read.map(bytes::Bytes::from));
            }
            Ok(out)
        })
        .await
    }

    /// Read a whole message (CRLF) into memory, at most `max` bytes (for header and
    /// BODYSTRUCTURE parsing).
    pub async fn read_message(&self, uid: u32, max: usize) -> Result<bytes::Bytes, StoreError> {
        if let Some(data) = self.read_fast(uid, max, false).await? {
            return Ok(data);
        }
        let reader = self.open_message(uid).await?;
        let cap = usize::try_from(reader.size()).unwrap_or(max).min(max);
        let mut buf = Vec::with_capacity(cap);
        reader
            .take(max as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| StoreError::io(self.shared.dir.join("cur"), e))?;
        Ok(bytes::Bytes::from(buf))
    }

    /// The whole top-level header block (up to and including the empty line) of a message
    /// whose header [`MaildirMailbox::read_headers`] did not give: read from the file in chunks
    /// until the empty line, so ENVELOPE, header sections and SEARCH HEADER agree with
    /// BODY[] however long the header is. Memory: the header block, never more than the
    /// message (which the APPENDLIMIT bounds).
    pub async fn read_header_block(&self, uid: u32) -> Result<bytes::Bytes, StoreError> {
        let mut buf = Vec::new();
        let len = self.scan_header(uid, Some(&mut buf)).await?;
        buf.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(bytes::Bytes::from(buf))
    }

    /// The header block as a stream (BODY[HEADER], RFC822.HEADER of a header the cache does
    /// not keep): its length, found with one chunk of memory, and a reader at the start of
    /// the message to copy that many bytes from.
    pub async fn header_block_reader(&self, uid: u32) -> Result<(MessageReader, u64), StoreError> {
        let len = self.scan_header(uid, None).await?;
        Ok((self.open_message(uid).await?, len))
    }

    /// Length of the header block, read in chunks; the bytes are kept in `keep` if given.
    async fn scan_header(&self, uid: u32, mut keep: Option<&mut Vec<u8>>) -> Result<u64, StoreError> {
        let mut reader = self.open_message(uid).await?;
        let io_err = |e| StoreError::io(self.shared.dir.join("cur"), e);
        let mut chunk = vec![0u8; HEADER_READ_CHUNK];
        // The last bytes seen, so an empty line straddling two chunks is found.
        let mut window: Vec<u8> = Vec::with_capacity(HEADER_READ_CHUNK + 3);
        let mut consumed = 0u64;
        loop {
            let n = reader.read(&mut chunk).await.map_err(io_err)?;
            if let Some(buf) = keep.as_deref_mut() {
                buf.extend_from_slice(&chunk[..n]);
            }
            let carried = window.len();
            window.extend_from_slice(&chunk[..n]);
            // `window` starts `carried` bytes before this chunk.
            let window_start = consumed - carried as u64;
            let end = if window_start == 0 {
                // Everything so far: an empty header (`\r\n` first) counts too.
                header_end(&window, n == 0)
            } else {
                memchr::memmem::find(&window, b"\r\n\r\n").map(|i| i + 4).or((n == 0).then_some(window.len()))
            };
            if let Some(end) = end {
                return Ok(window_start + end as u64);
            }
            consumed += n as u64;
            let tail = window.len().saturating_sub(3);
            window.drain(..tail);
        }
    }

    /// The fast path of reading a message: open, fstat and read in one blocking call
    /// (through `tokio::fs` each is its own hop to the blocking pool, which dominated
    /// IMAP FETCH and POP3 RETR in the benchmark, bench/README.md). At most `max` bytes;
    /// with `whole`, only messages that fit in `max`. `None` sends the caller to the
    /// streaming path, which handles bare-LF files (converted to CRLF) and files that
    /// moved since the index saw them (rescan).
    async fn read_fast(&self, uid: u32, max: usize, whole: bool) -> Result<Option<bytes::Bytes>, StoreError> {
        let (path, size) = {
            let st = self.lock().await;
            match st.index.messages.get(&uid) {
                Some(e) => (self.shared.dir.join("cur").join(&e.file_name), e.size),
                // Expunged by another session, not yet reported here: the slow path reads
                // the retained file.
                None if retained::lock(&self.shared.retained).lookup(uid).is_some() => return Ok(None),
                None => return Err(StoreError::NoSuchMessage(uid)),
            }
        };
        if whole && size > max as u64 {
            return Ok(None);
        }
        blocking(move || {
            use std::io::Read;
            let read = || -> std::io::Result<Option<Vec<u8>>> {
                let file = File::open(&path)?;
                if file.metadata()?.len() != size {
                    return Ok(None);
                }
                let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(max).min(max));
                file.take(max as u64).read_to_end(&mut buf)?;
                Ok(Some(buf))
            };
            match read() {
                Ok(found) => Ok(found.map(bytes::Bytes::from)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        })
        .await
    }
}
