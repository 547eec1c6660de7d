//! The status snapshot's sources (`status/`), built from the shared pieces: the ring the
//! SMTP services and the queue feed, the ACME scheduler's slot, and the DNS checklist
//! refreshed in the background; and the control socket's `status` command.

use std::sync::Arc;
use std::time::SystemTime;

use crate::accounts::Directory;
use crate::config::Config;
use crate::queue::BoxFuture;
use crate::queue::{Queue, StatusCommand};
use crate::reports::Kind;
use crate::status::{AcmeSlot, DnsChecklist, RecentEvents, ReportRuns, StatusSources};
use crate::store::{ReportKind, Store};
use crate::tls::CertStore;

/// The sources, with the queue already recording its outcomes in the ring.
pub(super) fn status_sources(
    config: &Config,
    queue: &Queue,
    certs: Arc<CertStore>,
    acme: Arc<AcmeSlot>,
    directory: Arc<Directory>,
    store: Store,
    report_runs: Arc<ReportRuns>,
) -> Arc<StatusSources> {
    let recent = Arc::new(RecentEvents::default());
    queue.record_outcomes_in(recent.clone());
    let mut report_kinds = Vec::new();
    if config.dmarc_reports {
        report_kinds.push(ReportKind::Dmarc);
    }
    if config.tls_reports {
        report_kinds.push(ReportKind::Tls);
    }
    Arc::new(StatusSources {
        recent,
        queue: queue.clone(),
        certs,
        acme,
        dns: Arc::new(DnsChecklist::default()),
        directory,
        store,
        report_kinds,
        report_runs,
        fetch: Arc::new(crate::fetch::FetchStatus::new(&config.fetch.sources)),
        hostname: config.hostname.clone(),
        started: SystemTime::now(),
    })
}

/// `status` on the control socket: the whole snapshot as JSON.
pub(super) fn status_command(sources: Arc<StatusSources>) -> StatusCommand {
    Arc::new(move || {
        let sources = sources.clone();
        Box::pin(async move { sources.snapshot_json().await })
    })
}

/// The report kinds, each telling `runs` how its runs ended (the daily run and
/// `mailroom reports send` both go through [`Kind::run`]).
pub(super) fn recording_runs(kinds: Vec<Arc<dyn Kind>>, runs: &Arc<ReportRuns>) -> Vec<Arc<dyn Kind>> {
    kinds.into_iter().map(|inner| Arc::new(RecordedRuns { inner, runs: runs.clone() }) as Arc<dyn Kind>).collect()
}

struct RecordedRuns {
    inner: Arc<dyn Kind>,
    runs: Arc<ReportRuns>,
}

impl Kind for RecordedRuns {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        self.inner.flush()
    }

    fn run(&self, until_day: i64) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let result = self.inner.run(until_day).await;
            self.runs.record(self.inner.name(), &result);
            result
        })
    }
}
