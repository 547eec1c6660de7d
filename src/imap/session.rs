//! One IMAP session from greeting to BYE, without I/O: an explicit state machine (RFC 9051
//! 3: Not Authenticated -> Authenticated -> Selected -> Logout) fed complete command frames,
//! with the command handlers in `cmd/`. Handlers write responses into the in-memory
//! `Output`; the session never holds a stream and never waits for the client.
//!
//! When a command cannot finish without the transport, the session keeps it suspended and
//! returns a [`Next`] saying what the driver (`imap::driver`) must do first: send the
//! output and resume a long FETCH (bounded memory), run the STARTTLS handshake, read the
//! AUTHENTICATE response line, or wait in IDLE. The driver answers with the matching call
//! (`resume`, `tls_started`/`tls_failed`, `auth_response`, `idle_changed`/`idle_done`),
//! which completes the command. The session still decides every byte the client sees,
//! timeouts and abuse included: the connection always ends with a BYE written here
//! (shutdown, autologout, abuse) or the client's LOGOUT/EOF, never with a silent drop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_rustls::TlsAcceptor;

use super::cmd::fetch::FetchRun;
use super::command::{Command, CommandBody};
pub use super::context::{APPEND_IN_MEMORY_MAX, COMMAND_LITERAL_MAX, ImapContext, ImapLimits, PRE_AUTH_COMMAND_MAX};
use super::framing::FrameLimits;
use super::output::Output;
use super::parser::parse_command;
use super::response::{Enabled, Status, Tagged};
use super::selected::Selected;
use super::user_limit::UserSlot;
use crate::accounts::Address;
use crate::smtp::deliver::SpooledMessage;
use crate::store::{MailboxEvent, MailboxOwner};

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

/// How the connection goes on once a command is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Ready for the next command.
    Continue,
    /// Send what is pending and end (LOGOUT, a failed TLS handshake, EOF).
    Close,
    /// A BYE we decided is pending: send it, shut the stream down, end.
    Bye,
}

/// What the driver must do before the session can go on. This is the session's only way
/// to reach the connection: every variant but `Done` leaves a command suspended, and the
/// driver completes it with the call named here.
pub(crate) enum Next {
    /// The command is complete (or nothing was running).
    Done(Flow),
    /// A long response reached its bound (`OUT_FLUSH` bytes, or a literal holding an open
    /// file): send the output, then call `resume`.
    Flush,
    /// Send the output (the tagged OK), discard buffered plaintext, run the handshake
    /// with this acceptor, then call `tls_started` or `tls_failed`.
    StartTls(TlsAcceptor),
    /// Send the output (the `+ ` continuation request), read one line and hand it to
    /// `auth_response`; no line (EOF, timeout, too long) ends with `bye("Autologout")`.
    AuthContinue,
    /// Send the output (`+ idling`) and wait, bounded by the idle timeout: on a change of
    /// `idle_events` call `idle_changed` and send again, on a line call `idle_done`.
    Idle,
}

/// A command waiting for the driver, with what it needs to finish.
struct Suspended {
    tag: String,
    name: &'static str,
    waiting: Waiting,
}

/// What a suspended command waits for; the state a resumable handler keeps between calls.
pub(crate) enum Waiting {
    /// FETCH, stopped after a message whose response must go out first.
    Fetch(Box<FetchRun>),
    StartTls(TlsAcceptor),
    AuthResponse,
    Idle,
}

impl Waiting {
    fn effect(&self) -> Next {
        match self {
            Waiting::Fetch(_) => Next::Flush,
            Waiting::StartTls(acceptor) => Next::StartTls(acceptor.clone()),
            Waiting::AuthResponse => Next::AuthContinue,
            Waiting::Idle => Next::Idle,
        }
    }
}

/// How a handler ended: complete with its tagged reply, or suspended until the driver has
/// done what `Waiting::effect` asks.
pub(crate) enum Step {
    Done(Tagged),
    Wait(Waiting),
}

