//! The smarthost modes of `MAILROOM_RELAY_HOST` against a relay we did not write:
//! aiosmtpd (tests/clients/relay_aiosmtpd.py) on a loopback port, with implicit TLS and
//! AUTH (`smtps://`), STARTTLS then AUTH (`smtp://`), or plain and open (`smtp+insecure://`).
//! The queue and the real SMTP client deliver through it; the relay records every AUTH and
//! message with whether the connection was encrypted at that moment. The relay's test CA
//! is given to the client as an extra root, as tests/it/queue.rs does for its own relay.
//! The refusal of credentials with `smtp+insecure://` runs the binary's `check-config`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mailroom::accounts::Address;
use mailroom::config::{RelayHost, RelayMode};
use mailroom::queue::{Queue, QueueSettings, RemoteBounces};
use mailroom::smtp::client::{ClientSettings, SmtpTransport};
use rustls_pki_types::CertificateDer;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/relay_aiosmtpd.py");
const MSG: &[u8] = b"From: alice@here.test\r\nTo: bob@remote.test\r\nSubject: via the smarthost\r\n\
Message-ID: <s1@here.test>\r\n\r\nHello through the relay.\r\n";

/// Is aiosmtpd importable by the python3 the tests run? Missing: skip, or fail under CI.
fn have_aiosmtpd() -> bool {
    if !common::have_tool("python3") {
        return false;
    }
    let ok = Command::new("python3").args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    if !ok {
        common::missing("python3 module aiosmtpd");
    }
    ok
}

/// A CA, and a certificate for 127.0.0.1 signed by it written as PEM files in `dir`
/// (the CA alone too, as `ca.pem`).
fn relay_certificate(dir: &Path) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "mailroom relay test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
    let (cert, key) = (dir.join("relay.crt"), dir.join("relay.key"));
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    (cert, key, ca.der().clone())
}

/// The running relay: killed on drop; `events()` reads what it recorded.
struct Relay {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Relay {
    fn start(mode: &str, dir: &Path, tls: Option<(&Path, &Path)>) -> Relay {
        let port = common::free_port();
        let out = dir.join(format!("{mode}-events.jsonl"));
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT).args(["--mode", mode, "--port", &port.to_string(), "--out"]).arg(&out);
        cmd.args(["--user", "relayuser", "--password", "s3cret pass"]);
        if let Some((cert, key)) = tls {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        Relay { child, port, out }
    }

    fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == kind)
            .collect()
    }
}

fn a(s: &str) -> Address {
    Address::parse(s).unwrap()
}

/// A queue whose transport sends everything to `relay`, trusting `ca` besides the web PKI.
fn relay_queue(dir: &Path, relay: RelayHost, ca: Option<CertificateDer<'static>>) -> Queue {
    let settings = QueueSettings {
        hostname: "mx.here.test".into(),
        lifetime: Duration::from_secs(60),
        retry_min: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        delay_warning: None,
        max_concurrency: 4,
        per_domain_concurrency: 1,
    };
    let mut client = ClientSettings::new("mx.here.test", 1, Some(relay), Vec::new());
    client.mta_sts = false;
    client.connect_timeout = Duration::from_secs(5);
    client.extra_roots = ca.into_iter().collect();
    let transport = Arc::new(SmtpTransport::new(client).unwrap());
    Queue::open(&dir.join("queue"), settings, transport, Arc::new(RemoteBounces)).unwrap()
}

fn relay_host(mode: RelayMode, port: u16, credentials: bool) -> RelayHost {
    let (username, password) =
        if credentials { (Some("relayuser".into()), Some("s3cret pass".into())) } else { (None, None) };
    RelayHost { mode, host: "127.0.0.1".into(), port, username, password }
}

