//! The directory: who exists, who receives mail for an address, who may send as whom,
//! and login verification.
//!
//! Each configuration is an immutable snapshot; [`Directory`] holds the current one and
//! can swap in another ([`Directory::replace_with`]) when the accounts or aliases files
//! change, without a restart: a lookup works on one snapshot from start to end, and a
//! new snapshot starts with an empty auth cache. All validation happens in
//! [`Directory::new`] so that a broken alias graph stops the server at start (or is
//! refused by a reload, keeping the old set) with every problem listed, instead of
//! bouncing mail later.
//!
//! Resolution order (one place, so SMTP RCPT, LMTP and delivery agree): alias-domain
//! rewrite, then exact account > exact alias > subaddress (`user+tag@` -> `user@`, then
//! account/alias again) > catch-all.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::address::{Address, normalise_domain};
use super::auth_cache::{AUTH_CACHE_TTL, AuthCache};
use super::parse::{AccountEntry, AliasRule};
use super::password::PasswordHash;

/// Longest alias chain followed (hops). Deeper chains are configuration mistakes;
/// [`Directory::new`] refuses them and `resolve` cuts them.
pub const MAX_ALIAS_DEPTH: usize = 10;

/// Local parts that must exist in every domain (RFC 5321 §4.5.1 postmaster, RFC 2142 abuse).
const REQUIRED_LOCALS: [&str; 2] = ["postmaster", "abuse"];

/// A mailbox owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub address: Address,
    /// Bytes; `None` = unlimited.
    pub quota: Option<u64>,
    pub hash: PasswordHash,
}

/// Who receives mail for an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// Deliver into this account's Maildir (the canonical account address).
    Mailbox(Address),
    /// Relay to this remote address (queue + DKIM signing).
    Forward(Address),
}

