//! The account pages' vacation reply end to end through the real binary: settings saved
//! with `mailroom::sieve::vacation_settings::save` into the stopped server's data dir
//! (what the web form calls), mail sent to port 25 with smtplib, the reply caught by a
//! loopback "remote MX" found through dnsmasq, folders read with imaplib and the user's
//! scripts handled with PyPI sievelib over ManageSieve. Tools missing -> skip, unless
//! CI=true.

use crate::common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use mailroom::sieve::vacation_settings::{VacationSettings, save};
use mailroom::store::{MailboxOwner, Store};

const USER: &str = "alice@example.com";
const PASSWORD: &str = "vacation-e2e-password";

fn client(args: &[&str], stdin: &str, server: &Server) -> String {
    run_client_input("sieve_e2e.py", args, stdin.as_bytes(), server)
}

struct Rig {
    server: Option<Server>,
    env: Vec<(String, String)>,
    data: std::path::PathBuf,
    sink: common::sink::Received,
    _dns: Dnsmasq,
    _tmp: tempfile::TempDir,
}

impl Rig {
    fn start() -> Rig {
        let (dns, dns_addr) =
            dnsmasq(&["--mx-host=remote.test,mx.remote.test,10", "--address=/mx.remote.test/127.0.0.1"]);
        let (sink, mx_port) = common::sink::start_sink(None);
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut env = env_listening(&data, &["SMTP", "IMAP", "MANAGESIEVE"]);
        env.retain(|(k, _)| k != "MAILROOM_DNS_SERVERS");
        env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
        env.push(("MAILROOM_ACCOUNTS".into(), format!("{USER}:{{PLAIN}}{PASSWORD}")));
        env.push(("MAILROOM_DNS_SERVERS".into(), dns_addr.to_string()));
        env.push(("MAILROOM_OUTBOUND_SMTP_PORT".into(), mx_port.to_string()));
        env.push(("MAILROOM_QUEUE_RETRY_MIN".into(), "1s".into()));
        env.push(("MAILROOM_QUEUE_RETRY_MAX".into(), "2s".into()));
        let server = Server::start_ready(&env, &data, Duration::from_secs(30));
        Rig { server: Some(server), env, data, sink, _dns: dns, _tmp: tmp }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the server runs")
    }

    /// Stop the server, save `settings` for alice into its data dir as the account pages
    /// would, and start it again.
    fn save_while_stopped(&mut self, settings: &VacationSettings) {
        let mut server = self.server.take().expect("the server runs");
        assert!(server.terminate(Duration::from_secs(30)).is_some(), "{}", server.log());
        let store = Store::open(&self.data, "mx.example.com").unwrap();
        let owner = MailboxOwner::new("alice", "example.com");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(save(&store, &owner, settings)).unwrap();
        drop(store);
        self.server = Some(Server::start_ready(&self.env, &self.data, Duration::from_secs(30)));
    }

    fn port(&self, protocol: &str) -> String {
        self.server().port(protocol).to_string()
    }

    /// Port 25: a message from `from` to alice. Local delivery (and the vacation reply's
    /// queueing) is done when the DATA reply comes.
    fn send(&self, from: &str, subject: &str) {
        let message = format!(
            "From: {from}\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <{subject}.{}@remote.test>\r\n\r\nHello.\r\n",
            std::process::id()
        );
        let port = self.port("smtp");
        let out = client(&["send", "127.0.0.1", &port, from, USER], &message, self.server());
        assert_eq!(out.trim(), "sent");
    }

    fn subjects(&self, folder: &str) -> Vec<String> {
        let port = self.port("imap");
        let out = client(&["fetch", "127.0.0.1", &port, USER, PASSWORD, folder], "", self.server());
        out.lines().filter_map(|l| l.split_once('\t')).map(|(_, s)| s.to_string()).collect()
    }

