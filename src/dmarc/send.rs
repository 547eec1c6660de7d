//! Sending the aggregate reports: once a UTC day (and on `mailroom reports send`), the
//! counters of each reporting domain and day become one report, mailed to each `rua`
//! destination that may receive it, DKIM-signed for our primary domain and queued like
//! any outbound mail (`Signers::sign`, `Queue::enqueue_parts`, as Sieve replies are).
//!
//! Who may receive (RFC 7489 7.1): a destination in the policy domain's own
//! organisation, or one whose domain publishes `<policy-domain>._report._dmarc.<its
//! domain>` TXT `v=DMARC1…`. Otherwise anyone could publish a record making us mail a
//! third party. The organisational domain is taken as the last two labels (there is no
//! public-suffix list here): under a suffix such as `co.uk` that is stricter (more
//! destinations need the TXT), never looser. A report larger than a destination's
//! `!size` is not sent to it (RFC 7489 6.2).
//!
//! With PostgreSQL one replica sends, under the `dmarc-reports` lease; what it sent is
//! subtracted from the counters, so counts another replica flushed meanwhile go in the
//! next report.

use std::sync::Arc;

use bytes::Bytes;
use hickory_resolver::proto::rr::{RData, RecordType};

use super::record::{Destination, Observation, Recorder};
use super::report::{AggregateReport, ReportMeta};
use crate::accounts::Address;
use crate::queue::BoxFuture;
use crate::reports::{Outbox, ReportError, RunSummary, day_range, now_secs};
use crate::store::{ReportCount, ReportKind};

/// The lease held while reports are sent (PostgreSQL).
pub const LEASE_NAME: &str = "dmarc-reports";
/// Local part of the address reports come from, in our primary domain.
pub const SENDER_LOCAL_PART: &str = "noreply-dmarc";

/// Everything the report sender needs. Built once at start when reports are on.
pub struct Reporter {
    pub recorder: Arc<Recorder>,
    /// Our hostname is the submitter and `org_name`.
    pub outbox: Arc<Outbox>,
}

impl Reporter {
    /// The address reports come from (and the envelope sender: bounces of reports must
    /// not go to the null sender's nobody, RFC 7489 7.2.1.1 wants a real return path).
    pub fn sender(&self) -> String {
        self.outbox.sender(SENDER_LOCAL_PART)
    }

    /// Move the in-memory counters into the store ([`Outbox::flush`]).
    pub async fn flush(&self) {
        self.outbox.flush(&self.recorder).await;
    }

    /// Flush, then send the reports of every day up to `until_day` (inclusive; today's
    /// report, sent on command, covers the day so far).
    pub async fn run(&self, until_day: i64) -> Result<RunSummary, ReportError> {
        self.flush().await;
        let Some(_lease) = self.outbox.lease(LEASE_NAME).await? else {
            return Ok(RunSummary::default());
        };
        let groups = self.outbox.counts::<Observation>(until_day).await?;
        let mut summary = RunSummary { ran: true, ..RunSummary::default() };
        let now = now_secs();
        for ((domain, day), rows) in groups {
            let report = self.report(&domain, day, &rows, now);
            let (queued, skipped) = self.deliver(&report).await?;
            summary.queued += queued;
            summary.skipped += skipped;
            let sent: Vec<ReportCount> = rows.into_iter().map(|(c, _)| c).collect();
            self.outbox.store.report_subtract(ReportKind::Dmarc, &sent).await?;
        }
        Ok(summary)
    }

    fn report(&self, domain: &str, day: i64, rows: &[(ReportCount, Observation)], now: u64) -> AggregateReport {
        let (begin, end) = day_range(day, now);
        // The policy of the largest row: the record can change during a day, and the
        // report has one `policy_published`.
        let policy = rows.iter().max_by_key(|(c, _)| c.count).map(|(_, o)| o.policy.clone()).unwrap_or_else(|| {
            super::record::PolicyPublished {
                domain: domain.to_string(),
                adkim: "r".into(),
                aspf: "r".into(),
                p: "none".into(),
                sp: "none".into(),
                pct: 100,
                fo: "0".into(),
                rua: Vec::new(),
            }
        });
        let report_id = format!("{day}.{:016x}", rand::random::<u64>());
        AggregateReport {
            meta: ReportMeta { org_name: self.outbox.hostname.clone(), email: self.sender(), report_id, begin, end },
            policy,
            rows: rows.iter().map(|(c, o)| (o.clone(), c.count)).collect(),
        }
    }

