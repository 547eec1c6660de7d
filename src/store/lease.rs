//! Exclusive leases on a name (a POP3 maildrop: RFC 1939 §8 "exclusive-access lock"; a
//! second login gets `-ERR [IN-USE]`, RFC 2449 §8.1.1; a periodic-fetch source, run by one
//! replica at a time).
//!
//! Owns: [`Lease`] and taking one through the store, so a lease holds wherever the mail
//! is shared. With Maildir the store is one process, and a lease is an entry in a
//! process-wide set (a crash releases everything; a dropped connection releases its lease
//! when its session task ends). With PostgreSQL every replica must see it, so it is a row
//! in `leases` with an expiry that the holder renews (`pg/lease.rs`); a replica that dies
//! holding one blocks that name until the row expires (two minutes).

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use super::StoreError;
use super::pg::PgLease;

static HELD: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Holds one name until dropped.
#[derive(Debug)]
pub enum Lease {
    /// Held in this process.
    Local(LocalLease),
    /// Held in the database for every replica.
    Pg(PgLease),
}

impl Lease {
    /// Whether the lease is still this holder's, checked right before work that must not
    /// run twice: always for a local one (it lives as long as the process); a shared one
    /// is renewed now and may have expired (see [`PgLease::still_held`]).
    pub async fn still_held(&self) -> Result<bool, StoreError> {
        match self {
            Lease::Local(_) => Ok(true),
            Lease::Pg(l) => l.still_held().await,
        }
    }
}

/// A name held in this process's set.
#[derive(Debug)]
pub struct LocalLease {
    key: String,
}

impl LocalLease {
    /// Take `key`, or `None` if another holder has it.
    pub fn try_acquire(key: String) -> Option<LocalLease> {
        // A poisoned mutex only means another thread panicked mid-insert; the set is
        // still a valid set, so keep using it rather than locking everyone out.
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if held.insert(key.clone()) { Some(LocalLease { key }) } else { None }
    }
}

impl Drop for LocalLease {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let key = "lock-test\0alice@example.com".to_string();
        let first = LocalLease::try_acquire(key.clone());
        assert!(first.is_some());
        assert!(LocalLease::try_acquire(key.clone()).is_none());
        assert!(LocalLease::try_acquire("lock-test\0bob@example.com".into()).is_some());
        drop(first);
        assert!(LocalLease::try_acquire(key).is_some());
    }
}
