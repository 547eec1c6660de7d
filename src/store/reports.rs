//! Report counters, backend-neutral: DMARC aggregate reports (RFC 7489 section 7.2) and
//! SMTP TLS reports (RFC 8460) count events per domain, day and opaque row alike, so
//! one row type and three methods serve both, told apart by [`ReportKind`]; and
//! [`Store`]'s delegation of those methods of [`MailStore`].
//!
//! Why in the store: with PostgreSQL every replica receives part of a sender's mail, and
//! one report per domain and day must count all of it, so the counters live where the
//! replicas meet. They are statistics: a backend writes them durably but the caller
//! (`dmarc/`, `tlsrpt/`) keeps up to a minute in memory first, and never lets a failure here touch
//! mail.

use super::api::MailStore;
use super::{Store, StoreError};

/// Most distinct rows a backend keeps per reporting domain and day; further new rows are
/// dropped (and counted by the caller), so a sender cycling source addresses cannot grow
/// the file or table without bound. Existing rows keep counting.
pub const MAX_REPORT_ROWS_PER_DAY: usize = 10_000;

/// Most rows a backend keeps in all (every domain and day not yet reported): many
/// domains each under their daily cap must not grow the file or table without bound
/// either.
pub const MAX_REPORT_ROWS: usize = 200_000;

/// Which report the counters feed; each kind is a file or table of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// DMARC aggregate reports (`dmarc/`): messages received on port 25.
    Dmarc,
    /// SMTP TLS reports (`tlsrpt/`): our outbound TLS sessions.
    Tls,
}

impl ReportKind {
    /// The name in file names, table names and logs.
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Dmarc => "dmarc",
            ReportKind::Tls => "tls",
        }
    }
}

/// One counter: `count` events (DMARC: messages) of one reporting `domain` on one UTC `day` (days since
/// 1970-01-01) that share the same `row` (the report record as `dmarc/` serialises it:
/// policy published, source IP, evaluation and results; opaque to the store).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportCount {
    pub domain: String,
    pub day: i64,
    pub row: String,
    pub count: u64,
}

impl Store {
    /// See [`MailStore::report_add`].
    pub async fn report_add(&self, kind: ReportKind, counts: &[ReportCount]) -> Result<u64, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::report_add(s, kind, counts).await,
            Store::Pg(s) => MailStore::report_add(s, kind, counts).await,
        }
    }

    /// See [`MailStore::report_counts`].
    pub async fn report_counts(&self, kind: ReportKind, until_day: i64) -> Result<Vec<ReportCount>, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::report_counts(s, kind, until_day).await,
            Store::Pg(s) => MailStore::report_counts(s, kind, until_day).await,
        }
    }

    /// See [`MailStore::report_subtract`].
    pub async fn report_subtract(&self, kind: ReportKind, counts: &[ReportCount]) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::report_subtract(s, kind, counts).await,
            Store::Pg(s) => MailStore::report_subtract(s, kind, counts).await,
        }
    }
}
