//! Scheduling and delivery attempts: which items are due, how many deliveries run at
//! once, and what each outcome does to the item.
//!
//! One attempt takes one item, splits its pending recipients by domain (they share MX
//! hosts) and hands each group to the transport under two semaphores: the global limit
//! and the per-domain one (a polite client does not open 32 connections to one small
//! MX). Outcomes then decide: delivered recipients are done, permanent failures bounce
//! at once, temporary ones are retried on the backoff schedule until the queue lifetime,
//! then bounce; the sender gets one delay warning after `delay_warning`. A DSN is handed
//! over *before* the item is updated or removed, so a crash can duplicate a bounce but
//! never lose one. The null sender never gets a DSN (RFC 5321 §6.1: no bounce loops).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;

use super::backend::{Claimed, Finished};
use super::dsn::{self, DsnKind, DsnRecipient};
use super::envelope::{Envelope, ItemState, RecipientStatus};
use super::{BatchOutcome, BounceDisposition, DeliveryBatch, Inner, Queue, RecipientOutcome, Relay, backoff};
use crate::maillog::{self, Attempt, Mail};
use crate::metrics::metrics;
use crate::smtp::status::Status;
use crate::status::OutboundResult;

/// How long shutdown waits for attempts in flight before abandoning them (they are
/// retried after the restart).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub(super) async fn run(queue: Queue, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut attempts: JoinSet<()> = JoinSet::new();
    // How long the scheduler sleeps at most without a wake-up: other replicas' changes
    // arrive by NOTIFY, but a lost notification must not stall the queue for long.
    let max_sleep = queue.inner.backend.max_sleep();
    let _listener = queue.inner.backend.spawn_listener(Arc::downgrade(&queue.inner));
    let limit = queue.inner.settings.max_concurrency.max(1);
    // A dropped sender can never signal shutdown; stop watching it rather than spin.
    let mut watching = true;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = SystemTime::now();
        // A shared queue hands this replica no more items than it can start now, so the
        // others take the rest instead of waiting for this one's semaphores.
        let room = limit.saturating_sub(attempts.len());
        let (due, next) = queue.inner.backend.claim_due(now, room).await;
        for claimed in due {
            let q = queue.clone();
            attempts.spawn(async move { attempt(&q, claimed).await });
        }
        queue.inner.refresh_gauges();
        queue.inner.backend.refresh_shared_gauges().await;
        let sleep = next.and_then(|t| t.duration_since(now).ok()).unwrap_or(max_sleep).min(max_sleep);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = queue.inner.wake.notified() => {}
            changed = shutdown.changed(), if watching => watching = changed.is_ok(),
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
        }
    }
    let drain = async { while attempts.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("queue: attempts still running at shutdown were abandoned; they are retried at the next start");
        attempts.abort_all();
        queue.inner.backend.release_own_leases().await;
    }
}

