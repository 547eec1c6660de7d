//! The PostgreSQL schema: versioned migrations applied by the server at start.
//!
//! Owns: the list of migrations and applying the missing ones. Several replicas may start
//! at once, so the whole check-and-apply runs under one session-level advisory lock on a
//! dedicated connection: the others wait, then find nothing left to do. Each migration
//! runs in its own transaction together with the row that records it, so a crash leaves
//! the schema at a version boundary. A database that has a version this binary does not
//! know (a newer mailroom migrated it) is refused: running older code on a newer schema
//! could write rows the newer code misreads.

use sqlx::{Connection, PgConnection, PgPool};

use super::db_error;
use crate::store::StoreError;

/// `pg_advisory_lock(LOCK_CLASS, LOCK_SCHEMA)`: "mailroom is migrating the schema".
/// Other session locks of mailroom use the same class with their own key.
pub(crate) const LOCK_CLASS: i32 = 0x6d61_696c; // "mail"
const LOCK_SCHEMA: i32 = 1;

/// Every migration, in order: (version, name, SQL). Versions written on parallel
/// branches may land in any order (see `apply_missing`).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("schema/0001_initial.sql")),
    (2, "blob_location", include_str!("schema/0002_blob_location.sql")),
    (3, "queue", include_str!("schema/0003_queue.sql")),
    (4, "kv", include_str!("schema/0004_kv.sql")),
    (5, "sieve", include_str!("schema/0005_sieve.sql")),
    (6, "dmarc_reports", include_str!("schema/0006_dmarc_reports.sql")),
    (7, "tls_reports", include_str!("schema/0007_tls_reports.sql")),
    (8, "credentials", include_str!("schema/0008_credentials.sql")),
    (9, "fetch_state", include_str!("schema/0009_fetch_state.sql")),
];

/// The schema version this binary writes.
pub fn current_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was migrated by a newer mailroom.
    #[error("the database schema is version {found}, newer than this mailroom's {known}: upgrade mailroom")]
    Newer {
        /// Highest version recorded in the database.
        found: i32,
        /// Highest version this binary knows.
        known: i32,
    },
    /// The database could not be reached or refused a statement.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Apply the migrations the database lacks; returns the versions applied (empty when the
/// schema was current).
pub async fn migrate(pool: &PgPool) -> Result<Vec<i32>, MigrateError> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(LOCK_SCHEMA)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let result = apply_missing(&mut conn).await;
    // Unlock even after a failure; a lost connection releases the lock by itself.
    let unlocked =
        sqlx::query("SELECT pg_advisory_unlock($1, $2)").bind(LOCK_CLASS).bind(LOCK_SCHEMA).execute(&mut *conn).await;
    if unlocked.is_err() {
        conn.detach();
    }
    result
}

async fn apply_missing(conn: &mut PgConnection) -> Result<Vec<i32>, MigrateError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let recorded: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&mut *conn).await.map_err(db_error)?;
    let known = current_version();
    if let Some(found) = recorded.iter().copied().filter(|v| *v > known).max() {
        return Err(MigrateError::Newer { found, known });
    }
    let mut applied = Vec::new();
    // Every migration not recorded, not only those above the highest: versions written
    // on parallel branches may land in any order.
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| !recorded.contains(&m.0)) {
        let mut tx = conn.begin().await.map_err(db_error)?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(db_error)?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        applied.push(*version);
    }
    Ok(applied)
}

/// The highest migration recorded, 0 for an empty database.
pub async fn recorded_version(conn: &mut PgConnection) -> Result<i32, StoreError> {
    let v: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(v.unwrap_or(0))
}
