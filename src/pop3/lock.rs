//! The process-wide maildrop lock: at most one POP3 session per mailbox (RFC 1939 §8,
//! "exclusive-access lock"; a second login gets `-ERR [IN-USE]`, RFC 2449 §8.1.1).
//!
//! Process-wide rather than per listener, so that a client on 110 and one on 995 exclude
//! each other. The lock lives only in memory: a crash releases it, and a dropped
//! connection releases it when its session task ends (the guard's `Drop`). IMAP sessions do
//! not take it — they coexist with POP3 and are told of its expunges by the store.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

static HELD: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Holds one maildrop until dropped.
#[derive(Debug)]
pub struct MaildropLock {
    key: String,
}

impl MaildropLock {
    /// Take the lock for `key`, or `None` if another session holds it.
    pub fn try_acquire(key: String) -> Option<MaildropLock> {
        // A poisoned mutex only means another thread panicked mid-insert; the set is
        // still a valid set, so keep using it rather than locking everyone out.
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if held.insert(key.clone()) { Some(MaildropLock { key }) } else { None }
    }
}

impl Drop for MaildropLock {
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
        let first = MaildropLock::try_acquire(key.clone());
        assert!(first.is_some());
        assert!(MaildropLock::try_acquire(key.clone()).is_none());
        assert!(MaildropLock::try_acquire("lock-test\0bob@example.com".into()).is_some());
        drop(first);
        assert!(MaildropLock::try_acquire(key).is_some());
    }
}
