//! The mail log and `mailroom log-summary` against the real binary: Python's smtplib sends
//! a message from the internet on port 25 (one recipient refused as unknown) and two
//! submissions to a remote domain, whose smarthost first does not listen (deferred) and
//! then is the loopback sink of tests/common/sink.rs (delivered; a `reject…` recipient
//! bounces, with a DSN to the local sender). Each message's lines share one `msgid` from
//! `received` to its last stage; `log-summary` counts the captured log. A second server
//! logs in the text format, which carries the same fields and is summarised the same way.
//! dnsmasq answers for the sender's domain (`--local=/test/`: everything else is NXDOMAIN).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, env_listening, free_port, have_tool, run};
use serde_json::Value;

const CLIENT: &str = r#"
import json, smtplib, ssl, sys
port, mode, sender, rcpts, body = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("client.sender.test")
if mode == "submission":
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo("client.sender.test")
    s.login("alice@example.com", "secret")
refused = s.sendmail(sender, rcpts, body.encode())
s.quit()
print(json.dumps(sorted(refused)))
"#;

/// Send one message with smtplib; returns the recipients refused at RCPT.
fn send(port: u16, mode: &str, from: &str, to: &[&str], server: &Server) -> Vec<String> {
    let body = format!("From: {from}\r\nTo: {}\r\nSubject: log test\r\n\r\nHello.\r\n", to.join(", "));
    let rcpts = serde_json::to_string(to).unwrap();
    let out =
        Command::new("python3").args(["-c", CLIENT, &port.to_string(), mode, from, &rcpts, &body]).output().unwrap();
    assert!(out.status.success(), "smtplib: {}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn dns() -> (common::Dnsmasq, SocketAddr) {
    common::dnsmasq(&[
        "--local=/test/",
        "--mx-host=sender.test,mx.sender.test,10",
        "--host-record=mx.sender.test,192.0.2.10",
        "--txt-record=sender.test,v=spf1 ?all",
    ])
}

fn server_env(data: &Path, dns: SocketAddr, relay_port: u16, format: &str) -> Vec<(String, String)> {
    let mut env = env_listening(data, &["SMTP", "SUBMISSION"]);
    env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}secret,bob@example.com:{PLAIN}bobpw".into()));
    env.push(("MAILROOM_DNS_SERVERS".into(), dns.to_string()));
    env.push(("MAILROOM_RELAY_HOST".into(), format!("smtp+insecure://127.0.0.1:{relay_port}")));
    env.push(("MAILROOM_QUEUE_RETRY_MIN".into(), "1s".into()));
    env.push(("MAILROOM_QUEUE_RETRY_MAX".into(), "1s".into()));
    env.push(("MAILROOM_LOG_FORMAT".into(), format.into()));
    env
}

/// The mail log lines of a JSON log.
fn mail_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "mailroom::mail")
        .collect()
}

/// Poll the server's log until `f` finds what it looks for.
fn wait_for<T>(server: &Server, what: &str, mut f: impl FnMut(&[Value]) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f(&mail_lines(&server.log())) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The msgid of the `received` line whose `to` is `to`.
fn received_id(lines: &[Value], to: &str) -> Option<String> {
    let line = lines.iter().find(|l| l["stage"] == "received" && l["to"] == to)?;
    Some(line["msgid"].as_str()?.to_string())
}

/// The stages of `msgid`, in log order.
fn story(lines: &[Value], msgid: &str) -> Vec<String> {
    lines.iter().filter(|l| l["msgid"] == msgid).map(|l| l["stage"].as_str().unwrap_or("").to_string()).collect()
}

fn line<'a>(lines: &'a [Value], msgid: &str, stage: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["msgid"] == msgid && l["stage"] == stage)
        .unwrap_or_else(|| panic!("no {stage} for {msgid}"))
}

