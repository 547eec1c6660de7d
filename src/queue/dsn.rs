//! Delivery Status Notifications (RFC 3464): the bounce and the delay warning.
//!
//! A DSN is a `multipart/report; report-type=delivery-status` (RFC 6522) with three
//! parts: a human explanation, the machine-readable `message/delivery-status` (one
//! per-message block, then one block per recipient with Final-Recipient, Action, Status
//! and Diagnostic-Code), and the original header section as `text/rfc822-headers` —
//! headers only, so a bounce never re-sends a large attachment or the spam that caused
//! it. It comes From `MAILER-DAEMON@<hostname>` and is sent with the null sender, and it
//! carries `Auto-Submitted: auto-replied` (RFC 3834) so autoresponders stay quiet.
//!
//! Building is pure: envelope and bytes in, message bytes out.

use std::time::SystemTime;

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use super::envelope::{Envelope, format_time};
use crate::accounts::Address;
use crate::smtp::status::{Enhanced, Status};

/// Most bytes of original headers returned (a header section is rarely over a few KiB;
/// this bounds the bounce of a message with a pathological one).
const MAX_RETURNED_HEADERS: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnKind {
    /// Delivery failed for good (5xx, null MX, or the queue lifetime ran out).
    Failure,
    /// Still trying: the once-only warning after the delay threshold.
    Delay,
}

/// One recipient's line in the report.
#[derive(Clone, Debug)]
pub struct DsnRecipient {
    pub address: Address,
    /// The last reply or local diagnostic.
    pub status: Status,
}

/// The status code to report: the status's enhanced code if it has one of the right
/// class, else the generic one (RFC 3463 `X.0.0`).
fn report_code(status: &Status, kind: DsnKind) -> Enhanced {
    let class = match kind {
        DsnKind::Failure => 5,
        DsnKind::Delay => 4,
    };
    status.enhanced.filter(|e| e.0 == class).unwrap_or(Enhanced(class, 0, 0))
}

