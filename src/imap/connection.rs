//! The transport of one IMAP connection: the byte stream (plain, TLS, or an in-memory pipe
//! in tests), the read buffer, sending an `Output` (with the literals it streams from
//! files), literal data streamed to a spool file, the STARTTLS upgrade, and every wait
//! bounded by a timeout. It knows nothing of IMAP commands or state: the session decides,
//! the driver (`imap::driver`) tells the connection what to move, the connection moves
//! bytes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

use super::output::{Output, StreamedLiteral};
use crate::net::stall;
use crate::smtp::deliver::{Spool, SpooledMessage};
use crate::store::MailboxEvent;

/// Any byte stream we can speak IMAP over (plain TCP, TLS, a test duplex).
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// Box the stream so STARTTLS can replace it with its TLS wrapper.
pub(crate) type BoxedStream = Box<dyn ByteStream>;

/// Initial size of the read buffer: small, because most connections idle.
const IDLE_BUFFER: usize = 1024;
/// Room made before a read once the buffer is nearly full (bulk uploads read in big chunks).
const READ_CHUNK: usize = 16 * 1024;
/// A read buffer grown past this by one large command is replaced once it is empty.
const IDLE_BUFFER_MAX: usize = 64 * 1024;

/// Why `read_more` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
    Shutdown,
}

/// Why an IDLE wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleWake {
    /// Input arrived (perhaps DONE).
    Input,
    /// The selected mailbox changed: time to sync and send the updates.
    MailboxChanged,
    Eof,
    TimedOut,
    Shutdown,
}

/// What ended a read that also waits for an event.
enum Read {
    Outcome(ReadOutcome),
    Event,
}

/// How streaming a literal into a spool file ended.
pub(crate) enum Spooled {
    /// All of it read: the spooled content (or the spool's write error, reported to the
    /// client once the command is complete) and whether it had a NUL.
    Done(std::io::Result<SpooledMessage>, bool),
    /// The input ended, timed out or the server is shutting down before the literal did.
    Ended(ReadOutcome),
}

pub(crate) struct Connection {
    stream: Option<BoxedStream>,
    rbuf: BytesMut,
    peer: SocketAddr,
    /// How long a client may take to accept what we send.
    write_timeout: Duration,
    shutdown: watch::Receiver<bool>,
    /// `mailroom_bytes_sent_total{service="imap"}`, counted as each write completes.
    sent: prometheus::IntCounter,
}

/// Bytes read from a message file at a time.
const WRITE_CHUNK: usize = 64 * 1024;

impl Connection {
    pub fn new(
        stream: BoxedStream,
        peer: SocketAddr,
        write_timeout: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Connection {
        let sent = crate::metrics::metrics().bytes_sent_total.with_label_values(&["imap"]);
        Connection {
            stream: Some(stream),
            rbuf: BytesMut::with_capacity(IDLE_BUFFER),
            peer,
            write_timeout,
            shutdown,
            sent,
        }
    }

    /// Input read and not yet taken.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Take the first `len` buffered bytes.
    pub fn take(&mut self, len: usize) -> BytesMut {
        self.rbuf.split_to(len)
    }

    /// Drop up to `len` buffered bytes (a refused literal).
    pub fn discard(&mut self, len: usize) {
        self.rbuf.advance(len.min(self.rbuf.len()));
    }

    /// Give back memory a big APPEND left behind: idle connections stay small.
    pub fn shrink_if_idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > IDLE_BUFFER_MAX {
            self.rbuf = BytesMut::with_capacity(IDLE_BUFFER);
        }
    }

    fn reserve(&mut self) {
        if self.rbuf.capacity() - self.rbuf.len() < IDLE_BUFFER / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
    }

    /// Read at least one byte within `timeout`, or report why not.
    pub async fn read_more(&mut self, timeout: Duration) -> std::io::Result<ReadOutcome> {
        Ok(match self.read_or(timeout, std::future::pending::<()>()).await? {
            Read::Outcome(o) => o,
            // Cannot happen: the event never completes.
            Read::Event => ReadOutcome::Shutdown,
        })
    }

    /// Read at least one byte within `timeout` unless `event` completes first.
    async fn read_or(&mut self, timeout: Duration, event: impl Future<Output = ()>) -> std::io::Result<Read> {
        self.reserve();
        let Some(stream) = self.stream.as_mut() else {
            return Ok(Read::Outcome(ReadOutcome::Eof));
        };
        if *self.shutdown.borrow() {
            return Ok(Read::Outcome(ReadOutcome::Shutdown));
        }
        if timeout.is_zero() {
            // The time to log in is up: even a byte waiting now must not extend it.
            return Ok(Read::Outcome(ReadOutcome::TimedOut));
        }
        tokio::select! {
            r = tokio::time::timeout(timeout, stream.read_buf(&mut self.rbuf)) => match r {
                Err(_) => Ok(Read::Outcome(ReadOutcome::TimedOut)),
                Ok(Ok(0)) => Ok(Read::Outcome(ReadOutcome::Eof)),
                Ok(Ok(_)) => Ok(Read::Outcome(ReadOutcome::Data)),
                Ok(Err(e)) => Err(e),
            },
            _ = event => Ok(Read::Event),
            _ = self.shutdown.changed() => Ok(Read::Outcome(ReadOutcome::Shutdown)),
        }
    }

