//! The DNS checklist of the admin page: the results of `mailroom dns --check` (every
//! record to publish, and the forward-confirmed reverse DNS of the sending addresses) as
//! typed rows, kept from the last check.
//!
//! Why a cache: a page view must never wait for DNS, and checking a few dozen names on
//! every view would hammer the resolvers. A background task checks on a timer and when
//! asked ([`DnsChecklist::request_refresh`]); a page reads the last result.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hickory_resolver::TokioResolver;
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::DnsConfig;
use crate::dns::{CheckResult, Status};

/// How often the checklist is refreshed by itself.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);
/// The first check waits this long after the start (as the periodic DNS check does): a
/// server that is restarted in a loop, or started by a test, sends no burst of queries.
pub const FIRST_CHECK_AFTER: Duration = Duration::from_secs(60);

/// One row's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowState {
    Ok,
    Missing,
    Wrong,
    /// The lookup itself failed (timeout, SERVFAIL): unknown, try again.
    Error,
}

/// What a row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// A record we ask the operator to publish in their zone.
    Record,
    /// The PTR of an address mail leaves from, which must resolve back to it (FCrDNS):
    /// published by the hosting provider, not in the operator's zone.
    Reverse,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsRow {
    pub name: String,
    /// `MX`, `TXT`, `PTR`, …
    pub rtype: String,
    /// `mx`, `spf`, `dkim:<selector>`, `fcrdns:ipv4`, … (as `mailroom dns --json`).
    pub record: String,
    pub kind: RowKind,
    /// The exact value to publish.
    pub expected: String,
    pub found: Vec<String>,
    pub state: RowState,
    pub required: bool,
    /// Why the record is wanted, or for a failed reverse check what to ask for.
    pub comment: String,
}

impl DnsRow {
    pub fn of(result: &CheckResult) -> DnsRow {
        let r = &result.record;
        DnsRow {
            name: r.name.clone(),
            rtype: r.rtype.clone(),
            record: r.kind.clone(),
            kind: if r.kind.starts_with("fcrdns:") { RowKind::Reverse } else { RowKind::Record },
            expected: r.value.clone(),
            found: result.found.clone(),
            state: match result.status {
                Status::Ok => RowState::Ok,
                Status::Missing => RowState::Missing,
                Status::Wrong => RowState::Wrong,
                Status::Error => RowState::Error,
            },
            required: r.required,
            comment: r.comment.clone(),
        }
    }
}

/// The last check, as a page shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsView {
    /// `None`: no check has finished yet.
    #[serde(serialize_with = "super::unix_secs_opt")]
    pub checked_at: Option<SystemTime>,
    pub rows: Vec<DnsRow>,
    /// The check could not run at all (e.g. the DKIM keys are unreadable).
    pub error: Option<String>,
    /// Every required row is ok.
    pub all_required_ok: bool,
}

impl DnsView {
    pub fn of(results: &[CheckResult], at: SystemTime) -> DnsView {
        let rows: Vec<DnsRow> = results.iter().map(DnsRow::of).collect();
        let all_required_ok = rows.iter().all(|r| !r.required || r.state == RowState::Ok);
        DnsView { checked_at: Some(at), rows, error: None, all_required_ok }
    }
}

/// The cache and its refresher.
#[derive(Debug, Default)]
pub struct DnsChecklist {
    last: Mutex<DnsView>,
    wake: Notify,
}