/// One delivery attempt of one item, start to finish.
async fn attempt(queue: &Queue, claimed: Claimed) {
    let inner = &queue.inner;
    let mut env = claimed.envelope.clone();
    let id = env.id.clone();
    // Renews a shared queue's lease until the result is written back.
    let lease = inner.backend.keep_lease(&claimed);
    let message = inner.backend.read_message(&claimed).await.map(Arc::new);
    let started = std::time::Instant::now();
    let outcomes: Vec<(usize, RecipientOutcome, Option<Relay>)> = match &message {
        Ok(bytes) => deliver_all(inner, &env, bytes.clone()).await,
        Err(e) => {
            tracing::error!(queue_id = %id, msgid = %env.message_id, error = %e, "queue: cannot read the spooled message");
            let spool_error = Status::local((4, 3, 0), format!("local spool error: {e}"));
            pending_indexes(&env).map(|i| (i, RecipientOutcome::Temporary(spool_error.clone()), None)).collect()
        }
    };
    let from = env.sender.as_ref().map(|a| a.to_string()).unwrap_or_default();
    let size = message.as_ref().map(|m| m.len() as u64).unwrap_or(0);
    let mail = Mail { msgid: &env.message_id, service: maillog::OUTBOUND, from: &from, size };
    metrics().queue_delivery_attempts_total.inc();
    metrics().queue_attempt_duration_seconds.observe(started.elapsed().as_secs_f64());

    let now = SystemTime::now();
    let age = env.age(now);
    env.attempts = env.attempts.saturating_add(1);
    let mut failed: Vec<DsnRecipient> = Vec::new();
    for (i, outcome, relay) in outcomes {
        let Some(r) = env.recipients.get_mut(i) else { continue };
        let result = match &outcome {
            RecipientOutcome::Delivered(_) => {
                r.status = RecipientStatus::Delivered;
                "delivered"
            }
            RecipientOutcome::Permanent(status) => {
                r.status = RecipientStatus::Failed;
                failed.push(DsnRecipient { address: r.address.clone(), status: status.clone() });
                "failed"
            }
            RecipientOutcome::Temporary(_) => "deferred",
        };
        let to = r.address.to_string();
        let (relay, tls) = relay.as_ref().map(|r| (r.host.as_str(), r.tls)).unwrap_or(("", ""));
        let line = Attempt {
            mail,
            queue_id: id.as_str(),
            to: &to,
            status: outcome.status(),
            relay,
            tls,
            received: env.created,
            attempt: env.attempts,
        };
        match &outcome {
            RecipientOutcome::Delivered(_) => maillog::delivered(&line),
            RecipientOutcome::Temporary(_) => maillog::deferred(&line),
            RecipientOutcome::Permanent(_) => maillog::bounced(&line),
        }
        metrics().queue_deliveries_total.with_label_values(&[result]).inc();
        let shown_result = if result == "failed" { "bounced" } else { result };
        if result != "deferred" {
            metrics().queue_time_seconds.with_label_values(&[shown_result]).observe(age.as_secs_f64());
        }
        let class = status_class(outcome.status().enhanced);
        metrics().queue_delivery_status_total.with_label_values(&[shown_result, class]).inc();
        if let Some(recent) = inner.recent.get() {
            let shown = match outcome {
                RecipientOutcome::Delivered(_) => OutboundResult::Delivered,
                RecipientOutcome::Temporary(_) => OutboundResult::Deferred,
                RecipientOutcome::Permanent(_) => OutboundResult::Bounced,
            };
            recent.outbound(id.as_str(), &r.address.domain, shown, outcome.status());
        }
        r.record(outcome.status());
    }

    let settings = &inner.settings;
    let mut delayed: Vec<DsnRecipient> = Vec::new();
    if env.pending().next().is_some() {
        if age >= settings.lifetime {
            for r in env.recipients.iter_mut().filter(|r| r.status == RecipientStatus::Pending) {
                let last = r.last_reply.clone().unwrap_or_default();
                let expired =
                    Status::local((5, 4, 7), format!("delivery time expired after {}; last error: {last}", human(age)));
                let to = r.address.to_string();
                maillog::bounced(&Attempt {
                    mail,
                    queue_id: id.as_str(),
                    to: &to,
                    status: &expired,
                    relay: "",
                    tls: "",
                    received: env.created,
                    attempt: env.attempts,
                });
                metrics().queue_deliveries_total.with_label_values(&["expired"]).inc();
                metrics().queue_time_seconds.with_label_values(&["bounced"]).observe(age.as_secs_f64());
                metrics()
                    .queue_delivery_status_total
                    .with_label_values(&["bounced", status_class(expired.enhanced)])
                    .inc();
                if let Some(recent) = inner.recent.get() {
                    recent.outbound(id.as_str(), &r.address.domain, OutboundResult::Bounced, &expired);
                }
                r.status = RecipientStatus::Failed;
                r.record(&expired);
                failed.push(DsnRecipient { address: r.address.clone(), status: expired });
            }
        } else {
            env.state = ItemState::Deferred;
            env.next_attempt = now + backoff::next_delay(env.attempts, settings.retry_min, settings.retry_max);
            if let Some(warn_after) = settings.delay_warning
                && age >= warn_after
                && !env.delay_warned
            {
                env.delay_warned = true;
                delayed =
                    env.pending().map(|r| DsnRecipient { address: r.address.clone(), status: r.last() }).collect();
            }
        }
    }

    // Bounces first: they are durable once handed over, and only then may the item go.
    if !failed.is_empty() || !delayed.is_empty() {
        // The bytes read for the attempt serve the DSN too (the message never changes).
        let original = match message {
            Ok(bytes) => bytes,
            Err(_) => Arc::new(inner.backend.read_message(&claimed).await.unwrap_or_default()),
        };
        if !failed.is_empty() {
            send_dsn(queue, &env, DsnKind::Failure, &failed, &original, None).await;
        }
        if !delayed.is_empty() {
            let until = env.created + settings.lifetime;
            send_dsn(queue, &env, DsnKind::Delay, &delayed, &original, Some(until)).await;
        }
    }

    // The renewal stops first, so it cannot extend a lease the write-back just ended.
    drop(lease);
    finish(queue, &claimed, env).await;
}

