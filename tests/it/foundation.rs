//! The foundation, end to end: the real binary on ephemeral loopback ports with a
//! temp data dir — health, readiness, metrics, banner, graceful stop, the data-dir
//! lock, configuration errors, and the small commands.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

fn metrics_env(dir: &std::path::Path) -> (Vec<(String, String)>, SocketAddr) {
    let port = free_port();
    let mut env = base_env(dir);
    env.retain(|(k, _)| k != "MAILROOM_METRICS_LISTEN");
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!("127.0.0.1:{port}")));
    (env, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn serves_health_ready_metrics_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (env, metrics) = metrics_env(&data);
    let mut server = Server::start(&env, Some(metrics), &data);
    server.wait_ready(Duration::from_secs(20));

    assert_eq!(http_get(metrics, "/healthz").unwrap().0, 200);
    let (status, body) = http_get(metrics, "/readyz").unwrap();
    assert_eq!((status, body.trim()), (200, "ready"));
    let (status, body) = http_get(metrics, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("mailroom_build_info{"), "{body}");
    assert!(!body.contains("rustc=\"unknown\""), "build.rs records the compiler: {body}");
    assert!(
        body.contains(
            "mailroom_tls_certificate_expiry_timestamp_seconds{name=\"mx.example.com\",source=\"self-signed\"}"
        ),
        "{body}"
    );
    assert!(body.contains("mailroom_connections_total{protocol=\"metrics\"}"), "{body}");
    assert!(body.contains("process_resident_memory_bytes"), "{body}");
    if have_tool("promtool") {
        let file = tmp.path().join("metrics.txt");
        std::fs::write(&file, &body).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("promtool check metrics < {}", file.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(http_get(metrics, "/nope").unwrap().0, 404);

    // The banner names version, hostname, domains, data dir, listeners, trusted networks.
    let log = server.log();
    let banner = log.lines().find(|l| l.contains("mailroom started")).expect("banner");
    for part in [
        "version=",
        "hostname=mx.example.com",
        "domains=example.com",
        "data_dir=",
        "metrics=127.0.0.1:",
        "trusted_networks=none",
    ] {
        assert!(banner.contains(part), "banner lacks {part}: {banner}");
    }
    // First start without accounts: postmaster created, password printed once.
    assert!(log.contains("postmaster@example.com"), "{log}");
    for sub in ["mail", "queue", "dkim", "tls", "state"] {
        assert!(data.join(sub).is_dir(), "{sub}");
    }

    let started = Instant::now();
    let status = server.terminate(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn second_server_on_same_data_dir_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (env, metrics) = metrics_env(&data);
    let mut first = Server::start(&env, Some(metrics), &data);
    first.wait_ready(Duration::from_secs(20));

    let (env2, _) = metrics_env(&data);
    let out = run(&["serve"], &env2, "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another mailroom process"), "{err}");
    assert!(first.terminate(Duration::from_secs(10)).unwrap().success());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut env, metrics) = metrics_env(&data);
    env.push(("MAILROOM_LOG_FORMAT".into(), "json".into()));
    let mut server = Server::start(&env, Some(metrics), &data);
    server.wait_ready(Duration::from_secs(20));
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log();
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("message").is_some(), "{line}");
    }
}

#[test]
fn bad_configuration_exits_2_naming_every_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = base_env(tmp.path());
    env.push(("MAILROOM_SMTP_LISTEN".into(), "twenty-five".into()));
    env.push(("MAILROOM_QUEUE_LIFETIME".into(), "forever".into()));
    env.push(("MAILROOM_ACCOUNTS_FILE".into(), "/nonexistent/accounts".into()));
    for cmd in ["serve", "check-config"] {
        let out = run(&[cmd], &env, "");
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        for var in ["MAILROOM_SMTP_LISTEN", "MAILROOM_QUEUE_LIFETIME", "MAILROOM_ACCOUNTS_FILE"] {
            assert!(err.contains(var), "{cmd}: {err}");
        }
        assert!(err.contains("\"twenty-five\""), "the bad value is shown: {err}");
    }
}

#[test]
fn port_in_use_exits_2_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut env = base_env(tmp.path());
    env.retain(|(k, _)| k != "MAILROOM_METRICS_LISTEN");
    env.push(("MAILROOM_METRICS_LISTEN".into(), format!("127.0.0.1:{port}")));
    let out = run(&["serve"], &env, "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use") && err.contains("MAILROOM_METRICS_LISTEN"), "{err}");
}