pub(crate) struct Session {
    pub ctx: Arc<ImapContext>,
    pub peer: SocketAddr,
    pub tls_active: bool,
    pub state: State,
    pub enabled: Enabled,
    pub bad_logins: u32,
    bad_commands: u32,
    /// The command that asked the driver for an effect, until it completes.
    suspended: Option<Suspended>,
    /// Responses not yet sent: handlers write here, the driver sends it.
    pub out: Output,
    /// When the command being run arrived, for its latency in the metrics.
    command_started: std::time::Instant,
    /// Until a login succeeds, reads wait at most what is left of the time to log in.
    login: crate::net::LoginDeadline,
}

impl Session {
    pub(crate) fn new(ctx: Arc<ImapContext>, peer: SocketAddr, tls_active: bool) -> Session {
        let ctx_login_deadline = ctx.limits.login_deadline;
        Session {
            ctx,
            peer,
            tls_active,
            state: State::NotAuthenticated,
            enabled: Enabled::default(),
            bad_logins: 0,
            bad_commands: 0,
            suspended: None,
            out: Output::default(),
            command_started: std::time::Instant::now(),
            login: crate::net::LoginDeadline::starting_now(ctx_login_deadline),
        }
    }

    /// The greeting, with the capabilities so clients need not ask (RFC 9051 7.1.1).
    pub(crate) fn greet(&mut self) {
        let caps = self.capabilities();
        self.out.extend_from_slice(format!("* OK [CAPABILITY {caps}] {} IMAP ready\r\n", self.ctx.hostname).as_bytes());
    }

    /// The framer's bounds for the current state: tiny before login (RFC 9051 7.5 lets us
    /// refuse a literal with BAD before sending `+`), APPENDLIMIT only for APPEND after it.
    pub(crate) fn frame_limits(&self) -> FrameLimits {
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

    /// How long the client may stay silent: short before login, and never past the time
    /// to log in, so unauthenticated sockets cannot pile up; the idle timeout after.
    pub(crate) fn timeout(&self) -> Duration {
        match self.state {
            State::NotAuthenticated => self.login.read_timeout(self.ctx.limits.login_timeout),
            _ => self.ctx.limits.idle_timeout,
        }
    }

    /// The `state` label of `mailroom_sessions{service="imap"}` (RFC 9051 3).
    pub(crate) fn state_label(&self) -> &'static str {
        match self.state {
            State::NotAuthenticated => "not_authenticated",
            State::Authenticated(_) => "authenticated",
            State::Selected(..) => "selected",
            State::Logout => "logout",
        }
    }

    /// The time to log in is up (`MAILROOM_LOGIN_TIMEOUT`): a timed-out read ends with
    /// a BYE that says so.
    pub(crate) fn login_overdue(&self) -> bool {
        matches!(self.state, State::NotAuthenticated) && self.login.passed()
    }

    /// End the connection with `* BYE text` (autologout, shutdown, abuse).
    pub(crate) fn bye(&mut self, text: &str) -> Flow {
        self.out.extend_from_slice(format!("* BYE {text}\r\n").as_bytes());
        self.state = State::Logout;
        self.suspended = None;
        Flow::Bye
    }

    /// A literal over the framer's bound, refused before the client sent it (RFC 7888 4,
    /// RFC 9051 7.5): `NO [TOOBIG]` for an APPEND once logged in, else BAD.
    pub(crate) fn refuse_literal(&mut self, tag: Option<String>, is_append: bool) {
        let tag = tag.unwrap_or_else(|| "*".into());
        let authenticated = !matches!(self.state, State::NotAuthenticated);
        let line = if is_append && authenticated {
            format!("{tag} NO [TOOBIG] Message too big\r\n")
        } else {
            format!("{tag} BAD Literal too big\r\n")
        };
        self.out.extend_from_slice(line.as_bytes());
    }

