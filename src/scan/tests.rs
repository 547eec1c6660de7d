//! The verdict table end to end: real clamd (when installed), a canned rspamd
//! answer from a tiny HTTP responder (the real rspamd is exercised in
//! `rspamd_tests.rs`), DNSBLs through dnsmasq, and scanners that are down.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::clamd::tests::{MARKER, TestClamd};
use super::*;
use crate::config::{Config, EnvSource};
use crate::dns::testdns::{TestDns, free_port};
use crate::smtp::inbound::scan_refusal;

fn config(pairs: &[(&str, String)]) -> Config {
    let mut all: Vec<(String, String)> = vec![
        ("MAILROOM_HOSTNAME".into(), "mx.ours.test".into()),
        ("MAILROOM_DNS_SERVERS".into(), "127.0.0.1:9".into()),
    ];
    for (k, v) in pairs {
        all.retain(|(key, _)| key != k);
        all.push((k.to_string(), v.clone()));
    }
    Config::load(&EnvSource::from_pairs(all)).map(|(c, _)| c).unwrap()
}

/// The scanners of `c`, with a resolver of their own (the server shares its one).
fn scanners(c: &Config) -> Scanners {
    Scanners::new(&c.scan, &c.hostname, crate::dns::resolver::build(&c.dns_servers).unwrap()).unwrap()
}

/// An HTTP responder that answers every request with `json` (rspamd stand-in).
async fn fake_rspamd(json: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let mut seen = Vec::new();
                // Read the request head and its Content-Length body.
                loop {
                    let Ok(n) = s.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

fn ctx<'a>(rcpts: &'a [String], user: Option<&'a str>, auth: Option<&'a AuthVerdict>) -> ScanContext<'a> {
    ScanContext {
        client_ip: "192.0.2.66".parse().unwrap(),
        helo: "mail.sender.test",
        mail_from: Some("alice@sender.test"),
        recipients: rcpts,
        client_hostname: None,
        queue_id: "Q1",
        authenticated_user: user,
        auth,
    }
}

const MSG: &[u8] = b"From: alice@sender.test\r\nSubject: hi\r\n\r\nLunch?\r\n";

