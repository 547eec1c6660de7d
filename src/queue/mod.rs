//! The outbound queue: a durable, inspectable spool of messages for remote recipients,
//! the workers that deliver them, the retry schedule, and the bounces (DSNs).
//!
//! It owns `<data>/queue/` and `<data>/state/control.sock` and nothing else. How a
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
//! Files: `envelope.rs` (the item format), `spool.rs` (crash-safe files), `backoff.rs`
//! (retry delays), `dsn.rs` (RFC 3464 reports), `worker.rs` (scheduling and delivery
//! attempts), `control.rs` (the operator's socket).

mod backoff;
mod control;
mod dsn;
mod envelope;
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
pub use control::{CONTROL_SOCKET, control_request, spawn_control_server};
pub use dsn::{DsnKind, DsnRecipient, build as build_dsn};
pub use envelope::{Envelope, EnvelopeRecipient, ItemState, QueueId, RecipientStatus, format_time};
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

/// Moves messages to other hosts. Returns one outcome per batch recipient, in order.
pub trait Transport: Send + Sync {
    fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, Vec<RecipientOutcome>>;
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

/// A sink that stores nothing and sends every DSN back through the queue (tests, and a
/// server without local mailboxes).
pub struct RemoteBounces;

impl BounceSink for RemoteBounces {
    fn bounce<'a>(&'a self, _to: &'a Address, _dsn: &'a [u8]) -> BoxFuture<'a, Result<BounceDisposition, String>> {
        Box::pin(async { Ok(BounceDisposition::Remote) })
    }
}

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

/// `mailroom queue show ID`: the whole envelope plus what only memory knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueItemDetail {
    pub envelope: Envelope,
    pub size: u64,
    pub in_flight: bool,
}

/// An item as the queue holds it in memory.
#[derive(Debug)]
struct Slot {
    envelope: Envelope,
    size: u64,
    in_flight: bool,
    /// `delete` arrived during an attempt: the attempt removes the files when done.
    deleted: bool,
}

