//! Aggregation, the report's XML (read back with quick-xml's reader-free check: the
//! exact text) and the RFC 7489 7.1 authorisation rules.

use std::io::Read;

use mail_parser::MimeHeaders;
use std::time::{Duration, UNIX_EPOCH};

use super::record::{Destination, DkimAuth, Observation, PolicyPublished, Recorder, SpfAuth, day_of};
use super::report::{AggregateReport, ReportMeta};
use super::send::{authorises, same_organisation};

fn observation(ip: &str, dkim: &str) -> Observation {
    Observation {
        policy: PolicyPublished {
            domain: "remote.test".into(),
            adkim: "r".into(),
            aspf: "r".into(),
            p: "none".into(),
            sp: "none".into(),
            pct: 100,
            fo: "0".into(),
            rua: vec![Destination { address: "dmarc@remote.test".into(), max_size: 0 }],
        },
        source_ip: ip.parse().unwrap(),
        header_from: "remote.test".into(),
        disposition: "none".into(),
        dkim_aligned: dkim == "pass",
        spf_aligned: true,
        dkim: vec![DkimAuth { domain: "remote.test".into(), selector: "s1".into(), result: dkim.into() }],
        spf: SpfAuth { domain: "remote.test".into(), scope: "mfrom".into(), result: "pass".into() },
    }
}

#[test]
fn equal_rows_are_counted_together_per_domain_and_day() {
    let r = Recorder::default();
    let day1 = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 5);
    let day2 = day1 + Duration::from_secs(86_400);
    r.count(observation("192.0.2.1", "pass"), day1);
    r.count(observation("192.0.2.1", "pass"), day1);
    r.count(observation("192.0.2.1", "fail"), day1);
    r.count(observation("192.0.2.1", "pass"), day2);
    let mut rows = r.take();
    rows.sort_by_key(|c| (c.day, std::cmp::Reverse(c.count)));
    let summary: Vec<(i64, u64)> = rows.iter().map(|c| (c.day, c.count)).collect();
    assert_eq!(summary, vec![(20_000, 2), (20_000, 1), (20_001, 1)]);
    assert!(rows.iter().all(|c| c.domain == "remote.test"));
    assert!(r.take().is_empty(), "take empties the recorder");
    // A failed flush puts the rows back, counts intact.
    r.restore(rows.clone());
    let mut again = r.take();
    again.sort_by_key(|c| (c.day, std::cmp::Reverse(c.count)));
    assert_eq!(again, rows);
    assert_eq!(day_of(day2), 20_001);
}

#[test]
fn rows_past_the_cap_are_dropped_not_stored() {
    let r = Recorder::default();
    let now = UNIX_EPOCH + Duration::from_secs(86_400);
    for i in 0..(crate::store::MAX_REPORT_ROWS_PER_DAY + 5) {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32).to_string();
        r.count(observation(&ip, "pass"), now);
    }
    assert_eq!(r.take().len(), crate::store::MAX_REPORT_ROWS_PER_DAY);
}

fn sample() -> AggregateReport {
    AggregateReport {
        meta: ReportMeta {
            org_name: "mx.example.com".into(),
            email: "noreply-dmarc@example.com".into(),
            report_id: "20000.1".into(),
            begin: 1_728_000_000,
            end: 1_728_086_399,
        },
        policy: observation("192.0.2.1", "pass").policy,
        rows: vec![(observation("192.0.2.1", "pass"), 3), (observation("2001:db8::1", "fail"), 1)],
    }
}

#[test]
fn the_xml_follows_appendix_c() {
    let xml = sample().to_xml();
    let expected_start = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n  <version>1.0</version>\n  <report_metadata>\n    <org_name>mx.example.com</org_name>\n    <email>noreply-dmarc@example.com</email>\n    <report_id>20000.1</report_id>\n    <date_range>\n      <begin>1728000000</begin>\n      <end>1728086399</end>\n    </date_range>\n  </report_metadata>\n  <policy_published>\n    <domain>remote.test</domain>\n    <adkim>r</adkim>\n    <aspf>r</aspf>\n    <p>none</p>\n    <sp>none</sp>\n    <pct>100</pct>\n    <fo>0</fo>\n  </policy_published>\n";
    assert!(xml.starts_with(expected_start), "{xml}");
    let second = "  <record>\n    <row>\n      <source_ip>2001:db8:0:0:0:0:0:1</source_ip>\n      <count>1</count>\n      <policy_evaluated>\n        <disposition>none</disposition>\n        <dkim>fail</dkim>\n        <spf>pass</spf>\n      </policy_evaluated>\n    </row>\n    <identifiers>\n      <envelope_from>remote.test</envelope_from>\n      <header_from>remote.test</header_from>\n    </identifiers>\n    <auth_results>\n      <dkim>\n        <domain>remote.test</domain>\n        <selector>s1</selector>\n        <result>fail</result>\n      </dkim>\n      <spf>\n        <domain>remote.test</domain>\n        <scope>mfrom</scope>\n        <result>pass</result>\n      </spf>\n    </auth_results>\n  </record>\n</feedback>\n";
    assert!(xml.ends_with(second), "{xml}");
    assert_eq!(xml.matches("<record>").count(), 2);
    schema_valid(&xml);
}

