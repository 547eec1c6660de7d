//! One POP3 connection from greeting to close: reads lines, feeds them to the
//! [`Session`] state machine, and performs the effects it asks for (TLS upgrade, login,
//! message streaming, expunge) against a [`Pop3Backend`].
//!
//! I/O rules held here:
//! - every read waits at most `idle_timeout` (RFC 1939 §3 autologout: at least 10 minutes),
//!   and before login at most what is left of `login_timeout` (counted from the greeting,
//!   so a client trickling bytes cannot stay unauthenticated); every write chunk waits at
//!   most `write_timeout`, the TLS handshake at most [`HANDSHAKE_TIMEOUT`];
//! - replies are queued and flushed only when a further pipelined command is not
//!   complete in the buffer (PIPELINING, RFC 2449 §6.6), so a batch of commands costs one
//!   write, and a command cut in two by the network never holds back the replies before it;
//! - after STLS the plaintext read buffer is dropped, so commands injected before the
//!   handshake never run inside TLS (RFC 2595 §4, the CVE-2011-0411 class of bug);
//! - a failed login is answered only after `auth_failure_delay` (slows password guessing);
//! - only QUIT in TRANSACTION expunges; a dropped connection, an idle timeout or a server
//!   shutdown leaves the maildrop untouched (RFC 1939 §6).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::metrics::{SessionGauge, metrics};
use crate::net::{AuthMechanism, LoginDeadline, LoginOutcome, stall};
use crate::pop3::backend::{BackendError, Pop3Backend};
use crate::pop3::dotstuff::write_message;
use crate::pop3::line::{LineRead, read_line};
use crate::pop3::maildrop::Maildrop;
use crate::pop3::reply::{Reply, RespCode, Status};
use crate::pop3::session::{Session, SessionConfig, Step};

/// Longest TLS handshake we wait for.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Octets of replies queued for a pipelining client before we write regardless.
const MAX_QUEUED_REPLIES: usize = 64 * 1024;

/// Per-connection bounds.
#[derive(Debug, Clone)]
pub struct Pop3Limits {
    /// Silence from the client before we hang up (RFC 1939 §3 asks for at least 10 min).
    pub idle_timeout: Duration,
    /// Failed logins before the connection is closed.
    pub max_bad_logins: u32,
    /// Consecutive invalid commands before the connection is closed.
    pub max_errors: u32,
    /// Pause before answering a failed login.
    pub auth_failure_delay: Duration,
    /// From the greeting to a successful login (`MAILROOM_LOGIN_TIMEOUT`).
    pub login_timeout: Duration,
    /// How long one write may wait for the client to read (`MAILROOM_WRITE_TIMEOUT`);
    /// a RETR is written in chunks, each bounded by it.
    pub write_timeout: Duration,
}

impl Default for Pop3Limits {
    fn default() -> Self {
        Pop3Limits {
            idle_timeout: Duration::from_secs(600),
            max_bad_logins: 3,
            max_errors: 20,
            auth_failure_delay: Duration::from_secs(2),
            login_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(300),
        }
    }
}

/// The settings a connection is served with, borrowed from the owner (`Pop3Context`).
#[derive(Clone, Copy)]
pub struct Endpoint<'a> {
    pub hostname: &'a str,
    pub tls: Option<&'a TlsAcceptor>,
    pub limits: &'a Pop3Limits,
}

/// Serve one accepted connection until QUIT, error, idle timeout or shutdown.
/// `implicit_tls`: port 995, handshake before the greeting (RFC 8314).
pub async fn serve_with<B: Pop3Backend>(
    backend: &B,
    endpoint: Endpoint<'_>,
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    shutdown: watch::Receiver<bool>,
) {
    let session = Session::new(SessionConfig {
        tls_available: endpoint.tls.is_some() && !implicit_tls,
        tls_active: implicit_tls,
        max_bad_logins: endpoint.limits.max_bad_logins,
        max_errors: endpoint.limits.max_errors,
    });
    let login = LoginDeadline::starting_now(endpoint.limits.login_timeout);
    let gauge = SessionGauge::enter("pop3", session.state_label());
    let started = Instant::now();
    let mut driver = Driver { backend, endpoint, peer, shutdown, session, gauge, started, open: None, login };
    let greeting = Session::greeting(endpoint.hostname);
    if implicit_tls {
        let Some(tls) = handshake(endpoint, stream, peer, true).await else {
            return;
        };
        let mut io = Io::new(tls);
        io.queue(&greeting);
        driver.run(&mut io).await;
        io.close().await;
        return;
    }
    let mut io = Io::new(stream);
    io.queue(&greeting);
    if driver.run(&mut io).await == End::StartTls {
        // into_inner drops whatever the client pipelined after STLS in plaintext.
        let stream = io.reader.into_inner();
        let Some(tls) = handshake(endpoint, stream, peer, false).await else {
            return;
        };
        driver.session.tls_started();
        let mut io = Io::new(tls);
        driver.run(&mut io).await;
        io.close().await;
    } else {
        io.close().await;
    }
}

