//! The PostgreSQL backend: one queue in the `queue_items` table (schema 3), shared by
//! every replica, with the message bytes in the store's blob tables.
//!
//! Why leases: several replicas run schedulers over the same rows, and each item must be
//! tried by one of them at a time, yet a replica that dies must not keep its items. A
//! claim (`FOR UPDATE SKIP LOCKED`, so replicas never wait on each other) sets
//! `lease_owner`, `lease_until` and bumps `lease_token`; the attempt renews the lease
//! while it runs; the write-back names the token, so after a lease ran out and another
//! replica claimed the item, the late replica's write changes nothing. A dead replica's
//! items are claimable again once `lease_until` has passed.
//!
//! At least once: a replica that dies after the remote's 250 but before the write-back
//! leaves the item leased; after the lease another replica delivers it again, and the
//! remote receives it twice with the same Message-ID. Bounces keep the worker's order
//! (handed over before the write-back), so they too may be duplicated, never lost.
//!
//! Columns over JSON: `hold` and `next_attempt` are columns (the scheduler's index reads
//! them, and the operator's commands change them without a lease); when an item is read
//! they override the envelope's `state` and `next_attempt`. Due times of new and retried
//! items are the database's `now()`; after a failed attempt the next one is the
//! replica's clock plus the backoff, so replicas' clocks are assumed synchronised (a skew
//! of seconds shifts a retry by seconds, nothing more: leases use the database's clock).
//!
//! The bytes are a blob (`store::pg::blobs`): the queue row holds a reference, counted in
//! `blobs.refcount` like a message row's, and the last reference deletes them. An attempt
//! reads them one 1 MiB chunk per query.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Row};

use super::backend::{Claimed, Finished, Lease, set_gauges};
use super::envelope::{Envelope, ItemOptions, ItemState, QueueId};
use super::{ItemVisitor, QueueError, QueueItemDetail, QueueItemSummary};
use crate::accounts::Address;
use crate::store::pg::blobs;

/// The NOTIFY channel: enqueue, retry and release wake every replica's scheduler.
const CHANNEL: &str = "mailroom_queue";
/// How long the listener waits before connecting again after a failure.
const LISTEN_RETRY: Duration = Duration::from_secs(5);

/// How a replica takes part in the shared queue.
#[derive(Clone, Debug)]
pub struct PgQueueOptions {
    /// This replica's name in `lease_owner` (for the operator: who is sending what).
    /// Unique per process: two processes with one name would release each other's
    /// leases at shutdown.
    pub replica: String,
    /// How long a claim holds without renewal: the time a dead replica's items wait
    /// before another replica retries them. Renewed every third of it.
    pub lease: Duration,
    /// The longest the scheduler sleeps without a notification (a NOTIFY lost while
    /// the listener reconnects is caught up within this).
    pub poll: Duration,
}

impl PgQueueOptions {
    /// A random replica name, a 5-minute lease, polling every 5 seconds.
    pub fn new() -> PgQueueOptions {
        PgQueueOptions {
            replica: format!("mailroom-{:016x}", rand::random::<u64>()),
            lease: Duration::from_secs(300),
            poll: Duration::from_secs(5),
        }
    }
}

impl Default for PgQueueOptions {
    fn default() -> Self {
        PgQueueOptions::new()
    }
}

/// What a PostgreSQL claim proves and where its bytes are.
pub(super) struct PgLease {
    token: i64,
    body_hash: Vec<u8>,
    size: u64,
}

/// Stops a background task (lease renewal, listener) when dropped.
pub(super) struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) struct PgBackend {
    pool: PgPool,
    options: PgQueueOptions,
    /// When the shared gauges were last queried.
    gauges_at: std::sync::Mutex<Option<std::time::Instant>>,
}

fn db(e: impl std::fmt::Display) -> QueueError {
    QueueError::Database(e.to_string())
}

fn to_system(t: DateTime<Utc>) -> SystemTime {
    t.into()
}

