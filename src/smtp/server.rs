//! One SMTP/LMTP/submission connection from banner to close: buffered reads, line
//! framing, pipelined replies, DATA/BDAT content, STARTTLS (or implicit TLS on 465),
//! timeouts, shutdown. The AUTH exchange is decided by `auth.rs` and what happens to a
//! complete message (checks, submission's rules and DKIM, the queue, local copies) by
//! `accept.rs`; this file sends and reads the bytes for both.
//!
//! The loop is mini-redis's `Handler::run`: check for a complete frame in the buffer,
//! otherwise flush pending replies and read more (with the per-command timeout, watching
//! the shutdown signal). Replies are flushed only when we are about to wait for the
//! client, which is exactly RFC 2920's rule for PIPELINING.
//!
//! STARTTLS (RFC 3207): after `220` is flushed, every byte the client sent in plaintext
//! after the STARTTLS line is thrown away before the handshake, and the session forgets
//! the greeting and transaction. That closes the command-injection hole of
//! CVE-2011-0411 (`STARTTLS\r\nRSET\r\n` in one packet must not run RSET over TLS).
//!
//! Every decision is the session's (`session.rs`); this file only moves bytes and calls
//! the store. Log lines of a transaction carry its message id (span field `msgid`).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use crate::accounts::Directory;
use crate::maillog::{self, Mail};
use crate::metrics::metrics;
use crate::net::stall;
use crate::store::Store;

use super::accept::{accept, sender_text};
use super::auth::{Exchange, Step, check_password};
use super::command::{Command, parse_command};
use super::data::{ChunkDecoder, DataDecoder};
use super::deadline::{LineDeadline, TransferDeadline};
use super::deliver::Spool;
use super::framing::{Frame, LineFramer};
use super::outcome::TransactionMeter;
use super::policy::{DirectoryPolicy, SenderDomainCheck};
use super::refusal::Refusal;
use super::sasl::{self, Mechanism, SaslError};
use super::session::{
    Action, ClientInfo, EndOfMessage, Session, SessionConfig, SessionState, SmtpLimits, SmtpMode, TlsInfo,
};
use super::status::{Code, Enhanced, Status};
use super::stream::Stream;

/// Everything a listener's sessions share. Built once by `app.rs`.
pub struct SmtpContext {
    pub hostname: String,
    pub directory: Arc<Directory>,
    pub store: Store,
    /// `None`: STARTTLS is not offered.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limits: SmtpLimits,
    pub trusted_networks: Vec<IpNet>,
    pub sender_domains: Arc<dyn SenderDomainCheck>,
    /// `<data>/state/spool`: large messages while they arrive.
    pub spool_dir: PathBuf,
    pub mode: SmtpMode,
    /// Port 465 (RFC 8314): the TLS handshake comes before the banner.
    pub implicit_tls: bool,
    /// The outbound queue for remote copies; `None`: they are refused with 451.
    pub queue: Option<crate::queue::Queue>,
    /// DKIM signers for submitted mail from our domains.
    pub signers: Option<Arc<crate::mailauth::Signers>>,
    /// Slows password guessing on the submission ports.
    /// The login and message-rate limiter shared with IMAP and POP3.
    pub limiter: Arc<crate::net::Limiter>,
    /// Port 25's authentication and content checks (`None`: deliver unjudged, e.g. LMTP).
    pub inbound: Option<Arc<super::inbound::InboundChecks>>,
    /// The server-wide budget for messages held whole in memory by checks and signing.
    pub memory: crate::net::MessageMemory,
    /// Where local copies go (the same store as `store`, which the policy reads quotas from).
    pub courier: super::courier::LocalCourier,
    /// The status page's ring of recent deliveries and refusals (`None`: not recorded).
    pub recent: Option<Arc<crate::status::RecentEvents>>,
}

