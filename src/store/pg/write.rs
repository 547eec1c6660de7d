//! Writes to one folder in PostgreSQL: append and delivery, flags, expunge, copy, move.
//!
//! Owns: the transactions that change messages. Each takes the folder's row lock
//! (`SELECT … FOR UPDATE` or the `UPDATE … RETURNING` that hands out UIDs and modseqs) and
//! holds it to COMMIT, so writers of one folder are serialised across every replica and
//! UIDs ascend in commit order; writers of different folders do not wait for each other.
//! Locks are taken in one order, folder rows (by id) before body rows (by hash), also by
//! the delivery of a body not stored yet (see `insert_once`); a transaction PostgreSQL
//! still aborts as a deadlock is run again whole (`retry.rs`).
//! Bodies are hashed (and, with an object store, uploaded) before the transaction starts,
//! so the lock is never held while a spool file is read or sent. After COMMIT each write
//! publishes its change with the modseq it committed at: this replica's sessions are told
//! directly, the other replicas through the outbox (`notify.rs` says why not inside the
//! transaction).

use std::collections::BTreeSet;
use std::time::SystemTime;

use sqlx::{PgConnection, Row};

use super::blobs::{self, Blob};
use super::mailbox::{PgMailbox, decode_flags, encode_flags, from_time};
use super::{PgStore, TOMBSTONE_RETENTION, db_error, retry};
use crate::store::{
    DeliveredMessage, Flag, FlagOp, FolderPath, LocalDelivery, MAX_KEYWORD_LEN, MAX_KEYWORDS, MailboxEvent,
    MessageBody, StoreError, StoreFlagsOutcome,
};

/// A message's flags as stored: system-flag bits and sorted keywords.
type FlagRow = (i16, Vec<String>);

/// A new message's UIDL: 128 random bits in hex, kept by MOVE (Maildir keeps its file's
/// base name the same way).
fn new_uidl() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Take the folder's row lock; the folder is gone when its row is.
async fn lock_row(conn: &mut PgConnection, mb: &PgMailbox) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT keywords FROM mailboxes WHERE id = $1 FOR UPDATE")
        .bind(mb.row())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NoSuchFolder(mb.folder_name_impl()))
}

/// Lock the folder and admit `wanted` keywords into its set (at most [`MAX_KEYWORDS`]
/// distinct ones; when the set is full it is recounted from the live messages, so keywords
/// no message carries any more free their places).
pub(super) async fn lock_admitting(
    conn: &mut PgConnection,
    mb: &PgMailbox,
    wanted: &[String],
) -> Result<(), StoreError> {
    if wanted.iter().any(|k| k.len() > MAX_KEYWORD_LEN) {
        return Err(StoreError::Limit("Keyword too long"));
    }
    let mut known: BTreeSet<String> = lock_row(conn, mb).await?.into_iter().collect();
    if wanted.iter().all(|k| known.contains(k)) {
        return Ok(());
    }
    if known.len() + wanted.iter().filter(|k| !known.contains(*k)).count() > MAX_KEYWORDS {
        let live: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT unnest(keywords) FROM messages WHERE mailbox_id = $1 AND expunged_modseq IS NULL",
        )
        .bind(mb.row())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        known = live.into_iter().collect();
    }
    known.extend(wanted.iter().cloned());
    if known.len() > MAX_KEYWORDS {
        return Err(StoreError::Limit("Too many keywords in this mailbox"));
    }
    let all: Vec<String> = known.into_iter().collect();
    sqlx::query("UPDATE mailboxes SET keywords = $2 WHERE id = $1")
        .bind(mb.row())
        .bind(all)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Raise the folder's modseq by one; the new value.
async fn next_modseq(conn: &mut PgConnection, mailbox: i64) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 RETURNING highest_modseq",
    )
    .bind(mailbox)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)
}

impl PgMailbox {
    /// Insert one message (`prefix` + the body `blob`); returns its UID.
    pub(super) async fn insert(
        &self,
        blob: &Blob,
        body: &MessageBody,
        prefix: &[u8],
        flags: &[Flag],
        date: SystemTime,
    ) -> Result<u32, StoreError> {
        retry::transaction(|| self.insert_once(blob, body, prefix, flags, date)).await
    }

