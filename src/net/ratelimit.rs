//! The one abuse limiter shared by SMTP AUTH, IMAP and POP3 (the fail2ban / Dovecot
//! anvil equivalent): password guessing is throttled per client address and per
//! account, new connections per address and messages and recipients per authenticated
//! sender are rate-limited.
//!
//! The login model, in short (README "Sending mail" says the same):
//! - **Reserve, then verify.** [`Limiter::attempt`] counts a login as a failure-in-flight
//!   under the same mutex hold that checks the limits, before the password is verified,
//!   so parallel attempts cannot all pass the check and then all fail (a race that let 60
//!   parallel guesses from one address through a limit of 10). At most
//!   `max_in_flight_per_address` verifications run per address at once; further attempts
//!   wait for a slot (up to `slot_wait`, then a temporary refusal).
//! - **Per address:** each failure delays the failure's answer and the address's next
//!   attempt (0.5 s doubling to 10 s); after 10 failures in 15 minutes the address is
//!   refused for 15 minutes.
//! - **Per account: throttle, never lock out.** An account has a budget of 20 failed
//!   verifications per 15 minutes. Over budget, a password is verified only from an
//!   address where the account logged in before (known-good: always) or from a clean
//!   address (no failure in 15 minutes: one try, since a failure makes it unclean), and
//!   those clean-address tries take turns, one per `over_budget_interval` per account.
//!   Everything else is refused without verification. So a distributed guesser gets 20
//!   guesses per 15 minutes, then one per turn (2 s) and one per address it owns, while
//!   the owner still gets in from a known-good address at once and from a clean one
//!   after the queue; a client that gives up while queued taints nothing.
//! - Password checks server-wide run at most two per core at once; more queue in order.
//!   There is no separate in-flight cap per account: reservations count against its
//!   budget, over budget the turns serialize it, and this cap bounds the CPU.
//! - Trusted networks (`MAILROOM_TRUSTED_NETWORKS`) are never delayed or refused.
//! - IPv6 clients are keyed by their /64: one host usually owns a whole /64, so
//!   per-address counting would let it rotate addresses for free.
//! - Memory is bounded: every table holds at most `max_entries`; when full, expired
//!   entries go first, then the oldest unblocked ones. In-flight counts are bounded by
//!   the connection limits and removed when they reach zero.
//!
//! It lives in `net/` beside the connection limits because it keys on the client
//! address and answers "may this peer go on?" for every protocol alike; `accounts/`
//! only decides whether a password is right and stays free of timing policy.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use crate::config::Limits;
use crate::metrics::metrics;

/// Thresholds; [`LimiterConfig::default`] holds the production values.
#[derive(Clone, Debug)]
pub struct LimiterConfig {
    /// Delay before the next attempt after the first failure; doubles per failure.
    pub failure_delay: Duration,
    /// Cap on that delay.
    pub max_failure_delay: Duration,
    /// Failures from one address (IPv6: one /64) that start a block of that address.
    pub block_after_ip_failures: u32,
    /// Failed verifications per account per window before the account is throttled.
    pub account_budget: u32,
    /// How long a block lasts; also how long failures are remembered (the window).
    pub block_for: Duration,
    /// Over budget, one verification from a clean address per this interval per account.
    pub over_budget_interval: Duration,
    /// Verifications (including their penalty wait) running at once from one address.
    pub max_in_flight_per_address: u32,
    /// How long an attempt waits for a free slot before a temporary refusal.
    pub slot_wait: Duration,
    /// New connections per address per minute.
    pub connections_per_minute: u32,
    /// Messages per authenticated sender per hour.
    pub messages_per_hour: u32,
    /// Accepted recipients per authenticated sender per hour.
    pub recipients_per_hour: u32,
    /// Entries per table (addresses, accounts, senders) before eviction.
    pub max_entries: usize,
}

