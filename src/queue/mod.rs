//! The outbound queue: a durable, inspectable spool of messages for remote recipients,
//! the workers that deliver them, the retry schedule, and the bounces (DSNs).
//!
//! It owns `<data>/queue/` (or, shared by replicas, the `queue_items` table: see
//! [`Queue::open_pg`]) and `<data>/state/control.sock` and nothing else. How a
//! message travels is not its business: it hands batches (one message, the recipients of
//! one domain) to a [`Transport`] — the SMTP client in `smtp::client` in production, a
//! fake in tests — and reads back one [`RecipientOutcome`] per recipient. Where a bounce
//! goes is not its business either: a [`BounceSink`] (wired by the app to the local store)
//! takes it, or says it is remote and the queue spools it with the null sender.
//!
//! Promises: [`Queue::enqueue`] returns only when message and envelope are on disk
//! (file and directory fsynced), so the SMTP session may say 250; every item found at
//! [`Queue::open`] is scheduled again (an item that was in flight at a crash is retried:
//! a duplicate is possible, a loss is not); the null sender is never bounced.
//!
//! Delivery is at least once on both backends: a crash (or a replica's death) after the
//! remote's 250 but before the result is written back makes the remote receive the
//! message twice, with the same Message-ID.
//!
//! Files: `backend.rs` (the boundary below `Queue`: where items live, how the scheduler
//! claims them), `files.rs` (one process: spool plus in-memory map), `pg.rs` (replicas
//! sharing PostgreSQL: leases fenced by a token), `envelope.rs` (the item format),
//! `spool.rs` (crash-safe files), `backoff.rs`
//! (retry delays), `dsn.rs` (RFC 3464 reports), `worker.rs` (scheduling and delivery
//! attempts), `control.rs` (the operator's socket).

mod backend;
mod backoff;
mod control;
mod dsn;
mod envelope;
mod files;
mod pg;
mod spool;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{Notify, Semaphore};

use crate::accounts::Address;
use crate::config::QueueConfig;
use crate::smtp::status::Status;

pub use backoff::{base_delay, next_delay};
pub use control::{
    CONTROL_SOCKET, ControlCommands, ImportCommand, ReportsCommand, StatusCommand, control_connect, control_request,
    execute as execute_control_command, spawn_control_server,
};
pub use dsn::{DsnKind, DsnRecipient, build as build_dsn};
pub use envelope::{Envelope, EnvelopeRecipient, ItemOptions, ItemState, QueueId, RecipientStatus, format_time};
pub use pg::PgQueueOptions;
pub use spool::Spool;

/// A boxed future, so the traits below need no `async-trait`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue spool {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("a message needs at least one recipient")]
    NoRecipients,
    #[error("no queue item {0}")]
    NotFound(String),
    #[error("queue control socket {path}: {source} (is the server running?)")]
    Control { path: String, source: io::Error },
    #[error("{0}")]
    Refused(String),
    #[error("queue task failed: {0}")]
    Task(String),
    /// The shared queue's database could not be reached or refused a statement
    /// (temporary: an SMTP session answers 4xx).
    #[error("queue database: {0}")]
    Database(String),
}

impl QueueError {
    /// The spool could not be written because the disk is full (SMTP `452 4.3.1`).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, QueueError::Io { source, .. } if crate::disk::is_full(source))
    }
}

/// Tunables, from the config or set by tests.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// This server's name: DSN `Reporting-MTA` and `From: MAILER-DAEMON@…`.
    pub hostname: String,
    /// How long a message is retried before it bounces.
    pub lifetime: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Age after which the sender gets one delay warning (`None`: never).
    pub delay_warning: Option<Duration>,
    /// Deliveries in flight at once, over all destinations.
    pub max_concurrency: usize,
    /// Deliveries in flight at once to one recipient domain (be a polite client).
    pub per_domain_concurrency: usize,
}

impl QueueSettings {
    /// The configured retry schedule; `hostname` names this server in bounces.
    pub fn new(hostname: &str, queue: &QueueConfig) -> QueueSettings {
        QueueSettings {
            hostname: hostname.to_string(),
            lifetime: queue.lifetime,
            retry_min: queue.retry_min,
            retry_max: queue.retry_max,
            delay_warning: Some(Duration::from_secs(4 * 3600)),
            max_concurrency: 32,
            per_domain_concurrency: 4,
        }
    }
}