impl DnsChecklist {
    /// The last result (cheap: a clone under a short lock).
    pub fn view(&self) -> DnsView {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Check again now (in the background; the page shows the result once it is there).
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// Put a result in place (the refresher, and tests).
    pub fn store(&self, view: DnsView) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// Check after [`FIRST_CHECK_AFTER`], then every [`REFRESH_EVERY`] and whenever asked.
    pub fn spawn(self: &Arc<Self>, config: DnsConfig, resolver: TokioResolver) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(FIRST_CHECK_AFTER) => {}
                _ = this.wake.notified() => {}
            }
            loop {
                let at = SystemTime::now();
                let view = match crate::dns::check_records(&config, &resolver).await {
                    Ok(results) => DnsView::of(&results, at),
                    Err(e) => DnsView { checked_at: Some(at), error: Some(e), ..DnsView::default() },
                };
                this.store(view);
                tokio::select! {
                    _ = tokio::time::sleep(REFRESH_EVERY) => {}
                    _ = this.wake.notified() => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::DnsRecord;

    fn result(kind: &str, rtype: &str, required: bool, status: Status, found: &[&str]) -> CheckResult {
        CheckResult {
            record: DnsRecord {
                domain: "example.org".into(),
                kind: kind.into(),
                name: "example.org.".into(),
                rtype: rtype.into(),
                value: "expected value".into(),
                required,
                comment: "why".into(),
            },
            status,
            found: found.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rows_carry_the_verdict_and_what_to_publish() {
        let results = [
            result("mx", "MX", true, Status::Ok, &["10 mx.example.org."]),
            result("spf", "TXT", true, Status::Wrong, &["v=spf1 -all"]),
            result("dmarc", "TXT", false, Status::Missing, &[]),
            result("fcrdns:ipv4", "PTR", true, Status::Error, &["timeout"]),
        ];
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let view = DnsView::of(&results, at);
        let states: Vec<(&str, RowKind, RowState)> =
            view.rows.iter().map(|r| (r.record.as_str(), r.kind, r.state)).collect();
        assert_eq!(
            states,
            [
                ("mx", RowKind::Record, RowState::Ok),
                ("spf", RowKind::Record, RowState::Wrong),
                ("dmarc", RowKind::Record, RowState::Missing),
                ("fcrdns:ipv4", RowKind::Reverse, RowState::Error),
            ]
        );
        assert_eq!(view.rows[1].expected, "expected value");
        assert_eq!(view.rows[1].found, ["v=spf1 -all"]);
        assert!(!view.all_required_ok);
        assert_eq!(view.checked_at, Some(at));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["rows"][2]["state"], "missing");
        assert_eq!(json["checked_at"], 1000);

        let fine = DnsView::of(&results[..1], at);
        assert!(fine.all_required_ok, "an optional missing record does not fail the list");
    }

    /// Classification follows `mailroom dns --check`'s judgement of what was found.
    #[test]
    fn found_values_are_judged_as_dns_check_judges_them() {
        let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        let judged = |found: &[&str]| {
            let r = result("mx", "MX", true, Status::Ok, found);
            let found: Vec<String> = found.iter().map(|s| s.to_string()).collect();
            let status = crate::dns::check::judge(&r.record, &found, "mx.example.org", &[ip]);
            DnsRow::of(&CheckResult { status, ..r }).state
        };
        assert_eq!(judged(&["10 mx.example.org."]), RowState::Ok);
        assert_eq!(judged(&["10 elsewhere.example.net."]), RowState::Wrong);
    }

    /// The refresher runs the real check through a loopback dnsmasq when asked, without
    /// waiting for its first timer.
    #[tokio::test]
    async fn the_refresher_checks_live_dns_when_asked() {
        use crate::dns::testdns::TestDns;
        let Some(dns) = TestDns::start_with(
            &["example.org"],
            &[("example.org", "v=spf1 mx -all")],
            &[("mx.example.org", "192.0.2.25")],
            &["--mx-host=example.org,mx.example.org,10"],
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let env = crate::config::EnvSource::from_pairs([
            ("MAILROOM_HOSTNAME", "mx.example.org".to_string()),
            ("MAILROOM_DATA_DIR", dir.path().display().to_string()),
            ("MAILROOM_DNS_SERVERS", dns.addr.to_string()),
            ("MAILROOM_PUBLIC_IPV4", "192.0.2.25".to_string()),
            ("MAILROOM_ACME", "off".to_string()),
        ]);
        let (config, _) = crate::config::Config::load(&env).unwrap();
        let resolver = crate::dns::resolver::build(&config.dns_servers).unwrap();
        let list = Arc::new(DnsChecklist::default());
        let task = list.spawn(config.dns(), resolver);
        list.request_refresh();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while list.view().checked_at.is_none() {
            assert!(std::time::Instant::now() < deadline, "no check within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let view = list.view();
        assert_eq!(view.error, None);
        let state = |record: &str| view.rows.iter().find(|r| r.record == record).map(|r| r.state);
        assert_eq!(state("mx"), Some(RowState::Ok), "{view:#?}");
        assert_eq!(state("spf"), Some(RowState::Ok), "{view:#?}");
        assert_eq!(state("dmarc"), Some(RowState::Missing), "{view:#?}");
        assert!(
            view.rows.iter().any(|r| r.kind == RowKind::Reverse && r.name == "25.2.0.192.in-addr.arpa."),
            "{view:#?}"
        );
        assert!(!view.all_required_ok);
    }

    #[tokio::test]
    async fn a_page_reads_the_stored_result_without_waiting() {
        let list = DnsChecklist::default();
        assert_eq!(list.view(), DnsView::default());
        list.store(DnsView { error: Some("no keys".into()), ..DnsView::default() });
        assert_eq!(list.view().error.as_deref(), Some("no keys"));
    }
}
