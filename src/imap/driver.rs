//! The driver of one IMAP connection: it owns the `Connection` (stream, read buffer,
//! timeouts) and the `Session` (state and handlers, no I/O), and is the only code that
//! moves bytes between them. It frames input (`framing`), answers literal continuation
//! requests and streams big APPEND literals to the spool, hands each complete command to
//! the session, sends the session's `Output`, and performs the effects the session asks
//! for (`session::Next`): flush and resume a long response, the STARTTLS handshake, the
//! AUTHENTICATE response line, the IDLE wait. Replies and decisions stay in the session;
//! a read that ends in a timeout or shutdown becomes the session's BYE.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::metrics::SessionGauge;

use super::connection::{BoxedStream, Connection, IdleWake, ReadOutcome, Spooled};
use super::context::ImapContext;
use super::framing::{Frame, Resume, resume_frame};
use super::session::{Flow, Next, Session, SpooledLiteral};

/// Asked before the client sends the data of a synchronizing literal (RFC 9051 7.5).
const LITERAL_CONTINUATION: &[u8] = b"+ Ready for literal data\r\n";

/// Serve one connection until LOGOUT, EOF, timeout, abuse or shutdown. With
/// `implicit_tls` (port 993) the TLS handshake comes first.
pub async fn serve_connection<S>(
    ctx: Arc<ImapContext>,
    stream: S,
    peer: SocketAddr,
    implicit_tls: bool,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut boxed: BoxedStream = Box::new(stream);
    let mut tls_active = false;
    if implicit_tls {
        let Some(acceptor) = ctx.tls.clone() else {
            tracing::warn!(%peer, "implicit TLS requested but no certificate configured");
            return;
        };
        match tokio::time::timeout(Duration::from_secs(30), Box::pin(acceptor.accept(boxed))).await {
            Ok(Ok(tls)) => {
                let version = crate::metrics::tls_version_label(tls.get_ref().1.protocol_version());
                crate::metrics::metrics().tls_sessions_total.with_label_values(&["imaps", version]).inc();
                boxed = Box::new(tls);
                tls_active = true;
            }
            _ => {
                tracing::debug!(%peer, "TLS handshake failed");
                return;
            }
        }
    }
    let conn = Connection::new(boxed, peer, ctx.limits.write_timeout, shutdown);
    let session = Session::new(ctx, peer, tls_active);
    let gauge = SessionGauge::enter("imap", session.state_label());
    let mut driver = Driver { conn, session, gauge, pending: None, spooled: Vec::new(), acked_literal: None };
    if let Err(e) = driver.run().await {
        tracing::debug!(%peer, error = %e, "IMAP connection ended with an I/O error");
    }
}

struct Driver {
    conn: Connection,
    session: Session,
    /// The connection in `mailroom_sessions`, moved after every command.
    gauge: SessionGauge,
    /// The part of a command read before a literal that was streamed away, with what the
    /// framer needs to go on after it.
    pending: Option<PendingCommand>,
    /// The streamed literals of the command being framed (APPEND takes them).
    spooled: Vec<SpooledLiteral>,
    /// The literal of the buffered command we already sent `+` for.
    acked_literal: Option<usize>,
}

impl Driver {
    async fn run(&mut self) -> std::io::Result<()> {
        self.session.greet();
        self.send().await?;
        loop {
            match self.next_frame() {
                Frame::Complete { len } => {
                    self.acked_literal = None;
                    let frame = match self.pending.take() {
                        Some(mut p) => {
                            p.text.extend_from_slice(&self.conn.take(len));
                            bytes::Bytes::from(p.text)
                        }
                        None => self.conn.take(len).freeze(),
                    };
                    let spooled = std::mem::take(&mut self.spooled);
                    // Boxed, like every step that is not a read wait: the connection's
                    // future is as large as its largest inline await, and it stays that
                    // large while the connection idles (see `IDLE_FUTURE_MAX`).
                    let next = Box::pin(self.session.command(&frame, spooled)).await?;
                    let flow = Box::pin(self.perform(next)).await?;
                    self.gauge.set(self.session.state_label());
                    if flow != Flow::Continue {
                        return self.end(flow).await;
                    }
                    // Pipelined commands: answer them all in one write (fewer packets, and
                    // no Nagle/delayed-ACK stall between small writes), unless the answers
                    // grew past the output bound.
                    if !matches!(self.next_frame(), Frame::Complete { .. }) || self.session.out.should_flush() {
                        self.send().await?;
                    }
                    continue;
                }
                Frame::AwaitingLiteral { index, .. } => {
                    if self.acked_literal != Some(index) {
                        self.acked_literal = Some(index);
                        self.session.out.extend_from_slice(LITERAL_CONTINUATION);
                        self.send().await?;
                    }
                }
                Frame::StreamLiteral { head_len, size, synchronizing, binary, marker_len, resume } => {
                    let head = self.conn.take(head_len);
                    let index = resume.literals - 1;
                    let pending = self.pending.get_or_insert_with(PendingCommand::default);
                    pending.text.extend_from_slice(&streamed_placeholder(&head, marker_len, binary));
                    pending.resume = resume;
                    if synchronizing {
                        self.session.out.extend_from_slice(LITERAL_CONTINUATION);
                        self.send().await?;
                    }
                    let spool_dir = &self.session.ctx.spool_dir;
                    match Box::pin(self.conn.spool_literal(spool_dir, size, binary, self.session.timeout())).await? {
                        Spooled::Done(body, has_nul) => self.spooled.push(SpooledLiteral { index, body, has_nul }),
                        Spooled::Ended(ended) => return self.read_ended(ended).await,
                    }
                    continue;
                }
                Frame::Incomplete => {}
                Frame::LineTooLong => {
                    let flow = self.session.bye("Command line too long");
                    return self.end(flow).await;
                }
                Frame::LiteralTooBig { tag, is_append, synchronizing, discard, .. } => {
                    if !synchronizing {
                        // RFC 7888 4: the data is already in flight; we cannot resync.
                        let flow = self.session.bye("Literal too big");
                        return self.end(flow).await;
                    }
                    self.acked_literal = None;
                    self.pending = None;
                    self.spooled.clear();
                    self.session.refuse_literal(tag, is_append);
                    self.conn.discard(discard);
                    self.send().await?;
                    continue;
                }
            }
            self.conn.shrink_if_idle();
            match self.conn.read_more(self.session.timeout()).await? {
                ReadOutcome::Data => {}
                ended => return self.read_ended(ended).await,
            }
        }
    }