/// What one delivery attempt is asked to do: one message to the recipients of one
/// domain (they share MX hosts, so one connection serves them all).
#[derive(Clone, Debug)]
pub struct DeliveryBatch {
    pub queue_id: QueueId,
    /// `None` is the null sender.
    pub sender: Option<Address>,
    /// The recipients' domain (every recipient here is in it).
    pub domain: String,
    pub recipients: Vec<Address>,
    pub message: Arc<Vec<u8>>,
    /// RFC 8689 REQUIRETLS (the item's [`Envelope::require_tls`]).
    pub require_tls: bool,
}

/// The fate of one recipient after an attempt, with the remote reply (`550 5.1.1 …`) or
/// a local diagnostic ([`Status::local`]) that says why; DSNs take their `Status:` and
/// `Diagnostic-Code:` fields from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientOutcome {
    Delivered(Status),
    /// Try again later (4xx, connection trouble, DNS timeout).
    Temporary(Status),
    /// Bounce now (5xx, null MX, domain does not exist).
    Permanent(Status),
}

impl RecipientOutcome {
    pub fn status(&self) -> &Status {
        match self {
            RecipientOutcome::Delivered(s) | RecipientOutcome::Temporary(s) | RecipientOutcome::Permanent(s) => s,
        }
    }
}

/// What a transport did with one batch: one outcome per batch recipient, in order, and
/// the host that answered them, when one did (the mail log's `relay` and `tls`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub outcomes: Vec<RecipientOutcome>,
    pub relay: Option<Relay>,
}

/// The remote host of a delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// `name[ip]:port`, as Postfix logs its `relay=`.
    pub host: String,
    /// "none", "unverified" or "verified".
    pub tls: &'static str,
}

impl From<Vec<RecipientOutcome>> for BatchOutcome {
    /// Outcomes no host gave (a fake transport, or no host reached).
    fn from(outcomes: Vec<RecipientOutcome>) -> BatchOutcome {
        BatchOutcome { outcomes, relay: None }
    }
}

/// Moves messages to other hosts.
pub trait Transport: Send + Sync {
    fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, BatchOutcome>;
}

/// What a [`BounceSink`] did with a DSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceDisposition {
    /// Stored for a local mailbox.
    Delivered,
    /// The address is not ours: the queue spools the DSN (null sender) for delivery.
    Remote,
}

/// Takes DSNs for the senders of failed messages. The app wires it to the local store.
pub trait BounceSink: Send + Sync {
    fn bounce<'a>(&'a self, to: &'a Address, dsn: &'a [u8]) -> BoxFuture<'a, Result<BounceDisposition, String>>;
}

/// `mailroom queue …` on the queue in PostgreSQL: the commands the control socket serves,
/// run against the shared table from any process that reaches the database (no workers
/// start, so nothing is sent from here).
pub async fn pg_control_request(
    store: &crate::store::PgStore,
    settings: QueueSettings,
    command: &str,
) -> Result<String, QueueError> {
    let queue =
        Queue::open_pg(store, PgQueueOptions::default(), settings, Arc::new(NoTransport), Arc::new(RemoteBounces))
            .await?;
    Ok(execute_control_command(&queue, command).await)
}

/// The transport of a queue that runs no workers ([`pg_control_request`]).
struct NoTransport;

impl Transport for NoTransport {
    fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, BatchOutcome> {
        let n = batch.recipients.len();
        Box::pin(async move {
            vec![RecipientOutcome::Temporary(Status::local((4, 3, 0), "no delivery from a control command")); n].into()
        })
    }
}

/// A sink that stores nothing and sends every DSN back through the queue (tests, and a
/// server without local mailboxes).
pub struct RemoteBounces;

impl BounceSink for RemoteBounces {
    fn bounce<'a>(&'a self, _to: &'a Address, _dsn: &'a [u8]) -> BoxFuture<'a, Result<BounceDisposition, String>> {
        Box::pin(async { Ok(BounceDisposition::Remote) })
    }
}

/// What [`Queue::visit_items`] calls for each item.
pub type ItemVisitor<'a> = dyn FnMut(&QueueItemSummary, &Envelope) + Send + 'a;

/// One line of `mailroom queue list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueItemSummary {
    pub id: QueueId,
    pub state: ItemState,
    pub sender: Option<Address>,
    pub recipients: usize,
    pub pending: usize,
    pub attempts: u32,
    pub size: u64,
    pub created: SystemTime,
    pub next_attempt: SystemTime,
    pub in_flight: bool,
}

