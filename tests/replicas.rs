//! Several mailroom processes on one PostgreSQL store (`MAILROOM_STORE=postgres://…`),
//! each with its own data dir, as replicas run: mail accepted by one is read through the
//! other, and POP3's one-session-per-maildrop holds across them. Clients are Python's
//! smtplib, imaplib and poplib; PostgreSQL is Debian's, started by `test_pg`.

mod common;

use std::time::Duration;

use common::test_pg::PgCluster;
use common::{Server, env_listening, run, run_client, test_pg};

/// One replica on the store at `url`, with SMTP, IMAP and POP3 on loopback. Mail to
/// fwd@example.com is forwarded through a smarthost that refuses connections, so it waits
/// in the (shared) queue.
fn replica(url: &str, dir: &std::path::Path, dead_relay: u16) -> Server {
    let data = dir.join("data");
    let mut env = env_listening(&data, &["SMTP", "IMAP", "POP3"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_ALIASES".into(), "fwd@example.com:someone@remote.example".into()));
    env.push(("MAILROOM_RELAY_HOST".into(), format!("127.0.0.1:{dead_relay}")));
    env.push(("MAILROOM_STORE".into(), url.to_string()));
    Server::start_ready(&env, &data, Duration::from_secs(60))
}

#[test]
fn mail_accepted_by_one_replica_is_read_through_the_other() {
    let Some(url) = test_pg::database() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dead_relay = common::free_port();
    let a = replica(&url, dir_a.path(), dead_relay);
    let b = replica(&url, dir_b.path(), dead_relay);
    let port = |s: &Server, p: &str| s.port(p).to_string();

    run_client("replicas.py", &["deliver".into(), port(&a, "smtp"), "one".into()], &a);
    run_client("replicas.py", &["deliver".into(), port(&b, "smtp"), "two".into()], &b);
    run_client("replicas.py", &["fetch".into(), port(&b, "imap"), "one".into(), "two".into()], &b);
    run_client("replicas.py", &["fetch".into(), port(&a, "imap"), "one".into(), "two".into()], &a);
    run_client("replicas.py", &["pop3-exclusive".into(), port(&a, "pop3"), port(&b, "pop3")], &a);
    // IDLE on B hears of a delivery to A within a second (LISTEN/NOTIFY).
    let idle = run_client("replicas.py", &["idle".into(), port(&b, "imap"), port(&a, "smtp"), "three".into()], &b);
    eprintln!("{idle}");
    let maildir = std::fs::read_dir(dir_a.path().join("data/mail")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(maildir, 0, "no mail in the data dir when the store is PostgreSQL");

    // `mailroom store check` reports the schema the servers migrated.
    let env = [("MAILROOM_STORE".to_string(), url.clone())];
    let out = run(&["store", "check"], &env, "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" (current; this mailroom writes "), "{stdout}");
    assert!(stdout.contains("messages: 3"), "{stdout}");

    // The outbound queue is shared: a forward accepted by A is listed (and deleted) by a
    // `mailroom queue` that only knows the database.
    run_client("replicas.py", &["deliver".into(), port(&a, "smtp"), "fwd".into(), "fwd@example.com".into()], &a);
    let queue = |args: &[&str]| {
        let out = run(args, &env, "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let list = queue(&["queue", "list"]);
    assert!(list.ends_with("1 item(s)\n"), "{list}");
    let id = list.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    assert!(queue(&["queue", "show", &id]).contains("someone@remote.example"));
    queue(&["queue", "delete", &id]);
    assert!(queue(&["queue", "list"]).ends_with("0 item(s)\n"));
}

/// Replicas started together on an empty database generate one set of everything that
/// must be the same everywhere: the DKIM keys (so one set of DNS records), the SRS secret,
/// the self-signed certificate and the generated postmaster, whose password is shown once.
#[test]
fn replicas_started_together_share_keys_secrets_and_the_postmaster() {
    let Some(url) = test_pg::database() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path| {
        let data = dir.join("data");
        let mut env = env_listening(&data, &["SMTP"]);
        env.push(("MAILROOM_STORE".into(), url.clone()));
        (Server::start(&env, None, &data), env, data)
    };
    let (mut a, env_a, data_a) = start(dir_a.path());
    let (mut b, env_b, data_b) = start(dir_b.path());
    a.wait_ready(Duration::from_secs(60));
    b.wait_ready(Duration::from_secs(60));
    let dns = |env: &[(String, String)]| {
        let out = run(&["dns", "--json"], env, "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let records = dns(&env_a);
    assert!(records.contains("._domainkey."), "{records}");
    assert_eq!(records, dns(&env_b), "both replicas publish the same DKIM keys");
    for file in ["accounts", "state/srs.key", "tls/selfsigned.crt", "tls/selfsigned.key"] {
        let read = |data: &std::path::Path| std::fs::read(data.join(file)).unwrap();
        assert!(read(&data_a) == read(&data_b), "{file} differs between the replicas");
    }
    let told = [&a, &b].iter().filter(|s| s.log().contains("created this account with a random password")).count();
    assert_eq!(told, 1, "one postmaster, its password shown by the replica that made it");

    // A rotation made on A's data dir (`kubectl exec` into one pod) reaches B, which
    // reloads its keys: both then publish the new pending records too.
    let rotated = run(&["dkim", "rotate"], &env_a, "");
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(b.wait_log("DKIM keys reloaded", Duration::from_secs(40)), "{}", b.log());
    let records = dns(&env_a);
    assert_eq!(records, dns(&env_b), "B has A's new keys");
}

#[test]
fn store_check_fails_clearly_without_a_database() {
    let port = common::free_port();
    let url = format!("postgres://mail:s3cret-pw@127.0.0.1:{port}/mail");
    let env = [("MAILROOM_STORE".to_string(), url)];
    let out = run(&["store", "check"], &env, "");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("store check failed"), "{stderr}");
    assert!(stdout.contains("postgres://mail:****@127.0.0.1"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("s3cret-pw"), "the password never shows");
}

/// With `MAILROOM_BLOB_STORE=s3://…`, `store check` also writes, reads back and deletes a
/// probe object in the bucket: one line when it works, exit 1 and a line naming the
/// bucket (never the keys) when it does not.
#[test]
fn store_check_probes_the_blob_store() {
    let Some(url) = test_pg::database() else { return };
    let Some(bucket) = common::test_s3::bucket() else { return };
    let env = |blob_store: String| {
        vec![
            ("MAILROOM_STORE".to_string(), url.clone()),
            ("MAILROOM_BLOB_STORE".to_string(), blob_store),
            ("MAILROOM_S3_ACCESS_KEY_ID".to_string(), "probe-key-id".to_string()),
            ("MAILROOM_S3_SECRET_ACCESS_KEY".to_string(), "probe-s3cret-key".to_string()),
        ]
    };
    let out = run(&["store", "check"], &env(bucket.url()), "");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    let line = format!("blob store: {}: reachable and writable", bucket.url());
    assert!(stdout.contains(&line), "{stdout}");

    let unreachable = format!("s3://mailroom-test/x?endpoint=http://127.0.0.1:{}", common::free_port());
    let out = run(&["store", "check"], &env(unreachable.clone()), "");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("schema: version"), "the database is still reported: {stdout}");
    assert!(stderr.contains(&format!("blob store check failed: {unreachable}: ")), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("probe-s3cret-key"), "the secret key never shows");
}

/// `replicas.py ARGS` in the background (a load that runs while the test breaks things).
fn in_background(args: Vec<String>) -> std::thread::JoinHandle<std::process::Output> {
    let path = format!("{}/tests/clients/replicas.py", env!("CARGO_MANIFEST_DIR"));
    std::thread::spawn(move || std::process::Command::new("python3").arg(path).args(args).output().unwrap())
}

fn finished(load: std::thread::JoinHandle<std::process::Output>) -> String {
    let out = load.join().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "load: {text}");
    text
}

#[test]
fn a_database_crash_under_load_loses_nothing_acknowledged() {
    let Some(cluster) = PgCluster::start(true) else { return };
    let url = cluster.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&url, dir.path(), common::free_port());
    let acked = dir.path().join("acked").display().to_string();
    let stop = dir.path().join("stop");
    let args = vec!["load".into(), a.port("smtp").to_string(), "120".into(), acked.clone(), stop.display().to_string()];
    let load = in_background(args);
    let count = || std::fs::read_to_string(&acked).map(|t| t.lines().count()).unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count() < 20 {
        assert!(std::time::Instant::now() < deadline, "no mail accepted before the crash: {}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.crash();
    // While it is down: answers that say "later", never a dropped session.
    let args = ["unavailable".into(), a.port("imap").to_string(), a.port("smtp").to_string()];
    eprintln!("{}", run_client("replicas.py", &args, &a));
    // /readyz says so, so a load balancer stops sending clients here...
    let ready = |want: u16| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let status = common::http_get(a.addr("metrics"), "/readyz").map(|(s, _)| s).unwrap_or(0);
            if status == want || std::time::Instant::now() > deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(ready(503), 503, "not ready while the database is down");
    cluster.start_again();
    // ...and ready again once the database is back, without a restart; the load that
    // kept running through it is accepted again.
    assert_eq!(ready(200), 200);
    let at_recovery = count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count() < at_recovery + 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&stop, "").unwrap();
    eprintln!("{}", finished(load));
    assert!(count() >= at_recovery + 20, "accepting again after the restart");
    // The server recovered by itself: new mail is accepted, and everything acknowledged
    // before, during and after the crash is there once.
    run_client("replicas.py", &["deliver".into(), a.port("smtp").to_string(), "after".into()], &a);
    std::fs::write(&acked, format!("{}after\n", std::fs::read_to_string(&acked).unwrap())).unwrap();
    eprintln!("{}", run_client("replicas.py", &["verify".into(), a.port("imap").to_string(), acked], &a));
}

#[test]
fn a_replica_killed_mid_delivery_loses_nothing_it_acknowledged() {
    let Some(url) = test_pg::database() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let relay = common::free_port();
    let mut a = replica(&url, dir_a.path(), relay);
    let b = replica(&url, dir_b.path(), relay);
    let acked = dir_a.path().join("acked").display().to_string();
    let load = in_background(vec!["load".into(), a.port("smtp").to_string(), "3".into(), acked.clone()]);
    std::thread::sleep(Duration::from_millis(1500));
    a.kill9();
    eprintln!("{}", finished(load));
    eprintln!("{}", run_client("replicas.py", &["verify".into(), b.port("imap").to_string(), acked], &b));
}
