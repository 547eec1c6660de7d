//! Port 25 judges mail from the internet with the real binary and a real DNS server
//! (dnsmasq) holding SPF and DMARC records: `p=reject` failures are refused with
//! 550 5.7.1, `p=quarantine` failures land in Junk, and every stored message carries
//! our one Authentication-Results header (a forged one claiming our name is removed).

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;

fn swaks(port: u16, from: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}"), "--from", from, "--to", "alice@example.com"])
        .args(["--header", &format!("From: <{from}>")])
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn message_files(dir: &std::path::Path) -> Vec<String> {
    ["new", "cur"]
        .iter()
        .flat_map(|s| std::fs::read_dir(dir.join(s)).into_iter().flatten())
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

#[test]
fn dmarc_reject_quarantine_and_authentication_results() {
    if !have_tool("dnsmasq") || !have_tool("swaks") {
        return;
    }
    let dns_port = free_port();
    let _dns = dnsmasq_on(
        dns_port,
        &[
            "--local=/test/",
            "--host-record=mx.reject.test,192.0.2.10",
            "--host-record=mx.quarantine.test,192.0.2.11",
            "--mx-host=reject.test,mx.reject.test,10",
            "--mx-host=quarantine.test,mx.quarantine.test,10",
            "--mx-host=plain.test,mx.reject.test,10",
            "--txt-record=reject.test,v=spf1 -all",
            "--txt-record=_dmarc.reject.test,v=DMARC1; p=reject",
            "--txt-record=quarantine.test,v=spf1 -all",
            "--txt-record=_dmarc.quarantine.test,v=DMARC1; p=quarantine",
        ],
    );

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (smtp, metrics) = (free_port(), free_port());
    let mut env = base_env(&data);
    env.push(("MAILROOM_SMTP_LISTEN".into(), format!("127.0.0.1:{smtp}")));
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!("127.0.0.1:{metrics}")));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_DNS_SERVERS".into(), format!("127.0.0.1:{dns_port}")));
    let mut server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], metrics))), &data);
    server.wait_ready(Duration::from_secs(30));

    let (ok, text) = swaks(smtp, "ceo@reject.test", &[]);
    assert!(!ok && text.contains("550 5.7.1"), "DMARC p=reject failure is refused:\n{text}");

    let (ok, text) = swaks(smtp, "news@quarantine.test", &[]);
    assert!(ok, "{text}");
    let junk = message_files(&data.join("mail/example.com/alice/.Junk"));
    assert_eq!(junk.len(), 1, "p=quarantine failure goes to Junk");
    assert!(junk[0].contains("Authentication-Results: mx.example.com;"), "{}", junk[0]);
    assert!(junk[0].contains("dmarc=fail"), "{}", junk[0]);

    // A message claiming our own Authentication-Results is stripped of it; ours is added.
    let (ok, text) = swaks(
        smtp,
        "friend@plain.test",
        &["--add-header", "Authentication-Results: mx.example.com; dmarc=pass header.from=bank.example"],
    );
    assert!(ok, "{text}");
    let inbox = message_files(&data.join("mail/example.com/alice"));
    let msg = inbox.iter().find(|m| m.contains("plain.test")).expect("delivered to INBOX");
    assert_eq!(msg.matches("Authentication-Results: mx.example.com").count(), 1, "{msg}");
    assert!(!msg.contains("dmarc=pass header.from=bank.example"), "forged header removed:\n{msg}");
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
}

