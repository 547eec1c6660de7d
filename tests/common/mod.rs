//! Shared helpers for integration tests: start the real `mailroom` binary on
//! ephemeral loopback ports with a temp data dir, wait for it, talk HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mailroom");

#[path = "../../src/test_ports.rs"]
mod test_ports;
pub use test_ports::free_port;

pub mod crash;
pub mod sink;
#[path = "../../src/test_pg.rs"]
pub mod test_pg;
#[path = "../../src/test_s3.rs"]
pub mod test_s3;
#[path = "../../src/test_tools.rs"]
mod test_tools;
#[allow(unused_imports)]
pub use test_tools::{in_ci, missing, tool_available as have_tool};

/// A DNS server on a loopback UDP port that answers NXDOMAIN to every query, at once.
/// Servers under test point `MAILROOM_DNS_SERVERS` at it unless a test needs real
/// records (then it runs dnsmasq): lookups end quickly and never leave the machine.
pub fn nxdomain_dns() -> SocketAddr {
    static ADDR: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { return };
                if n < 12 {
                    continue;
                }
                // Header + the question only (drop any EDNS OPT record).
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += 1 + buf[end] as usize;
                }
                let end = (end + 5).min(n);
                let mut reply = buf[..end].to_vec();
                reply[2] = 0x80 | (buf[2] & 0x01); // QR, copy RD
                reply[3] = 0x83; // RA, NXDOMAIN
                reply[4..6].copy_from_slice(&[0, 1]);
                reply[6..12].copy_from_slice(&[0; 6]);
                let _ = socket.send_to(&reply, from);
            }
        });
        addr
    })
}