    /// Run one complete command frame (its streamed literals, spooled by the driver, in
    /// `spooled`). An `Err` is a message file that could not be read mid-response: the
    /// client cannot be kept in step, so the connection ends.
    pub(crate) async fn command(&mut self, frame: &[u8], spooled: Vec<SpooledLiteral>) -> std::io::Result<Next> {
        self.command_started = std::time::Instant::now();
        let cmd = match parse_command(frame) {
            Ok(cmd) => cmd,
            Err(e) => {
                crate::metrics::metrics().imap_commands_total.with_label_values(&["invalid", "bad"]).inc();
                self.bad_commands += 1;
                let tag = e.tag.unwrap_or_else(|| "*".into());
                self.out.extend_from_slice(format!("{tag} BAD {}\r\n", e.message).as_bytes());
                if self.bad_commands >= self.ctx.limits.max_bad_commands {
                    return Ok(Next::Done(self.bye("Too many invalid commands")));
                }
                return Ok(Next::Done(Flow::Continue));
            }
        };
        let tag = cmd.tag.clone();
        let name = cmd.body.name();
        let step = self.dispatch(cmd, spooled).await?;
        Ok(self.step(tag, name, step))
    }

    /// Continue the suspended long response after the driver sent what it had so far.
    pub(crate) async fn resume(&mut self) -> std::io::Result<Next> {
        let (tag, name, waiting) = match self.take_suspended(|w| matches!(w, Waiting::Fetch(_))) {
            Ok(s) => s,
            Err(next) => return Ok(next),
        };
        let step = match waiting {
            Waiting::Fetch(run) => self.fetch_messages(run).await?,
            other => Step::Wait(other),
        };
        Ok(self.step(tag, name, step))
    }

    /// STARTTLS succeeded: the rest of the session is encrypted.
    pub(crate) fn tls_started(&mut self) -> Next {
        match self.take_suspended(|w| matches!(w, Waiting::StartTls(_))) {
            Ok((tag, name, _)) => {
                self.tls_active = true;
                // The tagged OK went out before the handshake; nothing more for this command.
                self.complete(&tag, name, Tagged::silent())
            }
            Err(next) => next,
        }
    }

    /// STARTTLS failed: the stream is gone, so there is no one to tell.
    pub(crate) fn tls_failed(&mut self) -> Next {
        tracing::debug!(peer = %self.peer, "STARTTLS handshake failed");
        self.suspended = None;
        self.state = State::Logout;
        Next::Done(Flow::Close)
    }

    /// The selected mailbox's change notifications, for the driver to wait on in IDLE.
    pub(crate) fn idle_events(&mut self) -> Option<&mut broadcast::Receiver<MailboxEvent>> {
        match &mut self.state {
            State::Selected(_, sel) => Some(&mut sel.events),
            _ => None,
        }
    }

    /// Take the suspended command if it waits for what `expected` accepts. Otherwise the
    /// driver answered out of turn: it gets the effect still awaited (or `Done` if none).
    pub(crate) fn take_suspended(
        &mut self,
        expected: fn(&Waiting) -> bool,
    ) -> Result<(String, &'static str, Waiting), Next> {
        match self.suspended.take() {
            Some(s) if expected(&s.waiting) => Ok((s.tag, s.name, s.waiting)),
            Some(s) => {
                let next = s.waiting.effect();
                self.suspended = Some(s);
                Err(next)
            }
            None => Err(Next::Done(Flow::Continue)),
        }
    }

    /// Suspend the command or complete it.
    fn step(&mut self, tag: String, name: &'static str, step: Step) -> Next {
        match step {
            Step::Done(tagged) => self.complete(&tag, name, tagged),
            Step::Wait(waiting) => {
                let next = waiting.effect();
                self.suspended = Some(Suspended { tag, name, waiting });
                next
            }
        }
    }

