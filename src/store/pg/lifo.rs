//! The connections single statements run on: the IMAP commands' reads and the one-statement
//! STORE. A small pool of its own beside sqlx's (which keeps transactions, the listener,
//! leases and the queue), because sqlx's pool costs what a one-statement command cannot
//! afford:
//!
//! - It hands out the connection idle the longest (a queue). Every connection of a
//!   replica then runs every kind of statement, and each connection prepares and plans
//!   each statement for itself: with one client, the first hundred commands after a start
//!   or after autovacuum's ANALYZE (which drops the plans) paid 0.5–1 ms of planning each.
//!   Here the connection used last is used next (a stack), so light load keeps one or
//!   two connections busy and planned.
//! - It pings each connection as it comes back: one more round trip for every statement,
//!   measured here as about a sixth of PostgreSQL's CPU per IMAP command at 50 clients.
//!   Here a connection comes back as it is; one whose statement failed with a connection
//!   error (or the database's "terminating connection") is dropped instead, and one idle
//!   longer than [`PING_AFTER_IDLE`] is pinged before it is used again. A statement that
//!   was cancelled half-way leaves its answer on the connection; sqlx reads it away
//!   before the next statement is sent.
//!
//! Only single statements go here: a transaction would need its ROLLBACK sent when it is
//! dropped, which sqlx's pool does and this one does not.

use std::sync::Mutex;
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{ConnectOptions, Connection, Either, Execute, Executor, Postgres, SqlStr};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{ACQUIRE_TIMEOUT, PING_AFTER_IDLE, prepare_connection};

/// A last-in-first-out pool of connections for single statements.
pub(crate) struct Lifo {
    options: PgConnectOptions,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    permits: Semaphore,
}

impl std::fmt::Debug for Lifo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifo").field("available", &self.permits.available_permits()).finish()
    }
}

/// A connection taken from a [`Lifo`]; it goes back when dropped, unless it broke.
struct Taken<'p> {
    conn: Option<PgConnection>,
    pool: &'p Lifo,
    broken: bool,
    _permit: SemaphorePermit<'p>,
}

impl Lifo {
    /// At most `size` connections, opened when first needed.
    pub(crate) fn new(options: PgConnectOptions, size: usize) -> Lifo {
        Lifo { options, idle: Mutex::new(Vec::new()), permits: Semaphore::new(size) }
    }

    async fn take(&self) -> Result<Taken<'_>, sqlx::Error> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let top = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((mut conn, since)) = top else {
                let mut conn = self.options.connect().await?;
                prepare_connection(&mut conn).await?;
                return Ok(Taken { conn: Some(conn), pool: self, broken: false, _permit: permit });
            };
            // One idle for a while may have been closed by the server or the network.
            if since.elapsed() > PING_AFTER_IDLE && conn.ping().await.is_err() {
                continue;
            }
            return Ok(Taken { conn: Some(conn), pool: self, broken: false, _permit: permit });
        }
    }
}

impl Taken<'_> {
    fn conn(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("present until dropped")
    }

    /// Note how a statement ended: a connection that failed as a connection is not reused.
    fn settle<T>(&mut self, result: &Result<T, sqlx::Error>) {
        if let Err(e) = result {
            self.broken |= connection_lost(e);
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.broken
        {
            self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push((conn, Instant::now()));
        }
    }
}

/// Whether an error means the connection itself is gone: I/O, TLS or protocol trouble,
/// SQLSTATE class 08 (connection exception) or 57P (operator intervention: the server is
/// shutting down or was restarted).
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Statements run as on sqlx's pool: `query(..).fetch_all(&lifo)`. Rows are collected
/// before they are handed on (every caller here collects them anyway), so the connection
/// is back in the pool as soon as the statement is done.
impl<'p> Executor<'p> for &'p Lifo {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let all = async move {
            let mut taken = self.take().await?;
            let result: Result<Vec<_>, sqlx::Error> = taken.conn().fetch_many(query).try_collect().await;
            taken.settle(&result);
            result
        };
        stream::once(all).map_ok(|rows| stream::iter(rows.into_iter().map(Ok))).try_flatten().boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        Box::pin(async move {
            let mut taken = self.take().await?;
            let result = taken.conn().fetch_optional(query).await;
            taken.settle(&result);
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        Box::pin(async move {
            let mut taken = self.take().await?;
            let result = taken.conn().prepare_with(sql, parameters).await;
            taken.settle(&result);
            result
        })
    }
}
