//! The PostgreSQL backend: every replica of mailroom shares one database.
//!
//! Owns: the connection pool, the schema (`migrate.rs`, `schema/`), and the store API on
//! top of it: accounts and folders (`folders.rs`), one open folder (`mailbox.rs`), writes
//! that take UIDs and modseqs (`write.rs`), and bodies stored once by content hash
//! (`blobs.rs`), in the database or in an S3-compatible bucket (`objects.rs`, with the
//! sweep of objects no row names in `sweep.rs`), leases (`lease.rs`), and the named
//! values replicas share (`kv.rs`) with the data-dir files mirrored through them
//! (`mirror.rs`), and the periodic-fetch records (`fetch_state.rs`).
//!
//! How it keeps the store contract across replicas:
//! - UIDs and modseqs come from the folder's row (`UPDATE mailboxes … RETURNING`) inside
//!   the transaction that inserts the message. The row lock is held until COMMIT, so commit
//!   order is UID order and two replicas never hand out one UID.
//! - An acknowledged write is a committed transaction (the server's `synchronous_commit`
//!   decides how durable a commit is; the default is a flushed WAL).
//! - An expunged message stays as a tombstone row that still reads (RFC 2180) and answers
//!   QRESYNC's VANISHED; tombstones older than [`TOMBSTONE_RETENTION`] are purged, and
//!   `vanished_floor` tells a client whose state is older to resync.
//! - No connection is held across a client's round trip: an idle IMAP session costs no
//!   database connection.
//! - Every write, once committed, is published: to this replica's sessions at once, to the
//!   others by a NOTIFY its outbox sends after the COMMIT; one listener per replica hands
//!   the other replicas' ones to its sessions of the folder (`notify.rs`), so IDLE on one
//!   replica hears about a delivery on another.
//! - Every database failure is temporary, [`StoreError::Unavailable`]: the protocols
//!   answer "try again later", and the pool reconnects by itself when the server is back.
//!   A transaction PostgreSQL aborts to break a deadlock is [`StoreError::Conflict`]; the
//!   write transactions run it again (`retry.rs`) and report "unavailable" only when it
//!   keeps failing.

mod backend;
pub(crate) mod blobs;
#[cfg(test)]
mod contention_tests;
mod credentials;
mod fetch_state;
mod folders;
mod import;
pub mod kv;
mod lease;
mod lifo;
#[cfg(test)]
mod lifo_tests;
mod mailbox;
pub mod migrate;
pub mod mirror;
mod notify;
#[cfg(test)]
mod notify_tests;
mod objects;
#[cfg(test)]
mod objects_tests;
mod reports;
mod retry;
mod sieve;
mod sweep;
#[cfg(test)]
mod sweep_tests;
#[cfg(test)]
mod tests;
mod write;

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use tokio::sync::{broadcast, oneshot};

pub use backend::PgViewTicket;
pub use import::{FolderReport, ImportError};
pub use lease::{LEASE_TTL, PgLease};
pub use mailbox::PgMailbox;
pub use migrate::MigrateError;
pub use notify::LISTENER_APPLICATION_NAME;
pub(crate) use notify::send_now as send_notification;
pub use objects::{ObjectStoreConfig, check_bucket};
pub use sweep::{SWEEP_GRACE, SweepReport};

use super::{FolderPath, MailboxEvent, MailboxOwner, MessageReader, StoreError};
use bytes::Bytes;

/// How long an expunged message stays readable for sessions that still show it (on any
/// replica) and answers VANISHED before its row is purged.
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(3600);

/// Connections per replica in sqlx's pool (transactions, deliveries, the queue, leases).
/// Sessions hold one only for the length of a statement or a transaction, so a small pool
/// serves thousands of sessions.
const POOL_SIZE: u32 = 16;
/// Connections per replica for the single statements of IMAP commands (`lifo.rs`).
const STATEMENT_POOL_SIZE: usize = 8;
/// How long a statement waits for a free (or re-established) connection before the
/// session is told "try again later".
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection of the statement pool idle longer than this is pinged before use (`lifo.rs`).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// Where the single statements of IMAP commands run.
    statements: lifo::Lifo,
    /// Where it connects, for logs (never the password).
    describe: String,
    /// Folders open on this replica, by row id: their handles share one event channel.
    open: Mutex<HashMap<i64, Weak<mailbox::Shared>>>,
    /// Account ids seen by this replica (accounts are never deleted while it runs).
    accounts: Mutex<HashMap<MailboxOwner, i64>>,
    /// Random, names this store in its NOTIFY payloads so its listener can skip its own
    /// (its sessions were told directly).
    token: u64,
    /// Set when another replica changed a `kv` row (or notifications were lost): the
    /// shared-files mirror waits on it between polls.
    kv_changed: tokio::sync::Notify,
    /// Dropped with the last clone of the store, which ends its listener task (`None`: no
    /// listener, see [`PgStore::connect_only`]).
    _stop_listener: Option<oneshot::Sender<()>>,
    /// Where new bodies go: `None` in `blob_chunks`, else this bucket.
    objects: Option<objects::Objects>,
    /// This replica's change notifications on their way to the others.
    outbox: Arc<notify::Outbox>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.inner.describe)
    }
}

