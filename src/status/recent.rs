//! The recent deliveries and refusals an operator sees on the admin page and in
//! `mailroom status`: a bounded ring of typed events, fed by the SMTP sessions (a message
//! accepted, a recipient or message refused) and by the queue workers (a recipient
//! delivered, deferred or bounced).
//!
//! Why a ring and not the logs: the page must answer "what happened to the last mails"
//! without parsing log text, and the statuses stay the typed [`Status`] the SMTP layer
//! decided. Memory is bounded twice: at most `capacity` events, and every text field
//! is cut to [`MAX_FIELD`] bytes (a reply to [`MAX_LINES`] lines), so a remote server
//! answering with a megabyte of text cannot grow it. Recording takes a short mutex
//! (never held across an await) and does no I/O.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::smtp::status::Status;

/// Events kept when the server builds the ring.
pub const DEFAULT_CAPACITY: usize = 200;
/// Longest text field kept, in bytes (cut at a character boundary, marked with `…`).
pub const MAX_FIELD: usize = 256;
/// Reply lines kept per status.
pub const MAX_LINES: usize = 4;

/// Which way the mail was going.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "direction", rename_all = "lowercase")]
pub enum RecentEvent {
    Inbound(InboundEvent),
    Outbound(OutboundEvent),
}

impl RecentEvent {
    pub fn at(&self) -> SystemTime {
        match self {
            RecentEvent::Inbound(e) => e.at,
            RecentEvent::Outbound(e) => e.at,
        }
    }
}

/// A message (or one recipient of it) accepted or refused by one of our SMTP services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InboundEvent {
    #[serde(serialize_with = "super::unix_secs")]
    pub at: SystemTime,
    /// `smtp`, `submission`, `submissions`, `lmtp`.
    pub service: &'static str,
    pub client: IpAddr,
    /// The envelope sender, empty for the null sender (or before MAIL FROM).
    pub sender: String,
    pub recipients: usize,
    pub first_recipient: String,
    pub accepted: bool,
    /// The reply we gave (for a message: the first refusal when any recipient was refused).
    pub status: Status,
}

/// What became of one recipient after a delivery attempt from the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundResult {
    Delivered,
    /// A temporary failure: the item is retried later.
    Deferred,
    /// A permanent failure or the end of the queue lifetime: the sender gets a DSN.
    Bounced,
}

/// One recipient's outcome of a queue delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboundEvent {
    #[serde(serialize_with = "super::unix_secs")]
    pub at: SystemTime,
    pub queue_id: String,
    pub recipient_domain: String,
    pub result: OutboundResult,
    /// The remote reply, or our local diagnostic (code `0`).
    pub status: Status,
}

/// The ring. Shared behind an `Arc` by the SMTP services, the queue and the status
/// snapshot.
#[derive(Debug)]
pub struct RecentEvents {
    capacity: usize,
    events: Mutex<VecDeque<RecentEvent>>,
}

impl Default for RecentEvents {
    fn default() -> Self {
        RecentEvents::new(DEFAULT_CAPACITY)
    }
}

impl RecentEvents {
    /// A ring keeping the last `capacity` events (at least one).
    pub fn new(capacity: usize) -> RecentEvents {
        let capacity = capacity.max(1);
        RecentEvents { capacity, events: Mutex::new(VecDeque::with_capacity(capacity)) }
    }

    /// Add an event, its text cut to the bounds; the oldest goes when the ring is full.
    pub fn record(&self, event: RecentEvent) {
        let event = bounded(event);
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// A copy of the events, newest first.
    pub fn newest_first(&self) -> Vec<RecentEvent> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().rev().cloned().collect()
    }

    /// A message accepted or refused by a service (see [`InboundEvent`]).
    pub fn inbound(
        &self,
        service: &'static str,
        client: IpAddr,
        sender: &str,
        recipients: &[String],
        accepted: bool,
        status: &Status,
    ) {
        self.record(RecentEvent::Inbound(InboundEvent {
            at: SystemTime::now(),
            service,
            client,
            sender: sender.to_string(),
            recipients: recipients.len(),
            first_recipient: recipients.first().cloned().unwrap_or_default(),
            accepted,
            status: status.clone(),
        }));
    }

