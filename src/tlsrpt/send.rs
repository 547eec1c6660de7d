//! Sending the SMTP TLS reports: once a UTC day (and on `mailroom reports send`), the
//! counters of each recipient domain and day become one report (RFC 8460 section 4),
//! mailed to each `mailto:` `rua` of the domain's `_smtp._tls` TXT record (section 3),
//! DKIM-signed and queued through the shared [`Outbox`]. `https:` destinations are not
//! posted to (skipped and counted). A domain without a record gets no report; its
//! counts go all the same.
//!
//! With PostgreSQL one replica sends, under the `tls-reports` lease; what it sent is
//! subtracted from the counters, so counts another replica flushed meanwhile go in the
//! next report.

use std::collections::BTreeMap;
use std::sync::Arc;

use hickory_resolver::proto::rr::{RData, RecordType};

use super::record::{Recorder, TlsRow};
use super::report::{self, Report, ReportMeta};
use crate::accounts::Address;
use crate::queue::BoxFuture;
use crate::reports::{Outbox, ReportError, RunSummary, day_range, now_secs};
use crate::store::{ReportCount, ReportKind};

/// The lease held while reports are sent (PostgreSQL).
pub const LEASE_NAME: &str = "tls-reports";
/// Local part of the address reports come from, in our primary domain.
pub const SENDER_LOCAL_PART: &str = "noreply-tlsrpt";
/// Most `rua` destinations used per domain.
const MAX_DESTINATIONS: usize = 10;

/// Everything the report sender needs. Built once at start when reports are on.
pub struct Reporter {
    pub recorder: Arc<Recorder>,
    pub outbox: Arc<Outbox>,
}

/// A `rua` destination of a TLS-RPT record (RFC 8460 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rua {
    Mailto(String),
    Https(String),
}

/// The destinations of a `_smtp._tls` TXT record, or `None` when it is not
/// `v=TLSRPTv1` (section 3: the version comes first).
pub fn parse_record(txt: &str) -> Option<Vec<Rua>> {
    let mut fields = txt.split(';').map(str::trim).filter(|f| !f.is_empty());
    let (k, v) = fields.next()?.split_once('=')?;
    if k.trim() != "v" || v.trim() != "TLSRPTv1" {
        return None;
    }
    let mut out = Vec::new();
    for field in fields {
        let Some((k, v)) = field.split_once('=') else { continue };
        if k.trim() != "rua" {
            continue;
        }
        for uri in v.split(',').map(str::trim) {
            if let Some(address) = uri.strip_prefix("mailto:") {
                out.push(Rua::Mailto(address.to_string()));
            } else if uri.starts_with("https:") {
                out.push(Rua::Https(uri.to_string()));
            }
        }
    }
    Some(out)
}

impl Reporter {
    pub fn sender(&self) -> String {
        self.outbox.sender(SENDER_LOCAL_PART)
    }

    /// Flush, then send the reports of every day up to `until_day` (inclusive).
    pub async fn run(&self, until_day: i64) -> Result<RunSummary, ReportError> {
        self.outbox.flush(&self.recorder).await;
        let Some(_lease) = self.outbox.lease(LEASE_NAME).await? else {
            return Ok(RunSummary::default());
        };
        let groups = self.outbox.counts::<TlsRow>(until_day).await?;
        let mut summary = RunSummary { ran: true, unrequested: Some(0), ..RunSummary::default() };
        let now = now_secs();
        let mut records: BTreeMap<String, Option<Vec<Rua>>> = BTreeMap::new();
        for ((domain, day), rows) in groups {
            if !records.contains_key(&domain) {
                let found = self.lookup(&domain).await;
                records.insert(domain.clone(), found);
            }
            match records.get(&domain).cloned().flatten() {
                Some(rua) => {
                    let (begin, end) = day_range(day, now);
                    let meta = ReportMeta {
                        organization: self.outbox.hostname.clone(),
                        contact: self.sender(),
                        report_id: format!("{day}.{:016x}", rand::random::<u64>()),
                        domain: domain.clone(),
                        begin,
                        end,
                    };
                    let counted: Vec<(TlsRow, u64)> = rows.iter().map(|(c, r)| (r.clone(), c.count)).collect();
                    let (queued, skipped) = self.deliver(&meta, &Report::build(&meta, &counted), &rua).await;
                    summary.queued += queued;
                    summary.skipped += skipped;
                }
                None => summary.unrequested = summary.unrequested.map(|n| n + 1),
            }
            let sent: Vec<ReportCount> = rows.into_iter().map(|(c, _)| c).collect();
            self.outbox.store.report_subtract(ReportKind::Tls, &sent).await?;
        }
        Ok(summary)
    }

    /// The `rua` list of `domain`'s `_smtp._tls` record, `None` without one.
    async fn lookup(&self, domain: &str) -> Option<Vec<Rua>> {
        let name = format!("_smtp._tls.{domain}.");
        let lookup = self.outbox.resolver.lookup(name, RecordType::TXT).await.ok()?;
        lookup.answers().iter().find_map(|r| match &r.data {
            RData::TXT(txt) => {
                let joined: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                parse_record(&String::from_utf8_lossy(&joined))
            }
            _ => None,
        })
    }

    /// Queue the report to each `mailto:` destination: (queued, skipped).
    async fn deliver(&self, meta: &ReportMeta, report: &Report, rua: &[Rua]) -> (usize, usize) {
        let m = crate::metrics::metrics();
        let (mut queued, mut skipped) = (0, 0);
        let domain = &meta.domain;
        let Ok(from) = Address::parse(&self.sender()) else { return (0, rua.len()) };
        for dest in rua.iter().take(MAX_DESTINATIONS) {
            let address = match dest {
                Rua::Mailto(a) => a,
                Rua::Https(uri) => {
                    tracing::info!(%domain, rua = %uri, "TLS report https destination not supported; skipped");
                    m.tls_reports_skipped_total.with_label_values(&["https"]).inc();
                    skipped += 1;
                    continue;
                }
            };
            let Ok(to) = Address::parse(address) else {
                tracing::info!(%domain, rua = %address, "TLS report destination is not an address; skipped");
                m.tls_reports_skipped_total.with_label_values(&["address"]).inc();
                skipped += 1;
                continue;
            };
            let message = match report::to_message(meta, report, &from.to_string(), &to.to_string()) {
                Ok(message) => message,
                Err(e) => {
                    tracing::warn!(%domain, error = %e, "TLS report not built");
                    return (queued, skipped + 1);
                }
            };
            let parts = self.outbox.signed(message).await;
            match self.outbox.queue(&from, &to, parts, "tls-report").await {
                Ok(id) => {
                    tracing::info!(%domain, rua = %address, queue_id = %id, "SMTP TLS report queued");
                    m.tls_reports_sent_total.inc();
                    queued += 1;
                }
                Err(e) => {
                    tracing::warn!(%domain, rua = %address, error = %e, "TLS report not queued");
                    m.tls_reports_skipped_total.with_label_values(&["queue"]).inc();
                    skipped += 1;
                }
            }
        }
        (queued, skipped)
    }
}

impl crate::reports::Kind for Reporter {
    fn name(&self) -> &'static str {
        "SMTP TLS"
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.outbox.flush(&self.recorder))
    }

    fn run(&self, until_day: i64) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { Reporter::run(self, until_day).await.map(|s| s.to_string()).map_err(|e| e.to_string()) })
    }
}
