//! The mail log: one INFO line per message per stage, under the one target
//! [`TARGET`], with the same message id (`msgid`, the SMTP transaction's id, which the
//! queue keeps as its items' `message_id`) from the moment the content arrived to its
//! final delivery, deferral or bounce. `grep <msgid>` tells a message's whole story, and
//! `mailroom log-summary` (`logsummary/`) builds the daily report from these lines alone.
//!
//! Each stage has ONE function here, and each function always records the same fields
//! (empty strings or zero where a value does not apply), so the keys of a stage never
//! change from one line to the next: interface.md lists them and calls them stable.
//! Strings are recorded as `&str` (never `%Display`), so the text format quotes and
//! escapes them like JSON does and a summary can read both formats back.
//!
//! This module only writes log events; it decides nothing and counts nothing (metrics
//! are `metrics.rs`'s).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::smtp::refusal::Refusal;
use crate::smtp::status::{Code, Status};

/// The tracing target of every mail log line (`MAILROOM_LOG=mailroom::mail=info` keeps
/// only them).
pub const TARGET: &str = "mailroom::mail";

/// The stages a message goes through, in the order they happen. The `stage` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Port 25's SPF/DKIM/DMARC/ARC and scanner verdict.
    Judged,
    /// The message is ours: it passed the checks and is about to be queued and stored.
    Received,
    /// A remote recipient's copy is in the queue (durable).
    Queued,
    /// A local recipient's copies are in the store (durable).
    Stored,
    /// The remote server took a queued copy.
    Delivered,
    /// A delivery attempt failed temporarily; the queue tries again.
    Deferred,
    /// A queued copy failed for good (permanent reply or lifetime expired).
    Bounced,
    /// We refused a recipient (at RCPT or at delivery) or the whole message (after DATA).
    Refused,
    /// A delivery status notification about the message went to its sender.
    Dsn,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Judged,
        Stage::Received,
        Stage::Queued,
        Stage::Stored,
        Stage::Delivered,
        Stage::Deferred,
        Stage::Bounced,
        Stage::Refused,
        Stage::Dsn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Judged => "judged",
            Stage::Received => "received",
            Stage::Queued => "queued",
            Stage::Stored => "stored",
            Stage::Delivered => "delivered",
            Stage::Deferred => "deferred",
            Stage::Bounced => "bounced",
            Stage::Refused => "refused",
            Stage::Dsn => "dsn",
        }
    }

    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What every line about one message carries: its id, the service it came in by, the
/// envelope sender (empty for the null sender) and its size in bytes (0 before DATA).
#[derive(Clone, Copy, Debug)]
pub struct Mail<'a> {
    pub msgid: &'a str,
    pub service: &'a str,
    pub from: &'a str,
    pub size: u64,
}

/// The enhanced status code of `status` as the `status` field shows it: its own, or
/// the class of its reply code (`X.0.0`) when it has none; a local diagnostic without
/// one is a temporary failure (`4.0.0`).
pub fn status_code(status: &Status) -> String {
    if let Some(e) = status.enhanced {
        return e.to_string();
    }
    match status.code {
        Code::Reply(n) if (200..300).contains(&n) => "2.0.0".into(),
        Code::Reply(n) if (500..600).contains(&n) => "5.0.0".into(),
        _ => "4.0.0".into(),
    }
}

/// Port 25's verdict on the message (`verdict`: accept, junk or refuse).
#[allow(clippy::too_many_arguments)]
pub fn judged(m: &Mail, to: &str, spf: &str, dkim: &str, dmarc: &str, arc: &str, verdict: &str) {
    tracing::info!(
        target: TARGET,
        msgid = m.msgid,
        stage = "judged",
        service = m.service,
        from = m.from,
        to,
        size = m.size,
        spf,
        dkim,
        dmarc,
        arc,
        verdict,
        "judged"
    );
}

/// The message is ours: `to` every envelope recipient (comma-separated), `tls` the
/// client connection's TLS version ("none" in plaintext).
pub fn received(m: &Mail, to: &str, nrcpt: usize, client: IpAddr, helo: &str, tls: &str) {
    tracing::info!(
        target: TARGET,
        msgid = m.msgid,
        stage = "received",
        service = m.service,
        from = m.from,
        to,
        size = m.size,
        nrcpt,
        client = client.to_string().as_str(),
        helo,
        tls,
        "received"
    );
}

