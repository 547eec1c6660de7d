//! Periodic-fetch records in PostgreSQL: `fetch_sources` (one row per source) and
//! `fetch_seen` (one row per POP3 UIDL delivered), from `schema/0009_fetch_state.sql`.
//! Each event is one committed transaction touching the source's row and at most the
//! rows it names, so a message costs the same whatever the record's size; only one
//! replica writes a source at a time (the fetch loop holds the source's lease).

use sqlx::{Postgres, Transaction};

use super::{PgStore, db_error, retry};
use crate::store::{FetchEvent, FetchPending, FetchState, StoreError};

/// A `fetch_sources` row: uid_validity, last_uid, pending_id, pending_uid_next.
type SourceRow = (Option<i64>, i64, Option<String>, Option<i64>);

impl PgStore {
    pub(super) async fn fetch_state_load_impl(&self, source: &str) -> Result<FetchState, StoreError> {
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        let row: Option<SourceRow> = sqlx::query_as(
            "SELECT uid_validity, last_uid, pending_id, pending_uid_next FROM fetch_sources WHERE source = $1",
        )
        .bind(source)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some((uid_validity, last_uid, pending_id, pending_uid_next)) = row else {
            return Ok(FetchState::default());
        };
        let seen: Vec<String> = sqlx::query_scalar("SELECT remote_id FROM fetch_seen WHERE source = $1")
            .bind(source)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(FetchState {
            uid_validity: uid_validity.map(u32_of),
            last_uid: u32_of(last_uid),
            seen: seen.into_iter().collect(),
            pending: pending_id.zip(pending_uid_next).map(|(id, n)| FetchPending { id, uid_next: u32_of(n) }),
        })
    }

    pub(super) async fn fetch_record_impl(&self, source: &str, event: &FetchEvent) -> Result<(), StoreError> {
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            source_row(&mut tx, source).await?;
            let update = match event {
                FetchEvent::Pending(p) => {
                    sqlx::query("UPDATE fetch_sources SET pending_id = $2, pending_uid_next = $3 WHERE source = $1")
                        .bind(source)
                        .bind(&p.id)
                        .bind(i64::from(p.uid_next))
                }
                FetchEvent::Abandoned | FetchEvent::Done { imap_uid: None, .. } => {
                    if let FetchEvent::Done { id, .. } = event {
                        sqlx::query(
                            "INSERT INTO fetch_seen (source, remote_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        )
                        .bind(source)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    }
                    sqlx::query("UPDATE fetch_sources SET pending_id = NULL, pending_uid_next = NULL WHERE source = $1")
                        .bind(source)
                }
                FetchEvent::Done { imap_uid: Some(uid), .. } => sqlx::query(
                    "UPDATE fetch_sources SET last_uid = greatest(last_uid, $2), pending_id = NULL, \
                     pending_uid_next = NULL WHERE source = $1",
                )
                .bind(source)
                .bind(i64::from(*uid)),
                FetchEvent::UidValidity(v) => sqlx::query(
                    "UPDATE fetch_sources SET uid_validity = $2, last_uid = 0 \
                     WHERE source = $1 AND uid_validity IS DISTINCT FROM $2",
                )
                .bind(source)
                .bind(i64::from(*v)),
                FetchEvent::Forget(ids) => {
                    sqlx::query("DELETE FROM fetch_seen WHERE source = $1 AND remote_id = ANY($2)")
                        .bind(source)
                        .bind(ids)
                }
            };
            update.execute(&mut *tx).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
        .await
    }

    pub(super) async fn fetch_state_replace_impl(&self, source: &str, state: &FetchState) -> Result<(), StoreError> {
        let seen: Vec<&str> = state.seen.iter().map(String::as_str).collect();
        let seen = &seen;
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            source_row(&mut tx, source).await?;
            sqlx::query(
                "UPDATE fetch_sources SET uid_validity = $2, last_uid = $3, pending_id = $4, pending_uid_next = $5 \
                 WHERE source = $1",
            )
            .bind(source)
            .bind(state.uid_validity.map(i64::from))
            .bind(i64::from(state.last_uid))
            .bind(state.pending.as_ref().map(|p| p.id.as_str()))
            .bind(state.pending.as_ref().map(|p| i64::from(p.uid_next)))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query("DELETE FROM fetch_seen WHERE source = $1")
                .bind(source)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query("INSERT INTO fetch_seen (source, remote_id) SELECT $1, unnest($2::text[])")
                .bind(source)
                .bind(seen)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
        .await
    }
}

/// The source's row, created empty the first time; every write also stamps it.
async fn source_row(tx: &mut Transaction<'_, Postgres>, source: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO fetch_sources (source) VALUES ($1) \
         ON CONFLICT (source) DO UPDATE SET updated_at = now()",
    )
    .bind(source)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Values were written from `u32`s.
fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}