#[test]
fn unwritable_data_dir_exits_2() {
    let mut env = base_env(std::path::Path::new("/proc/mailroom-cannot-write-here"));
    env.push(("MAILROOM_METRICS_LISTEN".into(), "off".into()));
    let out = run(&["serve"], &env, "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("data dir"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn mismatched_certificate_and_key_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap();
    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("key.pem");
    std::fs::write(&cert, a.cert.pem()).unwrap();
    std::fs::write(&key, b.signing_key.serialize_pem()).unwrap();
    let mut env = base_env(&tmp.path().join("data"));
    env.push(("MAILROOM_TLS_CERT_FILE".into(), cert.display().to_string()));
    env.push(("MAILROOM_TLS_KEY_FILE".into(), key.display().to_string()));
    let out = run(&["serve"], &env, "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not belong together"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_redacts_secrets_and_warns_on_unknown_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = base_env(tmp.path());
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_RELAY_HOST".into(), "smtp.example.net:587".into()));
    env.push(("MAILROOM_RELAY_USERNAME".into(), "u".into()));
    env.push(("MAILROOM_RELAY_PASSWORD".into(), "hunter2".into()));
    env.push(("MAILROOM_SMTP_LISTENS".into(), ":25".into()));
    env.push(("MAILROOM_STORE".into(), "postgres://mail:pgsecret@db.example.org/mail?sslmode=verify-full".into()));
    let out = run(&["check-config"], &env, "");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("MAILROOM_HOSTNAME=mx.example.com"), "{stdout}");
    assert!(stdout.contains("alice@example.com:<redacted>"), "{stdout}");
    assert!(!stdout.contains("wonderland") && !stdout.contains("hunter2"), "{stdout}");
    assert!(stdout.contains("MAILROOM_STORE=postgres://mail:****@db.example.org/mail?sslmode=verify-full"), "{stdout}");
    assert!(!stdout.contains("pgsecret") && !stderr.contains("pgsecret"), "{stdout}{stderr}");
    assert!(stderr.contains("did you mean MAILROOM_SMTP_LISTEN?"), "{stderr}");
    assert!(stderr.contains("{PLAIN}"), "plain password warned about: {stderr}");
    assert!(!stderr.contains("fully qualified"), "{stderr}");

    // A bare machine name as the hostname is warned about, at start and in check-config.
    env.retain(|(k, _)| k != "MAILROOM_HOSTNAME");
    env.push(("MAILROOM_HOSTNAME".into(), "vm".into()));
    env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
    let out = run(&["check-config"], &env, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAILROOM_HOSTNAME is \"vm\", not a fully qualified domain name"), "{stderr}");
}

#[test]
fn hash_password_reads_stdin_and_prints_argon2id() {
    let out = run(&["hash-password"], &[], "correct horse\n");
    assert!(out.status.success());
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // The printed hash is accepted in MAILROOM_ACCOUNTS.
    let tmp = tempfile::tempdir().unwrap();
    let mut env = base_env(tmp.path());
    env.push(("MAILROOM_ACCOUNTS".into(), format!("bob@example.com:{hash}:2G")));
    assert_eq!(run(&["check-config"], &env, "").status.code(), Some(0));
}

#[test]
fn version_and_help() {
    let out = run(&["--version"], &[], "");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mailroom "));
    let out = run(&["version"], &[], "");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mailroom "));
    for cmd in ["serve", "check-config", "hash-password", "healthcheck"] {
        let out = run(&[cmd, "--help"], &[], "");
        assert!(out.status.success(), "{cmd} --help");
    }
}

#[test]
fn healthcheck_command_follows_readyz() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (env, metrics) = metrics_env(&data);
    assert_eq!(run(&["healthcheck"], &env, "").status.code(), Some(1), "nothing listening yet");
    let mut server = Server::start(&env, Some(metrics), &data);
    server.wait_ready(Duration::from_secs(20));
    assert_eq!(run(&["healthcheck"], &env, "").status.code(), Some(0));
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
}

/// Every variable in config.rs is documented in env.example, and vice versa.
#[test]
fn env_example_matches_config() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/env.example")).unwrap();
    let documented: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_once('='))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| k.starts_with("MAILROOM_"))
        .collect();
    let known: std::collections::BTreeSet<String> =
        mailroom::config::VARIABLES.iter().map(|v| format!("MAILROOM_{}", v.name)).collect();
    let missing: Vec<_> = known.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&known).collect();
    assert!(missing.is_empty(), "in config.rs but not env.example: {missing:?}");
    assert!(extra.is_empty(), "in env.example but not config.rs: {extra:?}");

    // docs/interface.md, the contract, names every variable too (the listeners in one
    // `MAILROOM_<P>_LISTEN` row, the relay credentials as `_USERNAME`/`_PASSWORD`).
    let interface = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/interface.md")).unwrap();
    let undocumented: Vec<_> = known
        .iter()
        .filter(|k| !k.ends_with("_LISTEN") && !k.starts_with("MAILROOM_RELAY_USERNAME"))
        .filter(|k| *k != "MAILROOM_RELAY_PASSWORD" && !interface.contains(&format!("`{k}`")))
        .collect();
    assert!(undocumented.is_empty(), "in config.rs but not docs/interface.md: {undocumented:?}");
}