impl LimiterConfig {
    /// Defaults, with the rates operators set (`MAILROOM_CONNECTIONS_PER_MINUTE`,
    /// `MAILROOM_MESSAGES_PER_HOUR`, `MAILROOM_RECIPIENTS_PER_HOUR`).
    pub fn with_rates(limits: &Limits) -> LimiterConfig {
        LimiterConfig {
            connections_per_minute: limits.connections_per_minute,
            messages_per_hour: limits.messages_per_hour,
            recipients_per_hour: limits.recipients_per_hour,
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
            account_budget: 20,
            block_for: Duration::from_secs(15 * 60),
            over_budget_interval: Duration::from_secs(2),
            max_in_flight_per_address: 2,
            slot_wait: Duration::from_secs(60),
            connections_per_minute: 60,
            messages_per_hour: 500,
            recipients_per_hour: 300,
            max_entries: 100_000,
        }
    }
}

/// Why a login was refused without checking the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockScope {
    /// Too many failures from this address.
    Address,
    /// The account is over its guess budget and this address is neither known-good nor clean.
    Account,
    /// No verification slot for this address became free within `slot_wait`.
    Busy,
}

impl BlockScope {
    fn label(self) -> &'static str {
        match self {
            BlockScope::Address => "ip",
            BlockScope::Account => "account",
            BlockScope::Busy => "busy",
        }
    }
}

/// A login refused without checking the password. The session answers with its
/// protocol's temporary failure (SMTP `454 4.7.0`, IMAP `NO [UNAVAILABLE]`, POP3
/// `-ERR [SYS/TEMP]`) and may close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}; try again in {} s", scope_text(.scope), .retry_after.as_secs().max(1))]
pub struct Blocked {
    pub scope: BlockScope,
    pub retry_after: Duration,
}

fn scope_text(scope: &BlockScope) -> &'static str {
    match scope {
        BlockScope::Address => "too many failed logins from this address",
        BlockScope::Account => "too many failed logins for this account",
        BlockScope::Busy => "too many logins in progress from this address",
    }
}

/// Failures from one address (IPv6: one /64).
#[derive(Clone, Copy, Debug)]
struct AddressRecord {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Failures for one account, and the next over-budget turn.
#[derive(Clone, Copy, Debug)]
struct AccountRecord {
    failures: u32,
    last: Instant,
    next_turn: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    count: u32,
}

#[derive(Default)]
struct Tables {
    addresses: HashMap<IpAddr, AddressRecord>,
    accounts: HashMap<String, AccountRecord>,
    /// Reserved, not yet finished verifications per address key and per account (only
    /// those not from a known-good address count against the account).
    address_in_flight: HashMap<IpAddr, u32>,
    account_in_flight: HashMap<String, u32>,
    known_good: HashMap<(IpAddr, String), Instant>,
    connections: HashMap<IpAddr, Window>,
    messages: HashMap<String, Window>,
    recipients: HashMap<String, Window>,
}

/// The shared limiter. Cheap to call from every session; one short mutex hold per call.
pub struct Limiter {
    config: LimiterConfig,
    trusted: Vec<IpNet>,
    tables: Mutex<Tables>,
    /// Woken whenever a reservation ends, for attempts waiting for a slot.
    released: Notify,
    /// Password checks running at once over the whole server: argon2 takes 19 MiB and a
    /// core each, so a thousand guessing connections must queue, not run together.
    verifying: Semaphore,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("config", &self.config).finish()
    }
}

/// How long the known-good (address, account) pairs are remembered.
const KNOWN_GOOD_FOR: Duration = Duration::from_secs(30 * 86400);

/// The decision of [`Limiter::try_attempt_at`].
#[derive(Debug)]
pub enum Admission<'a> {
    /// Reserved: wait `delay` (the penalty, or the over-budget turn), then verify and
    /// report the result on the reservation.
    Go(LoginAttempt<'a>, Duration),
    /// No slot free now; try again when another attempt finishes.
    Wait,
    Refused(Blocked),
}

