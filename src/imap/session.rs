//! One IMAP connection from greeting to BYE: an explicit state machine (RFC 9051 3:
//! Not Authenticated -> Authenticated -> Selected -> Logout) driven by the frames of
//! `framing`, with the command handlers in `cmd/`. Handlers write responses into an in-memory
//! `Output`; the `Connection` owns the stream, the read buffer and the I/O timeouts. The
//! session decides continuation requests (literals, AUTHENTICATE, IDLE) and timeouts:
//! the connection always ends with a BYE we sent (shutdown, autologout, abuse) or the
//! client's LOGOUT/EOF, never with a silent drop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::connection::{BoxedStream, Connection, ReadOutcome, Spooled};
use super::output::Output;

use super::command::{Command, CommandBody};
pub use super::context::{APPEND_IN_MEMORY_MAX, COMMAND_LITERAL_MAX, ImapContext, ImapLimits, PRE_AUTH_COMMAND_MAX};
use super::framing::{Frame, FrameLimits, Resume, resume_frame};
use super::parser::parse_command;
use super::response::{Enabled, Status, Tagged};
use super::selected::{IdleWake, Selected};
use super::user_limit::UserSlot;
use crate::accounts::Address;
use crate::smtp::deliver::SpooledMessage;
use crate::store::MailboxOwner;

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
        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(boxed)).await {
            Ok(Ok(tls)) => {
                boxed = Box::new(tls);
                tls_active = true;
            }
            _ => {
                tracing::debug!(%peer, "TLS handshake failed");
                return;
            }
        }
    }
    let mut session = Session::new(ctx, boxed, peer, tls_active, shutdown);
    if let Err(e) = session.run().await {
        tracing::debug!(%peer, error = %e, "IMAP connection ended with an I/O error");
    }
}

/// What the connection knows about its user.
pub(crate) struct Authenticated {
    pub address: Address,
    pub owner: MailboxOwner,
    /// Counted in `ImapContext::user_connections` until the session ends.
    pub _slot: UserSlot,
}

pub(crate) enum State {
    NotAuthenticated,
    Authenticated(Authenticated),
    Selected(Authenticated, Box<Selected>),
    Logout,
}

/// Should the loop go on after a command?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

pub(crate) struct Session {
    pub ctx: Arc<ImapContext>,
    /// The transport: all reading and writing goes through it.
    conn: Connection,
    pub peer: SocketAddr,
    pub tls_active: bool,
    pub state: State,
    pub enabled: Enabled,
    pub bad_logins: u32,
    bad_commands: u32,
    /// The part of a command read before a literal that was streamed away, with what the
    /// framer needs to go on after it.
    pending: Option<PendingCommand>,
    /// The streamed literals of the command being run (APPEND takes them).
    spooled: Vec<SpooledLiteral>,
    /// Responses not yet sent: handlers write here, `flush` hands it to the connection.
    pub out: Output,
}

