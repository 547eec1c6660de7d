//! Several mailroom processes on one PostgreSQL store (`MAILROOM_STORE=postgres://…`),
//! each with its own data dir, as replicas run: mail accepted by one is read through the
//! other, POP3's one-session-per-maildrop holds across them, and the shared outbound queue
//! survives a replica killed mid-attempt (a remote MX on loopback, found through dnsmasq,
//! that can hold its reply). Clients are Python's smtplib, imaplib and poplib; PostgreSQL
//! is Debian's, started by `test_pg`.

use crate::common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
    assert!(list.lines().any(|l| l.starts_with("    someone@remote.example")), "the pending recipient: {list}");
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

// ---------------------------------------------------------------------------------------
// The shared queue when a replica is killed in the middle of an attempt.

/// A copy of a message the remote answered 250 to.
#[derive(Clone, Debug)]
struct Accepted {
    rcpts: Vec<String>,
    message_id: String,
    data: Vec<u8>,
}

#[derive(Default)]
struct RemoteState {
    /// Recipient domains whose transactions get no reply after the final dot until
    /// [`Remote::answer_all`]: the sender is stuck mid-attempt, as with a slow remote.
    holding: Vec<String>,
    /// Transactions whose final reply is being held now.
    held: usize,
    /// Held transactions whose client went away before any reply: not accepted, and
    /// counted nowhere else (a real MTA discards such a message).
    dropped: usize,
    accepted: Vec<Accepted>,
}

/// A remote MX on loopback (found through dnsmasq) that can hold its final reply, and
/// tells the test what it saw through a condition variable, so the test waits for events
/// rather than for time.
struct Remote {
    port: u16,
    state: Arc<(Mutex<RemoteState>, Condvar)>,
}

impl Remote {
    fn start(holding: &[&str]) -> Remote {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = RemoteState { holding: holding.iter().map(|d| d.to_string()).collect(), ..Default::default() };
        let state = Arc::new((Mutex::new(state), Condvar::new()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = remote_session(stream, &shared);
                });
            }
        });
        Remote { port, state }
    }

    /// Wait until `cond` holds (it is checked after every change), or fail after 60 s.
    fn wait(&self, what: &str, cond: impl Fn(&RemoteState) -> bool) {
        let (lock, changed) = &*self.state;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut state = lock.lock().unwrap();
        while !cond(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "remote MX: timed out waiting for {what}; accepted so far: {:?}", state.accepted);
            state = changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// From now on (and for the transactions held now) answer 250 at once.
    fn answer_all(&self) {
        self.state.0.lock().unwrap().holding.clear();
        self.state.1.notify_all();
    }

    fn accepted(&self) -> Vec<Accepted> {
        self.state.0.lock().unwrap().accepted.clone()
    }
}

fn remote_session(stream: std::net::TcpStream, shared: &(Mutex<RemoteState>, Condvar)) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let (lock, changed) = shared;
    let mut w = stream.try_clone()?;
    let mut r = std::io::BufReader::new(stream);
    w.write_all(b"220 mx.remote.test ESMTP\r\n")?;
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-mx.remote.test\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("RCPT") {
            rcpts.push(line.split(['<', '>']).nth(1).unwrap_or("").to_string());
            w.write_all(b"250 2.1.5 ok\r\n")?;
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n")?;
            let Some(data) = common::read_smtp_data(&mut r)? else { return Ok(()) };
            let rcpts = std::mem::take(&mut rcpts);
            let held = |s: &RemoteState| rcpts.iter().any(|a| s.holding.iter().any(|d| a.ends_with(&format!("@{d}"))));
            let mut state = lock.lock().unwrap();
            if held(&state) {
                state.held += 1;
                changed.notify_all();
                // Hold the reply until told to answer; notice a client that goes away.
                loop {
                    state = changed.wait_timeout(state, Duration::from_millis(50)).unwrap().0;
                    if !held(&state) {
                        state.held -= 1;
                        break;
                    }
                    w.set_nonblocking(true)?;
                    let gone = match w.peek(&mut [0u8; 1]) {
                        Ok(n) => n == 0,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    w.set_nonblocking(false)?;
                    if gone {
                        state.held -= 1;
                        state.dropped += 1;
                        changed.notify_all();
                        return Ok(());
                    }
                }
            }
            drop(state);
            w.write_all(b"250 2.0.0 accepted\r\n")?;
            let text = String::from_utf8_lossy(&data);
            let message_id = text
                .lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("message-id")))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default();
            lock.lock().unwrap().accepted.push(Accepted { rcpts, message_id, data });
            changed.notify_all();
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            rcpts.clear();
            w.write_all(b"250 ok\r\n")?;
        }
    }
}

