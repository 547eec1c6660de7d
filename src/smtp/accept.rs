//! The fate of a complete, size-checked message, in the order it happens:
//!
//! 1. **load** — only when a later stage needs the message as one buffer (port 25's
//!    checks, submission's header checks and DKIM signing, the queue), read it from the
//!    spool file under the server's [`MessageMemory`](crate::net::MessageMemory) budget;
//! 2. **judge** (port 25, untrusted clients) — SPF/DKIM/DMARC/ARC and the scanners
//!    (`inbound.rs`): refuse, or header lines to add and Junk or INBOX;
//! 3. **prepare submission** (587/465) — the sender owns `From:`/`Sender:`/`Resent-*`,
//!    `Message-ID`/`Date` added when missing, DKIM signatures for our domains;
//! 4. **enqueue remote** — one queue item for every remote recipient;
//! 5. **store local** — durable copies in every local mailbox, streamed from the spool.
//!
//! Every stage adds header lines (`added`), never rewrites the message, so the message is
//! carried as one buffer at most and local copies stream from the spool file; the one
//! exception is a forged `Authentication-Results` for our hostname, which the judge
//! removes (RFC 8601 section 5). All of it happens before the reply, so a 250 always
//! means "it is on disk". The queue comes before the local copies: if the store fails
//! after the queue took the message, the client retries and a remote recipient may get a
//! duplicate, which is allowed; the reverse (a 250 for a lost copy) never happens.

use bytes::Bytes;

use crate::accounts::Address;
use crate::maillog::{self, Mail};
use crate::store::MessageBody;

use super::command::ReversePath;
use super::courier::{Disposition, Replies};
use super::deliver::{SpooledMessage, TraceInfo, body_bytes, protocol_keyword, received_header, remote_recipients};
use super::inbound::InboundChecks;
use super::refusal::Refusal;
use super::server::SmtpContext;
use super::session::{ClientInfo, Envelope, SmtpMode};
use super::status::Status;
use super::submit;

/// A complete, size-checked message: queue its remote copies, store its local ones.
/// Returns one outcome per envelope recipient, or the refusal of the whole message by
/// a check (with the reason it names for the metrics).
///
/// The message stays in its spool file. Only the port-25 checks and submission's
/// sender checks and signing need it as one buffer; that buffer is loaded under the
/// server's [`crate::net::MessageMemory`] budget and shared (not copied) by the
/// checks and the queue. What they add is a block of header lines (`added`) written
/// before the message in every copy.
pub async fn accept(
    ctx: &SmtpContext,
    client: &ClientInfo,
    esmtp: bool,
    envelope: &Envelope,
    message: SpooledMessage,
) -> Result<Vec<Result<(), Status>>, (Refusal, Status)> {
    let protocol = protocol_keyword(
        ctx.mode == SmtpMode::Lmtp,
        esmtp,
        envelope.smtputf8,
        client.tls.is_some(),
        client.authenticated.is_some(),
    );
    let date = chrono::Utc::now().to_rfc2822();
    let trace = TraceInfo { hostname: &ctx.hostname, client, protocol, date: date.clone() };
    let remote = remote_recipients(envelope);
    let mut body = message.body;
    let trusted = ctx.trusted_networks.iter().any(|net| net.contains(&client.ip));
    let inbound = ctx.inbound.clone().filter(|_| ctx.mode == SmtpMode::Mx && !trusted);
    let needs_bytes = ctx.mode == SmtpMode::Submission || !remote.is_empty() || inbound.is_some();
    let mut memory = None;
    let mut bytes: Option<Bytes> = None;
    if needs_bytes {
        memory = Some(ctx.memory.reserve(body.len()).await);
        match body_bytes(&body).await {
            Ok(b) => bytes = Some(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spooled message");
                return Err((Refusal::Local, Status::new(451, (4, 3, 0), "Error: cannot read the message, try again")));
            }
        }
    }
    let mut added: Vec<u8> = Vec::new();
    let mut junk = false;
    if let (Some(checks), Some(b)) = (&inbound, bytes.as_ref()) {
        match checks.judge(b, client, envelope).await {
            Ok(judged) => {
                junk = judged.junk;
                added = judged.prepend;
                if let Some(rewritten) = judged.rewritten {
                    let rewritten = Bytes::from(rewritten);
                    body = MessageBody::Memory(rewritten.clone());
                    bytes = Some(rewritten);
                }
            }
            Err(refused) => return Err(refused),
        }
    }
    if ctx.mode == SmtpMode::Submission {
        // The session refuses MAIL before AUTH; never let an unchecked message through.
        let (Some(account), Some(b)) = (&client.authenticated, bytes.as_ref()) else {
            return Err((Refusal::Auth, Status::new(530, (5, 7, 0), "Error: authentication required")));
        };
        if !ctx.limiter.allow_message(&account.to_string()) {
            tracing::warn!(user = %account, "message refused: hourly sending limit reached");
            let reply = Status::new(450, (4, 7, 1), "Error: too many messages this hour, try again later");
            return Err((Refusal::RateLimit, reply));
        }
        match prepare_submission(ctx, account, envelope, b.clone(), &date).await {
            Ok(headers) => added = headers,
            Err(r) => return Err((Refusal::Policy, r)),
        }
    }
    let from = sender_text(&envelope.sender);
    let mail = Mail { msgid: &envelope.id, service: super::server::service_name(ctx), from: &from, size: body.len() };
    let to: Vec<String> = envelope.recipients.iter().map(|r| r.address.to_string()).collect();
    let tls = client.tls.as_ref().map(|t| t.version.as_str()).unwrap_or("none");
    let helo = client.helo.as_deref().unwrap_or("");
    maillog::received(&mail, &to.join(","), to.len(), client.ip, helo, tls);
    let queued: Result<(), Status> = match (&ctx.queue, remote.is_empty(), &bytes) {
        (_, true, _) => Ok(()),
        (None, false, _) | (_, false, None) => {
            Err(Status::new(451, (4, 3, 0), "Error: remote delivery is not available, try again later"))
        }
        (Some(queue), false, Some(b)) => {
            let queued = queue_remote(ctx, queue, inbound.as_deref(), envelope, &remote, &trace, &added, b.clone());
            queued.await.map(|id| remote.iter().for_each(|to| maillog::queued(&mail, &to.to_string(), id.as_str())))
        }
    };
    // Local copies stream from the spool file: give the memory back first, unless
    // the message now lives in memory (rewritten, or small enough never to be spooled).
    drop(bytes);
    if matches!(body, MessageBody::File { .. }) {
        drop(memory.take());
    }
    let folder = if junk { "Junk" } else { "INBOX" };
    let verdict = crate::sieve::ScanVerdict {
        checked: inbound.is_some(),
        junk,
        virus_scanned: inbound.as_ref().is_some_and(|c| c.scanners.scans_viruses()),
    };
    let replies = if ctx.mode == SmtpMode::Lmtp { Replies::PerRecipient } else { Replies::One };
    let how = Disposition { folder, verdict, replies };
    let local = ctx.courier.deliver(envelope, &added, &body, &trace, how).await;
    drop(memory);
    for ((rcpt, result), to) in envelope.recipients.iter().zip(&local).zip(&to) {
        if result.is_ok() && !rcpt.mailboxes.is_empty() {
            maillog::stored(&mail, to);
        }
    }
    Ok(envelope
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
        .collect())
}

