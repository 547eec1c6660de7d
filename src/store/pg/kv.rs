//! Named values shared by every replica: the `kv` table.
//!
//! Owns: reading and writing rows of `kv`. Each row carries a version that grows by one
//! on every change. Writers say which version they last saw, so two replicas that change
//! one name at once cannot silently overwrite each other: the second one is told it lost
//! and reads the winner's value instead. Readers poll the versions (a few dozen small rows)
//! rather than timestamps, which would depend on when transactions started and committed.
//! Every write also sends a NOTIFY on [`KV_CHANNEL`] (a hint to poll now).

use super::{PgStore, db_error};
use crate::store::StoreError;

/// The NOTIFY channel that says "a kv row changed" (payload: its name), sent when the write
/// commits, so other replicas need not wait for their next poll.
pub const KV_CHANNEL: &str = "mailroom_kv";

/// One row of `kv`.
#[derive(Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key (for mirrored files: the path relative to the data dir).
    pub name: String,
    /// The content.
    pub value: Vec<u8>,
    /// Grows by one on every change; 1 for a new row.
    pub version: i64,
}

/// Values are keys and secrets: never print them.
impl std::fmt::Debug for KvEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvEntry({} v{}, {} bytes)", self.name, self.version, self.value.len())
    }
}

/// What a conditional write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvPut {
    /// Written; the row now has this version.
    Written(i64),
    /// Someone else wrote the name first (it exists when `expected` was `None`, or its
    /// version is no longer `expected`): nothing was written.
    Lost,
}

impl PgStore {
    /// Resolves when a `kv` row may have changed since the last call (a NOTIFY on
    /// [`KV_CHANNEL`], or a reconnect after which some may have been missed). Never, for a
    /// store without a listener ([`PgStore::connect_only`]).
    pub async fn kv_changed(&self) {
        self.inner.kv_changed.notified().await;
    }

    /// The value of `name`, if any.
    pub async fn kv_get(&self, name: &str) -> Result<Option<KvEntry>, StoreError> {
        let row: Option<(String, Vec<u8>, i64)> = sqlx::query_as("SELECT name, value, version FROM kv WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?;
        Ok(row.map(|(name, value, version)| KvEntry { name, value, version }))
    }

    /// Every name with its version (no values: enough to see what changed).
    pub async fn kv_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as("SELECT name, version FROM kv ORDER BY name").fetch_all(self.pool()).await.map_err(db_error)
    }

    /// Every entry whose version is newer than the one given in `seen` (names absent from
    /// `seen` count as version 0), values included.
    pub async fn kv_list_since(&self, seen: &[(String, i64)]) -> Result<Vec<KvEntry>, StoreError> {
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        let versions: Vec<i64> = seen.iter().map(|(_, v)| *v).collect();
        let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT kv.name, kv.value, kv.version FROM kv \
             LEFT JOIN unnest($1::text[], $2::bigint[]) AS seen(name, version) ON seen.name = kv.name \
             WHERE kv.version > coalesce(seen.version, 0) ORDER BY kv.name",
        )
        .bind(&names)
        .bind(&versions)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(name, value, version)| KvEntry { name, value, version }).collect())
    }

    /// Write `value` under `name` if the row is still at version `expected` (`None`: only
    /// if there is no row yet).
    pub async fn kv_put(&self, name: &str, value: &[u8], expected: Option<i64>) -> Result<KvPut, StoreError> {
        let written: Option<i64> = match expected {
            None => {
                sqlx::query_scalar(
                    "INSERT INTO kv (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING \
                     RETURNING version, pg_notify($3, name)",
                )
                .bind(name)
                .bind(value)
                .bind(KV_CHANNEL)
                .fetch_optional(self.pool())
                .await
            }
            Some(version) => {
                sqlx::query_scalar(
                    "UPDATE kv SET value = $2, version = version + 1, updated_at = now() \
                     WHERE name = $1 AND version = $3 RETURNING version, pg_notify($4, name)",
                )
                .bind(name)
                .bind(value)
                .bind(version)
                .bind(KV_CHANNEL)
                .fetch_optional(self.pool())
                .await
            }
        }
        .map_err(db_error)?;
        Ok(written.map_or(KvPut::Lost, KvPut::Written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pg;

    #[tokio::test]
    async fn a_writer_that_saw_an_old_version_loses() {
        let Some(url) = tokio::task::spawn_blocking(test_pg::database).await.unwrap() else { return };
        let a = PgStore::connect(&url, None).await.unwrap();
        let b = PgStore::connect(&url, None).await.unwrap();
        assert_eq!(a.kv_get("x").await.unwrap(), None);
        assert_eq!(a.kv_put("x", b"one", None).await.unwrap(), KvPut::Written(1));
        assert_eq!(b.kv_put("x", b"other", None).await.unwrap(), KvPut::Lost);
        assert_eq!(b.kv_put("x", b"two", Some(1)).await.unwrap(), KvPut::Written(2));
        assert_eq!(a.kv_put("x", b"late", Some(1)).await.unwrap(), KvPut::Lost);
        let got = a.kv_get("x").await.unwrap().unwrap();
        assert_eq!((got.value.as_slice(), got.version), (&b"two"[..], 2));
        a.kv_put("y", b"why", None).await.unwrap();
        assert_eq!(a.kv_versions().await.unwrap(), vec![("x".to_string(), 2), ("y".to_string(), 1)]);
        let newer = a.kv_list_since(&[("x".to_string(), 2)]).await.unwrap();
        assert_eq!(newer.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), vec!["y"]);
        let all = a.kv_list_since(&[]).await.unwrap();
        assert_eq!(all.len(), 2);
    }
}
