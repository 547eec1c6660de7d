//! The boundary below [`Queue`](super::Queue): where items live and who may try them.
//!
//! `Queue` keeps its API and the worker keeps its logic (scheduling, outcomes, bounces);
//! what differs between one process with a spool directory and several replicas sharing
//! one database is only this: how an item is stored, how the scheduler takes the due
//! ones (a flag in memory, or a lease in a row), how an attempt's result is written back
//! (into the map, or fenced by the lease token), and how the operator's commands reach
//! the items. An enum rather than a trait object: there are exactly two, and the
//! PostgreSQL one needs async methods a `dyn` trait could only offer boxed.

use std::sync::Weak;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::envelope::{Envelope, ItemOptions, ItemState, QueueId};
use super::files::FilesBackend;
use super::pg::{PgBackend, PgLease, TaskGuard};
use super::{Inner, ItemVisitor, QueueError, QueueItemDetail, QueueItemSummary};
use crate::accounts::Address;

/// The scheduler of the files backend looks at the queue at least this often even
/// without a wake-up (every change is made in this process and wakes it).
const FILES_MAX_SLEEP: Duration = Duration::from_secs(30);

pub(super) enum Backend {
    Files(FilesBackend),
    Pg(PgBackend),
}

/// An item taken for one attempt: its envelope as claimed, and what proves the claim.
pub(super) struct Claimed {
    pub envelope: Envelope,
    pub lease: Lease,
}

pub(super) enum Lease {
    /// The files backend: the in-memory "in flight" flag is the claim.
    Local,
    /// A PostgreSQL lease: write-backs are fenced by its token.
    Pg(PgLease),
}

/// What a write-back did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Finished {
    /// The item kept pending recipients and was updated.
    Updated,
    /// The item was done (or deleted meanwhile) and is gone.
    Removed,
    /// Nothing to write: the item was deleted (files), or the lease was lost to another
    /// replica or the row deleted (PostgreSQL), and the result was dropped.
    Gone,
}

/// Set the queue gauges.
pub(super) fn set_gauges(active: i64, deferred: i64, hold: i64, oldest: Duration) {
    let m = crate::metrics::metrics();
    m.queue_items.with_label_values(&["active"]).set(active);
    m.queue_items.with_label_values(&["deferred"]).set(deferred);
    m.queue_items.with_label_values(&["hold"]).set(hold);
    m.queue_oldest_item_age_seconds.set(oldest.as_secs_f64());
}

impl Backend {
    pub(super) async fn enqueue(
        &self,
        sender: Option<Address>,
        recipients: Vec<Address>,
        parts: Vec<Bytes>,
        msgid: String,
        options: ItemOptions,
    ) -> Result<Envelope, QueueError> {
        match self {
            Backend::Files(f) => f.enqueue(sender, recipients, parts, msgid, options).await,
            Backend::Pg(p) => p.enqueue(sender, recipients, parts, msgid, options).await,
        }
    }

    /// Take the due items (at most `room` of them from a shared database; the files
    /// backend takes all, as it always did) and say when the next one is due.
    pub(super) async fn claim_due(&self, now: SystemTime, room: usize) -> (Vec<Claimed>, Option<SystemTime>) {
        match self {
            Backend::Files(f) => f.claim_due(now),
            Backend::Pg(p) => p.claim_due(now, room).await,
        }
    }

    /// The longest the scheduler sleeps without a wake-up.
    pub(super) fn max_sleep(&self) -> Duration {
        match self {
            Backend::Files(_) => FILES_MAX_SLEEP,
            Backend::Pg(p) => p.poll(),
        }
    }

    /// Start what wakes the scheduler when another replica changes the queue (PostgreSQL
    /// LISTEN); the files backend needs nothing. Stops when the returned guard drops.
    pub(super) fn spawn_listener(&self, inner: Weak<Inner>) -> Option<TaskGuard> {
        match self {
            Backend::Files(_) => None,
            Backend::Pg(p) => Some(p.spawn_listener(move || {
                if let Some(inner) = inner.upgrade() {
                    inner.wake.notify_one();
                }
            })),
        }
    }

