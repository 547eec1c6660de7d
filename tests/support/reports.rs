//! What the report tests share (tests/it/dmarc_reports.rs, tests/it/tls_reports.rs): the real
//! binary serving example.com (one account, alice) with the test DNS and the remote MX
//! port, `mailroom reports send` read line by kind, and the metrics.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use crate::common::*;

pub const USER: &str = "alice@example.com";

pub struct Rig {
    pub server: Server,
    pub env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

impl Rig {
    /// Start with `listeners` (`"SMTP"`, `"SUBMISSION"`), alice's `password`, the
    /// resolver `dns`, remote MX hosts on `mx_port`, and `extra` variables.
    pub fn start(
        listeners: &[&str],
        password: &str,
        dns: std::net::SocketAddr,
        mx_port: u16,
        extra: &[(&str, &str)],
    ) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut env = env_listening(&data, listeners);
        env.retain(|(k, _)| k != "MAILROOM_DNS_SERVERS");
        env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
        env.push(("MAILROOM_ACCOUNTS".into(), format!("{USER}:{{PLAIN}}{password}")));
        env.push(("MAILROOM_DNS_SERVERS".into(), dns.to_string()));
        env.push(("MAILROOM_OUTBOUND_SMTP_PORT".into(), mx_port.to_string()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let server = Server::start_ready(&env, &data, Duration::from_secs(30));
        Rig { server, env, _tmp: tmp }
    }

    pub fn restart(&mut self) {
        assert!(self.server.terminate(Duration::from_secs(30)).is_some(), "{}", self.server.log());
        let data = self.server.data_dir.clone();
        self.server = Server::start_ready(&self.env, &data, Duration::from_secs(30));
    }

    pub fn reports_send(&self) -> std::process::Output {
        run(&["reports", "send"], &self.env, "")
    }

    /// `mailroom reports send`, which must succeed: its line of one kind (`DMARC
    /// aggregate`, `SMTP TLS`) without the kind, `None` when the kind is off.
    pub fn reports_line(&self, kind: &str) -> Option<String> {
        let out = self.reports_send();
        assert!(out.status.success(), "{out:?}\n{}", self.server.log());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let prefix = format!("{kind} reports: ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(str::to_string)
    }

    /// A metric's value (0 when absent).
    pub fn metric(&self, name: &str) -> u64 {
        let (status, text) = http_get(self.server.metrics.unwrap(), "/metrics").unwrap();
        assert_eq!(status, 200);
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).unwrap_or(0.0)
            as u64
    }

    /// Wait until the metric `name` is above 0 (a received report was read).
    pub fn wait_metric(&self, name: &str) {
        let start = Instant::now();
        while self.metric(name) == 0 {
            assert!(start.elapsed() < Duration::from_secs(30), "{name} stays 0\n{}", self.server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
