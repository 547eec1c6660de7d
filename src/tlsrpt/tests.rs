//! Aggregation, the report's JSON (checked against a JSON Schema written from RFC 8460
//! section 4.4 by Python's `jsonschema`), the message, the record syntax and reading
//! a report back.

use std::io::Read;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mail_parser::MimeHeaders;

use super::receive::read_report;
use super::record::{Recorder, TlsRow};
use super::report::{self, Report, ReportMeta};
use super::send::{Rua, parse_record};
use crate::smtp::client::tls_outcome::{ResultType, TlsFailure, TlsOutcome, TlsPolicy, TlsRecorder, is_tls_report};

fn sts() -> TlsPolicy {
    TlsPolicy::Sts { id: "20261207".into(), mode: "enforce".into(), mx: vec!["*.remote.test".into()], max_age: 86_400 }
}

fn failure(kind: ResultType) -> TlsFailure {
    TlsFailure {
        result_type: kind,
        sending_mta_ip: Some("127.0.0.1".parse().unwrap()),
        receiving_mx_hostname: Some("mx.remote.test".into()),
        receiving_ip: Some("127.0.0.2".parse::<IpAddr>().unwrap()),
    }
}

fn meta() -> ReportMeta {
    ReportMeta {
        organization: "mx.example.org".into(),
        contact: "noreply-tlsrpt@example.org".into(),
        report_id: "20000.00000000000000ff".into(),
        domain: "remote.test".into(),
        begin: 20_000 * 86_400,
        end: 20_000 * 86_400 + 86_399,
    }
}

fn rows(recorder: &Recorder) -> Vec<(TlsRow, u64)> {
    let mut rows: Vec<(TlsRow, u64)> =
        recorder.take().into_iter().map(|c| (serde_json::from_str(&c.row).unwrap(), c.count)).collect();
    rows.sort();
    rows
}

#[test]
fn sessions_are_counted_per_domain_day_policy_and_failure() {
    let r = Recorder::default();
    let outcome = |domain: &str, policy: TlsPolicy, failure: Option<TlsFailure>| TlsOutcome {
        domain: domain.into(),
        policy,
        failure,
    };
    r.tls_outcome(outcome("Remote.Test.", sts(), None));
    r.tls_outcome(outcome("remote.test", sts(), None));
    r.tls_outcome(outcome("remote.test", sts(), Some(failure(ResultType::StarttlsNotSupported))));
    r.tls_outcome(outcome("remote.test", TlsPolicy::NoPolicyFound, None));
    r.tls_outcome(outcome(
        "other.test",
        TlsPolicy::Tlsa { mx_host: Some("mx.other.test".into()), records: vec![] },
        None,
    ));
    let counts = r.take();
    assert_eq!(counts.iter().filter(|c| c.domain == "remote.test").map(|c| c.count).sum::<u64>(), 4);
    assert_eq!(counts.iter().filter(|c| c.domain == "other.test").count(), 1);
    assert!(r.take().is_empty(), "taken counters leave the recorder empty");
    // Restored counters (a failed flush) count on.
    r.restore(counts);
    let remote: u64 = r.take().iter().filter(|c| c.domain == "remote.test").map(|c| c.count).sum();
    assert_eq!(remote, 4);
}

#[test]
fn the_report_sums_sessions_per_policy_with_failure_details() {
    let r = Recorder::default();
    let day = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 60);
    for f in
        [None, None, None, Some(failure(ResultType::CertificateExpired)), Some(failure(ResultType::CertificateExpired))]
    {
        r.record("remote.test", TlsRow { policy: sts(), failure: f }, day);
    }
    r.record("remote.test", TlsRow { policy: TlsPolicy::NoPolicyFound, failure: None }, day);
    let report = Report::build(&meta(), &rows(&r));
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["organization-name"], "mx.example.org");
    assert_eq!(json["date-range"]["start-datetime"], "2024-10-04T00:00:00Z");
    assert_eq!(json["date-range"]["end-datetime"], "2024-10-04T23:59:59Z");
    let policies = json["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 2);
    let sts = policies.iter().find(|p| p["policy"]["policy-type"] == "sts").unwrap();
    assert_eq!(sts["policy"]["policy-domain"], "remote.test");
    assert_eq!(sts["policy"]["mx-host"], serde_json::json!(["*.remote.test"]));
    assert_eq!(
        sts["policy"]["policy-string"],
        serde_json::json!(["version: STSv1", "mode: enforce", "mx: *.remote.test", "max_age: 86400"])
    );
    assert_eq!(sts["summary"]["total-successful-session-count"], 3);
    assert_eq!(sts["summary"]["total-failure-session-count"], 2);
    assert_eq!(
        sts["failure-details"],
        serde_json::json!([{
            "result-type": "certificate-expired",
            "sending-mta-ip": "127.0.0.1",
            "receiving-mx-hostname": "mx.remote.test",
            "receiving-ip": "127.0.0.2",
            "failed-session-count": 2
        }])
    );
    let none = policies.iter().find(|p| p["policy"]["policy-type"] == "no-policy-found").unwrap();
    assert_eq!(none["summary"]["total-successful-session-count"], 1);
    assert!(none.get("failure-details").is_none());
    validate(&serde_json::to_string(&report).unwrap());
}