    /// Write the tagged reply of a finished command and decide whether to go on.
    pub(crate) fn complete(&mut self, tag: &str, name: &'static str, tagged: Tagged) -> Next {
        if tagged.status == Status::Bad {
            self.bad_commands += 1;
        } else {
            self.bad_commands = 0;
        }
        count_command(name, tagged.status, self.command_started);
        tagged.write(&mut self.out, tag, name);
        if matches!(self.state, State::Logout) {
            return Next::Done(Flow::Close);
        }
        if self.bad_commands >= self.ctx.limits.max_bad_commands {
            return Next::Done(self.bye("Too many invalid commands"));
        }
        Next::Done(Flow::Continue)
    }

    /// Run one command: its tagged reply, or the effect it waits for.
    async fn dispatch(&mut self, cmd: Command, spooled: Vec<SpooledLiteral>) -> std::io::Result<Step> {
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
                return Ok(self.cmd_starttls(&tag));
            }
            CommandBody::Login { username, password } if !authenticated => {
                return Ok(Step::Done(self.cmd_login(&username, &password).await));
            }
            CommandBody::Authenticate { mechanism, initial } if !authenticated => {
                return Ok(self.cmd_authenticate(&mechanism, initial).await);
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
            CommandBody::Idle => return Ok(self.cmd_idle().await),
            CommandBody::GetQuota { root } => self.cmd_getquota(&root).await,
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
            CommandBody::Search(s) => self.cmd_search(&tag, &s).await,
            CommandBody::Sort(s) => self.cmd_sort(&s).await,
            CommandBody::Thread(t) => self.cmd_thread(&t).await,
            CommandBody::Fetch(f) => return self.cmd_fetch(&f).await,
            CommandBody::Store(s) => self.cmd_store(&s).await,
            CommandBody::Copy { uid, set, mailbox } => self.cmd_copy_move(uid, &set, &mailbox, false).await,
            CommandBody::Move { uid, set, mailbox } => self.cmd_copy_move(uid, &set, &mailbox, true).await,
        };
        if report_after && tagged.status != Status::Bad {
            self.refresh_selected(true, false).await;
        }
        Ok(Step::Done(tagged))
    }

    /// STARTTLS (RFC 9051 6.2.1): OK, then the driver runs the handshake; plaintext read
    /// before it is discarded there (command injection, CVE-2011-0411 / RFC 7817).
    fn cmd_starttls(&mut self, tag: &str) -> Step {
        if self.tls_active {
            return Step::Done(Tagged::bad("TLS is already active"));
        }
        let Some(acceptor) = self.ctx.tls.clone() else {
            return Step::Done(Tagged::no("TLS is not available"));
        };
        self.out.extend_from_slice(format!("{tag} OK Begin TLS negotiation now\r\n").as_bytes());
        Step::Wait(Waiting::StartTls(acceptor))
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

/// An APPEND literal streamed to a spool file while it arrived.
pub(crate) struct SpooledLiteral {
    /// Which literal of the command it was (`AppendMessage::literal`).
    pub index: usize,
    pub body: std::io::Result<SpooledMessage>,
    /// A NUL in a plain literal, which only `~{n}` literal8 may carry (RFC 3516).
    pub has_nul: bool,
}

/// Count a finished command in `mailroom_imap_commands_total{command, result}` and its
/// latency in `mailroom_imap_command_duration_seconds`; IDLE's is how long the client
/// idled, which says nothing of the server, so it is left out of the histogram.
fn count_command(name: &'static str, status: Status, started: std::time::Instant) {
    let result = match status {
        Status::Ok | Status::Silent => "ok",
        Status::No => "no",
        Status::Bad => "bad",
    };
    let m = crate::metrics::metrics();
    m.imap_commands_total.with_label_values(&[name, result]).inc();
    if name != "IDLE" {
        m.imap_command_duration_seconds.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
    }
}