impl Session {
    fn new(
        ctx: Arc<ImapContext>,
        stream: BoxedStream,
        peer: SocketAddr,
        tls_active: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Session {
        let conn = Connection::new(stream, peer, ctx.limits.idle_timeout, shutdown);
        Session {
            ctx,
            conn,
            peer,
            tls_active,
            state: State::NotAuthenticated,
            enabled: Enabled::default(),
            bad_logins: 0,
            bad_commands: 0,
            pending: None,
            spooled: Vec::new(),
            out: Output::default(),
        }
    }

    /// The framer's bounds for the current state: tiny before login (RFC 9051 7.5 lets us
    /// refuse a literal with BAD before sending `+`), APPENDLIMIT only for APPEND after it.
    fn frame_limits(&self) -> FrameLimits {
        let limits = &self.ctx.limits;
        if matches!(self.state, State::NotAuthenticated) {
            let max = PRE_AUTH_COMMAND_MAX as u64;
            return FrameLimits {
                max_line: limits.max_line.min(PRE_AUTH_COMMAND_MAX),
                max_literal: max,
                max_append: max,
                stream_above: None,
            };
        }
        FrameLimits {
            max_line: limits.max_line,
            max_literal: COMMAND_LITERAL_MAX.min(limits.max_literal),
            max_append: limits.max_literal,
            stream_above: Some(APPEND_IN_MEMORY_MAX),
        }
    }

    /// Frame the buffer, continuing a command whose literal was streamed away.
    fn next_frame(&self) -> Frame {
        match &self.pending {
            Some(p) => resume_frame(self.conn.buffered(), self.frame_limits(), &p.resume),
            None => resume_frame(self.conn.buffered(), self.frame_limits(), &Resume::default()),
        }
    }

    fn timeout(&self) -> Duration {
        match self.state {
            State::NotAuthenticated => self.ctx.limits.login_timeout,
            _ => self.ctx.limits.idle_timeout,
        }
    }

    async fn run(&mut self) -> std::io::Result<()> {
        let caps = self.capabilities();
        self.out.extend_from_slice(format!("* OK [CAPABILITY {caps}] {} IMAP ready\r\n", self.ctx.hostname).as_bytes());
        self.flush().await?;
        let mut acked_literal: Option<usize> = None;
        loop {
            match self.next_frame() {
                Frame::Complete { len } => {
                    acked_literal = None;
                    let frame = match self.pending.take() {
                        Some(mut p) => {
                            p.text.extend_from_slice(&self.conn.take(len));
                            bytes::Bytes::from(p.text)
                        }
                        None => self.conn.take(len).freeze(),
                    };
                    let flow = self.handle_frame(&frame).await?;
                    if flow == Flow::Close {
                        self.flush().await?;
                        return Ok(());
                    }
                    // Pipelined commands: answer them all in one write (fewer packets, and
                    // no Nagle/delayed-ACK stall between small writes).
                    if matches!(self.next_frame(), Frame::Complete { .. }) {
                        self.maybe_flush().await?;
                    } else {
                        self.flush().await?;
                    }
                    continue;
                }
                Frame::AwaitingLiteral { index, .. } => {
                    if acked_literal != Some(index) {
                        acked_literal = Some(index);
                        self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                        self.flush().await?;
                    }
                }
                Frame::StreamLiteral { head_len, size, synchronizing, binary, marker_len, resume } => {
                    let head = self.conn.take(head_len);
                    let index = resume.literals - 1;
                    let pending = self.pending.get_or_insert_with(PendingCommand::default);
                    pending.text.extend_from_slice(&streamed_placeholder(&head, marker_len, binary));
                    pending.resume = resume;
                    if synchronizing {
                        self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                        self.flush().await?;
                    }
                    match self.stream_literal(size, binary).await? {
                        Some((body, has_nul)) => self.spooled.push(SpooledLiteral { index, body, has_nul }),
                        None => return Ok(()),
                    }
                    continue;
                }
                Frame::Incomplete => {}
                Frame::LineTooLong => {
                    return self.bye("Command line too long").await;
                }
                Frame::LiteralTooBig { tag, is_append, synchronizing, discard, .. } => {
                    if !synchronizing {
                        // RFC 7888 4: the data is already in flight; we cannot resync.
                        return self.bye("Literal too big").await;
                    }
                    acked_literal = None;
                    self.pending = None;
                    self.spooled.clear();
                    let tag = tag.unwrap_or_else(|| "*".into());
                    let authenticated = !matches!(self.state, State::NotAuthenticated);
                    let line = if is_append && authenticated {
                        format!("{tag} NO [TOOBIG] Message too big\r\n")
                    } else {
                        format!("{tag} BAD Literal too big\r\n")
                    };
                    self.out.extend_from_slice(line.as_bytes());
                    self.conn.discard(discard);
                    self.flush().await?;
                    continue;
                }
            }
            self.conn.shrink_if_idle();
            match self.read_more().await? {
                ReadOutcome::Data => {}
                ReadOutcome::Eof => return Ok(()),
                ReadOutcome::TimedOut => {
                    return self.bye("Autologout; idle for too long").await;
                }
                ReadOutcome::Shutdown => return self.bye("Server shutting down").await,
            }
        }
    }

    /// Move the next `size` bytes of input (a literal) into a spool file as they arrive.
    /// Returns the spooled content (or the spool's write error, reported to the client once
    /// the command is complete) and whether it had a NUL; `None` when the connection ended
    /// meanwhile (with a BYE on timeout or shutdown).
    async fn stream_literal(
        &mut self,
        size: u64,
        binary: bool,
    ) -> std::io::Result<Option<(std::io::Result<SpooledMessage>, bool)>> {
        let spool_dir = self.ctx.store.spool_dir();
        match self.conn.spool_literal(&spool_dir, size, binary, self.timeout()).await? {
            Spooled::Done(body, has_nul) => Ok(Some((body, has_nul))),
            Spooled::Ended(ReadOutcome::TimedOut) => {
                self.bye("Autologout; idle for too long").await?;
                Ok(None)
            }
            Spooled::Ended(ReadOutcome::Shutdown) => {
                self.bye("Server shutting down").await?;
                Ok(None)
            }
            Spooled::Ended(_) => Ok(None),
        }
    }

    /// Read at least one byte, or report why not.
    async fn read_more(&mut self) -> std::io::Result<ReadOutcome> {
        self.conn.read_more(self.timeout()).await
    }

    /// Read one line (AUTHENTICATE response), bounded by `max_line`.
    /// `None` on EOF/timeout/shutdown (the caller ends the session).
    pub(crate) async fn read_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let max_line = self.frame_limits().max_line;
        self.conn.read_line(max_line, self.timeout()).await
    }

