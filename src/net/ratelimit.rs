//! The one abuse limiter shared by SMTP AUTH, IMAP and POP3 (the fail2ban / Dovecot
//! anvil equivalent): failed logins per client address and per account slow down
//! exponentially and then block for a while; new connections per address and
//! messages per authenticated sender are rate-limited.
//!
//! It lives in `net/` beside the connection limits because it keys on the client
//! address and answers "may this peer go on?" for every protocol alike; `accounts/`
//! only decides whether a password is right and stays free of timing policy.
//!
//! Rules that matter:
//! - Trusted networks (`MAILROOM_TRUSTED_NETWORKS`) are never delayed or blocked.
//! - IPv6 clients are keyed by their /64: one host usually owns a whole /64, so
//!   per-address counting would let it rotate addresses for free.
//! - An account block does not apply from an address where that account logged in
//!   successfully before, so an attacker cannot lock the owner out (a known-good
//!   pair list, as Dovecot's auth-penalty does for its exemptions).
//! - Memory is bounded: every table holds at most `max_entries`; when full, expired
//!   entries go first, then the oldest unblocked ones.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::metrics::metrics;

/// Thresholds; [`LimiterConfig::default`] holds the production values.
#[derive(Clone, Debug)]
pub struct LimiterConfig {
    /// Delay before the next attempt after the first failure; doubles per failure.
    pub failure_delay: Duration,
    /// Cap on that delay.
    pub max_failure_delay: Duration,
    /// Failures from one address (IPv6: one /64) that start a block.
    pub block_after_ip_failures: u32,
    /// Failures for one account (from anywhere) that start a block.
    pub block_after_account_failures: u32,
    /// How long a block lasts; also how long failures are remembered.
    pub block_for: Duration,
    /// New connections per address per minute.
    pub connections_per_minute: u32,
    /// Messages per authenticated sender per hour.
    pub messages_per_hour: u32,
    /// Entries per table (addresses, accounts, senders) before eviction.
    pub max_entries: usize,
}

impl LimiterConfig {
    /// Defaults, with the rates operators set (`MAILROOM_CONNECTIONS_PER_MINUTE`,
    /// `MAILROOM_MESSAGES_PER_HOUR`).
    pub fn from_config(config: &crate::config::Config) -> LimiterConfig {
        LimiterConfig {
            connections_per_minute: config.connections_per_minute,
            messages_per_hour: config.messages_per_hour,
            ..LimiterConfig::default()
        }
    }
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            failure_delay: Duration::from_millis(500),
            max_failure_delay: Duration::from_secs(10),
            block_after_ip_failures: 10,
            block_after_account_failures: 20,
            block_for: Duration::from_secs(15 * 60),
            connections_per_minute: 60,
            messages_per_hour: 500,
            max_entries: 100_000,
        }
    }
}

/// What is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockScope {
    Address,
    Account,
}

impl BlockScope {
    fn label(self) -> &'static str {
        match self {
            BlockScope::Address => "ip",
            BlockScope::Account => "account",
        }
    }
}

/// A login refused without checking the password. The session answers with its
/// protocol's temporary failure (SMTP `454 4.7.0`, IMAP `NO [UNAVAILABLE]`, POP3
/// `-ERR [IN-USE]`-style) and may close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins ({}); try again in {} s", scope_text(.scope), .retry_after.as_secs().max(1))]
pub struct Blocked {
    pub scope: BlockScope,
    pub retry_after: Duration,
}

fn scope_text(scope: &BlockScope) -> &'static str {
    match scope {
        BlockScope::Address => "from this address",
        BlockScope::Account => "for this account",
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    count: u32,
}

#[derive(Default)]
struct Tables {
    ip_failures: HashMap<IpAddr, Failures>,
    account_failures: HashMap<String, Failures>,
    known_good: HashMap<(IpAddr, String), Instant>,
    connections: HashMap<IpAddr, Window>,
    messages: HashMap<String, Window>,
}

/// The shared limiter. Cheap to call from every session; one short mutex hold per call.
pub struct Limiter {
    config: LimiterConfig,
    trusted: Vec<IpNet>,
    tables: Mutex<Tables>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("config", &self.config).finish()
    }
}

/// How long the known-good (address, account) pairs are remembered.
const KNOWN_GOOD_FOR: Duration = Duration::from_secs(30 * 86400);

