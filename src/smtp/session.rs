//! The SMTP/LMTP session state machine: given a command (or an event such as "line too
//! long" or "message received"), decide the replies and what the connection does next.
//!
//! It owns the dialogue rules of RFC 5321 (command order, 503 for bad sequence, RSET and
//! re-EHLO semantics), the limits that need state (recipients per message, errors and
//! non-progress commands per session) and the reply texts. It does no I/O: the server
//! (`server.rs`) frames lines, reads message content and performs delivery, and
//! everything about *who* may send or receive is asked through the [`Policy`] trait, so
//! the whole dialogue is tested here without sockets.
//!
//! Replies are returned as a list so a pipelined batch (RFC 2920) is answered in order;
//! the server decides when to flush.

use std::net::IpAddr;

use crate::accounts::Address;

use super::command::{BodyType, Command, CommandError, ForwardPath, MailFrom, Mailbox, ReversePath, parse_command};
use super::refusal::Refusal;
use super::status::Status;

/// Which protocol this session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMode {
    /// Port 25: mail from the internet to our domains. No AUTH.
    Mx,
    /// RFC 2033 LMTP: LHLO instead of EHLO, one reply per recipient after the message.
    Lmtp,
    /// Ports 587 (STARTTLS) and 465 (implicit TLS, RFC 8314): AUTH required before MAIL,
    /// offered only over TLS; senders are checked against the account.
    Submission,
}

/// Bounds of one session (architecture.md: every input has a bound).
#[derive(Debug, Clone)]
pub struct SmtpLimits {
    /// Largest message (normalised octets); advertised as `SIZE n` (RFC 1870).
    pub max_message_size: u64,
    /// RFC 5321 §4.5.3.1.8 requires at least 100; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Error replies before we give up on the client with 421 (Postfix hard error limit).
    pub max_errors: u32,
    /// NOOP/RSET/VRFY/HELP/repeated greetings without a delivered message in between
    /// (Postfix junk command limit): keeps idle or probing clients from holding a slot.
    pub max_junk_commands: u32,
    /// Longest command line including CRLF.
    pub max_line: usize,
    /// RFC 5321 §4.5.3.2.7: 5 minutes per command.
    pub command_timeout: std::time::Duration,
    /// RFC 5321 §4.5.3.2.5/6 use 3-10 minutes around DATA blocks; we use 10 for the
    /// silence between two reads of content.
    pub data_timeout: std::time::Duration,
    /// Slowest average rate (octets per second) of message content: a message's content
    /// must arrive within `command_timeout + size / min_data_rate`, so a trickle of a
    /// byte every few seconds cannot hold a connection (slowloris).
    pub min_data_rate: u64,
    /// How long writing our replies may wait for the client to read them
    /// (`MAILROOM_WRITE_TIMEOUT`): a client that pipelines commands and never reads the
    /// answers would otherwise hold the connection forever.
    pub write_timeout: std::time::Duration,
    /// The data dir's free space: below `MAILROOM_DISK_MIN_FREE` a new transaction gets
    /// `452 4.3.1` at MAIL, before the client uploads a message we could not store.
    pub disk: crate::disk::DiskSpace,
}

impl Default for SmtpLimits {
    fn default() -> Self {
        SmtpLimits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_junk_commands: 10,
            max_line: 2048,
            command_timeout: std::time::Duration::from_secs(300),
            data_timeout: std::time::Duration::from_secs(600),
            // 1 KiB/s: 25 MB over an 8 KiB/s link still fits; one byte per second does not.
            min_data_rate: 1024,
            write_timeout: std::time::Duration::from_secs(300),
            disk: crate::disk::DiskSpace::default(),
        }
    }
}

/// Facts about this server that shape the dialogue.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    /// First of `MAILROOM_DOMAINS`: `RCPT TO:<Postmaster>` goes to postmaster@ of it.
    pub primary_domain: String,
    pub mode: SmtpMode,
    pub limits: SmtpLimits,
    /// A TLS acceptor is configured (STARTTLS can be offered).
    pub tls_available: bool,
}

/// The negotiated TLS parameters, for `Received:` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