/// A replica that delivers to remote MX hosts itself: `remote.test` and `other.test` have
/// MX `mx.remote.test` = 127.0.0.1 in `dns`, on `mx_port`. Alice may submit on 587.
fn sending_replica(url: &str, dir: &std::path::Path, dns: std::net::SocketAddr, mx_port: u16) -> Server {
    let data = dir.join("data");
    let mut env = env_listening(&data, &["SUBMISSION"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    env.push(("MAILROOM_STORE".into(), url.to_string()));
    env.retain(|(k, _)| k != "MAILROOM_DNS_SERVERS");
    env.push(("MAILROOM_DNS_SERVERS".into(), dns.to_string()));
    env.push(("MAILROOM_OUTBOUND_SMTP_PORT".into(), mx_port.to_string()));
    Server::start_ready(&env, &data, Duration::from_secs(60))
}

/// What the kill tests share: dnsmasq, the remote (holding `holding`), replica A with
/// alice's message to `rcpts` submitted, and the database.
struct KillRig {
    url: String,
    dns: std::net::SocketAddr,
    remote: Remote,
    a: Server,
    dirs: (tempfile::TempDir, tempfile::TempDir),
    _dnsmasq: common::Dnsmasq,
}

impl KillRig {
    fn start(holding: &[&str], msgid: &str, rcpts: &[&str]) -> Option<KillRig> {
        let url = test_pg::database()?;
        if !common::have_tool("dnsmasq") {
            return None;
        }
        let (dnsmasq, dns) = common::dnsmasq(&[
            "--mx-host=remote.test,mx.remote.test,10",
            "--mx-host=other.test,mx.remote.test,10",
            "--address=/mx.remote.test/127.0.0.1",
        ]);
        let remote = Remote::start(holding);
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = sending_replica(&url, dirs.0.path(), dns, remote.port);
        let mut args = vec!["submit".to_string(), a.port("submission").to_string(), msgid.to_string()];
        args.extend(rcpts.iter().map(|r| r.to_string()));
        run_client("replicas.py", &args, &a);
        Some(KillRig { url, dns, remote, a, dirs, _dnsmasq: dnsmasq })
    }

    /// Replica B, started while A holds the item's lease (started earlier, it might have
    /// claimed the item itself: which replica claims first is a race).
    fn start_b(&self) -> Server {
        let leased = test_pg::psql(&self.url, "SELECT count(*) FROM queue_items WHERE lease_until > now()");
        assert_eq!(leased, "1", "A holds the lease");
        sending_replica(&self.url, self.dirs.1.path(), self.dns, self.remote.port)
    }

    /// `mailroom queue list` from the database alone.
    fn queue_list(&self) -> String {
        let env = [("MAILROOM_STORE".to_string(), self.url.clone())];
        let out = run(&["queue", "list"], &env, "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Let the remote answer, and let A's lease run out: moving `lease_until` to now
    /// stands for the five minutes passing; the NOTIFY wakes B's scheduler at once
    /// instead of at its next poll.
    fn expire_leases_and_answer(&self, b: &Server) {
        // Every claim bumps the token: B has not taken the item while A's lease held.
        assert_eq!(test_pg::psql(&self.url, "SELECT lease_token FROM queue_items"), "1", "claimed by A only");
        self.remote.answer_all();
        test_pg::psql(&self.url, "UPDATE queue_items SET lease_until = now(); SELECT pg_notify('mailroom_queue', '')");
        assert!(b.wait_log("queue: item done, removed", Duration::from_secs(60)), "B never finished the item");
        let list = self.queue_list();
        assert!(list.ends_with("0 item(s)\n"), "{list}");
    }
}

/// A replica killed while the remote holds its reply to the final dot: the remote never
/// said 250, so it has no copy; the item stays leased (listed as sending), and once the
/// lease has run out the other replica delivers it, exactly once.
#[test]
fn a_replica_killed_before_the_remote_answered_is_delivered_once_by_the_other() {
    let started = Instant::now();
    let msgid = "<killed-before-250@example.com>";
    let Some(mut rig) = KillRig::start(&["remote.test"], msgid, &["bob@remote.test"]) else { return };
    rig.remote.wait("A's message, its reply held", |s| s.held == 1);
    let b = rig.start_b();
    rig.a.kill9();
    rig.remote.wait("A's connection to drop", |s| s.dropped == 1);
    assert!(rig.remote.accepted().is_empty(), "nothing was answered 250");
    let list = rig.queue_list();
    assert!(list.contains("sending") && list.ends_with("1 item(s)\n"), "leased by the dead replica: {list}");

    rig.expire_leases_and_answer(&b);
    let copies = rig.remote.accepted();
    assert_eq!(copies.len(), 1, "one copy: {copies:?}");
    assert_eq!(
        (copies[0].rcpts.as_slice(), copies[0].message_id.as_str()),
        (&["bob@remote.test".to_string()][..], msgid)
    );
    eprintln!("took {:?}", started.elapsed());
}

/// A transaction of the test's own that holds the queue row's lock, so that A's
/// write-back waits for it: the instant between the remote's 250 and the write-back,
/// held open long enough to kill A in it.
struct RowLock(std::process::Child);

impl RowLock {
    fn take(url: &str) -> RowLock {
        use std::io::{BufRead, Write};
        let mut psql = test_pg::psql_session(url);
        writeln!(psql.stdin.as_mut().unwrap(), "BEGIN; SELECT id FROM queue_items FOR UPDATE;").unwrap();
        // The row's id is printed once the lock is held.
        let mut id = String::new();
        std::io::BufReader::new(psql.stdout.as_mut().unwrap()).read_line(&mut id).unwrap();
        assert!(!id.trim().is_empty(), "no queue row to lock");
        RowLock(psql)
    }

    fn release(mut self) {
        use std::io::Write;
        let mut stdin = self.0.stdin.take().unwrap();
        writeln!(stdin, "COMMIT;").unwrap();
        drop(stdin);
        assert!(self.0.wait().unwrap().success(), "psql holding the row lock failed");
    }
}

impl Drop for RowLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (30 s at most) until `sql` prints `want`.
fn wait_sql(url: &str, what: &str, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = test_pg::psql(url, sql);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {sql} gives {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// At least once, the other side of it: the remote answered 250, and the replica is
/// killed before its write-back (held back by a row lock). The item stays; after the
/// lease the other replica sends it again, and the remote has two byte-identical copies
/// with one Message-ID — which it can deduplicate on.
#[test]
fn a_replica_killed_between_the_250_and_its_write_back_sends_a_second_copy_with_the_same_message_id() {
    let started = Instant::now();
    let msgid = "<killed-after-250@example.com>";
    let Some(mut rig) = KillRig::start(&["remote.test"], msgid, &["bob@remote.test"]) else { return };
    rig.remote.wait("A's message, its reply held", |s| s.held == 1);
    let b = rig.start_b();
    let lock = RowLock::take(&rig.url);
    rig.remote.answer_all();
    rig.remote.wait("A's copy accepted", |s| s.accepted.len() == 1);
    let write_back = "FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM queue_items%'";
    wait_sql(&rig.url, "A's write-back to wait for the row lock", &format!("SELECT count(*) {write_back}"), "1");
    rig.a.kill9();
    // A dead process's connections go away; the one waiting for a lock would only notice
    // once it got it, so it is ended here (its transaction never committed).
    let ended = test_pg::psql(&rig.url, &format!("SELECT count(*) {write_back} AND pg_terminate_backend(pid, 10000)"));
    assert_eq!(ended, "1", "A's write-back ended with its connection");
    lock.release();
    let list = rig.queue_list();
    assert!(list.contains("sending") && list.ends_with("1 item(s)\n"), "leased by the dead replica: {list}");

    rig.expire_leases_and_answer(&b);
    let copies = rig.remote.accepted();
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert!(copies.iter().all(|c| c.rcpts == ["bob@remote.test"] && c.message_id == msgid), "{copies:?}");
    assert_eq!(copies[0].data, copies[1].data, "the second copy is the same message");
    eprintln!("took {:?}", started.elapsed());
}

/// An item's recipients are written back together, once every domain's transaction has
/// ended: a replica killed after the remote answered 250 for one domain while another
/// domain's transaction (held by the remote) was still running leaves the whole item to
/// be retried. The other replica sends the accepted recipient a second, byte-identical
/// copy with the same Message-ID, and the held one its only copy.
#[test]
fn a_recipient_accepted_before_the_kill_is_sent_again_with_the_rest_of_its_item() {
    let started = Instant::now();
    let msgid = "<killed-mid-item@example.com>";
    let rcpts = ["bob@remote.test", "carol@other.test"];
    let Some(mut rig) = KillRig::start(&["other.test"], msgid, &rcpts) else { return };
    rig.remote.wait("bob's copy accepted and carol's reply held", |s| s.accepted.len() == 1 && s.held == 1);
    let b = rig.start_b();
    rig.a.kill9();
    rig.remote.wait("A's connection to drop", |s| s.dropped == 1);

    rig.expire_leases_and_answer(&b);
    let copies = rig.remote.accepted();
    let to = |rcpt: &str| copies.iter().filter(|c| c.rcpts == [rcpt]).collect::<Vec<_>>();
    let (bob, carol) = (to("bob@remote.test"), to("carol@other.test"));
    assert_eq!((bob.len(), carol.len(), copies.len()), (2, 1, 3), "{copies:?}");
    assert!(copies.iter().all(|c| c.message_id == msgid), "{copies:?}");
    assert_eq!(bob[0].data, bob[1].data, "the second copy is the same message");
    eprintln!("took {:?}", started.elapsed());
}
