//! The one way mail reaches local mailboxes: copies of messages accepted by SMTP, LMTP
//! and submission, and DSNs the queue sends back to our own senders. Each copy is our
//! header lines (`Return-Path`, `Delivered-To`, `Received` for SMTP) followed by the
//! content, streamed by `store::Store::deliver` and durable before it returns; each
//! distinct mailbox gets one copy however many recipients lead to it, or, with Sieve
//! (`courier_sieve.rs`), the copies its scripts ask for.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::accounts::{self, Address, Directory};
use crate::queue::{BounceDisposition, BounceSink, BoxFuture};
use crate::store::{LocalDelivery, MailboxOwner, MessageBody, Store};

use crate::sieve::{Outcome, ScanVerdict, SieveDelivery};

use super::courier_sieve::{Filter, rejection_status};
use super::deliver::{TraceInfo, header_prefix, store_error_reply};
use super::session::Envelope;
use super::status::Status;

/// How one message is delivered besides its envelope: the folder without a script, the
/// checks' verdict for the scripts, and how the reply can refuse a recipient.
#[derive(Clone, Copy)]
pub struct Disposition<'a> {
    /// "INBOX", or "Junk" for spam: where copies go without a script (its implicit keep).
    pub folder: &'a str,
    pub verdict: ScanVerdict,
    pub replies: Replies,
}

/// What the client hears after the message: LMTP answers each recipient (RFC 2033),
/// SMTP and submission give one reply for the whole transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replies {
    PerRecipient,
    One,
}

/// For each recipient, the Sieve `reject` reason to refuse it with in the reply
/// (RFC 5429 section 2.1 prefers that to a DSN): one whose every mailbox rejected the
/// message and who has no remote copy. With one reply for the transaction, only when
/// every recipient is refused so; a single 550 would otherwise tell the sender that the
/// others failed too.
fn refused_in_reply(env: &Envelope, rejected: &BTreeMap<&Address, String>, replies: Replies) -> Vec<Option<String>> {
    let mut refused: Vec<Option<String>> = env
        .recipients
        .iter()
        .map(|r| {
            if r.mailboxes.is_empty() || !r.forwards.is_empty() {
                return None;
            }
            let reasons: Option<Vec<&String>> = r.mailboxes.iter().map(|mb| rejected.get(mb)).collect();
            reasons.and_then(|r| r.first().map(|s| s.to_string()))
        })
        .collect();
    if replies == Replies::One && refused.iter().any(Option::is_none) {
        refused.iter_mut().for_each(|r| *r = None);
    }
    refused
}

/// Local delivery for the SMTP services and the queue's bounces. Cheap to share.
#[derive(Clone)]
pub struct LocalCourier {
    directory: Arc<Directory>,
    store: Store,
    /// Sieve at delivery; `None`: every copy goes to the given folder, as before Sieve.
    sieve: Option<SieveDelivery>,
}

impl LocalCourier {
    pub fn new(directory: Arc<Directory>, store: Store) -> LocalCourier {
        LocalCourier { directory, store, sieve: None }
    }

    /// The same courier, running Sieve for every mailbox that has a script (or for all
    /// of them when admin scripts exist).
    pub fn with_sieve(mut self, sieve: SieveDelivery) -> LocalCourier {
        self.sieve = Some(sieve);
        self
    }

