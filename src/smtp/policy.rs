//! Who may send to whom: the server's [`Policy`] built on the accounts directory, the
//! store's quota counters, `MAILROOM_TRUSTED_NETWORKS` and a sender-domain DNS check.
//!
//! Recipient decisions go through `accounts::Directory::resolve` only (architecture.md:
//! alias resolution lives in `accounts/`): ours -> accept; our domain but nobody -> 550
//! 5.1.1; not ours -> relaying, which an unauthenticated client outside the trusted
//! networks never gets (554 5.7.1). A recipient that needs a *remote* copy (relaying by
//! an authenticated or trusted client, or an alias with a remote target) is accepted with
//! that copy in `forwards`, which the server hands to the outbound queue; when no queue
//! is wired (unit tests, LMTP) it is answered 451 4.3.0 instead, so nothing is silently
//! dropped.
//!
//! Submission senders: an authenticated client may only use its own addresses
//! and those `Directory::may_send_as` grants (553 5.7.1 otherwise); the null sender is
//! allowed (RFC 8098 read receipts are sent with it).
//!
//! Sender domains are checked like Postfix's `reject_unknown_sender_domain`: no MX/A/AAAA
//! -> 550 5.1.8, resolver trouble -> 450 4.1.8 (never 5xx on a DNS hiccup). The lookup is
//! behind [`SenderDomainCheck`] so the lead wires hickory and tests use a table.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;

use crate::accounts::{Address, Directory, Recipient};
use crate::store::{MailboxOwner, Store};

use super::command::Mailbox;
use super::session::{ClientInfo, Policy, RecipientVerdict, SenderVerdict, SmtpMode};

/// The result of looking a sender domain up in DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainStatus {
    /// It has an MX, A or AAAA record (or a null MX: mail *from* it is still plausible).
    Exists,
    /// NXDOMAIN or no usable record.
    NotFound,
    /// Timeout, SERVFAIL, no resolver: we cannot tell.
    LookupFailed,
}

/// A boxed future, so the check can be a trait object (`Arc<dyn SenderDomainCheck>`).
pub type DomainFuture<'a> = Pin<Box<dyn Future<Output = DomainStatus> + Send + 'a>>;

/// Does this sender domain exist? Implemented with hickory by the lead (`dns/`).
pub trait SenderDomainCheck: Send + Sync {
    fn check<'a>(&'a self, domain: &'a str) -> DomainFuture<'a>;
}

/// Every domain exists: for LMTP (the MTA in front already checked) and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyDomainExists;

impl SenderDomainCheck for AnyDomainExists {
    fn check<'a>(&'a self, _domain: &'a str) -> DomainFuture<'a> {
        Box::pin(async { DomainStatus::Exists })
    }
}

/// A fixed answer table (tests, and a fallback when DNS is not configured).
#[derive(Debug, Clone, Default)]
pub struct StaticDomains {
    pub not_found: Vec<String>,
    pub failing: Vec<String>,
}

impl SenderDomainCheck for StaticDomains {
    fn check<'a>(&'a self, domain: &'a str) -> DomainFuture<'a> {
        let status = if self.not_found.iter().any(|d| d == domain) {
            DomainStatus::NotFound
        } else if self.failing.iter().any(|d| d == domain) {
            DomainStatus::LookupFailed
        } else {
            DomainStatus::Exists
        };
        Box::pin(async move { status })
    }
}

/// The policy of one server (shared by its sessions).
#[derive(Clone)]
pub struct DirectoryPolicy {
    pub directory: Arc<Directory>,
    pub store: Store,
    pub trusted_networks: Vec<IpNet>,
    pub sender_domains: Arc<dyn SenderDomainCheck>,
    pub mode: SmtpMode,
    /// An outbound queue exists: remote copies can be accepted.
    pub can_queue: bool,
    /// SRS for bounces to addresses we rewrote when forwarding (`SRS0=…@our.domain`).
    pub srs: Option<Arc<crate::mailauth::Srs>>,
    /// Submission: counts accepted recipients per authenticated sender.
    pub limiter: Arc<crate::net::Limiter>,
}

impl DirectoryPolicy {
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_networks.iter().any(|n| n.contains(&ip))
    }

    /// Is the mailbox of this account over its quota (cheap: the store keeps counters)?
    /// A store that cannot tell says no: the delivery itself then fails temporarily.
    async fn over_quota(&self, mailbox: &Address) -> bool {
        let Some(quota) = self.directory.account(mailbox).and_then(|a| a.quota) else {
            return false;
        };
        let owner = MailboxOwner::new(mailbox.local.clone(), mailbox.domain.clone());
        match self.store.quota_usage(&owner).await {
            Ok(used) => used >= quota,
            Err(e) => {
                tracing::warn!(mailbox = %owner, error = %e, "quota usage unknown");
                false
            }
        }
    }

    /// Drop the mailboxes that are over quota from an accepted recipient. An alias with
    /// several mailboxes still delivers to those with room; only when every one is full
    /// does the sender hear 452 and retry later.
    async fn without_full_mailboxes(&self, recipient: &Address, verdict: RecipientVerdict) -> RecipientVerdict {
        let RecipientVerdict::Accept { mailboxes, forwards } = verdict else {
            return verdict;
        };
        let total = mailboxes.len();
        let mut room = Vec::with_capacity(total);
        for m in mailboxes {
            if !self.over_quota(&m).await {
                room.push(m);
            }
        }
        if room.len() < total {
            tracing::info!(recipient = %recipient, full = total - room.len(), "mailbox over quota");
        }
        if room.is_empty() && forwards.is_empty() {
            return RecipientVerdict::OverQuota;
        }
        RecipientVerdict::Accept { mailboxes: room, forwards }
    }
}