/// A database failure as the store reports it: temporary, whatever the cause (the server
/// is down, failing over, out of connections, or refused a statement). A transaction
/// aborted to break a deadlock is [`StoreError::Conflict`], which the writers retry
/// (`retry.rs`).
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    if retry::is_conflict(&e) {
        return StoreError::Conflict(format!("database: {e}"));
    }
    StoreError::Unavailable(format!("database: {e}"))
}

impl PgStore {
    /// Connect to the database at `url` (a `postgres://` URL), bring its schema up to
    /// date, and listen for the changes other replicas make. `hostaddr` is the server's
    /// address when the caller resolved the host name itself (the static binary has no
    /// system resolver); the name in the URL is still what TLS verifies.
    pub async fn connect(url: &str, hostaddr: Option<IpAddr>) -> Result<PgStore, migrate::MigrateError> {
        PgStore::connect_with(url, hostaddr, None).await
    }

    /// [`PgStore::connect`], keeping new message bodies in the object store `blobs`
    /// (`MAILROOM_BLOB_STORE=s3://…`) rather than in the database. Bodies already in the
    /// database stay there and still read.
    pub async fn connect_with(
        url: &str,
        hostaddr: Option<IpAddr>,
        blobs: Option<ObjectStoreConfig>,
    ) -> Result<PgStore, migrate::MigrateError> {
        let objects = blobs.as_ref().map(objects::Objects::new).transpose()?;
        let options = connect_options(url, hostaddr)?;
        let pool = open_pool(&options).await?;
        migrate::migrate(&pool).await?;
        let listener = notify::Listener::start(&options).await?;
        let (stop, stopped) = oneshot::channel();
        let store = PgStore::assemble(pool, &options, Some(stop), objects);
        listener.spawn(Arc::downgrade(&store.inner), stopped);
        notify::spawn_catch_up(Arc::downgrade(&store.inner));
        Ok(store)
    }

    /// Connect without touching the schema and without a listener (`mailroom store check`
    /// reports the schema instead; its sessions would hear of no change).
    pub async fn connect_only(url: &str, hostaddr: Option<IpAddr>) -> Result<PgStore, StoreError> {
        let options = connect_options(url, hostaddr)?;
        let pool = open_pool(&options).await?;
        Ok(PgStore::assemble(pool, &options, None, None))
    }

