//! One ManageSieve connection from greeting to close: reads input, hands it to the
//! [`Session`], performs the effects it asks for (TLS, login, the account's scripts in
//! the store) and writes the answers. All decisions are the session's.
//!
//! I/O rules held here:
//! - every read waits at most `idle_timeout`, and before login at most what is left of
//!   `login_timeout` (counted from the greeting); every write at most `write_timeout`,
//!   the TLS handshake [`HANDSHAKE_TIMEOUT`];
//! - the read buffer is bounded by the parser's bounds (a line, and literals up to the
//!   script size plus slack): input past them ends the connection with BYE;
//! - after STARTTLS the plaintext buffer is dropped, so commands sent before the
//!   handshake never run inside TLS (RFC 5804 2.2, the CVE-2011-0411 class of bug);
//! - a failed login is answered only after `auth_failure_delay`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::reply::Status;
use super::session::{Session, SessionConfig, Step, StoreAnswer, StoreOp};
use crate::accounts::Directory;
use crate::metrics::{SessionGauge, metrics};
use crate::net::{LoginDeadline, LoginOutcome, stall};
use crate::sieve::vacation_settings::VACATION_SCRIPT;
use crate::store::{MailboxOwner, Store, StoreError};

/// Longest TLS handshake we wait for.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `net/` sends a client refused by the connection limits before closing.
pub const BUSY_REPLY: &[u8] = b"BYE (TRYLATER) \"Too many connections, try again later\"\r\n";

/// Per-connection bounds.
#[derive(Clone, Debug)]
pub struct ManageSieveLimits {
    /// Silence from the client before we hang up.
    pub idle_timeout: Duration,
    /// Largest script (`MAILROOM_SIEVE_MAX_SCRIPT_SIZE`).
    pub max_script_size: u64,
    /// Most scripts per account (`MAILROOM_SIEVE_MAX_SCRIPTS`).
    pub max_scripts: usize,
    /// Bad commands in a row before BYE.
    pub max_errors: u32,
    /// Failed logins before BYE.
    pub max_bad_logins: u32,
    /// Pause before answering a failed login.
    pub auth_failure_delay: Duration,
    /// From the greeting to a successful login (`MAILROOM_LOGIN_TIMEOUT`).
    pub login_timeout: Duration,
    /// How long one write may wait for the client to read (`MAILROOM_WRITE_TIMEOUT`).
    pub write_timeout: Duration,
}

impl Default for ManageSieveLimits {
    fn default() -> Self {
        ManageSieveLimits {
            idle_timeout: Duration::from_secs(600),
            max_script_size: 64 * 1024,
            max_scripts: 16,
            max_errors: 10,
            max_bad_logins: 3,
            auth_failure_delay: Duration::from_secs(2),
            login_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(300),
        }
    }
}

/// Said before closing a connection that did not log in within `login_timeout`.
const LOGIN_TOO_SLOW: &[u8] = b"BYE \"Login took too long\"\r\n";

/// Redirects a script run may make (the `MAXREDIRECTS` capability).
pub const MAX_REDIRECTS: u32 = 4;

/// Everything a ManageSieve connection needs; built once by `app.rs`.
pub struct ManageSieveContext {
    pub directory: Arc<Directory>,
    pub store: Store,
    /// `None` only when no certificate exists: then nobody can log in (no AUTH without TLS).
    pub tls: Option<TlsAcceptor>,
    /// The login limiter shared with SMTP AUTH, IMAP and POP3.
    pub limiter: Arc<crate::net::Limiter>,
    pub limits: ManageSieveLimits,
}

