//! DNS: the resolver every lookup uses, the records an operator must publish
//! (`mailroom dns`), and the live check of them (`mailroom dns --check`, and every
//! 6 hours inside the server, exported as `mailroom_dns_record_ok`).
//!
//! `mailroom dns --check` also checks the reverse DNS of the addresses mail leaves from
//! ([`reverse`]); inside the server the SMTP client does that hourly.
//!
//! The check also completes DKIM rotations: a pending key generation becomes the
//! signing one as soon as both of its records are seen in DNS.

pub mod check;
pub mod interfaces;
pub mod records;
pub mod resolver;
pub mod reverse;
#[cfg(test)]
pub mod testdns;
pub mod tlsa;

use std::path::Path;
use std::time::{Duration, SystemTime};

pub use check::{CheckResult, Status};
pub use records::{DnsRecord, public_addresses, records, zone_fragment};

use hickory_resolver::TokioResolver;

use crate::config::{AcmeMode, DnsConfig};
use crate::mailauth::{KeyError, KeyRing, keys};
use crate::metrics::metrics;

/// How often the server re-checks its records.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// The key ring for printing records (generating keys on first use).
pub fn key_ring(config: &DnsConfig) -> Result<KeyRing, KeyError> {
    KeyRing::load_or_generate(&config.dkim_dir, &config.domains, config.dkim_selector.as_deref())
}

/// The records for this configuration.
/// With `MAILROOM_DANE=on`, the TLSA record of the certificate in use comes last; when
/// no certificate can be read, a placeholder saying why (the check then fails).
pub fn expected_records(config: &DnsConfig, ring: &KeyRing) -> Vec<DnsRecord> {
    let mut out = records(config, ring, &mta_sts_id(config));
    if config.dane {
        out.push(tlsa::tlsa_record(config).unwrap_or_else(|e| DnsRecord {
            domain: config.hostname.clone(),
            kind: "tlsa".into(),
            name: format!("_25._tcp.{}.", config.hostname),
            rtype: "TLSA".into(),
            value: "<3 1 1 of the certificate in use>".into(),
            required: true,
            comment: format!("DANE: no certificate to compute it from yet ({e})"),
        }));
    }
    out
}

/// The `id=` of the policy the server serves once its certificate is in place: an
/// ACME or operator certificate means `enforce`, the self-signed fallback `testing`.
fn mta_sts_id(config: &DnsConfig) -> String {
    use crate::http::mta_sts::{StsMode, policy_id, policy_text};
    let publicly_trusted = config.operator_certificate || config.acme != AcmeMode::Off;
    let mode = if publicly_trusted { StsMode::Enforce } else { StsMode::Testing };
    policy_id(&policy_text(&[config.hostname.as_str()], mode))
}

/// Run the check (`mailroom dns --check`, with a resolver of its own); promote
/// pending DKIM generations whose records are all ok. Returns the results and the
/// lines to print about rotations.
pub async fn run_check(config: &DnsConfig) -> Result<(Vec<CheckResult>, Vec<String>), String> {
    let ring = key_ring(config).map_err(|e| e.to_string())?;
    let resolver = resolver::build(&config.dns_servers)?;
    let (mut results, notes) = check_with(config, &ring, &resolver).await;
    let reverse = check_reverse(config, &resolver).await;
    merge_reverse(&mut results, reverse);
    Ok((results, notes))
}

/// The records and the reverse DNS checked through `resolver`, as `mailroom dns --check`
/// shows them, but without completing DKIM rotations (the periodic check does that, and
/// reloads the signers): what the status page shows.
pub async fn check_records(config: &DnsConfig, resolver: &TokioResolver) -> Result<Vec<CheckResult>, String> {
    let ring = key_ring(config).map_err(|e| e.to_string())?;
    let expected = expected_records(config, &ring);
    let addresses = public_addresses(config);
    let mut results = check::check_all(resolver, &expected, &config.hostname, &addresses).await;
    let reverse = check_reverse(config, resolver).await;
    merge_reverse(&mut results, reverse);
    Ok(results)
}

/// The sending address's FCrDNS line replaces the plain PTR line of the same name.
fn merge_reverse(results: &mut Vec<CheckResult>, reverse: Vec<CheckResult>) {
    results.retain(|r| r.record.kind != "ptr" || !reverse.iter().any(|x| x.record.name == r.record.name));
    results.extend(reverse);
}

