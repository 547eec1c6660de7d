//! Credentials a user changes himself, end to end: the real binary (on PostgreSQL, and on
//! Maildir) serves SMTP AUTH (submissions), IMAP and POP3 to Python's smtplib, imaplib and
//! poplib (the `login_probe.py` client), while this test changes alice's credentials
//! through the library on the same store, as another replica (or the web pages) would. Every
//! change must count at the server's very next login: a changed password, a new and a
//! revoked app password, and "require app passwords" (which the web login ignores).
//! Tools missing -> skip, unless CI=true.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Server, base_env, free_port, have_tool, test_pg};
use mailroom::accounts::{Address, Directory, parse_accounts};
use mailroom::credentials::Credentials;
use mailroom::net::{Limiter, LimiterConfig, LoginOutcome, verify_web_login};
use mailroom::store::{PgStore, Store};

const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/login_probe.py");
const ACCOUNTS: &str = "alice@example.com:{PLAIN}wonderland,bob@example.com:{PLAIN}builder";
const ALICE: &str = "alice@example.com";

struct Ports {
    smtp: u16,
    imap: u16,
    pop3: u16,
}

fn start(data: &Path, url: Option<&str>) -> (Server, Ports) {
    let ports = Ports { smtp: free_port(), imap: free_port(), pop3: free_port() };
    let metrics = free_port();
    let mut env = base_env(data);
    let listen = [("SUBMISSIONS", ports.smtp), ("IMAPS", ports.imap), ("POP3S", ports.pop3), ("METRICS", metrics)];
    env.retain(|(k, _)| !listen.iter().any(|(p, _)| *k == format!("MAILROOM_{p}_LISTEN")));
    for (p, port) in listen {
        env.push((format!("MAILROOM_{p}_LISTEN"), format!("127.0.0.1:{port}")));
    }
    env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
    env.push(("MAILROOM_ACCOUNTS".into(), ACCOUNTS.into()));
    if let Some(url) = url {
        env.push(("MAILROOM_STORE".into(), url.into()));
    }
    let mut server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], metrics))), data);
    server.wait_ready(Duration::from_secs(60));
    (server, ports)
}

/// Each login from a loopback address of its own, so the failures this test makes on
/// purpose never add up to the limiter's per-address delay.
static NEXT_SOURCE: AtomicU32 = AtomicU32::new(2);

/// Log in as alice with `password` on each of `protocols` (`smtp`, `imap`, `pop3`); the
/// result of each: `ok`, `fail`, `refused` or `error`.
fn logins(ports: &Ports, protocols: &[&str], password: &str) -> Vec<String> {
    let ports_json = serde_json::json!({"smtp": ports.smtp, "imap": ports.imap, "pop3": ports.pop3});
    let jobs: Vec<serde_json::Value> = protocols
        .iter()
        .map(|p| {
            let n = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
            serde_json::json!([p, format!("127.0.{}.{}", n / 250, 2 + n % 250), ALICE, password])
        })
        .collect();
    let out = Command::new("python3")
        .args([PROBE, "127.0.0.1", &ports_json.to_string(), &serde_json::Value::from(jobs).to_string()])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(results.len(), protocols.len(), "probe: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    results
}

fn all(n: usize, what: &str) -> Vec<String> {
    vec![what.to_string(); n]
}

#[test]
fn changes_made_by_another_replica_count_at_the_next_login_on_postgresql() {
    if !have_tool("python3") {
        assert!(!common::in_ci(), "python3 missing in CI");
        return;
    }
    let Some(url) = test_pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (server, ports) = start(&tmp.path().join("data"), Some(&url));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Store::Pg(rt.block_on(PgStore::connect(&url, None)).unwrap());
    changes_count_at_the_next_login(&server, &ports, &rt, store);
}

/// With Maildir the record is a file in the data dir, read by the server at each login;
/// this test writes it from its own process, as the web pages of the server would.
#[test]
fn changes_made_through_the_data_dir_count_at_the_next_login_on_maildir() {
    if !have_tool("python3") {
        assert!(!common::in_ci(), "python3 missing in CI");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (server, ports) = start(&data, None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Store::open(&data, "mx.example.com").unwrap();
    changes_count_at_the_next_login(&server, &ports, &rt, store);
}

fn changes_count_at_the_next_login(server: &Server, ports: &Ports, rt: &tokio::runtime::Runtime, store: Store) {
    let mail = ["smtp", "imap", "pop3"];
    let directory =
        Arc::new(Directory::new(vec!["example.com".into()], parse_accounts(ACCOUNTS).unwrap(), Vec::new()).unwrap());
    let credentials = Credentials::new(store, directory);
    let alice = Address::parse(ALICE).unwrap();
    let log = || server.log();

    // The configured password, now in the server's auth cache.
    assert_eq!(logins(ports, &mail, "wonderland"), all(3, "ok"), "{}", log());

    // A changed password: the old one fails at once (not after the cache's minute).
    rt.block_on(credentials.change_password(&alice, "wonderland", "through the looking glass")).unwrap();
    assert_eq!(logins(ports, &mail, "wonderland"), all(3, "fail"), "{}", log());
    assert_eq!(logins(ports, &mail, "through the looking glass"), all(3, "ok"), "{}", log());

    // An app password, typed as shown and without the spaces.
    let (info, secret) = rt.block_on(credentials.create_app_password(&alice, "phone")).unwrap();
    assert_eq!(logins(ports, &mail, &secret), all(3, "ok"), "{}", log());
    assert_eq!(logins(ports, &["imap", "smtp"], &secret.replace(' ', "")), all(2, "ok"), "{}", log());

    // The server notes the app password's use (in the background, at most once a minute);
    // waited for, so that the writes below never race the server's.
    let used = (0..200).find_map(|_| {
        let listed = rt.block_on(credentials.app_passwords(&alice)).unwrap();
        listed[0].last_used.or_else(|| {
            std::thread::sleep(Duration::from_millis(50));
            None
        })
    });
    assert!(used.is_some(), "last use never recorded\n{}", log());

    // Requiring app passwords: the main password is refused by the mail protocols, the
    // web login takes it (and never the app password).
    rt.block_on(credentials.set_require_app_passwords(&alice, true)).unwrap();
    assert_eq!(logins(ports, &["imap", "smtp"], "through the looking glass"), all(2, "fail"), "{}", log());
    assert_eq!(logins(ports, &["imap"], &secret), all(1, "ok"), "{}", log());
    let limiter = Limiter::new(LimiterConfig::default(), Vec::new());
    let ip = "127.0.0.1".parse().unwrap();
    let web = |password: &str| rt.block_on(verify_web_login(&limiter, &credentials, ip, ALICE, password));
    assert_eq!(web("through the looking glass"), LoginOutcome::LoggedIn(alice.clone()));
    assert_eq!(web(&secret), LoginOutcome::Failed);

    // Revoked: the app password fails at once on every protocol.
    rt.block_on(credentials.revoke_app_password(&alice, &info.id)).unwrap();
    assert_eq!(logins(ports, &mail, &secret), all(3, "fail"), "{}", log());
}