    /// The transaction of [`PgMailbox::insert`]. The folder's row is locked before the
    /// body's, the order COPY and expunge take them, also for a body not stored yet: many
    /// sessions delivering one body at once (a message to many local recipients, a burst
    /// of identical mail) would otherwise deadlock between the first delivery, holding the
    /// new body's row, and the next ones, holding the folder's. So a new body's chunks are
    /// written under the folder's lock (with an object store only a HEAD request is: the
    /// upload happened in [`blobs::stage`]).
    async fn insert_once(
        &self,
        blob: &Blob,
        body: &MessageBody,
        prefix: &[u8],
        flags: &[Flag],
        date: SystemTime,
    ) -> Result<u32, StoreError> {
        let (bits, keywords) = encode_flags(flags);
        let size = prefix.len() as i64 + blob.size as i64;
        let mut tx = self.store.pool().begin().await.map_err(db_error)?;
        lock_row(&mut tx, self).await?;
        blobs::add_ref(&mut tx, blob, body, self.store.objects()).await?;
        if !keywords.is_empty() {
            lock_admitting(&mut tx, self, &keywords).await?;
        }
        let row = sqlx::query(
            "UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1, \
             total_bytes = total_bytes + $2 WHERE id = $1 RETURNING uid_next - 1, highest_modseq",
        )
        .bind(self.row())
        .bind(size)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NoSuchFolder(self.folder_name_impl()))?;
        let (uid, modseq): (i64, i64) = (row.get(0), row.get(1));
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, prefix, body_hash, uidl) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(self.row())
        .bind(uid)
        .bind(modseq)
        .bind(bits)
        .bind(keywords)
        .bind(from_time(date))
        .bind(size)
        .bind(prefix)
        .bind(&blob.hash)
        .bind(new_uidl())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.store.publish(self.row(), modseq, MailboxEvent::NewMessages);
        Ok(uid as u32)
    }

    pub(super) async fn append_impl(
        &self,
        body: &MessageBody,
        flags: &[Flag],
        internal_date: Option<SystemTime>,
    ) -> Result<u32, StoreError> {
        let blob = blobs::describe(body).await?;
        blobs::stage(self.store.pool(), self.store.objects(), &blob, body).await?;
        self.insert(&blob, body, &[], flags, internal_date.unwrap_or_else(SystemTime::now)).await
    }

    pub(super) async fn store_flags_impl(
        &self,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        retry::transaction(|| self.store_flags_once(uids, op, flags, unchanged_since)).await
    }

    async fn store_flags_once(
        &self,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        let (bits, keywords) = encode_flags(flags);
        if unchanged_since.is_none() && (keywords.is_empty() || op == FlagOp::Remove) {
            return self.store_flags_at_once(uids, op, bits, keywords).await;
        }
        let mut tx = self.store.pool().begin().await.map_err(db_error)?;
        if op == FlagOp::Remove {
            lock_row(&mut tx, self).await?;
        } else {
            lock_admitting(&mut tx, self, &keywords).await?;
        }
        let rows = flag_rows(&mut *tx, self.row(), uids).await?;
        let mut out = StoreFlagsOutcome::default();
        // (uid, new bits, new keywords) of the messages that change.
        let mut changes: Vec<(u32, i16, Vec<String>)> = Vec::new();
        for (uid, old_bits, old_kw, modseq) in rows {
            if unchanged_since.is_some_and(|u| modseq > u) {
                out.failed.push(uid);
                continue;
            }
            let (new_bits, new_kw) = apply(op, old_bits, &old_kw, bits, &keywords);
            if new_bits == old_bits && new_kw == old_kw {
                out.unchanged.push((uid, decode_flags(old_bits, &old_kw), modseq));
            } else {
                changes.push((uid, new_bits, new_kw));
            }
        }
        let mut modseq = None;
        if !changes.is_empty() {
            let m = next_modseq(&mut tx, self.row()).await?;
            // One statement per distinct result: a STORE usually gives every message the same.
            let mut groups: Vec<(FlagRow, Vec<i64>)> = Vec::new();
            for (uid, b, k) in &changes {
                match groups.iter_mut().find(|(key, _)| key.0 == *b && key.1 == *k) {
                    Some((_, uids)) => uids.push(*uid as i64),
                    None => groups.push(((*b, k.clone()), vec![*uid as i64])),
                }
            }
            for ((b, k), uids) in groups {
                sqlx::query(
                    "UPDATE messages SET flags = $3, keywords = $4, modseq = $5 WHERE mailbox_id = $1 AND uid = ANY($2)",
                )
                .bind(self.row())
                .bind(uids)
                .bind(b)
                .bind(k)
                .bind(m)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            out.updated = changes.into_iter().map(|(uid, b, k)| (uid, decode_flags(b, &k), m as u64)).collect();
            modseq = Some(m);
        }
        tx.commit().await.map_err(db_error)?;
        if let Some(modseq) = modseq {
            let uids = out.updated.iter().map(|(u, _, _)| *u).collect();
            self.store.publish(
                self.row(),
                modseq,
                MailboxEvent::FlagsChanged { uids, modseq: modseq as u64, known: Some(out.updated.clone().into()) },
            );
        }
        Ok(out)
    }

    /// STORE in one statement, so in one round trip and one commit: for the common STOREs,
    /// which admit no new keyword into the folder and have no UNCHANGEDSINCE. The new flags
    /// are computed by the UPDATE from the row it updates, so a concurrent change to the same
    /// message is built on, never overwritten (PostgreSQL re-reads a row another transaction
    /// changed before updating it). The folder's modseq is raised even when nothing changes:
    /// modseqs may have gaps.
    async fn store_flags_at_once(
        &self,
        uids: &[u32],
        op: FlagOp,
        bits: i16,
        keywords: Vec<String>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        macro_rules! new_bits {
            () => {
                "(CASE $3 WHEN 0 THEN m.flags | $4 WHEN 1 THEN m.flags & ~$4 ELSE $4 END)"
            };
        }
        // Removal keeps the stored (sorted) order; a replacement by no keyword empties them.
        macro_rules! new_keywords {
            () => {
                "(CASE $3 WHEN 1 THEN ARRAY(SELECT k FROM unnest(m.keywords) WITH ORDINALITY AS t(k, i) \
                 WHERE k <> ALL($5) ORDER BY i) WHEN 2 THEN '{}'::text[] ELSE m.keywords END)"
            };
        }
        let sql = concat!(
            "WITH f AS (UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 \
             RETURNING highest_modseq), \
             u AS (UPDATE messages AS m SET flags = ",
            new_bits!(),
            ", keywords = ",
            new_keywords!(),
            ", modseq = (SELECT highest_modseq FROM f) \
             WHERE m.mailbox_id = $1 AND m.uid = ANY($2) AND m.expunged_modseq IS NULL AND (",
            new_bits!(),
            " <> m.flags OR ",
            new_keywords!(),
            " <> m.keywords) RETURNING m.uid, m.flags, m.keywords, m.modseq) \
             SELECT s.uid, coalesce(u.flags, s.flags), coalesce(u.keywords, s.keywords), \
             coalesce(u.modseq, s.modseq), u.uid IS NOT NULL \
             FROM messages s LEFT JOIN u ON u.uid = s.uid \
             WHERE s.mailbox_id = $1 AND s.uid = ANY($2) AND s.expunged_modseq IS NULL ORDER BY s.uid"
        );
        let code: i16 = match op {
            FlagOp::Add => 0,
            FlagOp::Remove => 1,
            FlagOp::Replace => 2,
        };
        let wanted: Vec<i64> = uids.iter().map(|u| *u as i64).collect();
        let rows = sqlx::query(sql)
            .bind(self.row())
            .bind(&wanted)
            .bind(code)
            .bind(bits)
            .bind(keywords)
            .fetch_all(self.store.statements())
            .await
            .map_err(db_error)?;
        if rows.is_empty() {
            self.check_exists().await?;
        }
        let mut out = StoreFlagsOutcome::default();
        for r in &rows {
            let (uid, b, k, modseq) =
                (r.get::<i64, _>(0) as u32, r.get::<i16, _>(1), r.get::<Vec<String>, _>(2), r.get::<i64, _>(3) as u64);
            let entry = (uid, decode_flags(b, &k), modseq);
            if r.get::<bool, _>(4) { out.updated.push(entry) } else { out.unchanged.push(entry) }
        }
        if !out.unchanged.is_empty() {
            // The statement's snapshot was taken before it waited for the folder's lock: a
            // writer that held it may have changed these messages since (set the very flag,
            // or expunged them). They are answered as they are now.
            let uids: Vec<u32> = out.unchanged.iter().map(|(u, _, _)| *u).collect();
            let now = flag_rows(self.store.statements(), self.row(), &uids).await?;
            out.unchanged = now.into_iter().map(|(uid, b, k, modseq)| (uid, decode_flags(b, &k), modseq)).collect();
        }
        if let Some(modseq) = out.updated.first().map(|u| u.2) {
            let uids = out.updated.iter().map(|(u, _, _)| *u).collect();
            self.store.publish(
                self.row(),
                modseq as i64,
                MailboxEvent::FlagsChanged { uids, modseq, known: Some(out.updated.clone().into()) },
            );
        }
        Ok(out)
    }

    /// `NoSuchFolder` once the folder's row is gone.
    async fn check_exists(&self) -> Result<(), StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM mailboxes WHERE id = $1")
            .bind(self.row())
            .fetch_optional(self.store.statements())
            .await
            .map_err(db_error)?;
        found.map(drop).ok_or_else(|| StoreError::NoSuchFolder(self.folder_name_impl()))
    }

    pub(super) async fn expunge_impl(&self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        retry::transaction(|| self.expunge_once(uids)).await
    }

    async fn expunge_once(&self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let mut tx = self.store.pool().begin().await.map_err(db_error)?;
        lock_row(&mut tx, self).await?;
        let (gone, orphans, modseq) = expunge_locked(&mut tx, self.row(), uids).await?;
        tx.commit().await.map_err(db_error)?;
        self.store.delete_objects(orphans).await;
        if !gone.is_empty() {
            self.store.publish(self.row(), modseq, MailboxEvent::Expunged { uids: gone.clone() });
        }
        Ok(gone)
    }

    pub(super) async fn copy_impl(&self, uids: &[u32], dest: &PgMailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        self.transfer(uids, dest, false).await
    }

    pub(super) async fn move_impl(&self, uids: &[u32], dest: &PgMailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        self.transfer(uids, dest, true).await
    }

    /// COPY, or MOVE (a copy that keeps the UIDLs plus an expunge, in one transaction).
    async fn transfer(&self, uids: &[u32], dest: &PgMailbox, moving: bool) -> Result<Vec<(u32, u32)>, StoreError> {
        retry::transaction(|| self.transfer_once(uids, dest, moving)).await
    }

    /// The transaction of [`PgMailbox::transfer`]: the folder rows, then the body rows
    /// (in hash order, `blobs::add_refs`), as every writer takes them.
    async fn transfer_once(&self, uids: &[u32], dest: &PgMailbox, moving: bool) -> Result<Vec<(u32, u32)>, StoreError> {
        let mut tx = self.store.pool().begin().await.map_err(db_error)?;
        // Both rows, in id order: two transfers in opposite directions cannot deadlock.
        let locked: Vec<i64> = sqlx::query_scalar("SELECT id FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(vec![self.row(), dest.row()])
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        for mb in [self, dest] {
            if !locked.contains(&mb.row()) {
                return Err(StoreError::NoSuchFolder(mb.folder_name_impl()));
            }
        }
        let wanted: Vec<i64> = uids.iter().map(|u| *u as i64).collect();
        let rows = sqlx::query(
            "SELECT uid, size, body_hash, keywords FROM messages \
             WHERE mailbox_id = $1 AND uid = ANY($2) AND expunged_modseq IS NULL ORDER BY uid",
        )
        .bind(self.row())
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let n = rows.len() as i64;
        let bytes: i64 = rows.iter().map(|r| r.get::<i64, _>(1)).sum();
        // The copies bring their keywords into the target, within its limit.
        let keywords: BTreeSet<String> = rows.iter().flat_map(|r| r.get::<Vec<String>, _>(3)).collect();
        lock_admitting(&mut tx, dest, &keywords.into_iter().collect::<Vec<_>>()).await?;
        let head = sqlx::query(
            "UPDATE mailboxes SET uid_next = uid_next + $2, highest_modseq = highest_modseq + 1, \
             total_bytes = total_bytes + $3 WHERE id = $1 RETURNING uid_next - $2, highest_modseq",
        )
        .bind(dest.row())
        .bind(n)
        .bind(bytes)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let (first, modseq): (i64, i64) = (head.get(0), head.get(1));
        let src: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let new: Vec<i64> = (first..first + n).collect();
        let uidls: Vec<Option<String>> = src.iter().map(|_| (!moving).then(new_uidl)).collect();
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, prefix, body_hash, uidl) \
             SELECT $1, u.new, $3, s.flags, s.keywords, s.internal_date, s.size, s.prefix, s.body_hash, \
             coalesce(u.uidl, s.uidl) \
             FROM unnest($4::bigint[], $5::bigint[], $6::text[]) AS u(src, new, uidl) \
             JOIN messages s ON s.mailbox_id = $2 AND s.uid = u.src",
        )
        .bind(dest.row())
        .bind(self.row())
        .bind(modseq)
        .bind(&src)
        .bind(&new)
        .bind(uidls)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        blobs::add_refs(&mut tx, rows.iter().map(|r| r.get::<Vec<u8>, _>(2)).collect()).await?;
        let src: Vec<u32> = src.into_iter().map(|u| u as u32).collect();
        let (gone, orphans, gone_modseq) =
            if moving { expunge_locked(&mut tx, self.row(), &src).await? } else { (Vec::new(), Vec::new(), 0) };
        tx.commit().await.map_err(db_error)?;
        self.store.delete_objects(orphans).await;
        self.store.publish(dest.row(), modseq, MailboxEvent::NewMessages);
        if !gone.is_empty() {
            self.store.publish(self.row(), gone_modseq, MailboxEvent::Expunged { uids: gone });
        }
        Ok(src.into_iter().zip(new.into_iter().map(|u| u as u32)).collect())
    }
}