    fn assemble(
        pool: PgPool,
        options: &PgConnectOptions,
        stop: Option<oneshot::Sender<()>>,
        objects: Option<objects::Objects>,
    ) -> PgStore {
        let describe =
            format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or(""));
        PgStore {
            inner: Arc::new(Inner {
                pool,
                statements: lifo::Lifo::new(options.clone(), STATEMENT_POOL_SIZE),
                describe,
                open: Mutex::new(HashMap::new()),
                accounts: Mutex::new(HashMap::new()),
                token: rand::random(),
                kv_changed: tokio::sync::Notify::new(),
                _stop_listener: stop,
                objects,
                outbox: notify::Outbox::new(),
            }),
        }
    }

    /// A store whose pool connects on first use, on a migrated database (test fixtures
    /// that must build a store outside async code).
    #[cfg(test)]
    pub(crate) fn connect_lazy(url: &str) -> Result<PgStore, StoreError> {
        let options = connect_options(url, None)?;
        let pool = pool_options().connect_lazy_with(options.clone());
        Ok(PgStore::assemble(pool, &options, None, None))
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The pool for single statements on the IMAP path (`lifo.rs`); never a transaction.
    pub(crate) fn statements(&self) -> &lifo::Lifo {
        &self.inner.statements
    }

    /// The bucket new bodies go to, if any.
    pub(crate) fn objects(&self) -> Option<&objects::Objects> {
        self.inner.objects.as_ref()
    }

    /// A reader over `prefix` and the stored body `body`.
    pub(crate) async fn open_body(&self, prefix: Bytes, body: &blobs::BodyRef) -> Result<MessageReader, StoreError> {
        blobs::open(self.pool(), self.objects(), prefix, body).await
    }

    /// After COMMIT: delete the objects of the bodies the transaction deleted.
    pub(crate) async fn delete_objects(&self, hashes: Vec<Vec<u8>>) {
        if !hashes.is_empty() {
            blobs::delete_objects(self.pool(), self.objects(), hashes).await;
        }
    }

    /// The account's row id, creating the account (INBOX, the default folders, their
    /// subscriptions) on first use, as the Maildir backend creates its directories.
    pub(crate) async fn account_id(&self, owner: &MailboxOwner) -> Result<i64, StoreError> {
        owner.check()?;
        if let Some(id) = self.inner.accounts.lock().unwrap_or_else(|p| p.into_inner()).get(owner) {
            return Ok(*id);
        }
        let id = folders::create_account(self.pool(), owner).await?;
        self.inner.accounts.lock().unwrap_or_else(|p| p.into_inner()).insert(owner.clone(), id);
        Ok(id)
    }

    /// One round trip to the database (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.pool()).await.map(drop).map_err(db_error)
    }

    /// Learn the ids of every account in the database (start-up).
    pub(crate) async fn load_account_ids(&self) -> Result<(), StoreError> {
        let rows =
            sqlx::query("SELECT id, domain, local FROM accounts").fetch_all(self.pool()).await.map_err(db_error)?;
        let mut known = self.inner.accounts.lock().unwrap_or_else(|p| p.into_inner());
        for r in rows {
            known.insert(MailboxOwner::new(r.get::<String, _>(2), r.get::<String, _>(1)), r.get(0));
        }
        Ok(())
    }

    /// Open `folder` of `owner`: one shared state per folder on this replica.
    pub(crate) async fn open_path(&self, owner: &MailboxOwner, folder: &FolderPath) -> Result<PgMailbox, StoreError> {
        let account = self.account_id(owner).await?;
        let name = folder.api_name();
        let row =
            sqlx::query("SELECT id, uid_validity, highest_modseq FROM mailboxes WHERE account_id = $1 AND name = $2")
                .bind(account)
                .bind(&name)
                .fetch_optional(self.statements())
                .await
                .map_err(db_error)?
                .ok_or_else(|| StoreError::NoSuchFolder(name.clone()))?;
        let id: i64 = row.get(0);
        let uid_validity = row.get::<i64, _>(1) as u32;
        let modseq = row.get::<i64, _>(2) as u64;
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = open.get(&id).and_then(Weak::upgrade) {
            return Ok(PgMailbox::new(self.clone(), shared));
        }
        open.retain(|_, w| w.strong_count() > 0);
        let shared = Arc::new(mailbox::Shared::new(id, uid_validity, owner.clone(), name, modseq));
        open.insert(id, Arc::downgrade(&shared));
        Ok(PgMailbox::new(self.clone(), shared))
    }

    /// A write committed `change`: tell this replica's sessions of the folder now, and the
    /// other replicas through the outbox.
    pub(crate) fn publish(&self, mailbox: i64, modseq: i64, event: MailboxEvent) {
        let change = notify::Change { mailbox, modseq: modseq as u64, event };
        self.tell_sessions(change.clone());
        self.inner.outbox.push(&self.inner.pool, self.inner.token, change);
    }

    /// Tell the sessions of this replica that have the folder open what changed (the
    /// writers after COMMIT, the listener for other replicas' changes).
    pub(crate) fn tell_sessions(&self, change: notify::Change) {
        let shared =
            self.inner.open.lock().unwrap_or_else(|p| p.into_inner()).get(&change.mailbox).and_then(Weak::upgrade);
        if let Some(shared) = shared {
            shared.told_modseq.fetch_max(change.modseq, std::sync::atomic::Ordering::AcqRel);
            let _ = shared.events.send(change.event);
        }
    }

    /// Tell the open folders whose modseq in the database is past what their sessions were
    /// told about to resync (the catch-up poll, `notify.rs`).
    pub(crate) async fn catch_up(&self) -> Result<(), StoreError> {
        let open: Vec<Arc<mailbox::Shared>> =
            self.inner.open.lock().unwrap_or_else(|p| p.into_inner()).values().filter_map(Weak::upgrade).collect();
        if open.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = open.iter().map(|s| s.id).collect();
        let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, highest_modseq FROM mailboxes WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        for (id, modseq) in rows {
            let Some(shared) = open.iter().find(|s| s.id == id) else { continue };
            let told = shared.told_modseq.fetch_max(modseq as u64, std::sync::atomic::Ordering::AcqRel);
            if (modseq as u64) > told {
                tracing::debug!(mailbox = id, told, modseq, "change notifications: a folder caught up by polling");
                let _ = shared.events.send(MailboxEvent::NewMessages);
            }
        }
        Ok(())
    }

    /// Send `event` to every folder open on this replica.
    pub(crate) fn notify_all(&self, event: MailboxEvent) {
        let open: Vec<Arc<mailbox::Shared>> =
            self.inner.open.lock().unwrap_or_else(|p| p.into_inner()).values().filter_map(Weak::upgrade).collect();
        for shared in open {
            let _ = shared.events.send(event.clone());
        }
    }

    /// A subscription to `mailbox`'s events (used by the handle).
    pub(crate) fn events(shared: &mailbox::Shared) -> broadcast::Receiver<MailboxEvent> {
        shared.events.subscribe()
    }

    /// Schema version recorded in the database and the counts `mailroom store check`
    /// prints.
    pub async fn check(&self) -> Result<CheckReport, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(db_error)?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        let version = if exists { migrate::recorded_version(&mut conn).await? } else { 0 };
        let mut counts = Vec::new();
        if version > 0 {
            for (table, sql) in [
                ("accounts", "SELECT count(*) FROM accounts"),
                ("mailboxes", "SELECT count(*) FROM mailboxes"),
                ("messages", "SELECT count(*) FROM messages WHERE expunged_modseq IS NULL"),
                ("blobs", "SELECT count(*) FROM blobs"),
            ] {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await.map_err(db_error)?;
                counts.push((table, n));
            }
        }
        if version >= 3 {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM queue_items").fetch_one(&mut *conn).await.map_err(db_error)?;
            counts.push(("queue_items", n));
        }
        if version >= 5 {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sieve_scripts")
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)?;
            counts.push(("sieve_scripts", n));
        }
        let server: String = sqlx::query_scalar("SELECT current_setting('server_version')")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok(CheckReport { server, version, known: migrate::current_version(), counts })
    }
}

