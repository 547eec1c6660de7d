//! Reading received reports: one our own generator made, a hand-written one (plain XML,
//! zipped stored and deflated), and what must be refused.

use std::io::Write;

use super::*;
use crate::dmarc::record::{Destination, DkimAuth, Observation, PolicyPublished, SpfAuth};
use crate::dmarc::report::{AggregateReport, ReportMeta};

fn row(ip: &str, dkim_aligned: bool, spf_aligned: bool) -> Observation {
    Observation {
        policy: PolicyPublished {
            domain: "example.com".into(),
            adkim: "r".into(),
            aspf: "r".into(),
            p: "quarantine".into(),
            sp: "quarantine".into(),
            pct: 100,
            fo: "0".into(),
            rua: vec![Destination { address: "postmaster@example.com".into(), max_size: 0 }],
        },
        source_ip: ip.parse().unwrap(),
        header_from: "example.com".into(),
        disposition: "none".into(),
        dkim_aligned,
        spf_aligned,
        dkim: vec![DkimAuth { domain: "example.com".into(), selector: "s".into(), result: "pass".into() }],
        spf: SpfAuth { domain: "example.com".into(), scope: "mfrom".into(), result: "pass".into() },
    }
}

#[test]
fn a_report_from_our_own_generator_reads_back() {
    let report = AggregateReport {
        meta: ReportMeta {
            org_name: "mx.remote.test".into(),
            email: "noreply-dmarc@remote.test".into(),
            report_id: "1".into(),
            begin: 0,
            end: 86_399,
        },
        policy: row("192.0.2.1", true, true).policy,
        rows: vec![
            (row("192.0.2.1", true, false), 5),
            (row("192.0.2.1", false, false), 2),
            (row("2001:db8::7", false, true), 1),
        ],
    };
    let msg = report.to_message("noreply-dmarc@remote.test", &["postmaster@example.com".into()]).unwrap();
    let read = read_report(&msg).unwrap();
    assert_eq!(read.domain, "example.com");
    assert_eq!(read.org_name, "mx.remote.test");
    let sources: Vec<(String, (u64, u64))> = read.sources.iter().map(|(ip, c)| (ip.to_string(), *c)).collect();
    assert_eq!(sources, vec![("192.0.2.1".to_string(), (5, 2)), ("2001:db8::7".to_string(), (1, 0))]);
    assert_eq!(read.totals(), (6, 2));
}

/// A report as another receiver writes it (namespace, extra elements, a second record
/// for the same source, entity references in the org name).
const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <version>1.0</version>
  <report_metadata>
    <org_name>Mail &amp;&#32;Co</org_name>
    <email>noreply-dmarc-support@mail.example.net</email>
    <report_id>17712837651993920144</report_id>
    <date_range><begin>1764979200</begin><end>1765065599</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>Example.COM</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p><sp>quarantine</sp><pct>100</pct><np>quarantine</np>
  </policy_published>
  <record>
    <row>
      <source_ip>203.0.113.9</source_ip><count>4</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated>
    </row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results><dkim><domain>example.com</domain><result>pass</result><selector>mr1</selector></dkim><spf><domain>bounce.example.com</domain><result>pass</result></spf></auth_results>
  </record>
  <record>
    <row>
      <source_ip>198.51.100.66</source_ip><count>3</count>
      <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated>
    </row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results><spf><domain>spoof.example</domain><result>softfail</result></spf></auth_results>
  </record>
  <record>
    <row>
      <source_ip>203.0.113.9</source_ip><count>1</count>
      <policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>pass</spf></policy_evaluated>
    </row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results><spf><domain>example.com</domain><result>pass</result></spf></auth_results>
  </record>
</feedback>
"#;

fn expect_sample(read: &ReceivedReport) {
    assert_eq!(read.domain, "Example.COM");
    assert_eq!(read.org_name, "Mail & Co");
    let sources: Vec<(String, (u64, u64))> = read.sources.iter().map(|(ip, c)| (ip.to_string(), *c)).collect();
    assert_eq!(sources, vec![("198.51.100.66".to_string(), (0, 3)), ("203.0.113.9".to_string(), (5, 0))]);
}

