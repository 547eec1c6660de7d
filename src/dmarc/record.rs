//! What one message contributes to a DMARC aggregate report, and the in-memory
//! counters that gather it between flushes to the store.
//!
//! Recording happens on the SMTP reply path, so it is one mutex-guarded map update:
//! no I/O, no allocation beyond the row itself, and bounded — at most
//! [`MAX_REPORT_ROWS_PER_DAY`] rows per reporting domain and day, [`MAX_DOMAINS`]
//! domain-days and [`MAX_ROWS_IN_MEMORY`] rows in all between two flushes (a few tens
//! of MiB at worst); what does not fit is counted
//! (`mailroom_dmarc_report_messages_dropped_total`) and left out of the reports, never
//! delayed or refused.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use crate::reports::counters::{MAX_DOMAINS, MAX_ROWS_IN_MEMORY, day_of};
use crate::store::ReportKind;

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
    /// The failure reporting options (`fo`: `0`, `1`, `d`, `s`, joined by `:`), which
    /// Appendix C's `policy_published` requires. Rows stored before it was kept read
    /// back as `0`, the record's default.
    #[serde(default = "default_fo")]
    pub fo: String,
    pub rua: Vec<Destination>,
}

fn default_fo() -> String {
    "0".to_string()
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

/// The counters of DMARC rows not yet flushed to the store.
pub type Recorder = crate::reports::Recorder<Observation>;

impl crate::reports::Row for Observation {
    const KIND: ReportKind = ReportKind::Dmarc;

    fn dropped(messages: u64) {
        crate::metrics::metrics().dmarc_report_messages_dropped_total.inc_by(messages);
    }
}

impl Recorder {
    /// Count one message at time `now` for its reporting (policy) domain.
    pub fn count(&self, observation: Observation, now: SystemTime) {
        let domain = observation.policy.domain.clone();
        self.record(&domain, observation, now);
    }
}
