//! What DMARC aggregate reports (`dmarc/`) and SMTP TLS reports (`tlsrpt/`) share: the
//! bounded in-memory counters (`counters.rs`), their flush through the store boundary,
//! the lease one PostgreSQL replica sends under, signing and queueing a report message,
//! and the background task that flushes every minute and runs each kind's daily send.
//!
//! It must never: let a report failure touch mail (every failure here is logged and
//! counted, then left for the next run).

pub mod counters;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hickory_resolver::TokioResolver;

pub use counters::{Recorder, Row, day_of};

use crate::accounts::Address;
use crate::mailauth::Signers;
use crate::queue::{BoxFuture, Queue, QueueError, QueueId};
use crate::store::{ReportCount, Store, StoreError};

/// What every report sender needs to mail a report. Built once at start.
pub struct Outbox {
    pub store: Store,
    pub queue: Queue,
    pub signers: Arc<Signers>,
    pub resolver: TokioResolver,
    /// Our hostname: the submitter and organisation name of our reports.
    pub hostname: String,
    pub primary_domain: String,
}

/// Stored counts by (domain, day), each with its row read back.
pub type Groups<R> = BTreeMap<(String, i64), Vec<(ReportCount, R)>>;

/// The held lease of a run (PostgreSQL); released when dropped.
pub type RunLease = Option<crate::store::pg::PgLease>;

impl Outbox {
    /// `local_part@` our primary domain: where reports come from.
    pub fn sender(&self, local_part: &str) -> String {
        format!("{local_part}@{}", self.primary_domain)
    }

    /// Move `recorder`'s counters into the store. On failure they go back to memory
    /// for the next flush; statistics never hold up anything else.
    pub async fn flush<R: Row>(&self, recorder: &Recorder<R>) {
        let counts = recorder.take();
        if counts.is_empty() {
            return;
        }
        match self.store.report_add(R::KIND, &counts).await {
            Ok(0) => {}
            Ok(n) => R::dropped(n),
            Err(e) => {
                tracing::warn!(kind = R::KIND.name(), error = %e, "report counters not stored; kept for the next flush");
                recorder.restore(counts);
            }
        }
    }

    /// Take the lease `name` on PostgreSQL (Maildir: one process, no lease). `None`
    /// while another replica holds it: that replica sends.
    pub async fn lease(&self, name: &str) -> Result<Option<RunLease>, StoreError> {
        match &self.store {
            Store::Pg(pg) => Ok(pg.try_lease(name).await?.map(Some)),
            Store::Maildir(_) => Ok(Some(None)),
        }
    }

    /// The stored counts of kind `R` up to `until_day`, by (domain, day), read back into
    /// rows (an unreadable row is logged and left out).
    pub async fn counts<R: Row>(&self, until_day: i64) -> Result<Groups<R>, StoreError> {
        let mut groups: Groups<R> = BTreeMap::new();
        for c in self.store.report_counts(R::KIND, until_day).await? {
            match serde_json::from_str::<R>(&c.row) {
                Ok(row) => groups.entry((c.domain.clone(), c.day)).or_default().push((c, row)),
                Err(e) => {
                    tracing::warn!(kind = R::KIND.name(), domain = %c.domain, error = %e, "unreadable report row skipped")
                }
            }
        }
        Ok(groups)
    }

    /// `message` as the parts to queue: the DKIM-Signature of our primary domain (when
    /// it has keys; an unsigned report is still sent), then the message.
    pub async fn signed(&self, message: Vec<u8>) -> Vec<Bytes> {
        let body = Bytes::from(message);
        let signers = self.signers.clone();
        let domain = self.primary_domain.clone();
        let signed = body.clone();
        let mut parts = vec![body];
        match tokio::task::spawn_blocking(move || signers.sign(&domain, &[&signed])).await {
            Ok(Some(Ok(headers))) => parts.insert(0, Bytes::from(headers.into_bytes())),
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "report not DKIM-signed"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "report signing task failed"),
        }
        parts
    }

    /// Queue a report made of `parts` from `from` to `to`.
    pub async fn queue(
        &self,
        from: &Address,
        to: &Address,
        parts: Vec<Bytes>,
        tag: &str,
    ) -> Result<QueueId, QueueError> {
        self.queue.enqueue_parts(Some(from), std::slice::from_ref(to), parts, tag).await
    }
}

/// What one run of a report kind did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Reports queued, one per destination.
    pub queued: usize,
    /// Destinations left out (each kind says why: not authorised, too large, `https:`,
    /// not an address, not queued).
    pub skipped: usize,
    /// TLS reports: domains with counts but no record asking for reports.
    pub unrequested: Option<usize>,
    /// False when another replica holds the lease (nothing was done here).
    pub ran: bool,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.ran {
            return f.write_str("another replica is sending the reports now");
        }
        write!(f, "{} report(s) queued, {} destination(s) skipped", self.queued, self.skipped)?;
        match self.unrequested {
            Some(n) => write!(f, ", {n} domain(s) without a report record"),
            None => Ok(()),
        }
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the report counters: {0}")]
    Store(#[from] StoreError),
    #[error("building the report: {0}")]
    Build(#[from] std::io::Error),
}

/// The seconds since the epoch now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The range a report of `day` covers: its first second, and its last (or now, for
/// today's report sent on command).
pub fn day_range(day: i64, now: u64) -> (u64, u64) {
    let begin = (day.max(0) as u64) * 86_400;
    (begin, (begin + 86_399).min(now.max(begin)))
}

/// One kind of report as the background task and `mailroom reports send` drive it.
pub trait Kind: Send + Sync + 'static {
    /// For logs: `DMARC aggregate`, `TLS`.
    fn name(&self) -> &'static str;
    /// Move the in-memory counters into the store.
    fn flush(&self) -> BoxFuture<'_, ()>;
    /// Flush, then send the reports of every day up to `until_day` (inclusive): a
    /// summary for the operator.
    fn run(&self, until_day: i64) -> BoxFuture<'_, Result<String, String>>;
}

/// How often the counters are flushed to the store.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Reports go out this long after 00:00 UTC, once every replica has flushed yesterday.
const SEND_AFTER_MIDNIGHT_SECS: u64 = 300;

/// Every kind's report run, one after another: what `mailroom reports send` prints.
pub async fn run_all(kinds: &[Arc<dyn Kind>], until_day: i64) -> Result<String, String> {
    let mut lines = Vec::new();
    for kind in kinds {
        lines.push(format!("{} reports: {}", kind.name(), kind.run(until_day).await?));
    }
    Ok(lines.join("\n"))
}

/// The background task: flush every minute; once a UTC day, a little after midnight
/// (when every replica has flushed the day before), send the previous days' reports.
/// At shutdown the caller flushes once more ([`Kind::flush`]).
pub fn spawn(
    kinds: Vec<Arc<dyn Kind>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_run_day = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() { return; }
                    continue;
                }
            }
            for kind in &kinds {
                kind.flush().await;
            }
            let now = now_secs();
            let today = (now / 86_400) as i64;
            if last_run_day != Some(today) && now % 86_400 >= SEND_AFTER_MIDNIGHT_SECS {
                last_run_day = Some(today);
                for kind in &kinds {
                    match kind.run(today - 1).await {
                        Ok(s) => tracing::info!(summary = %s, "daily {} reports", kind.name()),
                        Err(e) => {
                            tracing::warn!(error = %e, "daily {} reports failed; next attempt tomorrow", kind.name())
                        }
                    }
                }
            }
        }
    })
}