/// `MAILROOM_PUBLIC_IPV4` and `MAILROOM_PUBLIC_IPV6`, when set.
pub fn configured_public(config: &DnsConfig) -> Vec<std::net::IpAddr> {
    let v4 = config.public_ipv4.map(std::net::IpAddr::V4);
    v4.into_iter().chain(config.public_ipv6.map(std::net::IpAddr::V6)).collect()
}

/// The reverse DNS of each address mail is sent from, as check results; the
/// `mailroom_dns_reverse_ok` gauge is set from them.
pub async fn check_reverse(config: &DnsConfig, resolver: &TokioResolver) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let detected = interfaces::public_addresses();
    for address in reverse::sending_addresses(&config.outbound, &configured_public(config), &detected) {
        let verdict = reverse::check(resolver, &address.ip, &config.hostname).await;
        metrics().dns_reverse_ok.with_label_values(&[reverse::family(&address.ip)]).set(i64::from(verdict.is_ok()));
        out.push(reverse::check_result(&address, &config.hostname, &verdict));
    }
    out
}

/// The check through the server's resolver. The ring is re-read every time: keys
/// rotate while the server runs.
async fn check_with(config: &DnsConfig, ring: &KeyRing, resolver: &TokioResolver) -> (Vec<CheckResult>, Vec<String>) {
    let expected = expected_records(config, ring);
    let addresses = public_addresses(config);
    let results = check::check_all(resolver, &expected, &config.hostname, &addresses).await;
    let notes = complete_rotations(&config.dkim_dir, ring, &results);
    for r in &results {
        metrics()
            .dns_record_ok
            .with_label_values(&[r.record.domain.as_str(), r.record.kind.as_str()])
            .set(i64::from(r.status == Status::Ok));
    }
    (results, notes)
}

/// Promote pending DKIM keys that are published; report retired selectors whose
/// records may now be deleted.
fn complete_rotations(dkim_dir: &Path, ring: &KeyRing, results: &[CheckResult]) -> Vec<String> {
    let mut notes = Vec::new();
    for dk in &ring.domains {
        if let Some(pending) = &dk.pending {
            let published = pending.keys.iter().all(|k| {
                results.iter().any(|r| r.record.kind == format!("dkim:{}", k.selector) && r.status == Status::Ok)
            });
            if published {
                match keys::promote_pending(dkim_dir, &dk.domain) {
                    Ok(true) => notes.push(format!(
                        "{}: new DKIM keys {} are published; signing switches to them now (old selector {} kept published for 7 more days)",
                        dk.domain, pending.base, dk.active.base
                    )),
                    Ok(false) => {}
                    Err(e) => notes.push(format!("{}: cannot switch DKIM keys: {e}", dk.domain)),
                }
            } else {
                notes.push(format!("{}: DKIM keys {} are waiting for their DNS records", dk.domain, pending.base));
            }
        }
        for (base, since) in &dk.retired {
            let age = SystemTime::now().duration_since(*since).unwrap_or_default();
            if age >= keys::RETIRED_RECORD_GRACE {
                notes.push(format!(
                    "{}: the DKIM records {base}e._domainkey and {base}r._domainkey are retired and safe to delete",
                    dk.domain
                ));
            }
        }
    }
    notes
}

/// One line per result, for the terminal.
pub fn format_results(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for r in results {
        let need = if r.record.required { "" } else { " (recommended)" };
        out.push_str(&format!("{:<8} {} {}{need}\n", r.status.word(), r.record.rtype, r.record.name));
        if matches!(r.status, Status::Wrong | Status::Missing | Status::Error) {
            out.push_str(&format!("         expected: {}\n", r.record.value));
            if !r.found.is_empty() {
                out.push_str(&format!("         found:    {}\n", r.found.join(" | ")));
            }
            if r.record.kind.starts_with("fcrdns:") {
                out.push_str(&format!("         FAILED:   {}\n", r.record.comment));
            }
        }
    }
    out
}

/// True when every required record is ok.
pub fn required_ok(results: &[CheckResult]) -> bool {
    results.iter().all(|r| !r.record.required || r.status == Status::Ok)
}

