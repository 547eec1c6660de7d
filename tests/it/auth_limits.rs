//! The login limiter and the sending limits, attacked through the public ports of the
//! real binary with Python's smtplib, imaplib and poplib, each client bound to its own
//! loopback address (127.0.0.2, 127.0.0.3, …) so the server sees many attackers:
//! parallel guesses from one address, a distributed guesser against one account and its
//! owner coming from a clean address, the timing of `{PLAIN}` accounts, and recipients
//! per hour. Verifications are counted from `/metrics`. Tools missing -> skip, unless CI=true.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Server, base_env, free_port, have_tool};

const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/login_probe.py");

struct Ports {
    smtp: u16,
    imap: u16,
    pop3: u16,
    metrics: u16,
}

fn start(data: &Path, extra: &[(&str, &str)]) -> (Server, Ports) {
    let ports = Ports { smtp: free_port(), imap: free_port(), pop3: free_port(), metrics: free_port() };
    let mut env = base_env(data);
    let listen =
        [("SUBMISSIONS", ports.smtp), ("IMAPS", ports.imap), ("POP3S", ports.pop3), ("METRICS", ports.metrics)];
    env.retain(|(k, _)| !listen.iter().any(|(p, _)| *k == format!("MAILROOM_{p}_LISTEN")));
    for (p, port) in listen {
        env.push((format!("MAILROOM_{p}_LISTEN"), format!("127.0.0.1:{port}")));
    }
    env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland,bob@example.com:{PLAIN}builder".into()));
    // Sixty sessions from one address within a minute: the connection rate is not under test.
    env.push(("MAILROOM_CONNECTIONS_PER_MINUTE".into(), "1000".into()));
    for (k, v) in extra {
        env.push((format!("MAILROOM_{k}"), v.to_string()));
    }
    let mut server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], ports.metrics))), data);
    server.wait_ready(Duration::from_secs(30));
    (server, ports)
}