struct Inner {
    spool: Spool,
    settings: QueueSettings,
    transport: Arc<dyn Transport>,
    bounces: Arc<dyn BounceSink>,
    items: Mutex<HashMap<QueueId, Slot>>,
    /// Serialises envelope rewrites, each of which writes the newest in-memory state.
    write_lock: tokio::sync::Mutex<()>,
    wake: Notify,
    global: Arc<Semaphore>,
    domains: Mutex<HashMap<String, Arc<Semaphore>>>,
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
        let spool = Spool::open(dir).map_err(io_err(dir))?;
        let recovered = spool.recover().map_err(io_err(dir))?;
        for (path, why) in &recovered.broken {
            tracing::error!(path = %path.display(), reason = %why, "queue: unusable envelope set aside as .broken");
        }
        let now = SystemTime::now();
        let mut items = HashMap::new();
        for mut env in recovered.envelopes {
            // In flight at the crash: it is due again now (Hold stays held).
            if env.state == ItemState::Active {
                env.next_attempt = env.next_attempt.min(now);
            }
            let size = std::fs::metadata(spool.message_path(&env.id)).map(|m| m.len()).unwrap_or(0);
            tracing::info!(queue_id = %env.id, msgid = %env.message_id, state = env.state.name(), "queue: recovered item");
            items.insert(env.id.clone(), Slot { envelope: env, size, in_flight: false, deleted: false });
        }
        let inner = Inner {
            spool,
            global: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            settings,
            transport,
            bounces,
            items: Mutex::new(items),
            write_lock: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            domains: Mutex::new(HashMap::new()),
        };
        let queue = Queue { inner: Arc::new(inner) };
        queue.inner.refresh_gauges();
        Ok(queue)
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
        if recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        let mut unique: Vec<Address> = Vec::with_capacity(recipients.len());
        for r in recipients {
            if !unique.contains(r) {
                unique.push(r.clone());
            }
        }
        let spool = self.inner.spool.clone();
        let (sender_owned, msgid_owned) = (sender.cloned(), msgid.to_string());
        let size = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let recipients_owned = unique.clone();
        let envelope = tokio::task::spawn_blocking(move || {
            // An id collision (same microsecond, same 32 random bits) is refused by the
            // spool; take another id.
            let mut tries = 0;
            loop {
                let env = Envelope::new(QueueId::generate(), sender_owned.clone(), &recipients_owned, &msgid_owned);
                let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_ref()).collect();
                match spool.create(&env, &slices) {
                    Ok(()) => return Ok(env),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 5 => tries += 1,
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .map_err(|e| QueueError::Task(e.to_string()))?
        .map_err(io_err(self.inner.spool.dir()))?;
        let id = envelope.id.clone();
        tracing::info!(queue_id = %id, msgid, sender = %display_sender(sender), recipients = unique.len(), size, "queue: message spooled");
        self.lock_items().insert(id.clone(), Slot { envelope, size, in_flight: false, deleted: false });
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

    pub async fn list(&self) -> Vec<QueueItemSummary> {
        let items = self.lock_items();
        let mut out: Vec<QueueItemSummary> = items
            .values()
            .map(|s| QueueItemSummary {
                id: s.envelope.id.clone(),
                state: s.envelope.state,
                sender: s.envelope.sender.clone(),
                recipients: s.envelope.recipients.len(),
                pending: s.envelope.pending().count(),
                attempts: s.envelope.attempts,
                size: s.size,
                created: s.envelope.created,
                next_attempt: s.envelope.next_attempt,
                in_flight: s.in_flight,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub async fn show(&self, id: &QueueId) -> Option<QueueItemDetail> {
        let items = self.lock_items();
        items.get(id).map(|s| QueueItemDetail { envelope: s.envelope.clone(), size: s.size, in_flight: s.in_flight })
    }

    /// Make one item (or every item not on hold) due now. Returns how many.
    pub async fn retry(&self, id: Option<&QueueId>) -> Result<usize, QueueError> {
        let now = SystemTime::now();
        let ids: Vec<QueueId> = {
            let mut items = self.lock_items();
            if let Some(id) = id
                && !items.contains_key(id)
            {
                return Err(QueueError::NotFound(id.to_string()));
            }
            items
                .values_mut()
                .filter(|s| id.is_none_or(|id| &s.envelope.id == id) && s.envelope.state != ItemState::Hold)
                .map(|s| {
                    s.envelope.next_attempt = now;
                    s.envelope.id.clone()
                })
                .collect()
        };
        for id in &ids {
            self.inner.persist(id).await?;
        }
        self.inner.wake.notify_one();
        Ok(ids.len())
    }

    /// Keep an item back until [`release`](Self::release).
    pub async fn hold(&self, id: &QueueId) -> Result<(), QueueError> {
        self.set_state(id, |env| env.state = ItemState::Hold).await
    }

    /// Release a held item and make it due now.
    pub async fn release(&self, id: &QueueId) -> Result<(), QueueError> {
        self.set_state(id, |env| {
            if env.state == ItemState::Hold {
                env.state = ItemState::Active;
                env.next_attempt = SystemTime::now();
            }
        })
        .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Remove an item without bouncing it (the operator's decision).
    pub async fn delete(&self, id: &QueueId) -> Result<(), QueueError> {
        let (remove_now, msgid) = {
            let mut items = self.lock_items();
            let slot = items.get_mut(id).ok_or_else(|| QueueError::NotFound(id.to_string()))?;
            let msgid = slot.envelope.message_id.clone();
            let remove_now = if slot.in_flight {
                slot.deleted = true;
                false
            } else {
                items.remove(id);
                true
            };
            (remove_now, msgid)
        };
        if remove_now {
            self.inner.remove_files(id).await?;
        }
        tracing::info!(queue_id = %id, msgid, "queue: item deleted by the operator");
        self.inner.refresh_gauges();
        Ok(())
    }

    async fn set_state(&self, id: &QueueId, change: impl FnOnce(&mut Envelope)) -> Result<(), QueueError> {
        {
            let mut items = self.lock_items();
            let slot = items.get_mut(id).ok_or_else(|| QueueError::NotFound(id.to_string()))?;
            change(&mut slot.envelope);
        }
        self.inner.persist(id).await?;
        self.inner.refresh_gauges();
        Ok(())
    }

    fn lock_items(&self) -> std::sync::MutexGuard<'_, HashMap<QueueId, Slot>> {
        self.inner.lock_items()
    }
}

impl Inner {
    fn lock_items(&self) -> std::sync::MutexGuard<'_, HashMap<QueueId, Slot>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write the newest in-memory envelope of `id` to disk (no-op if it is gone).
    async fn persist(&self, id: &QueueId) -> Result<(), QueueError> {
        let _guard = self.write_lock.lock().await;
        let Some(env) = self.lock_items().get(id).map(|s| s.envelope.clone()) else { return Ok(()) };
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.update(&env))
            .await
            .map_err(|e| QueueError::Task(e.to_string()))?
            .map_err(io_err(self.spool.dir()))
    }

    async fn remove_files(&self, id: &QueueId) -> Result<(), QueueError> {
        let _guard = self.write_lock.lock().await;
        let spool = self.spool.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || spool.remove(&id))
            .await
            .map_err(|e| QueueError::Task(e.to_string()))?
            .map_err(io_err(self.spool.dir()))
    }

    /// Recompute the queue gauges (items by state, oldest age).
    fn refresh_gauges(&self) {
        let m = crate::metrics::metrics();
        let now = SystemTime::now();
        let (mut active, mut deferred, mut hold, mut oldest) = (0i64, 0i64, 0i64, Duration::ZERO);
        for slot in self.lock_items().values() {
            match slot.envelope.state {
                ItemState::Active => active += 1,
                ItemState::Deferred => deferred += 1,
                ItemState::Hold => hold += 1,
            }
            oldest = oldest.max(slot.envelope.age(now));
        }
        m.queue_items.with_label_values(&["active"]).set(active);
        m.queue_items.with_label_values(&["deferred"]).set(deferred);
        m.queue_items.with_label_values(&["hold"]).set(hold);
        m.queue_oldest_item_age_seconds.set(oldest.as_secs_f64());
    }
}

fn display_sender(sender: Option<&Address>) -> String {
    sender.map(|a| a.to_string()).unwrap_or_else(|| "<>".to_string())
}

#[cfg(test)]
mod tests;
