//! Table-driven tests for every variable: defaults, good values, and the error
//! each bad value produces.

use super::*;

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let mut all: Vec<(String, String)> = vec![("MAILROOM_HOSTNAME".into(), "mx.example.com".into())];
    for (k, v) in pairs {
        all.retain(|(key, _)| key != k);
        all.push((k.to_string(), v.to_string()));
    }
    Config::load(&EnvSource::from_pairs(all)).map(|(c, _)| c)
}

fn error_for(pairs: &[(&str, &str)]) -> Vec<String> {
    match load(pairs) {
        Ok(_) => panic!("{pairs:?} should fail"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn defaults_follow_interface_md() {
    let c = load(&[]).unwrap();
    assert_eq!(c.hostname, "mx.example.com");
    assert_eq!(c.domains, vec!["example.com"]);
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.store(), &StoreConfig::Maildir);
    assert_eq!(c.acme.mode, AcmeMode::Off, "example.com is reserved: no ACME by default");
    assert_eq!(c.acme.challenge, AcmeChallenge::TlsAlpn01);
    assert_eq!(c.limits.message_size, 25 * 1024 * 1024);
    assert_eq!(c.limits.disk_min_free, 64 * 1024 * 1024);
    assert_eq!(c.limits.smtp_command_timeout, Duration::from_secs(300), "RFC 5321 4.5.3.2.7");
    assert_eq!(c.limits.login_timeout, Duration::from_secs(120));
    assert_eq!(c.limits.write_timeout, Duration::from_secs(300));
    assert_eq!(c.queue.lifetime, Duration::from_secs(5 * 86400));
    assert_eq!(c.queue.retry_min, Duration::from_secs(300));
    assert_eq!(c.queue.retry_max, Duration::from_secs(4 * 3600));
    assert_eq!(c.outbound_smtp_port, 25);
    assert_eq!(c.scan.failure, ScannerFailure::Tempfail);
    assert_eq!(c.log, "info");
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(c.trusted_networks.is_empty());
    let ports: Vec<(Protocol, Vec<String>)> =
        c.listen.addrs.iter().map(|(p, a)| (*p, a.iter().map(|x| x.to_string()).collect())).collect();
    let want = [
        (Protocol::Smtp, ":25"),
        (Protocol::Submission, ":587"),
        (Protocol::Submissions, ":465"),
        (Protocol::Imap, ":143"),
        (Protocol::Imaps, ":993"),
        (Protocol::Pop3, ":110"),
        (Protocol::Pop3s, ":995"),
        (Protocol::ManageSieve, ":4190"),
        (Protocol::Http, ":80"),
        (Protocol::Https, ":443"),
        (Protocol::Metrics, ":9090"),
    ];
    for (p, addr) in want {
        assert!(ports.contains(&(p, vec![addr.to_string()])), "{p:?}");
    }
    assert!(c.listen_addrs(Protocol::Lmtp).is_empty(), "LMTP is off by default");
}

#[test]
fn public_hostname_defaults_to_letsencrypt() {
    let c = load(&[("MAILROOM_HOSTNAME", "mail.mailroom.dev")]).unwrap();
    assert_eq!(c.acme.mode, AcmeMode::Directory(LETSENCRYPT.into()));
    assert_eq!(c.domains, vec!["mailroom.dev"]);
}

#[test]
fn good_values_parse() {
    let c = load(&[
        ("MAILROOM_DOMAINS", "Example.org, bücher.example"),
        ("MAILROOM_ACME", "letsencrypt-staging"),
        ("MAILROOM_ACME_CHALLENGE", "http-01"),
        ("MAILROOM_SMTP_LISTEN", "127.0.0.1:2525,[::1]:2525"),
        ("MAILROOM_POP3_LISTEN", "off"),
        ("MAILROOM_MESSAGE_SIZE_LIMIT", "50M"),
        ("MAILROOM_TRUSTED_NETWORKS", "10.0.0.0/8, 2001:db8::/32"),
        ("MAILROOM_QUEUE_LIFETIME", "2d"),
        ("MAILROOM_DNS_SERVERS", "127.0.0.1:5353"),
        ("MAILROOM_RELAY_HOST", "smtp.example.net:587"),
        ("MAILROOM_RELAY_USERNAME", "u"),
        ("MAILROOM_RELAY_PASSWORD", "p"),
        ("MAILROOM_SCANNER_FAILURE", "accept"),
        ("MAILROOM_LOG_FORMAT", "json"),
        ("MAILROOM_CLAMD", "/run/clamd.sock"),
        ("MAILROOM_RSPAMD_URL", "http://127.0.0.1:11333"),
        ("MAILROOM_STORE", "postgresql://mail:pw@[2001:db8::5]:6432/mail?sslmode=require"),
    ])
    .unwrap();
    let StoreConfig::Postgres(pg) = c.store() else { panic!("{:?}", c.store()) };
    assert_eq!((pg.host(), pg.port(), pg.database()), ("2001:db8::5", 6432, "mail"));
    assert_eq!(pg.url(), "postgresql://mail:pw@[2001:db8::5]:6432/mail?sslmode=require");
    assert_eq!(c.domains, vec!["example.org", "xn--bcher-kva.example"]);
    assert_eq!(c.acme.mode, AcmeMode::Directory(LETSENCRYPT_STAGING.into()));
    assert_eq!(c.acme.challenge, AcmeChallenge::Http01);
    assert_eq!(c.listen_addrs(Protocol::Smtp).len(), 2);
    assert!(c.listen_addrs(Protocol::Pop3).is_empty());
    assert_eq!(c.limits.message_size, 50 * 1024 * 1024);
    assert_eq!(c.trusted_networks.len(), 2);
    assert_eq!(c.queue.lifetime, Duration::from_secs(2 * 86400));
    assert_eq!(c.relay_host.as_ref().unwrap().port, 587);
    assert_eq!(c.scan.failure, ScannerFailure::Accept);
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn outbound_sources_are_addresses_of_this_host() {
    let c = load(&[]).unwrap();
    assert_eq!(c.outbound.ipv6_mode, crate::config::OutboundIpv6::Auto);
    assert_eq!((c.outbound.ipv4, c.outbound.ipv6), (None, None));
    let c = load(&[
        ("MAILROOM_OUTBOUND_IPV6_MODE", "OFF"),
        ("MAILROOM_OUTBOUND_IPV4", "127.0.0.1"),
        ("MAILROOM_OUTBOUND_IPV6", "::1"),
    ])
    .unwrap();
    assert_eq!(c.outbound.ipv6_mode, crate::config::OutboundIpv6::Off);
    assert_eq!(c.outbound.ipv4, Some(std::net::Ipv4Addr::LOCALHOST));
    assert_eq!(c.outbound.ipv6, Some(std::net::Ipv6Addr::LOCALHOST));
}

#[test]
fn each_bad_value_names_variable_value_and_expectation() {
    let table: &[(&str, &str, &str)] = &[
        ("MAILROOM_HOSTNAME", "bad host", "domain name"),
        ("MAILROOM_DOMAINS", "a.example,,-x", "domain"),
        ("MAILROOM_ACME", "maybe", "letsencrypt"),
        ("MAILROOM_ACME_EMAIL", "not-an-address", "email address"),
        ("MAILROOM_ACME_CHALLENGE", "dns-01", "tls-alpn-01"),
        ("MAILROOM_ACME_CA_FILE", "/nonexistent/ca.pem", "readable file"),
        ("MAILROOM_PUBLIC_IPV4", "300.1.1.1", "IPv4"),
        ("MAILROOM_PUBLIC_IPV6", "1.2.3.4", "IPv6"),
        ("MAILROOM_SMTP_LISTEN", "25", "listen addresses"),
        ("MAILROOM_IMAPS_LISTEN", "localhost:993", "listen addresses"),
        ("MAILROOM_MESSAGE_SIZE_LIMIT", "huge", "size"),
        ("MAILROOM_DISK_MIN_FREE", "1%", "`0` for off"),
        ("MAILROOM_SMTP_COMMAND_TIMEOUT", "500ms", "at least 1s"),
        ("MAILROOM_MAX_CONNECTIONS", "0", "greater than 0"),
        ("MAILROOM_RELAY_HOST", "smarthost", "host:port"),
        ("MAILROOM_DNS_SERVERS", "dns.example", "resolver"),
        ("MAILROOM_TRUSTED_NETWORKS", "the-office", "CIDR"),
        ("MAILROOM_PROXY_PROTOCOL_FROM", "10.0.0.0/40", "CIDR"),
        ("MAILROOM_QUEUE_LIFETIME", "5 days", "duration"),
        ("MAILROOM_QUEUE_RETRY_MIN", "-1m", "duration"),
        ("MAILROOM_OUTBOUND_SMTP_PORT", "70000", "port"),
        ("MAILROOM_OUTBOUND_IPV6_MODE", "maybe", "`auto`, `on` or `off`"),
        ("MAILROOM_OUTBOUND_IPV4", "::1", "IPv4"),
        ("MAILROOM_OUTBOUND_IPV6", "127.0.0.1", "IPv6"),
        ("MAILROOM_OUTBOUND_IPV4", "192.0.2.254", "192.0.2.254 is on no network interface"),
        ("MAILROOM_OUTBOUND_IPV6", "2001:db8::dead", "2001:db8::dead is on no network interface"),
        ("MAILROOM_DNSBL", "zen spamhaus", "domain"),
        ("MAILROOM_RSPAMD_URL", "rspamd:11333", "URL"),
        ("MAILROOM_CLAMD", "clamd", "host:port"),
        ("MAILROOM_SCANNER_FAILURE", "ignore", "tempfail"),
        ("MAILROOM_LOG_FORMAT", "xml", "json"),
        ("MAILROOM_DANE", "yes", "`on` or `off`"),
        ("MAILROOM_DKIM_SELECTOR", "bad selector", "DNS label"),
        ("MAILROOM_ACCOUNTS", "nobody", "MAILROOM_ACCOUNTS"),
        ("MAILROOM_STORE", "mysql://db/mail", "`maildir` or a PostgreSQL URL"),
        ("MAILROOM_STORE", "postgres://db", "database name"),
        ("MAILROOM_SIEVE_BEFORE", "require \"fileinto\";\r\nfileinto;\r\n", "line 2"),
        ("MAILROOM_SIEVE_AFTER", "/nonexistent/after.sieve", "readable Sieve script file"),
    ];
    for (var, value, expected) in table {
        let errors = error_for(&[(var, value)]);
        assert_eq!(errors.len(), 1, "{var}={value}: {errors:?}");
        let e = &errors[0];
        assert!(e.starts_with(var), "{e}");
        assert!(e.to_lowercase().contains(&expected.to_lowercase()), "{var}: {e} should mention {expected}");
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let errors = error_for(&[
        ("MAILROOM_SMTP_LISTEN", "nope"),
        ("MAILROOM_LOG_FORMAT", "xml"),
        ("MAILROOM_QUEUE_LIFETIME", "forever"),
    ]);
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn secrets_are_never_echoed() {
    let errors = error_for(&[
        ("MAILROOM_RELAY_HOST", "x.example:25"),
        ("MAILROOM_RELAY_USERNAME", "u"),
        ("MAILROOM_RELAY_PASSWORD", ""),
    ]);
    assert!(errors.iter().any(|e| e.contains("MAILROOM_RELAY_PASSWORD")), "{errors:?}");
    let c = load(&[
        ("MAILROOM_RELAY_HOST", "x.example:25"),
        ("MAILROOM_RELAY_USERNAME", "u"),
        ("MAILROOM_RELAY_PASSWORD", "hunter2"),
    ])
    .unwrap();
    let shown = format!("{:?}", c.effective());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

/// `MAILROOM_STORE` may hold a database password: `check-config` shows the URL with
/// `****` for it, and neither an error nor `{:?}` of the config shows it.
#[test]
fn store_password_is_never_echoed() {
    let url = "postgres://mail:Hunter2%2Fpg@db.example.org:5432/mail?sslmode=verify-full";
    let c = load(&[("MAILROOM_STORE", url)]).unwrap();
    let StoreConfig::Postgres(pg) = c.store() else { panic!("{:?}", c.store()) };
    assert_eq!(pg.url(), url, "the connector gets the URL as given");
    let shown: Vec<(String, String)> = c.effective();
    assert!(shown.contains(&(
        "MAILROOM_STORE".to_string(),
        "postgres://mail:****@db.example.org:5432/mail?sslmode=verify-full".to_string()
    )));
    let debug = format!("{c:?}");
    for text in [format!("{shown:?}"), debug.clone()] {
        assert!(!text.contains("Hunter2"), "{text}");
    }
    assert!(debug.contains("postgres://mail:****@db.example.org"), "{debug}");

    // Bad values, the password in each (and a misplaced `/` or `?` splitting it).
    for bad in [
        "postgres://mail:Hunter2pg@db.example.org/mail?sslmode=maybe",
        "postgres://mail:Hunter2pg@db.example.org:port/mail",
        "postgres://mail:Hunter2pg@db.example.org/mail?password=Hunter2pg",
        "postgres://mail:Hunter2/pg@db.example.org/mail",
        "postgres://mail:Hunter2?pg@db.example.org/mail",
        "postgres://mail:Hunter2pg@db.example.org",
        "mysql://mail:Hunter2pg@db.example.org/mail",
    ] {
        let errors = error_for(&[("MAILROOM_STORE", bad)]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("MAILROOM_STORE: invalid value (not shown: secret); expected "), "{errors:?}");
        assert!(!errors[0].contains("Hunter2") && !errors[0].contains("db.example.org"), "{errors:?}");
        let Err(e) = load(&[("MAILROOM_STORE", bad)]) else { unreachable!() };
        assert!(!format!("{e:?}").contains("Hunter2"), "{e:?}");
    }
}

#[test]
fn store_file_variant_feeds_the_same_parser() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("store");
    std::fs::write(&f, "postgres://mail:Hunter2pg@db.internal/mail\n").unwrap();
    let c = load(&[("MAILROOM_STORE_FILE", f.to_str().unwrap())]).unwrap();
    let StoreConfig::Postgres(pg) = c.store() else { panic!("{:?}", c.store()) };
    assert_eq!(pg.url(), "postgres://mail:Hunter2pg@db.internal/mail");
    assert_eq!(pg.redacted(), "postgres://mail:****@db.internal/mail");
    std::fs::write(&f, "postgres://mail:Hunter2pg@db.internal\n").unwrap();
    let errors = error_for(&[("MAILROOM_STORE_FILE", f.to_str().unwrap())]);
    assert!(errors[0].starts_with("MAILROOM_STORE:") && errors[0].contains("database name"), "{errors:?}");
    assert!(!errors[0].contains("Hunter2"), "{errors:?}");
    let errors = error_for(&[("MAILROOM_STORE", "maildir"), ("MAILROOM_STORE_FILE", f.to_str().unwrap())]);
    assert!(errors[0].contains("give only one") && !errors[0].contains("Hunter2"), "{errors:?}");
}

#[test]
fn port_clash_is_an_error() {
    let errors = error_for(&[("MAILROOM_SMTP_LISTEN", ":2525"), ("MAILROOM_SUBMISSION_LISTEN", "127.0.0.1:2525")]);
    assert!(errors[0].contains("clashes"), "{errors:?}");
}

#[test]
fn tls_files_must_come_in_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    std::fs::write(&cert, "x").unwrap();
    let errors = error_for(&[("MAILROOM_TLS_CERT_FILE", cert.to_str().unwrap())]);
    assert!(errors[0].starts_with("MAILROOM_TLS_KEY_FILE"), "{errors:?}");
}

#[test]
fn file_variant_feeds_the_same_parser() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("domains");
    std::fs::write(&f, "a.example,b.example\n").unwrap();
    let c = load(&[("MAILROOM_DOMAINS_FILE", f.to_str().unwrap())]).unwrap();
    assert_eq!(c.domains, vec!["a.example", "b.example"]);
    let errors = error_for(&[("MAILROOM_DOMAINS_FILE", "/nonexistent")]);
    assert!(errors[0].starts_with("MAILROOM_DOMAINS_FILE"), "{errors:?}");
}

#[test]
fn effective_lists_every_variable() {
    let c = load(&[]).unwrap();
    let shown: Vec<String> = c.effective().into_iter().map(|(k, _)| k).collect();
    for name in VARIABLES.iter().map(|v| v.name) {
        assert!(shown.contains(&format!("{PREFIX}{name}")), "{name} missing from check-config output");
    }
}

#[test]
fn rate_limits() {
    let c = load(&[]).unwrap();
    assert_eq!(
        (c.limits.connections_per_minute, c.limits.messages_per_hour, c.limits.recipients_per_hour),
        (60, 500, 300)
    );
    let c = load(&[
        ("MAILROOM_CONNECTIONS_PER_MINUTE", "600"),
        ("MAILROOM_MESSAGES_PER_HOUR", "5000"),
        ("MAILROOM_RECIPIENTS_PER_HOUR", "20000"),
    ])
    .unwrap();
    assert_eq!(
        (c.limits.connections_per_minute, c.limits.messages_per_hour, c.limits.recipients_per_hour),
        (600, 5000, 20000)
    );
    assert_eq!(
        error_for(&[("MAILROOM_RECIPIENTS_PER_HOUR", "0")]),
        ["MAILROOM_RECIPIENTS_PER_HOUR: invalid value \"0\"; expected a whole number of at least 1"]
    );
    assert_eq!(error_for(&[("MAILROOM_RECIPIENTS_PER_HOUR", "-5")]).len(), 1);
    assert_eq!(
        error_for(&[("MAILROOM_MESSAGES_PER_HOUR", "0")]),
        ["MAILROOM_MESSAGES_PER_HOUR: invalid value \"0\"; expected a whole number of at least 1"]
    );
    assert_eq!(error_for(&[("MAILROOM_CONNECTIONS_PER_MINUTE", "lots")]).len(), 1);
}

/// env.example and docs/interface.md say what the table in variables.rs says: every
/// variable is named, with the same default.
#[test]
fn docs_follow_the_variable_table() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/env.example")).unwrap();
    let interface = std::fs::read_to_string(format!("{root}/docs/interface.md")).unwrap();
    for var in VARIABLES {
        let full = format!("{PREFIX}{}", var.name);
        let line = example.lines().find_map(|l| l.strip_prefix(&format!("#{full}=")));
        let Some(example_value) = line else { panic!("env.example has no #{full}= line") };
        let (names, defaults) =
            interface_row(&interface, var.name).unwrap_or_else(|| panic!("{full} not in interface.md"));
        match var.default {
            DefaultValue::Text(text) => {
                assert_eq!(example_value, text, "env.example's default of {full}");
                let i = names.iter().position(|n| *n == full || *n == var.name.trim_end_matches("_LISTEN")).unwrap();
                let documented = if names.len() == defaults.len() { &defaults[i] } else { &defaults[0] };
                assert_eq!(documented, text, "interface.md's default of {full}");
            }
            DefaultValue::Empty(words) => {
                assert_eq!(example_value, "", "env.example gives {full} a value, but it has none by default");
                assert!(defaults_cell(&interface, &full).contains(words), "interface.md: {full} defaults to {words}");
            }
            DefaultValue::Derived(words, _) => {
                assert!(defaults_cell(&interface, &full).contains(words), "interface.md: {full} defaults to {words}")
            }
        }
    }
}

/// The variables table row naming `name`: the backquoted words of its first cell and
/// of its default cell. The listeners share one `MAILROOM_<P>_LISTEN` row naming each P.
fn interface_row(interface: &str, name: &str) -> Option<(Vec<String>, Vec<String>)> {
    let quoted = |cell: &str| cell.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>();
    interface.lines().filter(|l| l.starts_with("| `MAILROOM_")).find_map(|line| {
        let cells: Vec<&str> = line.split('|').collect();
        let mut names = quoted(cells[1]);
        let listen = names.first().is_some_and(|n| n == "MAILROOM_<P>_LISTEN");
        if listen {
            names.remove(0);
        }
        let wanted = if listen { name.strip_suffix("_LISTEN")?.to_string() } else { format!("{PREFIX}{name}") };
        names.contains(&wanted).then(|| (names, quoted(cells[2])))
    })
}

fn defaults_cell(interface: &str, full: &str) -> String {
    let line = interface
        .lines()
        .find(|l| l.starts_with("| `MAILROOM_") && l.split('|').nth(1).unwrap().contains(&format!("`{full}`")));
    line.and_then(|l| l.split('|').nth(2)).unwrap_or_default().to_string()
}

#[test]
fn sieve_quotas_have_defaults_and_bounds() {
    let c = load(&[]).unwrap();
    assert_eq!((c.limits.sieve_max_script_size, c.limits.sieve_max_scripts), (64 * 1024, 16));
    assert_eq!(c.listen_addrs(Protocol::ManageSieve).len(), 1, "ManageSieve listens on :4190 by default");
    let c = load(&[("MAILROOM_SIEVE_MAX_SCRIPT_SIZE", "1M"), ("MAILROOM_SIEVE_MAX_SCRIPTS", "3")]).unwrap();
    assert_eq!((c.limits.sieve_max_script_size, c.limits.sieve_max_scripts), (1024 * 1024, 3));
    let errors = error_for(&[("MAILROOM_SIEVE_MAX_SCRIPT_SIZE", "1G"), ("MAILROOM_SIEVE_MAX_SCRIPTS", "0")]);
    assert!(errors.iter().any(|e| e.starts_with("MAILROOM_SIEVE_MAX_SCRIPT_SIZE")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("MAILROOM_SIEVE_MAX_SCRIPTS")), "{errors:?}");
}

#[test]
fn admin_sieve_scripts_inline_or_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("after.sieve");
    std::fs::write(&path, "require \"fileinto\";\r\nfileinto \"Archive\";\r\n").unwrap();
    let c = load(&[
        ("MAILROOM_SIEVE_BEFORE", "require \"fileinto\"; if header :contains \"Subject\" \"x\" { fileinto \"X\"; }"),
        ("MAILROOM_SIEVE_AFTER", path.to_str().unwrap()),
    ])
    .unwrap();
    assert_eq!(c.sieve.before.as_ref().map(|s| s.path.is_none()), Some(true));
    let after = c.sieve.after.as_ref().unwrap();
    assert_eq!(after.path.as_deref(), Some(path.as_path()));
    assert!(after.text.contains("Archive"));
}

#[test]
fn relay_credentials_need_a_relay_that_requires_tls() {
    let errors = error_for(&[
        ("MAILROOM_RELAY_HOST", "smtp+insecure://relay.lan"),
        ("MAILROOM_RELAY_USERNAME", "u"),
        ("MAILROOM_RELAY_PASSWORD", "hunter2"),
    ]);
    assert!(
        errors.iter().any(|e| e.contains("MAILROOM_RELAY_USERNAME") && e.contains("never sent without")),
        "{errors:?}"
    );
    assert!(errors.iter().all(|e| !e.contains("hunter2")), "{errors:?}");
    for (url, mode, port) in [
        ("smtps://relay.example", RelayMode::Smtps, 465),
        ("smtp://relay.example", RelayMode::StartTls, 587),
        ("relay.example:2525", RelayMode::StartTls, 2525),
    ] {
        let c =
            load(&[("MAILROOM_RELAY_HOST", url), ("MAILROOM_RELAY_USERNAME", "u"), ("MAILROOM_RELAY_PASSWORD", "p")])
                .unwrap();
        let relay = c.relay_host.unwrap();
        assert_eq!((relay.mode, relay.port, relay.username.as_deref()), (mode, port, Some("u")), "{url}");
    }
}

#[test]
fn dmarc_reports_are_on_unless_switched_off() {
    assert!(load(&[]).unwrap().dmarc_reports);
    assert!(!load(&[("MAILROOM_DMARC_REPORTS", "off")]).unwrap().dmarc_reports);
    assert!(load(&[]).unwrap().tls_reports);
    assert!(!load(&[("MAILROOM_TLS_REPORTS", "off")]).unwrap().tls_reports);
    let errors = error_for(&[("MAILROOM_DMARC_REPORTS", "maybe")]);
    assert!(
        errors.iter().any(|e| e.starts_with("MAILROOM_DMARC_REPORTS") && e.contains("`on` or `off`")),
        "{errors:?}"
    );
}

/// The example key of RFC 6605 section 6.1 (ECDSA P-256), in zone-file form.
const DNSKEY: &str = "example.net. 3600 IN DNSKEY 257 3 13 GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edbkrSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA==\n";

#[test]
fn dnssec_trust_anchors_must_be_dnskey_records() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("anchors.keys");
    std::fs::write(&good, DNSKEY).unwrap();
    let c = load(&[("MAILROOM_DNSSEC_TRUST_ANCHORS", good.to_str().unwrap())]).unwrap();
    assert_eq!(c.dnssec_trust_anchors.as_deref(), Some(good.as_path()));
    assert_eq!(load(&[]).unwrap().dnssec_trust_anchors, None);
    let bad = dir.path().join("bad.keys");
    std::fs::write(&bad, "example.net. 3600 IN A 192.0.2.1\n").unwrap();
    for (path, expected) in
        [(bad.to_str().unwrap(), "DNSKEY records in zone-file form"), ("/nonexistent/k", "readable")]
    {
        let errors = error_for(&[("MAILROOM_DNSSEC_TRUST_ANCHORS", path)]);
        assert!(
            errors.iter().any(|e| e.starts_with("MAILROOM_DNSSEC_TRUST_ANCHORS") && e.contains(expected)),
            "{path}: {errors:?}"
        );
    }
}

#[test]
fn relay_ca_file_must_hold_pem_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["relay.example".to_string()]).unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, cert.cert.pem()).unwrap();
    let c = load(&[("MAILROOM_RELAY_CA_FILE", good.to_str().unwrap())]).unwrap();
    assert_eq!(c.relay_ca_file.as_deref(), Some(good.as_path()));
    assert_eq!(pem_roots(&good).unwrap().len(), 1);
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    for (path, expected) in [(bad.to_str().unwrap(), "CERTIFICATE"), ("/nonexistent/ca.pem", "readable")] {
        let errors = error_for(&[("MAILROOM_RELAY_CA_FILE", path)]);
        assert!(
            errors.iter().any(|e| e.starts_with("MAILROOM_RELAY_CA_FILE") && e.contains(expected)),
            "{path}: {errors:?}"
        );
    }
}