/// A dnsmasq serving test records on a loopback port; killed when dropped.
pub struct Dnsmasq(pub Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start dnsmasq on `port` (UDP and TCP, 127.0.0.1 only, no upstream, no /etc/hosts)
/// with the test's records in `args` (`--mx-host=…`, `--txt-record=…`, `--local=/test/`).
pub fn dnsmasq_on<S: AsRef<std::ffi::OsStr>>(port: u16, args: &[S]) -> Dnsmasq {
    let child = Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
        ])
        .arg(format!("--port={port}"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    std::thread::sleep(Duration::from_millis(300));
    Dnsmasq(child)
}

/// [`dnsmasq_on`] a free port; returns the server's address too.
pub fn dnsmasq<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Dnsmasq, SocketAddr) {
    let port = free_port();
    (dnsmasq_on(port, args), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Every listener off, so a test turns on only what it needs. Tests open many
/// connections from 127.0.0.1, which the connection rate limit counts like any client
/// (only trusted networks are exempt, and trusting loopback would change relay policy):
/// the rate is raised instead. A test of the limit itself replaces this entry.
pub fn base_env(data_dir: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        "SMTP",
        "SUBMISSION",
        "SUBMISSIONS",
        "IMAP",
        "IMAPS",
        "POP3",
        "POP3S",
        "MANAGESIEVE",
        "LMTP",
        "HTTP",
        "HTTPS",
        "METRICS",
    ]
    .iter()
    .map(|p| (format!("MAILROOM_{p}_LISTEN"), "off".to_string()))
    .collect();
    env.push(("MAILROOM_HOSTNAME".into(), "mx.example.com".into()));
    env.push(("MAILROOM_DATA_DIR".into(), data_dir.display().to_string()));
    env.push(("MAILROOM_ACME".into(), "off".into()));
    env.push(("MAILROOM_DNS_SERVERS".into(), nxdomain_dns().to_string()));
    env.push(("MAILROOM_CONNECTIONS_PER_MINUTE".into(), "100000".into()));
    env
}

/// A running server process with its captured stderr.
pub struct Server {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
    pub metrics: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// The listeners the server reported in its start line, by protocol name.
    bound: Vec<(String, SocketAddr)>,
}

impl Server {
    /// Start `mailroom serve` with exactly `env` (plus PATH), metrics on `metrics`.
    pub fn start(env: &[(String, String)], metrics: Option<SocketAddr>, data_dir: &Path) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start mailroom");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Server { child, stderr, metrics, data_dir: data_dir.to_path_buf(), bound: Vec::new() }
    }

    /// Start with the listeners `env` names — `127.0.0.1:0` lets the kernel choose, so no
    /// test ever races another process for a port — and wait until ready. The bound
    /// addresses come from the server's start line (`port`, `addr`).
    pub fn start_ready(env: &[(String, String)], data_dir: &Path, timeout: Duration) -> Server {
        let mut server = Server::start(env, None, data_dir);
        server.wait_ready(timeout);
        server
    }

    /// The address the server bound for `protocol` (`"imaps"`, `"submission"`, …, as its
    /// start line names them); the server must be ready.
    pub fn addr(&self, protocol: &str) -> SocketAddr {
        self.bound
            .iter()
            .find(|(p, _)| p == protocol)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {protocol} listener in the start line:\n{}", self.log()))
    }

    pub fn port(&self, protocol: &str) -> u16 {
        self.addr(protocol).port()
    }

    /// Wait for the `mailroom started` line and read its `listeners` field
    /// (`smtp=127.0.0.1:41234 imap=…`, text or JSON log format).
    fn read_start_line(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early with {status}:\n{}", self.log());
            }
            let log = self.log();
            let listeners = log.lines().filter(|l| l.contains("mailroom started")).find_map(|l| {
                let (_, rest) = l.split_once("listeners=").or_else(|| l.split_once("\"listeners\":\""))?;
                Some(
                    rest.split([' ', '"'])
                        .map_while(|token| {
                            let (name, addr) = token.split_once('=')?;
                            Some((name.to_string(), addr.parse::<SocketAddr>().ok()?))
                        })
                        .collect::<Vec<_>>(),
                )
            });
            if let Some(listeners) = listeners {
                self.bound = listeners;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no `mailroom started` line:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait for the start line and until /readyz says 200 (panics with the log after
    /// `timeout`). Without a metrics address given at start, the one in the start line.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        self.read_start_line(start + timeout);
        let addr = self.metrics.unwrap_or_else(|| self.addr("metrics"));
        self.metrics = Some(addr);
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early with {status}:\n{}", self.log());
            }
            if let Ok((200, _)) = http_get(addr, "/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server not ready after {timeout:?}:\n{}", self.log());
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGTERM and wait for the exit status (None if it did not exit in time).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server said, without every assertion having to.
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last {} lines of the server log:", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Scrape the server's metrics until `done` holds for the scrape, for at most 30 s (the
/// server works in the background: the queue, a connection ending after its last reply).
pub fn scrape_until(server: &Server, what: &str, done: impl Fn(&str) -> bool) -> String {
    let metrics = server.metrics.expect("the server has a metrics listener");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(metrics, "/metrics").unwrap();
        assert_eq!(status, 200);
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "no {what} after 30 s:\n{body}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum of the `mailroom_sessions` gauges in a scrape: 0 once every IMAP, POP3 and
/// ManageSieve connection has ended.
pub fn sessions_open(scrape: &str) -> i64 {
    scrape
        .lines()
        .filter(|l| l.starts_with("mailroom_sessions{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// Run the binary with `args` and `env` (and nothing else), feeding `stdin`.
pub fn run(args: &[&str], env: &[(String, String)], stdin: &str) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A server with SMTP and IMAP on loopback ports and one account,
/// `alice@example.com` / `wonderland`, in a temp data dir; ready when returned.
pub struct MailServer {
    pub server: Server,
    pub smtp: u16,
    pub imap: u16,
    pub data: PathBuf,
    _tmp: tempfile::TempDir,
}

pub fn start_smtp_imap() -> MailServer {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = env_listening(&data, &["SMTP", "IMAP"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    let server = Server::start_ready(&env, &data, Duration::from_secs(30));
    let (smtp, imap) = (server.port("smtp"), server.port("imap"));
    MailServer { server, smtp, imap, data, _tmp: tmp }
}

/// Verify both DKIM signatures of `message` with python `dkim`, keys from `mailroom dns --json`.
pub fn verify_dkim(env: &[(String, String)], message: &[u8]) {
    let json = run(&["dns", "--json"], env, "");
    let records: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let keys: serde_json::Map<String, serde_json::Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"].as_str().unwrap_or("").starts_with("dkim:"))
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["value"].clone()))
        .collect();
    let script = r#"
import sys, json, dkim
records = json.loads(sys.argv[1])
msg = sys.stdin.buffer.read()
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    v = records.get(name if name.endswith(".") else name + ".")
    return v.encode() if v else None
d = dkim.DKIM(msg)
results = [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(2)]
print(results)
assert all(results), results
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &serde_json::Value::Object(keys).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python dkim: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(message)
    );
}

/// `base_env` with these listeners and metrics on `127.0.0.1:0` (`"IMAPS"` sets
/// `MAILROOM_IMAPS_LISTEN`); start with `Server::start_ready` and ask it for the ports.
pub fn env_listening(data: &Path, listeners: &[&str]) -> Vec<(String, String)> {
    let mut env = base_env(data);
    for protocol in listeners.iter().chain(&["METRICS"]) {
        let key = format!("MAILROOM_{protocol}_LISTEN");
        env.retain(|(k, _)| *k != key);
        env.push((key, "127.0.0.1:0".to_string()));
    }
    env
}

/// Run a client script from tests/clients with python3 and `args`; fails the test with
/// its output and the server's log unless it exits 0. Returns its stdout.
pub fn run_client(script: &str, args: &[String], server: &Server) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_client_input(script, &args, b"", server)
}

/// [`run_client`] with `stdin` written to the script.
pub fn run_client_input(script: &str, args: &[&str], stdin: &[u8], server: &Server) -> String {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} {args:?}: {text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    text
}

/// python3 and dnsmasq on PATH, and `import {modules}` works? Missing: the test returns
/// early (or fails under CI=true); `install` says how to get the modules.
pub fn python_and_dnsmasq(modules: &str, install: &str) -> bool {
    if !have_tool("python3") || !have_tool("dnsmasq") {
        return false;
    }
    let probe = Command::new("python3").args(["-c", &format!("import {modules}")]).output().unwrap();
    if !probe.status.success() {
        missing(&format!("python3 {modules} ({install})"));
        return false;
    }
    true
}

/// For the fake remote MX servers of the tests: the message after DATA's 354, read up to
/// the line holding only a dot and un-dot-stuffed; `None` when the client hung up first.
pub fn read_smtp_data(r: &mut impl std::io::BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    loop {
        let mut l = Vec::new();
        if r.read_until(b'\n', &mut l)? == 0 {
            return Ok(None);
        }
        if l == b".\r\n" {
            return Ok(Some(data));
        }
        data.extend_from_slice(if l.starts_with(b"..") { &l[1..] } else { &l });
    }
}
