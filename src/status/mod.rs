//! A read-only snapshot of the server's state for people: what the admin page shows and
//! `mailroom status` prints. Plain typed values, no HTML and no HTTP.
//!
//! It owns the small pieces of state nobody else keeps: the ring of recent deliveries
//! and refusals (`recent.rs`, fed by the SMTP sessions and the queue workers), the last
//! DNS check (`dns.rs`, refreshed in the background), and the ACME scheduler's last word
//! (`certs.rs`). The fetch sources' last runs (`fetch.rs`) are kept by the fetch loop in
//! `fetch::FetchStatus`. Everything else it reads where it lives: the queue (`queue.rs`, which
//! also carries the operator's actions on one item), the certificate store, the
//! Prometheus registry, the account directory and the store (`summary.rs`).
//!
//! It must never make a page wait for the network: no DNS lookup on the request path,
//! bounded lists, locks held only to copy.

pub mod certs;
pub mod dns;
pub mod fetch;
pub mod queue;
pub mod recent;
pub mod summary;

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::accounts::Directory;
use crate::queue::{Queue, QueueError};
use crate::store::{ReportKind, Store};
use crate::tls::CertStore;

pub use certs::{AcmeSlot, CertificateView};
pub use dns::{DnsChecklist, DnsRow, DnsView, RowKind, RowState};
pub use fetch::{FetchErrorView, FetchView};
pub use queue::{QueueAction, QueueActionError, QueueView};
pub use recent::{OutboundResult, RecentEvent, RecentEvents};
pub use summary::{AccountView, Headline, ReportDay, ReportRun, ReportRuns};

/// Everything the snapshot reads from, built once by the app. Cheap to share (`Arc`s).
pub struct StatusSources {
    pub recent: Arc<RecentEvents>,
    pub queue: Queue,
    pub certs: Arc<CertStore>,
    pub acme: Arc<AcmeSlot>,
    pub dns: Arc<DnsChecklist>,
    pub directory: Arc<Directory>,
    pub store: Store,
    /// The report kinds that are on.
    pub report_kinds: Vec<ReportKind>,
    /// The last run of each report kind.
    pub report_runs: Arc<ReportRuns>,
    /// Each `MAILROOM_FETCH` source's last success and error, fed by the fetch loop.
    pub fetch: Arc<crate::fetch::FetchStatus>,
    pub hostname: String,
    pub started: SystemTime,
}

/// Everything at once: what `mailroom status` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ServerStatus {
    pub hostname: String,
    pub version: &'static str,
    #[serde(serialize_with = "unix_secs")]
    pub started: SystemTime,
    #[serde(serialize_with = "unix_secs")]
    pub now: SystemTime,
    pub headline: Headline,
    pub recent: Vec<RecentEvent>,
    pub certificates: Vec<CertificateView>,
    pub queue: Option<QueueView>,
    /// Set when the queue could not be read (its database is unreachable).
    pub queue_error: Option<String>,
    pub dns: DnsView,
    pub reports_today: Vec<ReportDay>,
    pub report_runs: Vec<ReportRun>,
    pub accounts: Vec<AccountView>,
    /// Every `MAILROOM_FETCH` source (empty without any).
    pub fetch: Vec<FetchView>,
}

impl StatusSources {
    /// The last deliveries and refusals, newest first.
    pub async fn snapshot_recent(&self) -> Vec<RecentEvent> {
        self.recent.newest_first()
    }

    pub async fn snapshot_certificates(&self) -> Vec<CertificateView> {
        certs::view(&self.certs, &self.acme)
    }

    pub async fn snapshot_queue(&self) -> Result<QueueView, QueueError> {
        queue::view(&self.queue).await
    }

    /// The last DNS check (never a lookup: see [`DnsChecklist`]).
    pub async fn snapshot_dns(&self) -> DnsView {
        self.dns.view()
    }

    /// Ask for a DNS check now; the next snapshot after it finishes shows it.
    pub fn refresh_dns(&self) {
        self.dns.request_refresh();
    }

    pub async fn snapshot_headline(&self) -> Headline {
        summary::headline()
    }

    pub async fn snapshot_reports(&self) -> Vec<ReportDay> {
        summary::reports_today(&self.store, &self.report_kinds).await
    }

    pub async fn snapshot_accounts(&self) -> Vec<AccountView> {
        summary::accounts(&self.directory, &self.store).await
    }

    /// Retry, hold, release or delete one queue item.
    pub async fn queue_action(&self, id: &str, action: QueueAction) -> Result<(), QueueActionError> {
        queue::act(&self.queue, id, action).await
    }

    /// Every part at once.
    pub async fn snapshot(&self) -> ServerStatus {
        let (queue, queue_error) = match self.snapshot_queue().await {
            Ok(q) => (Some(q), None),
            Err(e) => (None, Some(e.to_string())),
        };
        ServerStatus {
            hostname: self.hostname.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started: self.started,
            now: SystemTime::now(),
            headline: self.snapshot_headline().await,
            recent: self.snapshot_recent().await,
            certificates: self.snapshot_certificates().await,
            queue,
            queue_error,
            dns: self.snapshot_dns().await,
            reports_today: self.snapshot_reports().await,
            report_runs: self.report_runs.last(),
            accounts: self.snapshot_accounts().await,
            fetch: fetch::view(&self.fetch),
        }
    }

    /// [`snapshot`](Self::snapshot) as pretty JSON (the control socket's `status`).
    pub async fn snapshot_json(&self) -> String {
        serde_json::to_string_pretty(&self.snapshot().await)
            .unwrap_or_else(|e| format!("error: cannot render the status: {e}"))
    }
}

/// Times are seconds since the Unix epoch (UTC) in JSON: what scripts compare easily.
pub(crate) fn unix_secs<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

pub(crate) fn unix_secs_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => unix_secs(t, s),
        None => s.serialize_none(),
    }
}