/// A reserved login attempt: counted as a failure until [`LoginAttempt::succeeded`] says
/// otherwise. Dropped unfinished once its check has started (the session vanished
/// mid-check), it counts as failed; dropped before (the client gave up while waiting its
/// penalty or turn), it only frees its slot, so a queue an attacker makes long cannot
/// taint the owner's clean address.
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    limiter: &'a Limiter,
    /// `None` for trusted networks: nothing is counted.
    key: Option<(IpAddr, String)>,
    /// Counted against the account's in-flight number (not from a known-good address).
    against_account: bool,
    checking: bool,
    finished: bool,
}

/// How a reservation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Right,
    Wrong,
    /// Dropped before its password check started.
    Abandoned,
}

impl LoginAttempt<'_> {
    /// The password check starts now: from here on the attempt is a guess.
    pub fn checking(&mut self) {
        self.checking = true;
    }

    /// The password was right.
    pub fn succeeded(mut self) {
        self.finish(Ending::Right, Instant::now());
    }

    /// The password was wrong (or the user unknown).
    pub fn failed(mut self) {
        self.finish(Ending::Wrong, Instant::now());
    }

    /// [`LoginAttempt::succeeded`] / [`LoginAttempt::failed`] at a test clock's `now`.
    pub fn finish_at(mut self, ok: bool, now: Instant) {
        self.finish(if ok { Ending::Right } else { Ending::Wrong }, now);
    }

    fn finish(&mut self, ending: Ending, now: Instant) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if ending == Ending::Wrong {
            metrics().auth_failures_total.inc();
        }
        let Some((ip, account)) = self.key.take() else {
            return;
        };
        self.limiter.record(ip, account, self.against_account, ending, now);
        self.limiter.released.notify_waiters();
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        let ending = if self.checking { Ending::Wrong } else { Ending::Abandoned };
        self.finish(ending, Instant::now());
    }
}

impl Limiter {
    pub fn new(config: LimiterConfig, trusted: Vec<IpNet>) -> Limiter {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Limiter {
            config,
            trusted,
            tables: Mutex::new(Tables::default()),
            released: Notify::new(),
            verifying: Semaphore::new(cores * 2),
        }
    }

