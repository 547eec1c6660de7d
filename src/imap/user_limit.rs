//! Connections per user and client address, counted
//! from login to disconnect like Dovecot's `mail_max_userip_connections`: one broken client
//! reconnecting in a loop cannot exhaust the server for everybody. The per-IP cap before
//! login belongs to `net/`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

type Key = (String, IpAddr);

/// The live count per (user, IP). Cheap to clone: the map is shared.
#[derive(Debug, Clone, Default)]
pub struct UserConnections {
    counts: Arc<Mutex<HashMap<Key, u32>>>,
}

/// One counted connection; the count goes down when it is dropped.
#[derive(Debug)]
pub struct UserSlot {
    counts: Arc<Mutex<HashMap<Key, u32>>>,
    key: Key,
}

impl UserConnections {
    /// Take a slot, or `None` when `user` already has `limit` connections from `ip`.
    pub fn acquire(&self, user: &str, ip: IpAddr, limit: u32) -> Option<UserSlot> {
        let key = (user.to_string(), ip);
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(UserSlot { counts: self.counts.clone(), key })
    }

    /// Current count (for tests and metrics).
    pub fn count(&self, user: &str, ip: IpAddr) -> u32 {
        let map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(user.to_string(), ip)).copied().unwrap_or(0)
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_user_and_ip_and_releases_on_drop() {
        let c = UserConnections::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let a = c.acquire("alice@x", ip, 2).unwrap();
        let _b = c.acquire("alice@x", ip, 2).unwrap();
        assert!(c.acquire("alice@x", ip, 2).is_none());
        assert!(c.acquire("alice@x", other, 2).is_some());
        assert!(c.acquire("bob@x", ip, 2).is_some());
        drop(a);
        assert_eq!(c.count("alice@x", ip), 1);
        assert!(c.acquire("alice@x", ip, 2).is_some());
    }
}
