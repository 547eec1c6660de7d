//! Transcripts against a test clock (`try_attempt_at` / `finish_at` with explicit
//! instants), so 1,000 failed logins run in milliseconds.

use std::time::{Duration, Instant};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limiter() -> Limiter {
    Limiter::new(LimiterConfig::default(), vec!["10.0.0.0/8".parse().unwrap()])
}

/// Reserve at `now`; `Ok(delay)` when admitted (the attempt then finishes as `ok`).
fn try_login(l: &Limiter, from: &str, account: &str, ok: bool, now: Instant) -> Result<Duration, Option<Blocked>> {
    match l.try_attempt_at(ip(from), account, now) {
        Admission::Go(attempt, delay) => {
            attempt.finish_at(ok, now + delay);
            Ok(delay)
        }
        Admission::Wait => Err(None),
        Admission::Refused(b) => Err(Some(b)),
    }
}

#[test]
fn thousand_wrong_passwords_block_the_address_not_a_good_user_elsewhere() {
    let l = limiter();
    let t0 = Instant::now();
    let attacker = "203.0.113.7";
    let mut now = t0;
    let mut refused = 0;
    for i in 0..1000 {
        let account = format!("user{}@example.org", i % 50);
        match try_login(&l, attacker, &account, false, now) {
            Ok(delay) => {
                assert!(delay <= Duration::from_secs(10), "delay capped: {delay:?}");
                now += delay;
            }
            Err(b) => {
                assert_eq!(b.map(|b| b.scope), Some(BlockScope::Address));
                refused += 1;
            }
        }
        now += Duration::from_millis(10);
    }
    // Ten guesses got through; the other 990 were refused without a password check.
    assert_eq!(refused, 990);
    let Admission::Refused(err) = l.try_attempt_at(ip(attacker), "user1@example.org", now) else { panic!() };
    assert!(err.to_string().starts_with("too many failed logins from this address"), "{err}");

    // A good user on another address: no delay, no block.
    assert_eq!(try_login(&l, "198.51.100.20", "alice@example.org", true, now), Ok(Duration::ZERO));

    // After the block (15 min) the attacker may try again.
    assert!(try_login(&l, attacker, "user1@example.org", false, now + Duration::from_secs(16 * 60)).is_ok());
}

