//! Change notifications across replicas, over PostgreSQL's LISTEN/NOTIFY.
//!
//! Owns: the payload format, the outbox that sends this replica's notifications, the
//! listener task of each [`PgStore`](super::PgStore), and the catch-up poll.
//!
//! Why NOTIFY: a session on one replica must hear about a change another replica made
//! (IMAP IDLE, the refresh after each command), and the database is the only thing the
//! replicas share.
//!
//! Why after COMMIT, not inside the writing transaction: PostgreSQL holds one
//! database-wide lock from a notifying transaction's pre-commit to the end of its commit,
//! WAL flush included, so with NOTIFY inside every write of every replica would commit one
//! at a time (pgbench here, 50 clients updating 50 rows: about 690 commits/s with a NOTIFY
//! in each transaction, 3,400 with it sent afterwards). So a write commits (durably), tells
//! this replica's sessions directly, and hands its notification to the [`Outbox`], whose
//! task sends what has gathered in one statement with `synchronous_commit` off for that
//! statement alone: a notification does not survive a crash anyway, and without a flush
//! the lock is held for microseconds. A session woken by a notification still always finds
//! the change with `changes_since`, as it was committed first.
//!
//! What that costs: a replica that dies between a COMMIT and its outbox's next send takes
//! those notifications with it. Every payload carries the folder's new modseq, and each
//! open folder remembers the highest one its sessions were told about; a poll every
//! [`CATCH_UP`] compares that with the database and tells the folders that fell behind to
//! resync, so a lost notification delays an IDLE session by seconds, not until the next
//! change.
//!
//! Every replica hears every NOTIFY, its own included, so the payload starts with the
//! sending store's random token and the listener skips its own: one event per change, not
//! two (each would cost every IDLE session of the folder a query).
//!
//! Events are hints (a session only learns "something changed, call `changes_since`"), so
//! the payload stays tiny: `"<token> <mailbox> <modseq> N"` new messages, `"… F 1,2"` flags
//! changed, `"… X 4,5"` expunged, and `"… R"` "resync" when more than [`MAX_UIDS`] changed
//! at once (NOTIFY payloads are limited to 8000 bytes). `R` reaches sessions as
//! `NewMessages`, which makes them resync like any other event.
//!
//! Notifications sent while the listener has no connection are lost for good. When it gets
//! one again, every open folder of this replica is told to resync.
//!
//! The same connection listens for changes of the `kv` table (`kv.rs`): they wake the
//! shared-files mirror, which then polls at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::oneshot;

use super::{ACQUIRE_TIMEOUT, Inner, PgStore, db_error};
use crate::store::{MailboxEvent, StoreError};

/// The NOTIFY channel every replica of one database listens on.
pub(super) const CHANNEL: &str = "mailroom";

/// `application_name` of the listener's connection, so operators (and the tests) can tell
/// it from the pool's connections in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "mailroom-listen";

/// Most UIDs one payload lists (about 1.1 KB at worst); above that it asks for a resync.
pub(super) const MAX_UIDS: usize = 100;

/// Longest wait between two attempts to get the listener's connection back.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A change one write committed: the folder row, the modseq it committed at, and what
/// happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub mailbox: i64,
    pub modseq: u64,
    pub event: MailboxEvent,
}

/// The payload that tells other replicas that store `sender` committed `change`.
pub(super) fn payload(sender: u64, change: &Change) -> String {
    let Change { mailbox, modseq, event } = change;
    let (tag, uids) = match event {
        MailboxEvent::NewMessages => return format!("{sender:x} {mailbox} {modseq} N"),
        MailboxEvent::FlagsChanged { uids, .. } => ('F', uids),
        MailboxEvent::Expunged { uids } => ('X', uids),
    };
    if uids.is_empty() || uids.len() > MAX_UIDS {
        return format!("{sender:x} {mailbox} {modseq} R");
    }
    let list: Vec<String> = uids.iter().map(u32::to_string).collect();
    format!("{sender:x} {mailbox} {modseq} {tag} {}", list.join(","))
}