/// Build the DSN for `envelope`'s sender about `recipients`.
pub fn build(
    hostname: &str,
    envelope: &Envelope,
    kind: DsnKind,
    recipients: &[DsnRecipient],
    original: &[u8],
    retry_until: Option<SystemTime>,
) -> Vec<u8> {
    let mailer_daemon = format!("MAILER-DAEMON@{hostname}");
    let to = envelope.sender.as_ref().map(|a| a.to_string()).unwrap_or_default();
    let (subject, action, intro) = match kind {
        DsnKind::Failure => (
            "Undelivered Mail Returned to Sender",
            "failed",
            "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients. The details are below.",
        ),
        DsnKind::Delay => (
            "Delayed Mail (still being retried)",
            "delayed",
            "This is a warning only: your message has not been delivered yet\r\nto the recipients below. Delivery will be retried; you do not need\r\nto resend it.",
        ),
    };

    let mut human = format!("This is the mail system at host {hostname}.\r\n\r\n{intro}\r\n\r\n");
    for r in recipients {
        human.push_str(&format!("<{}>: {}\r\n", r.address, r.status));
    }
    if let Some(until) = retry_until {
        human.push_str(&format!("\r\nDelivery will be tried until {}.\r\n", format_time(until)));
    }

    let arrival = mail_builder::headers::date::Date::new(unix(envelope.created)).to_rfc822();
    let mut status = format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Mailroom-Queue-ID: {}\r\nArrival-Date: {arrival}\r\n",
        envelope.id
    );
    for r in recipients {
        let code = report_code(&r.status, kind);
        // RFC 3464 §2.3.6: `smtp` only for what an SMTP server said.
        let diag_type = if r.status.is_reply() { "smtp" } else { "X-mailroom" };
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {code}\r\nDiagnostic-Code: {diag_type}; {}\r\n",
            r.address,
            one_line(&r.status.one_line())
        ));
        if let Some(until) = retry_until {
            let date = mail_builder::headers::date::Date::new(unix(until)).to_rfc822();
            status.push_str(&format!("Will-Retry-Until: {date}\r\n"));
        }
    }

    let headers = original_headers(original);
    let headers_encoding = if headers.is_ascii() { "7bit" } else { "8bit" };
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new(ContentType::new("text/plain").attribute("charset", "utf-8"), human),
            MimePart::new(ContentType::new("message/delivery-status"), status).transfer_encoding("7bit"),
            MimePart::new(ContentType::new("text/rfc822-headers"), headers).transfer_encoding(headers_encoding),
        ],
    );
    let builder = MessageBuilder::new()
        .from(("Mail Delivery System", mailer_daemon.as_str()))
        .to(to.as_str())
        .subject(subject)
        .date(unix(SystemTime::now()))
        .message_id(format!("dsn.{}.{}@{hostname}", envelope.id, rand::random::<u32>()))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report);
    builder.write_to_vec().unwrap_or_default()
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A diagnostic is one header field line: no CR/LF inside.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The header section of `message` (up to the first empty line), CRLF line ends.
fn original_headers(message: &[u8]) -> String {
    let mut out = String::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || out.len() + line.len() > MAX_RETURNED_HEADERS {
            break;
        }
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::envelope::QueueId;
    use crate::smtp::status::Code;
    use mail_parser::{MessageParser, MimeHeaders};

    fn envelope() -> Envelope {
        Envelope::new(
            QueueId::generate(),
            Some(Address::parse("alice@here.test").unwrap()),
            &[Address::parse("bob@remote.test").unwrap()],
            "<orig@here.test>",
        )
    }

    const ORIGINAL: &[u8] = b"From: alice@here.test\r\nTo: bob@remote.test\r\nSubject: lunch?\r\nMessage-ID: <orig@here.test>\r\n\r\nSECRET BODY\r\n";

    #[test]
    fn failure_dsn_parses_back_as_rfc3464() {
        let rcpt = DsnRecipient {
            address: Address::parse("bob@remote.test").unwrap(),
            status: Status::new(550, (5, 1, 1), "no such user"),
        };
        let bytes = build("mx.here.test", &envelope(), DsnKind::Failure, &[rcpt], ORIGINAL, None);
        let msg = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        let from = msg.from().unwrap().first().unwrap();
        assert_eq!(from.address(), Some("MAILER-DAEMON@mx.here.test"));
        assert_eq!(msg.to().unwrap().first().unwrap().address(), Some("alice@here.test"));
        assert_eq!(msg.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
        let ct = msg.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));

        let parts: Vec<_> = msg.parts.iter().skip(1).collect();
        assert_eq!(parts.len(), 3);
        let human = String::from_utf8_lossy(parts[0].contents());
        assert!(human.contains("<bob@remote.test>: 550 5.1.1 no such user"), "{human}");
        assert_eq!(parts[1].content_type().unwrap().subtype(), Some("delivery-status"));
        let status = String::from_utf8_lossy(parts[1].contents());
        for needle in [
            "Reporting-MTA: dns; mx.here.test",
            "Final-Recipient: rfc822; bob@remote.test",
            "Action: failed",
            "Status: 5.1.1",
            "Diagnostic-Code: smtp; 550 5.1.1 no such user",
        ] {
            assert!(status.contains(needle), "{needle} missing in {status}");
        }
        assert_eq!(parts[2].content_type().unwrap().subtype(), Some("rfc822-headers"));
        let headers = String::from_utf8_lossy(parts[2].contents());
        assert!(headers.contains("Subject: lunch?"), "{headers}");
        assert!(!String::from_utf8_lossy(&bytes).contains("SECRET BODY"));
    }

    #[test]
    fn delay_dsn_says_delayed_and_until_when() {
        let rcpt = DsnRecipient {
            address: Address::parse("bob@remote.test").unwrap(),
            status: Status { code: Code::Local, enhanced: None, text: vec!["connection refused".into()] },
        };
        let until = SystemTime::now() + std::time::Duration::from_secs(86400);
        let bytes = build("mx.here.test", &envelope(), DsnKind::Delay, &[rcpt], ORIGINAL, Some(until));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("Action: delayed"), "{text}");
        assert!(text.contains("Status: 4.0.0"), "{text}");
        assert!(text.contains("Diagnostic-Code: X-mailroom; connection refused"), "{text}");
        assert!(text.contains("Will-Retry-Until: "), "{text}");
    }

    #[test]
    fn status_codes() {
        let code = |s: Status, kind| report_code(&s, kind).to_string();
        assert_eq!(code(Status::new(550, (5, 1, 1), "unknown"), DsnKind::Failure), "5.1.1");
        assert_eq!(code(Status::new(451, (4, 7, 1), "greylisted"), DsnKind::Failure), "5.0.0");
        assert_eq!(code(Status::new(451, (4, 7, 1), "greylisted"), DsnKind::Delay), "4.7.1");
        assert_eq!(code(Status::plain(554, ""), DsnKind::Failure), "5.0.0");
        assert_eq!(code(Status::local((5, 4, 7), "expired"), DsnKind::Failure), "5.4.7");
    }
}
