//! Reading the SMTP TLS reports other senders mail to our `rua` (`postmaster@<domain>`,
//! as `dns/records.rs` publishes), as metrics and log lines: how many sessions to our
//! MX hosts succeeded and failed, and why. The DMARC report reader
//! (`dmarc::receive::ReportInbox`) hands a message here when it carries an
//! `application/tlsrpt+gzip` or `+json` part, with the same bounds: the message, the
//! decompressed JSON ([`MAX_REPORT_XML`]), the failure lines logged; `domain` labels are
//! our configured domains or `other`. The message is delivered to the mailbox anyway.

use mail_parser::{MessageParser, MimeHeaders};
use serde::Deserialize;

use crate::dmarc::receive::{MAX_REPORT_XML, ReportReadError, bounded};

/// Most failure details logged per report.
const MAX_LOGGED_FAILURES: usize = 100;

/// A received report: what the metrics and log lines need of RFC 8460 section 4.4.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ReceivedReport {
    #[serde(default)]
    pub organization_name: String,
    #[serde(default)]
    pub report_id: String,
    pub policies: Vec<ReceivedPolicy>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ReceivedPolicy {
    pub policy: ReceivedPolicyDesc,
    pub summary: ReceivedSummary,
    #[serde(default)]
    pub failure_details: Vec<ReceivedFailure>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ReceivedPolicyDesc {
    pub policy_type: String,
    pub policy_domain: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ReceivedSummary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ReceivedFailure {
    pub result_type: String,
    #[serde(default)]
    pub sending_mta_ip: Option<String>,
    #[serde(default)]
    pub receiving_mx_hostname: Option<String>,
    #[serde(default)]
    pub receiving_ip: Option<String>,
    #[serde(default)]
    pub failed_session_count: u64,
}

/// The TLS report in `message`: `Ok(None)` when it carries none (it may be a DMARC
/// report), an error when it carries one that cannot be read.
pub fn read_report(message: &[u8]) -> Result<Option<ReceivedReport>, ReportReadError> {
    let parsed = MessageParser::default().parse(message).ok_or(ReportReadError::NotMime)?;
    for part in parsed.parts.iter() {
        let Some(ctype) = part.content_type() else { continue };
        if !ctype.ctype().eq_ignore_ascii_case("application") {
            continue;
        }
        let json = match ctype.subtype().map(str::to_ascii_lowercase).as_deref() {
            Some("tlsrpt+gzip") => bounded(flate2::read::GzDecoder::new(part.contents()))?,
            Some("tlsrpt+json") if part.contents().len() as u64 <= MAX_REPORT_XML => part.contents().to_vec(),
            Some("tlsrpt+json") => return Err(ReportReadError::TooLarge),
            _ => continue,
        };
        return serde_json::from_slice(&json).map(Some).map_err(|e| ReportReadError::Json(e.to_string()));
    }
    Ok(None)
}

/// Metrics and log lines for one report; `label` names a policy domain's metric label.
pub fn account<'a>(report: &ReceivedReport, label: impl Fn(&str) -> &'a str) {
    let m = crate::metrics::metrics();
    let mut logged = 0;
    for p in &report.policies {
        let domain = &p.policy.policy_domain;
        let l = label(domain);
        m.tls_reports_received_total.with_label_values(&[l]).inc();
        let (ok, failed) = (p.summary.total_successful_session_count, p.summary.total_failure_session_count);
        m.tls_report_sessions_total.with_label_values(&[l, "success"]).inc_by(ok);
        m.tls_report_sessions_total.with_label_values(&[l, "failure"]).inc_by(failed);
        tracing::info!(reporter = %report.organization_name, report_id = %report.report_id, %domain,
            policy = %p.policy.policy_type, success = ok, failure = failed, "SMTP TLS report received");
        for f in &p.failure_details {
            if logged == MAX_LOGGED_FAILURES {
                tracing::info!(reporter = %report.organization_name, "SMTP TLS report: further failure details not logged");
                return;
            }
            logged += 1;
            tracing::info!(reporter = %report.organization_name, %domain, result = %f.result_type,
                sending_mta_ip = f.sending_mta_ip.as_deref().unwrap_or(""),
                receiving_mx = f.receiving_mx_hostname.as_deref().unwrap_or(""),
                receiving_ip = f.receiving_ip.as_deref().unwrap_or(""),
                sessions = f.failed_session_count, "SMTP TLS report failure");
        }
    }
}