    /// Queue `report` to each destination that may have it: (queued, skipped).
    async fn deliver(&self, report: &AggregateReport) -> Result<(usize, usize), ReportError> {
        let m = crate::metrics::metrics();
        let (mut queued, mut skipped) = (0, 0);
        let Ok(from) = Address::parse(&self.sender()) else {
            return Ok((0, report.policy.rua.len()));
        };
        for dest in &report.policy.rua {
            let domain = &report.policy.domain;
            let Ok(to) = Address::parse(&dest.address) else {
                tracing::info!(%domain, rua = %dest.address, "DMARC report destination is not an address; skipped");
                m.dmarc_reports_skipped_total.with_label_values(&["address"]).inc();
                skipped += 1;
                continue;
            };
            if !self.authorised(domain, &to.domain).await {
                tracing::info!(%domain, rua = %dest.address, "DMARC report destination not authorised (RFC 7489 7.1); skipped");
                m.dmarc_reports_skipped_total.with_label_values(&["unauthorised"]).inc();
                skipped += 1;
                continue;
            }
            let message = report.to_message(&from.to_string(), std::slice::from_ref(&dest.address))?;
            let parts = self.outbox.signed(message).await;
            if too_big(dest, parts.iter().map(Bytes::len).sum()) {
                tracing::info!(%domain, rua = %dest.address, limit = dest.max_size, "DMARC report over the destination's size limit; skipped");
                m.dmarc_reports_skipped_total.with_label_values(&["size"]).inc();
                skipped += 1;
                continue;
            }
            match self.outbox.queue(&from, &to, parts, "dmarc-report").await {
                Ok(id) => {
                    tracing::info!(%domain, rua = %dest.address, queue_id = %id, rows = report.rows.len(), "DMARC aggregate report queued");
                    m.dmarc_reports_sent_total.inc();
                    queued += 1;
                }
                Err(e) => {
                    tracing::warn!(%domain, rua = %dest.address, error = %e, "DMARC report not queued");
                    m.dmarc_reports_skipped_total.with_label_values(&["queue"]).inc();
                    skipped += 1;
                }
            }
        }
        Ok((queued, skipped))
    }

    /// RFC 7489 7.1: may `rua_domain` receive reports about `policy_domain`?
    async fn authorised(&self, policy_domain: &str, rua_domain: &str) -> bool {
        if same_organisation(policy_domain, rua_domain) {
            return true;
        }
        let name = format!("{policy_domain}._report._dmarc.{rua_domain}.");
        match self.outbox.resolver.lookup(name, RecordType::TXT).await {
            Ok(lookup) => lookup.answers().iter().any(|r| match &r.data {
                RData::TXT(txt) => {
                    let joined: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                    authorises(&String::from_utf8_lossy(&joined))
                }
                _ => false,
            }),
            Err(_) => false,
        }
    }
}

impl crate::reports::Kind for Reporter {
    fn name(&self) -> &'static str {
        "DMARC aggregate"
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(Reporter::flush(self))
    }

    fn run(&self, until_day: i64) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { Reporter::run(self, until_day).await.map(|s| s.to_string()).map_err(|e| e.to_string()) })
    }
}

fn too_big(dest: &Destination, size: usize) -> bool {
    dest.max_size > 0 && size as u64 > dest.max_size
}

/// The organisational domain, approximated as the last two labels.
fn organisation(domain: &str) -> String {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = d.rsplitn(3, '.').collect();
    match labels.as_slice() {
        [tld, sld, ..] => format!("{sld}.{tld}"),
        _ => d,
    }
}

pub(crate) fn same_organisation(a: &str, b: &str) -> bool {
    organisation(a) == organisation(b)
}

/// Does this TXT record authorise external reports (RFC 7489 7.1: `v=DMARC1` first)?
pub(crate) fn authorises(txt: &str) -> bool {
    let first = txt.split(';').next().unwrap_or("").trim();
    first.split_once('=').is_some_and(|(k, v)| k.trim() == "v" && v.trim().eq_ignore_ascii_case("DMARC1"))
}
