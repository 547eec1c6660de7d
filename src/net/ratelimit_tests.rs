//! Transcripts against a test clock (`*_at` with explicit instants), so 1,000 failed
//! logins run in milliseconds.

use std::time::{Duration, Instant};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limiter() -> Limiter {
    Limiter::new(LimiterConfig::default(), vec!["10.0.0.0/8".parse().unwrap()])
}

#[test]
fn thousand_wrong_passwords_block_the_address_not_a_good_user_elsewhere() {
    let l = limiter();
    let t0 = Instant::now();
    let attacker = ip("203.0.113.7");
    let mut now = t0;
    let mut refused = 0;
    for i in 0..1000 {
        let account = format!("user{}@example.org", i % 50);
        match l.check_login_at(attacker, &account, now) {
            Ok(delay) => {
                assert!(delay <= Duration::from_secs(10), "delay capped: {delay:?}");
                now += delay;
                l.login_failed_at(attacker, &account, now);
            }
            Err(b) => {
                assert_eq!(b.scope, BlockScope::Address);
                refused += 1;
            }
        }
        now += Duration::from_millis(10);
    }
    // Ten guesses got through; the other 990 were refused without a password check.
    assert_eq!(refused, 990);
    let err = l.check_login_at(attacker, "user1@example.org", now).unwrap_err();
    assert!(err.to_string().starts_with("too many failed logins (from this address)"), "{err}");

    // A good user on another address: no delay, no block.
    let good = ip("198.51.100.20");
    assert_eq!(l.check_login_at(good, "alice@example.org", now), Ok(Duration::ZERO));
    l.login_succeeded_at(good, "alice@example.org", now);

    // After the block (15 min) the attacker may try again.
    assert!(l.check_login_at(attacker, "user1@example.org", now + Duration::from_secs(16 * 60)).is_ok());
}

#[test]
fn delay_doubles_from_half_a_second_and_caps_at_ten() {
    let l = limiter();
    let now = Instant::now();
    let a = ip("192.0.2.1");
    let mut delays = vec![];
    for _ in 0..9 {
        delays.push(l.check_login_at(a, "bob@example.org", now).unwrap().as_millis());
        l.login_failed_at(a, "bob@example.org", now);
    }
    assert_eq!(delays, [0, 500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
}

#[test]
fn account_block_spares_known_good_addresses() {
    let l = limiter();
    let now = Instant::now();
    let owner = ip("198.51.100.5");
    l.login_succeeded_at(owner, "Carol@example.org", now);
    // A botnet: 20 addresses, one guess each, at the same account.
    for i in 0..20 {
        l.login_failed_at(ip(&format!("203.0.113.{i}")), "carol@example.org", now);
    }
    let err = l.check_login_at(ip("203.0.113.99"), "carol@example.org", now).unwrap_err();
    assert_eq!(err.scope, BlockScope::Account);
    // The owner's usual address is not locked out.
    assert!(l.check_login_at(owner, "carol@example.org", now).is_ok());
}

#[test]
fn trusted_networks_are_never_blocked_or_delayed() {
    let l = limiter();
    let now = Instant::now();
    let inside = ip("10.1.2.3");
    for _ in 0..1000 {
        l.login_failed_at(inside, "dave@example.org", now);
    }
    assert_eq!(l.check_login_at(inside, "dave@example.org", now), Ok(Duration::ZERO));
    for _ in 0..1000 {
        assert!(l.allow_connection_at(inside, now));
    }
}

#[test]
fn ipv6_counts_per_slash_64() {
    let l = limiter();
    let now = Instant::now();
    for i in 0..10 {
        l.login_failed_at(ip(&format!("2001:db8:1:2::{i:x}")), &format!("u{i}@example.org"), now);
    }
    assert!(l.check_login_at(ip("2001:db8:1:2:ffff::1"), "new@example.org", now).is_err());
    assert!(l.check_login_at(ip("2001:db8:1:3::1"), "new@example.org", now).is_ok());
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
fn memory_stays_bounded_under_address_churn() {
    let config = LimiterConfig { max_entries: 1000, ..LimiterConfig::default() };
    let l = Limiter::new(config, vec![]);
    let now = Instant::now();
    for i in 0..20_000u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0xC000_0000 + i));
        l.login_failed_at(a, &format!("u{i}@example.org"), now);
        l.allow_connection_at(a, now);
        l.allow_message_at(&format!("u{i}@example.org"), now);
    }
    let (ips, accounts, conns, senders) = l.sizes();
    assert!(ips <= 1000 && accounts <= 1000 && conns <= 1000 && senders <= 1000, "{:?}", l.sizes());
}

#[tokio::test]
async fn before_login_sleeps_the_penalty() {
    let config = LimiterConfig { failure_delay: Duration::from_millis(20), ..LimiterConfig::default() };
    let l = Limiter::new(config, vec![]);
    let a = ip("192.0.2.50");
    l.login_failed(a, "g@example.org");
    l.login_failed(a, "g@example.org");
    let start = Instant::now();
    l.before_login(a, "g@example.org").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(40));
}

#[test]
fn configured_from_the_environment() {
    let env = crate::config::EnvSource::from_pairs([
        ("MAILROOM_HOSTNAME", "mx.example.org"),
        ("MAILROOM_TRUSTED_NETWORKS", "192.168.0.0/16"),
        ("MAILROOM_MESSAGES_PER_HOUR", "2"),
    ]);
    let (config, _) = crate::config::Config::load(&env).unwrap();
    let l = Limiter::from_config(&config);
    let now = Instant::now();
    assert!(l.allow_message_at("a@example.org", now) && l.allow_message_at("a@example.org", now));
    assert!(!l.allow_message_at("a@example.org", now));
    for _ in 0..100 {
        l.login_failed_at(ip("192.168.1.1"), "a@example.org", now);
    }
    assert!(l.check_login_at(ip("192.168.1.1"), "a@example.org", now).is_ok());
}