/// A bounce to an SRS address we made while forwarding goes on to the original
/// sender (through the queue); a forged SRS address is an unknown user.
#[test]
fn srs_bounce_round_trip() {
    if !have_tool("swaks") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (smtp, metrics) = (free_port(), free_port());
    let mut env = base_env(&data);
    env.push(("MAILROOM_SMTP_LISTEN".into(), format!("127.0.0.1:{smtp}")));
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!("127.0.0.1:{metrics}")));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    let mut server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], metrics))), &data);
    server.wait_ready(Duration::from_secs(30));

    // The same key the server uses (created at its start in state/).
    let srs = mailroom::mailauth::Srs::load_or_create(&data.join("state")).unwrap();
    let srs_address = srs.forward("orig@remote.test", "example.com");
    assert!(srs_address.starts_with("SRS0="), "{srs_address}");
    let bounce = |rcpt: &str| {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{smtp}"), "--from", "<>", "--to", rcpt])
            // A real bounce has an author (RFC 3464); port 25 refuses mail without one.
            .args(["--header", "From: MAILER-DAEMON@mx.remote.test"])
            .args(["--header", "Subject: Undelivered Mail Returned to Sender"])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = bounce(&srs_address);
    assert!(ok, "the bounce is accepted for the original sender:\n{text}");
    let listing = run(&["queue", "list"], &env, "");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.contains("orig@remote.test") || listing.lines().count() >= 2, "queued onwards:\n{listing}");

    let forged = srs_address.replacen("SRS0=", "SRS0=AAAA", 1);
    let (ok, text) = bounce(&forged);
    assert!(!ok && text.contains("550 5.1.1"), "a forged SRS address is unknown:\n{text}");
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
}

/// Sends each message of `cases` (raw, CRLF) with python's smtplib over port 25 and
/// prints one line per case: the reply code, then the reply text.
const SEND_RAW: &str = r#"
import json, smtplib, sys
port, cases = int(sys.argv[1]), json.loads(sys.stdin.read())
for raw in cases:
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    try:
        s.sendmail("x@plain.test", ["alice@example.com"], raw.encode())
        print(250, "accepted")
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
    finally:
        s.quit()
"#;

/// ENVELOPE of every message in alice's INBOX, fetched with python's imaplib.
const FETCH_ENVELOPES: &str = r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
imap = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
imap.starttls(ssl_context=ctx)
imap.login("alice@example.com", "wonderland")
imap.select("INBOX")
typ, data = imap.fetch("1:*", "(ENVELOPE)")
for d in data:
    print(d.decode() if isinstance(d, bytes) else d[0].decode())
imap.logout()
"#;