fn summary(args: &[&str], log: &str) -> String {
    let mut all = vec!["log-summary"];
    all.extend_from_slice(args);
    let out = run(&all, &[], log);
    assert!(out.status.success(), "log-summary: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_stage_shares_the_msgid_and_the_summary_counts_them() {
    if !have_tool("python3") || !have_tool("dnsmasq") {
        return;
    }
    let (_dns, dns) = dns();
    let relay_port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_ready(&server_env(&data, dns, relay_port, "json"), &data, Duration::from_secs(30));
    let (smtp, submission) = (server.port("smtp"), server.port("submission"));

    // From the internet: one local recipient stored, one unknown.
    let refused = send(smtp, "smtp", "someone@sender.test", &["bob@example.com", "nobody@example.com"], &server);
    assert_eq!(refused, ["nobody@example.com"]);
    let local = wait_for(&server, "the local message stored", |lines| {
        let id = received_id(lines, "bob@example.com")?;
        story(lines, &id).contains(&"stored".to_string()).then_some(id)
    });
    let lines = mail_lines(&server.log());
    assert_eq!(story(&lines, &local), ["refused", "judged", "received", "stored"]);
    let refusal = line(&lines, &local, "refused");
    assert_eq!(
        (&refusal["to"], &refusal["reason"], &refusal["status"]),
        (&"nobody@example.com".into(), &"unknown_user".into(), &"5.1.1".into())
    );
    let judged = line(&lines, &local, "judged");
    assert_eq!(
        (&judged["spf"], &judged["dmarc"], &judged["verdict"]),
        (&"neutral".into(), &"none".into(), &"accept".into()),
        "{judged}"
    );
    let received = line(&lines, &local, "received");
    assert_eq!(
        (&received["service"], &received["from"], &received["nrcpt"]),
        (&"smtp".into(), &"someone@sender.test".into(), &1.into())
    );
    assert!(received["size"].as_u64().unwrap() > 50, "{received}");
    assert_eq!(line(&lines, &local, "stored")["status"], "2.0.0");

    // Submitted to a remote domain while the smarthost is down: deferred, same msgid.
    assert!(send(submission, "submission", "alice@example.com", &["carol@remote.test"], &server).is_empty());
    let remote = wait_for(&server, "a deferral", |lines| {
        let id = received_id(lines, "carol@remote.test")?;
        story(lines, &id).contains(&"deferred".to_string()).then_some(id)
    });
    let lines = mail_lines(&server.log());
    let deferred = line(&lines, &remote, "deferred");
    assert_eq!(
        (&deferred["to"], &deferred["service"], &deferred["relay"]),
        (&"carol@remote.test".into(), &"outbound".into(), &"".into())
    );
    assert!(deferred["status"].as_str().unwrap().starts_with("4."), "{deferred}");
    assert_eq!(line(&lines, &remote, "received")["service"], "submission");

    // The smarthost comes up: the next attempt delivers; a `reject…` recipient bounces.
    let (sink, _) = common::sink::start_sink(Some(relay_port));
    wait_for(&server, "the delivery", |lines| story(lines, &remote).contains(&"delivered".to_string()).then_some(()));
    assert!(send(submission, "submission", "alice@example.com", &["reject@remote.test"], &server).is_empty());
    let bounced = wait_for(&server, "the bounce and its DSN", |lines| {
        let id = received_id(lines, "reject@remote.test")?;
        story(lines, &id).contains(&"dsn".to_string()).then_some(id)
    });
    assert_eq!(sink.lock().unwrap().len(), 1, "carol's copy only");
    let lines = mail_lines(&server.log());
    let remote_story = story(&lines, &remote);
    assert_eq!(remote_story[..3], ["received", "queued", "deferred"]);
    assert_eq!(remote_story.last().map(String::as_str), Some("delivered"), "{remote_story:?}");
    let delivered = line(&lines, &remote, "delivered");
    assert_eq!(delivered["status"], "2.0.0");
    assert_eq!(delivered["relay"], format!("127.0.0.1[127.0.0.1]:{relay_port}"));
    assert_eq!(delivered["tls"], "none");
    assert!(delivered["delay"].as_f64().unwrap() > 0.0, "{delivered}");
    assert_eq!(story(&lines, &bounced), ["received", "queued", "bounced", "dsn"]);
    assert_eq!(line(&lines, &bounced, "bounced")["status"], "5.1.1");
    let dsn = line(&lines, &bounced, "dsn");
    assert_eq!(
        (&dsn["to"], &dsn["kind"], &dsn["disposition"]),
        (&"alice@example.com".into(), &"failure".into(), &"stored".into())
    );
    for l in &lines {
        for key in ["msgid", "stage", "service", "from", "to", "size", "timestamp"] {
            assert!(l.get(key).is_some(), "{key} missing at top level: {l}");
        }
    }

    // The summary of the captured log.
    let deferrals = lines.iter().filter(|l| l["stage"] == "deferred").count() as u64;
    let json: Value = serde_json::from_str(&summary(&["--json", "--day", "today"], &server.log())).unwrap();
    assert_eq!(json["received"]["count"], 3, "{json}");
    assert_eq!(json["delivered"]["count"], 2, "bob's copy and carol's: {json}");
    assert_eq!(json["forwarded"]["count"], 2, "{json}");
    assert_eq!(
        (json["bounced"].as_u64(), json["rejected"].as_u64(), json["dsns"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(json["deferred"].as_u64(), Some(deferrals));
    assert_eq!(json["refusal_reasons"][0]["key"], "unknown_user");
    let senders: Vec<&str> =
        json["sender_domains"].as_array().unwrap().iter().filter_map(|d| d["key"].as_str()).collect();
    assert_eq!(senders, ["example.com", "sender.test"]);
    let text = summary(&[], &server.log());
    assert!(text.contains("       3   received") && text.contains("       1   bounced"), "{text}");
    let yesterday: Value = serde_json::from_str(&summary(&["--json", "--day", "yesterday"], &server.log())).unwrap();
    assert_eq!(yesterday["received"]["count"], 0);
}

#[test]
fn the_text_format_carries_the_same_fields() {
    if !have_tool("python3") || !have_tool("dnsmasq") {
        return;
    }
    let (_dns, dns) = dns();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_ready(&server_env(&data, dns, free_port(), "text"), &data, Duration::from_secs(30));
    let refused =
        send(server.port("smtp"), "smtp", "someone@sender.test", &["bob@example.com", "nobody@example.com"], &server);
    assert_eq!(refused, ["nobody@example.com"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().lines().any(|l| l.contains("stage=\"stored\"")) {
        assert!(Instant::now() < deadline, "no stored line:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    let received = log.lines().find(|l| l.contains("stage=\"received\"")).unwrap();
    let msgid = received.split("msgid=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
    for field in [
        format!("msgid=\"{msgid}\""),
        "stage=\"received\"".into(),
        "service=\"smtp\"".into(),
        "from=\"someone@sender.test\"".into(),
        "to=\"bob@example.com\"".into(),
        "size=".into(),
        "nrcpt=1".into(),
        "tls=\"none\"".into(),
    ] {
        assert!(received.contains(&field), "{field} missing: {received}");
    }
    let refused = log.lines().find(|l| l.contains("stage=\"refused\"")).unwrap();
    for field in [format!("msgid=\"{msgid}\""), "reason=\"unknown_user\"".into(), "status=\"5.1.1\"".into()] {
        assert!(refused.contains(&field), "{field} missing: {refused}");
    }
    let json: Value = serde_json::from_str(&summary(&["--json"], &log)).unwrap();
    assert_eq!((json["received"]["count"].as_u64(), json["delivered"]["count"].as_u64()), (Some(1), Some(1)), "{json}");
    assert_eq!(json["rejected"], 1);
}
