//! Where Sieve's outgoing mail goes: redirects, vacation replies and rejection DSNs
//! leave through the outbound queue like any other mail, a reply DKIM-signed for the
//! account's domain, a redirect of a remote sender's mail with an SRS envelope sender
//! (as forwarded copies get) so SPF still passes at the next hop. Mail for our own
//! addresses goes straight into the INBOX, without Sieve, so two scripts cannot keep
//! answering each other.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::accounts::{Address, Directory};
use crate::mailauth::Signers;
use crate::mailauth::Srs;
use crate::queue::{BounceDisposition, BoxFuture, Queue};
use crate::sieve::{Outbound, OutboundKind};

use super::courier::LocalCourier;

/// The production [`Outbound`]. The queue is set once it is open (it is opened after the
/// courier, whose bounces it needs).
pub struct QueueOutbound {
    pub queue: Arc<OnceLock<Queue>>,
    /// A courier without Sieve, for our own addresses.
    pub local: LocalCourier,
    pub directory: Arc<Directory>,
    pub signers: Arc<Signers>,
    pub srs: Option<Arc<Srs>>,
}

impl QueueOutbound {
    async fn send_now(
        &self,
        kind: OutboundKind,
        sender: Option<&Address>,
        to: &Address,
        mut parts: Vec<Bytes>,
    ) -> Result<(), String> {
        if let OutboundKind::Reply { sign_domain, account } = &kind {
            // `vacation :from` may name only the account's own addresses, as submission's
            // `From:` may: a reply DKIM-signed for our domain must not speak for another.
            let message = parts.concat();
            if let Err(status) = super::submit::check_sender_headers(&self.directory, account, &message) {
                return Err(format!("reply not sent: {status}"));
            }
            let signers = self.signers.clone();
            let domain = sign_domain.clone();
            let signed = tokio::task::spawn_blocking(move || signers.sign(&domain, &[&message]))
                .await
                .map_err(|e| format!("DKIM signing task: {e}"))?;
            match signed {
                None => {}
                Some(Ok(headers)) => parts.insert(0, Bytes::from(headers.into_bytes())),
                Some(Err(e)) => return Err(format!("DKIM signing for {sign_domain}: {e}")),
            }
        }
        let sender = match kind {
            OutboundKind::Redirect => sender.cloned(),
            OutboundKind::Reply { .. } | OutboundKind::Rejection => None,
        };
        if self.directory.is_local_domain(&to.domain) {
            let message = parts.concat();
            if self.local.deliver_to_inbox(to, sender.as_ref(), &message).await? == BounceDisposition::Delivered {
                return Ok(());
            }
        }
        let sender = match (&kind, sender) {
            (OutboundKind::Redirect, Some(s)) if !self.directory.is_local_domain(&s.domain) => {
                let primary = self.directory.domains().first().cloned().unwrap_or_default();
                match &self.srs {
                    Some(srs) => Address::parse(&srs.forward(&s.to_string(), &primary)).ok().or(Some(s)),
                    None => Some(s),
                }
            }
            (_, s) => s,
        };
        let queue = self.queue.get().ok_or("the outbound queue is not running")?;
        queue
            .enqueue_parts(sender.as_ref(), std::slice::from_ref(to), parts, "sieve")
            .await
            .map(|id| tracing::debug!(queue_id = %id, to = %to, "sieve message queued"))
            .map_err(|e| e.to_string())
    }
}

impl Outbound for QueueOutbound {
    fn send<'a>(
        &'a self,
        kind: OutboundKind,
        sender: Option<&'a Address>,
        to: &'a Address,
        parts: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.send_now(kind, sender, to, parts))
    }
}
