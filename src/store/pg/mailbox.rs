//! One open folder in PostgreSQL: identity, sync, change tracking and reads.
//!
//! Owns: [`PgMailbox`], the handle IMAP and POP3 sessions hold, and the flag encoding of
//! the `messages` table. Reads need no lock: each is one statement (or one read-only
//! REPEATABLE READ transaction for a snapshot), so it sees a committed state. Writes are in
//! `write.rs`.

use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sqlx::Row;
use sqlx::postgres::PgRow;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use super::blobs::BodyRef;
use super::{PgStore, db_error};
use crate::store::maildir::intern;
use crate::store::{
    Flag, MailboxChanges, MailboxEvent, MailboxId, MailboxOwner, MailboxSnapshot, MailboxStatus, MessageList,
    MessageMeta, MessageReader, StoreError, uid_position,
};

/// State shared by every handle of one folder on this replica.
pub(crate) struct Shared {
    pub id: i64,
    pub uid_validity: u32,
    pub owner: MailboxOwner,
    pub name: String,
    pub events: broadcast::Sender<MailboxEvent>,
    /// The highest modseq of a change this replica's sessions of the folder were told
    /// about (the catch-up poll in `notify.rs` compares it with the database).
    pub told_modseq: AtomicU64,
    /// The message list of the newest snapshot a handle took, with its HIGHESTMODSEQ: the
    /// next snapshot reads only what changed since and hands every session a clone that
    /// shares storage (see [`MessageList`]). Lives as long as some handle of the folder.
    list: Mutex<Option<(u64, MessageList)>>,
}

impl Shared {
    pub fn new(id: i64, uid_validity: u32, owner: MailboxOwner, name: String, modseq: u64) -> Shared {
        Shared {
            id,
            uid_validity,
            owner,
            name,
            events: broadcast::channel(64).0,
            told_modseq: AtomicU64::new(modseq),
            list: Mutex::new(None),
        }
    }

    fn cached_list(&self) -> Option<(u64, MessageList)> {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keep `list` (the folder at `modseq`) unless a newer one is kept already: two
    /// sessions may sync at once and finish in either order.
    fn keep_list(&self, modseq: u64, list: &MessageList) {
        let mut kept = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if kept.as_ref().is_none_or(|(at, _)| *at < modseq) {
            *kept = Some((modseq, list.clone()));
        }
    }
}

/// An open folder of the PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgMailbox {
    pub(super) store: PgStore,
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for PgMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgMailbox({}/{} #{})", self.shared.owner, self.shared.name, self.shared.id)
    }
}

/// The system flags as bits of `messages.flags`.
const FLAG_BITS: [(Flag, i16); 5] =
    [(Flag::Seen, 1), (Flag::Answered, 2), (Flag::Flagged, 4), (Flag::Deleted, 8), (Flag::Draft, 16)];

/// Flags as stored: the system-flag bits and the keywords, sorted.
pub(super) fn encode_flags(flags: &[Flag]) -> (i16, Vec<String>) {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for f in flags {
        match f {
            Flag::Keyword(k) => keywords.push(k.to_string()),
            other => bits |= FLAG_BITS.iter().find(|(g, _)| g == other).map_or(0, |(_, b)| *b),
        }
    }
    keywords.sort_unstable();
    keywords.dedup();
    (bits, keywords)
}

/// Flags as the API gives them: system flags in `Flag` order, then keywords sorted.
pub(super) fn decode_flags(bits: i16, keywords: &[String]) -> Vec<Flag> {
    let mut flags: Vec<Flag> = FLAG_BITS.iter().filter(|(_, b)| bits & b != 0).map(|(f, _)| f.clone()).collect();
    let mut kw: Vec<Flag> = keywords.iter().map(|k| Flag::Keyword(intern(k))).collect();
    kw.sort_unstable();
    flags.extend(kw);
    flags
}

pub(super) fn to_time(t: chrono::DateTime<chrono::Utc>) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(t.timestamp_micros().max(0) as u64)
}