/// TLS handshake, bounded in time; failures are logged and counted per listener
/// (`pop3s` for 995, `pop3` for STLS on 110, as `config::Protocol` names them).
async fn handshake(
    endpoint: Endpoint<'_>,
    stream: TcpStream,
    peer: SocketAddr,
    implicit: bool,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = endpoint.tls?;
    let error = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    tracing::info!(client = %peer, error = %error, "pop3: TLS handshake failed");
    let protocol = if implicit { "pop3s" } else { "pop3" };
    metrics().tls_handshake_failures_total.with_label_values(&[protocol]).inc();
    None
}

/// Buffered reading plus a queue of replies not yet written.
struct Io<S> {
    reader: BufReader<S>,
    out: Vec<u8>,
    /// A write failed or timed out: the client does not read, so no goodbye is tried
    /// (it would only wait for the same full socket again).
    broken: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    fn new(stream: S) -> Io<S> {
        Io { reader: BufReader::new(stream), out: Vec::with_capacity(1024), broken: false }
    }

    fn queue(&mut self, reply: &Reply) {
        self.out.extend_from_slice(&reply.to_bytes());
    }

    async fn flush(&mut self, limit: Duration) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = stall::write_and_flush(self.reader.get_mut(), &self.out, limit).await;
        if result.is_ok() {
            count_sent(self.out.len() as u64);
        }
        self.out.clear();
        self.broken |= result.is_err();
        result
    }

    /// Best-effort goodbye: flush what is queued, then shut the stream down (TLS
    /// close_notify); nothing once a write has failed.
    async fn close(&mut self) {
        if !self.broken && self.flush(Duration::from_secs(10)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.reader.get_mut().shutdown()).await;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    StartTls,
}

/// `mailroom_bytes_sent_total{service="pop3"}`: bytes a write handed to the client.
fn count_sent(bytes: u64) {
    metrics().bytes_sent_total.with_label_values(&["pop3"]).inc_by(bytes);
}

/// The maildrop a logged-in session holds: the mailbox and its exclusive lock.
struct OpenMaildrop<M, L> {
    mailbox: M,
    account: String,
    _lock: L,
}

struct Driver<'a, B: Pop3Backend> {
    backend: &'a B,
    endpoint: Endpoint<'a>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    session: Session,
    /// The connection in `mailroom_sessions`, moved after every command.
    gauge: SessionGauge,
    /// When the command being answered was read (its latency).
    started: Instant,
    open: Option<OpenMaildrop<B::Mailbox, B::Lock>>,
    /// Until a login succeeds, reads wait at most what is left of the time to log in.
    login: LoginDeadline,
}

