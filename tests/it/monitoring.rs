//! Monitoring, end to end: the metrics of a real server after real client traffic pass
//! `promtool check metrics`; the alert rules pass `promtool check rules` and their unit
//! tests (`promtool test rules`); and a real Prometheus scraping that server answers every
//! dashboard panel's expression and every alert's, with data wherever the scrape holds
//! the families the expression reads.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The alert names of the shared rule file, in order.
fn alert_names() -> Vec<String> {
    let rules = std::fs::read_to_string(repo().join("helm/mailroom/monitoring/alerts.yaml")).unwrap();
    rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(str::to_string).collect()
}

#[test]
fn alert_rules_check_and_every_alert_has_a_unit_test() {
    if !have_tool("promtool") {
        return;
    }
    run_ok(Command::new("promtool").arg("check").arg("rules").arg(repo().join("helm/mailroom/monitoring/alerts.yaml")));
    let out =
        run_ok(Command::new("promtool").args(["test", "rules", "monitoring/alerts_test.yaml"]).current_dir(repo()));
    assert!(out.contains("SUCCESS"), "{out}");
    let tests = std::fs::read_to_string(repo().join("monitoring/alerts_test.yaml")).unwrap();
    let alerts = alert_names();
    assert!(alerts.len() >= 12, "{alerts:?}");
    for alert in alerts {
        // Each alert is tested quiet and firing.
        let evaluations = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(evaluations >= 2, "{alert} has {evaluations} evaluations in monitoring/alerts_test.yaml");
    }
}

#[test]
fn metrics_after_traffic_are_clean_and_dashboard_queries_answer() {
    if !have_tool("promtool") || !have_tool("prometheus") || !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = env_listening(&data, &["SMTP", "SUBMISSION", "IMAP", "POP3"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    let server = Server::start_ready(&env, &data, Duration::from_secs(30));
    let metrics = server.addr("metrics");
    let ports = ["smtp", "submission", "imap", "pop3"].map(|p| server.port(p).to_string());
    let out = run_client("obs_load.py", &ports, &server);
    assert!(out.contains("load done"), "{out}");

    // The outbound copy goes to an undeliverable domain; its attempt is counted when done.
    let scrape = scrape_until(&server, "outbound attempt", |s| s.contains("mailroom_queue_delivery_status_total{"));
    for family in [
        "mailroom_smtp_messages_received_total{service=\"smtp\"} 1",
        "mailroom_smtp_recipients_total{outcome=\"unknown_user\",service=\"smtp\"} 1",
        "mailroom_smtp_data_duration_seconds_count{service=\"smtp\"} 1",
        "mailroom_smtp_message_size_bytes_count{service=\"submission\"} 1",
        "mailroom_tls_sessions_total{protocol=\"smtp\",version=\"TLSv1.3\"} 1",
        "mailroom_smtp_transactions_total{outcome=\"accepted\",reason=\"none\",service=\"smtp\"} 1",
        "mailroom_smtp_transactions_total{outcome=\"refused\",reason=\"unknown_user\",service=\"smtp\"} 1",
        "mailroom_smtp_transactions_total{outcome=\"refused\",reason=\"auth\",service=\"submission\"} 1",
        "mailroom_smtp_transactions_total{outcome=\"accepted\",reason=\"none\",service=\"submission\"} 1",
        // smtplib tries AUTH PLAIN, then AUTH LOGIN, with the wrong password.
        "mailroom_auth_attempts_total{mechanism=\"plain\",protocol=\"submission\",result=\"failure\"} 1",
        "mailroom_auth_attempts_total{mechanism=\"login\",protocol=\"submission\",result=\"failure\"} 1",
        "mailroom_auth_attempts_total{mechanism=\"plain\",protocol=\"submission\",result=\"success\"} 1",
        "mailroom_auth_attempts_total{mechanism=\"password\",protocol=\"imap\",result=\"success\"} 1",
        "mailroom_auth_attempts_total{mechanism=\"password\",protocol=\"pop3\",result=\"success\"} 1",
        "mailroom_pop3_command_duration_seconds_count{command=\"STAT\"} 1",
        "mailroom_bytes_sent_total{service=\"imap\"}",
        "mailroom_bytes_sent_total{service=\"pop3\"}",
        "mailroom_store_operation_duration_seconds_count{backend=\"maildir\",op=\"deliver\"}",
        "mailroom_store_operation_duration_seconds_count{backend=\"maildir\",op=\"fetch\"}",
        "mailroom_imap_commands_total{command=\"SELECT\",result=\"no\"} 1",
        "mailroom_imap_command_duration_seconds_count{command=\"FETCH\"} 1",
        "mailroom_pop3_commands_total{command=\"STAT\",result=\"ok\"} 1",
        "mailroom_dns_lookups_total{result=\"none\",type=\"MX\"}",
        "mailroom_queue_attempt_duration_seconds_count 1",
        "mailroom_queue_time_seconds_count{result=\"bounced\"} 1",
    ] {
        assert!(scrape.contains(family), "no {family} in\n{scrape}");
    }
    // Every session went through its states and left them all when its client hung up
    // (the server may finish a connection just after the client saw the last reply).
    let scrape = scrape_until(&server, "every session gauge back at 0", |s| sessions_open(s) == 0);
    for visited in [
        "mailroom_sessions{service=\"imap\",state=\"selected\"} 0",
        "mailroom_sessions{service=\"imap\",state=\"logout\"} 0",
        "mailroom_sessions{service=\"pop3\",state=\"transaction\"} 0",
    ] {
        assert!(scrape.contains(visited), "no {visited} in\n{scrape}");
    }
    let file = tmp.path().join("scrape.txt");
    std::fs::write(&file, &scrape).unwrap();
    let out = run_ok(Command::new("sh").arg("-c").arg(format!("promtool check metrics < {}", file.display())));
    assert!(out.trim().is_empty(), "promtool check metrics: {out}");

    let prometheus = Prometheus::start(tmp.path(), metrics);
    prometheus.wait_for_samples(3);
    let present = families_in(&scrape);
    let documented = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let mut answered = 0;
    for (what, expr) in dashboard_expressions().into_iter().chain(alert_expressions()) {
        let names = metric_names(&expr);
        for name in &names {
            let known = name.starts_with("process_") || documented.contains(&format!("`{name}`"));
            assert!(known, "{what}: {name} is neither a mailroom family nor a process one");
        }
        let result = prometheus.query(&expr).unwrap_or_else(|e| panic!("{what}: {expr}: {e}"));
        if names.iter().all(|n| present.contains(n)) && !what.starts_with("alert") {
            let empty = result.as_array().is_none_or(Vec::is_empty);
            assert!(!empty, "{what}: {expr} returned no data though the scrape has its families");
            answered += 1;
        }
    }
    assert!(answered >= 25, "only {answered} panels had data");
}

/// Family names with samples in a scrape (histogram series folded into their family).
fn families_in(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| family_of(n).to_string())
        .collect()
}

fn family_of(series: &str) -> &str {
    ["_bucket", "_sum", "_count"].iter().find_map(|s| series.strip_suffix(s)).unwrap_or(series)
}

/// The `mailroom_*` and `process_*` families an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in expr.match_indices(['m', 'p']) {
        let boundary = at == 0 || !expr.as_bytes()[at - 1].is_ascii_alphanumeric() && expr.as_bytes()[at - 1] != b'_';
        let rest = &expr[at..];
        if !boundary || !(rest.starts_with("mailroom_") || rest.starts_with("process_")) {
            continue;
        }
        let end = rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(rest.len());
        names.insert(family_of(&rest[..end]).to_string());
    }
    names
}