fn message(content_type: &str, name: &str, body: &[u8]) -> Vec<u8> {
    mail_builder::MessageBuilder::new()
        .from(("", "noreply-dmarc-support@mail.example.net"))
        .to(("", "postmaster@example.com"))
        .subject("Report domain: example.com Submitter: mail.example.net")
        .text_body("report attached")
        .attachment(content_type, name, body.to_vec())
        .write_to_vec()
        .unwrap()
}

/// A zip archive holding `data` as `name`, stored (method 0) or deflated (8).
fn zip(name: &str, data: &[u8], method: u16) -> Vec<u8> {
    let body = if method == 8 {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    } else {
        data.to_vec()
    };
    let mut z = vec![0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0];
    z.extend_from_slice(&method.to_le_bytes());
    z.extend_from_slice(&[0; 4]); // time, date
    z.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    z.extend_from_slice(&(body.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(&body);
    z
}

#[test]
fn a_hand_written_report_reads_as_xml_zip_and_gzip() {
    expect_sample(&read_report(&message("text/xml", "report.xml", SAMPLE.as_bytes())).unwrap());
    for method in [0, 8] {
        let z = zip("mail.example.net!example.com!1764979200!1765065599.xml", SAMPLE.as_bytes(), method);
        expect_sample(&read_report(&message("application/zip", "r.zip", &z)).unwrap());
    }
    let gz = crate::dmarc::report::gzip(SAMPLE.as_bytes()).unwrap();
    expect_sample(&read_report(&message("application/octet-stream", "r.xml.gz", &gz)).unwrap());
}

#[test]
fn what_is_not_a_report_is_refused_with_a_reason() {
    let plain = b"From: a@b.example\r\nTo: postmaster@example.com\r\nSubject: hi\r\n\r\nhello\r\n";
    assert_eq!(read_report(plain), Err(ReportReadError::NoReport));
    let other = message("text/xml", "x.xml", b"<rss><channel/></rss>");
    assert!(matches!(read_report(&other), Err(ReportReadError::Xml(_))));
    let broken = message("application/gzip", "x.xml.gz", b"not gzip at all");
    assert!(matches!(read_report(&broken), Err(ReportReadError::Compression(_))));
    let no_domain = message("text/xml", "x.xml", b"<feedback><record/></feedback>");
    assert!(matches!(read_report(&no_domain), Err(ReportReadError::Xml(_))));
    // A small archive that inflates past the bound is refused, not read whole.
    let bomb = crate::dmarc::report::gzip(&vec![b' '; MAX_REPORT_XML as usize + 10]).unwrap();
    assert!(bomb.len() < 100_000);
    assert_eq!(read_report(&message("application/gzip", "x.xml.gz", &bomb)), Err(ReportReadError::TooLarge));
}

#[test]
fn only_our_domains_become_labels_and_the_counts_add_up() {
    let inbox = ReportInbox::new(&["example.com".to_string(), "example.org".to_string()]);
    assert!(inbox.is_for_us(["alice@example.com", "Postmaster@Example.org"].into_iter()));
    assert!(!inbox.is_for_us(["alice@example.com"].into_iter()));
    assert_eq!(inbox.label("EXAMPLE.com."), "example.com");
    assert_eq!(inbox.label("attacker.example"), "other");
    let m = crate::metrics::metrics();
    let received = || m.dmarc_reports_received_total.with_label_values(&["example.org"]).get();
    let passed = || m.dmarc_report_messages_total.with_label_values(&["example.org", "pass"]).get();
    let failed = || m.dmarc_report_messages_total.with_label_values(&["example.org", "fail"]).get();
    let before = (received(), passed(), failed());
    let mut report = parse_xml(SAMPLE.as_bytes()).unwrap();
    report.domain = "example.org".into();
    inbox.account(&report);
    assert_eq!((received(), passed(), failed()), (before.0 + 1, before.1 + 5, before.2 + 3));
}
