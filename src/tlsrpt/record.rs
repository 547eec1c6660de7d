//! What one outbound TLS session contributes to an SMTP TLS report: the client's
//! [`TlsOutcome`] as a counter row of the shared bounded counters
//! (`reports::counters`); what does not fit is counted
//! (`mailroom_tls_report_sessions_dropped_total`) and left out, never delaying mail.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::smtp::client::tls_outcome::{TlsFailure, TlsOutcome, TlsPolicy, TlsRecorder};
use crate::store::ReportKind;

/// Sessions that agree on the policy and failure are counted together.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TlsRow {
    pub policy: TlsPolicy,
    /// `None`: a successful session.
    pub failure: Option<TlsFailure>,
}

impl crate::reports::Row for TlsRow {
    const KIND: ReportKind = ReportKind::Tls;

    fn dropped(sessions: u64) {
        crate::metrics::metrics().tls_report_sessions_dropped_total.inc_by(sessions);
    }
}

/// The counters of TLS rows not yet flushed to the store.
pub type Recorder = crate::reports::Recorder<TlsRow>;

impl TlsRecorder for Recorder {
    fn tls_outcome(&self, outcome: TlsOutcome) {
        let domain = outcome.domain.trim_end_matches('.').to_ascii_lowercase();
        self.record(&domain, TlsRow { policy: outcome.policy, failure: outcome.failure }, SystemTime::now());
    }
}
