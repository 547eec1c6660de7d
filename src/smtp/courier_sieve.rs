//! Sieve's part of one local delivery: ask each mailbox's scripts what to do, send the
//! redirects before the copies are stored (a redirect that cannot be queued becomes a
//! keep, so the message is never lost), and the rejection DSNs and vacation replies
//! once the mailbox's copies are durable.
//!
//! The message a script sees is our trace lines, the checks' header lines and at most
//! [`EVAL_PREFIX`] bytes of the body, read once per message and only when some mailbox
//! runs a script; the full message is read (once, under the server's `MessageMemory`
//! budget) only for a redirect, which the queue needs whole anyway.

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::accounts::Address;
use crate::metrics::metrics;
use crate::queue::{DsnKind, DsnRecipient, QueueId, build_dsn};
use crate::sieve::vacation_settings::delivery_script;
use crate::sieve::{
    AccountScripts, EVAL_PREFIX, Outbound, OutboundKind, Outcome, REDIRECT_HEADER, RunInput, ScanVerdict,
    SieveDelivery, SieveEnvelope, redirect_allowed, reply_with_headers,
};
use crate::store::{MailboxOwner, MessageBody};

use super::command::ReversePath;
use super::deliver::body_bytes;
use super::session::Envelope;
use super::status::Status;

/// One message's Sieve state across its mailboxes.
pub(super) struct Filter<'a> {
    sieve: &'a SieveDelivery,
    env: &'a Envelope,
    body: &'a MessageBody,
    folder: &'a str,
    verdict: ScanVerdict,
    /// The body's first [`EVAL_PREFIX`] bytes, once read.
    head: Option<Vec<u8>>,
    /// The whole body, once a redirect needed it, and its share of the memory budget.
    full: Option<(Bytes, Option<crate::net::MemoryPermit>)>,
}