/// Who is on the other end; the policy decides with it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// The EHLO/HELO/LHLO argument, once given.
    pub helo: Option<String>,
    pub tls: Option<TlsInfo>,
    /// Set by AUTH on the submission ports; always `None` on port 25.
    pub authenticated: Option<Address>,
}

/// The answer for a sender (`MAIL FROM`); the null sender is never asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderVerdict {
    Accept,
    /// The domain has no MX/A/AAAA: 550 5.1.8 (Postfix `reject_unknown_sender_domain`).
    UnknownDomain,
    /// DNS failed: 450 4.1.8, never 550 — a resolver hiccup must not bounce real mail.
    TempFail,
    /// Submission: the authenticated account may not use this address (553 5.7.1).
    NotOwned,
}

/// The answer for a recipient (`RCPT TO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientVerdict {
    /// Ours: deliver into these mailboxes (canonical account addresses) and forward to
    /// these remote addresses (alias targets outside our domains).
    Accept { mailboxes: Vec<Address>, forwards: Vec<Address> },
    /// Our domain, nobody there: 550 5.1.1.
    Unknown,
    /// Not our domain and the client may not relay: 554 5.7.1.
    RelayDenied,
    /// Every mailbox behind the address is over quota: 452 4.2.2.
    OverQuota,
    /// Submission: the sender used up `MAILROOM_RECIPIENTS_PER_HOUR`: 451 4.7.1.
    HourlyLimit,
    /// Cannot take it now (lookup error, no queue for remote copies yet): 451 4.3.0 with
    /// this text.
    TempFail(&'static str),
}

/// Recipient and sender decisions, supplied by the server (accounts + DNS + store) and by
/// tests (a table). Futures are `Send` so sessions can run on any tokio worker.
pub trait Policy: Send + Sync {
    fn check_sender(&self, client: &ClientInfo, sender: &Mailbox) -> impl Future<Output = SenderVerdict> + Send;
    fn check_recipient(
        &self,
        client: &ClientInfo,
        recipient: &Address,
    ) -> impl Future<Output = RecipientVerdict> + Send;
}

/// The reply whenever the data dir is (nearly) full: at MAIL while free space is below
/// `MAILROOM_DISK_MIN_FREE`, and after DATA when a write found the disk full. Temporary,
/// so the sender keeps the message and retries.
pub fn disk_full_reply() -> Status {
    Status::new(452, (4, 3, 1), "Error: insufficient system storage, try again later")
}

/// Where the dialogue is (RFC 5321 §4.1.4 command order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Banner sent, no EHLO/HELO/LHLO yet (also right after STARTTLS).
    Greeted,
    /// Greeted by the client, no transaction.
    Ready,
    /// MAIL accepted, no recipient yet.
    MailFrom,
    /// At least one recipient accepted.
    RcptTo,
    /// 354 sent; the server is reading content up to `CRLF.CRLF`.
    Data,
    /// BDAT chunks are being received (RFC 3030); only BDAT, RSET, NOOP, QUIT are useful.
    Chunking,
}

/// What the connection must do after sending the replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the next command.
    Continue,
    /// Read message content up to `CRLF.CRLF`, then call [`Session::end_of_message`].
    ReadData,
    /// Read exactly `size` octets. If `accepted`, they belong to the message; otherwise
    /// discard them and send [`Session::chunk_refused`]'s reply. Then, for an accepted
    /// chunk, call [`Session::chunk_received`].
    ReadChunk { size: u64, last: bool, accepted: bool },
    /// Send the replies, discard any buffered input, do the TLS handshake, then call
    /// [`Session::tls_started`] (RFC 3207 §4.2, CVE-2011-0411).
    StartTls,
    /// Send the replies and close.
    Close,
    /// Submission: run the SASL exchange (RFC 4954) for this mechanism, then call
    /// [`Session::auth_finished`].
    Auth { mechanism: super::sasl::Mechanism, initial: Option<String> },
}

/// An accepted recipient of the current transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedRecipient {
    /// The normalised `RCPT TO` address.
    pub address: Address,
    pub mailboxes: Vec<Address>,
    pub forwards: Vec<Address>,
}

