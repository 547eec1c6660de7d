//! The connection's side of submission and remote delivery: the SASL exchange (RFC 4954:
//! `334` challenges, base64 answers, `*` cancels) with the password checked by the shared
//! `net::verify_login`, and the
//! fate of a complete message: submission's header checks, added `Message-ID`/`Date` and
//! DKIM signature, then one queue item for all remote recipients and durable local
//! copies — all before the reply, so a 250 always means "it is on disk".
//!
//! The order is queue first, then local copies: if the local store fails after the queue
//! took the message, the client retries and a remote recipient may get a duplicate, which
//! is allowed; the reverse (a 250 for a lost copy) never happens.

use std::io;

use bytes::{Buf, Bytes, BytesMut};

use crate::accounts::Address;
use crate::net::{LoginOutcome, verify_login};
use crate::store::MessageBody;

use super::super::command::ReversePath;
use super::super::deliver::{
    SpooledMessage, TraceInfo, body_bytes, deliver_message, protocol_keyword, received_header, remote_recipients,
};
use super::super::framing::Frame;
use super::super::reply::Reply;
use super::super::sasl::{self, Credentials, LOGIN_PASSWORD, LOGIN_USERNAME, Mechanism, SaslError};
use super::super::session::{Action, Envelope, SmtpMode};
use super::super::submit;
use super::{Connection, Fill};

/// One client answer during AUTH.
enum AuthLine {
    Line(BytesMut),
    /// Over the line limit: the exchange fails with 500.
    TooLong,
    /// EOF, timeout or shutdown: close.
    Gone,
}

impl Connection {
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
                    self.line_deadline.begin(std::time::Instant::now());
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

    /// Ask for one base64 answer; `Ok(None)` means the connection is gone.
    async fn answer(&mut self, text: &str) -> io::Result<Option<Result<Vec<u8>, SaslError>>> {
        Ok(match self.challenge(text).await? {
            AuthLine::Line(l) => Some(sasl::decode_response(&l)),
            AuthLine::TooLong => Some(Err(SaslError::Malformed)),
            AuthLine::Gone => None,
        })
    }

    /// Run the exchange for `mechanism`; `false`: close the connection.
    pub(super) async fn authenticate(&mut self, mechanism: Mechanism, initial: Option<String>) -> io::Result<bool> {
        let initial = initial.map(|i| sasl::decode_response(i.as_bytes()));
        let credentials: Result<Credentials, SaslError> = match mechanism {
            Mechanism::Plain => {
                let decoded = match initial {
                    Some(d) => d,
                    None => match self.answer("").await? {
                        Some(d) => d,
                        None => return Ok(false),
                    },
                };
                decoded.and_then(|d| sasl::decode_plain(&d))
            }
            Mechanism::Login => {
                // Some clients send the user name as an initial response (RFC 4954 style).
                let user = match initial {
                    Some(d) => d,
                    None => match self.answer(LOGIN_USERNAME).await? {
                        Some(d) => d,
                        None => return Ok(false),
                    },
                };
                match user.and_then(|u| sasl::decode_login_field(&u)) {
                    Err(e) => Err(e),
                    Ok(username) => match self.answer(LOGIN_PASSWORD).await? {
                        None => return Ok(false),
                        Some(p) => p
                            .and_then(|p| sasl::decode_login_field(&p))
                            .map(|password| Credentials { username, password }),
                    },
                }
            }
        };
        let result = match credentials {
            Err(e) => {
                tracing::info!(mechanism = mechanism.name(), reason = %e, "authentication aborted");
                Err(e.reply())
            }
            Ok(c) => self.check_password(c).await,
        };
        let (replies, action) = self.session.auth_finished(result);
        self.log_refusals(&replies);
        self.push(&replies);
        Ok(action != Action::Close)
    }

    /// The shared login check (limiter, verification, metrics); only the reply is ours.
    async fn check_password(&mut self, c: Credentials) -> Result<Address, Reply> {
        let ip = self.session.client().ip;
        let protocol = self.service();
        match verify_login(&self.ctx.limiter, &self.ctx.directory, protocol, ip, &c.username, &c.password).await {
            LoginOutcome::LoggedIn(account) => Ok(account),
            LoginOutcome::Failed => Err(Reply::new(535, (5, 7, 8), "Error: authentication credentials invalid")),
            LoginOutcome::Refused(blocked) => Err(Reply::new(454, (4, 7, 0), format!("Error: {blocked}"))),
        }
    }

