//! bench/run's IMAP mixed load, as a light client: the same sessions and command mix as
//! `bench/load.py imap` (LOGIN, SELECT INBOX, then per iteration FETCH 20 × (UID FLAGS
//! ENVELOPE), FETCH 1 × BODY.PEEK[], STORE ±FLAGS, one SEARCH of UNSEEN / FLAGGED /
//! FROM "bench"; LOGOUT), on one thread. The asyncio Python client spends 100-320 µs of
//! CPU per command; on a 2-core machine it shares the CPU with the server under test, so
//! it capped every server's rate alike and narrowed the ratio between them. This one
//! spends 24-64 µs, TLS handshakes included, so the rates compare the servers.
//!
//! Untagged lines and literals are read and skipped, not parsed. Certificates are not
//! verified (the servers under test are on loopback with self-signed ones). Prints one
//! JSON object: clients, sessions, commands, seconds, rate.
//!
//! ```text
//! cargo build --release --example imap_load
//! target/release/examples/imap_load HOST PORT [--tls] --users u1,u2 --password pw \
//!     --clients 10 --sessions 20 --iters 25
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use mailroom::smtp::client::tls::Connectors;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    host: String,
    port: u16,
    tls: bool,
    users: Vec<String>,
    password: String,
    clients: usize,
    sessions: usize,
    iters: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let host = it.next().context("HOST")?;
    if !matches!(host.as_str(), "127.0.0.1" | "::1" | "localhost") {
        bail!("refusing a non-loopback target: {host}");
    }
    let port = it.next().context("PORT")?.parse()?;
    let mut a = Args {
        host,
        port,
        tls: false,
        users: vec!["bench@bench.example".into()],
        password: "bench".into(),
        clients: 1,
        sessions: 10,
        iters: 25,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("a value after {flag}"));
        match flag.as_str() {
            "--tls" => a.tls = true,
            "--users" => a.users = value()?.split(',').map(str::to_string).collect(),
            "--password" => a.password = value()?,
            "--clients" => a.clients = value()?.parse()?,
            "--sessions" => a.sessions = value()?.parse()?,
            "--iters" => a.iters = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Stream for T {}

struct Client {
    io: BufReader<Box<dyn Stream>>,
    tag: u64,
    line: Vec<u8>,
    skip: Vec<u8>,
}

impl Client {
    async fn connect(a: &Args, tls: Option<&tokio_rustls::TlsConnector>) -> anyhow::Result<Client> {
        let tcp = TcpStream::connect((a.host.as_str(), a.port)).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match tls {
            Some(c) => Box::new(c.connect(ServerName::try_from("localhost")?, tcp).await?),
            None => Box::new(tcp),
        };
        let mut c =
            Client { io: BufReader::with_capacity(64 * 1024, stream), tag: 0, line: Vec::new(), skip: Vec::new() };
        c.read_line().await?;
        if !c.line.starts_with(b"* OK") {
            bail!("bad greeting {:?}", String::from_utf8_lossy(&c.line));
        }
        Ok(c)
    }

    async fn read_line(&mut self) -> anyhow::Result<()> {
        self.line.clear();
        if self.io.read_until(b'\n', &mut self.line).await? == 0 {
            bail!("connection closed");
        }
        Ok(())
    }

    /// Send one command and read to its tagged reply; the EXISTS count seen meanwhile.
    async fn cmd(&mut self, text: &str) -> anyhow::Result<u32> {
        self.tag += 1;
        let tag = format!("a{} ", self.tag);
        self.io.get_mut().write_all(format!("{tag}{text}\r\n").as_bytes()).await?;
        let mut exists = 0;
        loop {
            self.read_line().await?;
            // A literal {n}: skip its n bytes; the line goes on after them.
            while self.line.ends_with(b"}\r\n") {
                let Some(open) = self.line.iter().rposition(|b| *b == b'{') else { break };
                let n: usize = std::str::from_utf8(&self.line[open + 1..self.line.len() - 3])?.parse()?;
                self.skip.resize(n, 0);
                self.io.read_exact(&mut self.skip).await?;
                self.read_line().await?;
            }
            if self.line.starts_with(tag.as_bytes()) {
                if !self.line[tag.len()..].starts_with(b"OK") {
                    bail!("{text} -> {}", String::from_utf8_lossy(&self.line));
                }
                return Ok(exists);
            }
            if let Some(n) = self.line.strip_prefix(b"* ").and_then(|l| l.strip_suffix(b" EXISTS\r\n")) {
                exists = std::str::from_utf8(n)?.parse()?;
            }
        }
    }
}

async fn session(
    a: &Args,
    tls: Option<&tokio_rustls::TlsConnector>,
    user: &str,
    total: u32,
    rng: &mut StdRng,
) -> anyhow::Result<usize> {
    let mut c = Client::connect(a, tls).await?;
    c.cmd(&format!("LOGIN \"{user}\" \"{}\"", a.password)).await?;
    c.cmd("SELECT INBOX").await?;
    for _ in 0..a.iters {
        let lo = rng.random_range(1..=total.saturating_sub(19).max(1));
        let hi = total.min(lo + 19);
        let one = rng.random_range(1..=total);
        c.cmd(&format!("FETCH {lo}:{hi} (UID FLAGS ENVELOPE)")).await?;
        c.cmd(&format!("FETCH {one} (BODY.PEEK[])")).await?;
        let flag = ["+FLAGS (\\Seen)", "-FLAGS (\\Seen)", "+FLAGS (\\Flagged)"][rng.random_range(0..3)];
        c.cmd(&format!("STORE {} {flag}", rng.random_range(1..=total))).await?;
        c.cmd(["SEARCH UNSEEN", "SEARCH FLAGGED", "SEARCH FROM \"bench\""][rng.random_range(0..3)]).await?;
    }
    c.cmd("LOGOUT").await?;
    Ok(4 * a.iters + 3)
}

async fn run(a: Arc<Args>) -> anyhow::Result<serde_json::Value> {
    // The SMTP client's connector that checks the handshake but not the certificate: the
    // servers under test are on loopback with self-signed ones.
    let tls = if a.tls { Some(Connectors::new(&[])?.unverified) } else { None };
    // Messages per account, from a SELECT before the clock starts.
    let mut totals = Vec::new();
    for user in &a.users {
        let mut c = Client::connect(&a, tls.as_ref()).await?;
        c.cmd(&format!("LOGIN \"{user}\" \"{}\"", a.password)).await?;
        let n = c.cmd("SELECT INBOX").await?;
        c.cmd("LOGOUT").await?;
        if n < 20 {
            bail!("{user} has only {n} messages");
        }
        totals.push(n);
    }
    let queue: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new((0..a.sessions).map(|i| i % a.users.len()).collect()));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for k in 0..a.clients {
        let (a, tls, queue, totals) = (a.clone(), tls.clone(), queue.clone(), totals.clone());
        workers.spawn_local(async move {
            let mut rng = StdRng::seed_from_u64(k as u64);
            let mut commands = 0;
            loop {
                let Some(u) = queue.lock().expect("queue").pop_front() else { break };
                commands += session(&a, tls.as_ref(), &a.users[u], totals[u], &mut rng).await?;
            }
            anyhow::Ok(commands)
        });
    }
    let mut commands = 0;
    while let Some(done) = workers.join_next().await {
        commands += done??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "clients": a.clients, "sessions": a.sessions, "commands": commands,
        "seconds": (secs * 1000.0).round() / 1000.0, "rate": (commands as f64 / secs * 10.0).round() / 10.0,
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(parse_args()?);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out = tokio::task::LocalSet::new().block_on(&rt, run(args))?;
    println!("{out}");
    Ok(())
}