    /// Frame the buffer, continuing a command whose literal was streamed away.
    fn next_frame(&self) -> Frame {
        let resume = self.pending.as_ref().map(|p| &p.resume);
        resume_frame(self.conn.buffered(), self.session.frame_limits(), resume.unwrap_or(&Resume::default()))
    }

    /// Do what the session asks until the command is complete.
    async fn perform(&mut self, mut next: Next) -> std::io::Result<Flow> {
        loop {
            next = match next {
                Next::Done(flow) => return Ok(flow),
                Next::Flush => {
                    self.send().await?;
                    self.session.resume().await?
                }
                Next::StartTls(acceptor) => {
                    self.send().await?;
                    if self.conn.start_tls(acceptor).await {
                        self.session.tls_started()
                    } else {
                        self.session.tls_failed()
                    }
                }
                Next::AuthContinue => {
                    self.send().await?;
                    let max_line = self.session.frame_limits().max_line;
                    match self.conn.read_line(max_line, self.session.timeout()).await? {
                        Some(line) => self.session.auth_response(&line).await,
                        None => Next::Done(self.session.bye("Autologout")),
                    }
                }
                Next::Idle => self.idle().await?,
            };
        }
    }

    /// IDLE (RFC 2177): untagged updates go out as the mailbox changes, until the client's
    /// line (DONE), EOF, the idle timeout (autologout) or shutdown.
    async fn idle(&mut self) -> std::io::Result<Next> {
        let max_line = self.session.ctx.limits.max_line;
        let timeout = self.session.ctx.limits.idle_timeout;
        let _idling = IdleGauge::enter();
        self.gauge.set("idle");
        loop {
            self.send().await?;
            if let Some(line) = self.conn.take_buffered_line() {
                return Ok(self.session.idle_done(&line));
            }
            match self.conn.idle_wait(self.session.idle_events(), max_line, timeout).await? {
                IdleWake::Input => {}
                IdleWake::MailboxChanged => self.session.idle_changed().await,
                IdleWake::Eof => return Ok(Next::Done(Flow::Close)),
                IdleWake::TimedOut => return Ok(Next::Done(self.session.bye("Autologout; idle for too long"))),
                IdleWake::Shutdown => return Ok(Next::Done(self.session.bye("Server shutting down"))),
            }
        }
    }

    /// A read that brought no data: EOF ends quietly, a timeout or shutdown with a BYE.
    async fn read_ended(&mut self, ended: ReadOutcome) -> std::io::Result<()> {
        let flow = match ended {
            ReadOutcome::Data | ReadOutcome::Eof => return Ok(()),
            ReadOutcome::TimedOut if self.session.login_overdue() => {
                self.session.bye("Autologout; login took too long")
            }
            ReadOutcome::TimedOut => self.session.bye("Autologout; idle for too long"),
            ReadOutcome::Shutdown => self.session.bye("Server shutting down"),
        };
        self.end(flow).await
    }

    /// Send what is pending and end; after a BYE the stream is shut down as well.
    async fn end(&mut self, flow: Flow) -> std::io::Result<()> {
        let sent = self.send().await;
        if flow == Flow::Bye {
            self.conn.close().await;
        }
        sent
    }

    /// Send the session's pending output. Boxed, like the command: the write and its
    /// timeouts exist only while they run, not in every idle connection's future.
    async fn send(&mut self) -> std::io::Result<()> {
        Box::pin(self.conn.send(&mut self.session.out)).await
    }
}

/// Holds `mailroom_imap_idle_sessions` up while a connection is in IDLE, however
/// the IDLE ends (DONE, EOF, an error, a dropped future at shutdown).
struct IdleGauge;

impl IdleGauge {
    fn enter() -> IdleGauge {
        crate::metrics::metrics().imap_idle_sessions.inc();
        IdleGauge
    }
}

impl Drop for IdleGauge {
    fn drop(&mut self) {
        crate::metrics::metrics().imap_idle_sessions.dec();
    }
}

/// A command whose first part is read and one of its literals streamed away.
#[derive(Default)]
struct PendingCommand {
    /// The command so far, each streamed literal replaced by an empty one.
    text: Vec<u8>,
    resume: Resume,
}

/// The command head with the announcement of a streamed literal turned into an empty
/// literal (`{0}` or `~{0}`), so the parser sees a well-formed command without the data.
fn streamed_placeholder(head: &[u8], marker_len: usize, binary: bool) -> Vec<u8> {
    let line = head.strip_suffix(b"\n").unwrap_or(head);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut text = line[..line.len().saturating_sub(marker_len)].to_vec();
    text.extend_from_slice(if binary { b"~{0}\r\n" } else { b"{0}\r\n" });
    text
}
