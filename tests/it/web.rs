//! The account pages on the HTTPS port of the real binary: a real browser (Debian's
//! chromium driven by playwright, tests/clients/web_browser.py) logs in and out, is
//! refused a wrong password, a planted cookie, a POST without the CSRF token and, for a
//! non-admin, the admin page; guessing ends in 429; every page passes the accessibility
//! checks at a phone viewport; the admin page's Copy button fills the clipboard and its
//! queue buttons hold, release, retry and delete a real queue item; a password change
//! ends the account's other session. Screenshots of each page are written under
//! target/web-screenshots/. Plus the switches: `MAILROOM_WEB=off` and a bad
//! `MAILROOM_ADMINS`. Tools missing -> skip, unless CI=true.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::*;

const ADMIN: &str = "alice@example.com";
const ADMIN_PASSWORD: &str = "alice-web-password";
const USER: &str = "bob@example.com";
const USER_PASSWORD: &str = "bob-web-password";

fn env(data: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = env_listening(data, &["HTTPS"]);
    // Real port numbers (not `:0`): the setup page and the profile name them.
    for protocol in ["IMAPS", "SUBMISSIONS"] {
        let key = format!("MAILROOM_{protocol}_LISTEN");
        env.retain(|(k, _)| *k != key);
        env.push((key, format!("127.0.0.1:{}", free_port())));
    }
    env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
    env.push((
        "MAILROOM_ACCOUNTS".into(),
        format!("{ADMIN}:{{PLAIN}}{ADMIN_PASSWORD},{USER}:{{PLAIN}}{USER_PASSWORD}"),
    ));
    env.push(("MAILROOM_ADMINS".into(), ADMIN.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// A GET over TLS (the certificate is the server's self-signed one): status line and
/// the whole response.
fn https_get(addr: std::net::SocketAddr, path: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import http.client,ssl,sys\n\
             c=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE\n\
             h=http.client.HTTPSConnection(sys.argv[1],int(sys.argv[2]),context=c,timeout=30)\n\
             h.request('GET',sys.argv[3]);r=h.getresponse()\n\
             print(r.status);print(r.read().decode())",
            &addr.ip().to_string(),
            &addr.port().to_string(),
            path,
        ])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// python3, Debian's chromium and the playwright package (skip, or fail under CI=true).
fn browser_available() -> bool {
    if !have_tool("python3") || !have_tool("chromium") {
        return false;
    }
    let probe = Command::new("python3").args(["-c", "import playwright.sync_api"]).output().unwrap();
    if !probe.status.success() {
        missing("python3 playwright (pip install playwright)");
        return false;
    }
    true
}

/// Where the browser scripts save their screenshots (test artefacts, not committed).
fn screenshot_dir() -> std::path::PathBuf {
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

#[test]
fn a_browser_logs_in_walks_the_pages_and_is_refused_what_it_must_be() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_ready(&env(data.path(), &[]), data.path(), Duration::from_secs(30));
    let shots = screenshot_dir();
    let base = format!("https://{}", server.addr("https"));
    let args =
        [base, ADMIN.into(), ADMIN_PASSWORD.into(), USER.into(), USER_PASSWORD.into(), shots.display().to_string()];
    let out = run_client("web_browser.py", &args, &server);
    assert!(out.trim_end().ends_with("ok"), "{out}");
    println!("screenshots in {}", shots.display());
    for name in [
        "login",
        "account",
        "password",
        "app-passwords",
        "vacation",
        "setup",
        "admin",
        "admin-dns",
        "admin-copied",
        "admin-refused",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }
    // The metrics port still has only metrics and health.
    let metrics = server.metrics.unwrap();
    assert_eq!(http_get(metrics, "/account/login").unwrap().0, 404);
    let (_, text) = http_get(metrics, "/metrics").unwrap();
    assert!(
        text.contains("mailroom_auth_attempts_total{mechanism=\"password\",protocol=\"web\",result=\"success\"}"),
        "{text}"
    );
    assert!(
        text.contains("mailroom_auth_attempts_total{mechanism=\"password\",protocol=\"web\",result=\"refused\"}"),
        "{text}"
    );
}

#[test]
fn web_off_leaves_only_the_well_known_routes() {
    if !have_tool("python3") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let server =
        Server::start_ready(&env(data.path(), &[("MAILROOM_WEB", "off")]), data.path(), Duration::from_secs(30));
    let addr = server.addr("https");
    for path in ["/account", "/account/login", "/admin"] {
        let out = https_get(addr, path);
        assert!(out.starts_with("404"), "{path}: {out}");
    }
    assert!(https_get(addr, "/.well-known/mta-sts.txt").starts_with("200"));
    assert!(!data.path().join("state/web-session.key").exists(), "no key made for pages that are off");
}

#[test]
fn web_on_makes_a_private_session_key_once() {
    if !have_tool("python3") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let key = data.path().join("state/web-session.key");
    let mut server = Server::start_ready(&env(data.path(), &[]), data.path(), Duration::from_secs(30));
    let first = std::fs::read(&key).unwrap();
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(https_get(server.addr("https"), "/account/login").starts_with("200"));
    server.terminate(Duration::from_secs(10));
    let _again = Server::start_ready(&env(data.path(), &[]), data.path(), Duration::from_secs(30));
    assert_eq!(std::fs::read(&key).unwrap(), first, "kept across restarts");
}

#[test]
fn an_admin_that_is_not_an_account_exits_2() {
    let data = tempfile::tempdir().unwrap();
    let out = run(&["check-config"], &env(data.path(), &[("MAILROOM_ADMINS", "carol@example.com")]), "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAILROOM_ADMINS") && stderr.contains("carol@example.com is not an account"), "{stderr}");
    let out = run(&["check-config"], &env(data.path(), &[("MAILROOM_ADMINS", "not an address")]), "");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["check-config"], &env(data.path(), &[("MAILROOM_WEB", "maybe")]), "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAILROOM_WEB"));
}

