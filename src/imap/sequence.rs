//! Sequence sets (RFC 9051 9 `sequence-set`): ranges of message sequence numbers or UIDs,
//! with `*` (the largest number in use) and `$` (the saved SEARCHRES result, RFC 5182).
//! Parsing is pure and bounded; resolution against a mailbox happens in the session, which
//! knows what `*` and `$` mean right now.

/// One end of a range: a number or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    Value(u32),
    Star,
}

impl SeqNumber {
    fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNumber::Value(v) => v,
            SeqNumber::Star => largest,
        }
    }
}

/// `a:b` (order-free: `4:2` is `2:4`) or a single number (`start == end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqNumber,
    pub end: SeqNumber,
}

/// A parsed set. `Saved` is `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Vec<SeqRange>),
    Saved,
}

/// Most ranges one set may carry: bounds the work a single command can cause.
pub const MAX_RANGES: usize = 100_000;

impl SequenceSet {
    /// Parse `1:3,5,7:*` or `$`. Returns `None` on any syntax error (zero is not allowed).
    pub fn parse(s: &[u8]) -> Option<SequenceSet> {
        if s == b"$" {
            return Some(SequenceSet::Saved);
        }
        if s.is_empty() {
            return None;
        }
        let mut ranges = Vec::new();
        for part in s.split(|b| *b == b',') {
            if ranges.len() >= MAX_RANGES {
                return None;
            }
            let mut ends = part.splitn(2, |b| *b == b':');
            let start = parse_number(ends.next()?)?;
            let end = match ends.next() {
                Some(e) => parse_number(e)?,
                None => start,
            };
            ranges.push(SeqRange { start, end });
        }
        Some(SequenceSet::Ranges(ranges))
    }

    /// A set of explicit numbers (used when a saved result or UID list is materialised).
    pub fn from_numbers(numbers: &[u32]) -> SequenceSet {
        SequenceSet::Ranges(
            compress(numbers)
                .into_iter()
                .map(|(a, b)| SeqRange { start: SeqNumber::Value(a), end: SeqNumber::Value(b) })
                .collect(),
        )
    }

    /// Is `n` in the set, where `*` means `largest`? `$` never matches here: the session
    /// replaces it with the saved result before evaluating.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(ranges) => ranges.iter().any(|r| {
                let a = r.start.resolve(largest);
                let b = r.end.resolve(largest);
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                (lo..=hi).contains(&n)
            }),
        }
    }

    /// Resolved `(lo, hi)` ranges, in the order given.
    pub fn ranges(&self, largest: u32) -> Vec<(u32, u32)> {
        match self {
            SequenceSet::Saved => Vec::new(),
            SequenceSet::Ranges(ranges) => ranges
                .iter()
                .map(|r| {
                    let a = r.start.resolve(largest);
                    let b = r.end.resolve(largest);
                    if a <= b { (a, b) } else { (b, a) }
                })
                .collect(),
        }
    }
}

fn parse_number(s: &[u8]) -> Option<SeqNumber> {
    if s == b"*" {
        return Some(SeqNumber::Star);
    }
    let n = parse_nz_number(s)?;
    Some(SeqNumber::Value(n))
}

/// `nz-number`: digits, no leading zero, fits u32.
pub fn parse_nz_number(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || s[0] == b'0' || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Sorted numbers -> inclusive runs (for `1:3,5` output).
pub fn compress(numbers: &[u32]) -> Vec<(u32, u32)> {
    let mut sorted: Vec<u32> = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for n in sorted {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(n) => *hi = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// Render numbers compactly: `1:3,5` (used for COPYUID, ESEARCH ALL, VANISHED).
pub fn format_numbers(numbers: &[u32]) -> String {
    format_runs(&compress(numbers))
}

/// Render numbers keeping their order (COPYUID pairs must line up source to destination).
pub fn format_numbers_ordered(numbers: &[u32]) -> String {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in numbers {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(n) => *hi = n,
            _ => out.push((n, n)),
        }
    }
    format_runs(&out)
}

fn format_runs(runs: &[(u32, u32)]) -> String {
    let mut s = String::new();
    for (i, (a, b)) in runs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if a == b {
            s.push_str(&a.to_string());
        } else {
            s.push_str(&format!("{a}:{b}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_star_and_saved() {
        let set = SequenceSet::parse(b"1:3,5,7:*").unwrap();
        assert!(set.contains(2, 10));
        assert!(!set.contains(4, 10));
        assert!(set.contains(10, 10));
        assert!(SequenceSet::parse(b"*:4").unwrap().contains(5, 9));
        assert_eq!(SequenceSet::parse(b"$"), Some(SequenceSet::Saved));
    }

    #[test]
    fn rejects_zero_and_garbage() {
        for bad in [&b""[..], b"0", b"1:0", b"a", b"1,,2", b"1:", b"01", b"99999999999"] {
            assert_eq!(SequenceSet::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reversed_range_is_normalised() {
        assert_eq!(SequenceSet::parse(b"4:2").unwrap().ranges(9), vec![(2, 4)]);
    }

    #[test]
    fn formats_runs() {
        assert_eq!(format_numbers(&[5, 1, 2, 3, 9]), "1:3,5,9");
        assert_eq!(format_numbers_ordered(&[3, 1, 2]), "3,1:2");
        assert_eq!(format_numbers(&[]), "");
    }
}
