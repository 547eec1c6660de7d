//! What one message contributes to a DMARC aggregate report, and the in-memory
//! counters that gather it between flushes to the store.
//!
//! Recording happens on the SMTP reply path, so it is one mutex-guarded map update:
//! no I/O, no allocation beyond the row itself, and bounded — at most
//! [`MAX_DMARC_ROWS_PER_DAY`] rows per reporting domain and day, [`MAX_DOMAINS`]
//! domain-days and [`MAX_ROWS_IN_MEMORY`] rows in all between two flushes (a few tens
//! of MiB at worst); what does not fit is counted
//! (`mailroom_dmarc_report_messages_dropped_total`) and left out of the reports, never
//! delayed or refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{DmarcCount, MAX_DMARC_ROWS_PER_DAY};

/// Most reporting domain-days held in memory between two flushes.
pub const MAX_DOMAINS: usize = 10_000;
/// Most rows held in memory between two flushes, over all domains.
pub const MAX_ROWS_IN_MEMORY: usize = 100_000;

/// A `rua` destination (RFC 7489 6.2 and 6.4): a mailto address and its `!size` limit
/// in bytes (0: none).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Destination {
    pub address: String,
    pub max_size: u64,
}

/// The DMARC record that applied, as the report's `policy_published` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyPublished {
    /// The reporting domain: the author (header-From) domain the policy was evaluated for.
    pub domain: String,
    /// `r` or `s`.
    pub adkim: String,
    pub aspf: String,
    /// `none`, `quarantine` or `reject`.
    pub p: String,
    pub sp: String,
    pub pct: u8,
    pub rua: Vec<Destination>,
}

/// One DKIM signature's result (`auth_results/dkim`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DkimAuth {
    pub domain: String,
    pub selector: String,
    /// `none`, `pass`, `fail`, `policy`, `neutral`, `temperror` or `permerror`.
    pub result: String,
}

/// The SPF result (`auth_results/spf`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpfAuth {
    pub domain: String,
    /// `mfrom` or `helo`.
    pub scope: String,
    /// `none`, `neutral`, `pass`, `fail`, `softfail`, `temperror` or `permerror`.
    pub result: String,
}

/// One evaluated message as a report row key: messages that agree on all of it are
/// counted together.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Observation {
    pub policy: PolicyPublished,
    pub source_ip: IpAddr,
    pub header_from: String,
    /// The disposition applied: `none`, `quarantine` or `reject`.
    pub disposition: String,
    /// DMARC's aligned DKIM and SPF results.
    pub dkim_aligned: bool,
    pub spf_aligned: bool,
    pub dkim: Vec<DkimAuth>,
    pub spf: SpfAuth,
}

/// The UTC day (days since 1970-01-01) of `t`.
pub fn day_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| (d.as_secs() / 86_400) as i64)
}

/// The counters not yet flushed to the store.
#[derive(Debug, Default)]
pub struct Recorder {
    days: Mutex<Days>,
}

#[derive(Debug, Default)]
struct Days {
    rows: HashMap<(String, i64), HashMap<Observation, u64>>,
    /// Rows in `rows`, over all domain-days.
    total: usize,
}

impl Days {
    /// Add `n` messages of `observation`; false when a bound leaves it out.
    fn add(&mut self, key: (String, i64), observation: Observation, n: u64) -> bool {
        if !self.rows.contains_key(&key) && self.rows.len() >= MAX_DOMAINS {
            return false;
        }
        let total = self.total;
        let rows = self.rows.entry(key).or_default();
        if let Some(count) = rows.get_mut(&observation) {
            *count = count.saturating_add(n);
            return true;
        }
        if rows.len() >= MAX_DMARC_ROWS_PER_DAY || total >= MAX_ROWS_IN_MEMORY {
            return false;
        }
        rows.insert(observation, n);
        self.total += 1;
        true
    }
}

impl Recorder {
    /// Count one message at time `now`. Never blocks on anything but the map's mutex.
    pub fn record(&self, observation: Observation, now: SystemTime) {
        let key = (observation.policy.domain.clone(), day_of(now));
        let added = self.days.lock().unwrap_or_else(|p| p.into_inner()).add(key, observation, 1);
        if !added {
            dropped(1);
        }
    }

    /// Everything counted so far, as store rows; the recorder is empty afterwards.
    pub fn take(&self) -> Vec<DmarcCount> {
        let days = std::mem::take(&mut *self.days.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = Vec::with_capacity(days.total);
        for ((domain, day), rows) in days.rows {
            for (observation, count) in rows {
                match serde_json::to_string(&observation) {
                    Ok(row) => out.push(DmarcCount { domain: domain.clone(), day, row, count }),
                    Err(e) => tracing::warn!(error = %e, "DMARC report row not serialisable"),
                }
            }
        }
        out
    }

    /// Put back rows a flush could not store, so the next flush tries again.
    pub fn restore(&self, counts: Vec<DmarcCount>) {
        let mut days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        let mut lost = 0;
        for c in counts {
            let Ok(observation) = serde_json::from_str::<Observation>(&c.row) else { continue };
            if !days.add((c.domain, c.day), observation, c.count) {
                lost += c.count;
            }
        }
        drop(days);
        dropped(lost);
    }
}

/// Count messages left out of the reports.
pub fn dropped(messages: u64) {
    if messages > 0 {
        crate::metrics::metrics().dmarc_report_messages_dropped_total.inc_by(messages);
    }
}