/// Serve one accepted connection until LOGOUT, error, idle timeout or shutdown.
pub async fn serve_connection(
    ctx: Arc<ManageSieveContext>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let limits = &ctx.limits;
    let session = Session::new(SessionConfig {
        tls_available: ctx.tls.is_some(),
        tls_active: false,
        max_script_size: limits.max_script_size,
        max_scripts: limits.max_scripts,
        max_redirects: MAX_REDIRECTS,
        max_errors: limits.max_errors,
        max_bad_logins: limits.max_bad_logins,
    });
    let login = LoginDeadline::starting_now(limits.login_timeout);
    let gauge = SessionGauge::enter("managesieve", "not_authenticated");
    let started = Instant::now();
    let mut driver = Driver { ctx: &ctx, peer, shutdown, session, gauge, started, owner: None, login };
    let mut io = Io::new(stream);
    io.out.extend(driver.session.greeting());
    if driver.run(&mut io).await != End::StartTls {
        io.close(limits.write_timeout).await;
        return;
    }
    // Whatever the client sent after STARTTLS in plaintext is dropped with `io`.
    let Some(acceptor) = ctx.tls.as_ref() else { return };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io.stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return handshake_failed(peer, &e.to_string()),
        Err(_) => return handshake_failed(peer, "timed out"),
    };
    let mut io = Io::new(tls);
    io.out.extend(driver.session.tls_started());
    driver.run(&mut io).await;
    io.close(limits.write_timeout).await;
}

fn handshake_failed(peer: SocketAddr, error: &str) {
    tracing::info!(client = %peer, error, "managesieve: TLS handshake failed");
    metrics().tls_handshake_failures_total.with_label_values(&["managesieve"]).inc();
}

/// The stream, what was read and not yet parsed, and what is to be written.
struct Io<S> {
    stream: S,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    fn new(stream: S) -> Io<S> {
        Io { stream, buf: Vec::with_capacity(4096), out: Vec::with_capacity(1024) }
    }

    async fn flush(&mut self, limit: Duration) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = stall::write_and_flush(&mut self.stream, &self.out, limit).await;
        if result.is_ok() {
            metrics().bytes_sent_total.with_label_values(&["managesieve"]).inc_by(self.out.len() as u64);
        }
        self.out.clear();
        result
    }

    /// Best-effort goodbye: flush, then shut the stream down (TLS close_notify).
    async fn close(&mut self, stall: Duration) {
        if self.flush(stall.min(Duration::from_secs(10))).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.stream.shutdown()).await;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    StartTls,
}

struct Driver<'a> {
    ctx: &'a ManageSieveContext,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    session: Session,
    /// The connection in `mailroom_sessions`, moved after every command.
    gauge: SessionGauge,
    /// When the command being answered was read (its latency).
    started: Instant,
    /// The logged-in account.
    owner: Option<MailboxOwner>,
    /// Until a login succeeds, reads wait at most what is left of the time to log in.
    login: LoginDeadline,
}