#[test]
fn delay_doubles_from_half_a_second_and_caps_at_ten() {
    let l = limiter();
    let now = Instant::now();
    let delays: Vec<u128> =
        (0..9).map(|_| try_login(&l, "192.0.2.1", "bob@example.org", false, now).unwrap().as_millis()).collect();
    assert_eq!(delays, [0, 500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
    // The answer to the ninth failure waits what the tenth attempt would.
    assert_eq!(l.penalty_at(ip("192.0.2.1"), now), Duration::from_secs(10));
    assert_eq!(l.penalty_at(ip("192.0.2.2"), now), Duration::ZERO);
    assert_eq!(l.penalty_at(ip("192.0.2.1"), now + Duration::from_secs(16 * 60)), Duration::ZERO, "forgotten");
}

#[test]
fn reservations_count_before_the_verdict_so_parallel_guesses_cannot_overrun() {
    // The old race: sixty sessions each checked "under 10 failures?" before any of
    // them had failed. Now each check reserves: two run at once, the rest wait, and
    // never more are admitted than the address has failures left.
    let l = limiter();
    let now = Instant::now();
    let a = ip("192.0.2.77");
    let mut waiting = 60;
    let mut held = Vec::new();
    let (mut admitted, mut refused) = (0, 0);
    while waiting > 0 {
        match l.try_attempt_at(a, "victim@example.org", now) {
            Admission::Go(attempt, _) => {
                admitted += 1;
                waiting -= 1;
                held.push(attempt);
            }
            Admission::Refused(b) => {
                assert_eq!(b.scope, BlockScope::Address);
                refused += 1;
                waiting -= 1;
            }
            // No slot: one of the running checks ends (wrong password) and frees one.
            Admission::Wait => held.pop().expect("waiting only while something runs").finish_at(false, now),
        }
        assert!(held.len() <= 2, "at most two verifications in flight per address");
    }
    drop(held);
    assert_eq!((admitted, refused), (10, 50), "exactly the documented ten guesses");
    assert_eq!(l.in_flight(), (0, 0), "every reservation released");
}

#[test]
fn a_reservation_holds_the_last_failure_slot_until_it_is_decided() {
    let l = limiter();
    let now = Instant::now();
    for _ in 0..9 {
        try_login(&l, "192.0.2.5", "h@example.org", false, now).unwrap();
    }
    let Admission::Go(last, _) = l.try_attempt_at(ip("192.0.2.5"), "h@example.org", now) else { panic!() };
    // The tenth is in flight: an eleventh must wait for its verdict, not slip past.
    assert!(matches!(l.try_attempt_at(ip("192.0.2.5"), "h@example.org", now), Admission::Wait));
    last.finish_at(true, now);
    // It was right: the address still has 9 failures, one try left.
    assert!(try_login(&l, "192.0.2.5", "h@example.org", false, now).is_ok());
    assert!(matches!(try_login(&l, "192.0.2.5", "h@example.org", false, now), Err(Some(_))));
}

#[test]
fn a_reservation_dropped_mid_check_counts_as_a_failure_one_dropped_while_waiting_does_not() {
    let l = limiter();
    let now = Instant::now();
    for _ in 0..20 {
        // The client gave up during its penalty wait: no password was tried.
        let Admission::Go(attempt, _) = l.try_attempt_at(ip("192.0.2.6"), "i@example.org", now) else { panic!() };
        drop(attempt);
    }
    assert!(matches!(l.try_attempt_at(ip("192.0.2.6"), "i@example.org", now), Admission::Go(..)));
    for _ in 0..10 {
        let Admission::Go(mut attempt, _) = l.try_attempt_at(ip("192.0.2.6"), "i@example.org", now) else { panic!() };
        attempt.checking();
        drop(attempt); // the client hung up mid-check
    }
    assert!(matches!(l.try_attempt_at(ip("192.0.2.6"), "i@example.org", now), Admission::Refused(_)));
    assert_eq!(l.in_flight(), (0, 0));
}

#[test]
fn distributed_guessing_is_throttled_but_never_locks_out_the_owner() {
    let l = limiter();
    let now = Instant::now();
    let owner_home = "198.51.100.5";
    try_login(&l, owner_home, "Carol@example.org", true, now).unwrap();
    // A botnet: 20 addresses spend the account's budget of 20 guesses.
    for i in 0..20 {
        assert_eq!(try_login(&l, &format!("203.0.113.{i}"), "carol@example.org", false, now), Ok(Duration::ZERO));
    }
    // Over budget: an address that already failed is refused without verification...
    let err = try_login(&l, "203.0.113.3", "carol@example.org", false, now).unwrap_err().unwrap();
    assert_eq!(err.scope, BlockScope::Account);
    assert!(err.to_string().starts_with("too many failed logins for this account"), "{err}");
    // ...fresh addresses take turns, one per two seconds, one try each...
    assert_eq!(try_login(&l, "203.0.113.100", "carol@example.org", false, now), Ok(Duration::ZERO));
    assert_eq!(try_login(&l, "203.0.113.101", "carol@example.org", false, now), Ok(Duration::from_secs(2)));
    assert!(try_login(&l, "203.0.113.100", "carol@example.org", false, now).is_err());
    // ...the owner's usual address gets in at once, a clean one after the queue.
    assert_eq!(try_login(&l, owner_home, "carol@example.org", true, now), Ok(Duration::ZERO));
    assert_eq!(try_login(&l, "192.0.2.200", "carol@example.org", true, now), Ok(Duration::from_secs(4)));
    // The budget is not reset by the owner's logins; it runs out 15 min after the last failure.
    assert!(try_login(&l, "203.0.113.3", "carol@example.org", false, now).is_err());
    let later = now + Duration::from_secs(2 + 15 * 60);
    assert_eq!(try_login(&l, "203.0.113.50", "carol@example.org", false, later), Ok(Duration::ZERO));
}

#[test]
fn over_budget_a_clean_address_verifies_one_at_a_time() {
    let l = limiter();
    let now = Instant::now();
    for i in 0..20 {
        try_login(&l, &format!("203.0.113.{i}"), "d@example.org", false, now).unwrap();
    }
    let Admission::Go(first, _) = l.try_attempt_at(ip("192.0.2.30"), "d@example.org", now) else { panic!() };
    assert!(matches!(l.try_attempt_at(ip("192.0.2.30"), "d@example.org", now), Admission::Wait));
    first.finish_at(true, now);
    // Known-good now: no turn to wait for.
    assert_eq!(try_login(&l, "192.0.2.30", "d@example.org", true, now), Ok(Duration::ZERO));
}

#[test]
fn trusted_networks_are_never_blocked_or_delayed() {
    let l = limiter();
    let now = Instant::now();
    for _ in 0..1000 {
        assert_eq!(try_login(&l, "10.1.2.3", "dave@example.org", false, now), Ok(Duration::ZERO));
    }
    assert_eq!(try_login(&l, "10.1.2.3", "dave@example.org", false, now), Ok(Duration::ZERO));
    for _ in 0..1000 {
        assert!(l.allow_connection_at(ip("10.1.2.3"), now));
    }
    // Their failures did not spend the account's budget either.
    assert_eq!(try_login(&l, "192.0.2.44", "dave@example.org", true, now), Ok(Duration::ZERO));
}

#[test]
fn ipv6_counts_per_slash_64() {
    let l = limiter();
    let now = Instant::now();
    for i in 0..10 {
        try_login(&l, &format!("2001:db8:1:2::{i:x}"), &format!("u{i}@example.org"), false, now).unwrap();
    }
    assert!(try_login(&l, "2001:db8:1:2:ffff::1", "new@example.org", false, now).is_err());
    assert!(try_login(&l, "2001:db8:1:3::1", "new@example.org", false, now).is_ok());
}

#[test]
fn connection_rate_per_address() {
    let l = limiter();
    let t0 = Instant::now();
    let a = ip("192.0.2.9");
    assert!((0..60).all(|_| l.allow_connection_at(a, t0)));
    assert!(!l.allow_connection_at(a, t0 + Duration::from_secs(30)));
    assert!(l.allow_connection_at(ip("192.0.2.10"), t0));
    assert!(l.allow_connection_at(a, t0 + Duration::from_secs(61)));
}

#[test]
fn messages_per_hour_per_sender() {
    let l = limiter();
    let t0 = Instant::now();
    assert!((0..500).all(|_| l.allow_message_at("Eve@example.org", t0)));
    assert!(!l.allow_message_at("eve@example.org", t0 + Duration::from_secs(10)));
    assert!(l.allow_message_at("frank@example.org", t0));
    assert!(l.allow_message_at("eve@example.org", t0 + Duration::from_secs(3601)));
}

#[test]
fn recipients_per_hour_per_sender() {
    let l = limiter();
    let t0 = Instant::now();
    assert!((0..300).all(|_| l.allow_recipient_at("Eve@example.org", t0)));
    assert!(!l.allow_recipient_at("eve@example.org", t0 + Duration::from_secs(10)));
    assert!(l.allow_recipient_at("frank@example.org", t0));
    assert!(l.allow_message_at("eve@example.org", t0), "messages are a separate budget");
    assert!(l.allow_recipient_at("eve@example.org", t0 + Duration::from_secs(3601)));
}

#[test]
fn memory_stays_bounded_under_address_churn() {
    let config = LimiterConfig { max_entries: 1000, ..LimiterConfig::default() };
    let l = Limiter::new(config, vec![]);
    let now = Instant::now();
    for i in 0..20_000u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0xC000_0000 + i));
        if let Admission::Go(attempt, _) = l.try_attempt_at(a, &format!("u{i}@example.org"), now) {
            attempt.finish_at(i % 2 == 0, now);
        }
        l.allow_connection_at(a, now);
        l.allow_message_at(&format!("u{i}@example.org"), now);
        l.allow_recipient_at(&format!("u{i}@example.org"), now);
    }
    let (ips, accounts, conns, senders, recipients) = l.sizes();
    assert!(
        ips <= 1000 && accounts <= 1000 && conns <= 1000 && senders <= 1000 && recipients <= 1000,
        "{:?}",
        l.sizes()
    );
    assert_eq!(l.in_flight(), (0, 0));
}