/// Enqueue one message for two recipients of one domain (one transaction), run the
/// workers until the queue is empty.
async fn send_through(queue: &Queue) {
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _workers = queue.spawn_workers(rx);
    queue
        .enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test"), a("carol@remote.test")], MSG, "<s1>")
        .await
        .unwrap();
    for _ in 0..400 {
        if queue.list().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not delivered: {}", mailroom::queue::execute_control_command(queue, "list").await);
}

/// The relay got the message once, whole, for both recipients.
fn assert_received(relay: &Relay, tls: bool, login: Option<&str>) {
    let data = relay.events("data");
    assert_eq!(data.len(), 1, "{data:?}");
    let m = &data[0];
    assert_eq!(m["mail_from"], "alice@here.test");
    assert_eq!(m["rcpts"], serde_json::json!(["bob@remote.test", "carol@remote.test"]));
    assert_eq!(m["data"].as_str().unwrap().replace("\r\n", "\n"), String::from_utf8_lossy(MSG).replace("\r\n", "\n"));
    assert_eq!(m["tls"], tls, "{m}");
    assert_eq!(m["login"].as_str(), login, "{m}");
}

#[tokio::test]
async fn implicit_tls_relay_receives_mail_with_auth() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = relay_certificate(dir.path());
    let relay = Relay::start("smtps", dir.path(), Some((&cert, &key)));
    let queue = relay_queue(dir.path(), relay_host(RelayMode::Smtps, relay.port, true), Some(ca));
    send_through(&queue).await;
    assert_received(&relay, true, Some("relayuser"));
    let auths = relay.events("auth");
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert!(auths[0]["tls"] == true && auths[0]["ok"] == true, "{auths:?}");
}

#[tokio::test]
async fn starttls_relay_requiring_auth_receives_mail() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = relay_certificate(dir.path());
    let relay = Relay::start("starttls", dir.path(), Some((&cert, &key)));
    let queue = relay_queue(dir.path(), relay_host(RelayMode::StartTls, relay.port, true), Some(ca));
    send_through(&queue).await;
    assert_received(&relay, true, Some("relayuser"));
    let auths = relay.events("auth");
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert!(auths[0]["tls"] == true && auths[0]["ok"] == true, "{auths:?}");
}

#[tokio::test]
async fn insecure_mode_delivers_to_a_plain_relay_without_credentials() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start("plain", dir.path(), None);
    let queue = relay_queue(dir.path(), relay_host(RelayMode::Insecure, relay.port, false), None);
    send_through(&queue).await;
    assert_received(&relay, false, None);
    assert!(relay.events("auth").is_empty());
}

/// Defence in depth: even if credentials reach the client with `smtp+insecure://` (the
/// configuration refuses them), AUTH is not sent in clear; the mail waits, and the
/// diagnostic names the relay and its mode.
#[tokio::test]
async fn credentials_are_not_sent_to_a_plain_relay() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start("plain", dir.path(), None);
    let queue = relay_queue(dir.path(), relay_host(RelayMode::Insecure, relay.port, true), None);
    let reply = first_reply(&queue).await;
    let expected = format!("4.7.5 relay smtp+insecure://127.0.0.1:{}: refusing to send credentials", relay.port);
    assert!(reply.starts_with(&expected), "{reply}");
    assert!(relay.events("data").is_empty() && relay.events("auth").is_empty());
}

/// A relay whose certificate we cannot verify gets nothing; the recipient's last reply
/// names the mode that failed.
#[tokio::test]
async fn implicit_tls_with_an_untrusted_certificate_is_deferred() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _ca) = relay_certificate(dir.path());
    let relay = Relay::start("smtps", dir.path(), Some((&cert, &key)));
    let queue = relay_queue(dir.path(), relay_host(RelayMode::Smtps, relay.port, true), None);
    let reply = first_reply(&queue).await;
    let expected = format!("4.7.5 relay smtps://127.0.0.1:{}: TLS handshake failed:", relay.port);
    assert!(reply.starts_with(&expected), "{reply}");
    assert!(relay.events("data").is_empty() && relay.events("auth").is_empty());
    let list = mailroom::queue::execute_control_command(&queue, "list").await;
    assert!(list.contains(&format!("    bob@remote.test ({expected}")), "{list}");
}