/// The envelope sender as the mail log shows it: empty for the null sender.
pub fn sender_text(path: &ReversePath) -> String {
    match path {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(m) => m.address.to_string(),
    }
}

/// One queue item for every remote recipient: our `Received:`, then (for mail from
/// the internet being forwarded, `forwarding`) an ARC seal, then `added`, then the
/// message.
#[allow(clippy::too_many_arguments)]
async fn queue_remote(
    ctx: &SmtpContext,
    queue: &crate::queue::Queue,
    forwarding: Option<&InboundChecks>,
    envelope: &Envelope,
    remote: &[Address],
    trace: &TraceInfo<'_>,
    added: &[u8],
    message: Bytes,
) -> Result<crate::queue::QueueId, Status> {
    let received = Bytes::from(received_header(envelope, None, trace));
    let mut parts = vec![received, Bytes::copy_from_slice(added), message];
    let mut sender = match &envelope.sender {
        ReversePath::Null => None,
        ReversePath::Mailbox(m) => Some(m.address.clone()),
    };
    // Mail from the internet forwarded onwards: SRS for the envelope and an ARC
    // seal, so SPF and DMARC still pass at the next hop. The seal covers the message
    // as forwarded, so this one case joins the parts.
    if let Some(checks) = forwarding {
        let primary = ctx.directory.domains().first().cloned().unwrap_or_default();
        sender = checks.forward_sender(sender.as_ref(), &primary);
        let whole = parts.concat();
        let arc = checks.arc_headers(&whole, trace.client, envelope).await;
        parts.insert(0, Bytes::from(arc));
    }
    let options = crate::queue::ItemOptions { require_tls: envelope.require_tls };
    match queue.enqueue_with(sender.as_ref(), remote, parts, &envelope.id, options).await {
        Ok(id) => Ok(id),
        Err(e) => {
            tracing::error!(error = %e, "cannot queue the remote copies");
            if e.is_disk_full() {
                return Err(super::session::disk_full_reply());
            }
            Err(Status::new(451, (4, 3, 0), "Error: cannot queue the message now, try again later"))
        }
    }
}

/// Submission's rules for the content: `From:`, `Sender:` and `Resent-*` owned by the
/// account, `Message-ID` and `Date` added when missing, DKIM signatures when the From
/// domain is ours. Returns the header lines to prepend (signatures first, then the
/// added fields); the message itself is not copied.
async fn prepare_submission(
    ctx: &SmtpContext,
    account: &Address,
    envelope: &Envelope,
    message: Bytes,
    date: &str,
) -> Result<Vec<u8>, Status> {
    let from = submit::check_sender_headers(&ctx.directory, account, &message)?;
    let missing = submit::missing_headers(&message, &envelope.id, &ctx.hostname, date);
    if !missing.is_empty() {
        tracing::debug!("added missing Message-ID/Date");
    }
    let Some(signers) = ctx.signers.clone() else {
        return Ok(missing);
    };
    let domain = from.domain.clone();
    let signed = tokio::task::spawn_blocking(move || {
        let headers = signers.sign(&domain, &[&missing, &message]);
        (missing, headers)
    })
    .await;
    match signed {
        Ok((missing, None)) => Ok(missing),
        Ok((missing, Some(Ok(headers)))) => {
            let mut added = headers.into_bytes();
            added.extend_from_slice(&missing);
            Ok(added)
        }
        Ok((_, Some(Err(e)))) => {
            tracing::error!(error = %e, domain = %from.domain, "DKIM signing failed");
            Err(Status::new(451, (4, 3, 0), "Error: cannot sign the message now, try again later"))
        }
        Err(e) => {
            tracing::error!(error = %e, "DKIM signing task failed");
            Err(Status::new(451, (4, 3, 0), "Error: cannot sign the message now, try again later"))
        }
    }
}