impl Driver<'_> {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut Io<S>) -> End {
        let idle = self.ctx.limits.idle_timeout;
        let stall = self.ctx.limits.write_timeout;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            while let Some((used, step)) = self.session.on_input(&io.buf) {
                io.buf.drain(..used.min(io.buf.len()));
                self.started = Instant::now();
                let end = self.perform(step, io).await;
                self.gauge.set(if self.session.is_authenticated() { "authenticated" } else { "not_authenticated" });
                if let Some(end) = end {
                    return end;
                }
            }
            if io.flush(stall).await.is_err() {
                return End::Closed;
            }
            let logged_in = self.session.is_authenticated();
            let timeout = if logged_in { idle } else { self.login.read_timeout(idle) };
            if timeout.is_zero() {
                io.out.extend_from_slice(LOGIN_TOO_SLOW);
                return End::Closed;
            }
            let read = tokio::select! {
                biased;
                () = crate::net::shutting_down(&mut self.shutdown) => {
                    io.out.extend_from_slice(b"BYE (TRYLATER) \"Server shutting down\"\r\n");
                    return End::Closed;
                }
                r = tokio::time::timeout(timeout, io.stream.read(&mut chunk)) => r,
            };
            match read {
                Err(_) if !logged_in && self.login.passed() => {
                    io.out.extend_from_slice(LOGIN_TOO_SLOW);
                    return End::Closed;
                }
                Err(_) => {
                    io.out.extend_from_slice(b"BYE \"Disconnected for inactivity\"\r\n");
                    return End::Closed;
                }
                Ok(Err(_)) | Ok(Ok(0)) => return End::Closed,
                Ok(Ok(n)) => io.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Carry out one step and the steps it leads to; `Some` ends the command loop.
    async fn perform<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut step: Step, io: &mut Io<S>) -> Option<End> {
        loop {
            step = match step {
                Step::Send(bytes) => {
                    self.count();
                    io.out.extend(bytes);
                    if !self.session.is_authenticated() {
                        self.owner = None;
                    }
                    return None;
                }
                Step::Close(bytes) => {
                    self.count();
                    io.out.extend(bytes);
                    return Some(End::Closed);
                }
                Step::StartTls(bytes) => {
                    self.count();
                    io.out.extend(bytes);
                    let ok = io.flush(self.ctx.limits.write_timeout).await.is_ok();
                    return Some(if ok { End::StartTls } else { End::Closed });
                }
                Step::Login { username, password } => {
                    let ctx = self.ctx;
                    let ip = self.peer.ip();
                    let outcome = crate::net::verify_login(
                        &ctx.limiter,
                        &ctx.directory,
                        &ctx.store,
                        crate::net::LoginVia::new("managesieve", crate::net::AuthMechanism::Plain),
                        ip,
                        &username,
                        &password,
                    )
                    .await;
                    match &outcome {
                        LoginOutcome::LoggedIn(a) => {
                            self.owner = Some(MailboxOwner::new(a.local.clone(), a.domain.clone()));
                        }
                        LoginOutcome::Failed => tokio::time::sleep(ctx.limits.auth_failure_delay).await,
                        LoginOutcome::Refused(_) | LoginOutcome::Unavailable => {}
                    }
                    self.session.login_done(&outcome)
                }
                Step::Store(op) => {
                    let result = match &self.owner {
                        Some(owner) => run_op(&self.ctx.store, owner, op).await,
                        None => Err(StoreError::InvalidAccount("not logged in".into())),
                    };
                    if let (Err(e), Some(owner)) = (&result, &self.owner)
                        && e.is_temporary()
                    {
                        tracing::warn!(client = %self.peer, account = %owner, error = %e, "managesieve: store failure");
                    }
                    self.session.store_done(result)
                }
            };
        }
    }

    /// `mailroom_managesieve_commands_total{command, result}` once a command is answered.
    fn count(&mut self) {
        let result = match self.session.take_status() {
            Some(Status::Ok) => "ok",
            Some(Status::No) => "no",
            Some(Status::Bye) => "bye",
            None => return,
        };
        let (m, command) = (metrics(), self.session.last_command());
        m.managesieve_commands_total.with_label_values(&[command, result]).inc();
        let seconds = self.started.elapsed().as_secs_f64();
        m.managesieve_command_duration_seconds.with_label_values(&[command]).observe(seconds);
    }
}

/// One store operation for the session.
async fn run_op(store: &Store, owner: &MailboxOwner, op: StoreOp) -> Result<StoreAnswer, StoreError> {
    Ok(match op {
        // Without the account pages' vacation script: not the user's to list, and not
        // counted against the user's script quota.
        StoreOp::List => StoreAnswer::List(
            store.sieve_list(owner).await?.into_iter().filter(|s| s.name != VACATION_SCRIPT).collect(),
        ),
        StoreOp::Get(name) => StoreAnswer::Script(store.sieve_get(owner, &name).await?),
        StoreOp::Put { name, content } => {
            store.sieve_put(owner, &name, &content).await?;
            StoreAnswer::Done
        }
        StoreOp::Delete(name) => {
            store.sieve_delete(owner, &name).await?;
            StoreAnswer::Done
        }
        StoreOp::Rename { old, new } => {
            store.sieve_rename(owner, &old, &new).await?;
            StoreAnswer::Done
        }
        StoreOp::SetActive(name) => {
            store.sieve_set_active(owner, name.as_deref()).await?;
            StoreAnswer::Done
        }
    })
}
