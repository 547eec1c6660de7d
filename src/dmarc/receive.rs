//! Reading the aggregate reports other receivers send about our domains (to the `rua`
//! address `dns/records.rs` publishes: `postmaster@<domain>`), as metrics and log lines:
//! how much mail claiming our domains passed DMARC, and from which addresses.
//!
//! The message is still delivered to the mailbox; this only reads a copy, beside the
//! delivery (the reply never waits for it), on the blocking pool, one report at a time (others arriving meanwhile are
//! delivered unread and counted as such). Everything is bounded: the message, the
//! decompressed XML, the rows and the log lines; `domain` labels are only our configured
//! domains (anything else is `other`). Formats: gzip, zip (stored or deflated, the first
//! file) and plain XML, as an attachment or the body.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;

use mail_parser::{MessageParser, MimeHeaders};
use quick_xml::events::Event;

/// Largest message read as a report.
pub const MAX_REPORT_MESSAGE: usize = 10 * 1024 * 1024;
/// Largest XML read (after decompression).
pub const MAX_REPORT_XML: u64 = 32 * 1024 * 1024;
/// Most rows read from one report.
const MAX_ROWS: usize = 100_000;
/// Most source addresses logged per report (the rest are summed in one line).
const MAX_LOGGED_SOURCES: usize = 100;

/// What one report says: its domain and, per source address, messages that passed
/// DMARC (an aligned DKIM or SPF pass) and that did not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReceivedReport {
    pub org_name: String,
    pub domain: String,
    pub sources: BTreeMap<IpAddr, (u64, u64)>,
}

impl ReceivedReport {
    pub fn totals(&self) -> (u64, u64) {
        self.sources.values().fold((0, 0), |(p, f), (sp, sf)| (p.saturating_add(*sp), f.saturating_add(*sf)))
    }
}

/// Why a message to a report address could not be read as a report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportReadError {
    #[error("not a MIME message")]
    NotMime,
    #[error("no report attachment (gzip, zip or XML)")]
    NoReport,
    #[error("the compressed report is damaged: {0}")]
    Compression(String),
    #[error("the report is larger than {MAX_REPORT_XML} bytes uncompressed")]
    TooLarge,
    #[error("not a DMARC aggregate report: {0}")]
    Xml(String),
    #[error("not an SMTP TLS report: {0}")]
    Json(String),
}

/// The addresses reports arrive at and the domains they may be about.
#[derive(Debug)]
pub struct ReportInbox {
    /// `postmaster@<domain>` for each of our domains, lower case.
    addresses: Vec<String>,
    domains: Vec<String>,
    busy: Arc<tokio::sync::Semaphore>,
}

impl ReportInbox {
    pub fn new(domains: &[String]) -> ReportInbox {
        ReportInbox {
            addresses: domains.iter().map(|d| format!("postmaster@{}", d.to_ascii_lowercase())).collect(),
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            busy: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// Is one of `recipients` a report address?
    pub fn is_for_us<'a>(&self, mut recipients: impl Iterator<Item = &'a str>) -> bool {
        recipients.any(|r| self.addresses.iter().any(|a| a.eq_ignore_ascii_case(r)))
    }

    /// Read `message` as a report in the background (the caller does not wait).
    pub fn read_later(self: &Arc<Self>, message: &[u8]) {
        if message.len() > MAX_REPORT_MESSAGE {
            tracing::info!(size = message.len(), "message to the DMARC report address too large to read as a report");
            unreadable();
            return;
        }
        let Ok(permit) = self.busy.clone().try_acquire_owned() else {
            tracing::info!("another DMARC report is being read; this one is delivered unread");
            unreadable();
            return;
        };
        let message = message.to_vec();
        let inbox = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match crate::tlsrpt::receive::read_report(&message) {
                Ok(Some(report)) => return crate::tlsrpt::receive::account(&report, |d| inbox.label(d)),
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(error = %e, "message to the report address is not a readable TLS report");
                    return unreadable();
                }
            }
            match read_report(&message) {
                Ok(report) => inbox.account(&report),
                Err(e) => {
                    tracing::info!(error = %e, "message to the DMARC report address is not a readable report");
                    unreadable();
                }
            }
        });
    }

    /// The `domain` label for a reported domain: ours, or `other`.
    pub fn label<'a>(&'a self, domain: &str) -> &'a str {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().find(|ours| **ours == d).map_or("other", String::as_str)
    }

    /// Metrics and log lines for one report.
    pub fn account(&self, report: &ReceivedReport) {
        let m = crate::metrics::metrics();
        let label = self.label(&report.domain);
        m.dmarc_reports_received_total.with_label_values(&[label]).inc();
        let (pass, fail) = report.totals();
        m.dmarc_report_messages_total.with_label_values(&[label, "pass"]).inc_by(pass);
        m.dmarc_report_messages_total.with_label_values(&[label, "fail"]).inc_by(fail);
        tracing::info!(reporter = %report.org_name, domain = %report.domain, pass, fail, sources = report.sources.len(), "DMARC aggregate report received");
        for (ip, (pass, fail)) in report.sources.iter().take(MAX_LOGGED_SOURCES) {
            tracing::info!(reporter = %report.org_name, domain = %report.domain, source_ip = %ip, pass, fail, "DMARC report row");
        }
        if report.sources.len() > MAX_LOGGED_SOURCES {
            let rest = report.sources.len() - MAX_LOGGED_SOURCES;
            tracing::info!(reporter = %report.org_name, domain = %report.domain, sources = rest, "DMARC report: further source addresses not logged");
        }
    }
}

fn unreadable() {
    crate::metrics::metrics().dmarc_reports_unreadable_total.inc();
}

