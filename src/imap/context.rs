//! What every IMAP connection shares: the server's context (host name, accounts, store,
//! TLS, login limiter, per-user connection counts) and the bounds of one connection. Kept
//! apart from the session so the state machine reads as protocol, not configuration.

use std::sync::Arc;
use std::time::Duration;

use super::user_limit::UserConnections;
use crate::accounts;
use crate::store;

/// Bounds of one connection (architecture.md: every input a bound, every wait a timeout).
#[derive(Debug, Clone)]
pub struct ImapLimits {
    /// Largest literal (and APPEND message); advertised as APPENDLIMIT.
    pub max_literal: u64,
    /// Longest command text excluding literals.
    pub max_line: usize,
    /// Autologout after this long without a command, also in IDLE (RFC 9051 5.4: at least
    /// 30 minutes for authenticated clients).
    pub idle_timeout: Duration,
    /// Shorter timeout before login, so unauthenticated sockets cannot pile up.
    pub login_timeout: Duration,
    /// From the greeting to a successful login, however the client trickles bytes
    /// (`MAILROOM_LOGIN_TIMEOUT`).
    pub login_deadline: Duration,
    /// How long one write may wait for the client to read (`MAILROOM_WRITE_TIMEOUT`);
    /// long responses are sent in bounded chunks, each within it.
    pub write_timeout: Duration,
    /// Failed LOGIN/AUTHENTICATE attempts before BYE.
    pub max_bad_logins: u32,
    /// Pause after each failed login (slows password guessing).
    pub auth_failure_delay: Duration,
    /// Consecutive BAD commands before BYE (a client speaking something else).
    pub max_bad_commands: u32,
    /// Logged-in connections one user may hold from one IP address.
    pub max_connections_per_user_ip: u32,
    /// Explicit opt-in: allow LOGIN/AUTHENTICATE without TLS. Off by default (secure by
    /// default: LOGINDISABLED before STARTTLS); meant for tests and TLS-terminating proxies.
    pub allow_insecure_auth: bool,
}

impl Default for ImapLimits {
    fn default() -> Self {
        ImapLimits {
            max_literal: 25 * 1024 * 1024,
            max_line: 64 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(60),
            login_deadline: Duration::from_secs(120),
            write_timeout: Duration::from_secs(300),
            max_bad_logins: 3,
            auth_failure_delay: Duration::from_secs(1),
            max_bad_commands: 20,
            max_connections_per_user_ip: 20,
            allow_insecure_auth: false,
        }
    }
}

/// Bound on one command before login, for its text and for its literals each: enough for
/// LOGIN, AUTHENTICATE and ID, far too little to pin memory with idle sockets (an
/// unauthenticated client announcing 25 MiB literals on 60 sockets took 1.5 GB).
pub const PRE_AUTH_COMMAND_MAX: usize = 8 * 1024;
/// Literal bytes of one command other than APPEND once logged in (SEARCH with literals,
/// long mailbox names); only APPEND carries messages and may go up to the APPENDLIMIT.
pub const COMMAND_LITERAL_MAX: u64 = 64 * 1024;
/// APPEND literal bytes one command keeps in memory; bigger messages stream to a spool
/// file as they arrive, so ten 20 MiB uploads do not need 200 MiB of RAM.
pub const APPEND_IN_MEMORY_MAX: u64 = 64 * 1024;

/// Everything a session needs from the server, shared by all connections.
pub struct ImapContext {
    pub hostname: String,
    pub directory: Arc<accounts::Directory>,
    pub store: store::Store,
    /// Where big APPEND literals stream while they arrive (`datadir::spool_dir`).
    pub spool_dir: std::path::PathBuf,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limits: ImapLimits,
    /// Logged-in connections per (user, IP), bounded by `limits.max_connections_per_user_ip`.
    pub user_connections: UserConnections,
    /// The login limiter shared with SMTP AUTH and POP3: delays and blocks guessing.
    pub limiter: Arc<crate::net::Limiter>,
    /// The server-wide budget for messages held whole in memory (FETCH BODYSTRUCTURE, and
    /// body parts of messages too small or too odd to stream from the file).
    pub memory: crate::net::MessageMemory,
    /// ENVELOPEs rendered before, for every session's next FETCH of the same message.
    pub envelopes: crate::imap::cmd::fetch::EnvelopeCache,
}

impl ImapContext {
    pub fn new(
        hostname: String,
        directory: Arc<accounts::Directory>,
        store: store::Store,
        spool_dir: std::path::PathBuf,
        tls: Option<tokio_rustls::TlsAcceptor>,
        limits: ImapLimits,
    ) -> ImapContext {
        let limiter = Arc::new(crate::net::Limiter::new(crate::net::LimiterConfig::default(), Vec::new()));
        ImapContext {
            hostname,
            directory,
            store,
            spool_dir,
            tls,
            limits,
            user_connections: UserConnections::default(),
            limiter,
            memory: crate::net::MessageMemory::default(),
            envelopes: Default::default(),
        }
    }

    /// Share the server-wide login limiter instead of a private one.
    pub fn with_limiter(mut self, limiter: Arc<crate::net::Limiter>) -> ImapContext {
        self.limiter = limiter;
        self
    }

    /// Share the server-wide message memory budget instead of a private one.
    pub fn with_memory(mut self, memory: crate::net::MessageMemory) -> ImapContext {
        self.memory = memory;
        self
    }
}