#[test]
fn dane_and_policy_failures_are_reported_with_their_policy() {
    let r = Recorder::default();
    let day = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 60);
    let tlsa = |host: Option<&str>, records: &[&str]| TlsPolicy::Tlsa {
        mx_host: host.map(str::to_string),
        records: records.iter().map(|r| r.to_string()).collect(),
    };
    let ee = "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let no_host = |kind| TlsFailure { receiving_mx_hostname: None, receiving_ip: None, ..failure(kind) };
    for (policy, failure) in [
        (tlsa(Some("mx.remote.test"), &[ee]), None),
        (tlsa(Some("mx.remote.test"), &[ee]), Some(failure(ResultType::ValidationFailure))),
        (tlsa(Some("mx2.remote.test"), &["1 1 1 00"]), Some(failure(ResultType::TlsaInvalid))),
        (tlsa(None, &[]), Some(no_host(ResultType::DnssecInvalid))),
        (TlsPolicy::StsUnavailable { id: "20261207".into() }, Some(failure(ResultType::StsWebpkiInvalid))),
        (TlsPolicy::StsUnavailable { id: "20261207".into() }, Some(failure(ResultType::StsPolicyFetchError))),
        (TlsPolicy::StsUnavailable { id: "20261207".into() }, Some(failure(ResultType::StsPolicyInvalid))),
    ] {
        r.record("remote.test", TlsRow { policy, failure }, day);
    }
    let report = Report::build(&meta(), &rows(&r));
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    let policies = json["policies"].as_array().unwrap();
    let mx = policies.iter().find(|p| p["policy"]["mx-host"] == serde_json::json!(["mx.remote.test"])).unwrap();
    assert_eq!(mx["policy"]["policy-type"], "tlsa");
    assert_eq!(mx["policy"]["policy-string"], serde_json::json!([ee]));
    assert_eq!(mx["summary"]["total-successful-session-count"], 1);
    assert_eq!(mx["failure-details"][0]["result-type"], "validation-failure");
    let bogus = policies.iter().find(|p| p["policy"]["policy-type"] == "tlsa" && p["policy"].get("mx-host").is_none());
    let bogus = bogus.unwrap();
    assert_eq!(bogus["failure-details"][0]["result-type"], "dnssec-invalid");
    assert!(bogus["failure-details"][0].get("receiving-mx-hostname").is_none(), "{bogus}");
    let sts = policies.iter().find(|p| p["policy"]["policy-type"] == "sts").unwrap();
    assert!(sts["policy"].get("policy-string").is_none(), "{sts}");
    let mut kinds: Vec<&str> =
        sts["failure-details"].as_array().unwrap().iter().map(|f| f["result-type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid"]);
    let unusable = policies.iter().find(|p| p["policy"]["mx-host"] == serde_json::json!(["mx2.remote.test"])).unwrap();
    assert_eq!(unusable["failure-details"][0]["result-type"], "tlsa-invalid");
    validate(&serde_json::to_string(&report).unwrap());
}

/// RFC 8460 section 4.4's fields as a JSON Schema (shared with tests/it/tls_reports.rs).
pub const SCHEMA: &str = include_str!("../../tests/clients/tlsrpt_schema.json");

/// Validate `json` against [`SCHEMA`] with Python's `jsonschema`.
fn validate(json: &str) {
    if let Some(valid) = valid(json) {
        assert!(valid, "the report does not validate: {json}");
    }
}

/// Does `json` validate against [`SCHEMA`]? `None` without python3's jsonschema.
fn valid(json: &str) -> Option<bool> {
    let check = "import json, sys, jsonschema\nschema = json.loads(sys.argv[1])\njsonschema.Draft7Validator.check_schema(schema)\njsonschema.validate(json.loads(sys.stdin.read()), schema, format_checker=jsonschema.FormatChecker())\n";
    if std::process::Command::new("python3").args(["-c", "import jsonschema"]).status().map_or(true, |s| !s.success()) {
        crate::test_tools::missing("python3 jsonschema");
        return None;
    }
    let mut child = std::process::Command::new("python3")
        .args(["-c", check, SCHEMA])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), json.as_bytes()).unwrap();
    drop(child.stdin.take());
    Some(child.wait_with_output().unwrap().status.success())
}