/// Everything delivery needs about one message except its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The transaction's message id (appears in every log line and in `Received:`).
    pub id: String,
    pub sender: ReversePath,
    /// In RCPT order, duplicates kept (LMTP answers each one).
    pub recipients: Vec<AcceptedRecipient>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    /// RFC 8689 `REQUIRETLS` was given: remote copies leave only over TLS with a
    /// validated certificate, to a host that supports REQUIRETLS too.
    pub require_tls: bool,
}

/// What to do with a complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOfMessage {
    /// Deliver, then report per-recipient results to [`Session::delivered`].
    Deliver(Envelope),
    /// Refused (e.g. too big): send these replies; the transaction is already reset.
    Refuse(Vec<Status>),
}

#[derive(Debug, Clone)]
struct Transaction {
    id: String,
    mail: MailFrom,
    recipients: Vec<AcceptedRecipient>,
    /// A BDAT chunk was refused; the following ones are refused too until RSET/LAST.
    chunk_failed: bool,
    /// RCPTs refused with 452 4.5.3 in this transaction (see [`RECIPIENT_OVERSHOOT`]).
    overshoot: u32,
}

/// How many recipients past the limit are answered 452 4.5.3 as plain flow control before
/// each further one counts as an error (Postfix `smtpd_recipient_overshoot_limit`): a
/// client pipelining 150 recipients is legitimate, one sending RCPT forever is not.
pub const RECIPIENT_OVERSHOOT: u32 = 1000;

/// One SMTP/LMTP session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    client: ClientInfo,
    state: SessionState,
    esmtp: bool,
    tx: Option<Transaction>,
    errors: u32,
    junk: u32,
    /// Reply owed after a refused BDAT chunk has been read and discarded.
    pending_chunk_error: Option<Status>,
    /// Why the MAIL or RCPT just answered was refused ([`Session::take_refusal`]).
    refusal: Option<Refusal>,
}

const HELP_TEXT: &str = "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH (RFC 5321)";

impl Session {
    pub fn new(config: SessionConfig, client: ClientInfo) -> Session {
        Session {
            config,
            client,
            state: SessionState::Greeted,
            esmtp: false,
            tx: None,
            errors: 0,
            junk: 0,
            pending_chunk_error: None,
            refusal: None,
        }
    }