/// Every panel target of the chart's dashboard, with Grafana's variables given values a
/// plain Prometheus accepts.
fn dashboard_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("helm/mailroom/dashboards/mailroom.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*");
            out.push((format!("panel {:?}", panel["title"].as_str().unwrap_or("")), expr));
        }
    }
    assert!(out.len() >= 30, "{out:?}");
    out
}

/// Every alert's expression (multi-line `>-` blocks joined).
fn alert_expressions() -> Vec<(String, String)> {
    let rules = std::fs::read_to_string(repo().join("helm/mailroom/monitoring/alerts.yaml")).unwrap();
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(expr) = line.trim().strip_prefix("expr: ") else { continue };
        let expr = if expr == ">-" {
            let mut joined = Vec::new();
            while let Some(next) = lines.next_if(|l| l.starts_with("          ")) {
                joined.push(next.trim());
            }
            joined.join(" ")
        } else {
            expr.to_string()
        };
        out.push((format!("alert expression {}", out.len() + 1), expr));
    }
    assert_eq!(out.len(), alert_names().len());
    out
}

/// A real Prometheus on a loopback port, scraping the server every second; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mailroom\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus");
        Prometheus { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    /// Wait until Prometheus holds `n` scrapes of the server (rates need two).
    fn wait_for_samples(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let query = "count_over_time(mailroom_build_info[1m])";
        loop {
            let count = self.query(query).ok().and_then(|r| r[0]["value"][1].as_str()?.parse::<f64>().ok());
            if count.is_some_and(|c| c >= n as f64) {
                return;
            }
            assert!(Instant::now() < deadline, "Prometheus has not scraped the server {n} times in 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An instant query through the HTTP API: the `result` array, or the error.
    fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let mut stream = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let json: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {response}"))?;
        if json["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(json["data"]["result"].clone())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