    /// Read one line (AUTHENTICATE response), bounded by `max_line`. `None` on
    /// EOF/timeout/shutdown or an overlong line (the caller ends the session).
    pub async fn read_line(&mut self, max_line: usize, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.take_buffered_line() {
                return Ok(Some(line));
            }
            if self.rbuf.len() > max_line {
                return Ok(None);
            }
            match self.read_more(timeout).await? {
                ReadOutcome::Data => {}
                _ => return Ok(None),
            }
        }
    }

    /// One complete line already in the read buffer (IDLE's DONE), without reading.
    pub fn take_buffered_line(&mut self) -> Option<Vec<u8>> {
        let pos = memchr::memchr(b'\n', &self.rbuf)?;
        let line = self.rbuf.split_to(pos + 1);
        let mut v = line[..pos].to_vec();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
        Some(v)
    }

    /// Wait in IDLE for input, a change of the selected mailbox (`events`), timeout or
    /// shutdown.
    pub async fn idle_wait(
        &mut self,
        events: Option<&mut broadcast::Receiver<MailboxEvent>>,
        max_line: usize,
        timeout: Duration,
    ) -> std::io::Result<IdleWake> {
        if self.rbuf.len() > max_line {
            return Ok(IdleWake::Eof);
        }
        let changed = async move {
            match events {
                // Lagged or a real event: either way, time to sync.
                Some(rx) => {
                    if let Err(broadcast::error::RecvError::Closed) = rx.recv().await {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        Ok(match self.read_or(timeout, changed).await? {
            Read::Event => IdleWake::MailboxChanged,
            Read::Outcome(ReadOutcome::Data) => IdleWake::Input,
            Read::Outcome(ReadOutcome::Eof) => IdleWake::Eof,
            Read::Outcome(ReadOutcome::TimedOut) => IdleWake::TimedOut,
            Read::Outcome(ReadOutcome::Shutdown) => IdleWake::Shutdown,
        })
    }

    /// Send everything in `out`, streaming its literals from their readers; each write
    /// bounded by the write timeout. Once the stream is closed, output is dropped.
    pub async fn send(&mut self, out: &mut Output) -> std::io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let (head, literals) = out.take();
        self.write_all(&head).await?;
        for (literal, after) in literals {
            self.copy_literal(literal).await?;
            self.write_all(&after).await?;
        }
        Ok(())
    }

    /// Write and flush `bytes`, failing only when the client takes nothing for the write
    /// timeout: a message rendered in memory (FETCH of BODY[] with BODYSTRUCTURE) goes to
    /// a slow reader as surely as a streamed one.
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        if bytes.is_empty() {
            return Ok(());
        }
        stall::write_and_flush(stream, bytes, self.write_timeout).await?;
        self.sent.inc_by(bytes.len() as u64);
        Ok(())
    }

    /// Exactly `size` bytes copied from the reader (FETCH BODY[] of a large message without
    /// holding it in memory). Should the file come up short, the literal is padded with
    /// spaces so the client stays in step with the protocol.
    ///
    /// The write timeout bounds the time the client takes no bytes, not the whole
    /// literal: a client reading a 20 MiB message slowly but steadily gets all of it, one
    /// that stops reading is cut off within the timeout, and either way at most one chunk
    /// is held for it.
    async fn copy_literal(&mut self, literal: StreamedLiteral) -> std::io::Result<()> {
        let StreamedLiteral { reader, size } = literal;
        let limit = self.write_timeout;
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut limited = reader.take(size);
        // No bigger than the literal: most messages are a few KiB, and the buffer is zeroed.
        let mut chunk = vec![0u8; usize::try_from(size).unwrap_or(WRITE_CHUNK).clamp(1, WRITE_CHUNK)];
        let mut copied = 0u64;
        loop {
            let n = stall::within(limit, limited.read(&mut chunk)).await?;
            if n == 0 {
                break;
            }
            stall::write_all(stream, &chunk[..n], limit).await?;
            self.sent.inc_by(n as u64);
            copied += n as u64;
        }
        if copied < size {
            tracing::warn!(peer = %self.peer, expected = size, copied, "message file shorter than its index size");
            chunk.fill(b' ');
            let mut left = size - copied;
            while left > 0 {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                stall::write_all(stream, &chunk[..n], limit).await?;
                self.sent.inc_by(n as u64);
                left -= n as u64;
            }
        }
        stall::within(limit, stream.flush()).await
    }

    /// Close the stream (after a BYE); later output is dropped.
    pub async fn close(&mut self) {
        if let Some(mut s) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.shutdown()).await;
        }
    }

    /// STARTTLS: discard plaintext read so far (command injection, CVE-2011-0411 /
    /// RFC 7817) and run the handshake. False when it failed (the stream is gone then).
    pub async fn start_tls(&mut self, acceptor: tokio_rustls::TlsAcceptor) -> bool {
        self.rbuf.clear();
        let Some(plain) = self.stream.take() else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.stream = Some(Box::new(tls));
                true
            }
            _ => false,
        }
    }

    /// Move the next `size` bytes of input (a literal) into a spool file in `spool_dir` as
    /// they arrive, never holding more than a read chunk of them.
    pub async fn spool_literal(
        &mut self,
        spool_dir: &std::path::Path,
        size: u64,
        binary: bool,
        timeout: Duration,
    ) -> std::io::Result<Spooled> {
        let id = format!("imap-{:016x}", rand::random::<u64>());
        let mut spool = Spool::with_memory_limit(spool_dir, &id, 0);
        let mut left = size;
        let mut has_nul = false;
        while left > 0 {
            if self.rbuf.is_empty() {
                match self.read_more(timeout).await? {
                    ReadOutcome::Data => continue,
                    ended => return Ok(Spooled::Ended(ended)),
                }
            }
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(self.rbuf.len());
            let chunk = self.rbuf.split_to(take);
            has_nul |= !binary && memchr::memchr(0, &chunk).is_some();
            spool.write(&chunk).await;
            left -= take as u64;
        }
        Ok(Spooled::Done(spool.finish().await, has_nul))
    }
}
