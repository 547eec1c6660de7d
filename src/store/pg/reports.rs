//! Report counters in PostgreSQL: the rows of `dmarc_report_rows` (migration 6) and
//! `tls_report_rows` (migration 7, the same shape), which every replica adds to and the report sender (one replica, under a lease) subtracts from.
//! Each call is one committed transaction (run again by `retry.rs` after a deadlock).

use sqlx::{AssertSqlSafe, Row};

use super::{PgStore, db_error, retry};
use crate::store::{MAX_REPORT_ROWS, MAX_REPORT_ROWS_PER_DAY, ReportCount, ReportKind, StoreError};

/// The table of a kind: a fixed name, never input, so it may be formatted into SQL.
fn table(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::Dmarc => "dmarc_report_rows",
        ReportKind::Tls => "tls_report_rows",
    }
}

impl PgStore {
    pub(super) async fn report_add_impl(&self, kind: ReportKind, counts: &[ReportCount]) -> Result<u64, StoreError> {
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            let mut dropped = 0u64;
            // The overall bound is checked once per flush (a flush adds at most the
            // recorder's bounded rows), the per-day one per row.
            let stored: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", table(kind))))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            let full = stored >= MAX_REPORT_ROWS as i64;
            for c in counts {
                let count = i64::try_from(c.count).unwrap_or(i64::MAX);
                let day = i32::try_from(c.day).unwrap_or(i32::MAX);
                // A new row only while the domain's day is under the cap; an existing
                // one always counts on.
                let done = sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {t} (domain, day, row_key, count) \
                     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM {t} \
                       WHERE domain = $1 AND day = $2 AND row_key = $3) \
                     OR (NOT $6 AND (SELECT count(*) FROM {t} WHERE domain = $1 AND day = $2) < $5) \
                     ON CONFLICT (domain, day, row_key) DO UPDATE SET count = {t}.count + EXCLUDED.count",
                    t = table(kind)
                )))
                .bind(&c.domain)
                .bind(day)
                .bind(&c.row)
                .bind(count)
                .bind(MAX_REPORT_ROWS_PER_DAY as i64)
                .bind(full)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if done.rows_affected() == 0 {
                    dropped += c.count;
                }
            }
            tx.commit().await.map_err(db_error)?;
            Ok(dropped)
        })
        .await
    }

    pub(super) async fn report_counts_impl(
        &self,
        kind: ReportKind,
        until_day: i64,
    ) -> Result<Vec<ReportCount>, StoreError> {
        let until = i32::try_from(until_day).unwrap_or(i32::MAX);
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT domain, day, row_key, count FROM {t} WHERE day <= $1 ORDER BY domain, day, row_key",
            t = table(kind)
        )))
        .bind(until)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                Ok(ReportCount {
                    domain: r.try_get("domain").map_err(db_error)?,
                    day: i64::from(r.try_get::<i32, _>("day").map_err(db_error)?),
                    row: r.try_get("row_key").map_err(db_error)?,
                    count: u64::try_from(r.try_get::<i64, _>("count").map_err(db_error)?).unwrap_or(0),
                })
            })
            .collect()
    }

    pub(super) async fn report_subtract_impl(
        &self,
        kind: ReportKind,
        counts: &[ReportCount],
    ) -> Result<(), StoreError> {
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            for c in counts {
                let count = i64::try_from(c.count).unwrap_or(i64::MAX);
                let day = i32::try_from(c.day).unwrap_or(i32::MAX);
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {t} WHERE domain = $1 AND day = $2 AND row_key = $3 AND count <= $4",
                    t = table(kind)
                )))
                .bind(&c.domain)
                .bind(day)
                .bind(&c.row)
                .bind(count)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {t} SET count = count - $4 WHERE domain = $1 AND day = $2 AND row_key = $3",
                    t = table(kind)
                )))
                .bind(&c.domain)
                .bind(day)
                .bind(&c.row)
                .bind(count)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(row: &str, n: u64) -> ReportCount {
        ReportCount { domain: "a.test".into(), day: 20_000, row: row.into(), count: n }
    }

    #[tokio::test]
    async fn replicas_add_to_one_row_and_the_sender_subtracts_what_it_sent() {
        let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() else { return };
        let one = PgStore::connect(&url, None).await.unwrap();
        let two = PgStore::connect(&url, None).await.unwrap();
        one.report_add_impl(ReportKind::Dmarc, &[count("r1", 2), count("r2", 1)]).await.unwrap();
        two.report_add_impl(ReportKind::Dmarc, &[count("r1", 3)]).await.unwrap();
        let rows = one.report_counts_impl(ReportKind::Dmarc, 20_000).await.unwrap();
        assert_eq!(rows, vec![count("r1", 5), count("r2", 1)]);
        assert!(two.report_counts_impl(ReportKind::Dmarc, 19_999).await.unwrap().is_empty());
        two.report_add_impl(ReportKind::Dmarc, &[count("r1", 2)]).await.unwrap();
        one.report_subtract_impl(ReportKind::Dmarc, &rows).await.unwrap();
        assert_eq!(two.report_counts_impl(ReportKind::Dmarc, 20_000).await.unwrap(), vec![count("r1", 2)]);
    }
}
