//! Submission end to end with the real binary: swaks and Python's smtplib as mail clients
//! on 587 (STARTTLS) and 465 (implicit TLS), both AUTH mechanisms, the refusals (no TLS,
//! no AUTH, wrong password, foreign senders), local delivery with added headers and two
//! DKIM signatures checked by python `dkim` (a verifier we did not write), and remote
//! delivery through the queue to a loopback "remote MX" found through dnsmasq — plus a
//! 5xx bounce back into the sender's INBOX, the `mailroom queue` commands, and a kill -9
//! with a full queue. Tools missing -> skip, unless CI=true.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, env_listening, free_port, have_tool, run, verify_dkim};

/// A child process killed on drop.
/// dnsmasq: `remote.test` has MX `mx.remote.test` = 127.0.0.1.
fn start_dns() -> (common::Dnsmasq, SocketAddr) {
    common::dnsmasq(&["--mx-host=remote.test,mx.remote.test,10", "--address=/mx.remote.test/127.0.0.1"])
}

struct Ports {
    submission: u16,
    submissions: u16,
    metrics: u16,
}

fn server_env(data: &Path, dns: SocketAddr, mx_port: u16) -> Vec<(String, String)> {
    let mut env = env_listening(data, &["SUBMISSION", "SUBMISSIONS"]);
    env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}secret,bob@example.com:{PLAIN}bobpw".into()));
    env.push(("MAILROOM_ALIASES".into(), "sales@example.com:alice@example.com".into()));
    env.push(("MAILROOM_PUBLIC_IPV4".into(), "203.0.113.7".into()));
    env.push(("MAILROOM_DNS_SERVERS".into(), dns.to_string()));
    env.push(("MAILROOM_OUTBOUND_SMTP_PORT".into(), mx_port.to_string()));
    env.push(("MAILROOM_QUEUE_RETRY_MIN".into(), "1s".into()));
    env.push(("MAILROOM_QUEUE_RETRY_MAX".into(), "2s".into()));
    env
}

/// Start on kernel-chosen ports; returns the server and the ports it bound.
fn start_server(env: &[(String, String)], data: &Path) -> (Server, Ports) {
    let server = Server::start_ready(env, data, Duration::from_secs(20));
    let ports = Ports {
        submission: server.port("submission"),
        submissions: server.port("submissions"),
        metrics: server.port("metrics"),
    };
    (server, ports)
}

/// The smtplib client: one session, steps given as JSON, each step's reply printed as a
/// JSON line `[code, text, seconds]`.
const CLIENT: &str = r#"
import json, smtplib, ssl, sys, time
port, implicit, steps = int(sys.argv[1]), sys.argv[2] == "ssl", json.loads(sys.argv[3])
ctx = ssl._create_unverified_context()
s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=30) if implicit else smtplib.SMTP("127.0.0.1", port, timeout=30)
def out(code, text, t0):
    print(json.dumps([code, text.decode() if isinstance(text, bytes) else str(text), time.time() - t0]), flush=True)
for step in steps:
    t0 = time.time()
    kind = step[0]
    try:
        if kind == "ehlo":
            code, text = s.ehlo("laptop.example")
        elif kind == "starttls":
            code, text = s.starttls(context=ctx)
        elif kind == "auth":
            mech, user, pw, initial = step[1], step[2], step[3], step[4]
            s.user, s.password = user, pw
            obj = s.auth_plain if mech == "PLAIN" else s.auth_login
            code, text = s.auth(mech, obj, initial_response_ok=initial)
        elif kind == "raw":
            code, text = s.docmd(step[1])
        elif kind == "send":
            s.sendmail(step[1], step[2], step[3].encode(), mail_options=step[4] if len(step) > 4 else ())
            code, text = 250, "sent"
        out(code, text, t0)
    except smtplib.SMTPResponseException as e:
        out(e.smtp_code, e.smtp_error, t0)
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        out(code, text, t0)
    except smtplib.SMTPException as e:
        out(0, repr(e), t0)
"#;

/// Run the smtplib client; returns `(code, text, seconds)` per step.
fn smtplib(port: u16, implicit: bool, steps: serde_json::Value) -> Vec<(u16, String, f64)> {
    let out = Command::new("python3")
        .args(["-c", CLIENT, &port.to_string(), if implicit { "ssl" } else { "plain" }, &steps.to_string()])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<(u16, String, f64)> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v[0].as_u64().unwrap() as u16, v[1].as_str().unwrap().to_string(), v[2].as_f64().unwrap())
        })
        .collect();
    assert_eq!(
        replies.len(),
        steps.as_array().unwrap().len(),
        "smtplib: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    replies
}

fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks").args(args).args(["--timeout", "30"]).output().expect("swaks");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn maildir_messages(data: &Path, user: &str) -> Vec<(PathBuf, String)> {
    let dir = data.join("mail/example.com").join(user).join("new");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map_while(Result::ok)
                .map(|e| (e.path(), String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()).into_owned()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tools() -> bool {
    have_tool("swaks") && have_tool("python3") && have_tool("dnsmasq")
}

fn msg(from: &str, to: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello from the test.\r\n")
}

#[test]
fn clients_refusals_local_and_remote_delivery_with_dkim() {
    if !tools() {
        return;
    }
    let (_dns, dns) = start_dns();
    let mx_port = free_port();
    let (sink, _) = common::sink::start_sink(Some(mx_port));
    let tmp = tempfile::tempdir().unwrap();
    let env = server_env(tmp.path(), dns, mx_port);
    let (server, ports) = start_server(&env, tmp.path());
    let (p587, p465) = (ports.submission.to_string(), ports.submissions.to_string());

    // swaks, 587 STARTTLS + AUTH PLAIN, to a local mailbox: stored with Message-ID,
    // Date and two DKIM signatures that python dkim verifies.
    let body = "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: swaks local\r\n\r\nHi Bob.\r\n";
    let (ok, text) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &p587,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.com",
        "--auth-password",
        "secret",
        "--from",
        "alice@example.com",
        "--to",
        "bob@example.com",
        "--data",
        body,
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("250-AUTH PLAIN LOGIN") && text.contains("235 2.7.0"), "{text}");
    let (_, stored) = wait_for("bob's copy", Duration::from_secs(10), || maildir_messages(tmp.path(), "bob").pop());
    assert!(stored.contains("Subject: swaks local"), "{stored}");
    assert!(stored.contains("\r\nMessage-ID: <") && stored.contains("\r\nDate: "), "added headers: {stored}");
    assert_eq!(stored.matches("DKIM-Signature:").count(), 2, "{stored}");
    assert!(stored.contains("with ESMTPSA"), "{stored}");
    verify_dkim(&env, stored.as_bytes());

    // swaks, 465 implicit TLS + AUTH LOGIN, to a remote address: the queue delivers it
    // to the loopback MX found through DNS, DKIM intact.
    let body = "From: alice@example.com\r\nTo: carol@remote.test\r\nSubject: swaks remote\r\nMessage-ID: <keep@example.com>\r\nDate: Fri, 27 Nov 2026 00:00:00 +0000\r\n\r\nHi Carol.\r\n";
    let (ok, text) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &p465,
        "--tls-on-connect",
        "--auth",
        "LOGIN",
        "--auth-user",
        "alice@example.com",
        "--auth-password",
        "secret",
        "--from",
        "alice@example.com",
        "--to",
        "carol@remote.test",
        "--data",
        body,
    ]);
    assert!(ok, "{text}");
    let got = wait_for("the remote copy", Duration::from_secs(30), || {
        sink.lock().unwrap().iter().find(|g| g.rcpts.contains(&"carol@remote.test".to_string())).cloned()
    });
    let remote = String::from_utf8_lossy(&got.data).into_owned();
    assert!(remote.contains("Message-ID: <keep@example.com>"), "kept: {remote}");
    assert_eq!(remote.lines().filter(|l| l.starts_with("Message-ID:")).count(), 1, "not added twice: {remote}");
    verify_dkim(&env, &got.data);

    // smtplib on 587: the refusals.
    let replies = smtplib(
        ports.submission,
        false,
        serde_json::json!([
            ["ehlo"],
            ["raw", "AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA=="],
            ["raw", "MAIL FROM:<alice@example.com>"],
            ["starttls"],
            ["ehlo"],
            ["raw", "MAIL FROM:<alice@example.com>"],
            ["auth", "PLAIN", "alice@example.com", "wrong", true],
            ["auth", "LOGIN", "alice@example.com", "wrong again", false],
            ["auth", "PLAIN", "alice@example.com", "secret", false],
            ["raw", "MAIL FROM:<boss@bank.example>"],
            ["raw", "MAIL FROM:<bob@example.com>"],
            [
                "send",
                "alice@example.com",
                ["bob@example.com"],
                msg("Boss <boss@bank.example>", "bob@example.com", "forged")
            ],
            [
                "send",
                "sales@example.com",
                ["bob@example.com"],
                msg("Sales <sales@example.com>", "bob@example.com", "alias sender")
            ],
        ]),
    );
    assert_eq!(replies[1].0, 538, "AUTH before STARTTLS: {replies:?}");
    assert_eq!(replies[2].0, 530, "MAIL without AUTH: {replies:?}");
    assert_eq!(replies[5].0, 530, "MAIL without AUTH over TLS: {replies:?}");
    assert_eq!(replies[6].0, 535, "{replies:?}");
    // The shared limiter (net::ratelimit): 0.5 s after the first failure, doubling.
    assert!(replies[6].2 >= 0.45, "a failure is answered after a delay: {replies:?}");
    assert!(replies[6].1.starts_with("5.7.8"), "{replies:?}");
    assert_eq!(replies[7].0, 535, "{replies:?}");
    assert!(replies[7].2 >= 1.4, "the delay grows: {replies:?}");
    assert_eq!(replies[8].0, 235, "PLAIN without initial response: {replies:?}");
    assert_eq!(replies[9].0, 553, "foreign envelope sender: {replies:?}");
    assert_eq!(replies[10].0, 553, "another account's address: {replies:?}");
    assert_eq!(replies[11].0, 553, "foreign From: header: {replies:?}");
    assert!(replies[11].1.contains("boss@bank.example"), "{replies:?}");
    assert_eq!(replies[12].0, 250, "alias sender: {replies:?}");
    wait_for("the alias-sender copy", Duration::from_secs(10), || {
        maildir_messages(tmp.path(), "bob").into_iter().find(|(_, m)| m.contains("Subject: alias sender"))
    });
    assert!(!maildir_messages(tmp.path(), "bob").iter().any(|(_, m)| m.contains("Subject: forged")));

    // smtplib on 465 with LOGIN (server challenges): a local and a rejected remote
    // recipient in one message -> the local copy lands, the 550 comes back as a DSN.
    let replies = smtplib(
        ports.submissions,
        true,
        serde_json::json!([
            ["ehlo"],
            ["auth", "LOGIN", "bob", "bobpw", false],
            [
                "send",
                "bob@example.com",
                ["alice@example.com", "rejectme@remote.test"],
                msg("bob@example.com", "alice@example.com, rejectme@remote.test", "bounce me")
            ],
        ]),
    );
    assert_eq!(replies[1].0, 235, "user name without domain: {replies:?}");
    assert_eq!(replies[2].0, 250, "{replies:?}");
    let (_, dsn) = wait_for("the DSN", Duration::from_secs(30), || {
        maildir_messages(tmp.path(), "bob").into_iter().find(|(_, m)| m.contains("multipart/report"))
    });
    assert!(dsn.contains("rejectme@remote.test") && dsn.contains("550"), "{dsn}");
    assert!(maildir_messages(tmp.path(), "alice").iter().any(|(_, m)| m.contains("Subject: bounce me")), "local copy");

    // RFC 8689 REQUIRETLS, offered inside TLS: remote.test publishes no MTA-STS policy,
    // so nothing can validate its MX; the message bounces with 5.7.30 and never leaves.
    let replies = smtplib(
        ports.submissions,
        true,
        serde_json::json!([
            ["ehlo"],
            ["auth", "PLAIN", "bob", "bobpw", true],
            [
                "send",
                "bob@example.com",
                ["dave@remote.test"],
                msg("bob@example.com", "dave@remote.test", "tls only"),
                ["REQUIRETLS"]
            ],
        ]),
    );
    assert!(replies[0].1.contains("REQUIRETLS"), "{replies:?}");
    assert_eq!(replies[2].0, 250, "{replies:?}");
    let (_, dsn) = wait_for("the REQUIRETLS DSN", Duration::from_secs(30), || {
        maildir_messages(tmp.path(), "bob").into_iter().find(|(_, m)| m.contains("5.7.30"))
    });
    assert!(dsn.contains("dave@remote.test") && dsn.contains("Subject: tls only"), "{dsn}");
    assert!(!sink.lock().unwrap().iter().any(|g| String::from_utf8_lossy(&g.data).contains("tls only")));
    let metrics = common::http_get(SocketAddr::from(([127, 0, 0, 1], ports.metrics)), "/metrics").unwrap().1;
    // One wrong password by AUTH PLAIN, one by AUTH LOGIN.
    for mechanism in ["plain", "login"] {
        let series = format!(
            "mailroom_auth_attempts_total{{mechanism=\"{mechanism}\",protocol=\"submission\",result=\"failure\"}} 1"
        );
        assert!(metrics.contains(&series), "{metrics}");
    }
    drop(server);
}