#[test]
fn a_user_changes_password_app_passwords_and_vacation_and_mail_clients_follow() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_ready(&env(data.path(), &[]), data.path(), Duration::from_secs(30));
    let shots = screenshot_dir();
    let args = [
        format!("https://{}", server.addr("https")),
        USER.into(),
        USER_PASSWORD.into(),
        "bob-changed-password".into(),
        ADMIN.into(),
        ADMIN_PASSWORD.into(),
        server.addr("imaps").to_string(),
        server.addr("submissions").to_string(),
        shots.display().to_string(),
    ];
    let out = run_client("web_account.py", &args, &server);
    assert!(out.trim_end().ends_with("ok"), "{out}");
    for name in ["password-changed", "app-password-created", "vacation-saved"] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }
}

#[test]
fn the_admin_queue_buttons_hold_release_retry_and_delete_in_a_browser() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    // A smarthost port where nothing listens: every attempt fails at once, the item stays.
    let closed = free_port();
    let relay = format!("smtp+insecure://127.0.0.1:{closed}");
    let mut env = env(data.path(), &[("MAILROOM_TRUSTED_NETWORKS", "127.0.0.0/8"), ("MAILROOM_RELAY_HOST", &relay)]);
    env.retain(|(k, _)| k != "MAILROOM_SMTP_LISTEN");
    env.push(("MAILROOM_SMTP_LISTEN".into(), "127.0.0.1:0".into()));
    let server = Server::start_ready(&env, data.path(), Duration::from_secs(30));
    // `mailroom status` for this server, as one command the script can run.
    let status = data.path().join("status.sh");
    let quoted: Vec<String> = env.iter().map(|(k, v)| format!("{k}='{}'", v.replace('\'', "'\\''"))).collect();
    std::fs::write(&status, format!("#!/bin/sh\nexec env -i {} {BIN} status\n", quoted.join(" "))).unwrap();
    std::fs::set_permissions(&status, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let shots = screenshot_dir();
    let args = [
        format!("https://{}", server.addr("https")),
        ADMIN.into(),
        ADMIN_PASSWORD.into(),
        server.addr("smtp").to_string(),
        status.display().to_string(),
        shots.display().to_string(),
    ];
    let out = run_client("web_admin_queue.py", &args, &server);
    assert!(out.trim_end().ends_with("ok"), "{out}");
    for name in ["admin-queue", "admin-queue-held", "admin-queue-deleted"] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }
}