/// Find the report in a message and read it.
pub fn read_report(message: &[u8]) -> Result<ReceivedReport, ReportReadError> {
    let parsed = MessageParser::default().parse(message).ok_or(ReportReadError::NotMime)?;
    let mut found = None;
    for part in parsed.parts.iter() {
        let name = part.attachment_name().unwrap_or("").to_ascii_lowercase();
        let ctype = part
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")).to_ascii_lowercase())
            .unwrap_or_default();
        let kind = if ctype.contains("gzip") || name.ends_with(".gz") {
            Some(Kind::Gzip)
        } else if ctype.contains("zip") || name.ends_with(".zip") {
            Some(Kind::Zip)
        } else if ctype.ends_with("/xml") || name.ends_with(".xml") {
            Some(Kind::Xml)
        } else {
            None
        };
        if let Some(kind) = kind {
            found = Some((kind, part.contents()));
            break;
        }
    }
    let (kind, bytes) = found.ok_or(ReportReadError::NoReport)?;
    let xml = match kind {
        Kind::Gzip => bounded(flate2::read::GzDecoder::new(bytes))?,
        Kind::Zip => unzip_first(bytes)?,
        Kind::Xml => {
            if bytes.len() as u64 > MAX_REPORT_XML {
                return Err(ReportReadError::TooLarge);
            }
            bytes.to_vec()
        }
    };
    parse_xml(&xml)
}

enum Kind {
    Gzip,
    Zip,
    Xml,
}

/// All of `reader` up to [`MAX_REPORT_XML`] bytes (DMARC's XML, TLS reports' JSON).
pub(crate) fn bounded(reader: impl Read) -> Result<Vec<u8>, ReportReadError> {
    let mut out = Vec::new();
    reader.take(MAX_REPORT_XML + 1).read_to_end(&mut out).map_err(|e| ReportReadError::Compression(e.to_string()))?;
    if out.len() as u64 > MAX_REPORT_XML {
        return Err(ReportReadError::TooLarge);
    }
    Ok(out)
}

/// The first file of a zip archive (APPNOTE 4.3.7: a local file header, then the data,
/// stored or deflated). Reports hold one file; sizes in the header may be zero (a data
/// descriptor follows), so deflated data is read to its end marker.
fn unzip_first(zip: &[u8]) -> Result<Vec<u8>, ReportReadError> {
    let bad = |what: &str| ReportReadError::Compression(format!("zip: {what}"));
    if zip.len() < 30 || zip[..4] != [0x50, 0x4b, 0x03, 0x04] {
        return Err(bad("no local file header"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]) as usize;
    let flags = u16_at(6);
    let method = u16_at(8);
    let compressed = u32_at(18);
    let start = 30 + u16_at(26) + u16_at(28);
    let data = zip.get(start..).ok_or_else(|| bad("truncated"))?;
    match method {
        0 if flags & 0x08 == 0 => {
            let stored = data.get(..compressed).ok_or_else(|| bad("truncated"))?;
            bounded(stored)
        }
        8 => bounded(flate2::read::DeflateDecoder::new(data)),
        _ => Err(bad("unsupported compression method")),
    }
}

/// Read the parts of the XML that the metrics need.
pub fn parse_xml(xml: &[u8]) -> Result<ReceivedReport, ReportReadError> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut report = ReceivedReport::default();
    let mut saw_feedback = false;
    let mut rows = 0usize;
    let (mut ip, mut count, mut dkim, mut spf) = (None::<IpAddr>, 0u64, String::new(), String::new());
    // An element's text arrives in pieces around entity references: gathered here, used
    // at its end tag.
    let mut text = String::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| ReportReadError::Xml(e.to_string()))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).to_ascii_lowercase();
                if path.is_empty() {
                    if name != "feedback" {
                        return Err(ReportReadError::Xml(format!("root element {name:?}, not feedback")));
                    }
                    saw_feedback = true;
                }
                if name == "record" {
                    (ip, count, dkim, spf) = (None, 0, String::new(), String::new());
                }
                path.push(name);
                text.clear();
                if path.len() > 16 {
                    return Err(ReportReadError::Xml("nested too deeply".into()));
                }
            }
            Event::Text(t) if text.len() < 1024 => {
                text.push_str(&t.decode().map_err(|e| ReportReadError::Xml(e.to_string()))?);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| ReportReadError::Xml(e.to_string()))?;
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                    text.push_str(s);
                }
            }
            Event::End(_) => {
                let value = text.trim();
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                match p.as_slice() {
                    ["feedback", "report_metadata", "org_name"] => report.org_name = value.chars().take(200).collect(),
                    ["feedback", "policy_published", "domain"] => report.domain = value.chars().take(255).collect(),
                    ["feedback", "record", "row", "source_ip"] => ip = value.parse().ok(),
                    ["feedback", "record", "row", "count"] => count = value.parse().unwrap_or(0),
                    ["feedback", "record", "row", "policy_evaluated", "dkim"] => dkim = value.to_ascii_lowercase(),
                    ["feedback", "record", "row", "policy_evaluated", "spf"] => spf = value.to_ascii_lowercase(),
                    _ => {}
                }
                text.clear();
                if path.pop().as_deref() == Some("record") {
                    rows += 1;
                    if rows > MAX_ROWS {
                        break;
                    }
                    if let Some(ip) = ip {
                        let entry = report.sources.entry(ip).or_default();
                        if dkim == "pass" || spf == "pass" {
                            entry.0 = entry.0.saturating_add(count);
                        } else {
                            entry.1 = entry.1.saturating_add(count);
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_feedback || report.domain.is_empty() {
        return Err(ReportReadError::Xml("no feedback/policy_published/domain".into()));
    }
    Ok(report)
}

#[cfg(test)]
#[path = "receive_tests.rs"]
mod tests;