impl Limiter {
    pub fn new(config: LimiterConfig, trusted: Vec<IpNet>) -> Limiter {
        Limiter { config, trusted, tables: Mutex::new(Tables::default()) }
    }

    /// The server's limiter: configured rates, `MAILROOM_TRUSTED_NETWORKS` exempt.
    pub fn from_config(config: &crate::config::Config) -> Limiter {
        Limiter::new(LimiterConfig::from_config(config), config.trusted_networks.clone())
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call before checking a password. Waits out the penalty delay earned by
    /// earlier failures, or refuses at once while the address or account is blocked.
    pub async fn before_login(&self, ip: IpAddr, account: &str) -> Result<(), Blocked> {
        let delay = self.check_login_at(ip, account, Instant::now())?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// The decision of [`Limiter::before_login`] at `now`: the delay to wait, or the block.
    pub fn check_login_at(&self, ip: IpAddr, account: &str, now: Instant) -> Result<Duration, Blocked> {
        if self.is_trusted(ip) {
            return Ok(Duration::ZERO);
        }
        let key = ip_key(ip);
        let account = account_key(account);
        let t = self.tables();
        let live = |f: &Failures| now.saturating_duration_since(f.last) < self.config.block_for;
        let ip_f = t.ip_failures.get(&key).filter(|f| live(f)).copied();
        let exempt = t.known_good.contains_key(&(key, account.clone()));
        let acct_f = t.account_failures.get(&account).filter(|f| live(f) && !exempt).copied();
        for (f, scope) in [(ip_f, BlockScope::Address), (acct_f, BlockScope::Account)] {
            if let Some(until) = f.and_then(|f| f.blocked_until).filter(|u| *u > now) {
                metrics().auth_blocked_total.with_label_values(&[scope.label()]).inc();
                return Err(Blocked { scope, retry_after: until - now });
            }
        }
        let failures = ip_f.map_or(0, |f| f.count).max(acct_f.map_or(0, |f| f.count));
        Ok(self.delay_for(failures))
    }

    fn delay_for(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(16);
        self.config.failure_delay.saturating_mul(factor).min(self.config.max_failure_delay)
    }

    /// Record a wrong password (or unknown user) from `ip` for `account`.
    pub fn login_failed(&self, ip: IpAddr, account: &str) {
        self.login_failed_at(ip, account, Instant::now());
    }

    pub fn login_failed_at(&self, ip: IpAddr, account: &str, now: Instant) {
        metrics().auth_failures_total.inc();
        if self.is_trusted(ip) {
            return;
        }
        let cfg = &self.config;
        let key = ip_key(ip);
        let account = account_key(account);
        let mut t = self.tables();
        let max = cfg.max_entries;
        bump(&mut t.ip_failures, key, now, cfg.block_for, cfg.block_after_ip_failures, max, BlockScope::Address);
        bump(
            &mut t.account_failures,
            account,
            now,
            cfg.block_for,
            cfg.block_after_account_failures,
            max,
            BlockScope::Account,
        );
    }

    /// Record a good login: the account's failure count is cleared and the pair is
    /// remembered as known-good. The address's count is NOT cleared, or an attacker
    /// holding one valid account could reset it between guesses at others.
    pub fn login_succeeded(&self, ip: IpAddr, account: &str) {
        self.login_succeeded_at(ip, account, Instant::now());
    }

    pub fn login_succeeded_at(&self, ip: IpAddr, account: &str, now: Instant) {
        let account = account_key(account);
        let mut t = self.tables();
        if let Some(f) = t.account_failures.get_mut(&account)
            && f.blocked_until.is_none()
        {
            f.count = 0;
        }
        let max = self.config.max_entries;
        if t.known_good.len() >= max {
            t.known_good.retain(|_, seen| now.saturating_duration_since(*seen) < KNOWN_GOOD_FOR);
            if t.known_good.len() >= max {
                evict_oldest(&mut t.known_good, |seen| (false, *seen));
            }
        }
        t.known_good.insert((ip_key(ip), account), now);
    }

    /// May `ip` open another connection now? (At most `connections_per_minute`.)
    pub fn allow_connection(&self, ip: IpAddr) -> bool {
        self.allow_connection_at(ip, Instant::now())
    }

    pub fn allow_connection_at(&self, ip: IpAddr, now: Instant) -> bool {
        if self.is_trusted(ip) {
            return true;
        }
        let limit = self.config.connections_per_minute;
        let max = self.config.max_entries;
        let ok = count_in_window(&mut self.tables().connections, ip_key(ip), now, Duration::from_secs(60), limit, max);
        if !ok {
            metrics().ratelimit_rejections_total.with_label_values(&["connection"]).inc();
        }
        ok
    }

    /// May authenticated `sender` submit another message? (At most
    /// `messages_per_hour`: a stolen password must not become a spam cannon.)
    pub fn allow_message(&self, sender: &str) -> bool {
        self.allow_message_at(sender, Instant::now())
    }

    pub fn allow_message_at(&self, sender: &str, now: Instant) -> bool {
        let limit = self.config.messages_per_hour;
        let max = self.config.max_entries;
        let key = account_key(sender);
        let ok = count_in_window(&mut self.tables().messages, key, now, Duration::from_secs(3600), limit, max);
        if !ok {
            metrics().ratelimit_rejections_total.with_label_values(&["message"]).inc();
        }
        ok
    }

    /// Entries held, for tests and debugging: (addresses, accounts, connections, senders).
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        let t = self.tables();
        (t.ip_failures.len(), t.account_failures.len(), t.connections.len(), t.messages.len())
    }
}

/// The counting key of an account or sender: lower-cased and cut to 320 bytes (the
/// longest valid address), so a client sending megabyte "user names" cannot make
/// the bounded tables large in bytes.
fn account_key(account: &str) -> String {
    let mut end = account.len().min(320);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    account[..end].to_ascii_lowercase()
}

/// The counting key of an address: IPv4 as is, IPv6 by its /64. Addresses arrive
/// canonical ([`crate::net::canonical_peer`]): IPv4 clients of a dual-stack listener
/// are plain IPv4 here, not one shared `::ffff:0:0/64`.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

fn bump<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, Failures>,
    key: K,
    now: Instant,
    memory: Duration,
    block_after: u32,
    max: usize,
    scope: BlockScope,
) {
    if !map.contains_key(&key) && map.len() >= max {
        map.retain(|_, f| now.saturating_duration_since(f.last) < memory || f.blocked_until.is_some_and(|u| u > now));
        if map.len() >= max {
            evict_oldest(map, |f| (f.blocked_until.is_some_and(|u| u > now), f.last));
        }
    }
    let f = map.entry(key).or_insert(Failures { count: 0, last: now, blocked_until: None });
    if now.saturating_duration_since(f.last) >= memory || f.blocked_until.is_some_and(|u| u <= now) {
        // Forgotten, or a block that has run out: start over.
        *f = Failures { count: 0, last: now, blocked_until: None };
    }
    f.count = f.count.saturating_add(1);
    f.last = now;
    if f.count >= block_after && f.blocked_until.is_none() {
        f.blocked_until = Some(now + memory);
        metrics().auth_blocks_started_total.with_label_values(&[scope.label()]).inc();
        tracing::warn!(scope = scope.label(), failures = f.count, "login block started");
    }
}