    /// One complete line already in the read buffer (IDLE's DONE), without reading.
    pub(crate) fn take_buffered_line(&mut self) -> Option<Vec<u8>> {
        self.conn.take_buffered_line()
    }

    /// Wait in IDLE for input, a change of the selected mailbox, timeout or shutdown.
    pub(crate) async fn idle_wait(&mut self) -> std::io::Result<IdleWake> {
        let events = match &mut self.state {
            State::Selected(_, sel) => Some(&mut sel.events),
            _ => None,
        };
        self.conn.idle_wait(events, self.ctx.limits.max_line, self.ctx.limits.idle_timeout).await
    }

    /// Send the pending responses.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        self.conn.send(&mut self.out).await
    }

    /// Flush if a long response has buffered a lot (bounded memory per connection) or
    /// holds a literal to stream (an open message file).
    pub(crate) async fn maybe_flush(&mut self) -> std::io::Result<()> {
        if self.out.should_flush() {
            self.flush().await?;
        }
        Ok(())
    }

    pub(crate) async fn bye(&mut self, text: &str) -> std::io::Result<()> {
        self.out.extend_from_slice(format!("* BYE {text}\r\n").as_bytes());
        self.state = State::Logout;
        let r = self.flush().await;
        self.conn.close().await;
        r
    }

    async fn handle_frame(&mut self, frame: &[u8]) -> std::io::Result<Flow> {
        let cmd = match parse_command(frame) {
            Ok(cmd) => Ok(cmd),
            Err(e) => {
                self.spooled.clear();
                Err(e)
            }
        };
        let cmd = match cmd {
            Ok(cmd) => cmd,
            Err(e) => {
                self.bad_commands += 1;
                let tag = e.tag.unwrap_or_else(|| "*".into());
                self.out.extend_from_slice(format!("{tag} BAD {}\r\n", e.message).as_bytes());
                if self.bad_commands >= self.ctx.limits.max_bad_commands {
                    self.bye("Too many invalid commands").await?;
                    return Ok(Flow::Close);
                }
                return Ok(Flow::Continue);
            }
        };
        let tag = cmd.tag.clone();
        let name = cmd.body.name();
        let spooled = std::mem::take(&mut self.spooled);
        let result = self.dispatch(cmd, spooled).await?;
        let Some(tagged) = result else {
            // The handler already ended the connection (BYE sent).
            return Ok(Flow::Close);
        };
        if tagged.status == Status::Bad {
            self.bad_commands += 1;
        } else {
            self.bad_commands = 0;
        }
        tagged.write(&mut self.out, &tag, name);
        if matches!(self.state, State::Logout) {
            return Ok(Flow::Close);
        }
        if self.bad_commands >= self.ctx.limits.max_bad_commands {
            self.bye("Too many invalid commands").await?;
            return Ok(Flow::Close);
        }
        Ok(Flow::Continue)
    }

    /// Run one command. `Ok(None)`: the connection is over (BYE already sent).
    async fn dispatch(&mut self, cmd: Command, spooled: Vec<SpooledLiteral>) -> std::io::Result<Option<Tagged>> {
        let Command { tag, body } = cmd;
        // FETCH, STORE and SEARCH report changes themselves (without EXPUNGE, RFC 9051
        // 7.5.1); IDLE and the state changers need nothing more.
        let report_after = !matches!(
            body,
            CommandBody::Fetch(_)
                | CommandBody::Store(_)
                | CommandBody::Search(_)
                | CommandBody::Sort(_)
                | CommandBody::Thread(_)
                | CommandBody::Idle
                | CommandBody::Select { .. }
                | CommandBody::Examine { .. }
                | CommandBody::Logout
        );
        let authenticated = !matches!(self.state, State::NotAuthenticated);
        let selected = matches!(self.state, State::Selected(..));
        let tagged = match body {
            // any state
            CommandBody::Capability => self.cmd_capability(),
            CommandBody::Noop => {
                // NOOP is the classic "anything new?" poll (RFC 9051 6.1.2): sync for real.
                self.refresh_selected(true, true).await;
                Tagged::ok("NOOP completed")
            }
            CommandBody::Logout => {
                self.out.extend_from_slice(b"* BYE Logging out\r\n");
                self.state = State::Logout;
                Tagged::ok("LOGOUT completed")
            }
            CommandBody::Id(_) => self.cmd_id(),
            // not authenticated
            CommandBody::StartTls if !authenticated => {
                return self.cmd_starttls(&tag).await;
            }
            CommandBody::Login { username, password } if !authenticated => {
                return self.cmd_login(&username, &password).await;
            }
            CommandBody::Authenticate { mechanism, initial } if !authenticated => {
                return self.cmd_authenticate(&mechanism, initial).await;
            }
            CommandBody::StartTls | CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                Tagged::bad("Already authenticated")
            }
            _ if !authenticated => Tagged::bad("Log in first"),
            // authenticated
            CommandBody::Enable(caps) if !selected => self.cmd_enable(&caps),
            CommandBody::Enable(_) => Tagged::bad("ENABLE is not allowed with a mailbox selected"),
            CommandBody::Select { mailbox, params } => self.cmd_select(&mailbox, params, false).await,
            CommandBody::Examine { mailbox, params } => self.cmd_select(&mailbox, params, true).await,
            CommandBody::Create { mailbox, special_use } => self.cmd_create(&mailbox, &special_use).await,
            CommandBody::Delete { mailbox } => self.cmd_delete(&mailbox).await,
            CommandBody::Rename { from, to } => self.cmd_rename(&from, &to).await,
            CommandBody::Subscribe { mailbox } => self.cmd_subscribe(&mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.cmd_subscribe(&mailbox, false).await,
            CommandBody::List(list) => self.cmd_list(&list).await,
            CommandBody::Lsub { reference, pattern } => self.cmd_lsub(&reference, &pattern).await,
            CommandBody::Namespace => self.cmd_namespace(),
            CommandBody::Status { mailbox, items } => self.cmd_status(&mailbox, &items).await,
            CommandBody::Append { mailbox, messages } => self.cmd_append(&mailbox, messages, spooled).await,
            CommandBody::Idle => return self.cmd_idle().await,
            CommandBody::GetQuota { root } => self.cmd_getquota(&root),
            CommandBody::GetQuotaRoot { mailbox } => self.cmd_getquotaroot(&mailbox).await,
            CommandBody::SetQuota { .. } => Tagged::no("Quotas are set by the administrator").code("NOPERM"),
            _ if !selected => Tagged::bad("No mailbox selected"),
            // selected
            CommandBody::Check => {
                self.refresh_selected(true, true).await;
                Tagged::ok("CHECK completed")
            }
            CommandBody::Close => self.cmd_close(true).await,
            CommandBody::Unselect => self.cmd_close(false).await,
            CommandBody::Expunge { uids } => self.cmd_expunge(uids.as_ref()).await,
            CommandBody::Search(s) => self.cmd_search(&tag, &s).await?,
            CommandBody::Sort(s) => self.cmd_sort(&s).await,
            CommandBody::Thread(t) => self.cmd_thread(&t).await,
            CommandBody::Fetch(f) => self.cmd_fetch(&f).await?,
            CommandBody::Store(s) => self.cmd_store(&s).await,
            CommandBody::Copy { uid, set, mailbox } => self.cmd_copy_move(uid, &set, &mailbox, false).await,
            CommandBody::Move { uid, set, mailbox } => self.cmd_copy_move(uid, &set, &mailbox, true).await,
        };
        if report_after && tagged.status != Status::Bad {
            self.refresh_selected(true, false).await;
        }
        Ok(Some(tagged))
    }

    /// STARTTLS (RFC 9051 6.2.1): OK, then the handshake; plaintext read before it is
    /// discarded (command injection, CVE-2011-0411 / RFC 7817).
    async fn cmd_starttls(&mut self, tag: &str) -> std::io::Result<Option<Tagged>> {
        if self.tls_active {
            return Ok(Some(Tagged::bad("TLS is already active")));
        }
        let Some(acceptor) = self.ctx.tls.clone() else {
            return Ok(Some(Tagged::no("TLS is not available")));
        };
        self.out.extend_from_slice(format!("{tag} OK Begin TLS negotiation now\r\n").as_bytes());
        self.flush().await?;
        match self.conn.start_tls(acceptor).await {
            true => {
                self.tls_active = true;
                // The tagged OK is already sent; nothing more for this command.
                Ok(Some(Tagged::silent()))
            }
            false => {
                tracing::debug!(peer = %self.peer, "STARTTLS handshake failed");
                self.state = State::Logout;
                Ok(None)
            }
        }
    }

    /// The mailbox owner once logged in.
    pub(crate) fn user(&self) -> Option<&Authenticated> {
        match &self.state {
            State::Authenticated(a) | State::Selected(a, _) => Some(a),
            _ => None,
        }
    }

    pub(crate) fn selected_mut(&mut self) -> Option<&mut Selected> {
        match &mut self.state {
            State::Selected(_, s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn selected(&self) -> Option<&Selected> {
        match &self.state {
            State::Selected(_, s) => Some(s),
            _ => None,
        }
    }
}

/// A command whose first part is read and one of its literals streamed away.
#[derive(Default)]
struct PendingCommand {
    /// The command so far, each streamed literal replaced by an empty one.
    text: Vec<u8>,
    resume: Resume,
}

/// An APPEND literal streamed to a spool file while it arrived.
pub(crate) struct SpooledLiteral {
    /// Which literal of the command it was (`AppendMessage::literal`).
    pub index: usize,
    pub body: std::io::Result<SpooledMessage>,
    /// A NUL in a plain literal, which only `~{n}` literal8 may carry (RFC 3516).
    pub has_nul: bool,
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
