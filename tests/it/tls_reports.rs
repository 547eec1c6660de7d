//! SMTP TLS reports (RFC 8460) end to end through the real binary: dnsmasq publishes
//! two remote domains whose MX hosts are loopback sinks on one port — remote.test's at
//! 127.0.0.1 offers STARTTLS, plain.test's at 127.0.0.2 does not — and their
//! `_smtp._tls` records (rua `mailto:tlsrpt@remote.test`; plain.test adds an `https:`
//! one). A local account submits one message to each (smtplib, STARTTLS and AUTH);
//! `mailroom reports send` sends the day so far; the reports at the sink are read with
//! Python's email package, their gzipped JSON validated with PyPI jsonschema against
//! tests/clients/tlsrpt_schema.json and their DKIM signatures checked with dkimpy. The
//! reports' own deliveries are not counted. Also: `MAILROOM_TLS_REPORTS=off` records
//! nothing, and a report arriving at our report address is read into metrics.
//! Tools missing -> skip, unless CI=true.

use crate::common;
use crate::outbound;
use crate::reports;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use outbound::{ServerOptions, ServerState, start_mx_on, test_tls_for};
use reports::{Rig, USER};

const PASSWORD: &str = "tlsrpt-e2e-password";

fn client(args: &[&str], stdin: &[u8], server: &Server) -> String {
    run_client_input("tls_report.py", args, stdin, server)
}

fn tools() -> bool {
    python_and_dnsmasq("jsonschema, dkim", "pip install jsonschema dkimpy")
}

/// The two remote MX hosts (one port, two loopback addresses) and the runtime they run on.
struct Sinks {
    tls: Arc<ServerState>,
    plain: Arc<ServerState>,
    port: u16,
    _rt: tokio::runtime::Runtime,
}

fn start_sinks() -> Sinks {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (acceptor, _ca) = test_tls_for(&["mx.remote.test"]);
    let tls_options = ServerOptions { tls: Some(acceptor), ..ServerOptions::default() };
    let (tls, port) = rt.block_on(start_mx_on("127.0.0.1:0", tls_options));
    let (plain, _) = rt.block_on(start_mx_on(&format!("127.0.0.2:{port}"), ServerOptions::default()));
    Sinks { tls, plain, port, _rt: rt }
}

/// dnsmasq with both domains' MX and TLS-RPT records.
fn remote_dns() -> (Dnsmasq, std::net::SocketAddr, tempfile::TempDir) {
    // A TXT string with a comma: only the configuration file syntax (quotes) says it.
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("dnsmasq.conf");
    std::fs::write(
        &conf,
        "txt-record=_smtp._tls.plain.test,\"v=TLSRPTv1; rua=mailto:tlsrpt@remote.test,https://reports.plain.test/v1\"\n",
    )
    .unwrap();
    let (dns, addr) = dnsmasq(&[
        format!("--conf-file={}", conf.display()),
        "--local=/test/".into(),
        "--address=/mx.remote.test/127.0.0.1".into(),
        "--address=/mx.plain.test/127.0.0.2".into(),
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--mx-host=plain.test,mx.plain.test,10".into(),
        "--txt-record=_smtp._tls.remote.test,v=TLSRPTv1; rua=mailto:tlsrpt@remote.test".into(),
    ]);
    (dns, addr, conf_dir)
}

fn start(dns: std::net::SocketAddr, mx_port: u16, extra: &[(&str, &str)]) -> Rig {
    Rig::start(&["SMTP", "SUBMISSION"], PASSWORD, dns, mx_port, extra)
}

/// Submission: one message from alice to each of `to`.
fn submit(rig: &Rig, to: &[&str]) {
    let port = rig.server.port("submission").to_string();
    let msg = format!(
        "From: {USER}\r\nTo: {}\r\nSubject: hello\r\nMessage-ID: <{}.tlsrpt@example.com>\r\n\r\nHello.\r\n",
        to.join(", "),
        std::process::id()
    );
    let mut args = vec!["submit", &port, USER, PASSWORD, USER];
    args.extend(to);
    assert_eq!(client(&args, msg.as_bytes(), &rig.server).trim(), "sent");
}