/// The connection options of `url`, every connection of the store named `mailroom`.
fn connect_options(url: &str, hostaddr: Option<IpAddr>) -> Result<PgConnectOptions, StoreError> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Unavailable(format!("database URL: {e}")))?
        .application_name("mailroom");
    if let Some(ip) = hostaddr {
        options = options.hostaddr(ip);
    }
    Ok(options)
}

async fn open_pool(options: &PgConnectOptions) -> Result<PgPool, StoreError> {
    pool_options().connect_with(options.clone()).await.map_err(db_error)
}

/// The store's pool: [`POOL_SIZE`] connections, [`ACQUIRE_TIMEOUT`], and on each new
/// connection `plan_cache_mode = force_generic_plan`. sqlx pings a connection before each
/// use: here that is one round trip more for a transaction of several, and it keeps a
/// write from failing on a connection that died with a database restart (a write is not
/// run again: its COMMIT may have landed). The single statements of IMAP commands, where
/// that round trip weighed, run on `lifo.rs`'s pool instead.
///
/// Why generic plans: by default PostgreSQL plans a prepared statement anew for its
/// parameters on each of its first executions on a connection, and keeps doing so while
/// that custom plan looks cheaper. Our statements are index lookups by folder and UID or
/// modseq, the same plan for any parameters, and planning them cost 0.2–0.5 ms each, more
/// than running them: measured here, every IMAP command 25–35% faster with generic plans.
/// (The statements that read a whole folder are planned for their folder:
/// `mailbox.rs`.) Set by a statement, not a startup parameter, so that connection poolers
/// that refuse unknown startup parameters (PgBouncer) still connect.
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _| Box::pin(prepare_connection(conn)))
}

/// What every new connection runs first: generic plans (see [`pool_options`]).
async fn prepare_connection(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, "SET plan_cache_mode = force_generic_plan").await.map(drop)
}

/// What `mailroom store check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// PostgreSQL's `server_version`.
    pub server: String,
    /// Schema version recorded in the database (0: never migrated).
    pub version: i32,
    /// Schema version this binary writes.
    pub known: i32,
    /// Rows per table.
    pub counts: Vec<(&'static str, i64)>,
}
