//! The retry schedule: exponential backoff from `MAILROOM_QUEUE_RETRY_MIN`, doubling up
//! to `MAILROOM_QUEUE_RETRY_MAX`, with jitter.
//!
//! Jitter matters because a remote outage defers many items at the same instant: without
//! it they would all retry in the same second, forever in lockstep (chasquid's
//! `nextDelay` does the same). The jitter is ±20% of the step and never takes a delay
//! under the minimum or over the maximum, so the operator's bounds are bounds.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `attempts` (1 = after the first failed attempt),
/// without jitter: `min * 2^(attempts-1)`, capped at `max`.
pub fn base_delay(attempts: u32, min: Duration, max: Duration) -> Duration {
    let max = max.max(min);
    let shift = attempts.saturating_sub(1).min(32);
    min.checked_mul(1u32 << shift.min(31)).unwrap_or(max).min(max)
}

/// [`base_delay`] with ±20% jitter, clamped to `[min, max]`.
pub fn next_delay(attempts: u32, min: Duration, max: Duration) -> Duration {
    let base = base_delay(attempts, min, max);
    let factor: f64 = rand::rng().random_range(0.8..=1.2);
    base.mul_f64(factor).clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(300);
    const MAX: Duration = Duration::from_secs(4 * 3600);

    #[test]
    fn doubles_from_min_to_max() {
        let steps: Vec<u64> = (1..=8).map(|n| base_delay(n, MIN, MAX).as_secs()).collect();
        assert_eq!(steps, vec![300, 600, 1200, 2400, 4800, 9600, 14400, 14400]);
        assert_eq!(base_delay(0, MIN, MAX), MIN);
        assert_eq!(base_delay(u32::MAX, MIN, MAX), MAX);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        for attempts in 1..12 {
            let base = base_delay(attempts, MIN, MAX);
            for _ in 0..200 {
                let d = next_delay(attempts, MIN, MAX);
                assert!(d >= MIN && d <= MAX, "{d:?}");
                assert!(d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2), "{attempts}: {d:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads() {
        let samples: std::collections::HashSet<u128> = (0..50).map(|_| next_delay(3, MIN, MAX).as_millis()).collect();
        assert!(samples.len() > 10);
    }

    #[test]
    fn max_below_min_is_min() {
        assert_eq!(next_delay(5, MIN, Duration::from_secs(1)), MIN);
    }
}