    /// A turn to run one password check (first come, first served).
    pub async fn verification_permit(&self) -> Option<SemaphorePermit<'_>> {
        self.verifying.acquire().await.ok()
    }

    /// The server's limiter: configured rates, `MAILROOM_TRUSTED_NETWORKS` exempt.
    pub fn configured(limits: &Limits, trusted_networks: &[IpNet]) -> Limiter {
        Limiter::new(LimiterConfig::with_rates(limits), trusted_networks.to_vec())
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserve a login attempt before checking a password: waits for a free slot and
    /// then out the penalty delay, or refuses. Report the result on the reservation.
    pub async fn attempt(&self, ip: IpAddr, account: &str) -> Result<LoginAttempt<'_>, Blocked> {
        let deadline = Instant::now() + self.config.slot_wait;
        loop {
            // Registered before the check, so a release between check and wait is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.try_attempt_at(ip, account, Instant::now()) {
                Admission::Go(attempt, delay) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    return Ok(attempt);
                }
                Admission::Refused(blocked) => return Err(blocked),
                Admission::Wait => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        metrics().auth_blocked_total.with_label_values(&[BlockScope::Busy.label()]).inc();
                        return Err(Blocked { scope: BlockScope::Busy, retry_after: Duration::from_secs(1) });
                    }
                    let _ = tokio::time::timeout(left, released).await;
                }
            }
        }
    }

    /// The decision of [`Limiter::attempt`] at `now`, made and recorded under one lock hold.
    pub fn try_attempt_at(&self, ip: IpAddr, account: &str, now: Instant) -> Admission<'_> {
        if self.is_trusted(ip) {
            return Admission::Go(
                LoginAttempt { limiter: self, key: None, against_account: false, checking: false, finished: false },
                Duration::ZERO,
            );
        }
        let cfg = &self.config;
        let key = ip_key(ip);
        let account = account_key(account);
        let mut t = self.tables();
        let window = cfg.block_for;
        let addr = t.addresses.get(&key).filter(|r| now.saturating_duration_since(r.last) < window).copied();
        if let Some(until) = addr.and_then(|r| r.blocked_until).filter(|u| *u > now) {
            return refuse(BlockScope::Address, until - now);
        }
        let addr_failures = addr.map_or(0, |r| r.failures);
        let addr_busy = t.address_in_flight.get(&key).copied().unwrap_or(0);
        // Every reservation may turn out a failure: never more in flight than the
        // address has failures left before its block.
        if addr_busy >= cfg.max_in_flight_per_address || addr_failures + addr_busy >= cfg.block_after_ip_failures {
            return Admission::Wait;
        }
        let mut delay = self.delay_for(addr_failures);
        let known_good = t.known_good.contains_key(&(key, account.clone()));
        if !known_good {
            let acct = t.accounts.get(&account).filter(|r| now.saturating_duration_since(r.last) < window).copied();
            let acct_busy = t.account_in_flight.get(&account).copied().unwrap_or(0);
            if acct.map_or(0, |r| r.failures) + acct_busy >= cfg.account_budget {
                // Over budget: only a clean address, one at a time per address, in turn.
                if addr_failures > 0 {
                    let last = acct.map_or(now, |r| r.last);
                    return refuse(BlockScope::Account, (last + window).saturating_duration_since(now));
                }
                if addr_busy > 0 {
                    return Admission::Wait;
                }
                let next = acct.map_or(now, |r| r.next_turn);
                let turn = next.max(now);
                let record = t.accounts.entry(account.clone()).or_insert(AccountRecord {
                    failures: 0,
                    last: now,
                    next_turn: now,
                });
                record.next_turn = turn + cfg.over_budget_interval;
                delay = delay.max(turn - now);
            }
            *t.account_in_flight.entry(account.clone()).or_insert(0) += 1;
        }
        *t.address_in_flight.entry(key).or_insert(0) += 1;
        Admission::Go(
            LoginAttempt {
                limiter: self,
                key: Some((key, account)),
                against_account: !known_good,
                checking: false,
                finished: false,
            },
            delay,
        )
    }

    /// The penalty `ip` has earned now: what the answer to a failed login waits (Postfix
    /// `smtpd_error_sleep_time`), so a guesser on one connection learns nothing faster
    /// than one opening a new connection per try.
    pub fn penalty(&self, ip: IpAddr) -> Duration {
        self.penalty_at(ip, Instant::now())
    }

    pub fn penalty_at(&self, ip: IpAddr, now: Instant) -> Duration {
        if self.is_trusted(ip) {
            return Duration::ZERO;
        }
        let t = self.tables();
        let failures = t
            .addresses
            .get(&ip_key(ip))
            .filter(|r| now.saturating_duration_since(r.last) < self.config.block_for)
            .map_or(0, |r| r.failures);
        self.delay_for(failures)
    }

    fn delay_for(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(16);
        self.config.failure_delay.saturating_mul(factor).min(self.config.max_failure_delay)
    }

    /// End a reservation: release its slots, then remember the pair as known-good or
    /// count the failure. A success clears nothing: the address's count stays, or an
    /// attacker holding one valid account could reset it between guesses at others, and
    /// the account's budget stays spent, or each of the owner's logins would buy a
    /// guesser a fresh budget.
    fn record(&self, key: IpAddr, account: String, against_account: bool, ending: Ending, now: Instant) {
        let cfg = &self.config;
        let mut t = self.tables();
        release(&mut t.address_in_flight, &key);
        if against_account {
            release(&mut t.account_in_flight, &account);
        }
        let max = cfg.max_entries;
        if ending == Ending::Abandoned {
            return;
        }
        if ending == Ending::Right {
            if t.known_good.len() >= max {
                t.known_good.retain(|_, seen| now.saturating_duration_since(*seen) < KNOWN_GOOD_FOR);
                if t.known_good.len() >= max {
                    evict_oldest(&mut t.known_good, |seen| (false, *seen));
                }
            }
            t.known_good.insert((key, account), now);
            return;
        }
        let window = cfg.block_for;
        make_room(&mut t.addresses, &key, max, |r| {
            (r.blocked_until.is_some_and(|u| u > now), r.last, now.saturating_duration_since(r.last) >= window)
        });
        let fresh = AddressRecord { failures: 0, last: now, blocked_until: None };
        let r = t.addresses.entry(key).or_insert(fresh);
        if now.saturating_duration_since(r.last) >= window || r.blocked_until.is_some_and(|u| u <= now) {
            // Forgotten, or a block that has run out: start over.
            *r = fresh;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        if r.failures >= cfg.block_after_ip_failures && r.blocked_until.is_none() {
            r.blocked_until = Some(now + window);
            metrics().auth_blocks_started_total.with_label_values(&["ip"]).inc();
            tracing::warn!(failures = r.failures, "login block started for an address");
        }
        make_room(&mut t.accounts, &account, max, |r| (false, r.last, now.saturating_duration_since(r.last) >= window));
        let r = t.accounts.entry(account).or_insert(AccountRecord { failures: 0, last: now, next_turn: now });
        if now.saturating_duration_since(r.last) >= window {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        if r.failures == cfg.account_budget {
            metrics().auth_blocks_started_total.with_label_values(&["account"]).inc();
            tracing::warn!(failures = r.failures, "account over its login budget: throttled");
        }
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
        self.count_per_sender_hour(|t| &mut t.messages, "message", limit, sender, now)
    }

    /// May authenticated `sender` add one more recipient? (At most `recipients_per_hour`:
    /// the message limit alone still allows messages × 100 recipients.) Counted when the
    /// recipient is accepted, whether or not the message is then sent.
    pub fn allow_recipient(&self, sender: &str) -> bool {
        self.allow_recipient_at(sender, Instant::now())
    }

    pub fn allow_recipient_at(&self, sender: &str, now: Instant) -> bool {
        let limit = self.config.recipients_per_hour;
        self.count_per_sender_hour(|t| &mut t.recipients, "recipient", limit, sender, now)
    }

    /// One more for `sender` in an hourly window of `table`, if under `limit`; a refusal
    /// is counted as `mailroom_ratelimit_rejections_total{kind}`.
    fn count_per_sender_hour(
        &self,
        table: impl FnOnce(&mut Tables) -> &mut HashMap<String, Window>,
        kind: &str,
        limit: u32,
        sender: &str,
        now: Instant,
    ) -> bool {
        let max = self.config.max_entries;
        let mut tables = self.tables();
        let ok = count_in_window(table(&mut tables), account_key(sender), now, Duration::from_secs(3600), limit, max);
        if !ok {
            metrics().ratelimit_rejections_total.with_label_values(&[kind]).inc();
        }
        ok
    }

    /// Entries held, for tests and debugging: (addresses, accounts, connections, message
    /// senders, recipient senders).
    pub fn sizes(&self) -> (usize, usize, usize, usize, usize) {
        let t = self.tables();
        (t.addresses.len(), t.accounts.len(), t.connections.len(), t.messages.len(), t.recipients.len())
    }

    /// Reservations not yet finished, for tests: (addresses, accounts) with any.
    pub fn in_flight(&self) -> (usize, usize) {
        let t = self.tables();
        (t.address_in_flight.len(), t.account_in_flight.len())
    }
}

fn refuse<'a>(scope: BlockScope, retry_after: Duration) -> Admission<'a> {
    metrics().auth_blocked_total.with_label_values(&[scope.label()]).inc();
    Admission::Refused(Blocked { scope, retry_after })
}

fn release<K: Hash + Eq>(map: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Before inserting `key` into a full table: drop expired entries, then the oldest
/// unprotected tenth. `rank` gives (protected, last seen, expired).
fn make_room<K: Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    key: &K,
    max: usize,
    rank: impl Fn(&V) -> (bool, Instant, bool),
) {
    if map.contains_key(key) || map.len() < max {
        return;
    }
    map.retain(|_, v| {
        let (protected, _, expired) = rank(v);
        protected || !expired
    });
    if map.len() >= max {
        evict_oldest(map, |v| {
            let (protected, last, _) = rank(v);
            (protected, last)
        });
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
