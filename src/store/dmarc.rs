//! DMARC aggregate-report counters (RFC 7489 section 7.2), backend-neutral: the row
//! every backend keeps and [`Store`]'s delegation of the report methods of
//! [`MailStore`].
//!
//! Why in the store: with PostgreSQL every replica receives part of a sender's mail, and
//! one report per domain and day must count all of it, so the counters live where the
//! replicas meet. They are statistics: a backend writes them durably but the caller
//! (`dmarc/`) keeps up to a minute in memory first, and never lets a failure here touch
//! mail.

use super::api::MailStore;
use super::{Store, StoreError};

/// Most distinct rows a backend keeps per reporting domain and day; further new rows are
/// dropped (and counted by the caller), so a sender cycling source addresses cannot grow
/// the file or table without bound. Existing rows keep counting.
pub const MAX_DMARC_ROWS_PER_DAY: usize = 10_000;

/// Most rows a backend keeps in all (every domain and day not yet reported): many
/// domains each under their daily cap must not grow the file or table without bound
/// either.
pub const MAX_DMARC_ROWS: usize = 200_000;

/// One counter: `count` messages of one reporting `domain` on one UTC `day` (days since
/// 1970-01-01) that share the same `row` (the report record as `dmarc/` serialises it:
/// policy published, source IP, evaluation and results; opaque to the store).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DmarcCount {
    pub domain: String,
    pub day: i64,
    pub row: String,
    pub count: u64,
}

impl Store {
    /// See [`MailStore::dmarc_add`].
    pub async fn dmarc_add(&self, counts: &[DmarcCount]) -> Result<u64, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::dmarc_add(s, counts).await,
            Store::Pg(s) => MailStore::dmarc_add(s, counts).await,
        }
    }

    /// See [`MailStore::dmarc_counts`].
    pub async fn dmarc_counts(&self, until_day: i64) -> Result<Vec<DmarcCount>, StoreError> {
        match self {
            Store::Maildir(s) => MailStore::dmarc_counts(s, until_day).await,
            Store::Pg(s) => MailStore::dmarc_counts(s, until_day).await,
        }
    }

    /// See [`MailStore::dmarc_subtract`].
    pub async fn dmarc_subtract(&self, counts: &[DmarcCount]) -> Result<(), StoreError> {
        match self {
            Store::Maildir(s) => MailStore::dmarc_subtract(s, counts).await,
            Store::Pg(s) => MailStore::dmarc_subtract(s, counts).await,
        }
    }
}