/// The envelope of a row, with the authoritative columns applied.
fn envelope_of(id: &str, json: &str, hold: bool, next_attempt: DateTime<Utc>) -> Result<Envelope, QueueError> {
    let mut env = Envelope::from_json(json.as_bytes())
        .map_err(|e| QueueError::Database(format!("queue item {id}: not a valid envelope: {e}")))?;
    env.next_attempt = to_system(next_attempt);
    if hold {
        env.state = ItemState::Hold;
    } else if env.state == ItemState::Hold {
        env.state = ItemState::Active;
    }
    Ok(env)
}

/// `SELECT` list of the operator's views, read by [`item_of`] (a macro: sqlx takes only
/// `'static` SQL text).
macro_rules! item_columns {
    () => {
        "SELECT id, envelope::text, hold, next_attempt, size, COALESCE(lease_until > now(), false) FROM queue_items"
    };
}

fn item_of(row: &PgRow) -> Result<(Envelope, u64, bool), QueueError> {
    let id: String = row.try_get(0).map_err(db)?;
    let json: String = row.try_get(1).map_err(db)?;
    let env = envelope_of(&id, &json, row.try_get(2).map_err(db)?, row.try_get(3).map_err(db)?)?;
    let size: i64 = row.try_get(4).map_err(db)?;
    Ok((env, size.max(0) as u64, row.try_get(5).map_err(db)?))
}

impl PgBackend {
    /// Use the queue in `pool`'s database, refusing one without the `queue_items` table.
    pub(super) async fn open(pool: PgPool, options: PgQueueOptions) -> Result<PgBackend, QueueError> {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('queue_items') IS NOT NULL").fetch_one(&pool).await.map_err(db)?;
        if !exists {
            return Err(QueueError::Database("no queue_items table: the schema predates version 3".into()));
        }
        Ok(PgBackend { pool, options, gauges_at: std::sync::Mutex::new(None) })
    }

    pub(super) fn poll(&self) -> Duration {
        self.options.poll
    }