/// Inside the server: check every [`CHECK_INTERVAL`] (first after a minute), log
/// problems, export the gauge, and reload signers after a DKIM promotion.
pub fn spawn_periodic_check(
    config: DnsConfig,
    resolver: TokioResolver,
    on_promote: impl Fn() + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let mut reporter = ProblemReporter::new(&config);
        loop {
            let check = match key_ring(&config) {
                Ok(ring) => Ok(check_with(&config, &ring, &resolver).await),
                Err(e) => Err(e),
            };
            match check {
                Ok((results, notes)) => {
                    let bad: Vec<String> = results
                        .iter()
                        .filter(|r| r.record.required && r.status != Status::Ok)
                        .map(|r| format!("{} {} {}", r.status.word(), r.record.rtype, r.record.name))
                        .collect();
                    reporter.report(&bad);
                    for note in &notes {
                        tracing::info!("{note}");
                    }
                    if notes.iter().any(|n| n.contains("signing switches")) {
                        on_promote();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "DNS check failed"),
            }
            tokio::time::sleep(CHECK_INTERVAL).await;
        }
    })
}

/// How loud a periodic check's result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loudness {
    Warn,
    Info,
    Debug,
}

/// Says missing records once (and again when they change, or once a day), never for a
/// server whose names are all reserved test names (`.test`, `.example`, `localhost`…),
/// where nothing can be published: a dev setup would otherwise warn forever.
/// `mailroom dns --check` still shows everything when asked.
struct ProblemReporter {
    test_names_only: bool,
    last: Option<Vec<String>>,
    checks_since_warning: u32,
}

/// Repeat an unchanged warning after this many checks (4 × 6 h = a day).
const REPEAT_WARNING_EVERY: u32 = 4;

impl ProblemReporter {
    fn new(config: &DnsConfig) -> ProblemReporter {
        let public = |n: &str| crate::config::is_public_fqdn(n);
        let test_names_only = !public(&config.hostname) && !config.domains.iter().any(|d| public(d));
        ProblemReporter { test_names_only, last: None, checks_since_warning: 0 }
    }

    fn loudness(&mut self, problems: &[String]) -> Loudness {
        if problems.is_empty() {
            let was_bad = self.last.as_ref().is_some_and(|l| !l.is_empty());
            self.last = Some(Vec::new());
            return if was_bad || !self.test_names_only { Loudness::Info } else { Loudness::Debug };
        }
        if self.test_names_only {
            return Loudness::Debug;
        }
        let changed = self.last.as_deref() != Some(problems);
        self.last = Some(problems.to_vec());
        self.checks_since_warning += 1;
        if changed || self.checks_since_warning >= REPEAT_WARNING_EVERY {
            self.checks_since_warning = 0;
            Loudness::Warn
        } else {
            Loudness::Info
        }
    }

    fn report(&mut self, problems: &[String]) {
        let loudness = self.loudness(problems);
        if problems.is_empty() {
            match loudness {
                Loudness::Debug => tracing::debug!("DNS check: every required record is published"),
                _ => tracing::info!("DNS check: every required record is published"),
            }
            return;
        }
        let list = problems.join("; ");
        let text = "DNS check: required records are missing or wrong (see `mailroom dns --check`)";
        match loudness {
            Loudness::Warn => tracing::warn!(problems = %list, "{text}"),
            Loudness::Info => tracing::info!(problems = %list, "{text}"),
            Loudness::Debug => tracing::debug!(problems = %list, "{text} (test names: not warned about)"),
        }
    }
}

#[cfg(test)]
mod reporter_tests {
    use super::*;

    fn reporter(hostname: &str, domains: &[&str]) -> ProblemReporter {
        let public = |n: &str| crate::config::is_public_fqdn(n);
        ProblemReporter {
            test_names_only: !public(hostname) && !domains.iter().any(|d| public(d)),
            last: None,
            checks_since_warning: 0,
        }
    }

    #[test]
    fn a_test_domain_is_never_warned_about() {
        let mut r = reporter("mail.example.test", &["example.test"]);
        let missing = vec!["missing MX example.test.".to_string()];
        for _ in 0..10 {
            assert_eq!(r.loudness(&missing), Loudness::Debug);
        }
    }

    #[test]
    fn a_real_domain_is_warned_once_then_daily_and_when_it_changes() {
        let mut r = reporter("mx.mailroom.dev", &["mailroom.dev"]);
        let missing = vec!["missing MX mailroom.dev.".to_string()];
        let loudness: Vec<Loudness> = (0..6).map(|_| r.loudness(&missing)).collect();
        use Loudness::*;
        assert_eq!(loudness, [Warn, Info, Info, Info, Warn, Info]);
        let other = vec!["wrong TXT mailroom.dev.".to_string()];
        assert_eq!(r.loudness(&other), Warn, "a change is said at once");
        assert_eq!(r.loudness(&[]), Info, "and so is the repair");
    }
}