    /// Why the last MAIL or RCPT was refused, once: the transaction metrics' reason.
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }

    /// Refuse the MAIL or RCPT being handled for `reason`.
    fn refuse(&mut self, reason: Refusal, reply: Status) -> (Vec<Status>, Action) {
        self.refusal = Some(reason);
        self.finish(vec![reply], Action::Continue)
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn client(&self) -> &ClientInfo {
        &self.client
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The client greeted with EHLO/LHLO (not HELO): `Received: with ESMTP` vs `SMTP`.
    pub fn is_esmtp(&self) -> bool {
        self.esmtp
    }

    /// The current transaction's message id, for log spans.
    pub fn message_id(&self) -> Option<&str> {
        self.tx.as_ref().map(|t| t.id.as_str())
    }

    /// The current transaction's envelope sender, once MAIL FROM was accepted.
    pub fn sender(&self) -> Option<&ReversePath> {
        self.tx.as_ref().map(|t| &t.mail.path)
    }

    /// The `SIZE=` the client declared for the current message, if any (spool sizing).
    pub fn declared_size(&self) -> Option<u64> {
        self.tx.as_ref().and_then(|t| t.mail.size)
    }

    /// `220 <hostname> ESMTP` (or `LMTP`): the greeting carries no enhanced code (RFC 2034 §3).
    pub fn banner(&self) -> Status {
        let proto = match self.config.mode {
            SmtpMode::Mx | SmtpMode::Submission => "ESMTP",
            SmtpMode::Lmtp => "LMTP",
        };
        Status::plain(220, format!("{} {proto}", self.config.hostname))
    }

    /// Parse and handle one command line (without framing: the server found the line).
    pub async fn handle_line<P: Policy>(&mut self, line: &[u8], policy: &P) -> (Vec<Status>, Action) {
        match parse_command(line) {
            Ok(cmd) => self.handle(cmd, policy).await,
            Err(e) => self.parse_error(&e),
        }
    }

    /// A command line that did not parse.
    pub fn parse_error(&mut self, e: &CommandError) -> (Vec<Status>, Action) {
        self.finish(vec![e.reply()], Action::Continue)
    }

    /// A command line longer than `max_line` (RFC 5321 §4.5.3.1.4/§4.5.3.1.10: 500).
    pub fn line_too_long(&mut self) -> (Vec<Status>, Action) {
        self.finish(vec![Status::new(500, (5, 5, 2), "Error: line too long")], Action::Continue)
    }

    /// The client was silent too long (RFC 5321 §4.5.3.2): 421 and close.
    pub fn timeout(&mut self) -> (Vec<Status>, Action) {
        let text = format!("{} Error: timeout exceeded", self.config.hostname);
        (vec![Status::new(421, (4, 4, 2), text)], Action::Close)
    }

    /// The server is shutting down (RFC 5321 §3.8: 421 at any point).
    pub fn shutdown(&mut self) -> (Vec<Status>, Action) {
        let text = format!("{} Service shutting down, try again later", self.config.hostname);
        (vec![Status::new(421, (4, 3, 2), text)], Action::Close)
    }

    /// Handle one parsed command.
    pub async fn handle<P: Policy>(&mut self, cmd: Command, policy: &P) -> (Vec<Status>, Action) {
        // RFC 3030 §2: once BDAT started, only BDAT, RSET, NOOP and QUIT may follow.
        if self.state == SessionState::Chunking
            && !matches!(cmd, Command::Bdat { .. } | Command::Rset | Command::Noop | Command::Quit)
        {
            let r = Status::new(503, (5, 5, 1), "Error: only BDAT, RSET, NOOP or QUIT during BDAT");
            return self.finish(vec![r], Action::Continue);
        }
        match cmd {
            Command::Ehlo(name) => self.greeting(name, true, false),
            Command::Helo(name) => self.greeting(name, false, false),
            Command::Lhlo(name) => self.greeting(name, true, true),
            Command::Mail(mail) => self.mail(mail, policy).await,
            Command::Rcpt(rcpt) => self.rcpt(rcpt.path, policy).await,
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.reset_transaction();
                self.junk(Status::new(250, (2, 0, 0), "Ok"))
            }
            Command::Noop => self.junk(Status::new(250, (2, 0, 0), "Ok")),
            Command::Quit => {
                let text = format!("{} closing connection", self.config.hostname);
                (vec![Status::new(221, (2, 0, 0), text)], Action::Close)
            }
            // RFC 5321 §3.5.3: 252 when we will not verify; no user enumeration.
            Command::Vrfy(_) => {
                self.junk(Status::new(252, (2, 1, 5), "Cannot VRFY user, but will accept message and attempt delivery"))
            }
            Command::Help(_) => self.junk(Status::new(214, (2, 0, 0), HELP_TEXT)),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial_response } => self.auth(&mechanism, initial_response),
        }
    }

    /// Count errors and non-progress; past a limit, add 421 and close (the caller's
    /// replies are still sent first so the client sees why).
    fn finish(&mut self, mut replies: Vec<Status>, action: Action) -> (Vec<Status>, Action) {
        // 452 4.5.3 (too many recipients) is flow control the client expects, not abuse,
        // up to the overshoot limit.
        let overshooting = self.tx.as_ref().is_some_and(|t| t.overshoot > RECIPIENT_OVERSHOOT);
        let flow_control = |r: &&Status| r.enhanced == Some(super::status::Enhanced(4, 5, 3)) && !overshooting;
        let errors = replies.iter().filter(|r| r.is_error() && !flow_control(r)).count() as u32;
        self.errors = self.errors.saturating_add(errors);
        if self.errors >= self.config.limits.max_errors && action != Action::Close {
            let text = format!("{} Error: too many errors", self.config.hostname);
            replies.push(Status::new(421, (4, 7, 0), text));
            return (replies, Action::Close);
        }
        (replies, action)
    }

    /// A command that makes no progress toward a delivered message.
    fn junk(&mut self, reply: Status) -> (Vec<Status>, Action) {
        self.junk = self.junk.saturating_add(1);
        if self.junk > self.config.limits.max_junk_commands {
            let text = format!("{} Error: too many commands without progress", self.config.hostname);
            return (vec![reply, Status::new(421, (4, 7, 0), text)], Action::Close);
        }
        self.finish(vec![reply], Action::Continue)
    }

    fn reset_transaction(&mut self) {
        self.tx = None;
        if self.state != SessionState::Greeted {
            self.state = SessionState::Ready;
        }
    }

    fn greeting(&mut self, name: String, extended: bool, lhlo: bool) -> (Vec<Status>, Action) {
        let lmtp = self.config.mode == SmtpMode::Lmtp;
        if lmtp != lhlo {
            // RFC 2033 §4.1: LMTP has no HELO/EHLO; SMTP has no LHLO.
            let r = if lmtp {
                Status::new(500, (5, 5, 1), "Error: this is LMTP, use LHLO")
            } else {
                Status::new(500, (5, 5, 2), "Error: command not recognized")
            };
            return self.finish(vec![r], Action::Continue);
        }
        if self.client.helo.is_some() {
            // A second greeting is harmless but makes no progress.
            self.junk = self.junk.saturating_add(1);
        }
        // RFC 5321 §4.1.4: a greeting in mid-transaction resets it.
        self.tx = None;
        self.state = SessionState::Ready;
        self.esmtp = extended;
        self.client.helo = Some(name);
        let hostname = self.config.hostname.clone();
        if !extended {
            return (vec![Status::plain(250, hostname)], Action::Continue);
        }
        let mut lines = vec![hostname];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.config.limits.max_message_size));
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        if self.config.tls_available && self.client.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        // RFC 8689: a message may ask for TLS on every hop only over a hop that has it.
        if self.client.tls.is_some() && self.config.mode != SmtpMode::Lmtp {
            lines.push("REQUIRETLS".into());
        }
        // RFC 4954 §4 / RFC 8314: never offer passwords over plaintext. The second,
        // pre-standard `AUTH=` line is for old Outlook versions (Postfix
        // `broken_sasl_auth_clients`).
        if self.config.mode == SmtpMode::Submission && self.client.tls.is_some() && self.client.authenticated.is_none()
        {
            lines.push(format!("AUTH {}", super::sasl::MECHANISMS));
            lines.push(format!("AUTH={}", super::sasl::MECHANISMS));
        }
        lines.push("CHUNKING".into());
        (vec![Status::lines(250, lines)], Action::Continue)
    }

    fn starttls(&mut self) -> (Vec<Status>, Action) {
        let r = if self.client.tls.is_some() {
            Status::new(554, (5, 5, 1), "Error: TLS already active")
        } else if !self.config.tls_available {
            Status::new(502, (5, 5, 1), "Error: command not implemented")
        } else if self.tx.is_some() {
            Status::new(503, (5, 5, 1), "Error: MAIL transaction in progress")
        } else {
            return (vec![Status::new(220, (2, 0, 0), "Ready to start TLS")], Action::StartTls);
        };
        self.finish(vec![r], Action::Continue)
    }

    /// After a successful handshake: forget everything learnt in plaintext, the client
    /// must greet again (RFC 3207 §4.2).
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.client.tls = Some(info);
        self.client.helo = None;
        self.tx = None;
        self.esmtp = false;
        self.state = SessionState::Greeted;
    }

    /// Submission hook: the AUTH exchange (run by the server, since it needs
    /// more lines from the client) succeeded for `account`. Policy then sees
    /// `ClientInfo::authenticated` (relaying allowed, sender checks skipped) and
    /// `Received:` says ESMTPA/ESMTPSA.
    pub fn set_authenticated(&mut self, account: Address) {
        self.client.authenticated = Some(account);
    }

    /// `AUTH mech [initial]` (RFC 4954 §4): checks of order and TLS here; the exchange
    /// is the server's ([`Action::Auth`]).
    fn auth(&mut self, mechanism: &str, initial: Option<String>) -> (Vec<Status>, Action) {
        let r = if self.config.mode != SmtpMode::Submission {
            // Port 25 and LMTP offer no AUTH (interface.md).
            Status::new(503, (5, 5, 1), "Error: authentication not enabled")
        } else if self.state == SessionState::Greeted {
            Status::new(503, (5, 5, 1), "Error: send EHLO first")
        } else if self.client.authenticated.is_some() {
            Status::new(503, (5, 5, 1), "Error: already authenticated")
        } else if self.tx.is_some() {
            Status::new(503, (5, 5, 1), "Error: MAIL transaction in progress")
        } else if self.client.tls.is_none() {
            // RFC 4954 §6 / RFC 3207: no passwords in plaintext.
            Status::new(538, (5, 7, 11), "Error: must issue a STARTTLS command first")
        } else {
            match super::sasl::Mechanism::parse(mechanism) {
                Some(mechanism) => return (Vec::new(), Action::Auth { mechanism, initial }),
                None => Status::new(504, (5, 5, 4), "Error: unsupported authentication mechanism"),
            }
        };
        self.finish(vec![r], Action::Continue)
    }

    /// The SASL exchange ended: `Ok(account)` logs the client in (235); `Err(reply)` is
    /// the failure to send (535 after a wrong password, 501 when cancelled), counted as
    /// an error so a guessing client is disconnected after `max_errors`.
    pub fn auth_finished(&mut self, result: Result<Address, Status>) -> (Vec<Status>, Action) {
        match result {
            Ok(account) => {
                self.client.authenticated = Some(account);
                self.junk = 0;
                (vec![Status::new(235, (2, 7, 0), "Authentication successful")], Action::Continue)
            }
            Err(r) => self.finish(vec![r], Action::Continue),
        }
    }

    async fn mail<P: Policy>(&mut self, mail: MailFrom, policy: &P) -> (Vec<Status>, Action) {
        let r = match self.state {
            SessionState::Greeted => Some(Status::new(503, (5, 5, 1), "Error: send HELO/EHLO first")),
            SessionState::Ready if self.config.mode == SmtpMode::Submission && self.client.authenticated.is_none() => {
                // RFC 4954 §6: submission requires authentication.
                return self.refuse(Refusal::Auth, Status::new(530, (5, 7, 0), "Error: authentication required"));
            }
            SessionState::Ready => None,
            _ => Some(Status::new(503, (5, 5, 1), "Error: nested MAIL command")),
        };
        if let Some(r) = r {
            return self.finish(vec![r], Action::Continue);
        }
        if self.config.limits.disk.is_low() {
            // RFC 3463 4.3.1 "mail system full"; 452 is RFC 5321's "insufficient system
            // storage". Not counted as a client error: the client did nothing wrong.
            self.refusal = Some(Refusal::Local);
            return (vec![disk_full_reply()], Action::Continue);
        }
        if mail.body == Some(BodyType::BinaryMime) {
            // Not advertised: we normalise line endings, which would corrupt binary (data.rs).
            let r = Status::new(555, (5, 5, 4), "Error: BINARYMIME is not supported");
            return self.refuse(Refusal::Syntax, r);
        }
        if mail.require_tls && (self.client.tls.is_none() || self.config.mode == SmtpMode::Lmtp) {
            let r = Status::new(530, (5, 7, 10), "Error: REQUIRETLS needs a TLS session");
            return self.refuse(Refusal::TlsRequired, r);
        }
        if let Some(size) = mail.size
            && size > self.config.limits.max_message_size
        {
            let r = Status::new(552, (5, 3, 4), "Error: message size exceeds fixed limit");
            return self.refuse(Refusal::Size, r);
        }
        if let ReversePath::Mailbox(mb) = &mail.path {
            if mb.needs_smtputf8() && !mail.smtputf8 {
                // RFC 6531 §3.7.4.
                let r = Status::new(553, (5, 6, 7), "Error: non-ASCII sender needs SMTPUTF8");
                return self.refuse(Refusal::Syntax, r);
            }
            let verdict = policy.check_sender(&self.client, mb).await;
            let reason = Refusal::of_sender(&verdict);
            let r = match verdict {
                SenderVerdict::Accept => None,
                SenderVerdict::UnknownDomain => Some(Status::new(
                    550,
                    (5, 1, 8),
                    format!("<{}>: Sender address rejected: Domain not found", mb.raw),
                )),
                SenderVerdict::TempFail => Some(Status::new(
                    450,
                    (4, 1, 8),
                    format!("<{}>: Sender address rejected: Domain lookup failed", mb.raw),
                )),
                SenderVerdict::NotOwned => Some(Status::new(
                    553,
                    (5, 7, 1),
                    format!("<{}>: Sender address rejected: not owned by the authenticated user", mb.raw),
                )),
            };
            if let Some(r) = r {
                return self.refuse(reason, r);
            }
        }
        self.tx =
            Some(Transaction { id: new_message_id(), mail, recipients: Vec::new(), chunk_failed: false, overshoot: 0 });
        self.state = SessionState::MailFrom;
        (vec![Status::new(250, (2, 1, 0), "Ok")], Action::Continue)
    }

    async fn rcpt<P: Policy>(&mut self, path: ForwardPath, policy: &P) -> (Vec<Status>, Action) {
        let Some(tx) = self.tx.as_mut() else {
            let r = Status::new(503, (5, 5, 1), "Error: need MAIL command");
            return self.finish(vec![r], Action::Continue);
        };
        if tx.recipients.len() >= self.config.limits.max_recipients {
            tx.overshoot = tx.overshoot.saturating_add(1);
            let r = Status::new(452, (4, 5, 3), "Error: too many recipients");
            return self.refuse(Refusal::TooManyRecipients, r);
        }
        let address = match path {
            ForwardPath::Postmaster => {
                Address { local: "postmaster".into(), domain: self.config.primary_domain.clone() }
            }
            ForwardPath::Mailbox(mb) => {
                if mb.needs_smtputf8() && !tx.mail.smtputf8 {
                    let r = Status::new(553, (5, 6, 7), "Error: non-ASCII recipient needs SMTPUTF8");
                    return self.refuse(Refusal::Syntax, r);
                }
                mb.address
            }
        };
        let verdict = policy.check_recipient(&self.client, &address).await;
        let reason = Refusal::of_recipient(&verdict);
        let r = match verdict {
            RecipientVerdict::Accept { mailboxes, forwards } => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.recipients.push(AcceptedRecipient { address, mailboxes, forwards });
                }
                self.state = SessionState::RcptTo;
                return (vec![Status::new(250, (2, 1, 5), "Ok")], Action::Continue);
            }
            RecipientVerdict::Unknown => {
                Status::new(550, (5, 1, 1), format!("<{address}>: Recipient address rejected: User unknown"))
            }
            RecipientVerdict::RelayDenied => Status::new(554, (5, 7, 1), format!("<{address}>: Relay access denied")),
            RecipientVerdict::OverQuota => {
                Status::new(452, (4, 2, 2), format!("<{address}>: Mailbox full, try again later"))
            }
            RecipientVerdict::TempFail(why) => Status::new(451, (4, 3, 0), format!("<{address}>: {why}")),
            RecipientVerdict::HourlyLimit => {
                Status::new(451, (4, 7, 1), format!("<{address}>: too many recipients this hour, try again later"))
            }
        };
        self.refuse(reason, r)
    }

    /// Checks shared by DATA and the first BDAT: a transaction with recipients.
    fn ready_for_content(&self) -> Option<Status> {
        match self.state {
            SessionState::Greeted | SessionState::Ready => {
                Some(Status::new(503, (5, 5, 1), "Error: need MAIL command"))
            }
            SessionState::MailFrom => Some(Status::new(554, (5, 5, 1), "Error: no valid recipients")),
            SessionState::RcptTo | SessionState::Chunking => None,
            SessionState::Data => Some(Status::new(503, (5, 5, 1), "Error: bad sequence of commands")),
        }
    }

    fn data(&mut self) -> (Vec<Status>, Action) {
        if let Some(r) = self.ready_for_content() {
            return self.finish(vec![r], Action::Continue);
        }
        self.state = SessionState::Data;
        (vec![Status::plain(354, "End data with <CR><LF>.<CR><LF>")], Action::ReadData)
    }

    fn bdat(&mut self, size: u64, last: bool) -> (Vec<Status>, Action) {
        let refusal = match self.ready_for_content() {
            Some(r) => Some(r),
            None if self.tx.as_ref().is_some_and(|t| t.chunk_failed) => {
                Some(Status::new(503, (5, 5, 1), "Error: previous chunk failed, send RSET"))
            }
            None => None,
        };
        if let Some(r) = refusal {
            // RFC 3030 §2: the octets are sent anyway; read and drop them, then answer.
            if let Some(tx) = self.tx.as_mut() {
                tx.chunk_failed = true;
            }
            self.pending_chunk_error = Some(r);
            return (Vec::new(), Action::ReadChunk { size, last, accepted: false });
        }
        self.state = SessionState::Chunking;
        (Vec::new(), Action::ReadChunk { size, last, accepted: true })
    }

    /// The octets of a refused chunk were discarded: now send the refusal.
    pub fn chunk_refused(&mut self) -> (Vec<Status>, Action) {
        let r = self
            .pending_chunk_error
            .take()
            .unwrap_or_else(|| Status::new(503, (5, 5, 1), "Error: bad sequence of commands"));
        self.finish(vec![r], Action::Continue)
    }

    /// A non-LAST chunk arrived in full (RFC 3030: 250 per chunk).
    pub fn chunk_received(&mut self, size: u64) -> (Vec<Status>, Action) {
        (vec![Status::new(250, (2, 0, 0), format!("{size} octets received"))], Action::Continue)
    }

    /// The content ended (DATA terminator or BDAT LAST). `size` is the normalised size;
    /// `exceeded` when it passed the limit and was discarded.
    pub fn end_of_message(&mut self, size: u64, exceeded: bool) -> EndOfMessage {
        let Some(tx) = self.tx.take() else {
            self.state = SessionState::Ready;
            return EndOfMessage::Refuse(vec![Status::new(503, (5, 5, 1), "Error: no transaction")]);
        };
        self.state = SessionState::Ready;
        if exceeded || size > self.config.limits.max_message_size {
            let r = Status::new(552, (5, 3, 4), "Error: message size exceeds fixed limit");
            let replies = match self.config.mode {
                SmtpMode::Mx | SmtpMode::Submission => vec![r],
                // RFC 2033 §4.2: after the content, one reply per accepted recipient.
                SmtpMode::Lmtp => vec![r; tx.recipients.len()],
            };
            let (replies, _) = self.finish(replies, Action::Continue);
            return EndOfMessage::Refuse(replies);
        }
        EndOfMessage::Deliver(Envelope {
            id: tx.id,
            sender: tx.mail.path,
            recipients: tx.recipients,
            body: tx.mail.body,
            smtputf8: tx.mail.smtputf8,
            require_tls: tx.mail.require_tls,
        })
    }

    /// Delivery finished: `outcomes[i]` is the result for `envelope.recipients[i]`
    /// (`Ok` only when every copy is durable). SMTP gets one reply (250 only if all
    /// succeeded, else the first failure: a retry may duplicate, never lose); LMTP gets
    /// one per recipient.
    pub fn delivered(&mut self, envelope: &Envelope, outcomes: &[Result<(), Status>]) -> (Vec<Status>, Action) {
        let all_ok = outcomes.iter().all(Result::is_ok);
        if all_ok {
            self.junk = 0;
        }
        let replies = match self.config.mode {
            SmtpMode::Mx | SmtpMode::Submission => {
                let r = match outcomes.iter().find_map(|o| o.as_ref().err()) {
                    None => Status::new(250, (2, 0, 0), format!("Ok: queued as {}", envelope.id)),
                    Some(e) => e.clone(),
                };
                vec![r]
            }
            SmtpMode::Lmtp => envelope
                .recipients
                .iter()
                .zip(outcomes)
                .map(|(rcpt, o)| match o {
                    Ok(()) => {
                        Status::new(250, (2, 0, 0), format!("<{}> Ok: delivered as {}", rcpt.address, envelope.id))
                    }
                    Err(e) => e.clone(),
                })
                .collect(),
        };
        self.finish(replies, Action::Continue)
    }
}

/// A new message id: 12 characters of RFC 4648 base32 (60 random bits), short enough to
/// grep and type, unique enough for one server's logs.
pub fn new_message_id() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut n: u64 = rand::random();
    let mut id = String::with_capacity(12);
    for _ in 0..12 {
        id.push(ALPHABET[(n & 31) as usize] as char);
        n >>= 5;
    }
    id
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
