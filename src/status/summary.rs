//! The small tables of the admin page: headline numbers read from the Prometheus registry
//! (so the page and `/metrics` never disagree), the accounts with their quota use, and
//! today's DMARC and TLS report counts per domain.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use prometheus::core::Collector;
use serde::Serialize;

use crate::accounts::Directory;
use crate::metrics::metrics;
use crate::store::{MailboxOwner, ReportKind, Store};

/// Counters since the process started, gauges as they are now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Headline {
    /// Messages accepted by our SMTP services (every service).
    pub messages_received: u64,
    /// Messages refused at the end of the data (size, checks, delivery failure).
    pub messages_refused: u64,
    /// Recipients delivered by the queue to other hosts.
    pub recipients_delivered: u64,
    pub recipients_deferred: u64,
    /// Recipients failed permanently or expired (bounced).
    pub recipients_bounced: u64,
    /// Items in the queue, every state.
    pub queue_items: u64,
    /// Open SMTP sessions (every service).
    pub smtp_sessions_active: u64,
}

/// Sum every series of a metric family (all label values), or of those whose label
/// `label` is one of `values`.
fn sum(collector: &dyn Collector, filter: Option<(&str, &[&str])>) -> u64 {
    let mut total = 0.0;
    for family in collector.collect() {
        for m in family.get_metric() {
            if let Some((label, values)) = filter
                && !m.get_label().iter().any(|l| l.name() == label && values.contains(&l.value()))
            {
                continue;
            }
            total += m.get_counter().value() + m.get_gauge().value();
        }
    }
    total.max(0.0) as u64
}

/// The headline numbers, read from the registry.
pub fn headline() -> Headline {
    let m = metrics();
    let deliveries = &m.queue_deliveries_total;
    Headline {
        messages_received: sum(&m.smtp_messages_received_total, None),
        messages_refused: sum(&m.smtp_messages_refused_total, None),
        recipients_delivered: sum(deliveries, Some(("result", &["delivered"]))),
        recipients_deferred: sum(deliveries, Some(("result", &["deferred"]))),
        recipients_bounced: sum(deliveries, Some(("result", &["failed", "expired"]))),
        queue_items: sum(&m.queue_items, None),
        smtp_sessions_active: sum(&m.smtp_sessions_active, None),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    pub address: String,
    /// Bytes used in every folder; `None` when the store could not say.
    pub quota_used: Option<u64>,
    /// Bytes; `None`: unlimited.
    pub quota_limit: Option<u64>,
}

/// Accounts listed at most (a page render must stay cheap).
pub const MAX_ACCOUNTS: usize = 1000;

/// The accounts in the directory (at most [`MAX_ACCOUNTS`]), with their quota use.
pub async fn accounts(directory: &Directory, store: &Store) -> Vec<AccountView> {
    let mut out = Vec::new();
    for account in directory.accounts().into_iter().take(MAX_ACCOUNTS) {
        let owner = MailboxOwner { local: account.address.local.clone(), domain: account.address.domain.clone() };
        let used = match store.quota_usage(&owner).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::debug!(account = %account.address, error = %e, "status: quota use unknown");
                None
            }
        };
        out.push(AccountView { address: account.address.to_string(), quota_used: used, quota_limit: account.quota });
    }
    out
}

/// Today's counts of one report kind for one domain (stored counts: the last minute may
/// still be in memory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportDay {
    /// `dmarc` (messages received on port 25 under the domain's DMARC record) or `tls`
    /// (our outbound TLS sessions to the domain).
    pub kind: &'static str,
    pub domain: String,
    pub count: u64,
}

/// Today's (UTC) counts of each report kind that is on, per domain.
pub async fn reports_today(store: &Store, kinds: &[ReportKind]) -> Vec<ReportDay> {
    let today = crate::reports::day_of(std::time::SystemTime::now());
    let mut out = Vec::new();
    for &kind in kinds {
        let counts = match store.report_counts(kind, today).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(kind = kind.name(), error = %e, "status: report counts unknown");
                continue;
            }
        };
        let mut by_domain: BTreeMap<String, u64> = BTreeMap::new();
        for c in counts.into_iter().filter(|c| c.day == today) {
            *by_domain.entry(c.domain).or_default() += c.count;
        }
        out.extend(by_domain.into_iter().map(|(domain, count)| ReportDay { kind: kind.name(), domain, count }));
    }
    out
}

