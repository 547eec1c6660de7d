//! Connection limits: a global cap and a per-IP cap, shared by every listener.
//!
//! One client address must not be able to take every slot (a cheap denial of service
//! against SMTP and IMAP alike), and the process must not run out of file
//! descriptors. A refused connection gets its protocol's "busy" line and is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `MAILROOM_MAX_CONNECTIONS` already.
    ServerFull,
    /// This address holds `MAILROOM_MAX_CONNECTIONS_PER_IP` already.
    TooManyFromAddress,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::TooManyFromAddress => "per_ip_limit",
        }
    }
}

#[derive(Debug)]
pub struct ConnectionLimiter {
    global: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

/// Held for the life of a connection; releases both slots on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    _global: OwnedSemaphorePermit,
    ip: IpAddr,
    limiter: Arc<ConnectionLimiter>,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            global: Arc::new(Semaphore::new(max_total)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    /// Take a slot for a connection from `ip`, or say why not. Never waits: a
    /// client is better served by a quick 421 than by a hung connect.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let global = self.global.clone().try_acquire_owned().map_err(|_| Refusal::ServerFull)?;
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *count += 1;
        Ok(ConnectionPermit { _global: global, ip, limiter: self.clone() })
    }

    /// Open connections from `ip` now.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner()).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_ip = self.limiter.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_global_caps() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = limiter.try_acquire(a).unwrap();
        let _p2 = limiter.try_acquire(a).unwrap();
        assert_eq!(limiter.try_acquire(a).unwrap_err(), Refusal::TooManyFromAddress);
        let _p3 = limiter.try_acquire(b).unwrap();
        assert_eq!(limiter.try_acquire(b).unwrap_err(), Refusal::ServerFull);
        drop(p1);
        assert_eq!(limiter.count(a), 1);
        limiter.try_acquire(a).unwrap();
    }
}