    /// Deliver `body` into `how.folder` ("INBOX", or "Junk" for spam) of every mailbox
    /// of `env`, each copy made of our trace fields, then `added` (header lines the checks
    /// or submission add), then `body`. With Sieve, each mailbox's scripts decide instead,
    /// `how.folder` being their implicit keep and `how.verdict` their
    /// `spamtest`/`virustest`. Returns one outcome per `env.recipients[i]`: `Ok` only when
    /// every local copy that recipient needs is durable (its remote copies, `forwards`, are
    /// the queue's), or the refusal of a Sieve `reject` when the reply can carry it
    /// ([`refused_in_reply`]; the others get a DSN).
    pub async fn deliver(
        &self,
        env: &Envelope,
        added: &[u8],
        body: &MessageBody,
        trace: &TraceInfo<'_>,
        how: Disposition<'_>,
    ) -> Vec<Result<(), Status>> {
        let Disposition { folder, verdict, replies } = how;
        let mut mailboxes: BTreeMap<&Address, Vec<usize>> = BTreeMap::new();
        let mut deliveries: Vec<LocalDelivery> = Vec::new();
        let mut after: Vec<(&Address, Outcome)> = Vec::new();
        let mut filter = self.sieve.as_ref().map(|s| Filter::new(s, env, body, folder, verdict));
        // Plain loops, not an iterator chain held across the awaits below (its closures
        // would make the future's `Send` depend on lifetimes the compiler cannot prove).
        let mut pairs: Vec<(&Address, &Address)> = Vec::new();
        for r in &env.recipients {
            for m in &r.mailboxes {
                pairs.push((&r.address, m));
            }
        }
        for (rcpt, mb) in pairs {
            if mailboxes.contains_key(mb) {
                continue;
            }
            let prefix = [header_prefix(env, mb, trace).as_slice(), added].concat();
            let outcome = match filter.as_mut() {
                None => Outcome::keep(folder),
                Some(f) => f.decide(rcpt, mb, &prefix).await,
            };
            let mut indexes = Vec::new();
            for filing in &outcome.filings {
                indexes.push(deliveries.len());
                let mut copy = copy_for(mb, &filing.folder, prefix.clone());
                copy.flags = filing.flags.clone();
                deliveries.push(copy);
            }
            mailboxes.insert(mb, indexes);
            if outcome.reject.is_some() || !outcome.replies.is_empty() {
                after.push((mb, outcome));
            }
        }
        let results = if deliveries.is_empty() { Vec::new() } else { self.store.deliver(body, &deliveries).await };
        for (d, r) in deliveries.iter().zip(&results) {
            match r {
                Ok(m) => {
                    tracing::debug!(mailbox = %d.owner, folder = %d.folder, location = %m.location, "copy durable")
                }
                Err(e) => tracing::error!(mailbox = %d.owner, error = %e, "local delivery failed"),
            }
        }
        let rejected: BTreeMap<&Address, String> =
            after.iter().filter_map(|(mb, o)| o.reject.clone().map(|r| (*mb, r))).collect();
        let refused = refused_in_reply(env, &rejected, replies);
        if let Some(f) = filter.as_mut() {
            for (mb, mut outcome) in after {
                let durable =
                    mailboxes.get(mb).is_some_and(|ix| ix.iter().all(|&i| matches!(results.get(i), Some(Ok(_)))));
                // The sender hears of the rejection from our reply when every recipient
                // that led to this mailbox is refused there; otherwise a DSN tells it.
                let told = env
                    .recipients
                    .iter()
                    .zip(&refused)
                    .all(|(r, refused)| refused.is_some() || !r.mailboxes.contains(mb));
                if told {
                    outcome.reject = None;
                }
                if durable {
                    f.after_store(mb, outcome).await;
                }
            }
        }
        env.recipients
            .iter()
            .zip(refused)
            .map(|(rcpt, refused)| {
                if let Some(reason) = refused {
                    return Err(rejection_status(&reason));
                }
                if rcpt.mailboxes.is_empty() && rcpt.forwards.is_empty() {
                    // Policy never accepts such a recipient.
                    return Err(Status::new(451, (4, 3, 0), "Error: no local mailbox, try again later"));
                }
                for mb in &rcpt.mailboxes {
                    let Some(indexes) = mailboxes.get(mb) else {
                        return Err(Status::new(451, (4, 3, 0), "Error: internal error"));
                    };
                    for &i in indexes {
                        match results.get(i) {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(store_error_reply(e)),
                            None => return Err(Status::new(451, (4, 3, 0), "Error: internal error")),
                        }
                    }
                }
                Ok(())
            })
            .collect()
    }

    /// A DSN for `to`: into the INBOX of each of its local mailboxes, or `Remote` when
    /// `to` is not ours or only forwards (the queue sends it on).
    async fn bounce_locally(&self, to: &Address, dsn: &[u8]) -> Result<BounceDisposition, String> {
        self.deliver_to_inbox(to, None, dsn).await
    }

    /// `message` (complete, from `return_path`, `None` the null sender) into the INBOX of
    /// each local mailbox of `to`, without Sieve: DSNs, and the replies and redirects
    /// Sieve itself sends to our own addresses (so scripts cannot ping-pong). `Remote`
    /// when `to` is not ours or only forwards.
    pub async fn deliver_to_inbox(
        &self,
        to: &Address,
        return_path: Option<&Address>,
        message: &[u8],
    ) -> Result<BounceDisposition, String> {
        if !self.directory.is_local_domain(&to.domain) {
            return Ok(BounceDisposition::Remote);
        }
        let return_path = return_path.map(Address::to_string).unwrap_or_default();
        let deliveries: Vec<LocalDelivery> = self
            .directory
            .resolve(to)
            .into_iter()
            .filter_map(|r| match r {
                accounts::Recipient::Mailbox(m) => Some(copy_for(
                    &m,
                    "INBOX",
                    format!("Return-Path: <{return_path}>\r\nDelivered-To: {m}\r\n").into_bytes(),
                )),
                accounts::Recipient::Forward(_) => None,
            })
            .collect();
        if deliveries.is_empty() {
            return Ok(BounceDisposition::Remote);
        }
        let body = MessageBody::Memory(bytes::Bytes::copy_from_slice(message));
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
        flags: Vec::new(),
    }
}

impl BounceSink for LocalCourier {
    fn bounce<'a>(&'a self, to: &'a Address, dsn: &'a [u8]) -> BoxFuture<'a, Result<BounceDisposition, String>> {
        Box::pin(self.bounce_locally(to, dsn))
    }
}