/// The copy for the remote recipient `to` is in the queue as item `queue_id`.
pub fn queued(m: &Mail, to: &str, queue_id: &str) {
    tracing::info!(
        target: TARGET,
        msgid = m.msgid,
        stage = "queued",
        service = m.service,
        from = m.from,
        to,
        size = m.size,
        status = "2.0.0",
        queue_id,
        "queued"
    );
}

/// Every local copy the recipient `to` needed is durable.
pub fn stored(m: &Mail, to: &str) {
    tracing::info!(
        target: TARGET,
        msgid = m.msgid,
        stage = "stored",
        service = m.service,
        from = m.from,
        to,
        size = m.size,
        status = "2.0.0",
        "stored"
    );
}

/// We refused `to` (one recipient, or every recipient of a message refused whole) with
/// `status`, for `reason`.
pub fn refused(m: &Mail, to: &str, status: &Status, reason: Refusal) {
    tracing::info!(
        target: TARGET,
        msgid = m.msgid,
        stage = "refused",
        service = m.service,
        from = m.from,
        to,
        size = m.size,
        status = status_code(status).as_str(),
        reason = reason.label(),
        reply = status.one_line().as_str(),
        "refused"
    );
}

/// The `service` of the queue's delivery lines.
pub const OUTBOUND: &str = "outbound";

/// One delivery attempt's result for one queued recipient.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    pub mail: Mail<'a>,
    pub queue_id: &'a str,
    pub to: &'a str,
    pub status: &'a Status,
    /// The host that answered, `name[ip]:port`; empty when none was reached.
    pub relay: &'a str,
    /// The connection's TLS ("none", "unverified", "verified"; empty when none was reached).
    pub tls: &'a str,
    /// When the message was received (the queue item's creation).
    pub received: SystemTime,
    pub attempt: u32,
}

/// Seconds since `received`, to the tenth (the `delay` field).
fn delay_secs(received: SystemTime) -> f64 {
    let d = SystemTime::now().duration_since(received).unwrap_or(Duration::ZERO);
    (d.as_secs_f64() * 10.0).round() / 10.0
}

fn attempt_line(stage: Stage, a: &Attempt) {
    let m = &a.mail;
    tracing::info!(
        target: TARGET,
        msgid = m.msgid,
        stage = stage.name(),
        service = m.service,
        from = m.from,
        to = a.to,
        size = m.size,
        status = status_code(a.status).as_str(),
        queue_id = a.queue_id,
        relay = a.relay,
        tls = a.tls,
        delay = delay_secs(a.received),
        attempt = a.attempt,
        reply = a.status.one_line().as_str(),
        "{}",
        stage.name()
    );
}

/// The remote server took the copy.
pub fn delivered(a: &Attempt) {
    attempt_line(Stage::Delivered, a);
}

/// The attempt failed temporarily.
pub fn deferred(a: &Attempt) {
    attempt_line(Stage::Deferred, a);
}

/// The copy failed for good.
pub fn bounced(a: &Attempt) {
    attempt_line(Stage::Bounced, a);
}

/// A DSN (`kind`: failure or delay) about the message went to its sender `to`:
/// `disposition` "stored" (a local sender) or "queued" (as item `dsn_queue_id`), or
/// "failed" when it could not be handed over.
pub fn dsn(m: &Mail, queue_id: &str, to: &str, kind: &str, disposition: &str, dsn_queue_id: &str) {
    tracing::info!(
        target: TARGET,
        msgid = m.msgid,
        stage = "dsn",
        service = m.service,
        from = m.from,
        to,
        size = m.size,
        queue_id,
        kind,
        disposition,
        dsn_queue_id,
        "dsn"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip_through_their_names() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.name()), Some(s));
        }
        assert_eq!(Stage::parse("other"), None);
    }

    #[test]
    fn the_status_field_is_an_enhanced_code_even_without_one() {
        assert_eq!(status_code(&Status::new(250, (2, 0, 0), "ok")), "2.0.0");
        assert_eq!(status_code(&Status::new(550, (5, 1, 1), "no")), "5.1.1");
        let plain = |code| Status { code: Code::Reply(code), enhanced: None, text: vec!["x".into()] };
        assert_eq!(status_code(&plain(554)), "5.0.0");
        assert_eq!(status_code(&plain(421)), "4.0.0");
        assert_eq!(status_code(&plain(250)), "2.0.0");
        let local = Status { code: Code::Local, enhanced: None, text: vec![] };
        assert_eq!(status_code(&local), "4.0.0");
    }
}