/// What one lookup step finds for a local address.
enum Hit<'a> {
    Account(&'a Account),
    Alias(&'a [Address]),
    CatchAll(&'a [Address]),
    Nobody,
}

/// One validated configuration of domains, accounts and aliases.
struct Snapshot {
    domains: Vec<String>,
    /// alias domain -> real domain
    alias_domains: HashMap<String, String>,
    accounts: Vec<Account>,
    by_address: HashMap<Address, usize>,
    aliases: HashMap<Address, Vec<Address>>,
    catch_alls: HashMap<String, Vec<Address>>,
    cache: AuthCache,
    /// Verified against when the user does not exist, so that "no such user" takes as long
    /// as "wrong password" and login timing does not enumerate accounts.
    dummy_hash: PasswordHash,
}

/// The directory every protocol shares: the current [`Snapshot`], swappable.
pub struct Directory {
    current: RwLock<Arc<Snapshot>>,
    /// Real password-hash verifications, across snapshots (metrics and tests).
    verifications: AtomicU64,
}

impl Directory {
    /// `domains`: our mail domains (first = primary). Adds `postmaster@` and `abuse@` of
    /// every domain pointing at the domain's first account unless an account or alias
    /// already has that address. Every problem found is returned, each a full sentence.
    pub fn new(
        domains: Vec<String>,
        accounts: Vec<AccountEntry>,
        aliases: Vec<AliasRule>,
    ) -> Result<Directory, Vec<String>> {
        let snapshot = Snapshot::build(domains, accounts, aliases)?;
        Ok(Directory { current: RwLock::new(Arc::new(snapshot)), verifications: AtomicU64::new(0) })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        // A panic while holding the lock left a whole snapshot behind: still usable.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Make `next`'s accounts and aliases (validated by [`Directory::new`]) the current
    /// ones. Sessions already logged in keep their address; lookups from now on, logins
    /// included, see the new set.
    pub fn replace_with(&self, next: Directory) {
        let snapshot = next.snapshot();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// Is `domain` one of ours (a mail domain or an alias domain)?
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.snapshot().is_local_domain(domain)
    }

    /// Our mail domains, normalised, primary first (alias domains not included; see
    /// [`Directory::alias_domains`]).
    pub fn domains(&self) -> Vec<String> {
        self.snapshot().domains.clone()
    }

    /// `(alias domain, real domain)` pairs, sorted. DNS records (MX, SPF, DKIM) are needed
    /// for these too.
    pub fn alias_domains(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            self.snapshot().alias_domains.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
        v.sort();
        v
    }

    /// Who receives mail for this address. Empty = nobody (reply 550 5.1.1 for our
    /// domains). An address outside our domains resolves to itself as a `Forward`; SMTP
    /// decides separately (`is_local_domain`, authentication) whether relaying is allowed.
    /// Alias chains are followed, deduplicated and cut at loops and at depth
    /// [`MAX_ALIAS_DEPTH`].
    pub fn resolve(&self, address: &Address) -> Vec<Recipient> {
        self.snapshot().resolve(address)
    }

    /// May the authenticated `account` use `sender` as envelope/header sender? Yes for its
    /// own address (also `account+tag@`, and in alias domains), and for every alias (not
    /// catch-all) whose resolution includes the account. Everything else is spoofing.
    pub fn may_send_as(&self, account: &Address, sender: &Address) -> bool {
        self.snapshot().may_send_as(account, sender)
    }

    /// The account with exactly this address (after alias-domain rewrite).
    pub fn account(&self, address: &Address) -> Option<Account> {
        self.snapshot().account(address).cloned()
    }

    /// All accounts, in configuration order.
    pub fn accounts(&self) -> Vec<Account> {
        self.snapshot().accounts.clone()
    }

    /// Verify a login; returns the canonical account address.
    ///
    /// The username is an address (normalised; alias domains rewritten); a bare local part
    /// means the primary domain, as many clients are set up with just "alice". Successful
    /// verifications are cached for 60 s (see `auth_cache.rs`); failures never are.
    /// CPU-heavy on a cache miss: call from `spawn_blocking`.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<Address> {
        self.snapshot().authenticate(username, password, 0, |a| Some(a.hash.clone()), &self.verifications)
    }

    /// The canonical address of the account `username` logs in as (the same rules as
    /// [`Directory::authenticate`]), without checking anything: what the caller reads
    /// the account's credentials record for.
    pub fn login_account(&self, username: &str) -> Option<Address> {
        let snapshot = self.snapshot();
        snapshot.login_address(username).and_then(|a| snapshot.account(&a)).map(|a| a.address.clone())
    }

    /// [`Directory::authenticate`] against the hash `pick` chooses for the account (a
    /// user's own password instead of the configured one), or against none when it
    /// answers `None` (the password is not accepted this way; the check still costs what
    /// a real one does, so timing tells nothing). `generation` names the state `pick`
    /// decided on (the credentials record's version): the auth cache only finds logins
    /// verified under the same generation, so a changed password never stays valid.
    pub fn authenticate_with(
        &self,
        username: &str,
        password: &str,
        generation: u64,
        pick: impl FnOnce(&Account) -> Option<PasswordHash>,
    ) -> Option<Address> {
        self.snapshot().authenticate(username, password, generation, pick, &self.verifications)
    }

    /// How many real password-hash verifications `authenticate` has run (cache misses):
    /// for metrics and for tests that check the cache works.
    pub fn password_verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Accounts configured with `{PLAIN}` passwords, for the start-up warning.
    pub fn plain_password_accounts(&self) -> Vec<Address> {
        self.snapshot().accounts.iter().filter(|a| a.hash.is_plain()).map(|a| a.address.clone()).collect()
    }
}

impl Snapshot {
    fn build(
        domains: Vec<String>,
        accounts: Vec<AccountEntry>,
        aliases: Vec<AliasRule>,
    ) -> Result<Snapshot, Vec<String>> {
        let mut errors = Vec::new();
        let mut dir = Snapshot {
            domains: Vec::new(),
            alias_domains: HashMap::new(),
            accounts: Vec::new(),
            by_address: HashMap::new(),
            aliases: HashMap::new(),
            catch_alls: HashMap::new(),
            cache: AuthCache::new(AUTH_CACHE_TTL),
            dummy_hash: dummy_hash(),
        };

        for d in domains {
            match normalise_domain(d.trim()) {
                Ok(n) if !dir.domains.contains(&n) => dir.domains.push(n),
                Ok(_) => {}
                Err(e) => errors.push(format!("mail domain {d:?}: {e}")),
            }
        }
        if dir.domains.is_empty() && errors.is_empty() {
            errors.push("no mail domains configured".to_string());
        }

        // Alias domains first: they decide which addresses accounts and aliases may use.
        for rule in &aliases {
            if let AliasRule::DomainAlias { from, to } = rule {
                if dir.domains.contains(from) {
                    errors.push(format!(
                        "{from} is both a mail domain and an alias domain (@{from}:@{to}); \
                         list it only as an alias domain"
                    ));
                } else if !dir.domains.contains(to) {
                    errors.push(format!("alias domain @{from} points at @{to}, which is not one of our mail domains"));
                } else {
                    dir.alias_domains.insert(from.clone(), to.clone());
                }
            }
        }

        for entry in accounts {
            let a = &entry.address;
            if let Some(real) = dir.alias_domains.get(&a.domain) {
                errors.push(format!(
                    "account {a} is in alias domain {} (mail there goes to @{real}); \
                     use {} instead",
                    a.domain,
                    a.with_domain(real)
                ));
            } else if !dir.domains.contains(&a.domain) {
                errors.push(format!("account {a} is not in our mail domains ({})", dir.domains.join(", ")));
            } else if a.local.contains(['/', '\\']) {
                errors.push(format!(
                    "account {a}: the local part is used as a Maildir folder name and may not contain / or \\"
                ));
            } else if dir.by_address.contains_key(a) {
                errors.push(format!("account {a} is listed twice"));
            } else {
                dir.by_address.insert(a.clone(), dir.accounts.len());
                dir.accounts.push(Account { address: entry.address, quota: entry.quota, hash: entry.hash });
            }
        }

        for rule in aliases {
            match rule {
                AliasRule::DomainAlias { .. } => {}
                AliasRule::Alias { from, to } => {
                    if let Some(problem) = dir.key_domain_problem(&from.domain) {
                        errors.push(format!("alias {from}: {problem}"));
                    } else if dir.by_address.contains_key(&from) {
                        errors.push(format!(
                            "alias {from} has the same address as an account; the account would always win"
                        ));
                    } else {
                        match dir.aliases.entry(from) {
                            Entry::Occupied(e) => {
                                errors.push(format!("alias {} is defined twice", e.key()));
                            }
                            Entry::Vacant(e) => {
                                e.insert(to);
                            }
                        }
                    }
                }
                AliasRule::CatchAll { domain, to } => {
                    if let Some(problem) = dir.key_domain_problem(&domain) {
                        errors.push(format!("catch-all @{domain}: {problem}"));
                    } else {
                        match dir.catch_alls.entry(domain) {
                            Entry::Occupied(e) => {
                                errors.push(format!("catch-all @{} is defined twice", e.key()));
                            }
                            Entry::Vacant(e) => {
                                e.insert(to);
                            }
                        }
                    }
                }
            }
        }

        dir.add_required_addresses();
        dir.check_alias_graph(&mut errors);

        if errors.is_empty() {
            Ok(dir)
        } else {
            let mut seen = HashSet::new();
            errors.retain(|e| seen.insert(e.clone()));
            Err(errors)
        }
    }

    /// Why an alias key in `domain` could never be reached, if it could not.
    fn key_domain_problem(&self, domain: &str) -> Option<String> {
        if let Some(real) = self.alias_domains.get(domain) {
            return Some(format!(
                "{domain} is an alias domain of {real}, so addresses there are rewritten first; \
                 define it in @{real}"
            ));
        }
        if !self.domains.iter().any(|d| d == domain) {
            return Some(format!("{domain} is not one of our mail domains ({})", self.domains.join(", ")));
        }
        None
    }

    /// postmaster@ and abuse@ for every domain, pointing at the domain's first account (the
    /// first account overall for a domain without any), unless the operator defined them.
    /// Without any account there is nobody to point at.
    fn add_required_addresses(&mut self) {
        let Some(first_overall) = self.accounts.first().map(|a| a.address.clone()) else {
            return;
        };
        for domain in self.domains.clone() {
            let first = self
                .accounts
                .iter()
                .find(|a| a.address.domain == domain)
                .map_or_else(|| first_overall.clone(), |a| a.address.clone());
            for local in REQUIRED_LOCALS {
                let addr = Address { local: local.to_string(), domain: domain.clone() };
                if !self.by_address.contains_key(&addr) && !self.aliases.contains_key(&addr) {
                    self.aliases.insert(addr, vec![first.clone()]);
                }
            }
        }
    }

    /// Refuse loops, chains deeper than [`MAX_ALIAS_DEPTH`], and targets in our domains
    /// that resolve to nobody (a typo there silently loses mail).
    fn check_alias_graph(&self, errors: &mut Vec<String>) {
        let mut memo: HashMap<Address, usize> = HashMap::new();
        let mut keys: Vec<&Address> = self.aliases.keys().collect();
        keys.sort();
        for from in keys {
            let mut stack = Vec::new();
            let height = self.chain_height(from, &mut stack, &mut memo, errors);
            if height > MAX_ALIAS_DEPTH {
                errors.push(format!("alias {from}: chain of {height} aliases is longer than {MAX_ALIAS_DEPTH}"));
            }
        }
        let mut domains: Vec<&String> = self.catch_alls.keys().collect();
        domains.sort();
        for domain in domains {
            let name = format!("catch-all @{domain}");
            let targets = self.catch_alls.get(domain).map(Vec::as_slice).unwrap_or_default();
            let mut stack = Vec::new();
            let mut height = 0;
            for t in targets {
                self.check_target_exists(&name, t, errors);
                height = height.max(1 + self.chain_height(t, &mut stack, &mut memo, errors));
            }
            if height > MAX_ALIAS_DEPTH {
                errors.push(format!("{name}: chain of {height} aliases is longer than {MAX_ALIAS_DEPTH}"));
            }
        }
    }

    /// Number of alias hops below `addr` (0 for an account, remote or missing address).
    /// `stack` holds the addresses being expanded, to see loops; `memo` makes each address
    /// cost one visit however many aliases share it.
    fn chain_height(
        &self,
        addr: &Address,
        stack: &mut Vec<Address>,
        memo: &mut HashMap<Address, usize>,
        errors: &mut Vec<String>,
    ) -> usize {
        let addr = self.rewrite(addr);
        if !self.is_mail_domain(&addr.domain) {
            return 0;
        }
        if let Some(h) = memo.get(&addr) {
            return *h;
        }
        if let Some(pos) = stack.iter().position(|s| *s == addr) {
            let cycle: Vec<String> =
                stack[pos..].iter().chain(std::iter::once(&addr)).map(ToString::to_string).collect();
            errors.push(format!("alias loop: {}", cycle.join(" -> ")));
            return 0;
        }
        let height = match self.lookup(&addr) {
            Hit::Account(_) | Hit::Nobody => 0,
            Hit::Alias(targets) | Hit::CatchAll(targets) => {
                stack.push(addr.clone());
                let name = format!("alias {addr}");
                let mut h = 0;
                for t in targets {
                    self.check_target_exists(&name, t, errors);
                    h = h.max(1 + self.chain_height(t, stack, memo, errors));
                }
                stack.pop();
                h
            }
        };
        memo.insert(addr, height);
        height
    }

    fn check_target_exists(&self, name: &str, target: &Address, errors: &mut Vec<String>) {
        let t = self.rewrite(target);
        if self.is_mail_domain(&t.domain) && matches!(self.lookup(&t), Hit::Nobody) {
            errors.push(format!("{name}: target {target} does not exist (no account, alias or catch-all)"));
        }
    }

    fn is_local_domain(&self, domain: &str) -> bool {
        let check = |d: &str| self.domains.iter().any(|x| x == d) || self.alias_domains.contains_key(d);
        check(domain) || normalise_domain(domain).is_ok_and(|d| check(&d))
    }

    fn is_mail_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }

    /// `x@alias.example` -> `x@real.example`.
    fn rewrite(&self, addr: &Address) -> Address {
        match self.alias_domains.get(&addr.domain) {
            Some(real) => addr.with_domain(real),
            None => addr.clone(),
        }
    }

    /// One step of resolution for an address in one of our real domains.
    fn lookup(&self, addr: &Address) -> Hit<'_> {
        if let Some(hit) = self.exact(addr) {
            return hit;
        }
        if let Some(base) = addr.without_subaddress()
            && let Some(hit) = self.exact(&base)
        {
            return hit;
        }
        match self.catch_alls.get(&addr.domain) {
            Some(targets) => Hit::CatchAll(targets),
            None => Hit::Nobody,
        }
    }

    fn exact(&self, addr: &Address) -> Option<Hit<'_>> {
        if let Some(i) = self.by_address.get(addr)
            && let Some(account) = self.accounts.get(*i)
        {
            return Some(Hit::Account(account));
        }
        self.aliases.get(addr).map(|t| Hit::Alias(t))
    }

    fn resolve(&self, address: &Address) -> Vec<Recipient> {
        let mut out = Vec::new();
        let mut visited = HashSet::new();
        self.resolve_into(address, 0, &mut visited, &mut out);
        out
    }

    fn resolve_into(&self, address: &Address, depth: usize, visited: &mut HashSet<Address>, out: &mut Vec<Recipient>) {
        let addr = self.rewrite(address);
        if !self.is_mail_domain(&addr.domain) {
            push_unique(out, Recipient::Forward(addr));
            return;
        }
        if depth > MAX_ALIAS_DEPTH || !visited.insert(addr.clone()) {
            return;
        }
        match self.lookup(&addr) {
            Hit::Account(a) => push_unique(out, Recipient::Mailbox(a.address.clone())),
            Hit::Alias(targets) | Hit::CatchAll(targets) => {
                for t in targets {
                    self.resolve_into(t, depth + 1, visited, out);
                }
            }
            Hit::Nobody => {}
        }
    }

    fn may_send_as(&self, account: &Address, sender: &Address) -> bool {
        let account = self.rewrite(account);
        let sender = self.rewrite(sender);
        if !self.is_mail_domain(&sender.domain) {
            return false;
        }
        match self.lookup(&sender) {
            Hit::Account(a) => a.address == account,
            Hit::Alias(_) => self.resolve(&sender).contains(&Recipient::Mailbox(account)),
            Hit::CatchAll(_) | Hit::Nobody => false,
        }
    }

    fn account(&self, address: &Address) -> Option<&Account> {
        let addr = self.rewrite(address);
        self.by_address.get(&addr).and_then(|i| self.accounts.get(*i))
    }

    fn authenticate(
        &self,
        username: &str,
        password: &str,
        generation: u64,
        pick: impl FnOnce(&Account) -> Option<PasswordHash>,
        verifications: &AtomicU64,
    ) -> Option<Address> {
        let found = self.login_address(username).and_then(|a| self.account(&a));
        let Some((account, hash)) = found.and_then(|a| pick(a).map(|h| (a, h))) else {
            // Same cost as a real check, so response time does not reveal who exists.
            let _ = self.dummy_hash.verify(password);
            return None;
        };
        let key = self.cache.key_for_generation(&account.address, generation, password);
        let now = Instant::now();
        // A hit is fast, but only for the RIGHT password of this account (the key is an
        // HMAC of both, and failures are never cached): a guesser's wrong passwords always
        // miss and pay the full cost, so the timing tells him nothing he did not know.
        if self.cache.is_fresh(&key, now) {
            return Some(account.address.clone());
        }
        verifications.fetch_add(1, Ordering::Relaxed);
        if !matches!(hash, PasswordHash::Argon2(_)) {
            // `{PLAIN}` compares in microseconds and a low-cost bcrypt/SHA-crypt in a few
            // milliseconds: without this, response time tells those accounts (the ones
            // worth guessing) from argon2 ones and from unknown users. Never cheaper than
            // the dummy argon2 check that unknown users pay.
            let _ = self.dummy_hash.verify(password);
        }
        if hash.verify(password) {
            self.cache.remember(key, now);
            Some(account.address.clone())
        } else {
            None
        }
    }

    fn login_address(&self, username: &str) -> Option<Address> {
        let username = username.trim();
        if username.contains('@') {
            Address::parse(username).ok()
        } else {
            let primary = self.domains.first()?;
            Address::parse(&format!("{username}@{primary}")).ok()
        }
    }
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.snapshot(), f)
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("domains", &self.domains)
            .field("alias_domains", &self.alias_domains)
            .field("accounts", &self.accounts.len())
            .field("aliases", &self.aliases.len())
            .field("catch_alls", &self.catch_alls.len())
            .finish_non_exhaustive()
    }
}

fn push_unique(out: &mut Vec<Recipient>, r: Recipient) {
    if !out.contains(&r) {
        out.push(r);
    }
}

/// The timing-equaliser hash: argon2id with the same default parameters `hash-password`
/// uses, of a password nobody knows. Tests use a cheap one (debug builds are slow).
fn dummy_hash() -> PasswordHash {
    let phc = if cfg!(test) {
        "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$/W8LPvoaai7U3XREtgKuI78eDZLHrsDSFj5hpFvetZc"
    } else {
        "$argon2id$v=19$m=19456,t=2,p=1$bWFpbHJvb20tZHVtbXktc2FsdA$C3mq2U2+IGesaA2Bd851ts0w7xliB1pmmws1mo0hXkM"
    };
    PasswordHash::Argon2(phc.to_string())
}

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
