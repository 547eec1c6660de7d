//! Transcript-style tests for `directory.rs`: "mail for X goes to Y", "A may send as B",
//! "login L with P gives Z", plus the configuration mistakes `Directory::new` must refuse.

use super::*;
use crate::accounts::parse::{parse_accounts, parse_aliases};

const CHEAP_ARGON: &str =
    "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$/W8LPvoaai7U3XREtgKuI78eDZLHrsDSFj5hpFvetZc";

fn build(domains: &[&str], accounts: &str, aliases: &str) -> Result<Directory, Vec<String>> {
    let accounts = parse_accounts(accounts)?;
    let aliases = parse_aliases(aliases)?;
    Directory::new(domains.iter().map(|d| d.to_string()).collect(), accounts, aliases)
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The directory most tests use.
fn office() -> Directory {
    let accounts = format!(
        "alice@example.com:{CHEAP_ARGON}:1G\n\
         bob@example.com:{{PLAIN}}bobpw\n\
         carol@example.org:{{PLAIN}}carolpw"
    );
    let aliases = "info@example.com:alice@example.com bob@example.com\n\
                   team@example.com:info@example.com dave@remote.example\n\
                   sales@example.com:team@example.com,alice@example.com\n\
                   fwd@example.com:someone@remote.example\n\
                   bob+vip@example.com:carol@example.org\n\
                   list@example.org:bob@example.com\n\
                   @example.org:carol@example.org\n\
                   @example.net:@example.com";
    build(&["example.com", "Example.ORG"], &accounts, aliases)
        .unwrap_or_else(|e| panic!("office config refused: {e:#?}"))
}

fn resolved(dir: &Directory, address: &str) -> Vec<String> {
    dir.resolve(&addr(address))
        .into_iter()
        .map(|r| match r {
            Recipient::Mailbox(a) => format!("mailbox {a}"),
            Recipient::Forward(a) => format!("forward {a}"),
        })
        .collect()
}

#[test]
fn who_receives_mail() {
    let dir = office();
    let table: &[(&str, &[&str])] = &[
        // accounts, case-insensitively
        ("alice@example.com", &["mailbox alice@example.com"]),
        ("ALICE@Example.Com", &["mailbox alice@example.com"]),
        // alias, alias chain (with a remote target), duplicates removed
        ("info@example.com", &["mailbox alice@example.com", "mailbox bob@example.com"]),
        ("team@example.com", &["mailbox alice@example.com", "mailbox bob@example.com", "forward dave@remote.example"]),
        ("sales@example.com", &["mailbox alice@example.com", "mailbox bob@example.com", "forward dave@remote.example"]),
        ("fwd@example.com", &["forward someone@remote.example"]),
        // subaddressing: to the account, to an alias, and an exact alias beats it
        ("alice+news@example.com", &["mailbox alice@example.com"]),
        ("info+x@example.com", &["mailbox alice@example.com", "mailbox bob@example.com"]),
        ("bob+vip@example.com", &["mailbox carol@example.org"]),
        ("bob+other@example.com", &["mailbox bob@example.com"]),
        // nobody, in a domain without catch-all
        ("nobody@example.com", &[]),
        ("+tag@example.com", &[]),
        // catch-all, and what beats it: account, alias, subaddress, postmaster default
        ("anything@example.org", &["mailbox carol@example.org"]),
        ("list@example.org", &["mailbox bob@example.com"]),
        ("carol+x@example.org", &["mailbox carol@example.org"]),
        ("abuse@example.org", &["mailbox carol@example.org"]),
        // alias domain
        ("alice@example.net", &["mailbox alice@example.com"]),
        ("info@example.net", &["mailbox alice@example.com", "mailbox bob@example.com"]),
        ("postmaster@example.net", &["mailbox alice@example.com"]),
        ("ghost@example.net", &[]),
        // required addresses default to the domain's first account
        ("postmaster@example.com", &["mailbox alice@example.com"]),
        ("Postmaster@example.org", &["mailbox carol@example.org"]),
        // remote
        ("x@remote.example", &["forward x@remote.example"]),
    ];
    for (input, want) in table {
        assert_eq!(resolved(&dir, input), *want, "RCPT TO:<{input}>");
    }
}

#[test]
fn operator_defined_postmaster_wins_over_the_default() {
    let dir = build(
        &["example.com"],
        "alice@example.com:{PLAIN}a\nbob@example.com:{PLAIN}b",
        "postmaster@example.com:bob@example.com",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(resolved(&dir, "postmaster@example.com"), ["mailbox bob@example.com"]);
    assert_eq!(resolved(&dir, "abuse@example.com"), ["mailbox alice@example.com"]);

    let own = build(&["example.com"], "alice@example.com:{PLAIN}a\npostmaster@example.com:{PLAIN}p", "")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(resolved(&own, "postmaster@example.com"), ["mailbox postmaster@example.com"]);
}

#[test]
fn no_accounts_means_no_defaults() {
    let dir = build(&["example.com"], "", "").unwrap_or_else(|e| panic!("{e:?}"));
    assert!(resolved(&dir, "postmaster@example.com").is_empty());
    assert_eq!(dir.accounts().len(), 0);
}

#[test]
fn send_as_rules() {
    let dir = office();
    let table: &[(&str, &str, bool)] = &[
        ("alice@example.com", "alice@example.com", true),
        ("alice@example.com", "Alice+Tag@example.com", true),
        ("alice@example.com", "alice@example.net", true),
        ("alice@example.com", "info@example.com", true),
        ("alice@example.com", "team@example.com", true),
        ("alice@example.com", "postmaster@example.com", true),
        ("bob@example.com", "sales@example.com", true),
        ("carol@example.org", "bob+vip@example.com", true),
        ("bob@example.com", "list@example.org", true),
        // refused: other people, catch-all, remote-only aliases, remote domains
        ("alice@example.com", "bob@example.com", false),
        ("bob@example.com", "bob+vip@example.com", false),
        ("carol@example.org", "info@example.com", false),
        ("carol@example.org", "anything@example.org", false),
        ("alice@example.com", "anything@example.org", false),
        ("alice@example.com", "fwd@example.com", false),
        ("alice@example.com", "alice@remote.example", false),
        ("bob@example.com", "postmaster@example.com", false),
    ];
    for (account, sender, want) in table {
        assert_eq!(dir.may_send_as(&addr(account), &addr(sender)), *want, "AUTH {account} / MAIL FROM:<{sender}>");
    }
}

#[test]
fn lookups_and_listing() {
    let dir = office();
    assert_eq!(dir.domains(), ["example.com", "example.org"]);
    assert_eq!(dir.alias_domains(), [("example.net".to_string(), "example.com".to_string())]);
    for d in ["example.com", "EXAMPLE.org", "example.net"] {
        assert!(dir.is_local_domain(d), "{d}");
    }
    assert!(!dir.is_local_domain("remote.example"));
    let listed: Vec<String> = dir.accounts().iter().map(|a| a.address.to_string()).collect();
    assert_eq!(listed, ["alice@example.com", "bob@example.com", "carol@example.org"]);
    assert_eq!(dir.account(&addr("alice@example.net")).map(|a| a.quota), Some(Some(1 << 30)));
    assert!(dir.account(&addr("info@example.com")).is_none());
    let plain: Vec<String> = dir.plain_password_accounts().iter().map(|a| a.to_string()).collect();
    assert_eq!(plain, ["bob@example.com", "carol@example.org"]);
    let shown = format!("{dir:?}");
    assert!(!shown.contains("bobpw") && !shown.contains("argon2id"), "{shown}");
}

#[test]
fn idn_domains_are_local() {
    let dir = build(&["Bücher.example"], "info@bücher.example:{PLAIN}x", "").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(dir.domains(), ["xn--bcher-kva.example"]);
    assert!(dir.is_local_domain("bücher.example"));
    assert!(dir.is_local_domain("xn--bcher-kva.example"));
    assert_eq!(resolved(&dir, "INFO@BÜCHER.example"), ["mailbox info@xn--bcher-kva.example"]);
}

#[test]
fn logins() {
    let dir = office();
    let table: &[(&str, &str, Option<&str>)] = &[
        ("alice@example.com", "hunter2", Some("alice@example.com")),
        ("ALICE@Example.COM", "hunter2", Some("alice@example.com")),
        ("alice", "hunter2", Some("alice@example.com")),
        (" alice@example.com ", "hunter2", Some("alice@example.com")),
        ("alice@example.net", "hunter2", Some("alice@example.com")),
        ("alice@example.com", "hunter3", None),
        ("alice@example.com", "", None),
        ("bob@example.com", "bobpw", Some("bob@example.com")),
        ("bob@example.com", "BOBPW", None),
        ("carol", "carolpw", None),
        ("carol@example.org", "carolpw", Some("carol@example.org")),
        ("info@example.com", "hunter2", None),
        ("alice+tag@example.com", "hunter2", None),
        ("nobody@example.com", "hunter2", None),
        ("", "hunter2", None),
        ("@example.com", "hunter2", None),
        ("alice@example.com\r\n", "hunter2", Some("alice@example.com")),
        ("al ice@example.com", "hunter2", None),
    ];
    for (user, pass, want) in table {
        assert_eq!(dir.authenticate(user, pass).map(|a| a.to_string()).as_deref(), *want, "LOGIN {user:?} {pass:?}");
    }
}

#[test]
fn auth_cache_hit_skips_the_hash_and_failures_are_never_cached() {
    let dir = office();
    assert_eq!(dir.password_verifications(), 0);
    assert!(dir.authenticate("alice@example.com", "hunter2").is_some());
    assert_eq!(dir.password_verifications(), 1, "first login hashes");
    assert!(dir.authenticate("Alice@example.com", "hunter2").is_some());
    assert!(dir.authenticate("alice", "hunter2").is_some());
    assert_eq!(dir.password_verifications(), 1, "repeat logins hit the cache");
    assert!(dir.authenticate("alice@example.com", "wrong").is_none());
    assert!(dir.authenticate("alice@example.com", "wrong").is_none());
    assert_eq!(dir.password_verifications(), 3, "each failure pays the hash again");
    assert!(dir.authenticate("nobody@example.com", "hunter2").is_none());
    assert_eq!(dir.password_verifications(), 3, "unknown users are not counted");
    assert!(dir.authenticate("alice@example.com", "hunter2").is_some());
    assert_eq!(dir.password_verifications(), 3);
}

fn errors(domains: &[&str], accounts: &str, aliases: &str) -> Vec<String> {
    match build(domains, accounts, aliases) {
        Ok(d) => panic!("accepted: {d:?}"),
        Err(e) => e,
    }
}

#[test]
fn configuration_mistakes_are_refused() {
    let acc = "alice@example.com:{PLAIN}a";
    let table: &[(&str, &str, &[&str])] = &[
        ("bob@other.example:{PLAIN}b", "", &["account bob@other.example is not in our mail domains (example.com)"]),
        (
            acc,
            "a@example.com:b@example.com\nb@example.com:a@example.com",
            &["alias loop: a@example.com -> b@example.com -> a@example.com"],
        ),
        (acc, "@example.com:nobody@example.com", &["alias loop: nobody@example.com -> nobody@example.com"]),
        (
            acc,
            "info@example.com:alice@example.com tpyo@example.com",
            &["alias info@example.com: target tpyo@example.com does not exist (no account, alias or catch-all)"],
        ),
        (
            acc,
            "x@other.example:alice@example.com",
            &["alias x@other.example: other.example is not one of our mail domains (example.com)"],
        ),
        (
            acc,
            "@other.example:alice@example.com",
            &["catch-all @other.example: other.example is not one of our mail domains (example.com)"],
        ),
        (
            acc,
            "alice@example.com:bob@remote.example",
            &["alias alice@example.com has the same address as an account; the account would always win"],
        ),
        (
            acc,
            "@a.example:@b.example",
            &["alias domain @a.example points at @b.example, which is not one of our mail domains"],
        ),
        (
            acc,
            "@example.com:@example.org",
            &[
                "example.com is both a mail domain and an alias domain (@example.com:@example.org); list it only as an alias domain",
            ],
        ),
        (
            "alice@alias.example:{PLAIN}a",
            "@alias.example:@example.com",
            &[
                "account alice@alias.example is in alias domain alias.example (mail there goes to @example.com); use alice@example.com instead",
            ],
        ),
        (
            "a/b@example.com:{PLAIN}a",
            "",
            &["account a/b@example.com: the local part is used as a Maildir folder name and may not contain / or \\"],
        ),
    ];
    for (accounts, aliases, want) in table {
        assert_eq!(errors(&["example.com"], accounts, aliases), *want, "{accounts} / {aliases}");
    }
}

#[test]
fn all_problems_are_listed_at_once() {
    let errs = errors(
        &["example.com", "not a domain"],
        "alice@example.com:{PLAIN}a\nbob@elsewhere.example:{PLAIN}b",
        "x@example.com:y@example.com",
    );
    assert_eq!(
        errs,
        [
            "mail domain \"not a domain\": domain is not a valid host name",
            "account bob@elsewhere.example is not in our mail domains (example.com)",
            "alias x@example.com: target y@example.com does not exist (no account, alias or catch-all)",
        ]
    );
    assert_eq!(errors(&[], "", ""), ["no mail domains configured"]);
}

#[test]
fn chains_longer_than_the_limit_are_refused_and_cut() {
    // a0 -> a1 -> … -> a11 -> alice: 12 hops.
    let mut aliases = String::new();
    for i in 0..11 {
        aliases.push_str(&format!("a{i}@example.com:a{}@example.com\n", i + 1));
    }
    aliases.push_str("a11@example.com:alice@example.com\n");
    let errs = errors(&["example.com"], "alice@example.com:{PLAIN}a", &aliases);
    assert_eq!(
        errs,
        [
            "alias a0@example.com: chain of 12 aliases is longer than 10",
            "alias a1@example.com: chain of 11 aliases is longer than 10",
        ]
    );

    // Exactly the limit is fine, and resolve follows it to the end.
    let mut ok = String::new();
    for i in 0..9 {
        ok.push_str(&format!("a{i}@example.com:a{}@example.com\n", i + 1));
    }
    ok.push_str("a9@example.com:alice@example.com\n");
    let dir = build(&["example.com"], "alice@example.com:{PLAIN}a", &ok).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(resolved(&dir, "a0@example.com"), ["mailbox alice@example.com"]);
}

#[test]
fn resolve_cuts_depth_even_if_validation_was_bypassed() {
    // Build a valid directory, then check the runtime guard on its own: a chain of 11
    // hops from a0 is cut (depth > 10) and yields nobody rather than recursing forever.
    let mut aliases = String::new();
    for i in 0..10 {
        aliases.push_str(&format!("a{i}@example.com:a{}@example.com\n", i + 1));
    }
    aliases.push_str("a10@example.com:alice@example.com\n");
    let parsed = parse_aliases(&aliases).unwrap_or_default();
    let accounts = parse_accounts("alice@example.com:{PLAIN}a").unwrap_or_default();
    let mut snap = Snapshot::build(vec!["example.com".into()], accounts, vec![]).unwrap_or_else(|e| panic!("{e:?}"));
    for rule in parsed {
        if let AliasRule::Alias { from, to } = rule {
            snap.aliases.insert(from, to);
        }
    }
    let mailboxes = |snap: &Snapshot, a: &str| snap.resolve(&addr(a)).len();
    assert_eq!(mailboxes(&snap, "a0@example.com"), 0);
    assert_eq!(snap.resolve(&addr("a1@example.com")), [Recipient::Mailbox(addr("alice@example.com"))]);
    // And a loop inserted behind validation's back terminates.
    snap.aliases.insert(addr("a10@example.com"), vec![addr("a0@example.com")]);
    assert_eq!(mailboxes(&snap, "a5@example.com"), 0);
}

#[test]
fn diamond_shaped_aliases_are_not_loops() {
    let dir = build(
        &["example.com"],
        "alice@example.com:{PLAIN}a",
        "top@example.com:left@example.com right@example.com\n\
         left@example.com:bottom@example.com\n\
         right@example.com:bottom@example.com\n\
         bottom@example.com:alice@example.com",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(resolved(&dir, "top@example.com"), ["mailbox alice@example.com"]);
}

#[test]
fn shareable_between_sessions() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Directory>();
}

#[test]
fn garbage_in_never_panics() {
    let dir = office();
    let mut seed: u64 = 0x0BAD_5EED_1234_5678;
    let alphabet: Vec<char> = "abt+@.:\"\\ex-mplcon/ü\r\n".chars().collect();
    for _ in 0..3_000 {
        let len = (crate::testing::xorshift(&mut seed) % 30) as usize;
        let s: String =
            (0..len).map(|i| alphabet[(seed.rotate_left(i as u32 * 5) % alphabet.len() as u64) as usize]).collect();
        let _ = dir.authenticate(&s, &s);
        let _ = dir.is_local_domain(&s);
        if let Ok(a) = Address::parse(&s) {
            let _ = dir.resolve(&a);
            let _ = dir.may_send_as(&addr("alice@example.com"), &a);
        }
    }
}

#[test]
fn a_replaced_directory_answers_from_the_new_set_at_once() {
    let dir = build(&["example.com"], "alice@example.com:{PLAIN}old", "").unwrap();
    assert!(dir.authenticate("alice", "old").is_some(), "and now cached");
    let next = build(&["example.com"], "alice@example.com:{PLAIN}new\nbob@example.com:{PLAIN}b", "").unwrap();
    dir.replace_with(next);
    assert!(dir.authenticate("alice", "old").is_none(), "the cached old password is gone with its snapshot");
    assert!(dir.authenticate("alice", "new").is_some());
    assert_eq!(resolved(&dir, "bob@example.com"), ["mailbox bob@example.com"]);
    assert_eq!(dir.accounts().len(), 2);
}
