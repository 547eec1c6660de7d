//! Latency and failures of the store calls the protocols wait on, measured once at the
//! [`Store`](super::Store)/[`Mailbox`](super::Mailbox) delegation so every backend is
//! covered by the same lines: `mailroom_store_operation_duration_seconds{backend, op}` and
//! `mailroom_store_errors_total{backend, op, kind}`.
//!
//! Only the store's own failures are errors here (disk, database, background task); a
//! refusal caused by the request (no such folder, a bad name, an expunged message) is the
//! client's doing and would drown a real outage in noise.

use std::future::Future;
use std::time::Instant;

use super::StoreError;
use crate::metrics::metrics;

/// The `op` label: a small fixed set, one per kind of work a client waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Local delivery of one message to its mailboxes (SMTP, LMTP, Sieve).
    Deliver,
    /// Opening a folder (IMAP SELECT/EXAMINE/STATUS, POP3 login).
    Open,
    /// A folder's snapshot or its changes since the last one.
    Sync,
    Append,
    /// Reading a message or part of it (IMAP FETCH, POP3 RETR/TOP).
    Fetch,
    Expunge,
    Copy,
    Move,
    Flags,
    Quota,
}

impl StoreOp {
    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Deliver => "deliver",
            StoreOp::Open => "open",
            StoreOp::Sync => "sync",
            StoreOp::Append => "append",
            StoreOp::Fetch => "fetch",
            StoreOp::Expunge => "expunge",
            StoreOp::Copy => "copy",
            StoreOp::Move => "move",
            StoreOp::Flags => "flags",
            StoreOp::Quota => "quota",
        }
    }
}

/// The `kind` label of a store failure; `None` for an error the request caused.
fn error_kind(e: &StoreError) -> Option<&'static str> {
    match e {
        _ if e.is_disk_full() => Some("disk_full"),
        StoreError::Io { .. } => Some("io"),
        StoreError::Background(_) => Some("background"),
        StoreError::Unavailable(_) => Some("unavailable"),
        StoreError::Conflict(_) => Some("conflict"),
        _ => None,
    }
}

/// Count one failure of `op`, if it is the store's.
pub fn count_error(backend: &'static str, op: StoreOp, e: &StoreError) {
    if let Some(kind) = error_kind(e) {
        metrics().store_errors_total.with_label_values(&[backend, op.label(), kind]).inc();
    }
}

/// Run one store call, timing it and counting its failure.
pub async fn metered<T>(
    backend: &'static str,
    op: StoreOp,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    observe(backend, op, started);
    if let Err(e) = &result {
        count_error(backend, op, e);
    }
    result
}

/// Record the duration of `op` that began at `started`.
pub fn observe(backend: &'static str, op: StoreOp, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    metrics().store_operation_duration_seconds.with_label_values(&[backend, op.label()]).observe(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(op: StoreOp, kind: &str) -> u64 {
        metrics().store_errors_total.with_label_values(&["test", op.label(), kind]).get()
    }

    #[tokio::test]
    async fn times_every_call_and_counts_only_the_stores_own_failures() {
        let count =
            || metrics().store_operation_duration_seconds.with_label_values(&["test", "expunge"]).get_sample_count();
        let (calls, io) = (count(), errors(StoreOp::Expunge, "io"));
        let ok: Result<u32, StoreError> = metered("test", StoreOp::Expunge, async { Ok(1) }).await;
        assert_eq!(ok.unwrap(), 1);
        let gone =
            metered("test", StoreOp::Expunge, async { Err::<(), _>(StoreError::NoSuchFolder("x".into())) }).await;
        assert!(gone.is_err());
        let broken = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let failed = metered("test", StoreOp::Expunge, async { Err::<(), _>(StoreError::io("/x", broken)) }).await;
        assert!(failed.is_err());
        assert_eq!(count(), calls + 3);
        assert_eq!(errors(StoreOp::Expunge, "io"), io + 1);
    }
}
