//! Listeners and connections: binding, the accept loop, connection limits, PROXY
//! protocol, and graceful shutdown. Protocol code never touches a listening socket;
//! it receives a [`Connection`] and a shutdown signal.
//!
//! The shape is mini-redis's `Listener`: accept in a loop with backoff on errors,
//! take a limiter slot, spawn one task per connection, and let every task watch the
//! shutdown signal. Tasks are tracked so that shutdown can wait for them to drain.

mod limits;
mod listener;
pub mod login;
mod login_deadline;
pub mod memory;
pub mod proxy;
pub mod ratelimit;
#[cfg(test)]
mod serve_tests;
pub mod stall;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::Protocol;
use crate::metrics::metrics;

pub use limits::{ConnectionLimiter, ConnectionPermit, Refusal};
pub use listener::{BindError, BoundListener, bind};
pub use login::{AuthMechanism, LoginOutcome, LoginVia, verify_login, verify_web_login};
pub use login_deadline::LoginDeadline;
pub use memory::{MemoryPermit, MessageMemory};
pub use ratelimit::{Admission, BlockScope, Blocked, Limiter, LimiterConfig, LoginAttempt};

/// Tells every task that the server is stopping, and lets the stopper wait for
/// them. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
    tracker: TaskTracker,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { sender: Arc::new(watch::channel(false).0), tracker: TaskTracker::new() }
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A receiver that turns `true` when shutdown begins. Sessions select on
    /// `changed()` and finish the current command, then say goodbye.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.sender.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.sender.borrow()
    }

    /// Run `fut` as a tracked task: shutdown waits for it.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Start shutting down: signal every task, stop tracking new ones.
    pub fn begin(&self) {
        self.sender.send_replace(true);
        self.tracker.close();
    }

    /// Wait until every tracked task has finished, or `grace` has passed. Returns
    /// the number of tasks still running at the deadline.
    pub async fn drain(&self, grace: Duration) -> usize {
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tracker.len(),
        }
    }
}

