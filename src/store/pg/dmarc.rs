//! DMARC report counters in PostgreSQL: the rows of `dmarc_report_rows`, which every
//! replica adds to and the report sender (one replica, under a lease) subtracts from.
//! Each call is one committed transaction (run again by `retry.rs` after a deadlock).

use sqlx::Row;

use super::{PgStore, db_error, retry};
use crate::store::{DmarcCount, MAX_DMARC_ROWS, MAX_DMARC_ROWS_PER_DAY, StoreError};

impl PgStore {
    pub(super) async fn dmarc_add_impl(&self, counts: &[DmarcCount]) -> Result<u64, StoreError> {
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            let mut dropped = 0u64;
            // The overall bound is checked once per flush (a flush adds at most the
            // recorder's bounded rows), the per-day one per row.
            let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM dmarc_report_rows")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            let full = stored >= MAX_DMARC_ROWS as i64;
            for c in counts {
                let count = i64::try_from(c.count).unwrap_or(i64::MAX);
                let day = i32::try_from(c.day).unwrap_or(i32::MAX);
                // A new row only while the domain's day is under the cap; an existing
                // one always counts on.
                let done = sqlx::query(
                    "INSERT INTO dmarc_report_rows (domain, day, row_key, count) \
                     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM dmarc_report_rows \
                       WHERE domain = $1 AND day = $2 AND row_key = $3) \
                     OR (NOT $6 AND (SELECT count(*) FROM dmarc_report_rows WHERE domain = $1 AND day = $2) < $5) \
                     ON CONFLICT (domain, day, row_key) DO UPDATE SET count = dmarc_report_rows.count + EXCLUDED.count",
                )
                .bind(&c.domain)
                .bind(day)
                .bind(&c.row)
                .bind(count)
                .bind(MAX_DMARC_ROWS_PER_DAY as i64)
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

    pub(super) async fn dmarc_counts_impl(&self, until_day: i64) -> Result<Vec<DmarcCount>, StoreError> {
        let until = i32::try_from(until_day).unwrap_or(i32::MAX);
        let rows = sqlx::query(
            "SELECT domain, day, row_key, count FROM dmarc_report_rows WHERE day <= $1 ORDER BY domain, day, row_key",
        )
        .bind(until)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|r| {
                Ok(DmarcCount {
                    domain: r.try_get("domain").map_err(db_error)?,
                    day: i64::from(r.try_get::<i32, _>("day").map_err(db_error)?),
                    row: r.try_get("row_key").map_err(db_error)?,
                    count: u64::try_from(r.try_get::<i64, _>("count").map_err(db_error)?).unwrap_or(0),
                })
            })
            .collect()
    }

    pub(super) async fn dmarc_subtract_impl(&self, counts: &[DmarcCount]) -> Result<(), StoreError> {
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            for c in counts {
                let count = i64::try_from(c.count).unwrap_or(i64::MAX);
                let day = i32::try_from(c.day).unwrap_or(i32::MAX);
                sqlx::query(
                    "DELETE FROM dmarc_report_rows WHERE domain = $1 AND day = $2 AND row_key = $3 AND count <= $4",
                )
                .bind(&c.domain)
                .bind(day)
                .bind(&c.row)
                .bind(count)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                sqlx::query(
                    "UPDATE dmarc_report_rows SET count = count - $4 WHERE domain = $1 AND day = $2 AND row_key = $3",
                )
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

    fn count(row: &str, n: u64) -> DmarcCount {
        DmarcCount { domain: "a.test".into(), day: 20_000, row: row.into(), count: n }
    }

    #[tokio::test]
    async fn replicas_add_to_one_row_and_the_sender_subtracts_what_it_sent() {
        let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() else { return };
        let one = PgStore::connect(&url, None).await.unwrap();
        let two = PgStore::connect(&url, None).await.unwrap();
        one.dmarc_add_impl(&[count("r1", 2), count("r2", 1)]).await.unwrap();
        two.dmarc_add_impl(&[count("r1", 3)]).await.unwrap();
        let rows = one.dmarc_counts_impl(20_000).await.unwrap();
        assert_eq!(rows, vec![count("r1", 5), count("r2", 1)]);
        assert!(two.dmarc_counts_impl(19_999).await.unwrap().is_empty());
        two.dmarc_add_impl(&[count("r1", 2)]).await.unwrap();
        one.dmarc_subtract_impl(&rows).await.unwrap();
        assert_eq!(two.dmarc_counts_impl(20_000).await.unwrap(), vec![count("r1", 2)]);
    }
}
