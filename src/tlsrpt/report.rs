//! One SMTP TLS report as bytes: the JSON of RFC 8460 section 4, gzipped, in the
//! `multipart/report; report-type="tlsrpt"` message of section 5.3. Pure: no I/O.

use std::collections::BTreeMap;

use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use serde::Serialize;

use super::record::TlsRow;
use crate::smtp::client::tls_outcome::TlsPolicy;

/// Who sends the report and what it covers.
#[derive(Clone, Debug)]
pub struct ReportMeta {
    /// `organization-name`, and the submitter: our hostname.
    pub organization: String,
    /// `contact-info`: the address reports come from.
    pub contact: String,
    pub report_id: String,
    /// The policy (recipient) domain the report is about.
    pub domain: String,
    /// Seconds since the epoch, inclusive.
    pub begin: u64,
    pub end: u64,
}

/// The report (RFC 8460 section 4.4), field names as the RFC writes them.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    pub contact_info: String,
    pub report_id: String,
    pub policies: Vec<PolicyReport>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    pub start_datetime: String,
    pub end_datetime: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyReport {
    pub policy: PolicyDesc,
    pub summary: Summary,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyDesc {
    pub policy_type: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_string: Vec<String>,
    pub policy_domain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    pub result_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    pub failed_session_count: u64,
}

/// RFC 3339 UTC, as section 4.4's `date-time` wants.
fn datetime(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The policy as the report describes it (section 4.4 `policy`).
fn describe(policy: &TlsPolicy, domain: &str) -> PolicyDesc {
    match policy {
        TlsPolicy::Sts { id: _, mode, mx, max_age } => {
            let mut lines = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
            lines.extend(mx.iter().map(|m| format!("mx: {m}")));
            lines.push(format!("max_age: {max_age}"));
            PolicyDesc { policy_type: "sts", policy_string: lines, policy_domain: domain.into(), mx_host: mx.clone() }
        }
        // One entry per MX host: its TLSA records are the policy (section 4.4).
        TlsPolicy::Tlsa { mx_host, records } => PolicyDesc {
            policy_type: "tlsa",
            policy_string: records.clone(),
            policy_domain: domain.into(),
            mx_host: mx_host.iter().cloned().collect(),
        },
        // Published but not fetched: the type without a policy to quote.
        TlsPolicy::StsUnavailable { id: _ } => PolicyDesc {
            policy_type: "sts",
            policy_string: Vec::new(),
            policy_domain: domain.into(),
            mx_host: Vec::new(),
        },
        TlsPolicy::NoPolicyFound => PolicyDesc {
            policy_type: "no-policy-found",
            policy_string: Vec::new(),
            policy_domain: domain.into(),
            mx_host: Vec::new(),
        },
    }
}

impl Report {
    /// The report of `meta.domain` from its counted rows: one entry per policy seen,
    /// with its successes, failures and the failures by result and hosts.
    pub fn build(meta: &ReportMeta, rows: &[(TlsRow, u64)]) -> Report {
        let mut by_policy: BTreeMap<&TlsPolicy, Vec<(&TlsRow, u64)>> = BTreeMap::new();
        for (row, n) in rows {
            by_policy.entry(&row.policy).or_default().push((row, *n));
        }
        let policies = by_policy
            .into_iter()
            .map(|(policy, rows)| {
                let mut summary = Summary::default();
                let mut failures = Vec::new();
                for (row, n) in rows {
                    match &row.failure {
                        None => summary.total_successful_session_count += n,
                        Some(f) => {
                            summary.total_failure_session_count += n;
                            failures.push(FailureDetail {
                                result_type: f.result_type.as_str(),
                                sending_mta_ip: f.sending_mta_ip.map(|ip| ip.to_string()),
                                receiving_mx_hostname: f.receiving_mx_hostname.clone(),
                                receiving_ip: f.receiving_ip.map(|ip| ip.to_string()),
                                failed_session_count: n,
                            });
                        }
                    }
                }
                PolicyReport { policy: describe(policy, &meta.domain), summary, failure_details: failures }
            })
            .collect();
        Report {
            organization_name: meta.organization.clone(),
            date_range: DateRange { start_datetime: datetime(meta.begin), end_datetime: datetime(meta.end) },
            contact_info: meta.contact.clone(),
            report_id: meta.report_id.clone(),
            policies,
        }
    }
}

/// The attachment's file name (RFC 8460 section 5.3):
/// `sender!policy-domain!begin!end!unique-id.json.gz`.
pub fn file_name(meta: &ReportMeta) -> String {
    let unique: String = meta.report_id.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("{}!{}!{}!{}!{unique}.json.gz", meta.organization, meta.domain, meta.begin, meta.end)
}

/// The MIME message carrying the gzipped `report` from `from` to `to`, unsigned.
pub fn to_message(meta: &ReportMeta, report: &Report, from: &str, to: &str) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    let gz = crate::dmarc::report::gzip(&json)?;
    let subject =
        format!("Report Domain: {} Submitter: {} Report-ID: <{}>", meta.domain, meta.organization, meta.report_id);
    let text = format!("This is an SMTP TLS report (RFC 8460) from {} for {}.\r\n", meta.organization, meta.domain);
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new("application/tlsrpt+gzip", gz).attachment(file_name(meta)),
        ],
    );
    MessageBuilder::new()
        .from(("", from))
        .to(vec![("", to)])
        // Written as is, as the DMARC report's subject (`dmarc::report`).
        .header("Subject", Raw::new(subject))
        .message_id(format!("{}@{}", meta.report_id, meta.organization))
        .header("TLS-Report-Domain", Raw::new(meta.domain.clone()))
        .header("TLS-Report-Submitter", Raw::new(meta.organization.clone()))
        .header("Auto-Submitted", HeaderType::Text("auto-generated".into()))
        .body(body)
        .write_to_vec()
}