/// The sending store and the change of a payload; `None` when it is not one [`payload`]
/// writes (another program's NOTIFY on our channel).
pub(super) fn parse(payload: &str) -> Option<(u64, Change)> {
    let mut parts = payload.splitn(5, ' ');
    let sender = u64::from_str_radix(parts.next()?, 16).ok()?;
    let mailbox: i64 = parts.next()?.parse().ok()?;
    let modseq: u64 = parts.next()?.parse().ok()?;
    let event = match (parts.next()?, parts.next()) {
        ("N" | "R", None) => MailboxEvent::NewMessages,
        ("F", Some(list)) => MailboxEvent::FlagsChanged { uids: parse_uids(list)?, modseq, known: None },
        ("X", Some(list)) => MailboxEvent::Expunged { uids: parse_uids(list)? },
        _ => return None,
    };
    Some((sender, Change { mailbox, modseq, event }))
}

fn parse_uids(list: &str) -> Option<Vec<u32>> {
    list.split(',').map(|u| u.parse().ok()).collect()
}

/// Send `payloads` on `channel` now, in one statement of its own whose commit does not
/// wait for a WAL flush (see the module documentation for why). Also used by the queue.
pub(crate) async fn send_now(pool: &PgPool, channel: &str, payloads: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_notify($1, p) FROM (SELECT set_config('synchronous_commit', 'off', true)) AS s, \
         unnest($2::text[]) AS p",
    )
    .bind(channel)
    .bind(payloads)
    .execute(pool)
    .await
    .map(drop)
}

/// Most changes waiting in the outbox; beyond it (the database unreachable for long under
/// load) they are folded into one resync per folder.
const MAX_PENDING: usize = 10_000;
/// Most payloads one statement sends.
const BATCH: usize = 256;
/// Attempts at sending one batch before it is given up (the other replicas' listeners
/// lost their connection too if the database is down, and resync when they are back).
const SEND_ATTEMPTS: u32 = 5;

/// This replica's notifications on their way to the others, and the task that sends them.
pub(super) struct Outbox {
    pending: std::sync::Mutex<Vec<Change>>,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
    started: std::sync::Once,
}

impl Outbox {
    pub(super) fn new() -> Arc<Outbox> {
        Arc::new(Outbox {
            pending: std::sync::Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            started: std::sync::Once::new(),
        })
    }

    /// Queue `change` for the other replicas. The first call starts the sending task on
    /// the current runtime (a store may be built outside one).
    pub(super) fn push(self: &Arc<Outbox>, pool: &PgPool, token: u64, change: Change) {
        self.started.call_once(|| {
            tokio::spawn(send_loop(self.clone(), pool.clone(), token));
        });
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.push(change);
        if pending.len() > MAX_PENDING {
            let mut folders = std::collections::BTreeMap::new();
            for c in pending.drain(..) {
                let seen = folders.entry(c.mailbox).or_insert(0);
                *seen = c.modseq.max(*seen);
            }
            pending.extend(folders.into_iter().map(|(mailbox, modseq)| Change {
                mailbox,
                modseq,
                event: MailboxEvent::NewMessages,
            }));
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// The store is gone: send what is queued, then end the task.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn take_batch(&self) -> Vec<Change> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let n = pending.len().min(BATCH);
        pending.drain(..n).collect()
    }
}

/// Send whatever the writers queued, a batch per statement, until the store closes.
async fn send_loop(outbox: Arc<Outbox>, pool: PgPool, token: u64) {
    loop {
        let batch = outbox.take_batch();
        if batch.is_empty() {
            if outbox.closed.load(Ordering::Acquire) {
                return;
            }
            outbox.wake.notified().await;
            continue;
        }
        let payloads: Vec<String> = batch.iter().map(|c| payload(token, c)).collect();
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=SEND_ATTEMPTS {
            match send_now(&pool, CHANNEL, &payloads).await {
                Ok(()) => break,
                Err(e) if attempt == SEND_ATTEMPTS => {
                    tracing::warn!(error = %e, dropped = payloads.len(), "change notifications: sending failed");
                }
                Err(e) => {
                    tracing::debug!(error = %e, retry_in = ?wait, "change notifications: sending failed");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// How often each replica compares its open folders' modseqs with the database.
pub(super) const CATCH_UP: Duration = Duration::from_secs(10);

/// Every [`CATCH_UP`], tell the open folders whose modseq in the database is past what
/// their sessions were told about to resync (a notification lost with its sender). Ends
/// with the store.
pub(super) fn spawn_catch_up(store: Weak<Inner>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CATCH_UP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = store.upgrade() else { return };
            let store = PgStore { inner };
            if let Err(e) = store.catch_up().await {
                tracing::debug!(error = %e, "change notifications: catch-up poll failed");
            }
        }
    });
}

/// The listener's own connection, listening, before the store exists: once `connect`
/// returns, no change committed afterwards goes unheard.
pub(super) struct Listener {
    /// A pool of one connection of its own: it does not take a place in the store's pool,
    /// and PgListener reconnects through it.
    pool: PgPool,
    listener: PgListener,
}

/// A listening connection. PgListener's own reconnection is off: it retries I/O errors
/// other than "connection refused" at once, without a pause (a busy loop while the network
/// is down), and [`reconnect`] waits between attempts.
async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.listen_all([CHANNEL, super::kv::KV_CHANNEL]).await?;
    Ok(listener)
}

impl Listener {
    /// Connect with `options` (the store's, under another `application_name`) and LISTEN.
    pub(super) async fn start(options: &PgConnectOptions) -> Result<Listener, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone().application_name(LISTENER_APPLICATION_NAME));
        let listener = subscribe(&pool).await.map_err(db_error)?;
        Ok(Listener { pool, listener })
    }