fn queue_cmd(env: &[(String, String)], args: &[&str]) -> (bool, String) {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    let out = run(&all, env, "");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Queue ids from `mailroom queue list` (the first word of each item line).
fn queue_ids(env: &[(String, String)]) -> Vec<String> {
    let (ok, text) = queue_cmd(env, &["list"]);
    assert!(ok, "{text}");
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() > 8 && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .map(str::to_string)
        .collect()
}

#[test]
fn queue_commands_and_kill9_with_a_full_queue() {
    if !tools() {
        return;
    }
    let (_dns, dns) = start_dns();
    let mx_port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let env = server_env(tmp.path(), dns, mx_port);

    let (ok, text) = queue_cmd(&env, &["list"]);
    assert!(!ok && text.contains("is `mailroom serve` running"), "no server: {text}");

    let (mut server, ports) = start_server(&env, tmp.path());
    // The remote MX is down: everything stays queued.
    for i in 0..4 {
        let replies = smtplib(
            ports.submission,
            false,
            serde_json::json!([
                ["ehlo"],
                ["starttls"],
                ["ehlo"],
                ["auth", "PLAIN", "alice@example.com", "secret", true],
                [
                    "send",
                    "alice@example.com",
                    [format!("dave{i}@remote.test")],
                    msg("alice@example.com", "dave@remote.test", &format!("queued {i}"))
                ],
            ]),
        );
        assert_eq!(replies[4].0, 250, "{replies:?}");
    }
    let ids = wait_for("4 queued items", Duration::from_secs(10), || {
        let ids = queue_ids(&env);
        (ids.len() == 4).then_some(ids)
    });
    let (ok, text) = queue_cmd(&env, &["show", &ids[0]]);
    assert!(ok && text.contains("dave"), "{text}");
    let (ok, text) = queue_cmd(&env, &["hold", &ids[0]]);
    assert!(ok, "{text}");
    assert!(queue_cmd(&env, &["list"]).1.contains("hold"), "held");
    let (ok, text) = queue_cmd(&env, &["release", &ids[0]]);
    assert!(ok, "{text}");
    let (ok, text) = queue_cmd(&env, &["delete", &ids[1]]);
    assert!(ok, "{text}");
    let (ok, text) = queue_cmd(&env, &["delete", "NOSUCHITEM123"]);
    assert!(!ok, "unknown id: {text}");
    assert_eq!(queue_ids(&env).len(), 3);
    let (ok, text) = queue_cmd(&env, &["retry"]);
    assert!(ok, "{text}");

    // kill -9 with three items queued, bring the MX up, restart: all delivered.
    server.kill9();
    let (sink, _) = common::sink::start_sink(Some(mx_port));
    let (mut server, _) = start_server(&env, tmp.path());
    let _ = queue_cmd(&env, &["retry"]);
    wait_for("three deliveries", Duration::from_secs(60), || (sink.lock().unwrap().len() >= 3).then_some(()));
    let subjects: Vec<String> =
        sink.lock().unwrap().iter().map(|g| String::from_utf8_lossy(&g.data).into_owned()).collect();
    for i in [0, 2, 3] {
        assert!(subjects.iter().any(|s| s.contains(&format!("Subject: queued {i}"))), "{i}: {subjects:?}");
    }
    assert!(!subjects.iter().any(|s| s.contains("Subject: queued 1")), "deleted item not sent");
    wait_for("an empty queue", Duration::from_secs(20), || queue_ids(&env).is_empty().then_some(()));
    server.terminate(Duration::from_secs(30));
}

#[test]
fn port_25_relays_for_trusted_networks_and_forwards_remote_aliases() {
    if !tools() {
        return;
    }
    let (_dns, dns) = start_dns();
    let mx_port = free_port();
    let (sink, _) = common::sink::start_sink(Some(mx_port));
    let tmp = tempfile::tempdir().unwrap();
    let mut env = server_env(tmp.path(), dns, mx_port);
    env.retain(|(k, _)| k != "MAILROOM_ALIASES");
    env.push(("MAILROOM_ALIASES".into(), "fwd@example.com:friend@remote.test alice@example.com".into()));
    env.retain(|(k, _)| k != "MAILROOM_SMTP_LISTEN");
    env.push(("MAILROOM_SMTP_LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("MAILROOM_TRUSTED_NETWORKS".into(), "127.0.0.0/8".into()));
    let (server, _) = start_server(&env, tmp.path());
    let smtp = server.port("smtp");
    let port = smtp.to_string();

    // No AUTH on port 25.
    let replies = smtplib(smtp, false, serde_json::json!([["ehlo"], ["raw", "AUTH PLAIN AGEAYg=="]]));
    assert_eq!(replies[1].0, 503, "{replies:?}");

    // A trusted client relays without AUTH (e.g. an app server on the same network).
    let body = "From: app@example.com\r\nTo: erin@remote.test\r\nSubject: relayed\r\n\r\nreport\r\n";
    let (ok, text) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--from",
        "app@example.com",
        "--to",
        "erin@remote.test",
        "--data",
        body,
    ]);
    assert!(ok, "{text}");
    // An alias with a remote and a local target: one copy each.
    let body = "From: sender@remote.test\r\nTo: fwd@example.com\r\nSubject: forwarded\r\n\r\nfyi\r\n";
    let (ok, text) = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--from",
        "sender@remote.test",
        "--to",
        "fwd@example.com",
        "--data",
        body,
    ]);
    assert!(ok, "{text}");
    wait_for("both remote copies", Duration::from_secs(30), || {
        let got = sink.lock().unwrap();
        let has = |rcpt: &str, subject: &str| {
            got.iter().any(|g| g.rcpts.iter().any(|r| r == rcpt) && String::from_utf8_lossy(&g.data).contains(subject))
        };
        (has("erin@remote.test", "Subject: relayed") && has("friend@remote.test", "Subject: forwarded")).then_some(())
    });
    wait_for("the local copy", Duration::from_secs(10), || {
        maildir_messages(tmp.path(), "alice").into_iter().find(|(_, m)| m.contains("Subject: forwarded"))
    });
}