    /// A recipient's outcome of a queue attempt (see [`OutboundEvent`]).
    pub fn outbound(&self, queue_id: &str, recipient_domain: &str, result: OutboundResult, status: &Status) {
        self.record(RecentEvent::Outbound(OutboundEvent {
            at: SystemTime::now(),
            queue_id: queue_id.to_string(),
            recipient_domain: recipient_domain.to_string(),
            result,
            status: status.clone(),
        }));
    }
}

fn bounded(event: RecentEvent) -> RecentEvent {
    match event {
        RecentEvent::Inbound(mut e) => {
            cut(&mut e.sender);
            cut(&mut e.first_recipient);
            e.status = bounded_status(e.status);
            RecentEvent::Inbound(e)
        }
        RecentEvent::Outbound(mut e) => {
            cut(&mut e.queue_id);
            cut(&mut e.recipient_domain);
            e.status = bounded_status(e.status);
            RecentEvent::Outbound(e)
        }
    }
}

fn bounded_status(mut status: Status) -> Status {
    status.text.truncate(MAX_LINES);
    status.text.iter_mut().for_each(cut);
    status
}

/// Cut `text` to at most [`MAX_FIELD`] bytes at a character boundary, ending in `…`.
fn cut(text: &mut String) {
    if text.len() <= MAX_FIELD {
        return;
    }
    let mark = '…';
    let mut end = MAX_FIELD - mark.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push(mark);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(text: &str) -> Status {
        Status::new(250, (2, 0, 0), text)
    }

    fn outbound(ring: &RecentEvents, id: &str) {
        ring.outbound(id, "remote.test", OutboundResult::Delivered, &status("ok"));
    }

    fn ids(ring: &RecentEvents) -> Vec<String> {
        ring.newest_first()
            .into_iter()
            .map(|e| match e {
                RecentEvent::Outbound(o) => o.queue_id,
                RecentEvent::Inbound(i) => i.first_recipient,
            })
            .collect()
    }

    #[test]
    fn keeps_the_last_events_newest_first() {
        let ring = RecentEvents::new(3);
        assert!(ring.newest_first().is_empty());
        for id in ["a", "b", "c", "d", "e"] {
            outbound(&ring, id);
        }
        assert_eq!(ids(&ring), ["e", "d", "c"]);
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_last_event() {
        let ring = RecentEvents::new(0);
        outbound(&ring, "a");
        outbound(&ring, "b");
        assert_eq!(ids(&ring), ["b"]);
    }

    #[test]
    fn long_fields_and_replies_are_cut() {
        let ring = RecentEvents::new(2);
        let long_sender = format!("{}@example.org", "é".repeat(400));
        let mut reply = Status::lines(550, (0..10).map(|i| format!("line {i} {}", "x".repeat(1000))).collect());
        reply.enhanced = Some(crate::smtp::status::Enhanced(5, 7, 1));
        ring.inbound("smtp", "192.0.2.1".parse().unwrap(), &long_sender, &["a@b.test".to_string()], false, &reply);
        let events: [RecentEvent; 1] = ring.newest_first().try_into().unwrap();
        let [RecentEvent::Inbound(e)] = events else { panic!("one inbound event") };
        assert!(e.sender.len() <= MAX_FIELD, "{}", e.sender.len());
        assert!(e.sender.ends_with('…') && e.sender.starts_with("éé"));
        assert_eq!(e.status.text.len(), MAX_LINES);
        assert!(e.status.text.iter().all(|l| l.len() <= MAX_FIELD && l.ends_with('…')));
        assert_eq!(e.status.code, crate::smtp::status::Code::Reply(550));
        assert_eq!(e.status.enhanced, Some(crate::smtp::status::Enhanced(5, 7, 1)));
        assert_eq!((e.recipients, e.first_recipient.as_str(), e.accepted), (1, "a@b.test", false));
    }

    #[test]
    fn short_fields_are_kept_whole() {
        let mut text = "x".repeat(MAX_FIELD);
        cut(&mut text);
        assert_eq!(text.len(), MAX_FIELD);
        assert!(!text.ends_with('…'));
    }

    #[test]
    fn events_serialise_with_their_direction() {
        let ring = RecentEvents::new(2);
        ring.outbound("q1", "remote.test", OutboundResult::Deferred, &Status::local((4, 4, 1), "refused"));
        let json = serde_json::to_value(ring.newest_first()).unwrap();
        assert_eq!(json[0]["direction"], "outbound");
        assert_eq!(json[0]["result"], "deferred");
        assert_eq!(json[0]["queue_id"], "q1");
    }
}
