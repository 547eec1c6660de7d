//! A short-lived memory of successful logins, like Dovecot's `auth_cache`.
//!
//! IMAP clients open several connections and re-authenticate on each (Thunderbird keeps up
//! to five, phones reconnect on every network change); paying argon2's ~50 ms and 19 MiB
//! each time adds up. A success is remembered for a short TTL under a keyed digest of
//! (address, password). Failures are never remembered, so a wrong guess always pays the
//! full hash cost and brute force gains nothing from the cache.
//!
//! The key is HMAC-SHA-256 with a random per-process key rather than a bare SHA-256 of the
//! password: a memory dump then holds nothing an attacker can brute-force offline.
//! The map is bounded so a client cannot grow it without limit (bcrypt ignores bytes past
//! 72, so one account can have unboundedly many "correct" passwords).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;

use super::address::Address;

/// How long a verified login is trusted without re-hashing.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most entries kept; past this, expired ones are dropped and, if that is not enough,
/// everything (a cache miss only costs one hash).
const MAX_ENTRIES: usize = 10_000;

/// Digest of (address, password) under the process key.
pub(crate) type CacheKey = [u8; 32];

pub(crate) struct AuthCache {
    key: hmac::Key,
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, Instant>>,
}

impl AuthCache {
    pub(crate) fn new(ttl: Duration) -> AuthCache {
        let secret: [u8; 32] = rand::random();
        AuthCache { key: hmac::Key::new(hmac::HMAC_SHA256, &secret), ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The cache key for a login at generation 0.
    #[cfg(test)]
    pub(crate) fn key_for(&self, address: &Address, password: &str) -> CacheKey {
        self.key_for_generation(address, 0, password)
    }

    /// The cache key for a login under one `generation` of the account's credentials (the
    /// version of its credentials record): a changed password or setting is a new
    /// generation, so what was verified before it is never found again. The address is
    /// length-prefixed so that no choice of password can make two different (address,
    /// password) pairs collide.
    pub(crate) fn key_for_generation(&self, address: &Address, generation: u64, password: &str) -> CacheKey {
        let addr = address.to_string();
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(addr.len() as u64).to_be_bytes());
        ctx.update(addr.as_bytes());
        ctx.update(&generation.to_be_bytes());
        ctx.update(password.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Was this login verified less than a TTL before `now`? Expired entries are removed.
    pub(crate) fn is_fresh(&self, key: &CacheKey, now: Instant) -> bool {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    /// Remember a successful verification made at `now`.
    pub(crate) fn remember(&self, key: CacheKey, now: Instant) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, expiry| *expiry > now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, now + self.ttl);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fresh_within_ttl_then_expires() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let k = cache.key_for(&addr("alice@example.com"), "pw");
        assert!(!cache.is_fresh(&k, t0), "nothing remembered yet");
        cache.remember(k, t0);
        assert!(cache.is_fresh(&k, t0 + Duration::from_secs(59)));
        assert!(!cache.is_fresh(&k, t0 + Duration::from_secs(60)));
        assert_eq!(cache.len(), 0, "expired entry is dropped");
    }

    #[test]
    fn keys_depend_on_address_and_password() {
        let cache = AuthCache::new(AUTH_CACHE_TTL);
        let a = cache.key_for(&addr("ab@example.com"), "c");
        assert_ne!(a, cache.key_for(&addr("ab@example.com"), "d"));
        assert_ne!(a, cache.key_for(&addr("b@example.com"), "c"));
        assert_eq!(a, cache.key_for(&addr("AB@example.com"), "c"));
        let other_process = AuthCache::new(AUTH_CACHE_TTL);
        assert_ne!(a, other_process.key_for(&addr("ab@example.com"), "c"));
    }

    #[test]
    fn keys_depend_on_the_generation() {
        let cache = AuthCache::new(AUTH_CACHE_TTL);
        let a = addr("a@example.com");
        assert_eq!(cache.key_for(&a, "pw"), cache.key_for_generation(&a, 0, "pw"));
        assert_ne!(cache.key_for_generation(&a, 1, "pw"), cache.key_for_generation(&a, 2, "pw"));
    }

    #[test]
    fn bounded() {
        let cache = AuthCache::new(AUTH_CACHE_TTL);
        let now = Instant::now();
        let a = addr("a@example.com");
        for i in 0..(MAX_ENTRIES + 5) {
            cache.remember(cache.key_for(&a, &i.to_string()), now);
        }
        assert!(cache.len() <= MAX_ENTRIES);
    }
}
