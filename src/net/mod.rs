//! Listeners and connections: binding, the accept loop, connection limits, PROXY
//! protocol, and graceful shutdown. Protocol code never touches a listening socket;
//! it receives a [`Connection`] and a shutdown signal.
//!
//! The shape is mini-redis's `Listener`: accept in a loop with backoff on errors,
//! take a limiter slot, spawn one task per connection, and let every task watch the
//! shutdown signal. Tasks are tracked so that shutdown can wait for them to drain.

mod limits;
mod listener;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::Protocol;
use crate::metrics::metrics;

pub use limits::{ConnectionLimiter, ConnectionPermit, Refusal};
pub use listener::{BindError, BoundListener, bind};

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
}

/// Accept connections on `bound` until shutdown, handing each to `service`.
pub async fn serve(bound: BoundListener, service: Service, ctx: AcceptContext) {
    let protocol = bound.protocol;
    let label = [protocol.name()];
    let mut stop = ctx.shutdown.signal();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = bound.listener.accept() => r,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(10);
                x
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
        let permit = match ctx.limiter.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(refusal) => {
                metrics().connections_refused_total.with_label_values(&[protocol.name(), refusal.reason()]).inc();
                tracing::info!(protocol = protocol.name(), client = %peer.ip(), reason = refusal.reason(), "connection refused by limits");
                let busy = service.busy_reply;
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(busy)).await;
                    let _ = stream.shutdown().await;
                });
                continue;
            }
        };
        metrics().connections_total.with_label_values(&label).inc();
        let local = bound.local_addr;
        let connection = Connection { stream, peer, local, protocol, shutdown: ctx.shutdown.signal(), permit };
        let handler = service.handler.clone();
        ctx.shutdown.spawn(async move {
            let active = metrics().connections_active.with_label_values(&[protocol.name()]);
            active.inc();
            handler(connection).await;
            active.dec();
        });
    }
    tracing::debug!(protocol = protocol.name(), addr = %bound.local_addr, "listener closed");
}