#[tokio::test]
async fn rspamd_actions_map_to_verdicts() {
    let rcpts = vec!["bob@ours.test".to_string()];
    for (json, expect) in [
        (r#"{"action":"no action","score":1.0,"required_score":15.0}"#, "accept"),
        (r#"{"action":"add header","score":7.0,"required_score":15.0}"#, "junk"),
        (r#"{"action":"rewrite subject","score":9.0,"required_score":15.0}"#, "junk"),
        (r#"{"action":"reject","score":20.0,"required_score":15.0}"#, "554 5.7.1"),
        (r#"{"action":"soft reject","score":0.0,"required_score":15.0}"#, "451 4.7.1"),
        (r#"{"action":"greylist","score":4.0,"required_score":15.0}"#, "451 4.7.1"),
    ] {
        let port = fake_rspamd(json).await;
        let s = scanners(&config(&[("MAILROOM_RSPAMD_URL", format!("http://127.0.0.1:{port}"))]));
        let v = s.scan(MSG, &ctx(&rcpts, None, None)).await;
        match (&v.action, expect) {
            (ScanAction::Accept, "accept") => assert!(v.headers.starts_with("X-Spam-Status: No, score=1.00"), "{v:?}"),
            (ScanAction::Junk { reason }, "junk") => {
                assert!(reason.starts_with("rspamd: "), "{reason}");
                assert!(v.headers.contains("X-Spam-Status: Yes") && v.headers.contains("X-Spam: Yes"), "{v:?}");
            }
            (action @ (ScanAction::Reject { .. } | ScanAction::TempFail { .. }), code) => {
                let reply = scan_refusal(action).map(|r| r.one_line()).unwrap_or_default();
                assert!(reply.starts_with(code), "{json}: {reply}")
            }
            other => panic!("{json}: unexpected {other:?}"),
        }
        assert!(!v.headers.contains("\r\n\r\n"));
    }
}

#[tokio::test]
async fn scanner_down_tempfails_or_accepts_with_a_header() {
    let rcpts = vec!["bob@ours.test".to_string()];
    let dead = format!("127.0.0.1:{}", free_port());
    let c = config(&[("MAILROOM_CLAMD", dead.clone())]);
    let v = scanners(&c).scan(MSG, &ctx(&rcpts, None, None)).await;
    assert_eq!(
        scan_refusal(&v.action).map(|r| r.one_line()).as_deref(),
        Some("451 4.7.1 Content scanner temporarily unavailable; please try again later")
    );

    let c = config(&[
        ("MAILROOM_CLAMD", dead),
        ("MAILROOM_RSPAMD_URL", format!("http://127.0.0.1:{}", free_port())),
        ("MAILROOM_SCANNER_FAILURE", "accept".into()),
    ]);
    let v = scanners(&c).scan(MSG, &ctx(&rcpts, None, None)).await;
    assert_eq!(v.action, ScanAction::Accept);
    assert!(v.headers.contains("X-Virus-Scanned: no (clamd unavailable on mx.ours.test)\r\n"), "{}", v.headers);
    assert!(v.headers.contains("X-Spam-Status: Unknown, rspamd unavailable on mx.ours.test\r\n"), "{}", v.headers);
}

#[tokio::test]
async fn real_clamd_virus_is_refused_with_554() {
    let Some(clamd) = TestClamd::start() else { return };
    let rcpts = vec!["bob@ours.test".to_string()];
    let c = config(&[("MAILROOM_CLAMD", clamd.socket.display().to_string())]);
    let s = scanners(&c);
    let v = s.scan(MSG, &ctx(&rcpts, None, None)).await;
    assert_eq!(v.action, ScanAction::Accept);
    assert_eq!(v.headers, "X-Virus-Scanned: clamd on mx.ours.test; clean\r\n");
    let infected = format!("Subject: x\r\n\r\n{MARKER}\r\n");
    let v = s.scan(infected.as_bytes(), &ctx(&rcpts, None, None)).await;
    assert_eq!(
        scan_refusal(&v.action).map(|r| r.one_line()).as_deref(),
        Some("554 5.7.1 Message refused: virus found (MailroomTest.UNOFFICIAL)")
    );
}

#[tokio::test]
async fn dnsbl_and_authentication_results_send_to_junk() {
    let Some(dns) = TestDns::start(&["test"], &[], &[("66.2.0.192.bl.test", "127.0.0.2")]) else { return };
    let rcpts = vec!["bob@ours.test".to_string()];
    let c = config(&[("MAILROOM_DNSBL", "bl.test".into()), ("MAILROOM_DNS_SERVERS", dns.addr.to_string())]);
    let s = scanners(&c);
    let listings = || crate::metrics::metrics().dnsbl_listings_total.with_label_values(&["bl.test"]).get();
    let before = listings();
    let v = s.scan(MSG, &ctx(&rcpts, None, None)).await;
    assert_eq!(v.action, ScanAction::Junk { reason: "192.0.2.66 listed in bl.test (127.0.0.2)".into() });
    assert_eq!(listings(), before + 1, "the hit is counted by its zone");
    assert_eq!(v.headers, "X-Spam: Yes (192.0.2.66 listed in bl.test (127.0.0.2))\r\n");
    // Authenticated submission from a listed (e.g. residential) address: not consulted.
    let v = s.scan(MSG, &ctx(&rcpts, Some("alice@ours.test"), None)).await;
    assert_eq!(v.action, ScanAction::Accept);

    // No scanners at all: the built-in verdict from SPF/DKIM/DMARC.
    let plain = scanners(&config(&[]));
    let auth = AuthVerdict {
        header: String::new(),
        disposition: Disposition::Accept,
        spf: "fail",
        dkim_pass: false,
        dmarc: "none",
        arc: "none",
        reports: Vec::new(),
    };
    let v = plain.scan(MSG, &ctx(&rcpts, None, Some(&auth))).await;
    assert_eq!(v.action, ScanAction::Junk { reason: "SPF fail without a DKIM pass".into() });
    let quarantined = AuthVerdict { disposition: Disposition::Junk, dmarc: "fail", ..auth.clone() };
    let v = plain.scan(MSG, &ctx(&rcpts, None, Some(&quarantined))).await;
    assert_eq!(v.action, ScanAction::Junk { reason: "DMARC policy quarantine".into() });
    let good = AuthVerdict { spf: "pass", dmarc: "pass", ..auth };
    assert_eq!(plain.scan(MSG, &ctx(&rcpts, None, Some(&good))).await.action, ScanAction::Accept);
}