/// The DMARC `p=reject` bypasses a black-box probe found: an author domain that
/// publishes `v=spf1 -all` and `p=reject` hidden in a second From field, an address
/// list, a trailing dot, a comment, after an angle address, or no From at all. Every
/// one is refused with 550 5.7.1 and nothing reaches the INBOX; a p=none author written
/// with a comment and a trailing dot is accepted, and IMAP's ENVELOPE shows exactly the
/// domain the Authentication-Results header judged.
#[test]
fn dmarc_reject_cannot_be_bypassed_by_from_syntax() {
    if !have_tool("dnsmasq") || !have_tool("python3") {
        return;
    }
    let dns_port = free_port();
    let _dns = dnsmasq_on(
        dns_port,
        &[
            "--local=/test/",
            "--host-record=mx.rejecter.test,192.0.2.10",
            "--mx-host=rejecter.test,mx.rejecter.test,10",
            "--mx-host=plain.test,mx.rejecter.test,10",
            "--txt-record=rejecter.test,v=spf1 -all",
            "--txt-record=_dmarc.rejecter.test,v=DMARC1; p=reject",
            "--txt-record=_dmarc.plain.test,v=DMARC1; p=none",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (smtp, imap, metrics) = (free_port(), free_port(), free_port());
    let mut env = base_env(&data);
    env.push(("MAILROOM_SMTP_LISTEN".into(), format!("127.0.0.1:{smtp}")));
    env.push(("MAILROOM_IMAP_LISTEN".into(), format!("127.0.0.1:{imap}")));
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!("127.0.0.1:{metrics}")));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_DNS_SERVERS".into(), format!("127.0.0.1:{dns_port}")));
    let mut server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], metrics))), &data);
    server.wait_ready(Duration::from_secs(30));

    let attacks = [
        "From: ceo@rejecter.test\r\nFrom: x@plain.test\r\n",
        "FROM: ceo@rejecter.test\r\nFrom: x@plain.test\r\n",
        "From: ceo@rejecter.test, x@plain.test\r\n",
        "From: ceo@rejecter.test.\r\n",
        "From: ceo@(x)rejecter.test\r\n",
        "From: <ceo@rejecter.test> x@plain.test\r\n",
        "",
    ];
    let mut cases: Vec<String> = attacks
        .iter()
        .map(|from| format!("{from}To: alice@example.com\r\nSubject: pay now\r\n\r\nurgent\r\n"))
        .collect();
    cases.push(
        "From: Friend <friend@(comment)Plain.Test.>\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nhi\r\n".into(),
    );
    let out = Command::new("python3")
        .args(["-c", SEND_RAW, &smtp.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(serde_json::to_string(&cases).unwrap().as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = replies.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{replies}\n{}", server.log());
    for (from, line) in attacks.iter().zip(&lines) {
        assert!(line.starts_with("550 5.7.1 "), "{from:?} must be refused, got {line}");
    }
    assert!(lines[0].contains("2 From: headers"), "{}", lines[0]);
    assert!(lines[6].contains("no From: header"), "{}", lines[6]);
    assert_eq!(lines[7], "250 accepted");

    let inbox = message_files(&data.join("mail/example.com/alice"));
    assert_eq!(inbox.len(), 1, "only the honest message is stored: {inbox:?}");
    assert!(inbox[0].contains("header.from=plain.test"), "{}", inbox[0]);
    let out = Command::new("python3").args(["-c", FETCH_ENVELOPES, &imap.to_string()]).output().unwrap();
    let envelopes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        envelopes.contains("((\"Friend\" NIL \"friend\" \"plain.test\"))"),
        "{envelopes}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
}

/// Slowloris on port 25 against the real binary, with `MAILROOM_SMTP_COMMAND_TIMEOUT=2s`
/// (short, but twice what a loaded machine may take between the setup commands): one byte
/// every 200 ms neither keeps an unfinished EHLO nor a DATA transfer open; each gets
/// `421 4.4.2` and the connection closes.
#[test]
fn trickling_clients_are_cut_at_the_deadline() {
    use std::io::{BufRead, BufReader, Write};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (smtp, metrics) = (free_port(), free_port());
    let mut env = base_env(&data);
    env.push(("MAILROOM_SMTP_LISTEN".into(), format!("127.0.0.1:{smtp}")));
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!("127.0.0.1:{metrics}")));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_SMTP_COMMAND_TIMEOUT".into(), "2s".into()));
    let mut server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], metrics))), &data);
    server.wait_ready(Duration::from_secs(30));

    // `setup` lines are sent whole; then bytes trickle until the server answers.
    let trickle = |setup: &[&str]| -> (String, bool) {
        let stream = std::net::TcpStream::connect(("127.0.0.1", smtp)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("220 "), "{line}");
        for cmd in setup {
            writer.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
            assert!(line.starts_with('2') || line.starts_with('3'), "{cmd}: {line}");
        }
        let trickler = std::thread::spawn(move || {
            // 100 bytes over 20 s: far longer than the deadline, each gap far shorter.
            for _ in 0..100 {
                if writer.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        line.clear();
        let _ = reader.read_line(&mut line);
        let mut rest = String::new();
        let closed = matches!(reader.read_line(&mut rest), Ok(0));
        let _ = trickler.join();
        (line.trim_end().to_string(), closed)
    };
    let (reply, closed) = trickle(&[]);
    assert!(reply.starts_with("421 4.4.2 ") && reply.contains("timeout"), "unfinished EHLO: {reply}");
    assert!(closed);
    let (reply, closed) = trickle(&["EHLO slow.example", "MAIL FROM:<>", "RCPT TO:<alice@example.com>", "DATA"]);
    assert!(reply.starts_with("421 4.4.2 ") && reply.contains("timeout"), "DATA trickle: {reply}");
    assert!(closed);
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
}