/// IMAP LOGIN over implicit TLS with Python's imaplib; true when the server said OK.
fn imaps_login(port: u16, user: &str, password: &str) -> bool {
    let script = r#"
import imaplib, ssl, sys
ctx = ssl._create_unverified_context()
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx, timeout=20)
try:
    m.login(sys.argv[2], sys.argv[3])
    print("OK")
except imaplib.IMAP4.error as e:
    print("NO", e)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &port.to_string(), user, password])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim() == "OK"
}

/// The `password=` field of the start-up line that shows the generated password.
fn shown_password(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("created this account with a random password"))?;
    let value = line.split("password=").nth(1)?;
    Some(value.split_whitespace().next()?.to_string())
}

#[test]
fn generated_postmaster_password_is_shown_only_after_a_good_start_can_be_reset_and_retired() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let imaps = free_port();
    let (mut env, metrics) = metrics_env(&data);
    env.retain(|(k, _)| k != "MAILROOM_IMAPS_LISTEN");
    env.push(("MAILROOM_IMAPS_LISTEN".into(), format!("127.0.0.1:{imaps}")));

    let before = String::from_utf8_lossy(&run(&["check-config"], &env, "").stdout).to_string();
    assert!(before.contains("postmaster@example.com is created at the first start"), "{before}");
    // A first start that fails (the metrics port is taken) shows and keeps no password.
    let busy = std::net::TcpListener::bind(metrics).unwrap();
    let out = run(&["serve"], &env, "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(shown_password(&err).is_none() && !err.contains("password="), "{err}");
    assert!(!data.join("accounts").exists(), "nothing saved by a failed start");
    drop(busy);

    // The first good start shows it once; it logs in.
    let mut server = Server::start(&env, Some(metrics), &data);
    server.wait_ready(Duration::from_secs(20));
    assert!(server.wait_log("created this account with a random password", Duration::from_secs(10)));
    let first = shown_password(&server.log()).expect("password shown after the start");
    assert!(imaps_login(imaps, "postmaster@example.com", &first));
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
    let after = String::from_utf8_lossy(&run(&["check-config"], &env, "").stdout).to_string();
    assert!(after.contains("the generated postmaster account in"), "{after}");

    // reset-password: a new one, printed once; the old one stops working.
    let out = run(&["reset-password", "alice@example.com"], &env, "");
    assert_eq!(out.status.code(), Some(2), "only the generated account can be reset");
    let out = run(&["reset-password"], &env, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let second = printed.split("new password ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
    let stored = std::fs::read_to_string(data.join("accounts")).unwrap();
    assert!(!stored.contains(&second), "only the hash is stored");
    let mut server = Server::start(&env, Some(metrics), &data);
    server.wait_ready(Duration::from_secs(20));
    assert!(shown_password(&server.log()).is_none(), "a later start shows no password");
    assert!(imaps_login(imaps, "postmaster@example.com", &second));
    assert!(!imaps_login(imaps, "postmaster@example.com", &first));
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());

    // Real accounts retire the generated one, loudly, and postmaster@ goes to the domain's
    // first account.
    let inbox_new = data.join("mail/example.com/postmaster/new");
    std::fs::create_dir_all(&inbox_new).unwrap();
    std::fs::write(inbox_new.join("1.test"), "Subject: kept\r\n\r\nhi\r\n").unwrap();
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    let mut server = Server::start(&env, Some(metrics), &data);
    server.wait_ready(Duration::from_secs(20));
    assert!(server.wait_log("generated account is retired", Duration::from_secs(10)));
    let log = server.log();
    let line = log.lines().find(|l| l.contains("generated account is retired")).unwrap_or_else(|| panic!("{log}"));
    for part in ["postmaster@example.com", "messages=1", "delivers_to=alice@example.com", "mail/example.com/postmaster"]
    {
        assert!(line.contains(part), "{part}: {line}");
    }
    assert!(!imaps_login(imaps, "postmaster@example.com", &second), "retired: no login");
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
}

/// The README's first command: dev.env is valid and serves on loopback only (the
/// generated password is in the log, so nothing may listen beyond this machine).
#[test]
fn dev_env_is_valid_and_loopback_only() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dev.env")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut env = vec![("MAILROOM_DATA_DIR".to_string(), tmp.path().display().to_string())];
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (key, value) = line.split_once('=').unwrap();
        if key.ends_with("_LISTEN") {
            for addr in value.split(',') {
                assert!(addr.starts_with("127.0.0.1:") || addr.starts_with("[::1]:"), "{key}={value}");
            }
        }
        env.push((key.to_string(), value.to_string()));
    }
    let out = run(&["check-config"], &env, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