pub(super) fn from_time(t: SystemTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::from(t)
}

/// The folder row's counters, then the message columns [`meta`] reads, in its order (a
/// macro: sqlx takes only static query strings). One statement reads both, so they are
/// one consistent state without a transaction.
macro_rules! select_head_and_meta {
    ($rest:literal) => {
        concat!(
            "SELECT b.uid_next, b.highest_modseq, b.vanished_floor, ",
            "m.uid, m.flags, m.keywords, m.modseq, m.size, m.internal_date, m.uidl",
            $rest
        )
    };
}

/// Columns before the message's in [`select_head_and_meta`].
const META_AT: usize = 3;

/// The message of a [`select_head_and_meta`] row; `None` for the row of an empty folder.
fn meta(row: &PgRow) -> Option<MessageMeta> {
    let uid: Option<i64> = row.get(META_AT);
    Some(MessageMeta {
        uid: uid? as u32,
        flags: decode_flags(row.get(META_AT + 1), &row.get::<Vec<String>, _>(META_AT + 2)),
        modseq: row.get::<i64, _>(META_AT + 3) as u64,
        size: row.get::<i64, _>(META_AT + 4) as u64,
        internal_date: to_time(row.get(META_AT + 5)),
        uidl: row.get::<&str, _>(META_AT + 6).into(),
    })
}

/// Counters of the folder row.
struct Head {
    uid_next: u32,
    highest_modseq: u64,
    vanished_floor: u64,
}

impl PgMailbox {
    pub(super) fn new(store: PgStore, shared: Arc<Shared>) -> PgMailbox {
        PgMailbox { store, shared }
    }

    pub(super) fn id_impl(&self) -> MailboxId {
        MailboxId { location: format!("pg:{}", self.shared.id), uid_validity: self.shared.uid_validity }
    }

    pub(super) fn owner_impl(&self) -> &MailboxOwner {
        &self.shared.owner
    }

    pub(super) fn folder_name_impl(&self) -> String {
        self.shared.name.clone()
    }

    pub(super) fn uid_validity_impl(&self) -> u32 {
        self.shared.uid_validity
    }

    pub(super) fn subscribe_impl(&self) -> broadcast::Receiver<MailboxEvent> {
        PgStore::events(&self.shared)
    }

    /// The row id, for `write.rs`.
    pub(super) fn row(&self) -> i64 {
        self.shared.id
    }

    /// The rows of one [`select_head_and_meta`] statement and the folder's counters; the
    /// folder is gone when its row is (deleted, or deleted and created again with another
    /// UIDVALIDITY: another row).
    fn head_and_rows(&self, rows: Vec<PgRow>) -> Result<(Head, Vec<PgRow>), StoreError> {
        let first = rows.first().ok_or_else(|| StoreError::NoSuchFolder(self.shared.name.clone()))?;
        let head = Head {
            uid_next: first.get::<i64, _>(0) as u32,
            highest_modseq: first.get::<i64, _>(1) as u64,
            vanished_floor: first.get::<i64, _>(2) as u64,
        };
        Ok((head, rows))
    }

    /// `sql` (a statement over this whole folder) with the folder's row id written in place
    /// of `$1`, planned for this folder alone. The store's connections use generic plans
    /// (`mod.rs`), which estimate a folder's rows from the number of folders: in a database
    /// of a few folders that is a scan of every message of every folder, even for a folder
    /// of ten. The id is an integer, so writing it into the SQL is safe.
    fn for_this_folder(&self, sql: &'static str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(sql.replace("$1", &self.shared.id.to_string()))
    }