/// Enqueue one message, wait for its first attempt, return bob's last reply.
async fn first_reply(queue: &Queue) -> String {
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _workers = queue.spawn_workers(rx);
    let id = queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<s1>").await.unwrap();
    for _ in 0..400 {
        if let Some(d) = queue.show(&id).await.filter(|d| d.envelope.attempts > 0 && !d.in_flight) {
            return d.envelope.recipients[0].last_reply.clone().unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no attempt made");
}

/// The binary end to end: mail to an alias with a remote target is forwarded through
/// `MAILROOM_RELAY_HOST=smtp+insecure://…` to a plain relay.
#[test]
fn the_server_forwards_through_an_insecure_relay() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start("plain", dir.path(), None);
    let data = dir.path().join("data");
    let mut env = common::env_listening(&data, &["SMTP"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_ALIASES".into(), "fwd@example.com:someone@remote.example".into()));
    env.push(("MAILROOM_RELAY_HOST".into(), format!("smtp+insecure://127.0.0.1:{}", relay.port)));
    let server = common::Server::start_ready(&env, &data, Duration::from_secs(60));
    let send = "import smtplib, sys\n\
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)\n\
s.sendmail('', ['fwd@example.com'], 'From: sender@example.net\\r\\nSubject: forwarded via relay\\r\\n\\r\\nhello\\r\\n')\n\
s.quit()\n";
    let out = Command::new("python3").args(["-c", send, &server.port("smtp").to_string()]).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), server.log());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while relay.events("data").is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing reached the relay:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let data = relay.events("data");
    assert_eq!(data[0]["rcpts"], serde_json::json!(["someone@remote.example"]), "{data:?}");
    assert!(data[0]["data"].as_str().unwrap().contains("Subject: forwarded via relay"), "{data:?}");
    assert_eq!(data[0]["tls"], false);
    assert!(relay.events("auth").is_empty());
}

/// The binary end to end with a relay whose certificate comes from a private CA:
/// `MAILROOM_RELAY_CA_FILE` makes it trusted, and the message goes over implicit TLS
/// with AUTH.
#[test]
fn the_server_trusts_the_relay_ca_file() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = relay_certificate(dir.path());
    let relay = Relay::start("smtps", dir.path(), Some((&cert, &key)));
    let data = dir.path().join("data");
    let mut env = common::env_listening(&data, &["SMTP"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_ALIASES".into(), "fwd@example.com:someone@remote.example".into()));
    env.push(("MAILROOM_RELAY_HOST".into(), format!("smtps://127.0.0.1:{}", relay.port)));
    env.push(("MAILROOM_RELAY_USERNAME".into(), "relayuser".into()));
    env.push(("MAILROOM_RELAY_PASSWORD".into(), "s3cret pass".into()));
    env.push(("MAILROOM_RELAY_CA_FILE".into(), dir.path().join("ca.pem").display().to_string()));
    let server = common::Server::start_ready(&env, &data, Duration::from_secs(60));
    let send = "import smtplib, sys\n\
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)\n\
s.sendmail('', ['fwd@example.com'], 'From: sender@example.net\\r\\nSubject: via a private CA\\r\\n\\r\\nhello\\r\\n')\n\
s.quit()\n";
    let out = Command::new("python3").args(["-c", send, &server.port("smtp").to_string()]).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), server.log());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while relay.events("data").is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing reached the relay:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let data = relay.events("data");
    assert_eq!(data[0]["rcpts"], serde_json::json!(["someone@remote.example"]), "{data:?}");
    assert!(data[0]["data"].as_str().unwrap().contains("Subject: via a private CA"), "{data:?}");
    assert_eq!(data[0]["tls"], true);
    assert_eq!(data[0]["login"].as_str(), Some("relayuser"), "{data:?}");
}

#[test]
fn credentials_with_an_insecure_relay_are_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = common::base_env(tmp.path());
    env.push(("MAILROOM_RELAY_HOST".into(), "smtp+insecure://relay.lan".into()));
    env.push(("MAILROOM_RELAY_USERNAME".into(), "u".into()));
    env.push(("MAILROOM_RELAY_PASSWORD".into(), "hunter2".into()));
    for command in ["check-config", "serve"] {
        let out = common::run(&[command], &env, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("MAILROOM_RELAY_USERNAME") && stderr.contains("without"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    // Without credentials the same relay is fine, and shown as a URL.
    env.retain(|(k, _)| !k.starts_with("MAILROOM_RELAY_USERNAME") && !k.starts_with("MAILROOM_RELAY_PASSWORD"));
    let out = common::run(&["check-config"], &env, "");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("MAILROOM_RELAY_HOST=smtp+insecure://relay.lan:25"));
}

#[test]
fn a_bad_relay_url_names_the_variable_and_the_accepted_forms() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["lmtp://relay.example", "smtps://", "smtp://relay.example:99999"] {
        let mut env = common::base_env(tmp.path());
        env.push(("MAILROOM_RELAY_HOST".into(), bad.into()));
        let out = common::run(&["check-config"], &env, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("MAILROOM_RELAY_HOST"), "{stderr}");
        assert!(stderr.contains("smtps://host[:465]") && stderr.contains("smtp+insecure://host[:25]"), "{stderr}");
    }
}