impl<B: Pop3Backend> Driver<'_, B> {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut Io<S>) -> End {
        let idle = self.endpoint.limits.idle_timeout;
        let stall = self.endpoint.limits.write_timeout;
        let mut line = Vec::with_capacity(256);
        loop {
            // Batch replies while a complete pipelined command is buffered, but never let a
            // client that does not read make us queue without bound. Only a complete line
            // counts: the rest of a partial one may be sent only once the client has read
            // our replies, so waiting for it before flushing would stall both ends.
            let complete_command_buffered = memchr::memchr(b'\n', io.reader.buffer()).is_some();
            let must_flush = !complete_command_buffered || io.out.len() > MAX_QUEUED_REPLIES;
            if must_flush && io.flush(stall).await.is_err() {
                return End::Closed;
            }
            let timeout = if self.open.is_some() { idle } else { self.login.read_timeout(idle) };
            if timeout.is_zero() {
                io.queue(&Reply::err("Login took too long"));
                return End::Closed;
            }
            let limit = self.session.line_limit();
            let read = tokio::select! {
                biased;
                () = crate::net::shutting_down(&mut self.shutdown) => {
                    io.queue(&Reply::err_code(RespCode::SysTemp, "Server shutting down, nothing was deleted"));
                    return End::Closed;
                }
                r = tokio::time::timeout(timeout, read_line(&mut io.reader, limit, &mut line)) => r,
            };
            self.started = Instant::now();
            let step = match read {
                Err(_) if self.open.is_none() && self.login.passed() => {
                    io.queue(&Reply::err("Login took too long"));
                    return End::Closed;
                }
                Err(_) => {
                    io.queue(&Reply::err("Disconnected for inactivity"));
                    return End::Closed;
                }
                Ok(Err(_)) | Ok(Ok(LineRead::Eof)) => return End::Closed,
                Ok(Ok(LineRead::TooLong)) => self.session.line_too_long(),
                Ok(Ok(LineRead::Line)) => self.session.on_line(&line),
            };
            let end = self.perform(step, io).await;
            self.gauge.set(self.session.state_label());
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// Queue the reply to the current command and count it
    /// (`mailroom_pop3_commands_total{command, result}`).
    fn answer<S: AsyncRead + AsyncWrite + Unpin>(&self, io: &mut Io<S>, reply: &Reply) {
        let result = match reply.status {
            Status::Ok => "ok",
            Status::Err => "err",
            Status::Continue => "",
        };
        if !result.is_empty() {
            let (m, command) = (metrics(), self.session.last_command());
            m.pop3_commands_total.with_label_values(&[command, result]).inc();
            m.pop3_command_duration_seconds.with_label_values(&[command]).observe(self.started.elapsed().as_secs_f64());
        }
        io.queue(reply);
    }

    /// Carry out one step; `Some` ends the command loop.
    async fn perform<S: AsyncRead + AsyncWrite + Unpin>(&mut self, step: Step, io: &mut Io<S>) -> Option<End> {
        let stall = self.endpoint.limits.write_timeout;
        match step {
            Step::Reply(reply) => self.answer(io, &reply),
            Step::Close(reply) => {
                self.answer(io, &reply);
                return Some(End::Closed);
            }
            Step::StartTls(reply) => {
                self.answer(io, &reply);
                return Some(if io.flush(stall).await.is_ok() { End::StartTls } else { End::Closed });
            }
            Step::Authenticate { username, password, mechanism } => {
                if io.flush(stall).await.is_err() {
                    return Some(End::Closed);
                }
                match self.login(mechanism, &username, &password).await {
                    Step::Close(reply) => {
                        self.answer(io, &reply);
                        return Some(End::Closed);
                    }
                    Step::Reply(reply) => self.answer(io, &reply),
                    _ => {}
                }
            }
            Step::SendMessage { first_line, uid, top } => {
                let Some(open) = &self.open else {
                    self.answer(io, &Reply::err_code(RespCode::SysTemp, "No mailbox open"));
                    return None;
                };
                match self.backend.open_message(&open.mailbox, uid).await {
                    Ok(mut reader) => {
                        self.answer(io, &first_line);
                        let sent = match io.flush(stall).await {
                            Ok(()) => write_message(&mut reader, io.reader.get_mut(), top, stall).await,
                            Err(e) => Err(e),
                        };
                        if let Ok(bytes) = sent {
                            count_sent(bytes);
                        } else {
                            // Mid-response failure: the client cannot resynchronise.
                            io.broken = true;
                            return Some(End::Closed);
                        }
                    }
                    Err(BackendError::Vanished) => {
                        self.answer(io, &Reply::err("Message was removed by another session"))
                    }
                    Err(e) => {
                        tracing::warn!(client = %self.peer, account = %open.account, uid, error = %e, "pop3: cannot read message");
                        self.answer(io, &Reply::err_code(RespCode::SysTemp, "Cannot read message, try again later"));
                    }
                }
            }
            Step::Update { uids } => {
                let result = match &self.open {
                    _ if uids.is_empty() => Ok(0),
                    Some(open) => match self.backend.expunge(&open.mailbox, &uids).await {
                        Ok(n) => {
                            tracing::info!(client = %self.peer, account = %open.account, deleted = n, "pop3: update");
                            Ok(n)
                        }
                        Err(e) => {
                            tracing::warn!(client = %self.peer, account = %open.account, error = %e, "pop3: expunge failed");
                            Err(())
                        }
                    },
                    None => Err(()),
                };
                if let Step::Close(reply) | Step::Reply(reply) = self.session.update_done(result) {
                    self.answer(io, &reply);
                }
                self.open = None;
                return Some(End::Closed);
            }
        }
        None
    }

    /// Verify, lock, snapshot; returns the step to send (a reply, or a close after too
    /// many failures).
    async fn login(&mut self, mechanism: AuthMechanism, username: &str, password: &str) -> Step {
        let account = match self.backend.authenticate(self.peer.ip(), mechanism, username, password).await {
            LoginOutcome::LoggedIn(account) => account,
            LoginOutcome::Failed => {
                tokio::time::sleep(self.endpoint.limits.auth_failure_delay).await;
                return self.session.login_failed();
            }
            LoginOutcome::Refused(blocked) => return Step::Reply(self.session.login_refused(&blocked)),
            LoginOutcome::Unavailable => {
                return Step::Reply(self.session.login_refused(&"Temporary authentication failure"));
            }
        };
        let lock = match self.backend.lock_maildrop(&account).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::info!(client = %self.peer, account = %account, "pop3: maildrop in use");
                return Step::Reply(self.session.maildrop_in_use());
            }
            Err(e) => {
                tracing::warn!(client = %self.peer, account = %account, error = %e, "pop3: cannot lock the maildrop");
                return Step::Reply(self.session.maildrop_unavailable());
            }
        };
        match self.backend.open_inbox(&account).await {
            Ok((mailbox, entries)) => {
                let reply = self.session.logged_in(Maildrop::new(entries));
                tracing::info!(client = %self.peer, account = %account, "pop3: logged in");
                self.open = Some(OpenMaildrop { mailbox, account: account.to_string(), _lock: lock });
                Step::Reply(reply)
            }
            Err(e) => {
                tracing::warn!(client = %self.peer, account = %account, error = %e, "pop3: cannot open INBOX");
                Step::Reply(self.session.maildrop_unavailable())
            }
        }
    }
}