    /// The folder now. After the first snapshot of the folder on this replica this reads
    /// only the messages changed since the kept one (`changes_since`: one statement, so one
    /// consistent state; writers serialise on the folder row, so modseqs commit in order)
    /// and brings the kept list forward. It reads the whole folder again only when expunged
    /// rows were purged past the kept modseq.
    pub(super) async fn sync_impl(&self) -> Result<MailboxSnapshot, StoreError> {
        if let Some((modseq, mut messages)) = self.shared.cached_list()
            && let Some(changes) = self.changes_since_impl(self.shared.uid_validity, modseq).await?
        {
            apply_changes(&mut messages, &changes);
            self.shared.keep_list(changes.highest_modseq, &messages);
            return Ok(MailboxSnapshot {
                uid_validity: self.shared.uid_validity,
                uid_next: changes.uid_next,
                highest_modseq: changes.highest_modseq,
                messages,
            });
        }
        let rows = sqlx::query(self.for_this_folder(select_head_and_meta!(
            " FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id AND m.expunged_modseq IS NULL \
             WHERE b.id = $1 ORDER BY m.uid"
        )))
        .persistent(false)
        .fetch_all(self.store.statements())
        .await
        .map_err(db_error)?;
        let (head, rows) = self.head_and_rows(rows)?;
        let messages: MessageList = rows.iter().filter_map(meta).collect();
        self.shared.keep_list(head.highest_modseq, &messages);
        Ok(MailboxSnapshot {
            uid_validity: self.shared.uid_validity,
            uid_next: head.uid_next,
            highest_modseq: head.highest_modseq,
            messages,
        })
    }

    pub(super) async fn changes_since_impl(
        &self,
        uid_validity: u32,
        modseq: u64,
    ) -> Result<Option<MailboxChanges>, StoreError> {
        if uid_validity != self.shared.uid_validity {
            return Ok(None);
        }
        let rows = sqlx::query(select_head_and_meta!(
            ", m.expunged_modseq IS NOT NULL FROM mailboxes b \
             LEFT JOIN messages m ON m.mailbox_id = b.id AND m.modseq > $2 WHERE b.id = $1 ORDER BY m.uid"
        ))
        .bind(self.shared.id)
        .bind(modseq as i64)
        .fetch_all(self.store.statements())
        .await
        .map_err(db_error)?;
        let (head, rows) = self.head_and_rows(rows)?;
        if modseq < head.vanished_floor {
            return Ok(None);
        }
        let (mut changed, mut expunged) = (Vec::new(), Vec::new());
        for row in &rows {
            match (meta(row), row.get::<Option<bool>, _>(META_AT + 7)) {
                (Some(m), Some(true)) => expunged.push(m.uid),
                (Some(m), _) => changed.push(m),
                (None, _) => {}
            }
        }
        Ok(Some(MailboxChanges { uid_next: head.uid_next, highest_modseq: head.highest_modseq, changed, expunged }))
    }

    pub(super) async fn vanished_since_impl(&self, modseq: u64) -> Vec<u32> {
        let uids: Result<Vec<i64>, _> =
            sqlx::query_scalar("SELECT uid FROM messages WHERE mailbox_id = $1 AND expunged_modseq > $2 ORDER BY uid")
                .bind(self.shared.id)
                .bind(modseq as i64)
                .fetch_all(self.store.statements())
                .await;
        match uids {
            Ok(u) => u.into_iter().map(|u| u as u32).collect(),
            Err(e) => {
                tracing::warn!(mailbox = %self.shared.name, error = %e, "VANISHED lookup failed");
                Vec::new()
            }
        }
    }

    pub(super) async fn take_recent_impl(&self, until: u32) -> Range<u32> {
        // The claim's commit does not wait for a WAL flush: a crash can only lose a claim,
        // and then show those messages as \Recent to one more session, which is harmless;
        // waiting would cost every SELECT a disk flush.
        let row = sqlx::query(
            "UPDATE mailboxes m SET recent_floor = GREATEST(o.recent_floor, $2) \
             FROM (SELECT recent_floor FROM mailboxes WHERE id = $1 FOR UPDATE) o, \
             (SELECT set_config('synchronous_commit', 'off', true)) c \
             WHERE m.id = $1 RETURNING o.recent_floor, m.recent_floor",
        )
        .bind(self.shared.id)
        .bind(until as i64)
        .fetch_optional(self.store.statements())
        .await;
        match row {
            Ok(Some(r)) => (r.get::<i64, _>(0) as u32)..(r.get::<i64, _>(1) as u32),
            Ok(None) => 0..0,
            Err(e) => {
                tracing::warn!(mailbox = %self.shared.name, error = %e, "\\Recent claim failed");
                0..0
            }
        }
    }

