//! Change notifications across replicas, over PostgreSQL's LISTEN/NOTIFY.
//!
//! Owns: the payload format, the `pg_notify` every write transaction sends, and the
//! listener task of each [`PgStore`](super::PgStore).
//!
//! Why NOTIFY: a session on one replica must hear about a change another replica made
//! (IMAP IDLE, the refresh after each command), and the database is the only thing the
//! replicas share. A write sends its notification *inside* its transaction, so it is
//! delivered only if the transaction commits, and only after it did: a session woken by
//! it always finds the change with `changes_since`.
//!
//! The writing replica tells its own sessions directly after COMMIT, as the Maildir backend
//! does: IMAP reports a session's own APPEND in that command's response only if the event
//! is already there when the command ends. Every replica hears every NOTIFY, its own
//! included, so the payload starts with the sending store's random token and the listener
//! skips its own: one event per change, not two (each would cost every IDLE session of the
//! folder a query).
//!
//! Events are hints (a session only learns "something changed, call `changes_since`"), so
//! the payload stays tiny: `"<token> <mailbox> N"` new messages, `"… F 1,2"` flags changed,
//! `"… X 4,5"` expunged, and `"… R"` "resync" when more than [`MAX_UIDS`] changed at once
//! (NOTIFY payloads are limited to 8000 bytes). `R` reaches sessions as `NewMessages`,
//! which makes them resync like any other event.
//!
//! Notifications sent while the listener has no connection are lost for good. When it gets
//! one again, every open folder of this replica is told to resync.
//!
//! The same connection listens for changes of the `kv` table (`kv.rs`): they wake the
//! shared-files mirror, which then polls at once.

use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
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

/// The payload that tells other replicas that store `sender` made `event` happen in folder
/// row `mailbox`.
pub(super) fn payload(sender: u64, mailbox: i64, event: &MailboxEvent) -> String {
    let (tag, uids) = match event {
        MailboxEvent::NewMessages => return format!("{sender:x} {mailbox} N"),
        MailboxEvent::FlagsChanged { uids } => ('F', uids),
        MailboxEvent::Expunged { uids } => ('X', uids),
    };
    if uids.is_empty() || uids.len() > MAX_UIDS {
        return format!("{sender:x} {mailbox} R");
    }
    let list: Vec<String> = uids.iter().map(u32::to_string).collect();
    format!("{sender:x} {mailbox} {tag} {}", list.join(","))
}

/// The sending store, folder row and event of a payload; `None` when it is not one
/// [`payload`] writes (another program's NOTIFY on our channel).
pub(super) fn parse(payload: &str) -> Option<(u64, i64, MailboxEvent)> {
    let mut parts = payload.splitn(4, ' ');
    let sender = u64::from_str_radix(parts.next()?, 16).ok()?;
    let mailbox: i64 = parts.next()?.parse().ok()?;
    let event = match (parts.next()?, parts.next()) {
        ("N" | "R", None) => MailboxEvent::NewMessages,
        ("F", Some(list)) => MailboxEvent::FlagsChanged { uids: parse_uids(list)? },
        ("X", Some(list)) => MailboxEvent::Expunged { uids: parse_uids(list)? },
        _ => return None,
    };
    Some((sender, mailbox, event))
}

fn parse_uids(list: &str) -> Option<Vec<u32>> {
    list.split(',').map(|u| u.parse().ok()).collect()
}

/// Queue the notification of `event` in the transaction on `conn`, for the other replicas:
/// PostgreSQL sends it at COMMIT, and drops it on rollback.
pub(super) async fn send(
    conn: &mut PgConnection,
    store: &PgStore,
    mailbox: i64,
    event: &MailboxEvent,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload(store.inner.token, mailbox, event))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
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
                    Some((sender, mailbox, event)) if sender != inner.token => PgStore { inner }.notify(mailbox, event),
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