/// Serve one accepted connection until QUIT, error, timeout or shutdown.
pub async fn serve_connection(
    ctx: Arc<SmtpContext>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let service = service_name(&ctx);
    let span = tracing::info_span!("smtp", service, client = %peer.ip());
    let active = metrics().smtp_sessions_active.with_label_values(&[service]);
    active.inc();
    let mut conn = SmtpConnection::new(ctx, stream, peer, shutdown, span.clone());
    match conn.run().instrument(span.clone()).await {
        Ok(()) => {}
        Err(e) => span.in_scope(|| tracing::debug!(error = %e, "connection ended with an error")),
    }
    let _ = conn.stream.shutdown().await;
    active.dec();
}

pub(super) fn service_name(ctx: &SmtpContext) -> &'static str {
    match ctx.mode {
        SmtpMode::Mx => "smtp",
        SmtpMode::Lmtp => "lmtp",
        SmtpMode::Submission if ctx.implicit_tls => "submissions",
        SmtpMode::Submission => "submission",
    }
}

/// Outcome of waiting for client bytes.
enum Fill {
    Data,
    Eof,
    Timeout,
    Shutdown,
}

/// Content of a BDAT transaction in progress.
struct Chunks {
    decoder: ChunkDecoder,
    spool: Spool,
    /// One deadline for all chunks of the message (time spent on BDAT lines counts).
    transfer: TransferDeadline,
}

struct SmtpConnection {
    ctx: Arc<SmtpContext>,
    policy: DirectoryPolicy,
    session: Session,
    stream: Stream,
    buf: BytesMut,
    out: Vec<u8>,
    framer: LineFramer,
    /// The current command line's deadline (from its first byte).
    line_deadline: LineDeadline,
    shutdown: watch::Receiver<bool>,
    span: tracing::Span,
    /// The span of the current transaction (`msgid` field), keyed by its id.
    tx_span: Option<(String, tracing::Span)>,
    chunks: Option<Chunks>,
    transactions: TransactionMeter,
}

/// One client answer during AUTH.
enum AuthLine {
    Line(BytesMut),
    /// Over the line limit: the exchange fails with 500.
    TooLong,
    /// EOF, timeout or shutdown: close.
    Gone,
}

/// How much we ask the socket for at a time.
const READ_SIZE: usize = 64 * 1024;

impl SmtpConnection {
    fn new(
        ctx: Arc<SmtpContext>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        span: tracing::Span,
    ) -> SmtpConnection {
        let config = SessionConfig {
            hostname: ctx.hostname.clone(),
            primary_domain: ctx.directory.domains().first().cloned().unwrap_or_else(|| ctx.hostname.clone()),
            mode: ctx.mode,
            limits: ctx.limits.clone(),
            tls_available: ctx.tls.is_some(),
        };
        let client = ClientInfo { ip: peer.ip(), helo: None, tls: None, authenticated: None };
        let policy = DirectoryPolicy {
            directory: ctx.directory.clone(),
            store: ctx.store.clone(),
            trusted_networks: ctx.trusted_networks.clone(),
            sender_domains: ctx.sender_domains.clone(),
            mode: ctx.mode,
            can_queue: ctx.queue.is_some(),
            srs: ctx.inbound.as_ref().map(|i| i.srs.clone()),
            limiter: ctx.limiter.clone(),
        };
        let framer = LineFramer::new(ctx.limits.max_line);
        let transactions = TransactionMeter::new(service_name(&ctx));
        SmtpConnection {
            ctx,
            policy,
            session: Session::new(config, client),
            stream: Stream::Plain(stream),
            buf: BytesMut::with_capacity(READ_SIZE),
            out: Vec::with_capacity(4096),
            framer,
            line_deadline: LineDeadline::default(),
            shutdown,
            span,
            tx_span: None,
            chunks: None,
            transactions,
        }
    }