/// One accepted connection, handed to a protocol's handler.
pub struct Connection {
    pub stream: TcpStream,
    /// The client: the TCP peer, or the address a trusted PROXY header named.
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub protocol: Protocol,
    pub shutdown: watch::Receiver<bool>,
    /// Releases the connection's limiter slots when the connection ends.
    pub permit: ConnectionPermit,
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a protocol plugs into a listener.
#[derive(Clone)]
pub struct Service {
    pub handler: Arc<dyn Fn(Connection) -> BoxFuture + Send + Sync>,
    /// Sent to a client refused by the connection limits before closing, in the
    /// protocol's own words (`421 4.7.0 …` for SMTP, `* BYE …` for IMAP).
    pub busy_reply: &'static [u8],
}

/// Shared by every accept loop.
#[derive(Clone)]
pub struct AcceptContext {
    pub limiter: Arc<ConnectionLimiter>,
    pub shutdown: Shutdown,
    /// Peers that must (and alone may) send a PROXY protocol header
    /// (`MAILROOM_PROXY_PROTOCOL_FROM`).
    pub proxy_from: Arc<Vec<IpNet>>,
    /// New connections per minute per client (`MAILROOM_CONNECTIONS_PER_MINUTE`); not
    /// applied to the metrics port, which monitoring polls. Only the limiter's trusted
    /// networks are exempt, never loopback as such: a proxy or webmail on the same host
    /// would otherwise exempt every client behind it.
    pub rate: Option<Arc<Limiter>>,
}

/// Resolves once shutdown is signalled; never if the sender is gone without signalling.
pub async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The one spelling of a client address that every consumer sees. A dual-stack `[::]`
/// listener (the default `:port`) reports IPv4 clients as `::ffff:a.b.c.d`, and so may a
/// PROXY header from a dual-stack balancer; relay policy, `MAILROOM_TRUSTED_NETWORKS`
/// IPv4 CIDRs, per-IP limits, SPF `ip4:`, DNSBL reversed-octet lookups, the `Received`
/// and `Authentication-Results` headers and the logs all need the IPv4 form. Applied
/// exactly where an address enters the server: accept and the PROXY header.
pub fn canonical_peer(addr: SocketAddr) -> SocketAddr {
    match addr {
        // Only the mapped form: a real IPv6 peer keeps its scope id (link-local clients).
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().map_or(addr, |v4| SocketAddr::new(v4.into(), v6.port())),
        SocketAddr::V4(_) => addr,
    }
}

/// How long a load balancer has to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Read exactly one PROXY header from `stream` (never a byte more: what follows
/// belongs to the protocol, e.g. a TLS ClientHello) and return the client address it
/// names, or the balancer's own address for `LOCAL`/`UNKNOWN` headers.
async fn read_proxy_header(stream: &mut TcpStream, balancer: SocketAddr) -> Result<SocketAddr, String> {
    let mut buf = Vec::with_capacity(128);
    loop {
        // v1 ends at CRLF, so it is read a byte at a time; v2 announces its length
        // in the 16-byte fixed part, after which the rest is read in one go.
        let want = if buf.len() >= proxy::V2_FIXED_LEN && buf.starts_with(proxy::V2_SIGNATURE) {
            let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
            (proxy::V2_FIXED_LEN + len).saturating_sub(buf.len()).max(1)
        } else {
            1
        };
        let start = buf.len();
        buf.resize(start + want, 0);
        stream
            .read_exact(&mut buf[start..])
            .await
            .map_err(|e| format!("connection ended inside the PROXY header: {e}"))?;
        match proxy::parse_proxy_header(&buf) {
            proxy::ProxyParse::Incomplete if buf.len() < proxy::MAX_HEADER_LEN => continue,
            proxy::ProxyParse::Incomplete => return Err("PROXY header too long".into()),
            proxy::ProxyParse::Invalid(e) => return Err(format!("invalid PROXY header: {e}")),
            proxy::ProxyParse::Done { source, .. } => return Ok(source.map_or(balancer, canonical_peer)),
        }
    }
}

/// Accept connections on `bound` until shutdown, handing each to `service`.
pub async fn serve(bound: BoundListener, service: Service, ctx: AcceptContext) {
    let protocol = bound.protocol;
    let mut stop = ctx.shutdown.signal();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = bound.listener.accept() => r,
        };
        let (mut stream, peer) = match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                (stream, canonical_peer(peer))
            }
            Err(e) => {
                // EMFILE and friends: wait a bit instead of spinning.
                tracing::warn!(protocol = protocol.name(), error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = bound.local_addr;
        let service = service.clone();
        let ctx = ctx.clone();
        // Handled off the accept loop: a slow balancer must not stall accepting.
        tokio::spawn(async move {
            let client = if ctx.proxy_from.iter().any(|net| net.contains(&peer.ip())) {
                match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_header(&mut stream, peer)).await {
                    Ok(Ok(client)) => client,
                    Ok(Err(reason)) => return refuse(stream, protocol, peer, "proxy_header", &reason, b"").await,
                    Err(_) => {
                        return refuse(stream, protocol, peer, "proxy_header", "no PROXY header in time", b"").await;
                    }
                }
            } else {
                peer
            };
            let rated = ctx.rate.as_ref().filter(|_| protocol != Protocol::Metrics);
            if rated.is_some_and(|r| !r.allow_connection(client.ip())) {
                let why = "connection rate limit reached";
                return refuse(stream, protocol, client, "rate_limit", why, service.busy_reply).await;
            }
            let permit = match ctx.limiter.try_acquire(client.ip()) {
                Ok(p) => p,
                Err(refusal) => {
                    let why = "connection limit reached";
                    return refuse(stream, protocol, client, refusal.reason(), why, service.busy_reply).await;
                }
            };
            metrics().connections_total.with_label_values(&[protocol.name()]).inc();
            tracing::debug!(protocol = protocol.name(), client = %client, "connection accepted");
            let connection =
                Connection { stream, peer: client, local, protocol, shutdown: ctx.shutdown.signal(), permit };
            let handler = service.handler.clone();
            // Not awaited: this task ends here rather than sit beside the session for
            // its whole life (a second task and its state per idle connection).
            ctx.shutdown.spawn(async move {
                let active = metrics().connections_active.with_label_values(&[protocol.name()]);
                active.inc();
                handler(connection).await;
                active.dec();
            });
        });
    }
    tracing::debug!(protocol = protocol.name(), addr = %bound.local_addr, "listener closed");
}

/// Log and count a refused connection, send the protocol's busy line if any, close.
async fn refuse(
    mut stream: TcpStream,
    protocol: Protocol,
    client: SocketAddr,
    reason: &str,
    detail: &str,
    reply: &[u8],
) {
    metrics().connections_refused_total.with_label_values(&[protocol.name(), reason]).inc();
    tracing::info!(protocol = protocol.name(), client = %client, reason, detail, "connection refused");
    if !reply.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply)).await;
    }
    let _ = stream.shutdown().await;
}