    /// A complete, size-checked message: queue its remote copies, store its local ones.
    /// Returns one outcome per envelope recipient.
    pub(super) async fn deliver(&mut self, envelope: &Envelope, message: SpooledMessage) -> Vec<Result<(), Reply>> {
        let n = envelope.recipients.len();
        let client = self.session.client().clone();
        let protocol = protocol_keyword(
            self.ctx.mode == SmtpMode::Lmtp,
            self.session.is_esmtp(),
            envelope.smtputf8,
            client.tls.is_some(),
            client.authenticated.is_some(),
        );
        let date = chrono::Utc::now().to_rfc2822();
        let trace = TraceInfo { hostname: &self.ctx.hostname, client: &client, protocol, date: date.clone() };
        let remote = remote_recipients(envelope);
        let mut body = message.body;
        let trusted = self.ctx.trusted_networks.iter().any(|net| net.contains(&client.ip));
        let inbound = self.ctx.inbound.clone().filter(|_| self.ctx.mode == SmtpMode::Mx && !trusted);
        let needs_bytes = self.ctx.mode == SmtpMode::Submission || !remote.is_empty() || inbound.is_some();
        let mut bytes: Option<Vec<u8>> = None;
        if needs_bytes {
            match body_bytes(&body).await {
                Ok(b) => bytes = Some(b),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spooled message");
                    return vec![Err(Reply::new(451, (4, 3, 0), "Error: cannot read the message, try again")); n];
                }
            }
        }
        let mut junk = false;
        if let (Some(checks), Some(b)) = (&inbound, bytes.as_deref()) {
            match checks.judge(b, &client, envelope).await {
                Ok(judged) => {
                    junk = judged.junk;
                    body = MessageBody::Memory(Bytes::from(judged.message.clone()));
                    bytes = Some(judged.message);
                }
                Err(reply) => return vec![Err(reply); n],
            }
        }
        if self.ctx.mode == SmtpMode::Submission {
            // The session refuses MAIL before AUTH; never let an unchecked message through.
            let (Some(account), Some(b)) = (&client.authenticated, bytes.take()) else {
                return vec![Err(Reply::new(530, (5, 7, 0), "Error: authentication required")); n];
            };
            if !self.ctx.limiter.allow_message(&account.to_string()) {
                tracing::warn!(user = %account, "message refused: hourly sending limit reached");
                return vec![Err(Reply::new(450, (4, 7, 1), "Error: too many messages this hour, try again later")); n];
            }
            match self.prepare_submission(account, envelope, b, &date).await {
                Ok(prepared) => {
                    body = MessageBody::Memory(Bytes::from(prepared.clone()));
                    bytes = Some(prepared);
                }
                Err(r) => return vec![Err(r); n],
            }
        }
        let queued: Result<(), Reply> = match (&self.ctx.queue, remote.is_empty(), &bytes) {
            (_, true, _) => Ok(()),
            (None, false, _) | (_, false, None) => {
                Err(Reply::new(451, (4, 3, 0), "Error: remote delivery is not available, try again later"))
            }
            (Some(queue), false, Some(b)) => {
                let mut item = received_header(envelope, None, &trace).into_bytes();
                item.extend_from_slice(b);
                let mut sender = match &envelope.sender {
                    ReversePath::Null => None,
                    ReversePath::Mailbox(m) => Some(m.address.clone()),
                };
                // Mail from the internet forwarded onwards: SRS for the envelope and an
                // ARC seal, so SPF and DMARC still pass at the next hop.
                if let Some(checks) = &inbound {
                    let primary = self.ctx.directory.domains().first().cloned().unwrap_or_default();
                    sender = checks.forward_sender(sender.as_ref(), &primary);
                    let arc = checks.arc_headers(&item, &client, envelope).await;
                    item.splice(0..0, arc.into_bytes());
                }
                match queue.enqueue(sender.as_ref(), &remote, &item, &envelope.id).await {
                    Ok(id) => {
                        tracing::info!(queue_id = %id, recipients = remote.len(), "remote copies queued");
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot queue the remote copies");
                        Err(Reply::new(451, (4, 3, 0), "Error: cannot queue the message now, try again later"))
                    }
                }
            }
        };
        let folder = if junk { "Junk" } else { "INBOX" };
        let local = deliver_message(&self.ctx.store, envelope, &body, &trace, folder).await;
        envelope
            .recipients
            .iter()
            .zip(local)
            .map(|(rcpt, local)| {
                local?;
                if !rcpt.forwards.is_empty() {
                    queued.clone()?;
                }
                Ok(())
            })
            .collect()
    }

    /// Submission's rules for the content: `From:`, `Sender:` and `Resent-*` owned by the account, `Message-ID` and
    /// `Date` added when missing, DKIM signatures prepended when the From domain is ours.
    async fn prepare_submission(
        &self,
        account: &Address,
        envelope: &Envelope,
        message: Vec<u8>,
        date: &str,
    ) -> Result<Vec<u8>, Reply> {
        let from = submit::check_sender_headers(&self.ctx.directory, account, &message)?;
        let mut out = submit::missing_headers(&message, &envelope.id, &self.ctx.hostname, date);
        if !out.is_empty() {
            tracing::debug!("added missing Message-ID/Date");
        }
        out.extend_from_slice(&message);
        let Some(signers) = self.ctx.signers.clone() else {
            return Ok(out);
        };
        let domain = from.domain.clone();
        let signed = tokio::task::spawn_blocking(move || {
            let headers = signers.sign(&domain, &out);
            (out, headers)
        })
        .await;
        match signed {
            Ok((out, None)) => Ok(out),
            Ok((out, Some(Ok(headers)))) => {
                let mut signed = headers.into_bytes();
                signed.extend_from_slice(&out);
                Ok(signed)
            }
            Ok((_, Some(Err(e)))) => {
                tracing::error!(error = %e, domain = %from.domain, "DKIM signing failed");
                Err(Reply::new(451, (4, 3, 0), "Error: cannot sign the message now, try again later"))
            }
            Err(e) => {
                tracing::error!(error = %e, "DKIM signing task failed");
                Err(Reply::new(451, (4, 3, 0), "Error: cannot sign the message now, try again later"))
            }
        }
    }
}