/// Store the attempt's result (or remove the item), honouring what the operator did
/// meanwhile (hold, delete) and, on a shared queue, only while the claim still holds.
async fn finish(queue: &Queue, claimed: &Claimed, env: Envelope) {
    let inner = &queue.inner;
    let id = env.id.clone();
    let msgid = env.message_id.clone();
    match inner.backend.finish(claimed, env).await {
        Ok(Finished::Removed) => tracing::info!(queue_id = %id, msgid, "queue: item done, removed"),
        Ok(Finished::Updated) => {}
        Ok(Finished::Gone) => {
            tracing::info!(queue_id = %id, msgid, "queue: item deleted or taken over meanwhile; result dropped")
        }
        Err(e) => tracing::error!(queue_id = %id, msgid, error = %e, "queue: cannot update the spool"),
    }
    inner.refresh_gauges();
}

fn pending_indexes(env: &Envelope) -> impl Iterator<Item = usize> + '_ {
    env.recipients.iter().enumerate().filter(|(_, r)| r.status == RecipientStatus::Pending).map(|(i, _)| i)
}

/// Hand every pending recipient to the transport, one batch per domain, concurrently
/// within the limits. Returns (recipient index, outcome) pairs.
async fn deliver_all(
    inner: &Inner,
    env: &Envelope,
    message: Arc<Vec<u8>>,
) -> Vec<(usize, RecipientOutcome, Option<Relay>)> {
    let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in pending_indexes(env) {
        by_domain.entry(env.recipients[i].address.domain.clone()).or_default().push(i);
    }
    let mut tasks = JoinSet::new();
    for (domain, indexes) in by_domain {
        let batch = DeliveryBatch {
            queue_id: env.id.clone(),
            sender: env.sender.clone(),
            domain: domain.clone(),
            recipients: indexes.iter().map(|&i| env.recipients[i].address.clone()).collect(),
            message: message.clone(),
            require_tls: env.require_tls,
        };
        let domain_limit = inner.domain_semaphore(&domain);
        let global = inner.global.clone();
        let transport = inner.transport.clone();
        tasks.spawn(async move {
            // Domain first, then global: waiting for a busy domain must not hold one of
            // the global slots other domains could use.
            let _d = domain_limit.acquire_owned().await;
            let _g = global.acquire_owned().await;
            let n = batch.recipients.len();
            let BatchOutcome { mut outcomes, relay } = transport.deliver(batch).await;
            outcomes.resize(n, RecipientOutcome::Temporary(Status::local((4, 3, 0), "transport gave no outcome")));
            indexes.into_iter().zip(outcomes).map(|(i, o)| (i, o, relay.clone())).collect::<Vec<_>>()
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(pairs) => out.extend(pairs),
            Err(e) => {
                tracing::error!(queue_id = %env.id, msgid = %env.message_id, error = %e, "queue: delivery task failed")
            }
        }
    }
    out
}

impl Inner {
    fn domain_semaphore(&self, domain: &str) -> Arc<tokio::sync::Semaphore> {
        let mut domains = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        // Forget idle domains now and then so the map does not grow without bound.
        if domains.len() > 10_000 {
            let limit = self.settings.per_domain_concurrency.max(1);
            domains.retain(|_, s| s.available_permits() < limit);
        }
        domains
            .entry(domain.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.settings.per_domain_concurrency.max(1))))
            .clone()
    }
}

