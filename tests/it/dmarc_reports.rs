//! DMARC aggregate reports end to end through the real binary: dnsmasq publishes
//! remote.test's DMARC record (four `rua` destinations: one external without the
//! RFC 7489 7.1 authorisation record, one with a `!1k` size limit the report exceeds) and MX records pointing at a loopback sink;
//! messages from remote.test arrive on port 25 (smtplib); `mailroom reports send` sends
//! the day so far; the sink's reports are read with PyPI parsedmarc, their XML checked
//! against RFC 7489 Appendix C's schema with xmllint, and their DKIM signatures checked
//! with dkimpy. Also: counts survive a restart (flushed at
//! shutdown), `MAILROOM_DMARC_REPORTS=off` records and sends nothing, and a report
//! arriving at our report address is read into metrics and still delivered.
//! Tools missing -> skip, unless CI=true.

use crate::common;
use crate::dmarc_schema;
use crate::reports;

use std::time::{Duration, Instant};

use common::*;
use reports::{Rig, USER};

use common::sink::{Got, Received as Sink};

fn client(args: &[&str], stdin: &[u8], server: &Server) -> String {
    run_client_input("dmarc_report.py", args, stdin, server)
}

fn tools() -> bool {
    python_and_dnsmasq("parsedmarc, dkim", "pip install parsedmarc dkimpy")
}

/// The report's XML, out of the gzip attachment of `message`, is valid under RFC 7489's
/// schema (tests/support/dmarc_schema.rs).
fn assert_schema_valid(message: &[u8]) {
    use mail_parser::MimeHeaders;
    use std::io::Read;
    let parsed = mail_parser::MessageParser::default().parse(message).unwrap();
    let part = parsed.parts.iter().find(|p| p.attachment_name().is_some()).expect("an attachment");
    let mut xml = String::new();
    flate2::read::GzDecoder::new(part.contents()).read_to_string(&mut xml).unwrap();
    match dmarc_schema::check(&xml) {
        dmarc_schema::SchemaCheck::Valid => {}
        dmarc_schema::SchemaCheck::Invalid(e) => panic!("not valid under RFC 7489's schema: {e}\n{xml}"),
        dmarc_schema::SchemaCheck::Unavailable => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "xmllint and libmail-dmarc-perl are required under CI=true (bash .ci/deps.sh)");
            eprintln!("skipping the schema check: xmllint or libmail-dmarc-perl missing");
        }
    }
}

/// Port 25: a message with header From `from` and envelope sender `mail_from`.
fn send(rig: &Rig, mail_from: &str, from: &str, n: u32) {
    let port = rig.server.port("smtp").to_string();
    let msg = format!(
        "From: {from}\r\nTo: {USER}\r\nSubject: note {n}\r\nMessage-ID: <{n}.{}@remote.test>\r\n\r\nHello.\r\n",
        std::process::id()
    );
    let out = client(&["send", "127.0.0.1", &port, mail_from, USER], msg.as_bytes(), &rig.server);
    assert_eq!(out.trim(), "sent");
}

fn start(dns: std::net::SocketAddr, mx_port: u16, extra: &[(&str, &str)]) -> Rig {
    Rig::start(&["SMTP"], "dmarc-e2e-password", dns, mx_port, extra)
}