#[tokio::test]
async fn attempt_sleeps_the_penalty() {
    let config = LimiterConfig { failure_delay: Duration::from_millis(20), ..LimiterConfig::default() };
    let l = Limiter::new(config, vec![]);
    let a = ip("192.0.2.50");
    l.attempt(a, "g@example.org").await.unwrap().failed();
    l.attempt(a, "g@example.org").await.unwrap().failed();
    let start = Instant::now();
    l.attempt(a, "g@example.org").await.unwrap().succeeded();
    assert!(start.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn a_waiting_attempt_wakes_when_a_slot_frees_and_gives_up_after_slot_wait() {
    let config = LimiterConfig { slot_wait: Duration::from_millis(200), ..LimiterConfig::default() };
    let l = std::sync::Arc::new(Limiter::new(config, vec![]));
    let a = ip("192.0.2.60");
    let one = l.attempt(a, "w@example.org").await.unwrap();
    let two = l.attempt(a, "w@example.org").await.unwrap();
    // Both slots taken: a third gives up with a temporary refusal.
    assert_eq!(l.attempt(a, "w@example.org").await.unwrap_err().scope, BlockScope::Busy);
    // Freed while it waits: it goes on.
    let waiter = {
        let l = l.clone();
        tokio::spawn(async move { l.attempt(a, "w@example.org").await.map(|t| t.succeeded()).is_ok() })
    };
    tokio::task::yield_now().await;
    one.succeeded();
    assert!(waiter.await.unwrap());
    two.succeeded();
}

#[test]
fn configured_from_the_environment() {
    let env = crate::config::EnvSource::from_pairs([
        ("MAILROOM_HOSTNAME", "mx.example.org"),
        ("MAILROOM_TRUSTED_NETWORKS", "192.168.0.0/16"),
        ("MAILROOM_MESSAGES_PER_HOUR", "2"),
        ("MAILROOM_RECIPIENTS_PER_HOUR", "3"),
    ]);
    let (config, _) = crate::config::Config::load(&env).unwrap();
    let l = Limiter::configured(&config.limits, &config.trusted_networks);
    let now = Instant::now();
    assert!(l.allow_message_at("a@example.org", now) && l.allow_message_at("a@example.org", now));
    assert!(!l.allow_message_at("a@example.org", now));
    assert!((0..3).all(|_| l.allow_recipient_at("a@example.org", now)));
    assert!(!l.allow_recipient_at("a@example.org", now));
    for _ in 0..100 {
        assert!(try_login(&l, "192.168.1.1", "a@example.org", false, now).is_ok());
    }
}

#[tokio::test]
async fn password_checks_queue_past_two_per_core() {
    let l = limiter();
    let n = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(l.verification_permit().await.unwrap());
    }
    // All taken: the next check waits (it cannot complete, so the timeout always wins).
    assert!(tokio::time::timeout(Duration::from_millis(5), l.verification_permit()).await.is_err());
    held.pop();
    assert!(l.verification_permit().await.is_some());
}
