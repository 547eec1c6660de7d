//! The one way mail reaches local mailboxes: copies of messages accepted by SMTP, LMTP
//! and submission, and DSNs the queue sends back to our own senders. Each copy is our
//! header lines (`Return-Path`, `Delivered-To`, `Received` for SMTP) followed by the
//! content, streamed by `store::Store::deliver` and durable before it returns; each
//! distinct mailbox gets one copy however many recipients lead to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::accounts::{self, Address, Directory};
use crate::queue::{BounceDisposition, BounceSink, BoxFuture};
use crate::store::{LocalDelivery, MailboxOwner, MessageBody, Store};

use super::deliver::{TraceInfo, header_prefix, store_error_reply};
use super::session::Envelope;
use super::status::Status;

/// Local delivery for the SMTP services and the queue's bounces. Cheap to share.
#[derive(Clone)]
pub struct LocalCourier {
    directory: Arc<Directory>,
    store: Store,
}

impl LocalCourier {
    pub fn new(directory: Arc<Directory>, store: Store) -> LocalCourier {
        LocalCourier { directory, store }
    }

    /// Deliver `body` into `folder` ("INBOX", or "Junk" for spam) of every mailbox of
    /// `env`, each copy made of our trace fields, then `added` (header lines the checks or
    /// submission add), then `body`. Returns one outcome per `env.recipients[i]`: `Ok`
    /// only when every local copy that recipient needs is durable (its remote copies,
    /// `forwards`, are the queue's).
    pub async fn deliver(
        &self,
        env: &Envelope,
        added: &[u8],
        body: &MessageBody,
        trace: &TraceInfo<'_>,
        folder: &str,
    ) -> Vec<Result<(), Status>> {
        let mut mailboxes: BTreeMap<&Address, usize> = BTreeMap::new();
        let mut deliveries: Vec<LocalDelivery> = Vec::new();
        for mb in env.recipients.iter().flat_map(|r| &r.mailboxes) {
            if !mailboxes.contains_key(mb) {
                mailboxes.insert(mb, deliveries.len());
                deliveries.push(copy_for(mb, folder, [header_prefix(env, mb, trace).as_slice(), added].concat()));
            }
        }
        let results = if deliveries.is_empty() { Vec::new() } else { self.store.deliver(body, &deliveries).await };
        for (d, r) in deliveries.iter().zip(&results) {
            match r {
                Ok(m) => tracing::debug!(mailbox = %d.owner, location = %m.location, "copy durable"),
                Err(e) => tracing::error!(mailbox = %d.owner, error = %e, "local delivery failed"),
            }
        }
        env.recipients
            .iter()
            .map(|rcpt| {
                if rcpt.mailboxes.is_empty() && rcpt.forwards.is_empty() {
                    // Policy never accepts such a recipient.
                    return Err(Status::new(451, (4, 3, 0), "Error: no local mailbox, try again later"));
                }
                for mb in &rcpt.mailboxes {
                    match mailboxes.get(mb).and_then(|&i| results.get(i)) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(store_error_reply(e)),
                        None => return Err(Status::new(451, (4, 3, 0), "Error: internal error")),
                    }
                }
                Ok(())
            })
            .collect()
    }

    /// A DSN for `to`: into the INBOX of each of its local mailboxes, or `Remote` when
    /// `to` is not ours or only forwards (the queue sends it on).
    async fn bounce_locally(&self, to: &Address, dsn: &[u8]) -> Result<BounceDisposition, String> {
        if !self.directory.is_local_domain(&to.domain) {
            return Ok(BounceDisposition::Remote);
        }
        let deliveries: Vec<LocalDelivery> = self
            .directory
            .resolve(to)
            .into_iter()
            .filter_map(|r| match r {
                accounts::Recipient::Mailbox(m) => {
                    Some(copy_for(&m, "INBOX", format!("Return-Path: <>\r\nDelivered-To: {m}\r\n").into_bytes()))
                }
                accounts::Recipient::Forward(_) => None,
            })
            .collect();
        if deliveries.is_empty() {
            return Ok(BounceDisposition::Remote);
        }
        let body = MessageBody::Memory(bytes::Bytes::copy_from_slice(dsn));
        for r in self.store.deliver(&body, &deliveries).await {
            r.map_err(|e| e.to_string())?;
        }
        Ok(BounceDisposition::Delivered)
    }
}

fn copy_for(mailbox: &Address, folder: &str, header_prefix: Vec<u8>) -> LocalDelivery {
    LocalDelivery {
        owner: MailboxOwner::new(mailbox.local.clone(), mailbox.domain.clone()),
        folder: folder.into(),
        header_prefix,
    }
}

impl BounceSink for LocalCourier {
    fn bounce<'a>(&'a self, to: &'a Address, dsn: &'a [u8]) -> BoxFuture<'a, Result<BounceDisposition, String>> {
        Box::pin(self.bounce_locally(to, dsn))
    }
}
