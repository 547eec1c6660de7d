//! Accounts' own Sieve scripts end to end through the real binary: uploaded and
//! activated with PyPI sievelib over ManageSieve, mail sent to port 25 with smtplib,
//! results read with imaplib, and what leaves through the queue (vacation replies,
//! reject DSNs, redirects) caught by a loopback "remote MX" found through dnsmasq.
//! Tools missing -> skip, unless CI=true.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

const USER: &str = "alice@example.com";
/// A second account, without a script.
const OTHER: &str = "dan@example.com";
const PASSWORD: &str = "sieve-e2e-password";

/// Run tests/clients/sieve_e2e.py with `args` and `stdin`; fails with its output and the
/// server's log unless it exits 0.
fn client(args: &[&str], stdin: &str, server: &Server) -> String {
    run_client_input("sieve_e2e.py", args, stdin.as_bytes(), server)
}

struct Rig {
    server: Server,
    env: Vec<(String, String)>,
    sink: common::sink::Received,
    _dns: Dnsmasq,
    _tmp: tempfile::TempDir,
}

impl Rig {
    fn start(extra: &[(&str, &str)]) -> Rig {
        let (dns, dns_addr) = dnsmasq(&[
            "--mx-host=remote.test,mx.remote.test,10",
            "--mx-host=remote.example,mx.remote.test,10",
            "--address=/mx.remote.test/127.0.0.1",
        ]);
        let (sink, mx_port) = common::sink::start_sink(None);
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut env = env_listening(&data, &["SMTP", "IMAP", "MANAGESIEVE"]);
        env.retain(|(k, _)| k != "MAILROOM_DNS_SERVERS");
        env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
        env.push(("MAILROOM_ACCOUNTS".into(), format!("{USER}:{{PLAIN}}{PASSWORD},{OTHER}:{{PLAIN}}{PASSWORD}")));
        env.push(("MAILROOM_ALIASES".into(), format!("sales@example.com:{USER}")));
        env.push(("MAILROOM_DNS_SERVERS".into(), dns_addr.to_string()));
        env.push(("MAILROOM_OUTBOUND_SMTP_PORT".into(), mx_port.to_string()));
        env.push(("MAILROOM_QUEUE_RETRY_MIN".into(), "1s".into()));
        env.push(("MAILROOM_QUEUE_RETRY_MAX".into(), "2s".into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let server = Server::start_ready(&env, &data, Duration::from_secs(30));
        Rig { server, env, sink, _dns: dns, _tmp: tmp }
    }

    /// SIGTERM and start again on the same data (new ports).
    fn restart(&mut self) {
        assert!(self.server.terminate(Duration::from_secs(30)).is_some(), "{}", self.server.log());
        let data = self.server.data_dir.clone();
        self.server = Server::start_ready(&self.env, &data, Duration::from_secs(30));
    }

    fn port(&self, protocol: &str) -> String {
        self.server.port(protocol).to_string()
    }

    /// Upload `script` as `name` and make it the active one.
    fn activate(&self, name: &str, script: &str) {
        let port = self.port("managesieve");
        let out = client(&["put", "127.0.0.1", &port, USER, PASSWORD, name], script, &self.server);
        assert_eq!(out.trim(), "ok");
    }

    /// Port 25: a message from `from` to alice.
    fn send(&self, from: &str, subject: &str, extra_headers: &str) {
        let id = format!("<{}.{}@remote.test>", subject.replace(' ', "-"), std::process::id());
        let message = format!(
            "From: {from}\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: {id}\r\n{extra_headers}\r\nHello.\r\n"
        );
        self.send_raw(from, USER, &message);
    }

    /// Port 25: `message` as it is, with this envelope.
    fn send_raw(&self, mail_from: &str, rcpt: &str, message: &str) {
        assert_eq!(self.try_send(mail_from, rcpt, message), "sent");
    }

    /// Port 25: "sent", or "refused CODE TEXT" when the reply to DATA refuses it.
    /// `rcpts` may list several, comma-separated.
    fn try_send(&self, mail_from: &str, rcpts: &str, message: &str) -> String {
        let port = self.port("smtp");
        client(&["send", "127.0.0.1", &port, mail_from, rcpts], message, &self.server).trim().to_string()
    }

    /// `(flags, subject)` of each message in `folder`, through IMAP.
    fn folder(&self, folder: &str) -> Vec<(String, String)> {
        let port = self.port("imap");
        let out = client(&["fetch", "127.0.0.1", &port, USER, PASSWORD, folder], "", &self.server);
        out.lines().filter_map(|l| l.split_once('\t')).map(|(f, s)| (f.to_string(), s.to_string())).collect()
    }

    fn subjects(&self, folder: &str) -> Vec<String> {
        self.folder(folder).into_iter().map(|(_, s)| s).collect()
    }

    fn metric(&self, name: &str) -> u64 {
        let (status, metrics) = http_get(self.server.metrics.unwrap(), "/metrics").unwrap();
        assert_eq!(status, 200);
        metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).unwrap_or(0.0)
            as u64
    }

    /// Wait until the remote MX holds a message matching `f`; returns it.
    fn wait_remote(&self, what: &str, f: impl Fn(&common::sink::Got) -> bool) -> common::sink::Got {
        let start = Instant::now();
        loop {
            if let Some(g) = self.sink.lock().unwrap().iter().find(|g| f(g)) {
                return g.clone();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no {what} at the remote MX\n{}", self.server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn remote_count(&self, f: impl Fn(&common::sink::Got) -> bool) -> usize {
        self.sink.lock().unwrap().iter().filter(|g| f(g)).count()
    }
}

fn tools() -> bool {
    python_and_dnsmasq("sievelib.managesieve", "pip install sievelib")
}

const FILTERS: &str = "require [\"fileinto\", \"mailbox\", \"imap4flags\"];\r\n\
    if header :contains \"List-Id\" \"foo.example\" {\r\n  addflag \"\\\\Flagged\";\r\n  fileinto :create \"Lists/foo\";\r\n}\r\n";

/// Case 1: fileinto :create with a flag for a header match, INBOX otherwise.
fn fileinto_with_flags(rig: &Rig) {
    rig.activate("filters", FILTERS);
    rig.send("bob@remote.test", "list post", "List-Id: Foo <foo.example>\r\n");
    rig.send("bob@remote.test", "personal", "");
    let lists = rig.folder("Lists/foo");
    assert_eq!(lists.len(), 1, "{lists:?}\n{}", rig.server.log());
    assert_eq!(lists[0].1, "list post");
    assert!(lists[0].0.contains("\\Flagged"), "{lists:?}");
    let inbox = rig.folder("INBOX");
    assert_eq!(inbox.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(), ["personal"], "{inbox:?}");
    assert!(!inbox[0].0.contains("\\Flagged"), "{inbox:?}");
}

/// Case 2: vacation answers a sender once per period (across a restart), never a list.
fn vacation_once(rig: &mut Rig) {
    rig.activate(
        "away",
        "require \"vacation\";\r\nvacation :days 1 :subject \"Out of office\" \"I am away until Monday.\";\r\n",
    );
    rig.send("carol@remote.test", "question", "");
    let reply = rig.wait_remote("vacation reply", |g| g.rcpts == ["carol@remote.test"]);
    assert_eq!(reply.from, "", "vacation replies leave with the null sender");
    assert!(reply.text().contains("Auto-Submitted: auto-replied"), "{}", reply.text());
    assert!(reply.text().contains("Subject: Out of office"), "{}", reply.text());
    let id = format!("<question.{}@remote.test>", std::process::id());
    assert!(reply.text().lines().any(|l| l.starts_with("In-Reply-To:") && l.contains(&id)), "{}", reply.text());
    assert!(reply.text().contains("I am away until Monday."), "{}", reply.text());
    verify_dkim(&rig.env, &reply.data);
    rig.send("carol@remote.test", "follow-up", "");
    rig.send("dave@remote.test", "digest", "List-Id: <news.remote.test>\r\n");
    // RFC 5230 4.5: not when none of the account's addresses is in To/Cc (a Bcc).
    rig.send_raw(
        "henry@remote.test",
        USER,
        "From: henry@remote.test\r\nTo: friends@remote.test\r\nSubject: bcc\r\n\r\nHi all.\r\n",
    );
    // Through an alias, addressed to the alias: answered.
    rig.send_raw(
        "kim@remote.test",
        "sales@example.com",
        "From: kim@remote.test\r\nTo: sales@example.com\r\nSubject: price?\r\n\r\nHow much?\r\n",
    );
    rig.wait_remote("vacation reply through an alias", |g| g.rcpts == ["kim@remote.test"]);
    assert_eq!(rig.metric("mailroom_sieve_vacation_replies_total"), 2);
    std::thread::sleep(Duration::from_secs(3));
    let to_carol = rig.remote_count(|g| g.rcpts.iter().any(|r| r == "carol@remote.test"));
    assert_eq!(to_carol, 1, "{:?}", rig.sink.lock().unwrap());
    assert_eq!(rig.remote_count(|g| g.rcpts.iter().any(|r| r == "dave@remote.test")), 0);
    assert_eq!(rig.remote_count(|g| g.rcpts.iter().any(|r| r == "henry@remote.test")), 0);
    let inbox = rig.subjects("INBOX");
    for s in ["question", "follow-up", "digest"] {
        assert!(inbox.iter().any(|i| i == s), "{s} kept: {inbox:?}");
    }

    // The memory of who was answered outlives a restart.
    rig.restart();
    rig.send("carol@remote.test", "after restart", "");
    assert!(rig.subjects("INBOX").iter().any(|s| s == "after restart"));
    assert_eq!(rig.metric("mailroom_sieve_scripts_run_total"), 1, "the script ran after the restart");
    std::thread::sleep(Duration::from_secs(3));
    let to_carol = rig.remote_count(|g| g.rcpts.iter().any(|r| r == "carol@remote.test"));
    assert_eq!(to_carol, 1, "answered again after a restart\n{}", rig.server.log());
}

/// An included personal script comes from the store; a folder named in UTF-8 is the
/// IMAP folder of that name (modified UTF-7 on the wire); one the store cannot name is
/// a keep.
fn include_and_utf8_folder(rig: &Rig) {
    rig.activate(
        "lib",
        "require [\"fileinto\", \"mailbox\"];\r\nfileinto :create \"Café\";\r\nfileinto :create \"v1.2\";\r\n",
    );
    rig.activate("main", "require \"include\";\r\ninclude :personal \"lib\";\r\n");
    rig.send("ivan@remote.test", "included", "");
    let cafe = rig.subjects("Caf&AOk-");
    assert_eq!(cafe, ["included"], "{}", rig.server.log());
    // A `.` in a name is the stores' hierarchy on disk (IMAP CREATE refuses it too):
    // that fileinto gets the implicit keep.
    assert!(rig.subjects("v1.2").is_empty());
    assert!(rig.subjects("INBOX").iter().any(|s| s == "included"), "{}", rig.server.log());
}

#[test]
fn user_scripts_through_managesieve_port_25_and_the_queue() {
    if !tools() {
        return;
    }
    let mut rig = Rig::start(&[]);
    fileinto_with_flags(&rig);
    include_and_utf8_folder(&rig);

    vacation_once(&mut rig);

    // `vacation :from` speaks only for the account: an alias of hers is fine, another
    // address of the domain (which our DKIM signature would vouch for) is not sent.
    rig.activate("as-sales", "require \"vacation\";\r\nvacation :from \"sales@example.com\" \"Away.\";\r\n");
    rig.send("leo@remote.test", "to sales", "");
    let reply = rig.wait_remote("reply from the alias", |g| g.rcpts == ["leo@remote.test"]);
    assert!(
        reply.text().lines().any(|l| l.starts_with("From:") && l.contains("sales@example.com")),
        "{}",
        reply.text()
    );
    rig.activate("as-boss", "require \"vacation\";\r\nvacation :from \"boss@example.com\" \"Away.\";\r\n");
    rig.send("mia@remote.test", "to boss", "");
    assert!(rig.server.wait_log("reply not sent", Duration::from_secs(10)), "{}", rig.server.log());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rig.remote_count(|g| g.rcpts.iter().any(|r| r == "mia@remote.test")), 0);
    assert!(rig.subjects("INBOX").iter().any(|s| s == "to boss"));
    // The refused reply is remembered like a sent one: no second attempt this period.
    rig.send("mia@remote.test", "to boss again", "");
    assert!(rig.subjects("INBOX").iter().any(|s| s == "to boss again"));
    assert_eq!(rig.server.log().matches("reply not sent").count(), 1, "{}", rig.server.log());

    // Case 3: reject stores nothing. Alone, the message is refused in the reply to DATA
    // (RFC 5429 section 2.1); beside a recipient who takes it, it is accepted and the
    // sender gets a DSN with the reason.
    rig.activate("no", "require \"reject\";\r\nreject \"no thanks\";\r\n");
    let before = rig.subjects("INBOX").len();
    let pitch = "From: erin@remote.test\r\nTo: alice@example.com\r\nSubject: sales pitch\r\n\r\nBuy.\r\n";
    assert_eq!(
        rig.try_send("erin@remote.test", USER, pitch),
        "refused 550 5.7.1 Message rejected by the recipient's filter: no thanks"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rig.remote_count(|g| g.rcpts.iter().any(|r| r == "erin@remote.test")), 0, "no DSN after a refusal");
    assert_eq!(rig.try_send("erin@remote.test", &format!("{USER},{OTHER}"), pitch), "sent");
    let dsn = rig.wait_remote("reject DSN", |g| g.rcpts == ["erin@remote.test"]);
    assert_eq!(dsn.from, "");
    assert!(dsn.text().contains("no thanks"), "{}", dsn.text());
    assert!(dsn.text().contains("5.7.1"), "{}", dsn.text());
    assert_eq!(rig.subjects("INBOX").len(), before, "a rejected message is not stored");
    // Never a DSN to the null sender.
    let sent = rig.sink.lock().unwrap().len();
    let robot = "From: robot@remote.test\r\nTo: alice@example.com\r\nSubject: from nobody\r\n\r\nx\r\n";
    rig.send_raw("", &format!("{USER},{OTHER}"), robot);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rig.sink.lock().unwrap().len(), sent, "{:?}", rig.sink.lock().unwrap());
    assert_eq!(rig.subjects("INBOX").len(), before);

    // Case 4: redirect, a remote sender's through SRS; no local copy, with :copy one.
    rig.activate("fwd", "redirect \"someone@remote.example\";\r\n");
    rig.send("frank@remote.test", "forward me", "");
    let copy = rig.wait_remote("redirected copy", |g| g.rcpts == ["someone@remote.example"]);
    assert!(copy.from.to_ascii_uppercase().starts_with("SRS0") && copy.from.ends_with("@example.com"), "{copy:?}");
    assert!(copy.text().contains("Subject: forward me"), "{}", copy.text());
    assert!(copy.text().contains("X-Mailroom-Sieve-Redirected-From: alice@example.com"), "{}", copy.text());
    assert!(!rig.subjects("INBOX").iter().any(|s| s == "forward me"));
    // A bounce to the SRS address goes back to the original sender.
    rig.send_raw(
        "",
        &copy.from,
        "From: MAILER-DAEMON@remote.example\r\nTo: someone\r\nSubject: bounce of forward me\r\n\r\nNo such user.\r\n",
    );
    rig.wait_remote("bounce sent back", |g| {
        g.rcpts == ["frank@remote.test"] && g.text().contains("bounce of forward me")
    });
    // Redirected to the account itself: delivered again, and that time kept (loop guard).
    rig.activate("self", "redirect \"alice@example.com\";\r\n");
    rig.send("frank@remote.test", "to myself", "");
    let start = Instant::now();
    while !rig.subjects("INBOX").iter().any(|s| s == "to myself") {
        assert!(start.elapsed() < Duration::from_secs(30), "redirect to self never kept\n{}", rig.server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rig.subjects("INBOX").iter().filter(|s| *s == "to myself").count(), 1);
    rig.activate("fwdcopy", "require \"copy\";\r\nredirect :copy \"someone@remote.example\";\r\n");
    rig.send("frank@remote.test", "copy me", "");
    rig.wait_remote("redirected :copy", |g| g.text().contains("Subject: copy me"));
    assert!(rig.subjects("INBOX").iter().any(|s| s == "copy me"));

    // Case 5: a script that fails at run time keeps the message in INBOX, counted.
    let errors = rig.metric("mailroom_sieve_errors_total");
    rig.activate("broken", "require \"include\";\r\ninclude :personal \"missing\";\r\ndiscard;\r\n");
    rig.send("gina@remote.test", "still delivered", "");
    assert!(rig.subjects("INBOX").iter().any(|s| s == "still delivered"), "{}", rig.server.log());
    assert_eq!(rig.metric("mailroom_sieve_errors_total"), errors + 1);

    // A script that does not compile, as a Dovecot home copied in may hold: the same,
    // logged with the account and the script's name.
    let home = rig.server.data_dir.join("home/example.com/alice");
    std::fs::write(home.join("sieve/fromdovecot.sieve"), "require \"fileinto\";\r\nfileinto;\r\n").unwrap();
    std::fs::remove_file(home.join(".dovecot.sieve")).unwrap();
    std::os::unix::fs::symlink("sieve/fromdovecot.sieve", home.join(".dovecot.sieve")).unwrap();
    rig.send("gina@remote.test", "despite a broken script", "");
    assert!(rig.subjects("INBOX").iter().any(|s| s == "despite a broken script"), "{}", rig.server.log());
    assert_eq!(rig.metric("mailroom_sieve_errors_total"), errors + 2);
    let log = rig.server.log();
    assert!(log.lines().any(|l| l.contains("alice@example.com") && l.contains("fromdovecot")), "{log}");
}

/// Cases 1 and 2 again on the PostgreSQL store (scripts and vacation memory in tables).
#[test]
fn user_scripts_file_and_answer_on_postgres() {
    if !tools() {
        return;
    }
    let Some(url) = test_pg::database() else { return };
    let mut rig = Rig::start(&[("MAILROOM_STORE", url.as_str())]);
    fileinto_with_flags(&rig);
    let rows = test_pg::psql(&url, "SELECT name, active FROM sieve_scripts");
    assert_eq!(rows.trim(), "filters|t", "{rows}");
    include_and_utf8_folder(&rig);
    // Keywords are kept on this store.
    rig.activate(
        "work",
        "require [\"fileinto\", \"mailbox\", \"imap4flags\"];\r\nfileinto :create :flags [\"$Work\", \"\\\\Seen\"] \"Work\";\r\n",
    );
    rig.send("judy@remote.test", "tagged", "");
    let work = rig.folder("Work");
    assert_eq!(work.len(), 1, "{work:?}");
    assert!(work[0].0.contains("$Work") && work[0].0.contains("\\Seen"), "{work:?}");
    vacation_once(&mut rig);
}