/// Run the login jobs `(protocol, source address, user, password)` in parallel; one
/// `(result, seconds, detail)` per job, result `ok`, `fail`, `refused` or `error`.
fn logins(ports: &Ports, jobs: &[(&str, String, &str, &str)]) -> Vec<(String, f64, String)> {
    let ports_json = serde_json::json!({"smtp": ports.smtp, "imap": ports.imap, "pop3": ports.pop3});
    let jobs_json: Vec<serde_json::Value> = jobs.iter().map(|(p, s, u, pw)| serde_json::json!([p, s, u, pw])).collect();
    let out = Command::new("python3")
        .args([PROBE, "127.0.0.1", &ports_json.to_string(), &serde_json::Value::from(jobs_json).to_string()])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<(String, f64, String)> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v[0].as_str().unwrap().to_string(), v[1].as_f64().unwrap(), v[2].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(results.len(), jobs.len(), "probe: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    results
}

/// One counter from `/metrics` (0 when absent).
fn metric(ports: &Ports, series: &str) -> u64 {
    let body = common::http_get(SocketAddr::from(([127, 0, 0, 1], ports.metrics)), "/metrics").unwrap().1;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn count(results: &[(String, f64, String)], what: &str) -> usize {
    results.iter().filter(|r| r.0 == what).count()
}

fn tools() -> bool {
    have_tool("python3")
}

#[test]
fn sixty_parallel_guesses_from_one_address_get_the_documented_ten() {
    if !tools() {
        assert!(!common::in_ci(), "python3 missing in CI");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (server, ports) = start(&tmp.path().join("data"), &[]);
    let src = "127.0.0.2".to_string();
    let mut jobs: Vec<(&str, String, &str, &str)> =
        (0..59).map(|_| ("smtp", src.clone(), "alice@example.com", "guess")).collect();
    jobs.push(("smtp", src.clone(), "alice@example.com", "wonderland"));
    let results = logins(&ports, &jobs);
    let failed =
        metric(&ports, "mailroom_auth_attempts_total{mechanism=\"plain\",protocol=\"submissions\",result=\"failure\"}");
    let succeeded =
        metric(&ports, "mailroom_auth_attempts_total{mechanism=\"plain\",protocol=\"submissions\",result=\"success\"}");
    // The limit counts failures: ten wrong passwords verified, plus the right one if it
    // came before the block.
    assert_eq!(failed, 10, "{results:?}\n{}", server.log());
    assert!(succeeded <= 1);
    assert_eq!(metric(&ports, "mailroom_auth_failures_total"), 10);
    assert_eq!((count(&results, "fail") as u64, count(&results, "ok") as u64), (failed, succeeded), "{results:?}");
    // Everything else was refused with the temporary reply, never verified.
    let refused = 60 - failed - succeeded;
    assert_eq!(count(&results, "refused") as u64, refused, "{results:?}");
    assert_eq!(
        metric(&ports, "mailroom_auth_attempts_total{mechanism=\"plain\",protocol=\"submissions\",result=\"refused\"}"),
        refused
    );
}

#[test]
fn a_distributed_guesser_cannot_lock_the_owner_out_of_smtp_imap_or_pop3() {
    if !tools() {
        assert!(!common::in_ci(), "python3 missing in CI");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (server, ports) = start(&tmp.path().join("data"), &[]);
    let protocols = ["smtp", "imap", "pop3"];
    // 24 addresses, one wrong guess each, spread over the three protocols: the account's
    // budget of 20 is spent.
    let attack: Vec<(&str, String, &str, &str)> =
        (2..26).map(|i| (protocols[i % 3], format!("127.0.0.{i}"), "alice@example.com", "guess")).collect();
    let results = logins(&ports, &attack);
    assert_eq!(count(&results, "fail"), 24, "{results:?}\n{}", server.log());
    // Again from the same addresses: refused without a password check.
    let results = logins(&ports, &attack);
    assert_eq!(count(&results, "refused"), 24, "{results:?}\n{}", server.log());
    // The owner, from clean addresses, on every protocol: in.
    let owner: Vec<(&str, String, &str, &str)> = protocols
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, format!("127.0.0.{}", 100 + i), "alice@example.com", "wonderland"))
        .collect();
    let results = logins(&ports, &owner);
    assert_eq!(count(&results, "ok"), 3, "{results:?}\n{}", server.log());
    // ...and again from those now known-good addresses, with no turn to wait for.
    let results = logins(&ports, &owner);
    assert_eq!(count(&results, "ok"), 3, "{results:?}");
    // Every protocol is counted, success and failure, with the mechanism the probe uses
    // (AUTH PLAIN; IMAP LOGIN and POP3 USER/PASS are `password`).
    for (protocol, mechanism) in [("submissions", "plain"), ("imap", "password"), ("pop3", "password")] {
        let failures = 8;
        let series = |result: &str| {
            format!(
                "mailroom_auth_attempts_total{{mechanism=\"{mechanism}\",protocol=\"{protocol}\",result=\"{result}\"}}"
            )
        };
        assert_eq!(metric(&ports, &series("failure")), failures, "{protocol}");
        assert_eq!(metric(&ports, &series("refused")), 8, "{protocol}");
        assert_eq!(metric(&ports, &series("success")), 2, "{protocol}");
    }
    assert_eq!(metric(&ports, "mailroom_auth_failures_total"), 24);
}

#[test]
fn plain_accounts_take_as_long_as_unknown_users() {
    if !tools() {
        assert!(!common::in_ci(), "python3 missing in CI");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Trusted: no limiter delay, so the time measured is the password check itself.
    let (_server, ports) = start(&tmp.path().join("data"), &[("TRUSTED_NETWORKS", "127.0.0.1/32")]);
    let once = |user: &str| {
        let r = logins(&ports, &[("smtp", "127.0.0.1".to_string(), user, "guess")]);
        assert_eq!(r[0].0, "fail", "{r:?}");
        r[0].1
    };
    // Alternating, so that load from the other tests of this file falls on both alike.
    let (mut unknown, mut plain) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        unknown = unknown.min(once("nobody@example.com"));
        plain = plain.min(once("alice@example.com"));
    }
    // Both pay one argon2 check; without the dummy check a {PLAIN} account answered in
    // microseconds. Loose bound (min of five, half): a loaded machine only adds time.
    assert!(plain >= unknown * 0.5, "{{PLAIN}} {plain:.4} s vs unknown user {unknown:.4} s");
}

/// One submission session: AUTH as alice, then the given SMTP commands; prints
/// `[code, text]` per command.
const RCPT_CLIENT: &str = r#"
import json, smtplib, ssl, sys
port, commands = int(sys.argv[1]), json.loads(sys.argv[2])
s = smtplib.SMTP_SSL("127.0.0.1", port, context=ssl._create_unverified_context(), timeout=30)
s.ehlo("laptop.example")
s.login("alice@example.com", "wonderland")
for c in commands:
    if c == "DATA":
        code, text = s.data(b"From: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
    else:
        code, text = s.docmd(c)
    print(json.dumps([code, text.decode()]), flush=True)
s.quit()
"#;

#[test]
fn recipients_per_hour_are_counted_at_rcpt() {
    if !tools() {
        assert!(!common::in_ci(), "python3 missing in CI");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (server, ports) = start(&tmp.path().join("data"), &[("RECIPIENTS_PER_HOUR", "3")]);
    let commands = serde_json::json!([
        "MAIL FROM:<alice@example.com>",
        "RCPT TO:<alice@example.com>",
        "RCPT TO:<bob@example.com>",
        "DATA",
        "MAIL FROM:<alice@example.com>",
        "RCPT TO:<nobody@example.com>",
        "RCPT TO:<bob@example.com>",
        "RCPT TO:<alice@example.com>",
        "RSET",
    ]);
    let out = Command::new("python3")
        .args(["-c", RCPT_CLIENT, &ports.smtp.to_string(), &commands.to_string()])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<(u64, String)> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v[0].as_u64().unwrap(), v[1].as_str().unwrap().to_string())
        })
        .collect();
    let codes: Vec<u64> = replies.iter().map(|r| r.0).collect();
    // Two recipients in the first message, an unknown one that costs nothing, the third
    // accepted, the fourth over the hourly limit: temporary, with the reason.
    assert_eq!(
        codes,
        [250, 250, 250, 250, 250, 550, 250, 451, 250],
        "{replies:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(replies[7].1.starts_with("4.7.1 <alice@example.com>: too many recipients this hour"), "{replies:?}");
    assert_eq!(metric(&ports, "mailroom_ratelimit_rejections_total{kind=\"recipient\"}"), 1);
}