#[test]
fn the_schema_refuses_what_rfc_8460_does_not_allow() {
    let good = serde_json::to_value(Report::build(&meta(), &[(TlsRow { policy: sts(), failure: None }, 1)])).unwrap();
    assert_eq!(valid(&good.to_string()), valid(&good.to_string()).map(|_| true));
    let mut unknown_type = good.clone();
    unknown_type["policies"][0]["policy"]["policy-type"] = "dane".into();
    let mut no_summary = good.clone();
    no_summary["policies"][0].as_object_mut().unwrap().remove("summary");
    let mut bad_date = good;
    bad_date["date-range"]["start-datetime"] = "yesterday".into();
    for bad in [unknown_type, no_summary, bad_date] {
        assert_ne!(valid(&bad.to_string()), Some(true), "{bad}");
    }
}

#[test]
fn the_message_is_a_tlsrpt_multipart_report_that_reads_back() {
    let r = Recorder::default();
    r.record("remote.test", TlsRow { policy: sts(), failure: None }, SystemTime::now());
    r.record(
        "remote.test",
        TlsRow { policy: sts(), failure: Some(failure(ResultType::StarttlsNotSupported)) },
        SystemTime::now(),
    );
    let report = Report::build(&meta(), &rows(&r));
    let bytes = report::to_message(&meta(), &report, "noreply-tlsrpt@example.org", "tlsrpt@remote.test").unwrap();
    // Unfolded (RFC 5322 2.2.3), as readers see the header fields.
    let text = String::from_utf8_lossy(&bytes).replace("\r\n ", " ");
    assert!(text.contains("Content-Type: multipart/report; report-type=\"tlsrpt\""), "{text}");
    assert!(text.contains("TLS-Report-Domain: remote.test\r\n"), "{text}");
    assert!(text.contains("TLS-Report-Submitter: mx.example.org\r\n"), "{text}");
    assert!(
        text.contains(
            "Subject: Report Domain: remote.test Submitter: mx.example.org Report-ID: <20000.00000000000000ff>\r\n"
        ),
        "{text}"
    );
    assert!(is_tls_report(&bytes), "the client must recognise its own reports");
    let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    let part = parsed.parts.iter().find(|p| p.attachment_name().is_some()).unwrap();
    assert_eq!(
        part.attachment_name().unwrap(),
        format!(
            "mx.example.org!remote.test!{}!{}!2000000000000000000ff.json.gz",
            20_000 * 86_400,
            20_000 * 86_400 + 86_399
        )
    );
    let ct = part.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("application", Some("tlsrpt+gzip")));
    let mut json = String::new();
    flate2::read::GzDecoder::new(part.contents()).read_to_string(&mut json).unwrap();
    validate(&json);
    let back = read_report(&bytes).unwrap().unwrap();
    assert_eq!(back.policies[0].summary.total_successful_session_count, 1);
    assert_eq!(back.policies[0].summary.total_failure_session_count, 1);
    assert_eq!(back.policies[0].failure_details[0].result_type, "starttls-not-supported");
}

#[test]
fn a_dmarc_report_is_not_a_tls_report() {
    let dmarc = b"From: a@b.test\r\nSubject: x\r\nContent-Type: application/gzip\r\n\r\nxx";
    assert_eq!(read_report(dmarc).unwrap(), None);
    assert!(!is_tls_report(dmarc));
    let broken = b"From: a@b.test\r\nContent-Type: application/tlsrpt+json\r\n\r\n{\"policies\": 3}";
    assert!(read_report(broken).is_err());
}

#[test]
fn the_record_names_its_destinations() {
    assert_eq!(
        parse_record("v=TLSRPTv1; rua=mailto:tlsrpt@remote.test,https://r.example/x"),
        Some(vec![Rua::Mailto("tlsrpt@remote.test".into()), Rua::Https("https://r.example/x".into())])
    );
    assert_eq!(parse_record("v=TLSRPTv1;rua=mailto:a@b.test"), Some(vec![Rua::Mailto("a@b.test".into())]));
    assert_eq!(parse_record("v=spf1 -all"), None);
    assert_eq!(parse_record("rua=mailto:a@b.test; v=TLSRPTv1"), None);
}