    /// Run the listener task until `stop` fires or its sender is dropped (with the store's
    /// last clone). It holds only a weak reference, so it never keeps the store alive.
    pub(super) fn spawn(self, store: Weak<Inner>, stop: oneshot::Receiver<()>) {
        tokio::spawn(async move {
            let Listener { pool, listener } = self;
            listen(&pool, listener, &store, stop).await;
            // Close the connection now (the server ends its backend) rather than when the
            // runtime gets round to it.
            pool.close().await;
        });
    }
}

/// Hand each notification of another store to the open folder it names; resync
/// everything after a lost connection. Returns when stopped.
async fn listen(pool: &PgPool, mut listener: PgListener, store: &Weak<Inner>, mut stop: oneshot::Receiver<()>) {
    loop {
        let got = tokio::select! {
            _ = &mut stop => return,
            got = listener.try_recv() => got,
        };
        match got {
            Ok(Some(n)) => {
                let Some(inner) = store.upgrade() else { return };
                if n.channel() == super::kv::KV_CHANNEL {
                    inner.kv_changed.notify_one();
                    continue;
                }
                match parse(n.payload()) {
                    Some((sender, change)) if sender != inner.token => PgStore { inner }.tell_sessions(change),
                    Some(_) => {}
                    None => tracing::debug!(payload = n.payload(), "ignoring a notification of another format"),
                }
            }
            // `None`: the connection was lost (`Err`: lost, or refused a statement).
            // Notifications sent until a new one listens are gone: resync once it does.
            lost => {
                let reason = lost.err().map_or_else(|| "connection closed".to_string(), |e| e.to_string());
                tracing::warn!(error = %reason, "change notifications: connection lost; reconnecting");
                drop(listener);
                let Some(again) = reconnect(pool, &mut stop).await else { return };
                listener = again;
                tracing::info!("change notifications: listening again; open mailboxes resync");
                resync_all(store);
            }
        }
    }
}

/// A new listening connection, retried with backoff; `None` when stopped meanwhile.
async fn reconnect(pool: &PgPool, stop: &mut oneshot::Receiver<()>) -> Option<PgListener> {
    let mut wait = Duration::from_millis(100);
    loop {
        let attempt = tokio::select! {
            _ = &mut *stop => return None,
            attempt = subscribe(pool) => attempt,
        };
        match attempt {
            Ok(listener) => return Some(listener),
            Err(e) => tracing::debug!(error = %e, retry_in = ?wait, "change notifications: reconnect failed"),
        }
        tokio::select! {
            _ = &mut *stop => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Tell every folder open on this replica that it may have missed changes: each session
/// then asks the database what changed since its view.
fn resync_all(store: &Weak<Inner>) {
    if let Some(inner) = store.upgrade() {
        inner.kv_changed.notify_one();
        PgStore { inner }.notify_all(MailboxEvent::NewMessages);
    }
}