/// The last report run of one kind (the daily one or `mailroom reports send`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportRun {
    /// `DMARC aggregate`, `SMTP TLS`.
    pub kind: &'static str,
    #[serde(serialize_with = "super::unix_secs")]
    pub at: SystemTime,
    pub ok: bool,
    /// What the run said: reports queued and destinations skipped, or why it failed.
    pub summary: String,
}

/// The last run of each report kind, written by whoever runs them (the app wraps each
/// kind so that both the daily run and the operator's command are seen).
#[derive(Debug, Default)]
pub struct ReportRuns {
    last: Mutex<Vec<ReportRun>>,
}

impl ReportRuns {
    pub fn record(&self, kind: &'static str, result: &Result<String, String>) {
        let (ok, summary) = match result {
            Ok(s) => (true, s),
            Err(e) => (false, e),
        };
        let mut summary = summary.clone();
        summary.truncate(summary.floor_char_boundary(super::recent::MAX_FIELD * 4));
        let run = ReportRun { kind, at: SystemTime::now(), ok, summary };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.retain(|r| r.kind != kind);
        last.push(run);
    }

    /// The last run of each kind that ran since the start.
    pub fn last(&self) -> Vec<ReportRun> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_follow_the_registry() {
        let before = headline();
        let m = metrics();
        m.queue_deliveries_total.with_label_values(&["delivered"]).inc();
        m.queue_deliveries_total.with_label_values(&["expired"]).inc_by(2);
        m.smtp_messages_received_total.with_label_values(&["submission"]).inc();
        let after = headline();
        // Other tests of this process may count too: at least ours are there.
        assert!(after.recipients_delivered > before.recipients_delivered);
        assert!(after.recipients_bounced >= before.recipients_bounced + 2);
        assert!(after.messages_received > before.messages_received);
    }

    #[tokio::test]
    async fn accounts_show_quota_use_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "mx.example.org").unwrap();
        let hash = crate::accounts::hash_password("secret-password");
        let entries =
            crate::accounts::parse_accounts(&format!("alice@example.org:{hash}:1M\nbob@example.org:{hash}")).unwrap();
        let directory = Directory::new(vec!["example.org".into()], entries, vec![]).unwrap();
        let owners = directory
            .accounts()
            .into_iter()
            .map(|a| MailboxOwner { local: a.address.local.clone(), domain: a.address.domain.clone() });
        store.ensure_accounts(owners).await.unwrap();
        let views = accounts(&directory, &store).await;
        let rows: Vec<(&str, Option<u64>, Option<u64>)> =
            views.iter().map(|v| (v.address.as_str(), v.quota_used, v.quota_limit)).collect();
        assert_eq!(rows, [("alice@example.org", Some(0), Some(1024 * 1024)), ("bob@example.org", Some(0), None)]);
    }

    #[test]
    fn the_last_run_of_each_kind_is_kept() {
        let runs = ReportRuns::default();
        runs.record("DMARC aggregate", &Ok("1 report(s) queued".into()));
        runs.record("SMTP TLS", &Err("the report counters: gone".into()));
        runs.record("DMARC aggregate", &Ok("2 report(s) queued".into()));
        let last: Vec<(&str, bool, String)> = runs.last().into_iter().map(|r| (r.kind, r.ok, r.summary)).collect();
        assert_eq!(
            last,
            [
                ("SMTP TLS", false, "the report counters: gone".to_string()),
                ("DMARC aggregate", true, "2 report(s) queued".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn todays_report_counts_are_summed_per_domain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "mx.example.org").unwrap();
        let today = crate::reports::day_of(std::time::SystemTime::now());
        let count = |domain: &str, day: i64, row: &str, count: u64| crate::store::ReportCount {
            domain: domain.into(),
            day,
            row: row.into(),
            count,
        };
        let counts =
            [count("a.test", today, "r1", 2), count("a.test", today, "r2", 3), count("a.test", today - 1, "r1", 7)];
        store.report_add(ReportKind::Dmarc, &counts).await.unwrap();
        let days = reports_today(&store, &[ReportKind::Dmarc, ReportKind::Tls]).await;
        assert_eq!(days, [ReportDay { kind: "dmarc", domain: "a.test".into(), count: 5 }]);
    }
}
