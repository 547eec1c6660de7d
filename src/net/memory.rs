//! A server-wide budget for message bytes held in memory.
//!
//! Messages arrive streamed to spool files and are stored and queued from those files,
//! so a session costs kilobytes whatever the message size. A few steps still need the
//! whole message as one buffer: SPF/DKIM/DMARC/ARC verification and the scanners on port
//! 25, and the sender checks and DKIM signing of submission (the crates we use take a
//! slice). Without a bound, fifty clients sending 20 MiB at once would hold a gigabyte;
//! with it, those steps take turns and peak memory stays near the budget whatever the
//! number of sessions. A message larger than the whole budget waits until it has the
//! budget to itself.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Message bytes in memory at once, across all sessions. Two 20 MiB messages fit; at the
/// sizes of ordinary mail, hundreds.
pub const DEFAULT_BUDGET: u64 = 48 * 1024 * 1024;

/// Permits are KiB, so a 4 GiB budget still fits the semaphore's `u32` acquire count.
const UNIT: u64 = 1024;

/// Shared by every session of a server; cheap to clone.
#[derive(Clone, Debug)]
pub struct MessageMemory {
    permits: Arc<Semaphore>,
    total_units: u32,
}

/// Held while a message's bytes are in memory; dropping it gives the bytes back.
#[derive(Debug)]
pub struct MemoryPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl MessageMemory {
    pub fn new(budget_bytes: u64) -> MessageMemory {
        let total_units = u32::try_from(budget_bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).max(1);
        MessageMemory { permits: Arc::new(Semaphore::new(total_units as usize)), total_units }
    }

    /// Wait until `bytes` may be held. A message larger than the budget takes all of it.
    pub async fn reserve(&self, bytes: u64) -> MemoryPermit {
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).clamp(1, self.total_units);
        // The semaphore is never closed; if it were, mail would go on unbounded rather
        // than fail.
        MemoryPermit { _permit: self.permits.clone().acquire_many_owned(units).await.ok() }
    }

    /// Bytes not reserved right now (metrics, tests).
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }
}

impl Default for MessageMemory {
    fn default() -> Self {
        MessageMemory::new(DEFAULT_BUDGET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reservations_wait_for_the_budget_and_give_it_back() {
        let memory = MessageMemory::new(10 * 1024);
        let a = memory.reserve(6 * 1024).await;
        assert_eq!(memory.available(), 4 * 1024);
        // 6 KiB more does not fit until `a` is dropped.
        let waiting = tokio::time::timeout(Duration::from_millis(50), memory.reserve(6 * 1024)).await;
        assert!(waiting.is_err(), "reserved beyond the budget");
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), memory.reserve(6 * 1024)).await.expect("budget returned");
        drop(b);
        assert_eq!(memory.available(), 10 * 1024);
    }

    #[tokio::test]
    async fn a_message_larger_than_the_budget_takes_all_of_it() {
        let memory = MessageMemory::new(8 * 1024);
        let huge = memory.reserve(1 << 40).await;
        assert_eq!(memory.available(), 0);
        drop(huge);
        // Zero bytes still count as one unit, so nothing slips past a full budget.
        let tiny = memory.reserve(0).await;
        assert_eq!(memory.available(), 7 * 1024);
        drop(tiny);
    }
}