#[path = "../../tests/support/dmarc_schema.rs"]
mod dmarc_schema;

use dmarc_schema::SchemaCheck;

/// [`dmarc_schema::check`], a missing tool counted as such (a failure under CI).
fn rfc_schema_check(xml: &str) -> Option<SchemaCheck> {
    match dmarc_schema::check(xml) {
        SchemaCheck::Unavailable => {
            crate::test_tools::missing("xmllint and libmail-dmarc-perl (bash .ci/deps.sh)");
            None
        }
        checked => Some(checked),
    }
}

fn schema_valid(xml: &str) {
    if let Some(SchemaCheck::Invalid(e)) = rfc_schema_check(xml) {
        panic!("the report is not valid under RFC 7489's schema: {e}\n{xml}");
    }
}

#[test]
fn the_schema_check_refuses_what_appendix_c_does_not_allow() {
    let good = sample().to_xml();
    if rfc_schema_check(&good).is_none() {
        return;
    }
    let broken = [
        good.replace("    <fo>0</fo>\n", ""),
        good.replace("<envelope_from>remote.test</envelope_from>", ""),
        good.replace("<source_ip>192.0.2.1</source_ip>", "<source_ip>mx.remote.test</source_ip>"),
        good.replace("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
        good.replace("<disposition>none</disposition>", "<disposition>discard</disposition>"),
        good.replace("<version>1.0</version>", ""),
    ];
    for xml in broken {
        assert_ne!(xml, good);
        assert!(matches!(rfc_schema_check(&xml), Some(SchemaCheck::Invalid(_))), "accepted: {xml}");
    }
}

#[test]
fn text_is_escaped() {
    let mut r = sample();
    r.meta.org_name = "a<b>&\"c\"".into();
    assert!(r.to_xml().contains("<org_name>a&lt;b&gt;&amp;&quot;c&quot;</org_name>"));
}

#[test]
fn the_message_carries_the_gzipped_xml_under_the_rfc_name() {
    let r = sample();
    let msg = r.to_message("noreply-dmarc@example.com", &["dmarc@remote.test".to_string()]).unwrap();
    let text = String::from_utf8_lossy(&msg);
    let subject = text.lines().find(|l| l.starts_with("Subject:")).unwrap();
    assert!(
        subject.starts_with("Subject: Report Domain: remote.test Submitter: mx.example.com"),
        "plain, not encoded: {text}"
    );
    let parsed = mail_parser::MessageParser::default().parse(&msg).unwrap();
    assert_eq!(parsed.subject(), Some("Report Domain: remote.test Submitter: mx.example.com Report-ID: <20000.1>"));
    let attachment = parsed.attachments().next().unwrap();
    assert_eq!(attachment.attachment_name(), Some("mx.example.com!remote.test!1728000000!1728086399.xml.gz"));
    let ct = attachment.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("application", Some("gzip")));
    let mut xml = String::new();
    flate2::read::GzDecoder::new(attachment.contents()).read_to_string(&mut xml).unwrap();
    assert_eq!(xml, r.to_xml());
}

#[test]
fn external_destinations_need_the_report_record() {
    assert!(same_organisation("mail.remote.test", "remote.test"));
    assert!(same_organisation("remote.test", "REMOTE.test."));
    assert!(!same_organisation("remote.test", "reports.example"));
    assert!(authorises("v=DMARC1"));
    assert!(authorises(" v = DMARC1 ; rua=mailto:x@y.example"));
    assert!(!authorises("v=spf1 -all"));
    assert!(!authorises(""));
}

#[test]
fn memory_holds_a_bounded_number_of_rows_over_all_domains() {
    let r = Recorder::default();
    let now = UNIX_EPOCH + Duration::from_secs(86_400);
    let dropped = || crate::metrics::metrics().dmarc_report_messages_dropped_total.get();
    let before = dropped();
    let per_domain = crate::store::MAX_REPORT_ROWS_PER_DAY;
    let domains = super::record::MAX_ROWS_IN_MEMORY / per_domain + 1;
    for d in 0..domains {
        for i in 0..per_domain {
            let mut o = observation(&std::net::Ipv4Addr::from(0x0a00_0000 + i as u32).to_string(), "pass");
            o.policy.domain = format!("d{d}.test");
            r.count(o, now);
        }
    }
    assert_eq!(r.take().len(), super::record::MAX_ROWS_IN_MEMORY);
    assert!(dropped() - before >= per_domain as u64);
}