    fn service(&self) -> &'static str {
        service_name(&self.ctx)
    }

    /// The span for log lines now: the transaction's if one is open.
    fn current_span(&mut self) -> tracing::Span {
        match self.session.message_id() {
            None => self.span.clone(),
            Some(id) => {
                if self.tx_span.as_ref().map(|(i, _)| i.as_str()) != Some(id) {
                    let s = tracing::info_span!(parent: &self.span, "tx", msgid = %id);
                    self.tx_span = Some((id.to_string(), s));
                }
                match &self.tx_span {
                    Some((_, s)) => s.clone(),
                    None => self.span.clone(),
                }
            }
        }
    }

    fn push(&mut self, replies: &[Status]) {
        for r in replies {
            r.render_into(&mut self.out);
        }
    }

    /// Write the queued replies, within the write timeout.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            stall::write_and_flush(&mut self.stream, &self.out, self.ctx.limits.write_timeout).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Flush replies, then wait up to `timeout` for more bytes (zero: time is up, do not
    /// even look, or a client trickling bytes would always find one).
    async fn fill(&mut self, timeout: Duration, watch_shutdown: bool) -> io::Result<Fill> {
        self.flush().await?;
        if watch_shutdown && *self.shutdown.borrow() {
            return Ok(Fill::Shutdown);
        }
        if timeout.is_zero() {
            return Ok(Fill::Timeout);
        }
        self.buf.reserve(READ_SIZE);
        let read = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf));
        let result = if watch_shutdown {
            tokio::select! {
                r = read => r,
                _ = self.shutdown.changed() => return Ok(Fill::Shutdown),
            }
        } else {
            read.await
        };
        match result {
            Err(_) => Ok(Fill::Timeout),
            Ok(Ok(0)) => Ok(Fill::Eof),
            Ok(Ok(_)) => Ok(Fill::Data),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn run(&mut self) -> io::Result<()> {
        tracing::debug!("connected");
        if self.ctx.implicit_tls && !self.handshake().await? {
            return Ok(());
        }
        let banner = self.session.banner();
        self.push(&[banner]);
        loop {
            let (replies, action) = match self.framer.check(&self.buf) {
                Frame::Line(n) => {
                    self.line_deadline.finish();
                    let line = self.buf.split_to(n);
                    self.command(&line).await
                }
                Frame::Discard(n) => {
                    self.line_deadline.begin(Instant::now());
                    self.buf.advance(n);
                    continue;
                }
                Frame::TooLong(n) => {
                    self.line_deadline.finish();
                    self.buf.advance(n);
                    let refused = self.session.line_too_long();
                    self.logged(refused)
                }
                Frame::Incomplete => match self.fill_line().await? {
                    Fill::Data => continue,
                    Fill::Eof => {
                        tracing::debug!("client closed the connection");
                        return Ok(());
                    }
                    Fill::Timeout => {
                        let refused = self.session.timeout();
                        self.logged(refused)
                    }
                    Fill::Shutdown => {
                        let refused = self.session.shutdown();
                        self.logged(refused)
                    }
                },
            };
            self.push(&replies);
            if self.session.state() != SessionState::Chunking {
                self.chunks = None;
            }
            if !self.act(action).await? {
                self.flush().await?;
                return Ok(());
            }
        }
    }

    /// Wait for (the rest of) a command line: the command timeout, counted from the
    /// line's first byte (not reset by every byte, see `deadline`).
    async fn fill_line(&mut self) -> io::Result<Fill> {
        let wait = self.line_deadline.wait(!self.buf.is_empty(), self.ctx.limits.command_timeout, Instant::now());
        self.fill(wait, true).await
    }

    /// `replies` after logging their refusals.
    fn logged(&mut self, (replies, action): (Vec<Status>, Action)) -> (Vec<Status>, Action) {
        self.log_refusals(&replies);
        (replies, action)
    }

    /// Parse and handle one command line; count recipients in metrics; log refusals (a
    /// refused recipient in the mail log).
    async fn command(&mut self, line: &[u8]) -> (Vec<Status>, Action) {
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(e) => {
                let refused = self.session.parse_error(&e);
                return self.logged(refused);
            }
        };
        let rcpt = match &cmd {
            Command::Rcpt(r) => Some(match &r.path {
                super::command::ForwardPath::Postmaster => "postmaster".to_string(),
                super::command::ForwardPath::Mailbox(m) => m.address.to_string(),
            }),
            _ => None,
        };
        let verb = cmd.verb();
        let span = self.current_span();
        let (replies, action) = self.session.handle(cmd, &self.policy).instrument(span.clone()).await;
        self.count_transaction(verb, &replies);
        let rcpt_refused = if let Some(rcpt) = rcpt
            && let Some(r) = replies.first()
        {
            let outcome = rcpt_outcome(r);
            metrics().smtp_recipients_total.with_label_values(&[self.service(), outcome]).inc();
            if r.is_error() {
                let sender = self.session.sender().map(sender_text).unwrap_or_default();
                let msgid = self.session.message_id().unwrap_or_default();
                let mail = Mail { msgid, service: self.service(), from: &sender, size: 0 };
                span.in_scope(|| maillog::refused(&mail, &rcpt, r, Refusal::of_delivery(r)));
                if let Some(recent) = &self.ctx.recent {
                    recent.inbound(self.service(), self.session.client().ip, &sender, &[rcpt], false, r);
                }
            }
            r.is_error()
        } else {
            false
        };
        if !rcpt_refused {
            self.log_refusals(&replies);
        }
        if verb == "MAIL" && replies.first().is_some_and(Status::is_positive) {
            let span = self.current_span();
            span.in_scope(|| tracing::debug!(line = %String::from_utf8_lossy(line).trim_end(), "transaction started"));
        }
        (replies, action)
    }

    /// One log line per refusal, with the reply (its reason).
    /// Run the AUTH exchange (`auth.rs` decides, this sends `334`s and reads answers);
    /// `false`: close the connection.
    async fn authenticate(&mut self, mechanism: Mechanism, initial: Option<String>) -> io::Result<bool> {
        let initial = initial.map(|i| sasl::decode_response(i.as_bytes()));
        let (mut exchange, mut step) = Exchange::start(mechanism, initial);
        let credentials = loop {
            match step {
                Step::Done(credentials) => break credentials,
                Step::Challenge(text) => {
                    step = match self.challenge(text).await? {
                        AuthLine::Line(l) => exchange.answer(sasl::decode_response(&l)),
                        AuthLine::TooLong => exchange.answer(Err(SaslError::Malformed)),
                        AuthLine::Gone => return Ok(false),
                    }
                }
            }
        };
        let result = match credentials {
            Err(e) => {
                tracing::info!(mechanism = mechanism.name(), reason = %e, "authentication aborted");
                Err(e.reply())
            }
            Ok(c) => {
                let ip = self.session.client().ip;
                let via = crate::net::LoginVia::new(self.service(), mechanism.metric());
                check_password(&self.ctx.limiter, &self.ctx.directory, &self.ctx.store, via, ip, c).await
            }
        };
        let (replies, action) = self.session.auth_finished(result);
        self.log_refusals(&replies);
        self.push(&replies);
        Ok(action != Action::Close)
    }

    /// Send a `334` challenge and read the answer line.
    async fn challenge(&mut self, text: &str) -> io::Result<AuthLine> {
        self.out.extend_from_slice(format!("334 {text}\r\n").as_bytes());
        loop {
            match self.framer.check(&self.buf) {
                Frame::Line(n) => {
                    self.line_deadline.finish();
                    return Ok(AuthLine::Line(self.buf.split_to(n)));
                }
                Frame::Discard(n) => {
                    self.line_deadline.begin(Instant::now());
                    self.buf.advance(n);
                }
                Frame::TooLong(n) => {
                    self.line_deadline.finish();
                    self.buf.advance(n);
                    return Ok(AuthLine::TooLong);
                }
                Frame::Incomplete => match self.fill_line().await? {
                    Fill::Data => {}
                    Fill::Eof | Fill::Timeout | Fill::Shutdown => return Ok(AuthLine::Gone),
                },
            }
        }
    }

    fn log_refusals(&mut self, replies: &[Status]) {
        if !replies.iter().any(Status::is_error) {
            return;
        }
        let span = self.current_span();
        let _enter = span.enter();
        for r in replies.iter().filter(|r| r.is_error()) {
            tracing::info!(reply = %r, "refused");
        }
    }

    /// Carry out the session's action; `false` = close the connection.
    async fn act(&mut self, action: Action) -> io::Result<bool> {
        match action {
            Action::Continue => Ok(true),
            Action::Close => Ok(false),
            Action::StartTls => self.start_tls().await,
            Action::ReadData => self.read_data().await,
            Action::ReadChunk { size, last, accepted } => self.read_chunk(size, last, accepted).await,
            Action::Auth { mechanism, initial } => self.authenticate(mechanism, initial).await,
        }
    }

    async fn start_tls(&mut self) -> io::Result<bool> {
        self.flush().await?;
        // CVE-2011-0411: nothing the client pipelined in plaintext survives.
        self.buf.clear();
        self.framer.reset();
        self.line_deadline.finish();
        self.handshake().await
    }

    /// The TLS handshake on the plain stream; `false`: it failed, close.
    async fn handshake(&mut self) -> io::Result<bool> {
        let Some(acceptor) = self.ctx.tls.clone() else {
            return Ok(false);
        };
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Ok(false);
        };
        let handshake = tokio::time::timeout(self.ctx.limits.command_timeout, acceptor.accept(tcp)).await;
        let tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                metrics().tls_handshake_failures_total.with_label_values(&[self.service()]).inc();
                tracing::info!(error = %e, "TLS handshake failed");
                return Ok(false);
            }
            Err(_) => {
                metrics().tls_handshake_failures_total.with_label_values(&[self.service()]).inc();
                tracing::info!("TLS handshake timed out");
                return Ok(false);
            }
        };
        let (_, conn) = tls.get_ref();
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_string(),
        };
        let cipher =
            conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_else(|| "unknown".into());
        tracing::debug!(version = %version, cipher = %cipher, "TLS started");
        let label = crate::metrics::tls_version_label(conn.protocol_version());
        metrics().tls_sessions_total.with_label_values(&[self.service(), label]).inc();
        self.stream = Stream::Tls(Box::new(tls.into()));
        self.session.tls_started(TlsInfo { version, cipher });
        Ok(true)
    }

    async fn read_data(&mut self) -> io::Result<bool> {
        let id = self.session.message_id().unwrap_or("unknown").to_string();
        let mut decoder = DataDecoder::new(self.ctx.limits.max_message_size);
        let mut spool = Spool::new(&self.ctx.spool_dir, &id);
        let mut transfer =
            TransferDeadline::new(self.ctx.limits.command_timeout, self.ctx.limits.min_data_rate, Instant::now());
        let mut piece = Vec::with_capacity(READ_SIZE);
        loop {
            if !self.buf.is_empty() {
                piece.clear();
                let p = decoder.feed(&self.buf, &mut piece);
                spool.write(&piece).await;
                self.buf.advance(p.consumed);
                transfer.received(p.consumed);
                if p.done {
                    break;
                }
            }
            match self.fill(transfer.wait(self.ctx.limits.data_timeout, Instant::now()), false).await? {
                Fill::Data => {}
                Fill::Eof | Fill::Shutdown => {
                    tracing::info!(msgid = %id, "client disconnected during DATA");
                    return Ok(false);
                }
                Fill::Timeout => {
                    let (r, _) = self.session.timeout();
                    self.push(&r);
                    return Ok(false);
                }
            }
        }
        self.end_of_message(decoder.size(), decoder.exceeded(), spool).await
    }

    async fn read_chunk(&mut self, size: u64, last: bool, accepted: bool) -> io::Result<bool> {
        let limits = self.ctx.limits.clone();
        if accepted && self.chunks.is_none() {
            let id = self.session.message_id().unwrap_or("unknown").to_string();
            self.chunks = Some(Chunks {
                decoder: ChunkDecoder::new(self.ctx.limits.max_message_size),
                spool: Spool::new(&self.ctx.spool_dir, &id),
                transfer: TransferDeadline::new(limits.command_timeout, limits.min_data_rate, Instant::now()),
            });
        }
        // A refused chunk is read and dropped under a deadline of its own.
        let mut refused = TransferDeadline::new(limits.command_timeout, limits.min_data_rate, Instant::now());
        let mut remaining = size;
        let mut piece = Vec::with_capacity(READ_SIZE);
        loop {
            let wait = match self.chunks.as_ref() {
                Some(c) if accepted => c.transfer.wait(limits.data_timeout, Instant::now()),
                _ => refused.wait(limits.data_timeout, Instant::now()),
            };
            // Checked once per chunk even when it is empty, so `BDAT 0` after `BDAT 0`
            // cannot outlive the message's deadline either.
            if wait.is_zero() {
                let (r, _) = self.session.timeout();
                self.push(&r);
                return Ok(false);
            }
            if remaining == 0 {
                break;
            }
            if self.buf.is_empty() {
                match self.fill(wait, false).await? {
                    Fill::Data => {}
                    Fill::Eof | Fill::Shutdown => return Ok(false),
                    Fill::Timeout => {
                        let (r, _) = self.session.timeout();
                        self.push(&r);
                        return Ok(false);
                    }
                }
            }
            let take = remaining.min(self.buf.len() as u64) as usize;
            let bytes = self.buf.split_to(take);
            remaining -= take as u64;
            if accepted && let Some(c) = self.chunks.as_mut() {
                c.transfer.received(take);
                piece.clear();
                c.decoder.feed(&bytes, &mut piece);
                c.spool.write(&piece).await;
            } else {
                refused.received(take);
            }
        }
        if !accepted {
            let (r, a) = self.session.chunk_refused();
            self.log_refusals(&r);
            self.push(&r);
            return Ok(a != Action::Close);
        }
        if !last {
            let (r, _) = self.session.chunk_received(size);
            self.push(&r);
            return Ok(true);
        }
        let Some(mut chunks) = self.chunks.take() else {
            return Ok(true);
        };
        piece.clear();
        chunks.decoder.finish(&mut piece);
        chunks.spool.write(&piece).await;
        self.end_of_message(chunks.decoder.size(), chunks.decoder.exceeded(), chunks.spool).await
    }

    /// Report MAIL and RCPT answers to the transaction meter, and whether a transaction
    /// is still open after any command.
    fn count_transaction(&mut self, verb: &str, replies: &[Status]) {
        let accepted = replies.first().is_some_and(Status::is_positive);
        let refusal = self.session.take_refusal();
        match verb {
            "MAIL" => self.transactions.mail(accepted, refusal),
            "RCPT" => self.transactions.rcpt(accepted, refusal),
            _ => {}
        }
        self.transactions.still_open(self.session.sender().is_some());
    }

    /// The message content is complete: refuse it or deliver it, then reply.
    async fn end_of_message(&mut self, size: u64, exceeded: bool, spool: Spool) -> io::Result<bool> {
        let span = self.current_span();
        let service = self.service();
        let msgid = self.session.message_id().unwrap_or_default().to_string();
        let from = self.session.sender().map(sender_text).unwrap_or_default();
        let mail = Mail { msgid: &msgid, service, from: &from, size };
        let envelope = match self.session.end_of_message(size, exceeded) {
            EndOfMessage::Refuse(replies) => {
                if let Some(r) = replies.first() {
                    span.in_scope(|| maillog::refused(&mail, "", r, Refusal::Size));
                }
                metrics().smtp_messages_refused_total.with_label_values(&[service, Refusal::Size.label()]).inc();
                self.transactions.message(Err(Refusal::Size));
                self.push(&replies);
                return Ok(!replies.iter().any(|r| r.code == Code::Reply(421)));
            }
            EndOfMessage::Deliver(env) => env,
        };
        let started = Instant::now();
        metrics().smtp_message_size_bytes.with_label_values(&[service]).observe(size as f64);
        let judged = match spool.finish().await {
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "spooling the message failed"));
                let r = if crate::disk::is_full(&e) {
                    super::session::disk_full_reply()
                } else {
                    Status::new(451, (4, 3, 0), "Error: cannot store the message now, try again later")
                };
                Err((Refusal::Local, r))
            }
            Ok(message) => {
                let client = self.session.client().clone();
                accept(&self.ctx, &client, self.session.is_esmtp(), &envelope, message).instrument(span.clone()).await
            }
        };
        let rcpts: Vec<String> = envelope.recipients.iter().map(|r| r.address.to_string()).collect();
        let (outcomes, refusal) = match judged {
            Ok(outcomes) => (outcomes, None),
            Err((reason, reply)) => {
                span.in_scope(|| maillog::refused(&mail, &rcpts.join(","), &reply, reason));
                (vec![Err(reply); envelope.recipients.len()], Some(reason))
            }
        };
        let (replies, action) = self.session.delivered(&envelope, &outcomes);
        let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
        if let Some(recent) = &self.ctx.recent {
            // LMTP answers per recipient: accepted for any shows the 250, else the refusal.
            let shown = replies.iter().find(|r| r.is_error() != (accepted > 0));
            if let Some(status) = shown {
                recent.inbound(service, self.session.client().ip, &from, &rcpts, accepted > 0, status);
            }
        }
        let _enter = span.enter();
        if accepted > 0 {
            metrics().delivery_duration_seconds.observe(started.elapsed().as_secs_f64());
            metrics().smtp_messages_received_total.with_label_values(&[service]).inc();
            metrics().smtp_received_bytes_total.inc_by(size);
        }
        metrics().smtp_data_duration_seconds.with_label_values(&[service]).observe(started.elapsed().as_secs_f64());
        if accepted > 0 {
            self.transactions.message(Ok(()));
        }
        if accepted < outcomes.len() {
            let first_refusal = outcomes.iter().find_map(|o| o.as_ref().err());
            let reason = refusal.or_else(|| first_refusal.map(Refusal::of_delivery)).unwrap_or(Refusal::Local);
            metrics().smtp_messages_refused_total.with_label_values(&[service, reason.label()]).inc();
            self.transactions.message(Err(reason));
            if refusal.is_none() {
                for (to, outcome) in rcpts.iter().zip(&outcomes) {
                    if let Err(r) = outcome {
                        maillog::refused(&mail, to, r, Refusal::of_delivery(r));
                    }
                }
            }
        }
        drop(_enter);
        self.push(&replies);
        Ok(action != Action::Close)
    }
}

/// The metrics label for a RCPT reply.
fn rcpt_outcome(r: &Status) -> &'static str {
    match r.enhanced {
        _ if r.is_positive() => "accepted",
        Some(Enhanced(5, 1, 1)) => "unknown_user",
        Some(Enhanced(5, 7, 1)) => "relay_denied",
        Some(Enhanced(4, 2, 2)) => "over_quota",
        Some(Enhanced(4, 5, 3)) => "too_many_recipients",
        Some(Enhanced(4, _, _)) => "temporary_failure",
        _ => "rejected",
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "server_client_tests.rs"]
mod client_tests;

#[cfg(test)]
#[path = "server_durability_tests.rs"]
mod durability_tests;

#[cfg(test)]
#[path = "server_submit_tests.rs"]
mod submit_tests;

#[cfg(test)]
#[path = "server_deadline_tests.rs"]
mod deadline_tests;
