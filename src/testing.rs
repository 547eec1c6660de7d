//! Helpers shared by the unit tests (compiled only for `cargo test`).
//!
//! The "garbage in never panics" tests of every parser draw their inputs from one
//! deterministic generator (xorshift64), so a failure reproduces from the seed alone.

/// One step of xorshift64: advances `seed` and returns its new value.
pub fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// `len` bytes drawn from `alphabet` (one generator step per byte).
pub fn garbage(seed: &mut u64, alphabet: &[u8], len: usize) -> Vec<u8> {
    (0..len).map(|_| alphabet[(xorshift(seed) % alphabet.len() as u64) as usize]).collect()
}