    fn metric(&self, name: &str) -> u64 {
        let (status, metrics) = http_get(self.server().metrics.unwrap(), "/metrics").unwrap();
        assert_eq!(status, 200);
        metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).unwrap_or(0.0)
            as u64
    }

    /// Wait until the remote MX holds a message for `to`; returns it.
    fn wait_remote(&self, to: &str) -> common::sink::Got {
        let start = Instant::now();
        loop {
            if let Some(g) = self.sink.lock().unwrap().iter().find(|g| g.rcpts == [to]) {
                return g.clone();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no reply to {to}\n{}", self.server().log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tools() -> bool {
    python_and_dnsmasq("sievelib.managesieve", "pip install sievelib")
}

fn settings(start: &str, end: &str) -> VacationSettings {
    VacationSettings::from_form(true, "Abwesend — \"back\" Monday", "I am away.\n.\nMail waits for me.\n", start, end)
        .unwrap()
}

#[test]
fn the_vacation_settings_reply_with_and_without_a_user_script_and_only_in_their_window() {
    if !tools() {
        return;
    }
    let mut rig = Rig::start();
    let today = Utc::now().date_naive();
    let (from, to) = ((today - chrono::Duration::days(1)).to_string(), (today + chrono::Duration::days(1)).to_string());
    rig.save_while_stopped(&settings(&from, &to));

    // No user script: the reply goes out and the message is kept in INBOX.
    rig.send("carol@remote.test", "question");
    let reply = rig.wait_remote("carol@remote.test");
    let text = reply.text();
    assert_eq!(reply.from, "", "vacation replies leave with the null sender");
    assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
    assert!(text.contains("\r\nSubject: =?utf-8?b?"), "a non-ASCII subject is encoded: {text}");
    assert!(text.contains("\r\n\r\nI am away.\r\n.\r\nMail waits for me.\r\n"), "{text}");
    verify_dkim(&rig.env, &reply.data);
    assert_eq!(rig.subjects("INBOX"), ["question"]);

    // The user's own script, which includes the vacation `:once` too: it files, one reply.
    let port = rig.port("managesieve");
    let mine = "require [\"include\", \"fileinto\", \"mailbox\"];\r\n\
        include :personal :once \"mailroom-vacation\";\r\nfileinto :create \"Lists\";\r\n";
    let out = client(&["put", "127.0.0.1", &port, USER, PASSWORD, "mine"], mine, rig.server());
    assert_eq!(out.trim(), "ok");
    rig.send("dave@remote.test", "filed");
    rig.wait_remote("dave@remote.test");
    assert_eq!(rig.subjects("Lists"), ["filed"]);
    assert_eq!(rig.metric("mailroom_sieve_vacation_replies_total"), 2, "{}", rig.server().log());
    // The memory: carol writes again within :days, no second reply (queued before 250).
    rig.send("carol@remote.test", "again");
    assert_eq!(rig.metric("mailroom_sieve_vacation_replies_total"), 2);

    // ManageSieve neither lists the reserved script nor changes it.
    let out = client(&["change", "127.0.0.1", &port, USER, PASSWORD, "mailroom-vacation"], "", rig.server());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "script mine", "{out}");
    assert_eq!(lines.len(), 4, "{out}");
    for refusal in &lines[1..] {
        assert!(refusal.starts_with("NO The name mailroom-vacation is reserved"), "{out}");
    }

    // Outside the window: no reply, the user's script still files.
    rig.save_while_stopped(&settings("2000-01-01", "2000-01-02"));
    rig.send("erin@remote.test", "late");
    assert_eq!(rig.metric("mailroom_sieve_scripts_run_total"), 1, "{}", rig.server().log());
    assert_eq!(rig.metric("mailroom_sieve_vacation_replies_total"), 0, "{}", rig.server().log());
    assert!(rig.subjects("Lists").iter().any(|s| s == "late"));
    assert!(rig.sink.lock().unwrap().iter().all(|g| g.rcpts != ["erin@remote.test"]));
}
