//! Report counters in the data dir: one JSON file per kind, `state/dmarc-reports.json`
//! and `state/tls-reports.json`, replaced whole (`durable::write_atomic`) on every change. A change is at most one
//! flush a minute plus one report run a day, and the rows are bounded
//! ([`MAX_REPORT_ROWS_PER_DAY`] per domain and day, [`MAX_REPORT_ROWS`] in all), so
//! rewriting it stays affordable; a torn or
//! unreadable file is set aside (renamed `.bad`) rather than stopping the counters, since
//! they are statistics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::MaildirStore;
use crate::store::error::blocking;
use crate::store::{MAX_REPORT_ROWS, MAX_REPORT_ROWS_PER_DAY, ReportCount, ReportKind, StoreError};

impl MaildirStore {
    fn report_file(&self, kind: ReportKind) -> PathBuf {
        self.inner.layout.state_root().join(format!("{}-reports.json", kind.name()))
    }

    pub(super) async fn report_add_impl(&self, kind: ReportKind, counts: &[ReportCount]) -> Result<u64, StoreError> {
        let path = self.report_file(kind);
        let counts = counts.to_vec();
        let _guard = self.inner.report_lock.lock().await;
        blocking(move || {
            let mut rows = read(&path)?;
            let dropped = add(&mut rows, counts);
            write(&path, &rows)?;
            Ok(dropped)
        })
        .await
    }

    pub(super) async fn report_counts_impl(
        &self,
        kind: ReportKind,
        until_day: i64,
    ) -> Result<Vec<ReportCount>, StoreError> {
        let path = self.report_file(kind);
        let _guard = self.inner.report_lock.lock().await;
        blocking(move || Ok(read(&path)?.into_iter().filter(|c| c.day <= until_day).collect())).await
    }

    pub(super) async fn report_subtract_impl(
        &self,
        kind: ReportKind,
        counts: &[ReportCount],
    ) -> Result<(), StoreError> {
        let path = self.report_file(kind);
        let counts = counts.to_vec();
        let _guard = self.inner.report_lock.lock().await;
        blocking(move || {
            let mut rows = read(&path)?;
            subtract(&mut rows, &counts);
            write(&path, &rows)
        })
        .await
    }
}

fn read(path: &Path) -> Result<Vec<ReportCount>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(rows) => Ok(rows),
            Err(e) => {
                let bad = path.with_extension("json.bad");
                tracing::warn!(path = %path.display(), error = %e, "report counters unreadable; set aside");
                std::fs::rename(path, &bad).map_err(|e| StoreError::io(path, e))?;
                Ok(Vec::new())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

fn write(path: &Path, rows: &[ReportCount]) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(rows).map_err(|e| StoreError::io(path, std::io::Error::other(e)))?;
    crate::durable::write_atomic(path, &bytes, 0o600)?;
    Ok(())
}

/// Merge `counts` into `rows`; returns the messages of new rows refused by the cap.
pub(crate) fn add(rows: &mut Vec<ReportCount>, counts: Vec<ReportCount>) -> u64 {
    let mut index: HashMap<(String, i64, String), usize> =
        rows.iter().enumerate().map(|(i, r)| ((r.domain.clone(), r.day, r.row.clone()), i)).collect();
    let mut per_day: HashMap<(String, i64), usize> = HashMap::new();
    for r in rows.iter() {
        *per_day.entry((r.domain.clone(), r.day)).or_default() += 1;
    }
    let mut dropped = 0;
    for c in counts {
        if let Some(&i) = index.get(&(c.domain.clone(), c.day, c.row.clone())) {
            rows[i].count += c.count;
            continue;
        }
        let n = per_day.entry((c.domain.clone(), c.day)).or_default();
        if *n >= MAX_REPORT_ROWS_PER_DAY || rows.len() >= MAX_REPORT_ROWS {
            dropped += c.count;
            continue;
        }
        *n += 1;
        index.insert((c.domain.clone(), c.day, c.row.clone()), rows.len());
        rows.push(c);
    }
    dropped
}

fn subtract(rows: &mut Vec<ReportCount>, counts: &[ReportCount]) {
    for c in counts {
        if let Some(r) = rows.iter_mut().find(|r| r.domain == c.domain && r.day == c.day && r.row == c.row) {
            r.count = r.count.saturating_sub(c.count);
        }
    }
    rows.retain(|r| r.count > 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(domain: &str, row: &str, n: u64) -> ReportCount {
        ReportCount { domain: domain.into(), day: 20_000, row: row.into(), count: n }
    }

    #[tokio::test]
    async fn counts_add_up_survive_reopening_and_subtract_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(dir.path(), "mx.example.org").unwrap();
        assert_eq!(
            store
                .report_add_impl(ReportKind::Dmarc, &[count("a.test", "r1", 2), count("a.test", "r2", 1)])
                .await
                .unwrap(),
            0
        );
        store.report_add_impl(ReportKind::Dmarc, &[count("a.test", "r1", 3)]).await.unwrap();
        let store = MaildirStore::open(dir.path(), "mx.example.org").unwrap();
        let rows = store.report_counts_impl(ReportKind::Dmarc, 20_000).await.unwrap();
        assert_eq!(rows, vec![count("a.test", "r1", 5), count("a.test", "r2", 1)]);
        assert!(store.report_counts_impl(ReportKind::Dmarc, 19_999).await.unwrap().is_empty());
        // Two more arrived after the report read five: they stay.
        store.report_add_impl(ReportKind::Dmarc, &[count("a.test", "r1", 2)]).await.unwrap();
        store.report_subtract_impl(ReportKind::Dmarc, &rows).await.unwrap();
        assert_eq!(store.report_counts_impl(ReportKind::Dmarc, 20_000).await.unwrap(), vec![count("a.test", "r1", 2)]);
        assert!(dir.path().join("state/dmarc-reports.json").exists());
        // The TLS counters are a file of their own.
        assert!(store.report_counts_impl(ReportKind::Tls, 20_000).await.unwrap().is_empty());
        store.report_add_impl(ReportKind::Tls, &[count("b.test", "t1", 1)]).await.unwrap();
        assert_eq!(store.report_counts_impl(ReportKind::Tls, 20_000).await.unwrap(), vec![count("b.test", "t1", 1)]);
        assert!(dir.path().join("state/tls-reports.json").exists());
    }

    #[test]
    fn new_rows_past_the_cap_are_dropped_and_counted() {
        let mut rows: Vec<ReportCount> =
            (0..MAX_REPORT_ROWS_PER_DAY).map(|i| count("a.test", &i.to_string(), 1)).collect();
        let dropped = add(&mut rows, vec![count("a.test", "new", 4), count("a.test", "0", 1), count("b.test", "x", 1)]);
        assert_eq!(dropped, 4);
        assert_eq!(rows.len(), MAX_REPORT_ROWS_PER_DAY + 1);
        assert_eq!(rows[0].count, 2);
    }
}