/// The flags a message has after `op` with (`bits`, `keywords`).
fn apply(op: FlagOp, old_bits: i16, old_kw: &[String], bits: i16, keywords: &[String]) -> (i16, Vec<String>) {
    match op {
        FlagOp::Replace => (bits, keywords.to_vec()),
        FlagOp::Add => {
            let set: BTreeSet<&String> = old_kw.iter().chain(keywords).collect();
            (old_bits | bits, set.into_iter().cloned().collect())
        }
        FlagOp::Remove => (old_bits & !bits, old_kw.iter().filter(|k| !keywords.contains(k)).cloned().collect()),
    }
}

/// Mark `uids` expunged (the caller holds the folder's row lock) and purge tombstones past
/// [`TOMBSTONE_RETENTION`]. Returns the UIDs expunged now, ascending, the bodies whose
/// objects are deleted after COMMIT, and the modseq of the expunge.
async fn expunge_locked(
    conn: &mut PgConnection,
    mailbox: i64,
    uids: &[u32],
) -> Result<(Vec<u32>, Vec<Vec<u8>>, i64), StoreError> {
    let wanted: Vec<i64> = uids.iter().map(|u| *u as i64).collect();
    let modseq = next_modseq(conn, mailbox).await?;
    let rows = sqlx::query(
        "UPDATE messages SET expunged_modseq = $3, modseq = $3, expunged_at = now() \
         WHERE mailbox_id = $1 AND uid = ANY($2) AND expunged_modseq IS NULL RETURNING uid, size",
    )
    .bind(mailbox)
    .bind(&wanted)
    .bind(modseq)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let bytes: i64 = rows.iter().map(|r| r.get::<i64, _>(1)).sum();
    let purged = sqlx::query(
        "DELETE FROM messages WHERE mailbox_id = $1 AND expunged_at < now() - make_interval(secs => $2) \
         RETURNING modseq, body_hash",
    )
    .bind(mailbox)
    .bind(TOMBSTONE_RETENTION.as_secs_f64())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let floor = purged.iter().map(|r| r.get::<i64, _>(0)).max().unwrap_or(0);
    sqlx::query(
        "UPDATE mailboxes SET total_bytes = total_bytes - $2, vanished_floor = GREATEST(vanished_floor, $3) WHERE id = $1",
    )
    .bind(mailbox)
    .bind(bytes)
    .bind(floor)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let orphans = blobs::unref(conn, purged.iter().map(|r| r.get::<Vec<u8>, _>(1)).collect()).await?;
    let mut gone: Vec<u32> = rows.iter().map(|r| r.get::<i64, _>(0) as u32).collect();
    gone.sort_unstable();
    Ok((gone, orphans, modseq))
}

