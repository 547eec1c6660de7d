//! The in-memory counters a report kind gathers between flushes to the store: one
//! mutex-guarded map update per event (no I/O), bounded — at most
//! [`MAX_REPORT_ROWS_PER_DAY`] rows per domain and day, [`MAX_DOMAINS`] domain-days and
//! [`MAX_ROWS_IN_MEMORY`] rows in all between two flushes; what does not fit is counted
//! as dropped ([`Row::dropped`]) and left out of the reports, never delayed or refused.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{MAX_REPORT_ROWS_PER_DAY, ReportCount, ReportKind};

/// Most domain-days held in memory between two flushes.
pub const MAX_DOMAINS: usize = 10_000;
/// Most rows held in memory between two flushes, over all domains.
pub const MAX_ROWS_IN_MEMORY: usize = 100_000;

/// A report row key: events that agree on all of it are counted together. Stored
/// opaque (as JSON) in the store's counters of [`Row::KIND`].
pub trait Row: Serialize + DeserializeOwned + Eq + Hash + Clone + Send + 'static {
    const KIND: ReportKind;
    /// Count `events` left out of the reports (a metric of the kind).
    fn dropped(events: u64);
}

/// The UTC day (days since 1970-01-01) of `t`.
pub fn day_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| (d.as_secs() / 86_400) as i64)
}

/// The counters not yet flushed to the store.
#[derive(Debug)]
pub struct Recorder<R> {
    days: Mutex<Days<R>>,
}

impl<R> Default for Recorder<R> {
    fn default() -> Self {
        Recorder { days: Mutex::new(Days { rows: HashMap::new(), total: 0 }) }
    }
}

#[derive(Debug)]
struct Days<R> {
    rows: HashMap<(String, i64), HashMap<R, u64>>,
    /// Rows in `rows`, over all domain-days.
    total: usize,
}

impl<R: Row> Days<R> {
    /// Add `n` events of `row`; false when a bound leaves it out.
    fn add(&mut self, key: (String, i64), row: R, n: u64) -> bool {
        if !self.rows.contains_key(&key) && self.rows.len() >= MAX_DOMAINS {
            return false;
        }
        let total = self.total;
        let rows = self.rows.entry(key).or_default();
        if let Some(count) = rows.get_mut(&row) {
            *count = count.saturating_add(n);
            return true;
        }
        if rows.len() >= MAX_REPORT_ROWS_PER_DAY || total >= MAX_ROWS_IN_MEMORY {
            return false;
        }
        rows.insert(row, n);
        self.total += 1;
        true
    }
}

impl<R: Row> Recorder<R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Days<R>> {
        self.days.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one event of `domain` at time `now`. Never blocks on anything but the map's mutex.
    pub fn record(&self, domain: &str, row: R, now: SystemTime) {
        if !self.lock().add((domain.to_string(), day_of(now)), row, 1) {
            R::dropped(1);
        }
    }

    /// Everything counted so far, as store rows; the recorder is empty afterwards.
    pub fn take(&self) -> Vec<ReportCount> {
        let days = std::mem::replace(&mut *self.lock(), Days { rows: HashMap::new(), total: 0 });
        let mut out = Vec::with_capacity(days.total);
        for ((domain, day), rows) in days.rows {
            for (row, count) in rows {
                match serde_json::to_string(&row) {
                    Ok(row) => out.push(ReportCount { domain: domain.clone(), day, row, count }),
                    Err(e) => tracing::warn!(kind = R::KIND.name(), error = %e, "report row not serialisable"),
                }
            }
        }
        out
    }

    /// Put back rows a flush could not store, so the next flush tries again.
    pub fn restore(&self, counts: Vec<ReportCount>) {
        let mut days = self.lock();
        let mut lost = 0;
        for c in counts {
            let Ok(row) = serde_json::from_str::<R>(&c.row) else { continue };
            if !days.add((c.domain, c.day), row, c.count) {
                lost += c.count;
            }
        }
        drop(days);
        if lost > 0 {
            R::dropped(lost);
        }
    }
}
