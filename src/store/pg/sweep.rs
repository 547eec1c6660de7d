//! The orphan sweep: deleting body objects in the bucket that no `blobs` row names.
//!
//! Owns: finding and reclaiming them, and running that periodically on one replica. An
//! object is PUT before the transaction that records its row (`blobs.rs`), so a crash or a
//! failed COMMIT leaves an object nothing refers to, as does a delete that failed after
//! COMMIT. Such objects are harmless apart from their space; the sweep lists
//! `<prefix>/blobs/` and deletes the ones with no row that are older than a grace period
//! (a day by default), so the object of a delivery still on its way to COMMIT is never
//! touched. Each deletion goes through `blobs::delete_object`, which re-checks the row
//! under the body's advisory lock: a delivery that stores the same body meanwhile either
//! keeps its object or uploads it again.
//!
//! Memory stays bounded: the listing is streamed page by page and the keys are checked
//! against the database [`BATCH`] at a time. Only one replica sweeps at a time (the
//! [`LEASE_NAME`] lease); a second sweep would only repeat the same checks.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;

use super::objects::Objects;
use super::{PgStore, blobs, db_error};
use crate::metrics::metrics;
use crate::store::StoreError;

/// How old an unnamed object must be before it is deleted: far longer than any delivery
/// takes from its PUT to its COMMIT.
pub const SWEEP_GRACE: Duration = Duration::from_secs(24 * 3600);
/// How often each replica tries to sweep.
const SWEEP_EVERY: Duration = Duration::from_secs(6 * 3600);
/// The first attempt after start: not while a fleet of replicas is still starting.
const FIRST_SWEEP_AFTER: Duration = Duration::from_secs(10 * 60);
/// Keys checked against `blobs` per query.
const BATCH: usize = 1000;
/// The lease that makes one replica the sweeper at a time.
pub const LEASE_NAME: &str = "blob-sweep";

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Body objects listed.
    pub listed: u64,
    /// Listed objects older than the grace period that no row named.
    pub orphans: u64,
    /// Orphans deleted (the others were stored again meanwhile, or their DELETE failed).
    pub deleted: u64,
    /// Orphans whose deletion failed (they stay for the next sweep).
    pub failed: u64,
}

impl PgStore {
    /// Delete the body objects that no row names and that are older than `grace`
    /// ([`SWEEP_GRACE`] in service). Without a bucket there is nothing to do. An error
    /// listing the bucket or querying the database ends the sweep; a failed DELETE is
    /// counted and the sweep goes on.
    pub async fn sweep_orphans(&self, grace: Duration) -> Result<SweepReport, StoreError> {
        self.sweep_in_batches(grace, BATCH).await
    }

    pub(super) async fn sweep_in_batches(&self, grace: Duration, batch: usize) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let Some(objects) = self.objects() else { return Ok(report) };
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now().checked_sub_signed(grace).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let mut listing = objects.list_bodies();
        let mut old = Vec::with_capacity(batch.min(BATCH));
        while let Some(item) = listing.next().await {
            let (hash, modified) = item?;
            report.listed += 1;
            if modified < cutoff {
                old.push(hash);
            }
            if old.len() >= batch.max(1) {
                self.sweep_batch(objects, std::mem::take(&mut old), &mut report).await?;
            }
        }
        if !old.is_empty() {
            self.sweep_batch(objects, old, &mut report).await?;
        }
        Ok(report)
    }

    /// Delete the objects of `hashes` (listed, old) that no row names.
    async fn sweep_batch(
        &self,
        objects: &Objects,
        hashes: Vec<Vec<u8>>,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let named: Vec<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM blobs WHERE hash = ANY($1)")
            .bind(&hashes)
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        let named: HashSet<Vec<u8>> = named.into_iter().collect();
        for hash in hashes.into_iter().filter(|h| !named.contains(h)) {
            report.orphans += 1;
            match blobs::delete_object(self.pool(), objects, &hash).await {
                Ok(true) => {
                    report.deleted += 1;
                    metrics().store_orphan_objects_deleted_total.inc();
                }
                Ok(false) => {}
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(error = %e, "orphan sweep: cannot delete an object (the next sweep retries)");
                }
            }
        }
        Ok(())
    }

    /// One sweep if this replica can take the [`LEASE_NAME`] lease; `Ok(None)` while
    /// another replica holds it.
    pub async fn sweep_if_leased(&self, grace: Duration) -> Result<Option<SweepReport>, StoreError> {
        let Some(lease) = self.try_lease(LEASE_NAME).await? else { return Ok(None) };
        let report = self.sweep_orphans(grace).await;
        drop(lease);
        report.map(Some)
    }

    /// With a bucket, sweep it for orphans every [`SWEEP_EVERY`] (the first time
    /// [`FIRST_SWEEP_AFTER`] start), on whichever replica holds the lease at the time.
    /// `None` without a bucket.
    pub fn spawn_orphan_sweeper(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.objects()?;
        let store = self.clone();
        Some(tokio::spawn(async move {
            tokio::time::sleep(FIRST_SWEEP_AFTER).await;
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match store.sweep_if_leased(SWEEP_GRACE).await {
                    Ok(Some(r)) => tracing::info!(
                        listed = r.listed,
                        orphans = r.orphans,
                        deleted = r.deleted,
                        failed = r.failed,
                        "orphan sweep of the blob bucket done"
                    ),
                    Ok(None) => tracing::debug!("another replica is sweeping the blob bucket"),
                    Err(e) => tracing::warn!(error = %e, "orphan sweep of the blob bucket failed (retried later)"),
                }
            }
        }))
    }
}