/// Alice's session may not name Bob or a stranger in `Sender:` or the `Resent-*` fields
/// (DKIM would vouch for them), nor hide a second author in another `From:`; an alias
/// of hers is fine.
#[test]
fn sender_and_resent_headers_must_be_owned() {
    if !tools() {
        return;
    }
    let (_dns, dns) = start_dns();
    let tmp = tempfile::tempdir().unwrap();
    let env = server_env(tmp.path(), dns, free_port());
    let (mut server, ports) = start_server(&env, tmp.path());
    let with = |extra: &str, subject: &str| {
        format!("From: alice@example.com\r\n{extra}To: bob@example.com\r\nSubject: {subject}\r\n\r\nhi\r\n")
    };
    let send = |body: String| serde_json::json!(["send", "alice@example.com", ["bob@example.com"], body]);
    let replies = smtplib(
        ports.submission,
        false,
        serde_json::json!([
            ["ehlo"],
            ["starttls"],
            ["ehlo"],
            ["auth", "PLAIN", "alice@example.com", "secret", true],
            send(with("Sender: bob@example.com\r\n", "sender bob")),
            send(with("Resent-From: Boss <boss@bank.example>\r\n", "resent from")),
            send(with("Resent-Sender: boss@(x)bank.example.\r\n", "resent sender")),
            send(with("FROM: bob@example.com\r\n", "two froms")),
            send(with("Sender: Sales <sales@example.com>\r\n", "alias sender")),
        ]),
    );
    assert_eq!(replies[3].0, 235, "{replies:?}");
    assert_eq!(replies[4].0, 553, "Sender: of another account: {replies:?}");
    assert!(replies[4].1.contains("<bob@example.com>: Sender: header"), "{replies:?}");
    assert_eq!(replies[5].0, 553, "foreign Resent-From: {replies:?}");
    assert_eq!(replies[6].0, 553, "foreign Resent-Sender: {replies:?}");
    assert!(replies[6].1.contains("<boss@bank.example>"), "{replies:?}");
    assert_eq!(replies[7].0, 550, "two From: fields: {replies:?}");
    assert_eq!(replies[8].0, 250, "an alias as Sender: {replies:?}");
    let stored = wait_for("the alias-sender copy", Duration::from_secs(10), || {
        let all = maildir_messages(tmp.path(), "bob");
        all.iter().any(|(_, m)| m.contains("Subject: alias sender")).then_some(all)
    });
    assert_eq!(stored.len(), 1, "only the owned message is delivered: {stored:?}");
    assert!(server.terminate(Duration::from_secs(30)).unwrap().success());
}