fn wait_for(sink: &Sink, n: usize, server: &Server) -> Vec<Got> {
    let start = Instant::now();
    loop {
        let got = sink.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of {n} reports at the sink\n{}",
            got.len(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// dnsmasq with remote.test's records; the MX of every test domain is the sink.
fn remote_dns() -> (Dnsmasq, std::net::SocketAddr, tempfile::TempDir) {
    // The DMARC record lists three destinations: one TXT string with commas, which only
    // dnsmasq's configuration file syntax (quotes) can say.
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("dnsmasq.conf");
    std::fs::write(
        &conf,
        "txt-record=_dmarc.remote.test,\"v=DMARC1; p=none; \
         rua=mailto:dmarc@remote.test,mailto:agg@collector.test,mailto:ok@authorized.test,mailto:small@remote.test!1k\"\n",
    )
    .unwrap();
    let (dns, dns_addr) = dnsmasq(&[
        format!("--conf-file={}", conf.display()),
        "--local=/test/".into(),
        "--address=/mx.remote.test/127.0.0.1".into(),
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--mx-host=collector.test,mx.remote.test,10".into(),
        "--mx-host=authorized.test,mx.remote.test,10".into(),
        "--mx-host=other.test,mx.remote.test,10".into(),
        "--txt-record=remote.test,v=spf1 ip4:127.0.0.1 -all".into(),
        // The external destination authorised by authorized.test (RFC 7489 7.1).
        "--txt-record=remote.test._report._dmarc.authorized.test,v=DMARC1".into(),
    ]);
    (dns, dns_addr, conf_dir)
}

/// Where the counters are stored.
enum Backend {
    Maildir,
    Pg(String),
}

impl Backend {
    fn stored_rows(&self, rig: &Rig) -> usize {
        match self {
            Backend::Maildir => {
                let path = rig.server.data_dir.join("state/dmarc-reports.json");
                let text = std::fs::read_to_string(path).unwrap_or_else(|_| "[]".into());
                serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap().len()
            }
            Backend::Pg(url) => test_pg::psql(url, "SELECT count(*) FROM dmarc_report_rows").trim().parse().unwrap(),
        }
    }
}

#[test]
fn aggregate_reports_reach_authorised_destinations_signed_and_parseable() {
    if !tools() {
        return;
    }
    let (_dns, dns_addr, _conf) = remote_dns();
    let (sink, mx_port) = common::sink::start_sink(None);

    // Off: nothing recorded, and the command says why.
    let off = start(dns_addr, mx_port, &[("MAILROOM_DMARC_REPORTS", "off"), ("MAILROOM_TLS_REPORTS", "off")]);
    send(&off, "a@remote.test", "a@remote.test", 0);
    let out = off.reports_send();
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAILROOM_DMARC_REPORTS=off"), "{out:?}");
    assert!(!off.server.data_dir.join("state/dmarc-reports.json").exists());

    reports_scenario(Backend::Maildir, dns_addr, sink, mx_port);
}

/// The same on the PostgreSQL store: counters in `dmarc_report_rows`, sent under the lease.
#[test]
fn aggregate_reports_on_postgres() {
    if !tools() {
        return;
    }
    let Some(url) = test_pg::database() else { return };
    let (_dns, dns_addr, _conf) = remote_dns();
    let (sink, mx_port) = common::sink::start_sink(None);
    reports_scenario(Backend::Pg(url), dns_addr, sink, mx_port);
}

/// Two SPF passes, a restart, a pass and a failure; `reports send`; what the sink got;
/// the report passed on to our own report address.
fn reports_scenario(backend: Backend, dns_addr: std::net::SocketAddr, sink: Sink, mx_port: u16) {
    let extra: Vec<(&str, &str)> = match &backend {
        Backend::Maildir => Vec::new(),
        Backend::Pg(url) => vec![("MAILROOM_STORE", url.as_str())],
    };
    let mut rig = start(dns_addr, mx_port, &extra);
    // Two aligned SPF passes, a restart (the counters are flushed at shutdown), one more
    // pass and one failure (the envelope sender's domain is not remote.test).
    send(&rig, "a@remote.test", "a@remote.test", 1);
    send(&rig, "b@remote.test", "b@remote.test", 2);
    rig.restart();
    assert!(backend.stored_rows(&rig) > 0, "counters flushed at shutdown\n{}", rig.server.log());
    send(&rig, "c@remote.test", "c@remote.test", 3);
    send(&rig, "x@other.test", "d@remote.test", 4);

    let line = rig.reports_line("DMARC aggregate");
    assert_eq!(line.as_deref(), Some("2 report(s) queued, 2 destination(s) skipped"), "{}", rig.server.log());

    let got = wait_for(&sink, 2, &rig.server);
    let mut rcpts: Vec<&str> = got.iter().flat_map(|g| g.rcpts.iter().map(String::as_str)).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["dmarc@remote.test", "ok@authorized.test"], "no report to the unauthorised collector.test");
    for Got { from, data, .. } in &got {
        assert_eq!(from, "noreply-dmarc@example.com");
        verify_dkim(&rig.env, data);
        assert_schema_valid(data);
        let parsed: serde_json::Value = serde_json::from_str(&client(&["parse"], data, &rig.server)).unwrap();
        // The submitter is our hostname (parsedmarc shows `org_name` as its base domain).
        let hostname = "mx.example.com";
        assert_eq!(parsed["org_name"], "example.com");
        assert!(
            parsed["subject"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Report Domain: remote.test Submitter: {hostname} Report-ID: ")),
            "{parsed}"
        );
        let file = parsed["filename"].as_str().unwrap();
        assert!(file.starts_with(&format!("{hostname}!remote.test!")) && file.ends_with(".xml.gz"), "{parsed}");
        assert_eq!(parsed["content_type"], "application/gzip");
        assert_eq!(parsed["from"], "noreply-dmarc@example.com");
        assert_eq!((parsed["domain"].as_str(), parsed["p"].as_str()), (Some("remote.test"), Some("none")));
        let records = parsed["records"].as_array().unwrap();
        assert_eq!(records.len(), 2, "{parsed}");
        let pass = &records[0];
        assert_eq!(pass["count"], 3, "{parsed}");
        assert_eq!((pass["source_ip"].as_str(), pass["spf"].as_str()), (Some("127.0.0.1"), Some("pass")));
        assert_eq!((pass["dkim"].as_str(), pass["disposition"].as_str()), (Some("fail"), Some("none")));
        let fail = &records[1];
        assert_eq!(fail["count"], 1, "{parsed}");
        assert_eq!((fail["spf"].as_str(), fail["header_from"].as_str()), (Some("fail"), Some("remote.test")));
        assert_eq!(fail["spf_domain"][0], "other.test");
    }

    // Receiving: the report sent to remote.test, passed on to our report address
    // (postmaster@, an alias of alice), is read into metrics and still delivered.
    let report = got[0].data.clone();
    let port = rig.server.port("smtp").to_string();
    let out = client(&["send", "127.0.0.1", &port, "a@remote.test", "postmaster@example.com"], &report, &rig.server);
    assert_eq!(out.trim(), "sent");
    rig.wait_metric("mailroom_dmarc_reports_received_total{domain=\"other\"}");
    let metric = |name: &str| rig.metric(name);
    assert_eq!(metric("mailroom_dmarc_report_messages_total{domain=\"other\",result=\"pass\"}"), 3);
    assert_eq!(metric("mailroom_dmarc_report_messages_total{domain=\"other\",result=\"fail\"}"), 1);
    assert!(rig.server.log().contains("DMARC report row"), "{}", rig.server.log());
    // collector.test did not authorise reports; small@ accepts only 1 KiB.
    assert_eq!(metric("mailroom_dmarc_reports_skipped_total{reason=\"unauthorised\"}"), 1);
    assert_eq!(metric("mailroom_dmarc_reports_skipped_total{reason=\"size\"}"), 1);
    assert_eq!(metric("mailroom_dmarc_reports_sent_total"), 2);
    if let Backend::Maildir = backend {
        delivered_to_mailbox(&rig);
    }

    // Sent rows are gone: a second run has nothing to send.
    assert_eq!(backend.stored_rows(&rig), 0);
    assert_eq!(rig.reports_line("DMARC aggregate").as_deref(), Some("0 report(s) queued, 0 destination(s) skipped"));
    assert_eq!(sink.lock().unwrap().len(), 2);
}

fn delivered_to_mailbox(rig: &Rig) {
    let mailbox = rig.server.data_dir.join("mail/example.com/alice");
    let files: Vec<(String, String)> = ["new", "cur", ".Junk/new", ".Junk/cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(mailbox.join(d)).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| (e.path().display().to_string(), std::fs::read_to_string(e.path()).unwrap_or_default()))
        .collect();
    let delivered = files.iter().filter(|(_, text)| text.contains("Report Domain: remote.test")).count();
    let subjects: Vec<&str> = files.iter().filter_map(|(_, t)| t.lines().find(|l| l.starts_with("Subject"))).collect();
    assert_eq!(delivered, 1, "the report is delivered to the mailbox too: {subjects:?}");
}