    /// Keep the claim alive while the attempt runs (PostgreSQL renews its lease).
    pub(super) fn keep_lease(&self, claimed: &Claimed) -> Option<TaskGuard> {
        match (self, &claimed.lease) {
            (Backend::Pg(p), Lease::Pg(lease)) => Some(p.keep_lease(&claimed.envelope.id, lease)),
            _ => None,
        }
    }

    /// The message bytes of a claimed item.
    pub(super) async fn read_message(&self, claimed: &Claimed) -> Result<Vec<u8>, QueueError> {
        match (self, &claimed.lease) {
            (Backend::Files(f), _) => f.read_message(&claimed.envelope.id).await,
            (Backend::Pg(p), Lease::Pg(lease)) => p.read_message(lease).await,
            (Backend::Pg(_), Lease::Local) => Err(QueueError::Task("a claim without a lease".into())),
        }
    }

    /// Write the attempt's result back: `env` updated, or the item removed when no
    /// recipient is pending.
    pub(super) async fn finish(&self, claimed: &Claimed, env: Envelope) -> Result<Finished, QueueError> {
        match (self, &claimed.lease) {
            (Backend::Files(f), _) => f.finish(env).await,
            (Backend::Pg(p), Lease::Pg(lease)) => p.finish(lease, env).await,
            (Backend::Pg(_), Lease::Local) => Ok(Finished::Gone),
        }
    }

    /// Every item, sorted by id.
    pub(super) async fn list(&self) -> Result<Vec<QueueItemSummary>, QueueError> {
        let mut out = match self {
            Backend::Files(f) => f.list(),
            Backend::Pg(p) => p.list().await?,
        };
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Every item in id order, one at a time (see `Queue::visit_items`).
    pub(super) async fn visit(&self, visit: &mut ItemVisitor<'_>) -> Result<(), QueueError> {
        match self {
            Backend::Files(f) => {
                f.visit(visit);
                Ok(())
            }
            Backend::Pg(p) => p.visit(visit).await,
        }
    }

    pub(super) async fn show(&self, id: &QueueId) -> Result<Option<QueueItemDetail>, QueueError> {
        match self {
            Backend::Files(f) => Ok(f.show(id)),
            Backend::Pg(p) => p.show(id).await,
        }
    }

    pub(super) async fn retry(&self, id: Option<&QueueId>) -> Result<usize, QueueError> {
        match self {
            Backend::Files(f) => f.retry(id).await,
            Backend::Pg(p) => p.retry(id).await,
        }
    }

    pub(super) async fn hold(&self, id: &QueueId) -> Result<(), QueueError> {
        match self {
            Backend::Files(f) => f.set_state(id, |env| env.state = ItemState::Hold).await,
            Backend::Pg(p) => p.hold(id).await,
        }
    }

    pub(super) async fn release(&self, id: &QueueId) -> Result<(), QueueError> {
        match self {
            Backend::Files(f) => {
                f.set_state(id, |env| {
                    if env.state == ItemState::Hold {
                        env.state = ItemState::Active;
                        env.next_attempt = SystemTime::now();
                    }
                })
                .await
            }
            Backend::Pg(p) => p.release(id).await,
        }
    }

    /// Remove an item without bouncing it; returns its Message-ID (for the log).
    pub(super) async fn delete(&self, id: &QueueId) -> Result<String, QueueError> {
        match self {
            Backend::Files(f) => f.delete(id).await,
            Backend::Pg(p) => p.delete(id).await,
        }
    }

    /// Gauges from what this process knows without a query (files: everything).
    pub(super) fn refresh_gauges(&self) {
        if let Backend::Files(f) = self {
            f.refresh_gauges();
        }
    }

    /// Gauges that need a query (PostgreSQL: the whole shared queue, at most once per
    /// poll interval); called by the scheduler.
    pub(super) async fn refresh_shared_gauges(&self) {
        if let Backend::Pg(p) = self {
            p.refresh_gauges().await;
        }
    }

    /// After shutdown abandoned attempts: hand their items back at once instead of after
    /// the lease (PostgreSQL); the files backend finds them at the next start.
    pub(super) async fn release_own_leases(&self) {
        if let Backend::Pg(p) = self {
            p.release_own_leases().await;
        }
    }
}
