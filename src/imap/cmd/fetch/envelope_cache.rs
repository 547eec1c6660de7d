//! ENVELOPEs as rendered, kept server-wide for the next FETCH of the same message.
//!
//! Clients list a folder with `FETCH n:m (UID FLAGS ENVELOPE)` on every open, and an
//! ENVELOPE is the costliest item of that listing: every address header is parsed, every
//! encoded word decoded, every string quoted (about 19,000 instructions a message, most of
//! a listing command's CPU). Its bytes depend on the message's header block alone, which
//! never changes while the message keeps its UID and the folder its UIDVALIDITY, so the
//! rendered bytes are kept under that key and reused as they are (Dovecot keeps its parsed
//! envelope in `dovecot.index.cache` for the same reason). A hit also spares reading the
//! header block when ENVELOPE is the only item that needs it.
//!
//! Bounded by bytes ([`ENVELOPE_CACHE_BYTES`]), oldest entry out first: a listing touches
//! each message once, so recency would buy little over insertion order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// What the cache holds at most: rendered bytes plus [`ENTRY_OVERHEAD`] per entry. At
/// 300–600 bytes an envelope, some 15,000 messages.
pub const ENVELOPE_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// What one entry costs beside its bytes (key, map slot, queue slot, `Bytes` header).
const ENTRY_OVERHEAD: usize = 96;

/// One message: the folder (`MailboxId::location`, unique per owner and folder), its
/// UIDVALIDITY and the UID.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EnvelopeKey {
    folder: Arc<str>,
    uid_validity: u32,
    uid: u32,
}

impl EnvelopeKey {
    pub fn new(folder: Arc<str>, uid_validity: u32, uid: u32) -> EnvelopeKey {
        EnvelopeKey { folder, uid_validity, uid }
    }
}

/// The server-wide cache (one per `ImapContext`).
pub struct EnvelopeCache {
    limit: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<EnvelopeKey, Bytes>,
    /// Keys in insertion order, the oldest first.
    order: VecDeque<EnvelopeKey>,
    /// Bytes charged for the entries now held.
    bytes: usize,
}

impl Default for EnvelopeCache {
    fn default() -> Self {
        EnvelopeCache::new(ENVELOPE_CACHE_BYTES)
    }
}

impl EnvelopeCache {
    pub fn new(limit: usize) -> EnvelopeCache {
        EnvelopeCache { limit, inner: Mutex::new(Inner::default()) }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rendered ENVELOPE (what follows `ENVELOPE `), if kept.
    pub fn get(&self, key: &EnvelopeKey) -> Option<Bytes> {
        self.inner().map.get(key).cloned()
    }

    /// Keep `envelope` for `key`, dropping the oldest entries past the bound.
    pub fn put(&self, key: EnvelopeKey, envelope: Bytes) {
        let cost = envelope.len() + ENTRY_OVERHEAD;
        if cost > self.limit {
            return;
        }
        let mut inner = self.inner();
        if inner.map.contains_key(&key) {
            return;
        }
        inner.bytes += cost;
        inner.order.push_back(key.clone());
        inner.map.insert(key, envelope);
        while inner.bytes > self.limit {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(gone) = inner.map.remove(&old) {
                inner.bytes -= gone.len() + ENTRY_OVERHEAD;
            }
        }
    }

    /// Entries and charged bytes now held.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.map.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(folder: &str, uid_validity: u32, uid: u32) -> EnvelopeKey {
        EnvelopeKey::new(folder.into(), uid_validity, uid)
    }

    #[test]
    fn an_envelope_is_found_only_under_its_own_folder_validity_and_uid() {
        let cache = EnvelopeCache::default();
        cache.put(key("/mail/a/INBOX", 7, 1), Bytes::from_static(b"(NIL \"one\")"));
        assert_eq!(cache.get(&key("/mail/a/INBOX", 7, 1)).as_deref(), Some(&b"(NIL \"one\")"[..]));
        for other in [key("/mail/b/INBOX", 7, 1), key("/mail/a/INBOX", 8, 1), key("/mail/a/INBOX", 7, 2)] {
            assert_eq!(cache.get(&other), None, "{other:?}");
        }
        // The first rendering stays: the bytes of one key never change.
        cache.put(key("/mail/a/INBOX", 7, 1), Bytes::from_static(b"other"));
        assert_eq!(cache.get(&key("/mail/a/INBOX", 7, 1)).as_deref(), Some(&b"(NIL \"one\")"[..]));
    }

    #[test]
    fn the_oldest_entries_leave_once_the_bound_is_passed() {
        let cost = 100 + ENTRY_OVERHEAD;
        let cache = EnvelopeCache::new(3 * cost);
        for uid in 1..=5 {
            cache.put(key("f", 1, uid), Bytes::from(vec![b'x'; 100]));
            assert!(cache.usage().1 <= 3 * cost);
        }
        assert_eq!(cache.usage(), (3, 3 * cost));
        assert_eq!(cache.get(&key("f", 1, 2)), None);
        assert!(cache.get(&key("f", 1, 3)).is_some() && cache.get(&key("f", 1, 5)).is_some());
        // An envelope bigger than the whole bound is not kept and evicts nothing.
        cache.put(key("f", 1, 9), Bytes::from(vec![b'x'; 4 * cost]));
        assert_eq!(cache.usage(), (3, 3 * cost));
    }
}