impl PgStore {
    pub(super) async fn deliver_impl(
        &self,
        body: &MessageBody,
        deliveries: &[LocalDelivery],
    ) -> Vec<Result<DeliveredMessage, StoreError>> {
        let blob = match blobs::describe(body).await {
            Ok(b) => b,
            Err(e) => return deliveries.iter().map(|_| Err(StoreError::Background(e.to_string()))).collect(),
        };
        // One upload shared by every recipient, before any transaction.
        if let Err(e) = blobs::stage(self.pool(), self.objects(), &blob, body).await {
            let message = e.to_string();
            return deliveries.iter().map(|_| Err(StoreError::Unavailable(message.clone()))).collect();
        }
        let mut out = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            out.push(self.deliver_one(&blob, body, d).await);
        }
        out
    }

    async fn deliver_one(
        &self,
        blob: &Blob,
        body: &MessageBody,
        d: &LocalDelivery,
    ) -> Result<DeliveredMessage, StoreError> {
        let path = FolderPath::from_api(&d.folder)?;
        let mb = match self.open_path(&d.owner, &path).await {
            Err(StoreError::NoSuchFolder(_)) => {
                match self.create_folder_impl(&d.owner, &d.folder, None).await {
                    Ok(()) | Err(StoreError::FolderExists(_)) => {}
                    Err(e) => return Err(e),
                }
                self.open_path(&d.owner, &path).await?
            }
            other => other?,
        };
        let uid = mb.insert(blob, body, &d.header_prefix, &d.flags, SystemTime::now()).await?;
        Ok(DeliveredMessage {
            location: format!("pg:{}/{uid}", mb.row()),
            size: d.header_prefix.len() as u64 + blob.size,
        })
    }
}

/// (uid, flag bits, keywords, modseq) of those of `uids` in the folder not expunged, by UID.
async fn flag_rows<'e>(
    conn: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    mailbox: i64,
    uids: &[u32],
) -> Result<Vec<(u32, i16, Vec<String>, u64)>, StoreError> {
    let wanted: Vec<i64> = uids.iter().map(|u| i64::from(*u)).collect();
    let rows = sqlx::query(
        "SELECT uid, flags, keywords, modseq FROM messages \
         WHERE mailbox_id = $1 AND uid = ANY($2) AND expunged_modseq IS NULL ORDER BY uid",
    )
    .bind(mailbox)
    .bind(&wanted)
    .fetch_all(conn)
    .await
    .map_err(db_error)?;
    Ok(rows.iter().map(|r| (r.get::<i64, _>(0) as u32, r.get(1), r.get(2), r.get::<i64, _>(3) as u64)).collect())
}