impl<'a> Filter<'a> {
    pub(super) fn new(
        sieve: &'a SieveDelivery,
        env: &'a Envelope,
        body: &'a MessageBody,
        folder: &'a str,
        verdict: ScanVerdict,
    ) -> Filter<'a> {
        Filter { sieve, env, body, folder, verdict, head: None, full: None }
    }

    fn sender(&self) -> Option<&Address> {
        match &self.env.sender {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(&m.address),
        }
    }

    /// What mailbox `mb` (reached through the envelope recipient `rcpt`) gets of this
    /// message, whose copy starts with `prefix`. Redirects are already sent when this
    /// returns.
    pub(super) async fn decide(&mut self, rcpt: &Address, mb: &Address, prefix: &[u8]) -> Outcome {
        let owner = MailboxOwner::new(mb.local.clone(), mb.domain.clone());
        let engine = &self.sieve.engine;
        let active = match self.sieve.source.active(&owner).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(account = %mb, error = %e, "cannot read the active sieve script; the message is kept");
                metrics().sieve_errors_total.inc();
                return Outcome::keep(self.folder);
            }
        };
        let vacation = match delivery_script(self.sieve.source.as_ref(), &owner).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(account = %mb, error = %e, "cannot read the vacation script; the message is kept");
                metrics().sieve_errors_total.inc();
                return Outcome::keep(self.folder);
            }
        };
        if active.is_none() && vacation.is_none() && !engine.has_admin_scripts() {
            return Outcome::keep(self.folder);
        }
        let head = match self.head_bytes().await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(account = %mb, error = %e, "cannot read the message for sieve; the message is kept");
                metrics().sieve_errors_total.inc();
                return Outcome::keep(self.folder);
            }
        };
        let mut message = Vec::with_capacity(prefix.len() + head.len());
        message.extend_from_slice(prefix);
        message.extend_from_slice(&head);
        message.truncate(EVAL_PREFIX.max(prefix.len()));
        let envelope =
            SieveEnvelope { from: self.sender().map(Address::to_string).unwrap_or_default(), to: rcpt.to_string() };
        let input = RunInput {
            account: &owner,
            message: &message,
            size: prefix.len() as u64 + self.body.len(),
            envelope: &envelope,
            verdict: self.verdict,
            default_folder: self.folder,
        };
        let mut outcome = engine
            .run(self.sieve.source.as_ref(), self.sieve.folders.as_ref(), AccountScripts { active, vacation }, input)
            .await;
        self.redirect(mb, prefix, &message, &mut outcome).await;
        count_actions(&outcome, self.folder);
        outcome
    }

    /// Send the outcome's redirects; any that cannot go (a loop, the redirect cap, the
    /// queue refusing) turns into the implicit keep.
    async fn redirect(&mut self, mb: &Address, prefix: &[u8], message: &[u8], outcome: &mut Outcome) {
        if outcome.redirects.is_empty() {
            return;
        }
        let account = mb.to_string();
        let mut keep = false;
        if !redirect_allowed(message, &account) {
            tracing::warn!(account = %mb, "sieve redirect refused: a redirect loop or too many redirects; kept");
            keep = true;
        } else {
            for to in std::mem::take(&mut outcome.redirects) {
                let Ok(to) = Address::parse(&to) else {
                    tracing::info!(account = %mb, to, "sieve redirect to an invalid address skipped");
                    continue;
                };
                match self.send_redirect(&account, prefix, &to).await {
                    Ok(()) => {
                        tracing::info!(account = %mb, to = %to, "sieve redirect queued");
                        metrics().sieve_actions_total.with_label_values(&["redirect"]).inc();
                        outcome.redirects.push(to.to_string());
                    }
                    Err(e) => {
                        tracing::error!(account = %mb, to = %to, error = %e, "sieve redirect failed; kept");
                        keep = true;
                    }
                }
            }
        }
        if keep && !outcome.filings.iter().any(|f| f.folder == self.folder) {
            outcome.filings.push(crate::sieve::Filing {
                folder: self.folder.to_string(),
                flags: Vec::new(),
                create: true,
            });
        }
    }

    async fn send_redirect(&mut self, account: &str, prefix: &[u8], to: &Address) -> Result<(), String> {
        if self.full.is_none() {
            // A body already in memory is shared, not copied, and its caller holds its
            // budget (asking again could wait on ourselves); a spooled one is read whole.
            let permit = match self.body {
                MessageBody::Memory(_) => None,
                MessageBody::File { len, .. } => Some(self.sieve.memory.reserve(*len).await),
            };
            let bytes = body_bytes(self.body).await.map_err(|e| e.to_string())?;
            self.full = Some((bytes, permit));
        }
        let full = self.full.as_ref().map(|(b, _)| b.clone()).unwrap_or_default();
        // Our copy's trace minus `Return-Path`, which only final delivery adds.
        let trace = strip_return_path(prefix);
        let parts = vec![Bytes::from(format!("{REDIRECT_HEADER}: {account}\r\n")), Bytes::from(trace), full];
        let sender = self.sender().cloned();
        self.sieve.outbound.send(OutboundKind::Redirect, sender.as_ref(), to, parts).await
    }

    /// After `mb`'s copies are durable: the rejection DSN and the vacation replies.
    pub(super) async fn after_store(&mut self, mb: &Address, outcome: Outcome) {
        let outbound: &dyn Outbound = self.sieve.outbound.as_ref();
        if let Some(reason) = &outcome.reject {
            match self.sender().cloned() {
                None => tracing::info!(account = %mb, "sieve reject of a message with the null sender: discarded"),
                Some(sender) => {
                    let head = self.head.as_deref().unwrap_or_default();
                    let dsn = rejection_dsn(self.sieve.engine.hostname(), &self.env.id, &sender, mb, reason, head);
                    match outbound.send(OutboundKind::Rejection, None, &sender, vec![Bytes::from(dsn)]).await {
                        Ok(()) => tracing::info!(account = %mb, to = %sender, "sieve reject: DSN queued"),
                        Err(e) => tracing::error!(account = %mb, error = %e, "sieve reject: cannot queue the DSN"),
                    }
                }
            }
        }
        for reply in outcome.replies {
            let Ok(to) = Address::parse(&reply.to) else { continue };
            let message = reply_with_headers(&reply.message);
            let kind = OutboundKind::Reply { sign_domain: mb.domain.clone(), account: mb.clone() };
            match outbound.send(kind, None, &to, vec![Bytes::from(message)]).await {
                Ok(()) => {
                    tracing::info!(account = %mb, to = %to, "sieve vacation reply queued");
                    metrics().sieve_vacation_replies_total.inc();
                    metrics().sieve_actions_total.with_label_values(&["vacation"]).inc();
                }
                Err(e) => tracing::error!(account = %mb, error = %e, "sieve vacation reply failed"),
            }
        }
    }

    async fn head_bytes(&mut self) -> std::io::Result<Vec<u8>> {
        if let Some(h) = &self.head {
            return Ok(h.clone());
        }
        let head = read_prefix(self.body, EVAL_PREFIX).await?;
        self.head = Some(head.clone());
        Ok(head)
    }
}