impl Policy for DirectoryPolicy {
    fn check_sender(&self, client: &ClientInfo, sender: &Mailbox) -> impl Future<Output = SenderVerdict> + Send {
        let owned = match &client.authenticated {
            Some(account) => self.directory.may_send_as(account, &sender.address),
            None => true,
        };
        let skip = self.mode == SmtpMode::Lmtp
            || client.authenticated.is_some()
            || self.is_trusted(client.ip)
            || self.directory.is_local_domain(&sender.address.domain);
        let domain = sender.address.domain.clone();
        let check = self.sender_domains.clone();
        async move {
            if !owned {
                return SenderVerdict::NotOwned;
            }
            if skip {
                return SenderVerdict::Accept;
            }
            match check.check(&domain).await {
                DomainStatus::Exists => SenderVerdict::Accept,
                DomainStatus::NotFound => SenderVerdict::UnknownDomain,
                DomainStatus::LookupFailed => SenderVerdict::TempFail,
            }
        }
    }

    fn check_recipient(
        &self,
        client: &ClientInfo,
        recipient: &Address,
    ) -> impl Future<Output = RecipientVerdict> + Send {
        let verdict = self.recipient_verdict(client, recipient);
        async move {
            let mut verdict = self.without_full_mailboxes(recipient, verdict).await;
            // Submission counts recipients, not messages: otherwise one stolen password sends
            // `MAILROOM_MESSAGES_PER_HOUR` x 100 copies. Only accepted ones use up the budget.
            if let (RecipientVerdict::Accept { .. }, SmtpMode::Submission, Some(account)) =
                (&verdict, self.mode, &client.authenticated)
                && !self.limiter.allow_recipient(&account.to_string())
            {
                tracing::warn!(user = %account, "recipient refused: hourly recipient limit reached");
                verdict = RecipientVerdict::HourlyLimit;
            }
            verdict
        }
    }
}

impl DirectoryPolicy {
    /// The recipient decision from the directory alone (synchronous: it is in memory);
    /// `check_recipient` then asks the store which mailboxes are over quota.
    pub fn recipient_verdict(&self, client: &ClientInfo, recipient: &Address) -> RecipientVerdict {
        if !self.directory.is_local_domain(&recipient.domain) {
            let may_relay = client.authenticated.is_some() || self.is_trusted(client.ip);
            return match (may_relay, self.can_queue) {
                (false, _) => RecipientVerdict::RelayDenied,
                (true, false) => RecipientVerdict::TempFail(NO_QUEUE),
                (true, true) => RecipientVerdict::Accept { mailboxes: Vec::new(), forwards: vec![recipient.clone()] },
            };
        }
        let targets = self.directory.resolve(recipient);
        if targets.is_empty() {
            // A bounce of mail we forwarded comes back to its SRS address: send it on to
            // the original sender (RFC 5321 §3.6.3 keeps the path; SRS makes it ours).
            if let Some(original) = self.srs_original(recipient) {
                return match self.can_queue {
                    true => RecipientVerdict::Accept { mailboxes: Vec::new(), forwards: vec![original] },
                    false => RecipientVerdict::TempFail(NO_QUEUE),
                };
            }
            return RecipientVerdict::Unknown;
        }
        let mut mailboxes = Vec::new();
        let mut forwards = Vec::new();
        for t in targets {
            match t {
                Recipient::Mailbox(a) => mailboxes.push(a),
                Recipient::Forward(a) => forwards.push(a),
            }
        }
        if !forwards.is_empty() && !self.can_queue {
            return RecipientVerdict::TempFail(NO_QUEUE);
        }
        RecipientVerdict::Accept { mailboxes, forwards }
    }
}

impl DirectoryPolicy {
    /// The original address behind a valid SRS0/SRS1 address of ours.
    fn srs_original(&self, recipient: &Address) -> Option<Address> {
        let srs = self.srs.as_ref()?;
        let tag = recipient.local.get(..5)?.to_ascii_uppercase();
        if tag != "SRS0=" && tag != "SRS1=" {
            return None;
        }
        Address::parse(&srs.reverse(&recipient.to_string())?).ok()
    }
}

/// Reply text when no outbound queue is wired (LMTP, tests).
const NO_QUEUE: &str = "Forwarding to remote addresses is not available yet, try again later";
