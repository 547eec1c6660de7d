//! Compiled scripts, so a busy mailbox does not compile its script for every message.
//!
//! Keyed by the account and the SHA-256 of the script's bytes: a changed script has a
//! new key and compiles again, and the old entry ages out. Bounded by entry count
//! (oldest inserted first out); a compile error is cached too, so a broken script costs
//! one compile, not one per message.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use ::sieve::Sieve;

/// The cache key: account and script digest.
type Key = (String, [u8; 32]);

/// A bounded map of compiled scripts. Cheap to share behind an `Arc`.
pub struct ScriptCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Result<Arc<Sieve>, String>>,
    order: VecDeque<Key>,
}

impl ScriptCache {
    pub fn new(capacity: usize) -> ScriptCache {
        ScriptCache { capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// The compiled form of `script` for `account`, compiling with `compile` on a miss.
    pub fn get_or_compile(
        &self,
        account: &str,
        script: &[u8],
        compile: impl FnOnce(&[u8]) -> Result<Arc<Sieve>, String>,
    ) -> Result<Arc<Sieve>, String> {
        let key: Key = (account.to_string(), digest(script));
        if let Ok(inner) = self.inner.lock()
            && let Some(hit) = inner.map.get(&key)
        {
            return hit.clone();
        }
        let compiled = compile(script);
        if let Ok(mut inner) = self.inner.lock() {
            while inner.map.len() >= self.capacity {
                let Some(old) = inner.order.pop_front() else { break };
                inner.map.remove(&old);
            }
            if inner.map.insert(key.clone(), compiled.clone()).is_none() {
                inner.order.push_back(key);
            }
        }
        compiled
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// SHA-256 of `bytes`.
pub(super) fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