impl QueueItemSummary {
    fn of(env: &Envelope, size: u64, in_flight: bool) -> QueueItemSummary {
        QueueItemSummary {
            id: env.id.clone(),
            state: env.state,
            sender: env.sender.clone(),
            recipients: env.recipients.len(),
            pending: env.pending().count(),
            attempts: env.attempts,
            size,
            created: env.created,
            next_attempt: env.next_attempt,
            in_flight,
        }
    }
}

/// `mailroom queue show ID`: the whole envelope plus what only memory knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueItemDetail {
    pub envelope: Envelope,
    pub size: u64,
    pub in_flight: bool,
}

struct Inner {
    backend: backend::Backend,
    settings: QueueSettings,
    transport: Arc<dyn Transport>,
    bounces: Arc<dyn BounceSink>,
    wake: Notify,
    global: Arc<Semaphore>,
    domains: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The status page's ring: each recipient's outcome is recorded there once set.
    recent: std::sync::OnceLock<Arc<crate::status::RecentEvents>>,
}

/// The outbound queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io { path: path.display().to_string(), source }
}

impl Queue {
    /// Open (or create) the spool in `dir` and load every item found there; call
    /// [`spawn_workers`](Self::spawn_workers) to start delivering.
    pub fn open(
        dir: &Path,
        settings: QueueSettings,
        transport: Arc<dyn Transport>,
        bounces: Arc<dyn BounceSink>,
    ) -> Result<Queue, QueueError> {
        let files = files::FilesBackend::open(dir)?;
        Ok(Queue::with_backend(backend::Backend::Files(files), settings, transport, bounces))
    }

    /// The queue in the PostgreSQL database of `store`, shared by every replica that
    /// opens it there (the store must be migrated to schema 3: [`PgStore::connect`] does
    /// that). `options` names this replica (random per process by default) and sets the
    /// lease and the polling interval; call [`spawn_workers`](Self::spawn_workers) to
    /// start delivering.
    ///
    /// Each item is tried by one replica at a time: a replica claims due items with a
    /// lease, renews it while the attempt runs, and writes the result back only if it
    /// still holds that lease (its token), so a replica that stalled past its lease
    /// cannot overwrite what another replica did since. A replica that dies leaves its
    /// items leased until the lease runs out; then any replica retries them.
    ///
    /// Delivery is at least once, as with the files backend after a crash: a replica
    /// that dies after the remote host's 250 but before the write-back leaves the item
    /// to be retried after the lease, and the remote receives the message twice, with
    /// the same Message-ID. The concurrency limits of [`QueueSettings`] are per replica.
    ///
    /// [`PgStore::connect`]: crate::store::PgStore::connect
    pub async fn open_pg(
        store: &crate::store::PgStore,
        options: PgQueueOptions,
        settings: QueueSettings,
        transport: Arc<dyn Transport>,
        bounces: Arc<dyn BounceSink>,
    ) -> Result<Queue, QueueError> {
        let pg = pg::PgBackend::open(store.pool().clone(), options).await?;
        Ok(Queue::with_backend(backend::Backend::Pg(pg), settings, transport, bounces))
    }

    fn with_backend(
        backend: backend::Backend,
        settings: QueueSettings,
        transport: Arc<dyn Transport>,
        bounces: Arc<dyn BounceSink>,
    ) -> Queue {
        let inner = Inner {
            backend,
            global: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            settings,
            transport,
            bounces,
            wake: Notify::new(),
            domains: Mutex::new(HashMap::new()),
            recent: std::sync::OnceLock::new(),
        };
        let queue = Queue { inner: Arc::new(inner) };
        queue.inner.refresh_gauges();
        queue
    }

    /// Record every recipient's outcome of the delivery attempts from now on in `recent`
    /// (the status page's ring). Set once; later calls change nothing.
    pub fn record_outcomes_in(&self, recent: Arc<crate::status::RecentEvents>) {
        let _ = self.inner.recent.set(recent);
    }

    /// Spool a message durably (fsynced) and schedule it now. `sender` `None` is `<>`.
    pub async fn enqueue(
        &self,
        sender: Option<&Address>,
        recipients: &[Address],
        message: &[u8],
        msgid: &str,
    ) -> Result<QueueId, QueueError> {
        self.enqueue_parts(sender, recipients, vec![Bytes::copy_from_slice(message)], msgid).await
    }