/// Wait until `sink` holds `n` messages; returns them.
fn wait_for(sink: &ServerState, n: usize, server: &Server) -> Vec<outbound::Received> {
    let start = Instant::now();
    loop {
        let got = sink.received.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of {n} messages at the sink\n{}",
            got.len(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tls_reports_reach_the_rua_signed_and_valid() {
    if !tools() {
        return;
    }
    let (_dns, dns_addr, _conf) = remote_dns();
    let sinks = start_sinks();

    // Off: deliveries are not recorded and the command sends no TLS reports.
    let off = start(dns_addr, sinks.port, &[("MAILROOM_TLS_REPORTS", "off")]);
    submit(&off, &["bob@remote.test"]);
    wait_for(&sinks.tls, 1, &off.server);
    assert_eq!(off.reports_line("SMTP TLS"), None);
    assert!(!off.server.data_dir.join("state/tls-reports.json").exists());
    drop(off);

    scenario(&[], dns_addr, &sinks, 1);
}

/// The same on the PostgreSQL store: counters in `tls_report_rows`, sent under the lease.
#[test]
fn tls_reports_on_postgres() {
    if !tools() {
        return;
    }
    let Some(url) = test_pg::database() else { return };
    let (_dns, dns_addr, _conf) = remote_dns();
    let sinks = start_sinks();
    scenario(&[("MAILROOM_STORE", url.as_str())], dns_addr, &sinks, 0);
}

/// `before`: messages the TLS sink already holds.
fn scenario(extra: &[(&str, &str)], dns_addr: std::net::SocketAddr, sinks: &Sinks, before: usize) {
    let rig = start(dns_addr, sinks.port, extra);
    submit(&rig, &["bob@remote.test", "carol@plain.test"]);
    let delivered = wait_for(&sinks.tls, before + 1, &rig.server);
    assert!(delivered[before].tls, "remote.test's MX offers STARTTLS");
    wait_for(&sinks.plain, 1, &rig.server);

    let line = rig.reports_line("SMTP TLS");
    assert_eq!(
        line.as_deref(),
        Some("2 report(s) queued, 1 destination(s) skipped, 0 domain(s) without a report record"),
        "{}",
        rig.server.log()
    );
    assert_eq!(rig.metric("mailroom_tls_reports_skipped_total{reason=\"https\"}"), 1);
    let got = wait_for(&sinks.tls, before + 3, &rig.server);
    let schema = format!("{}/tests/clients/tlsrpt_schema.json", env!("CARGO_MANIFEST_DIR"));
    let mut reports = Vec::new();
    for r in &got[before + 1..] {
        assert_eq!(r.mail_from, "<noreply-tlsrpt@example.com>");
        assert_eq!(r.rcpts, ["tlsrpt@remote.test"]);
        verify_dkim(&rig.env, &r.data);
        let parsed: serde_json::Value =
            serde_json::from_str(&client(&["parse", &schema], &r.data, &rig.server)).unwrap();
        assert_eq!(
            (parsed["content_type"].as_str(), parsed["report_type"].as_str()),
            (Some("multipart/report"), Some("tlsrpt"))
        );
        reports.push((r.data.clone(), parsed));
    }
    reports.sort_by_key(|(_, p)| p["tls_report_domain"].as_str().unwrap().to_string());
    let hostname = "mx.example.com";
    for (_, parsed) in &reports {
        let domain = parsed["tls_report_domain"].as_str().unwrap();
        assert_eq!(parsed["tls_report_submitter"], hostname);
        let report = &parsed["report"];
        let subject = format!(
            "Report Domain: {domain} Submitter: {hostname} Report-ID: <{}>",
            report["report-id"].as_str().unwrap()
        );
        assert_eq!(parsed["subject"], subject.as_str(), "{parsed}");
        let file = parsed["filename"].as_str().unwrap();
        assert!(file.starts_with(&format!("{hostname}!{domain}!")) && file.ends_with(".json.gz"), "{parsed}");
        assert_eq!(report["organization-name"], hostname);
        assert_eq!(report["contact-info"], "noreply-tlsrpt@example.com");
        assert_eq!(report["policies"].as_array().unwrap().len(), 1, "{parsed}");
        assert_eq!(report["policies"][0]["policy"]["policy-type"], "no-policy-found");
        assert_eq!(report["policies"][0]["policy"]["policy-domain"], domain);
    }
    let plain = &reports[0].1["report"]["policies"][0];
    assert_eq!(plain["summary"]["total-successful-session-count"], 0, "{plain}");
    assert_eq!(plain["summary"]["total-failure-session-count"], 1, "{plain}");
    assert_eq!(
        plain["failure-details"],
        serde_json::json!([{"result-type": "starttls-not-supported", "receiving-mx-hostname": "mx.plain.test",
                            "receiving-ip": "127.0.0.2", "failed-session-count": 1}])
    );
    let remote = &reports[1].1["report"]["policies"][0];
    assert_eq!(remote["summary"]["total-successful-session-count"], 1, "{remote}");
    assert_eq!(remote["summary"]["total-failure-session-count"], 0, "{remote}");
    assert!(remote.get("failure-details").is_none(), "{remote}");

    // The reports' own deliveries were not counted: nothing is left to report.
    assert_eq!(
        rig.reports_line("SMTP TLS").as_deref(),
        Some("0 report(s) queued, 0 destination(s) skipped, 0 domain(s) without a report record")
    );

    // Receiving: plain.test's report passed on to our report address is read into
    // metrics (and delivered as usual).
    let port = rig.server.port("smtp").to_string();
    let sent = client(&["send", &port, "tlsrpt@remote.test", "postmaster@example.com"], &reports[0].0, &rig.server);
    assert_eq!(sent.trim(), "sent");
    rig.wait_metric("mailroom_tls_reports_received_total{domain=\"other\"}");
    assert_eq!(rig.metric("mailroom_tls_report_sessions_total{domain=\"other\",result=\"failure\"}"), 1);
    assert_eq!(rig.metric("mailroom_tls_report_sessions_total{domain=\"other\",result=\"success\"}"), 0);
    assert!(rig.server.wait_log("SMTP TLS report failure", Duration::from_secs(10)), "{}", rig.server.log());
}
