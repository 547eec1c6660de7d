//! Running a write transaction again when PostgreSQL aborted it to break a lock cycle.
//!
//! Owns: which failures are worth a second attempt and how often. PostgreSQL aborts one
//! transaction of a deadlock (SQLSTATE 40P01) and, at stricter isolation levels, one of a
//! pair whose effects cannot be serialised (40001); the other transaction goes on, and
//! running the aborted one again from the start normally succeeds. The writers take their
//! locks in one order (folder rows in id order, then body rows in hash order; `write.rs`)
//! so that cycles should not happen; this is the safety net for an order that is missed.
//!
//! Only whole transactions are retried: the closure begins, runs and commits its own, so
//! an aborted attempt has left nothing behind. Side effects outside the database (an
//! object uploaded to the bucket) are idempotent. Any other error is returned at once.

use std::future::Future;
use std::time::Duration;

use crate::store::StoreError;

/// Attempts in all, the first one included.
const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; doubled for each further one, plus up to as
/// much again at random so the two parties of a deadlock do not collide again.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);

/// Whether a database error aborted the transaction to break a lock cycle or a
/// serialisation conflict (running it again can succeed).
pub(super) fn is_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => matches!(d.code().as_deref(), Some("40P01" | "40001")),
        _ => false,
    }
}

/// Run the transaction `attempt` makes, again (up to [`ATTEMPTS`] times in all, with a
/// short jittered backoff) while it fails with [`StoreError::Conflict`]. A conflict on
/// the last attempt is returned as [`StoreError::Unavailable`]: "try again later".
pub(super) async fn transaction<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut n = 1;
    loop {
        match attempt().await {
            Err(StoreError::Conflict(why)) if n < ATTEMPTS => {
                tracing::debug!(attempt = n, reason = %why, "transaction aborted by a lock conflict; running it again");
                let jitter = backoff.mul_f64(rand::random::<f64>());
                tokio::time::sleep(backoff + jitter).await;
                backoff *= 2;
                n += 1;
            }
            Err(StoreError::Conflict(why)) => {
                return Err(StoreError::Unavailable(format!("{why} (after {ATTEMPTS} attempts)")));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn conflicts_are_retried_up_to_the_limit_and_other_errors_never() {
        let calls = Cell::new(0);
        let twice = transaction(|| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n < 3 { Err(StoreError::Conflict("deadlock".into())) } else { Ok(n) } }
        })
        .await;
        assert_eq!(twice.unwrap(), 3);

        calls.set(0);
        let always = transaction(|| {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(StoreError::Conflict("deadlock".into())) }
        })
        .await;
        assert!(matches!(always, Err(StoreError::Unavailable(ref m)) if m.contains("after 3 attempts")), "{always:?}");
        assert_eq!(calls.get(), 3);

        calls.set(0);
        let other = transaction(|| {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(StoreError::Unavailable("down".into())) }
        })
        .await;
        assert!(matches!(other, Err(StoreError::Unavailable(_))));
        assert_eq!(calls.get(), 1, "only conflicts are retried");
    }
}