    pub(super) async fn status_impl(&self) -> Result<MailboxStatus, StoreError> {
        let row = sqlx::query(self.for_this_folder(
            "SELECT b.uid_next, b.highest_modseq, b.total_bytes, count(m.uid), \
             count(m.uid) FILTER (WHERE m.flags & 1 = 0), count(m.uid) FILTER (WHERE m.flags & 8 <> 0), \
             count(m.uid) FILTER (WHERE m.uid >= b.recent_floor) \
             FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id AND m.expunged_modseq IS NULL \
             WHERE b.id = $1 GROUP BY b.id",
        ))
        .persistent(false)
        .fetch_optional(self.store.statements())
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NoSuchFolder(self.shared.name.clone()))?;
        Ok(MailboxStatus {
            uid_next: row.get::<i64, _>(0) as u32,
            highest_modseq: row.get::<i64, _>(1) as u64,
            size: row.get::<i64, _>(2).max(0) as u64,
            messages: row.get::<i64, _>(3) as u32,
            unseen: row.get::<i64, _>(4) as u32,
            deleted: row.get::<i64, _>(5) as u32,
            recent: row.get::<i64, _>(6) as u32,
            uid_validity: self.shared.uid_validity,
        })
    }

    /// Where a message's bytes are: its prefix, its body's hash and size, and the body's
    /// cached header block. Expunged messages still read (RFC 2180) until purged.
    async fn locate(&self, uid: u32) -> Result<(Bytes, BodyRef, Option<Vec<u8>>), StoreError> {
        let (prefix, body, header, _) = self.locate_with_bytes(uid, false).await?;
        Ok((prefix, body, header))
    }

    /// [`PgMailbox::locate`], and with `small` the bytes of a body of one chunk in the
    /// same round trip (most messages: one statement per FETCH BODY[]).
    async fn locate_with_bytes(
        &self,
        uid: u32,
        small: bool,
    ) -> Result<(Bytes, BodyRef, Option<Vec<u8>>, Option<Vec<u8>>), StoreError> {
        let row = sqlx::query(
            "SELECT m.prefix, m.body_hash, b.size, b.header, b.location, \
             CASE WHEN $3 AND b.location = 0 AND b.size <= $4 \
             THEN (SELECT c.data FROM blob_chunks c WHERE c.hash = m.body_hash AND c.seq = 0) END \
             FROM messages m JOIN blobs b ON b.hash = m.body_hash WHERE m.mailbox_id = $1 AND m.uid = $2",
        )
        .bind(self.shared.id)
        .bind(uid as i64)
        .bind(small)
        .bind(super::blobs::CHUNK as i64)
        .fetch_optional(self.store.statements())
        .await
        .map_err(db_error)?
        .ok_or(StoreError::NoSuchMessage(uid))?;
        let body = BodyRef { hash: row.get(1), size: row.get::<i64, _>(2) as u64, location: row.get(4) };
        Ok((Bytes::from(row.get::<Vec<u8>, _>(0)), body, row.get(3), row.get(5)))
    }

    pub(super) async fn open_message_impl(&self, uid: u32) -> Result<MessageReader, StoreError> {
        let (prefix, body, _, bytes) = self.locate_with_bytes(uid, true).await?;
        match bytes {
            Some(data) if data.len() as u64 == body.size => {
                let mut all = Vec::with_capacity(prefix.len() + data.len());
                all.extend_from_slice(&prefix);
                all.extend_from_slice(&data);
                Ok(MessageReader::from_bytes(all.into()))
            }
            _ => self.store.open_body(prefix, &body).await,
        }
    }

    pub(super) async fn read_message_impl(&self, uid: u32, max: usize) -> Result<Bytes, StoreError> {
        let reader = self.open_message_impl(uid).await?;
        let mut out = Vec::with_capacity(max.min(reader.size() as usize));
        reader.take(max as u64).read_to_end(&mut out).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Bytes::from(out))
    }

    pub(super) async fn read_headers_impl(&self, uids: &[u32]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let wanted: Vec<i64> = uids.iter().map(|u| *u as i64).collect();
        let rows = sqlx::query(
            "SELECT m.uid, m.prefix, b.header FROM messages m JOIN blobs b ON b.hash = m.body_hash \
             WHERE m.mailbox_id = $1 AND m.uid = ANY($2) AND m.expunged_modseq IS NULL AND b.header IS NOT NULL",
        )
        .bind(self.shared.id)
        .bind(&wanted)
        .fetch_all(self.store.statements())
        .await
        .map_err(db_error)?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            let mut header = r.get::<Vec<u8>, _>(1);
            header.extend_from_slice(&r.get::<Vec<u8>, _>(2));
            found.insert(r.get::<i64, _>(0) as u32, Bytes::from(header));
        }
        Ok(uids.iter().map(|u| found.get(u).cloned()).collect())
    }

    pub(super) async fn read_header_block_impl(&self, uid: u32) -> Result<Bytes, StoreError> {
        let (prefix, body, header) = self.locate(uid).await?;
        if let Some(h) = header {
            let mut all = prefix.to_vec();
            all.extend_from_slice(&h);
            return Ok(Bytes::from(all));
        }
        let (reader, len) = self.header_reader(prefix, &body).await?;
        let mut out = Vec::with_capacity(len as usize);
        reader.take(len).read_to_end(&mut out).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Bytes::from(out))
    }

    pub(super) async fn header_block_reader_impl(&self, uid: u32) -> Result<(MessageReader, u64), StoreError> {
        let (prefix, body, header) = self.locate(uid).await?;
        if let Some(h) = header {
            let len = (prefix.len() + h.len()) as u64;
            return Ok((self.store.open_body(prefix, &body).await?, len));
        }
        self.header_reader(prefix, &body).await
    }

    /// A reader and the header length of a message whose header is too long for the
    /// cache: one pass finds the blank line, a second reader starts from the top.
    async fn header_reader(&self, prefix: Bytes, body: &BodyRef) -> Result<(MessageReader, u64), StoreError> {
        let size = body.size;
        let mut scan = self.store.open_body(Bytes::new(), body).await?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut tail: Vec<u8> = Vec::new();
        let mut offset = 0u64;
        let mut end = size;
        loop {
            let n = scan.read(&mut buf).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if offset == 0 && tail.starts_with(b"\r\n") {
                end = 2;
                break;
            }
            if let Some(i) = memchr::memmem::find(&tail, b"\r\n\r\n") {
                end = offset + i as u64 + 4;
                break;
            }
            let keep = tail.len().min(3);
            offset += (tail.len() - keep) as u64;
            tail.drain(..tail.len() - keep);
        }
        let len = prefix.len() as u64 + end;
        Ok((self.store.open_body(prefix, body).await?, len))
    }
}

/// `list` brought forward by `changes` (each O(log n), the rest stays shared): changed and
/// new messages replace or join it by uid, expunged ones leave it.
fn apply_changes(list: &mut MessageList, changes: &MailboxChanges) {
    for m in &changes.changed {
        match uid_position(list, m.uid) {
            Ok(i) => list[i] = m.clone(),
            Err(i) if i == list.len() => list.push_back(m.clone()),
            Err(i) => list.insert(i, m.clone()),
        }
    }
    for uid in &changes.expunged {
        if let Ok(i) = uid_position(list, *uid) {
            list.remove(i);
        }
    }
}
