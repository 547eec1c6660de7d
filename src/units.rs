//! Sizes and durations as operators write them in `MAILROOM_*` variables.
//!
//! This module owns the two tiny grammars interface.md promises ("durations take `s`, `m`,
//! `h`, `d`; sizes take `K`, `M`, `G` (powers of 1024)") so that `config.rs` and
//! `accounts/` (quotas) accept exactly the same spelling. It is pure: strings in, numbers or
//! a human-readable error out; it never reads the environment and never panics.

use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// Parse a size such as `25M`, `2G`, `1024K`, `500` (bytes).
///
/// Units are powers of 1024 (like Postfix's and Dovecot's sizes) and case-insensitive; a
/// trailing `B` or `iB` is tolerated (`2GB`, `2GiB`) because operators copy them from
/// `df -h`. Negative, fractional, empty and overflowing values are errors: a quota that
/// silently wrapped to a few bytes would bounce every message.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty size".to_string());
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("size {t:?} must start with a non-negative whole number"));
    }
    let number: u64 = digits.parse().map_err(|_| format!("size {t:?} is too large"))?;
    let unit_lower = unit.trim_start().to_ascii_lowercase();
    let multiplier = match unit_lower.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => TIB,
        _ => {
            return Err(format!("size {t:?} has an unknown unit (use K, M, G or plain bytes)"));
        }
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("size {t:?} is too large"))
}

/// Parse a duration such as `90s`, `5m`, `4h`, `5d`, or a bare number of seconds.
///
/// Compound forms (`1h30m`) are accepted because they are what people write for retry
/// caps; each part needs a unit then. Overflow is an error rather than a wrap.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".to_string());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map(Duration::from_secs).map_err(|_| format!("duration {t:?} is too large"));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        if digits.is_empty() {
            return Err(format!("duration {t:?} is not like 90s, 5m, 4h or 5d"));
        }
        let mut chars = after.chars();
        let multiplier: u64 = match chars.next() {
            Some('s' | 'S') => 1,
            Some('m' | 'M') => 60,
            Some('h' | 'H') => 3600,
            Some('d' | 'D') => 86_400,
            Some('w' | 'W') => 7 * 86_400,
            _ => {
                return Err(format!("duration {t:?} needs a unit after each number (s, m, h, d)"));
            }
        };
        let n: u64 = digits.parse().map_err(|_| format!("duration {t:?} is too large"))?;
        total = n
            .checked_mul(multiplier)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| format!("duration {t:?} is too large"))?;
        rest = chars.as_str();
    }
    Ok(Duration::from_secs(total))
}

/// Format a byte count the way [`parse_size`] reads it.
///
/// Exact multiples print with their unit (`2G`, `500M`, `1K`) so `check-config` output can
/// be pasted back into the environment; other values print as plain bytes when small and
/// with one decimal otherwise (`1.5M`), which is for humans only.
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    if bytes < KIB {
        return bytes.to_string();
    }
    for (unit, size) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
        if bytes >= size {
            // Integer arithmetic keeps clippy's cast lints quiet and avoids float rounding
            // surprises: tenths = bytes * 10 / size, rounded down.
            let tenths = u128::from(bytes) * 10 / u128::from(size);
            return format!("{}.{}{unit}", tenths / 10, tenths % 10);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_operators_write() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("500", 500),
            ("1024K", 1024 * 1024),
            ("1k", 1024),
            ("500M", 500 * MIB),
            ("25M", 25 * MIB),
            ("2G", 2 * GIB),
            ("2GB", 2 * GIB),
            ("2GiB", 2 * GIB),
            ("1T", TIB),
            (" 7 M ", 7 * MIB),
            ("10b", 10),
        ];
        for (input, want) in table {
            assert_eq!(parse_size(input), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn sizes_rejected() {
        for input in
            ["", "   ", "-1", "-5M", "1.5G", "G", "12X", "2 G B", "18446744073709551616", "99999999999999999G", "0x10"]
        {
            assert!(parse_size(input).is_err(), "input {input:?} should fail");
        }
    }

    #[test]
    fn durations_operators_write() {
        let table: &[(&str, u64)] = &[
            ("90s", 90),
            ("5m", 300),
            ("4h", 4 * 3600),
            ("5d", 5 * 86_400),
            ("1w", 7 * 86_400),
            ("42", 42),
            ("0", 0),
            ("1h30m", 5400),
            ("1d2h3m4s", 86_400 + 7200 + 180 + 4),
            (" 5M ", 300),
        ];
        for (input, want) in table {
            assert_eq!(parse_duration(input), Ok(Duration::from_secs(*want)), "input {input:?}");
        }
    }

    #[test]
    fn durations_rejected() {
        for input in ["", "s", "-5m", "5x", "1.5h", "1h30", "5 m", "99999999999999999999d", "999999999999999999d"] {
            assert!(parse_duration(input).is_err(), "input {input:?} should fail");
        }
    }

    #[test]
    fn format_round_trips_exact_sizes() {
        for s in ["0", "500", "1K", "25M", "2G", "3T", "1023"] {
            let n = parse_size(s).unwrap_or(u64::MAX);
            assert_eq!(format_size(n), s);
        }
        assert_eq!(format_size(1024 * 1024 * 3 / 2), "1536K");
        assert_eq!(format_size(1024 * 1024 * 3 / 2 + 1), "1.5M");
        assert_eq!(format_size(1025), "1.0K");
        assert!(format_size(u64::MAX).ends_with('T'));
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"0123456789kmgtbsdhwKMGTBiI .-+x\xff";
        for _ in 0..5000 {
            let len = (crate::testing::xorshift(&mut seed) % 12) as usize;
            let bytes: Vec<u8> =
                (0..len).map(|i| alphabet[((seed >> (i * 5)) % alphabet.len() as u64) as usize]).collect();
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
        }
    }
}

/// The shortest exact form of a duration in the units `parse_duration` accepts
/// (`5d`, `4h`, `90s`), for printing the effective configuration.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn durations_format_in_their_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(5 * 86400)), "5d");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(
            parse_duration(&format_duration(Duration::from_secs(4 * 3600))).unwrap(),
            Duration::from_secs(4 * 3600)
        );
    }
}
