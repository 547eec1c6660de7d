//! The one rule for how long a connection may stay unauthenticated
//! (`MAILROOM_LOGIN_TIMEOUT`), shared by IMAP, POP3 and ManageSieve.
//!
//! Per-read timeouts do not bound this: a client that sends a byte every few seconds
//! resets them forever, and two thousand such sockets hold two thousand connection slots
//! and their buffers. So the time to log in is counted once, from the greeting, and every
//! read before the login waits at most what is left of it.

use std::time::{Duration, Instant};

/// When an unauthenticated connection must have logged in by.
#[derive(Debug, Clone, Copy)]
pub struct LoginDeadline {
    by: Instant,
}

impl LoginDeadline {
    /// The clock starts now (at the greeting).
    pub fn starting_now(limit: Duration) -> LoginDeadline {
        LoginDeadline { by: Instant::now() + limit }
    }

    /// How long a read before login may wait: `silence` (the per-read timeout), cut to
    /// the time left. Zero once the deadline has passed: the caller closes without reading.
    pub fn read_timeout(&self, silence: Duration) -> Duration {
        silence.min(self.by.saturating_duration_since(Instant::now()))
    }

    /// True once the time to log in is up (a timed-out read says which limit ended it).
    pub fn passed(&self) -> bool {
        Instant::now() >= self.by
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wait_at_most_what_is_left() {
        let d = LoginDeadline::starting_now(Duration::from_secs(60));
        assert!(d.read_timeout(Duration::from_secs(10)) == Duration::from_secs(10));
        assert!(d.read_timeout(Duration::from_secs(600)) <= Duration::from_secs(60));
        assert!(!d.passed());
        let over = LoginDeadline::starting_now(Duration::ZERO);
        assert_eq!(over.read_timeout(Duration::from_secs(600)), Duration::ZERO);
        assert!(over.passed());
    }
}
