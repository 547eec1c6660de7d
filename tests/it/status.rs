//! `mailroom status`: the running server's status snapshot over its control socket.
//! A trusted client on port 25 relays a message through a loopback smarthost (the sink of
//! tests/common/sink.rs) and has one recipient refused; the snapshot then shows the
//! refusal, the accepted message and the outbound delivery as typed events, beside the
//! accounts, the certificate and the queue.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{BIN, Server, env_listening};

/// One SMTP exchange: send `line` (unless empty), read the whole reply, return its code.
fn exchange(reader: &mut BufReader<TcpStream>, line: &str) -> (u16, String) {
    if !line.is_empty() {
        reader.get_mut().write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }
    let mut text = String::new();
    loop {
        let mut l = String::new();
        assert!(reader.read_line(&mut l).unwrap() > 0, "connection closed after {line:?}: {text}");
        text.push_str(&l);
        if l.as_bytes().get(3) != Some(&b'-') {
            return (l[..3].parse().unwrap(), text);
        }
    }
}

fn status(env: &[(String, String)]) -> std::process::Output {
    std::process::Command::new(BIN).arg("status").env_clear().envs(env.iter().cloned()).output().unwrap()
}

fn events(json: &serde_json::Value) -> Vec<serde_json::Value> {
    json["recent"].as_array().cloned().unwrap_or_default()
}

#[test]
fn status_shows_the_accepted_message_the_refusal_and_the_delivery() {
    let (sink, sink_port) = common::sink::start_sink(None);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = env_listening(&data, &["SMTP"]);
    env.push(("MAILROOM_TRUSTED_NETWORKS".into(), "127.0.0.0/8".into()));
    env.push(("MAILROOM_RELAY_HOST".into(), format!("smtp+insecure://127.0.0.1:{sink_port}")));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland:1M".into()));

    // Nothing listens yet: a clear failure, exit 1.
    let out = status(&env);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("control socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut server = Server::start_ready(&env, &data, Duration::from_secs(30));
    let stream = TcpStream::connect(server.addr("smtp")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut smtp = BufReader::new(stream);
    assert_eq!(exchange(&mut smtp, "").0, 220);
    assert_eq!(exchange(&mut smtp, "EHLO app.example.com").0, 250);
    assert_eq!(exchange(&mut smtp, "MAIL FROM:<app@example.com>").0, 250);
    let (code, reply) = exchange(&mut smtp, "RCPT TO:<nobody@example.com>");
    assert_eq!(code, 550, "{reply}");
    assert_eq!(exchange(&mut smtp, "RCPT TO:<erin@remote.test>").0, 250);
    assert_eq!(exchange(&mut smtp, "DATA").0, 354);
    let body = "From: app@example.com\r\nTo: erin@remote.test\r\nSubject: status test\r\n\r\nhello\r\n.";
    let (code, reply) = exchange(&mut smtp, body);
    assert_eq!(code, 250, "{reply}");
    let _ = exchange(&mut smtp, "QUIT");

    // The delivery is recorded as soon as the smarthost answered: wait for it in the snapshot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let snapshot = loop {
        let out = status(&env);
        assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        if events(&json).iter().any(|e| e["direction"] == "outbound") {
            break json;
        }
        assert!(Instant::now() < deadline, "no outbound event:\n{json:#}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sink.lock().unwrap().len(), 1, "one copy at the smarthost");

    let recent = events(&snapshot);
    // Newest first: the delivery, the accepted message, the refused recipient.
    let directions: Vec<&str> = recent.iter().map(|e| e["direction"].as_str().unwrap()).collect();
    assert_eq!(directions, ["outbound", "inbound", "inbound"], "{snapshot:#}");
    let (delivered, accepted, refused) = (&recent[0], &recent[1], &recent[2]);
    assert_eq!(delivered["result"], "delivered");
    assert_eq!(delivered["recipient_domain"], "remote.test");
    assert_eq!(delivered["status"]["code"], 250);
    assert!(!delivered["queue_id"].as_str().unwrap().is_empty());

    assert_eq!(accepted["accepted"], true);
    assert_eq!(accepted["service"], "smtp");
    assert_eq!(accepted["client"], "127.0.0.1");
    assert_eq!(accepted["sender"], "app@example.com");
    assert_eq!(
        (accepted["recipients"].as_u64(), accepted["first_recipient"].as_str()),
        (Some(1), Some("erin@remote.test"))
    );
    assert_eq!(accepted["status"]["code"], 250);

    assert_eq!(refused["accepted"], false);
    assert_eq!(refused["first_recipient"], "nobody@example.com");
    assert_eq!(refused["status"]["code"], 550);
    assert_eq!(refused["status"]["enhanced"], serde_json::json!([5, 1, 1]));

    assert!(snapshot["headline"]["messages_received"].as_u64().unwrap() >= 1, "{snapshot:#}");
    assert!(snapshot["headline"]["recipients_delivered"].as_u64().unwrap() >= 1, "{snapshot:#}");
    let accounts = snapshot["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{snapshot:#}");
    assert_eq!(accounts[0]["address"], "alice@example.com");
    assert_eq!(accounts[0]["quota_limit"], 1024 * 1024);
    assert_eq!(accounts[0]["quota_used"], 0);
    let cert = &snapshot["certificates"][0];
    assert_eq!((cert["source"].as_str(), cert["self_signed"].as_bool()), (Some("self-signed"), Some(true)));
    assert_eq!(cert["names"][0], "mx.example.com");
    assert!(snapshot["queue"]["items"].is_array(), "{snapshot:#}");
    assert!(snapshot["dns"]["checked_at"].is_null(), "no DNS check in the first minute: {snapshot:#}");

    // A report run on command leaves its result for the page (relayed mail counts in no
    // report here: nothing to send, but the run happened).
    let out = std::process::Command::new(BIN)
        .args(["reports", "send"])
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    let out = status(&env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs: Vec<(&str, bool)> = json["report_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(runs.len(), 2, "{json:#}");
    assert!(runs.iter().all(|(_, ok)| *ok), "{json:#}");

    server.terminate(Duration::from_secs(30));
}
