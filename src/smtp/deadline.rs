//! Deadlines a trickling client cannot push back (slowloris). A per-read idle timeout
//! alone is reset by every byte: one byte every few seconds held an unfinished EHLO line
//! open for many minutes and a DATA transfer for over twenty. So a command line gets its
//! timeout once, from its first byte, and message content must keep an average rate once
//! its base allowance is used up. The connection loop (`server.rs`) asks these how long it
//! may still wait and answers `421 4.4.2` when nothing is left.
//!
//! Pure arithmetic over the `now` the caller passes (like `net::ratelimit`), so the tests
//! walk through minutes of a trickle without waiting for them.

use std::time::{Duration, Instant};

/// The overall deadline of one command line (also an AUTH answer): `timeout` from the
/// line's first byte, however the rest trickles in (RFC 5321 §4.5.3.2.7 allows 5 minutes
/// per command, not per byte).
#[derive(Debug, Default, Clone)]
pub struct LineDeadline {
    started: Option<Instant>,
}

impl LineDeadline {
    /// How long to wait for more input now. `partial`: some of a line is buffered (or
    /// was discarded as over-long), so its clock runs; otherwise the client is between
    /// commands and gets the whole `timeout`. Zero: the line's time is up.
    pub fn wait(&mut self, partial: bool, timeout: Duration, now: Instant) -> Duration {
        if partial {
            self.started.get_or_insert(now);
        }
        match self.started {
            Some(started) => (started + timeout).saturating_duration_since(now),
            None => timeout,
        }
    }

    /// A line (or an over-long one being discarded) has begun, even if its bytes are gone.
    pub fn begin(&mut self, now: Instant) {
        self.started.get_or_insert(now);
    }

    /// The line is complete (or the buffer was thrown away): the next one starts afresh.
    pub fn finish(&mut self) {
        self.started = None;
    }
}

/// The overall deadline of one message's content (DATA, or all BDAT chunks of one
/// message): `base` plus one second for every `min_rate` octets received. An honest
/// sender on a slow link earns time with every octet; a trickle of a byte every few
/// seconds runs out after about `base`.
#[derive(Debug, Clone)]
pub struct TransferDeadline {
    started: Instant,
    base: Duration,
    min_rate: u64,
    received: u64,
}

impl TransferDeadline {
    /// Starting at `now`. `min_rate` in octets per second (0 counts as 1).
    pub fn new(base: Duration, min_rate: u64, now: Instant) -> TransferDeadline {
        TransferDeadline { started: now, base, min_rate: min_rate.max(1), received: 0 }
    }

    /// `n` more octets arrived.
    pub fn received(&mut self, n: usize) {
        self.received = self.received.saturating_add(n as u64);
    }

    /// How long to wait for more content now: at most `idle` (silence between reads),
    /// never past the overall deadline. Zero: the transfer's time is up.
    pub fn wait(&self, idle: Duration, now: Instant) -> Duration {
        let earned = Duration::from_secs(self.received / self.min_rate);
        let deadline = self.started + self.base.saturating_add(earned);
        deadline.saturating_duration_since(now).min(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const FIVE_S: Duration = Duration::from_secs(5);

    #[test]
    fn a_line_gets_its_timeout_once_from_the_first_byte() {
        let mut now = Instant::now();
        let mut d = LineDeadline::default();
        assert_eq!(d.wait(false, 5 * MIN, now), 5 * MIN, "between commands: the whole timeout");
        now += 4 * MIN;
        assert_eq!(d.wait(false, 5 * MIN, now), 5 * MIN, "idle time before a line does not count");
        // "E", then a byte every 5 s: the clock keeps running from the first one.
        assert_eq!(d.wait(true, 5 * MIN, now), 5 * MIN);
        for _ in 0..59 {
            now += FIVE_S;
            assert!(d.wait(true, 5 * MIN, now) > Duration::ZERO);
        }
        now += FIVE_S;
        assert_eq!(d.wait(true, 5 * MIN, now), Duration::ZERO, "300 s after the first byte");
        d.finish();
        assert_eq!(d.wait(false, 5 * MIN, now), 5 * MIN, "the next line starts afresh");
    }

    #[test]
    fn a_discarded_long_line_keeps_its_clock() {
        let now = Instant::now();
        let mut d = LineDeadline::default();
        d.begin(now);
        assert_eq!(d.wait(false, 5 * MIN, now + 2 * MIN), 3 * MIN, "the buffer is empty but the line goes on");
    }

    #[test]
    fn content_must_keep_a_minimum_rate_after_the_base() {
        let mut now = Instant::now();
        let mut t = TransferDeadline::new(5 * MIN, 1024, now);
        assert_eq!(t.wait(10 * MIN, now), 5 * MIN);
        assert_eq!(t.wait(Duration::from_secs(30), now), Duration::from_secs(30), "idle limit between reads");
        // A trickle: one byte every 5 s, for what would be 20 minutes, ends at the base.
        let mut waited = Duration::ZERO;
        while t.wait(10 * MIN, now) > Duration::ZERO && waited < 20 * MIN {
            now += FIVE_S;
            waited += FIVE_S;
            t.received(1);
        }
        assert_eq!(waited, 5 * MIN, "the trickle is cut at the base allowance");
        // An honest slow sender: 25 MB at 8 KiB/s takes ~53 minutes and earns it.
        let mut now = Instant::now();
        let mut t = TransferDeadline::new(5 * MIN, 1024, now);
        for _ in 0..3200 {
            now += Duration::from_secs(1);
            t.received(8 * 1024);
            assert!(t.wait(10 * MIN, now) > Duration::ZERO);
        }
    }
}
