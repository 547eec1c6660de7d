//! The counters of a summary, fed one [`Event`] at a time. Memory is bounded by the
//! number of distinct keys (domains, reasons, days), each map capped at
//! [`MAX_KEYS`] with the rest counted under "other" — never by the number of lines.

use std::collections::HashMap;

use super::parse::Event;
use crate::maillog::Stage;

/// Distinct keys kept per map; later new keys count as [`OTHER`].
pub const MAX_KEYS: usize = 10_000;
/// Where keys past [`MAX_KEYS`] are counted.
pub const OTHER: &str = "(other)";
/// Longest reply text kept as a deferral or bounce reason.
const REASON_CHARS: usize = 100;

/// A message count and its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Count {
    pub count: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// Counts by key, at most [`MAX_KEYS`] keys plus [`OTHER`].
#[derive(Debug, Default)]
pub struct Capped {
    map: HashMap<String, Count>,
    other: Count,
}

impl Capped {
    pub fn add(&mut self, key: &str, bytes: u64) {
        if let Some(c) = self.map.get_mut(key) {
            c.add(bytes);
        } else if self.map.len() < MAX_KEYS {
            self.map.entry(key.to_string()).or_default().add(bytes);
        } else {
            self.other.add(bytes);
        }
    }

    /// The `n` largest by count (then bytes, then key), "other" last when anything
    /// went there.
    pub fn top(&self, n: usize) -> Vec<(String, Count)> {
        let mut all: Vec<(&String, &Count)> = self.map.iter().collect();
        all.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(b.1.bytes.cmp(&a.1.bytes)).then(a.0.cmp(b.0)));
        let mut out: Vec<(String, Count)> = all.into_iter().take(n).map(|(k, c)| (k.clone(), *c)).collect();
        if self.other.count > 0 {
            out.push((OTHER.to_string(), self.other));
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.other.count == 0
    }
}

/// What happened in one hour or on one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub rejected: u64,
}

/// Everything the report shows.
#[derive(Debug, Default)]
pub struct Tally {
    pub received: Count,
    /// Local copies stored plus remote copies the remote server took.
    pub delivered: Count,
    /// Remote copies put in the queue (pflogsumm's "forwarded").
    pub queued: Count,
    pub deferred: u64,
    pub bounced: u64,
    pub rejected: u64,
    pub dsns: u64,
    pub refusal_reasons: Capped,
    pub sender_domains: Capped,
    pub recipient_domains: Capped,
    pub deferral_reasons: Capped,
    pub bounce_reasons: Capped,
    pub spf: Capped,
    pub dkim: Capped,
    pub dmarc: Capped,
    pub hours: [Traffic; 24],
    day_traffic: HashMap<String, Traffic>,
}

impl Tally {
    pub fn add(&mut self, e: &Event) {
        let Some(stage) = e.stage else { return };
        let hour = &mut self.hours[usize::from(e.hour.min(23))];
        let room = self.day_traffic.len() < MAX_KEYS || self.day_traffic.contains_key(&e.day);
        let mut scratch = Traffic::default();
        let day = match room {
            true => self.day_traffic.entry(e.day.clone()).or_default(),
            false => &mut scratch,
        };
        match stage {
            Stage::Received => {
                self.received.add(e.size);
                hour.received += 1;
                day.received += 1;
                self.sender_domains.add(&domain(&e.from), e.size);
            }
            Stage::Stored | Stage::Delivered => {
                self.delivered.add(e.size);
                hour.delivered += 1;
                day.delivered += 1;
                self.recipient_domains.add(&domain(&e.to), e.size);
            }
            Stage::Queued => self.queued.add(e.size),
            Stage::Deferred => {
                self.deferred += 1;
                hour.deferred += 1;
                day.deferred += 1;
                self.deferral_reasons.add(&reason(e), e.size);
            }
            Stage::Bounced => {
                self.bounced += 1;
                hour.bounced += 1;
                day.bounced += 1;
                self.bounce_reasons.add(&reason(e), e.size);
            }
            Stage::Refused => {
                self.rejected += 1;
                hour.rejected += 1;
                day.rejected += 1;
                self.refusal_reasons.add(&e.reason, e.size);
            }
            Stage::Judged => {
                self.spf.add(&e.spf, 0);
                self.dkim.add(&e.dkim, 0);
                self.dmarc.add(&e.dmarc, 0);
            }
            Stage::Dsn => self.dsns += 1,
        }
    }

    /// Each day's traffic, oldest first.
    pub fn per_day(&self) -> Vec<(String, Traffic)> {
        let mut days: Vec<(String, Traffic)> = self.day_traffic.iter().map(|(d, t)| (d.clone(), *t)).collect();
        days.sort_by(|a, b| a.0.cmp(&b.0));
        days
    }
}

/// The domain of an address ("<>" for the null sender, the whole text when it has no
/// `@`), lowercased.
fn domain(address: &str) -> String {
    match address.rsplit_once('@') {
        _ if address.is_empty() => "<>".to_string(),
        Some((_, d)) => d.to_ascii_lowercase(),
        None => address.to_ascii_lowercase(),
    }
}

/// A deferral or bounce reason: the start of the reply (which begins with its codes),
/// or the status alone.
fn reason(e: &Event) -> String {
    match e.reply.is_empty() {
        true => e.status.clone(),
        false => e.reply.chars().take(REASON_CHARS).collect(),
    }
}