    /// Store the bytes and the row in one transaction: when it commits the item is
    /// durable (as durable as the server's commits) and every replica is woken.
    pub(super) async fn enqueue(
        &self,
        sender: Option<Address>,
        recipients: Vec<Address>,
        parts: Vec<Bytes>,
        msgid: String,
        options: ItemOptions,
    ) -> Result<Envelope, QueueError> {
        let hashed = parts.clone();
        let blob = tokio::task::spawn_blocking(move || blobs::describe_parts(&hashed))
            .await
            .map_err(|e| QueueError::Task(e.to_string()))?;
        // An id collision (same microsecond, same 32 random bits) inserts nothing; take
        // another id.
        for _ in 0..5 {
            let env = Envelope::new(QueueId::generate(), sender.clone(), &recipients, &msgid).with_options(options);
            let mut tx = self.pool.begin().await.map_err(db)?;
            blobs::add_ref_parts(&mut tx, &blob, &parts).await.map_err(db)?;
            let inserted = sqlx::query(
                "INSERT INTO queue_items (id, envelope, body_hash, size, next_attempt, created_at) \
                 VALUES ($1, $2::jsonb, $3, $4, now(), $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(env.id.as_str())
            .bind(String::from_utf8_lossy(&env.to_json()).into_owned())
            .bind(&blob.hash)
            .bind(blob.size as i64)
            .bind(DateTime::<Utc>::from(env.created))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if inserted == 0 {
                tx.rollback().await.map_err(db)?;
                continue;
            }
            sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(env);
        }
        Err(QueueError::Database("no free queue id after 5 tries".into()))
    }

    /// Lease up to `room` due items to this replica; also say when the next item becomes
    /// claimable (due, or its lease running out). A database error is logged and claims
    /// nothing: the scheduler tries again after the poll interval.
    pub(super) async fn claim_due(&self, now: SystemTime, room: usize) -> (Vec<Claimed>, Option<SystemTime>) {
        if room == 0 {
            return (Vec::new(), None);
        }
        match self.try_claim(now, room).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "queue: cannot claim due items");
                (Vec::new(), None)
            }
        }
    }

    async fn try_claim(&self, now: SystemTime, room: usize) -> Result<(Vec<Claimed>, Option<SystemTime>), QueueError> {
        let rows = sqlx::query(
            "UPDATE queue_items SET lease_owner = $1, lease_until = now() + make_interval(secs => $2), \
             lease_token = lease_token + 1 \
             WHERE id IN (SELECT id FROM queue_items WHERE NOT hold AND next_attempt <= now() \
               AND (lease_until IS NULL OR lease_until < now()) \
               ORDER BY next_attempt FOR UPDATE SKIP LOCKED LIMIT $3) \
             RETURNING id, envelope::text, lease_token, body_hash, size, next_attempt",
        )
        .bind(&self.options.replica)
        .bind(self.options.lease.as_secs_f64())
        .bind(room as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0).map_err(db)?;
            let token: i64 = row.try_get(2).map_err(db)?;
            let json: String = row.try_get(1).map_err(db)?;
            match envelope_of(&id, &json, false, row.try_get(5).map_err(db)?) {
                Ok(mut envelope) => {
                    envelope.state = ItemState::Active;
                    let size: i64 = row.try_get(4).map_err(db)?;
                    let lease = PgLease { token, body_hash: row.try_get(3).map_err(db)?, size: size.max(0) as u64 };
                    claimed.push(Claimed { envelope, lease: Lease::Pg(lease) });
                }
                Err(e) => self.set_aside(&id, token, &e).await,
            }
        }
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM min(GREATEST(next_attempt, COALESCE(lease_until, next_attempt))) - now())::float8 \
             FROM queue_items WHERE NOT hold",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let next = seconds.filter(|s| *s > 0.0 && s.is_finite()).map(|s| now + Duration::from_secs_f64(s));
        Ok((claimed, next))
    }

    /// An envelope that does not parse is put on hold for the operator (the files
    /// backend renames it `.broken`) instead of being claimed again forever.
    async fn set_aside(&self, id: &str, token: i64, why: &QueueError) {
        tracing::error!(queue_id = id, reason = %why, "queue: unusable envelope put on hold");
        let result = sqlx::query(
            "UPDATE queue_items SET hold = true, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(id)
        .bind(token)
        .execute(&self.pool)
        .await;
        if let Err(e) = result {
            tracing::error!(queue_id = id, error = %e, "queue: cannot hold the unusable item");
        }
    }

    /// Renew the lease every third of its length until the guard drops. A lease found
    /// taken over is logged and no longer renewed: the write-back will be dropped.
    pub(super) fn keep_lease(&self, id: &QueueId, lease: &PgLease) -> TaskGuard {
        let (pool, options, id, token) = (self.pool.clone(), self.options.clone(), id.clone(), lease.token);
        TaskGuard(tokio::spawn(async move {
            loop {
                tokio::time::sleep(options.lease / 3).await;
                match renew(&pool, &options, &id, token).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(queue_id = %id, "queue: lease lost during the attempt; another replica may retry it");
                        return;
                    }
                    Err(e) => tracing::warn!(queue_id = %id, error = %e, "queue: cannot renew the lease"),
                }
            }
        }))
    }

    pub(super) async fn read_message(&self, lease: &PgLease) -> Result<Vec<u8>, QueueError> {
        blobs::read_all(&self.pool, &lease.body_hash, lease.size).await.map_err(db)
    }

    /// Write back under the lease: remove the item when nothing is pending, else store
    /// the envelope and its next attempt and end the lease. `hold` is left alone, so a
    /// hold during the attempt stays.
    pub(super) async fn finish(&self, lease: &PgLease, env: Envelope) -> Result<Finished, QueueError> {
        let id = env.id.as_str();
        if env.pending().next().is_none() {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let hash: Option<Vec<u8>> =
                sqlx::query_scalar("DELETE FROM queue_items WHERE id = $1 AND lease_token = $2 RETURNING body_hash")
                    .bind(id)
                    .bind(lease.token)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            let Some(hash) = hash else { return Ok(Finished::Gone) };
            blobs::unref(&mut tx, vec![hash]).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(Finished::Removed);
        }
        let updated = sqlx::query(
            "UPDATE queue_items SET envelope = $3::jsonb, next_attempt = $4, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(id)
        .bind(lease.token)
        .bind(String::from_utf8_lossy(&env.to_json()).into_owned())
        .bind(DateTime::<Utc>::from(env.next_attempt))
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(if updated == 1 { Finished::Updated } else { Finished::Gone })
    }

    pub(super) async fn list(&self) -> Result<Vec<QueueItemSummary>, QueueError> {
        let rows = sqlx::query(concat!(item_columns!(), " ORDER BY id")).fetch_all(&self.pool).await.map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            match item_of(row) {
                Ok((env, size, in_flight)) => out.push(QueueItemSummary::of(&env, size, in_flight)),
                Err(e) => tracing::error!(error = %e, "queue: item left out of the list"),
            }
        }
        Ok(out)
    }

    /// Each item in id order, streamed: one row (one envelope) in memory at a time.
    pub(super) async fn visit(&self, visit: &mut ItemVisitor<'_>) -> Result<(), QueueError> {
        let mut rows = sqlx::query(concat!(item_columns!(), " ORDER BY id")).fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(db)? {
            match item_of(&row) {
                Ok((env, size, in_flight)) => visit(&QueueItemSummary::of(&env, size, in_flight), &env),
                Err(e) => tracing::error!(error = %e, "queue: item left out of the list"),
            }
        }
        Ok(())
    }

    pub(super) async fn show(&self, id: &QueueId) -> Result<Option<QueueItemDetail>, QueueError> {
        let row = sqlx::query(concat!(item_columns!(), " WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let (envelope, size, in_flight) = item_of(&row)?;
        Ok(Some(QueueItemDetail { envelope, size, in_flight }))
    }

    /// Make one item (or every item not on hold) due now; an item in flight keeps its
    /// lease, and its attempt's result then decides its next attempt (as with files).
    pub(super) async fn retry(&self, id: Option<&QueueId>) -> Result<usize, QueueError> {
        let n = match id {
            Some(id) => {
                let n = sqlx::query("UPDATE queue_items SET next_attempt = now() WHERE id = $1 AND NOT hold")
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 && !self.exists(id).await? {
                    return Err(QueueError::NotFound(id.to_string()));
                }
                n
            }
            None => sqlx::query("UPDATE queue_items SET next_attempt = now() WHERE NOT hold")
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected(),
        };
        self.notify().await;
        Ok(n as usize)
    }

    pub(super) async fn hold(&self, id: &QueueId) -> Result<(), QueueError> {
        self.update_one(id, "UPDATE queue_items SET hold = true WHERE id = $1").await
    }

    /// Release a held item and make it due now (an item not on hold is left as it is).
    pub(super) async fn release(&self, id: &QueueId) -> Result<(), QueueError> {
        self.update_one(
            id,
            "UPDATE queue_items SET next_attempt = CASE WHEN hold THEN now() ELSE next_attempt END, hold = false \
             WHERE id = $1",
        )
        .await?;
        self.notify().await;
        Ok(())
    }

    /// Delete the row and its blob reference at once, even while another replica tries
    /// it: that replica's write-back then finds no row and drops its result.
    pub(super) async fn delete(&self, id: &QueueId) -> Result<String, QueueError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query("DELETE FROM queue_items WHERE id = $1 RETURNING body_hash, envelope->>'message_id'")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| QueueError::NotFound(id.to_string()))?;
        let hash: Vec<u8> = row.try_get(0).map_err(db)?;
        let msgid: Option<String> = row.try_get(1).map_err(db)?;
        blobs::unref(&mut tx, vec![hash]).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(msgid.unwrap_or_default())
    }

    async fn update_one(&self, id: &QueueId, sql: &'static str) -> Result<(), QueueError> {
        let n = sqlx::query(sql).bind(id.as_str()).execute(&self.pool).await.map_err(db)?.rows_affected();
        if n == 0 {
            return Err(QueueError::NotFound(id.to_string()));
        }
        Ok(())
    }

    async fn exists(&self, id: &QueueId) -> Result<bool, QueueError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM queue_items WHERE id = $1)")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    /// Wake every replica's scheduler. Best effort: they poll anyway.
    async fn notify(&self) {
        if let Err(e) = crate::store::pg::send_notification(&self.pool, CHANNEL, &[String::new()]).await {
            tracing::debug!(error = %e, "queue: NOTIFY failed");
        }
    }

    /// LISTEN on the queue channel and call `wake` for each notification, and after each
    /// (re)connect, since notifications sent while not listening are lost. The listener
    /// keeps one connection of the pool for as long as the workers run.
    pub(super) fn spawn_listener(&self, wake: impl Fn() + Send + Sync + 'static) -> TaskGuard {
        let pool = self.pool.clone();
        TaskGuard(tokio::spawn(async move {
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => match listener.listen(CHANNEL).await {
                        Ok(()) => {
                            wake();
                            loop {
                                match listener.try_recv().await {
                                    // `None`: the connection was lost and is re-established.
                                    Ok(_) => wake(),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "queue: LISTEN connection failed");
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "queue: cannot LISTEN"),
                    },
                    Err(e) => tracing::warn!(error = %e, "queue: cannot connect to LISTEN"),
                }
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        }))
    }

    /// Gauges for the whole shared queue (every replica reports the same numbers), at
    /// most once per poll interval.
    pub(super) async fn refresh_gauges(&self) {
        {
            let mut at = self.gauges_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| t.elapsed() < self.options.poll) {
                return;
            }
            *at = Some(std::time::Instant::now());
        }
        let rows = sqlx::query(
            "SELECT CASE WHEN hold THEN 'hold' ELSE envelope->>'state' END, count(*), \
             COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM queue_items GROUP BY 1",
        )
        .fetch_all(&self.pool)
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return tracing::debug!(error = %e, "queue: cannot read the gauges"),
        };
        let (mut active, mut deferred, mut hold, mut oldest) = (0i64, 0i64, 0i64, 0f64);
        for row in rows {
            let state: Option<String> = row.try_get(0).unwrap_or_default();
            let n: i64 = row.try_get(1).unwrap_or_default();
            match state.as_deref() {
                Some("hold") => hold += n,
                Some("deferred") => deferred += n,
                _ => active += n,
            }
            oldest = oldest.max(row.try_get(2).unwrap_or_default());
        }
        set_gauges(active, deferred, hold, Duration::from_secs_f64(oldest.max(0.0)));
    }

    /// End this replica's leases (after shutdown abandoned its attempts).
    pub(super) async fn release_own_leases(&self) {
        let result =
            sqlx::query("UPDATE queue_items SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
                .bind(&self.options.replica)
                .execute(&self.pool)
                .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "queue: cannot release this replica's leases; they run out by themselves");
        }
    }
}

/// Extend the lease while this replica still holds it (`lease_owner` is cleared by the
/// write-back, so a renewal racing it cannot revive the lease).
async fn renew(pool: &PgPool, options: &PgQueueOptions, id: &QueueId, token: i64) -> Result<bool, QueueError> {
    let n = sqlx::query(
        "UPDATE queue_items SET lease_until = now() + make_interval(secs => $3) \
         WHERE id = $1 AND lease_token = $2 AND lease_owner = $4",
    )
    .bind(id.as_str())
    .bind(token)
    .bind(options.lease.as_secs_f64())
    .bind(&options.replica)
    .execute(pool)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(n == 1)
}

#[cfg(test)]
#[path = "pg_tests.rs"]
mod tests;