/// Fixed-window counter: true (and counted) while under `limit` in this window.
fn count_in_window<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, Window>,
    key: K,
    now: Instant,
    window: Duration,
    limit: u32,
    max: usize,
) -> bool {
    if !map.contains_key(&key) && map.len() >= max {
        map.retain(|_, w| now.saturating_duration_since(w.start) < window);
        if map.len() >= max {
            evict_oldest(map, |w| (false, w.start));
        }
    }
    let w = map.entry(key).or_insert(Window { start: now, count: 0 });
    if now.saturating_duration_since(w.start) >= window {
        *w = Window { start: now, count: 0 };
    }
    if w.count >= limit {
        return false;
    }
    w.count += 1;
    true
}

/// Drop the oldest tenth of `map` (at least one entry), keeping entries whose rank
/// says "protected" (active blocks) for last. Amortised O(1) per insert.
fn evict_oldest<K: Hash + Eq + Clone, V>(map: &mut HashMap<K, V>, rank: impl Fn(&V) -> (bool, Instant)) {
    let mut ranked: Vec<((bool, Instant), K)> = map.iter().map(|(k, v)| (rank(v), k.clone())).collect();
    let n = (ranked.len() / 10).max(1).min(ranked.len());
    if n == 0 {
        return;
    }
    ranked.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
    for (_, k) in ranked.into_iter().take(n) {
        map.remove(&k);
    }
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