/// At most `max` bytes from the start of `body`.
async fn read_prefix(body: &MessageBody, max: usize) -> std::io::Result<Vec<u8>> {
    match body {
        MessageBody::Memory(b) => Ok(b[..b.len().min(max)].to_vec()),
        MessageBody::File { path, len } => {
            let file = tokio::fs::File::open(path).await?;
            let mut out = Vec::with_capacity((*len as usize).min(max));
            file.take((*len).min(max as u64)).read_to_end(&mut out).await?;
            Ok(out)
        }
    }
}

fn strip_return_path(prefix: &[u8]) -> Vec<u8> {
    if prefix.len() >= 12
        && prefix[..12].eq_ignore_ascii_case(b"Return-Path:")
        && let Some(end) = prefix.iter().position(|&b| b == b'\n')
    {
        return prefix[end + 1..].to_vec();
    }
    prefix.to_vec()
}

/// The DSN that tells `sender` that `mb`'s script refused the message: the queue's own
/// RFC 3464 report, status 5.7.1 with the script's reason, the original header section.
pub(crate) fn rejection_dsn(
    hostname: &str,
    envelope_id: &str,
    sender: &Address,
    mb: &Address,
    reason: &str,
    original: &[u8],
) -> Vec<u8> {
    let env =
        crate::queue::Envelope::new(QueueId::generate(), Some(sender.clone()), std::slice::from_ref(mb), envelope_id);
    let status = rejection_status(reason);
    build_dsn(hostname, &env, DsnKind::Failure, &[DsnRecipient { address: mb.clone(), status }], original, None)
}

/// The refusal of a Sieve `reject`: 550 5.7.1 with the script's reason on one line,
/// bounded, as the reply to the client or the DSN's status.
pub(crate) fn rejection_status(reason: &str) -> Status {
    const MAX_REASON: usize = 200;
    let mut line: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = line.char_indices().nth(MAX_REASON) {
        line.truncate(cut);
        line.push('…');
    }
    Status::new(550, (5, 7, 1), format!("Message rejected by the recipient's filter: {line}"))
}

fn count_actions(outcome: &Outcome, default_folder: &str) {
    let actions = &metrics().sieve_actions_total;
    if outcome.reject.is_some() {
        actions.with_label_values(&["reject"]).inc();
        return;
    }
    if outcome.filings.is_empty() && outcome.redirects.is_empty() {
        actions.with_label_values(&["discard"]).inc();
    }
    for f in &outcome.filings {
        let action = if f.folder == default_folder { "keep" } else { "fileinto" };
        actions.with_label_values(&[action]).inc();
    }
}