    /// [`Queue::enqueue`] for a message made of `parts` in order (trace headers, then the
    /// content): they are written one after another, never joined in memory.
    pub async fn enqueue_parts(
        &self,
        sender: Option<&Address>,
        recipients: &[Address],
        parts: Vec<Bytes>,
        msgid: &str,
    ) -> Result<QueueId, QueueError> {
        self.enqueue_with(sender, recipients, parts, msgid, ItemOptions::default()).await
    }

    /// [`Queue::enqueue_parts`] with what the message asks of its delivery (REQUIRETLS).
    pub async fn enqueue_with(
        &self,
        sender: Option<&Address>,
        recipients: &[Address],
        parts: Vec<Bytes>,
        msgid: &str,
        options: ItemOptions,
    ) -> Result<QueueId, QueueError> {
        if recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        let mut unique: Vec<Address> = Vec::with_capacity(recipients.len());
        for r in recipients {
            if !unique.contains(r) {
                unique.push(r.clone());
            }
        }
        let size = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let count = unique.len();
        let envelope = self.inner.backend.enqueue(sender.cloned(), unique, parts, msgid.to_string(), options).await?;
        let id = envelope.id.clone();
        tracing::info!(queue_id = %id, msgid, sender = %display_sender(sender), recipients = count, size, "queue: message spooled");
        self.inner.refresh_gauges();
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// Start the scheduler; it runs until `shutdown` turns true, then lets attempts in
    /// flight finish (bounded by a grace period).
    pub fn spawn_workers(&self, shutdown: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let queue = self.clone();
        tokio::spawn(async move { worker::run(queue, shutdown).await })
    }

    /// Every item, sorted by id (empty, with the error logged, when the shared queue's
    /// database cannot be read: [`try_list`](Self::try_list) reports it).
    pub async fn list(&self) -> Vec<QueueItemSummary> {
        self.try_list().await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "queue: cannot list the queue");
            Vec::new()
        })
    }

    /// [`list`](Self::list) that says when the queue cannot be read.
    pub async fn try_list(&self) -> Result<Vec<QueueItemSummary>, QueueError> {
        self.inner.backend.list().await
    }

    /// Every item in id order, handed to `visit` with its envelope one at a time (what
    /// `queue list` prints under each item: the pending recipients). Never more than one
    /// item's recipients are held at once (the shared queue's rows are streamed).
    pub async fn visit_items(&self, visit: &mut ItemVisitor<'_>) -> Result<(), QueueError> {
        self.inner.backend.visit(visit).await
    }

    pub async fn show(&self, id: &QueueId) -> Option<QueueItemDetail> {
        self.try_show(id).await.unwrap_or_else(|e| {
            tracing::error!(queue_id = %id, error = %e, "queue: cannot read the item");
            None
        })
    }

    /// [`show`](Self::show) that says when the queue cannot be read.
    pub async fn try_show(&self, id: &QueueId) -> Result<Option<QueueItemDetail>, QueueError> {
        self.inner.backend.show(id).await
    }

    /// Make one item (or every item not on hold) due now. Returns how many.
    pub async fn retry(&self, id: Option<&QueueId>) -> Result<usize, QueueError> {
        let result = self.inner.backend.retry(id).await;
        // The items are due in memory even when their new time could not be written (a
        // full disk): wake the workers either way, and tell the operator what failed.
        self.inner.wake.notify_one();
        result
    }

    /// Keep an item back until [`release`](Self::release).
    pub async fn hold(&self, id: &QueueId) -> Result<(), QueueError> {
        self.inner.backend.hold(id).await?;
        self.inner.refresh_gauges();
        Ok(())
    }

    /// Release a held item and make it due now.
    pub async fn release(&self, id: &QueueId) -> Result<(), QueueError> {
        self.inner.backend.release(id).await?;
        self.inner.refresh_gauges();
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Remove an item without bouncing it (the operator's decision).
    pub async fn delete(&self, id: &QueueId) -> Result<(), QueueError> {
        let msgid = self.inner.backend.delete(id).await?;
        tracing::info!(queue_id = %id, msgid, "queue: item deleted by the operator");
        self.inner.refresh_gauges();
        Ok(())
    }
}

impl Inner {
    /// Recompute the queue gauges (items by state, oldest age) where no query is needed.
    fn refresh_gauges(&self) {
        self.backend.refresh_gauges();
    }
}

fn display_sender(sender: Option<&Address>) -> String {
    sender.map(|a| a.to_string()).unwrap_or_else(|| "<>".to_string())
}

#[cfg(test)]
mod tests;