/// Build a DSN and hand it to the bounce sink, or spool it for a remote sender.
async fn send_dsn(
    queue: &Queue,
    env: &Envelope,
    kind: DsnKind,
    recipients: &[DsnRecipient],
    original: &[u8],
    until: Option<SystemTime>,
) {
    let Some(sender) = env.sender.clone() else {
        tracing::info!(queue_id = %env.id, msgid = %env.message_id, "queue: no DSN for the null sender");
        return;
    };
    let inner = &queue.inner;
    let bytes = dsn::build(&inner.settings.hostname, env, kind, recipients, original, until);
    let (from, to) = (sender.to_string(), sender.to_string());
    let mail = Mail { msgid: &env.message_id, service: maillog::OUTBOUND, from: &from, size: original.len() as u64 };
    let kind_name = match kind {
        DsnKind::Failure => "failure",
        DsnKind::Delay => "delay",
    };
    metrics().queue_bounces_total.with_label_values(&[kind_name]).inc();
    match inner.bounces.bounce(&sender, &bytes).await {
        Ok(BounceDisposition::Delivered) => maillog::dsn(&mail, env.id.as_str(), &to, kind_name, "stored", ""),
        Ok(BounceDisposition::Remote) => {
            // The DSN's queue item carries the original's id, so one grep follows the
            // message from its SMTP transaction to the report about it. A REQUIRETLS
            // message's DSN (its header section) travels under the same rule (RFC 8689).
            let msgid = env.message_id.clone();
            let options = super::ItemOptions { require_tls: env.require_tls };
            let parts = vec![bytes::Bytes::from(bytes)];
            match queue.enqueue_with(None, std::slice::from_ref(&sender), parts, &msgid, options).await {
                Ok(dsn_id) => maillog::dsn(&mail, env.id.as_str(), &to, kind_name, "queued", dsn_id.as_str()),
                Err(e) => {
                    tracing::error!(queue_id = %env.id, msgid = %env.message_id, error = %e, "queue: cannot queue the DSN")
                }
            }
        }
        Err(e) => {
            tracing::error!(queue_id = %env.id, msgid = %env.message_id, to = %sender, error = %e, "queue: DSN could not be stored")
        }
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86400 {
        format!("{}d{}h", s / 86400, (s % 86400) / 3600)
    } else if s >= 3600 {
        format!("{}h{}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{s}s")
    }
}

/// The `status_class` label: an RFC 3463 class and subject (`5.1` addressing, `4.4`
/// network and routing, `5.7` security or policy, ...), bounded to the classes and
/// subjects RFC 3463 defines.
fn status_class(enhanced: Option<crate::smtp::status::Enhanced>) -> &'static str {
    const CLASSES: [[&str; 8]; 3] = [
        ["2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7"],
        ["4.0", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7"],
        ["5.0", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7"],
    ];
    let Some(crate::smtp::status::Enhanced(class, subject, _)) = enhanced else { return "none" };
    let row = match class {
        2 => 0,
        4 => 1,
        5 => 2,
        _ => return "other",
    };
    CLASSES[row].get(usize::from(subject)).copied().unwrap_or("other")
}
