//! The parsed TXT records port 25's checks look up for every message: SPF policies,
//! DKIM keys, DMARC records, ARC keys. The resolver already caches the DNS answers;
//! without this, mail-auth would still parse each record (and decode each key) again for
//! every message of the same sender. An entry lives exactly as long as the DNS answer it
//! came from (`valid_until`, the record's TTL), so nothing changes in what is judged.
//!
//! Bounded: at most [`CAPACITY`] names; when full, expired entries go first, and if
//! none has expired the map is emptied (a flood of distinct senders only costs the
//! parsing we did before).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::{ResolverCache, Txt};

/// Names kept at most (a parsed DKIM key is ~1 KiB, an SPF policy less).
pub const CAPACITY: usize = 4096;

/// Parsed TXT records by name, until their DNS answer expires.
#[derive(Default)]
pub struct TxtCache {
    map: Mutex<HashMap<Box<str>, (Txt, Instant)>>,
}

impl TxtCache {
    /// The map stays consistent between statements, so a panicked holder leaves it usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, (Txt, Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.lock();
        let (txt, until) = map.get(name)?;
        (*until > Instant::now()).then(|| txt.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(txt, _)| txt)
    }

    fn insert(&self, name: Box<str>, value: Txt, valid_until: Instant) {
        let mut map = self.lock();
        if map.len() >= CAPACITY && !map.contains_key(&name) {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(name, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record() -> Txt {
        Txt::Error(mail_auth::Error::ParseError)
    }

    #[test]
    fn an_entry_lives_as_long_as_its_dns_answer() {
        let cache = TxtCache::default();
        let now = Instant::now();
        cache.insert("a.example.".into(), record(), now + Duration::from_secs(60));
        cache.insert("b.example.".into(), record(), now);
        assert!(cache.get("a.example.").is_some());
        assert!(cache.get("b.example.").is_none(), "expired");
        assert!(cache.remove("a.example.").is_some());
        assert!(cache.get("a.example.").is_none());
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = TxtCache::default();
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..CAPACITY + 10 {
            cache.insert(format!("{i}.example.").into(), record(), later);
            assert!(cache.lock().len() <= CAPACITY);
        }
        assert!(cache.get(&*format!("{}.example.", CAPACITY + 9)).is_some(), "the newest is kept");
    }
}
