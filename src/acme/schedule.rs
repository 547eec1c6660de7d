//! When to renew, and how long to wait after a failure. Pure arithmetic on times,
//! so it is tested without clocks or a CA.
//!
//! Renewal at two thirds of the lifetime is Let's Encrypt's advice (30 days before
//! the end of a 90-day certificate, and it scales to the 6-day certificates). When
//! the CA publishes ACME Renewal Information (RFC 9773) its window wins: the CA uses
//! it to spread load and to ask for early renewal before a mass revocation.

use std::time::{Duration, SystemTime};

/// First wait after a failed order; doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(60);
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);

/// Failure backoff: 1 min, 2, 4, … capped at 6 h (CAs rate-limit failed
/// validations, e.g. Let's Encrypt allows 5 per hour per name).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The wait after this failure; the next one will be twice as long.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal:
/// `renew_before` ahead of the end when the operator set it, else at two thirds of
/// the lifetime.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, renew_before: Option<Duration>) -> SystemTime {
    match renew_before {
        Some(before) => not_after.checked_sub(before).unwrap_or(SystemTime::UNIX_EPOCH),
        None => two_thirds(not_before, not_after),
    }
}

/// Two thirds into the validity period (a reversed period renews at once).
pub fn two_thirds(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or(Duration::ZERO);
    not_before + lifetime * 2 / 3
}

/// A point in the CA's suggested window `[start, end]`, at `fraction` (0..1, random
/// in production: RFC 9773 §4.2 asks for a uniformly random point).
pub fn in_window(start: SystemTime, end: SystemTime, fraction: f64) -> SystemTime {
    let span = end.duration_since(start).unwrap_or(Duration::ZERO);
    start + span.mul_f64(fraction.clamp(0.0, 1.0))
}

/// How long to wait from `now` until `at` (zero when already due).
pub fn wait_until(now: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// The validity period of a DER certificate.
pub fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let to_time = |ts: i64| u64::try_from(ts).ok().map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    Some((to_time(cert.validity().not_before.timestamp())?, to_time(cert.validity().not_after.timestamp())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    fn t(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(86400 * days)
    }

    #[test]
    fn ninety_day_certificate_renews_on_day_sixty() {
        assert_eq!(renew_at(t(1000), t(1090), None), t(1060));
    }

    #[test]
    fn operator_margin_counts_back_from_the_end() {
        assert_eq!(renew_at(t(1000), t(1090), Some(DAY * 10)), t(1080));
        // A margin longer than the lifetime makes the certificate due at once.
        assert!(renew_at(t(1000), t(1090), Some(DAY * 5000)) < t(1000));
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_six_hours() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..12).map(|_| b.failed().as_secs()).collect();
        assert_eq!(&waits[..4], &[60, 120, 240, 480]);
        assert_eq!(*waits.last().unwrap(), 6 * 3600);
        b.reset();
        assert_eq!(b.failed(), BACKOFF_MIN);
    }

    #[test]
    fn window_point_stays_inside() {
        assert_eq!(in_window(t(10), t(20), 0.5), t(15));
        assert_eq!(in_window(t(10), t(20), 7.0), t(20));
        assert_eq!(in_window(t(20), t(10), 0.5), t(20));
        assert_eq!(wait_until(t(20), t(10)), Duration::ZERO);
    }

    #[test]
    fn validity_of_garbage_is_none() {
        assert!(validity(b"").is_none());
        assert!(validity(&[0x30, 0x82, 0xff]).is_none());
        let ck = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
        let (from, to) = validity(ck.cert.der()).unwrap();
        assert!(from < to);
    }
}
