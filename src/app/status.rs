//! The status snapshot's sources (`status/`), built from the shared pieces: the ring the
//! SMTP services and the queue feed, the ACME scheduler's slot, and the DNS checklist
//! refreshed in the background; and the control socket's `status` command.

use std::sync::Arc;
use std::time::SystemTime;

use crate::accounts::Directory;
use crate::config::Config;
use crate::queue::{Queue, StatusCommand};
use crate::status::{AcmeSlot, DnsChecklist, RecentEvents, StatusSources};
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
