//! Leases shared by every replica: a row in `leases` that says who holds a name until when.
//!
//! Owns: taking, renewing and releasing one. Taking is one statement that inserts the row
//! or takes over an expired one; the holder renews it in the background while it lives and
//! deletes it when dropped. Every statement names the holder's random token, so a replica
//! whose lease expired (it was paused or cut off) cannot renew or delete its successor's.
//! No database connection is held meanwhile: a POP3 session waiting for its client costs
//! one renewal statement every [`RENEW_EVERY`].

use std::time::Duration;

use sqlx::PgPool;

use super::{PgStore, db_error};
use crate::store::StoreError;

/// How long a lease outlives its last renewal (and so how long a dead replica's lease
/// blocks the name).
pub const LEASE_TTL: Duration = Duration::from_secs(120);
/// How often a live holder renews.
const RENEW_EVERY: Duration = Duration::from_secs(40);

/// A held lease; released when dropped (or when it expires, if this process dies).
#[derive(Debug)]
pub struct PgLease {
    pool: PgPool,
    name: String,
    token: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl PgStore {
    /// Take the lease `name`, or `None` while someone else holds it.
    pub async fn try_lease(&self, name: &str) -> Result<Option<PgLease>, StoreError> {
        let token = format!("{:032x}", rand::random::<u128>());
        let taken: Option<i32> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
             WHERE leases.until < now() RETURNING 1",
        )
        .bind(name)
        .bind(&token)
        .bind(LEASE_TTL.as_secs_f64())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        if taken.is_none() {
            return Ok(None);
        }
        let pool = self.pool().clone();
        let (n, t) = (name.to_string(), token.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let renewed = sqlx::query(
                    "UPDATE leases SET until = now() + make_interval(secs => $3) WHERE name = $1 AND holder = $2",
                )
                .bind(&n)
                .bind(&t)
                .bind(LEASE_TTL.as_secs_f64())
                .execute(&pool)
                .await;
                if let Err(e) = renewed {
                    tracing::warn!(lease = %n, error = %e, "cannot renew a lease (retrying)");
                }
            }
        });
        Ok(Some(PgLease { pool: self.pool().clone(), name: name.to_string(), token, renewer }))
    }
}

impl PgLease {
    /// Renew now and say whether the lease is still this holder's: false once it expired
    /// and another replica took the name (this one lost the database for longer than
    /// [`LEASE_TTL`]). For work that must not run twice, checked right before it.
    pub async fn still_held(&self) -> Result<bool, StoreError> {
        let renewed =
            sqlx::query("UPDATE leases SET until = now() + make_interval(secs => $3) WHERE name = $1 AND holder = $2")
                .bind(&self.name)
                .bind(&self.token)
                .bind(LEASE_TTL.as_secs_f64())
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(renewed.rows_affected() == 1)
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        self.renewer.abort();
        let (pool, name, token) = (self.pool.clone(), std::mem::take(&mut self.name), std::mem::take(&mut self.token));
        // Without a runtime (process exit) the row simply expires.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(token)
                    .execute(&pool)
                    .await;
            });
        }
    }
}
