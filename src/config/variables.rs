//! The table of every `MAILROOM_*` variable: the one place a variable is declared.
//!
//! Each row gives the name, whether the value is a secret, the default, one line of
//! documentation, how a value is parsed into [`Config`] and how the setting is shown
//! by `check-config`. Everything else is derived from this table: the list of known
//! variables (unknown ones are warned about), `Config::load`'s loop, the error report
//! and `Config::effective`. A test checks env.example and docs/interface.md against it,
//! so adding a variable is adding a row here (and its field in `Config`).

use std::path::PathBuf;
use std::time::Duration;

use super::parse::{self, ListenAddr};
use super::{
    AcmeChallenge, AcmeExtraName, AcmeMode, Config, LogFormat, Protocol, RelayHost, ScannerFailure, StoreConfig,
};
use super::{LETSENCRYPT, LETSENCRYPT_STAGING};
use crate::{accounts, units};

/// What an unset variable means.
#[derive(Clone, Copy)]
pub enum DefaultValue {
    /// A value parsed exactly like one the operator gives; env.example shows it after `=`
    /// and docs/interface.md in backticks.
    Text(&'static str),
    /// Nothing (no file, an empty list, a choice made elsewhere); the words
    /// docs/interface.md uses for it. env.example leaves the value empty.
    Empty(&'static str),
    /// Worked out from the variables above it or from the host (the hostname from the
    /// machine, the domains from the hostname); the words docs/interface.md uses.
    /// env.example shows an example value.
    Derived(&'static str, fn(&mut Config)),
}

/// One `MAILROOM_*` variable.
pub struct Variable {
    /// Without the `MAILROOM_` prefix.
    pub name: &'static str,
    /// The value is never echoed in an error, and `show` prints it redacted (or not
    /// at all).
    pub secret: bool,
    pub default: DefaultValue,
    /// What it is for, in one line.
    pub doc: &'static str,
    /// Parse a value into the config, or say what was expected.
    pub(super) set: fn(&mut Config, &str) -> Result<(), String>,
    /// The setting as `check-config` prints it (secrets redacted).
    pub(super) show: fn(&Config) -> String,
}

impl Variable {
    /// The row for `name` (without prefix).
    pub fn find(name: &str) -> Option<&'static Variable> {
        VARIABLES.iter().find(|v| v.name == name)
    }
}

/// A non-secret variable read into one field of `Config` by one parser.
macro_rules! var {
    ($name:literal, $default:expr, $doc:literal, $($field:ident).+ = $parse:expr, show $show:expr) => {
        Variable {
            name: $name,
            secret: false,
            default: $default,
            doc: $doc,
            set: |c, v| {
                c.$($field).+ = ($parse)(v)?;
                Ok(())
            },
            show: |c| ($show)(&c.$($field).+),
        }
    };
}

/// One `MAILROOM_<P>_LISTEN` row.
macro_rules! listen {
    ($name:literal, $protocol:ident, $default:literal, $doc:literal) => {
        Variable {
            name: $name,
            secret: false,
            default: DefaultValue::Text($default),
            doc: $doc,
            set: |c, v| {
                c.listen.set(Protocol::$protocol, parse::listen_list(v)?);
                Ok(())
            },
            show: |c| show_listen(c.listen_addrs(Protocol::$protocol)),
        }
    };
}

use DefaultValue::{Derived, Empty, Text};

/// Every variable mailroom reads, in the order `check-config` prints them.
pub static VARIABLES: &[Variable] = &[
    // --- identity ---
    var!("HOSTNAME", Derived("the system hostname", system_hostname),
        "FQDN of this server: MX target, SMTP banner, certificate name",
        hostname = parse::domain_name, show String::clone),
    var!("DOMAINS", Derived("`MAILROOM_HOSTNAME` minus its first label", domains_from_hostname),
        "comma-separated mail domains; the first is primary",
        domains = parse::domain_list, show |d: &Vec<String>| d.join(",")),
    var!("DATA_DIR", Text("./data"),
        "everything persistent: mail, queue, keys, certificates, indexes",
        data_dir = |v: &str| Ok::<_, String>(PathBuf::from(v.trim())), show |p: &PathBuf| p.display().to_string()),
    // A PostgreSQL URL may hold a password: secret, so an error never echoes the value;
    // check-config shows the URL with the password as `****`.
    Variable {
        name: "STORE",
        secret: true,
        default: Text("maildir"),
        doc: "where mail is kept: `maildir` (in the data dir) or a PostgreSQL URL `postgres://user:password@host/db?sslmode=verify-full`",
        set: |c, v| {
            c.store = parse::store(v)?;
            Ok(())
        },
        show: |c| match c.store() {
            StoreConfig::Maildir => "maildir".to_string(),
            StoreConfig::Postgres(url) => url.redacted(),
        },
    },
    Variable {
        name: "BLOB_STORE",
        secret: false,
        default: Text("postgres"),
        doc: "where a PostgreSQL store keeps message bodies: `postgres` (in the database) or an S3 bucket `s3://bucket[/prefix]?endpoint=https://host[:port]&region=REGION`",
        set: |c, v| {
            c.blob_store = super::s3::blob_store(v)?;
            Ok(())
        },
        show: |c| c.blob_store.as_ref().map_or_else(|| "postgres".to_string(), |u| u.as_str().to_string()),
    },
    Variable {
        name: "S3_ACCESS_KEY_ID",
        secret: true,
        default: Empty("empty"),
        doc: "the access key id for the bucket of MAILROOM_BLOB_STORE",
        set: |c, v| {
            c.s3_access_key_id = Some(v.trim().to_string());
            Ok(())
        },
        show: |c| c.s3_access_key_id.clone().unwrap_or_default(),
    },
    Variable {
        name: "S3_SECRET_ACCESS_KEY",
        secret: true,
        default: Empty("empty"),
        doc: "the secret access key for the bucket of MAILROOM_BLOB_STORE",
        set: |c, v| {
            c.s3_secret_access_key = Some(super::s3::Secret(v.trim().to_string()));
            Ok(())
        },
        show: |c| if c.s3_secret_access_key.is_some() { "<redacted>".into() } else { String::new() },
    },
    // --- accounts ---
    Variable {
        name: "ACCOUNTS",
        secret: true,
        default: Empty("empty"),
        doc: "accounts, `address:hash[:quota]`, one per line or comma-separated",
        set: |c, v| {
            c.accounts.entries = accounts::parse_accounts(v).map_err(|e| e.join("; "))?;
            Ok(())
        },
        show: show_accounts,
    },
    var!("ALIASES", Empty("empty"),
        "alias, catch-all and alias-domain rules",
        accounts.aliases = |v: &str| accounts::parse_aliases(v).map_err(|e| e.join("; ")),
        show |a: &Vec<accounts::AliasRule>| format!("{} rule(s)", a.len())),
    // --- TLS and ACME ---
    var!("ACME", Derived("for a public FQDN", acme_from_hostname),
        "`off`, `letsencrypt`, `letsencrypt-staging` or an ACME directory URL",
        acme.mode = parse_acme, show show_acme),
    var!("ACME_EMAIL", Empty("empty"),
        "contact address for the ACME account",
        acme.email = |v: &str| accounts::Address::parse(v)
            .map(|a| Some(a.to_string()))
            .map_err(|_| "an email address".to_string()),
        show show_opt),
    var!("ACME_CHALLENGE", Text("tls-alpn-01"),
        "`tls-alpn-01` (answered on port 443) or `http-01` (port 80)",
        acme.challenge = |v: &str| choose(CHALLENGES, v), show |c: &AcmeChallenge| word(CHALLENGES, c)),
    var!("ACME_CA_FILE", Empty("empty"),
        "extra PEM root trusted for the ACME directory",
        acme.ca_file = |v: &str| readable_file(v).map(Some), show show_path),
    var!("ACME_EXTRA_NAMES", Empty("empty"),
        "extra certificate names per mail domain: `mta-sts`, `autoconfig`",
        acme.extra_names = parse_extra_names,
        show |n: &Vec<AcmeExtraName>| n.iter().map(|n| n.label()).collect::<Vec<_>>().join(",")),
    var!("ACME_RENEW_BEFORE", Empty("two thirds of the lifetime"),
        "renew when less than this is left",
        acme.renew_before = |v: &str| units::parse_duration(v)
            .map(Some)
            .map_err(|_| "a duration like `30d` or `12h`".to_string()),
        show |d: &Option<Duration>| d.map(units::format_duration).unwrap_or_default()),
    var!("TLS_CERT_FILE", Empty("empty"),
        "a certificate to use instead of ACME (goes with MAILROOM_TLS_KEY_FILE)",
        tls_cert_file = |v: &str| readable_file(v).map(Some), show show_path),
    var!("TLS_KEY_FILE", Empty("empty"),
        "the key of MAILROOM_TLS_CERT_FILE",
        tls_key_file = |v: &str| readable_file(v).map(Some), show show_path),
    // --- DNS records and DKIM ---
    var!("DANE", Text("off"),
        "`on` or `off`: publish a DANE TLSA record (3 1 1) of our certificate's key for the MX host in `mailroom dns`, and keep that key across ACME renewals",
        dane = |v: &str| choose(ON_OFF, v), show |b: &bool| word(ON_OFF, b)),
    var!("DKIM_SELECTOR", Empty("chosen at key generation"),
        "DKIM selector prefix",
        dkim_selector = |v: &str| {
            let ok = !v.is_empty() && v.len() <= 63 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if ok { Ok(Some(v.to_ascii_lowercase())) } else { Err("a DNS label of letters, digits and hyphens".to_string()) }
        },
        show show_opt),
    var!("PUBLIC_IPV4", Empty("detected from interfaces when public"),
        "public IPv4 address printed in A and SPF records",
        public_ipv4 = |v: &str| parse::ipv4(v).map(Some), show show_opt),
    var!("PUBLIC_IPV6", Empty("detected from interfaces when public"),
        "public IPv6 address printed in AAAA and SPF records",
        public_ipv6 = |v: &str| parse::ipv6(v).map(Some), show show_opt),
    // --- listeners ---
    listen!("SMTP_LISTEN", Smtp, ":25", "SMTP for mail from the internet (STARTTLS; no AUTH)"),
    listen!("SUBMISSION_LISTEN", Submission, ":587", "submission with STARTTLS, AUTH required"),
    listen!("SUBMISSIONS_LISTEN", Submissions, ":465", "submission over implicit TLS, AUTH required"),
    listen!("IMAP_LISTEN", Imap, ":143", "IMAP with STARTTLS"),
    listen!("IMAPS_LISTEN", Imaps, ":993", "IMAP over implicit TLS"),
    listen!("POP3_LISTEN", Pop3, ":110", "POP3 with STLS"),
    listen!("POP3S_LISTEN", Pop3s, ":995", "POP3 over implicit TLS"),
    listen!("MANAGESIEVE_LISTEN", ManageSieve, ":4190", "ManageSieve (Sieve filter upload) with STARTTLS"),
    listen!("LMTP_LISTEN", Lmtp, "off", "LMTP, as the delivery agent behind another MTA"),
    listen!("HTTP_LISTEN", Http, ":80", "ACME HTTP-01, redirect to HTTPS, /.well-known/*"),
    listen!("HTTPS_LISTEN", Https, ":443", "ACME TLS-ALPN-01, MTA-STS policy, client autoconfig"),
    listen!("METRICS_LISTEN", Metrics, ":9090", "/metrics, /healthz, /readyz"),
    // --- limits ---
    var!("MESSAGE_SIZE_LIMIT", Text("25M"),
        "largest message accepted",
        limits.message_size = |v: &str| match units::parse_size(v) {
            Ok(n) if n >= 1024 => Ok(n),
            _ => Err("a size of at least 1K, like `25M` or `1G`".to_string()),
        },
        show |n: &u64| units::format_size(*n)),
    var!("DISK_MIN_FREE", Text("64M"),
        "below this much free space on the data dir, new mail is refused (452 4.3.1) and /readyz fails; 0: off",
        limits.disk_min_free = |v: &str| units::parse_size(v)
            .map_err(|_| "a size like `64M` or `1G`, or `0` for off".to_string()),
        show |n: &u64| if *n == 0 { "off".to_string() } else { units::format_size(*n) }),
    var!("SMTP_COMMAND_TIMEOUT", Text("5m"),
        "SMTP/LMTP: how long a command line may take after its first byte",
        limits.smtp_command_timeout = |v: &str| match units::parse_duration(v) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(d),
            _ => Err("a duration of at least 1s, like `5m` or `90s`".to_string()),
        },
        show show_duration),
    var!("LOGIN_TIMEOUT", Text("2m"),
        "IMAP, POP3, ManageSieve: how long a connection may take to log in",
        limits.login_timeout = |v: &str| match units::parse_duration(v) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(d),
            _ => Err("a duration of at least 1s, like `2m` or `90s`".to_string()),
        },
        show show_duration),
    var!("WRITE_TIMEOUT", Text("5m"),
        "every protocol: how long a client may take none of our output",
        limits.write_timeout = |v: &str| match units::parse_duration(v) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(d),
            _ => Err("a duration of at least 1s, like `5m` or `90s`".to_string()),
        },
        show show_duration),
    var!("MAX_CONNECTIONS", Text("10000"),
        "open connections in total, over every protocol",
        listen.max_connections = parse::positive_count, show show_display),
    var!("MAX_CONNECTIONS_PER_IP", Text("100"),
        "open connections from one client address",
        listen.max_connections_per_ip = parse::positive_count, show show_display),
    var!("CONNECTIONS_PER_MINUTE", Text("60"),
        "new connections per client address per minute",
        limits.connections_per_minute = parse_rate, show show_display),
    var!("MESSAGES_PER_HOUR", Text("500"),
        "messages per authenticated sender per hour",
        limits.messages_per_hour = parse_rate, show show_display),
    var!("RECIPIENTS_PER_HOUR", Text("300"),
        "recipients per authenticated sender per hour",
        limits.recipients_per_hour = parse_rate, show show_display),
    var!("SIEVE_MAX_SCRIPT_SIZE", Text("64K"),
        "ManageSieve: largest Sieve script accepted",
        limits.sieve_max_script_size = |v: &str| match units::parse_size(v) {
            Ok(n) if (1024..=super::sections::SIEVE_SCRIPT_CEILING).contains(&n) => Ok(n),
            _ => Err("a size from 1K to 1M, like `64K`".to_string()),
        },
        show |n: &u64| units::format_size(*n)),
    var!("SIEVE_MAX_SCRIPTS", Text("16"),
        "ManageSieve: most Sieve scripts per account",
        limits.sieve_max_scripts = parse::positive_count, show show_display),
    // --- outbound ---
    var!("RELAY_HOST", Empty("empty"),
        "smarthost for all outbound mail: `smtps://host[:465]`, `smtp://host[:587]` (or `host:port`), `smtp+insecure://host[:25]`",
        relay_host = |v: &str| RelayHost::parse(v).map(Some),
        show |r: &Option<RelayHost>| r.as_ref().map(RelayHost::to_string).unwrap_or_default()),
    Variable {
        name: "RELAY_USERNAME",
        secret: false,
        default: Empty("empty"),
        doc: "the smarthost's AUTH user (with MAILROOM_RELAY_PASSWORD)",
        set: |c, v| {
            if let Some(relay) = &mut c.relay_host {
                relay.username = Some(v.to_string());
            }
            Ok(())
        },
        show: |c| c.relay_host.as_ref().and_then(|r| r.username.clone()).unwrap_or_default(),
    },
    Variable {
        name: "RELAY_PASSWORD",
        secret: true,
        default: Empty("empty"),
        doc: "the smarthost's AUTH password",
        set: |c, v| {
            if let Some(relay) = &mut c.relay_host {
                relay.password = Some(v.to_string());
            }
            Ok(())
        },
        show: |c| {
            let set = c.relay_host.as_ref().is_some_and(|r| r.password.is_some());
            if set { "<redacted>".into() } else { String::new() }
        },
    },
    var!("RELAY_CA_FILE", Empty("empty"),
        "PEM root certificates trusted for the smarthost besides the web PKI (a relay with a private CA)",
        relay_ca_file = |v: &str| pem_roots_file(v).map(Some), show show_path),
    var!("DNS_SERVERS", Empty("system resolver"),
        "comma-separated `ip[:port]` resolvers",
        dns_servers = parse::dns_servers,
        show |s: &Vec<std::net::SocketAddr>| if s.is_empty() { "(system resolver)".to_string() } else { join(s) }),
    var!("DNSSEC_TRUST_ANCHORS", Empty("the root's keys only"),
        "a file of DNSKEY records (zone-file form) trusted besides the root's when DANE validates DNSSEC",
        dnssec_trust_anchors = |v: &str| trust_anchors_file(v).map(Some), show show_path),
    var!("TRUSTED_NETWORKS", Empty("empty"),
        "CIDRs allowed to relay without AUTH, exempt from the rate limiters",
        trusted_networks = parse::cidr_list,
        show |n: &Vec<ipnet::IpNet>| if n.is_empty() { "none".to_string() } else { join(n) }),
    var!("PROXY_PROTOCOL_FROM", Empty("empty"),
        "CIDRs of load balancers allowed to send a PROXY protocol header",
        listen.proxy_protocol_from = parse::cidr_list, show |n: &Vec<ipnet::IpNet>| join(n)),
    var!("QUEUE_LIFETIME", Text("5d"),
        "how long a message is retried before it bounces",
        queue.lifetime = parse_duration, show show_duration),
    var!("QUEUE_RETRY_MIN", Text("5m"),
        "first retry delay",
        queue.retry_min = parse_duration, show show_duration),
    var!("QUEUE_RETRY_MAX", Text("4h"),
        "the cap of the doubling retry delay",
        queue.retry_max = parse_duration, show show_duration),
    var!("OUTBOUND_SMTP_PORT", Text("25"),
        "port used to reach remote MX hosts",
        outbound_smtp_port = parse::port, show show_display),
    var!("OUTBOUND_IPV6_MODE", Text("auto"),
        "`auto`, `on` or `off`: whether MX hosts are reached over IPv6 (`auto`: only with forward-confirmed reverse DNS)",
        outbound.ipv6_mode = parse::outbound_ipv6_mode, show show_display),
    var!("OUTBOUND_IPV4", Empty("the kernel's choice"),
        "source address of outbound SMTP connections over IPv4 (an address of this host)",
        outbound.ipv4 = |v: &str| parse::ipv4(v).and_then(on_this_host).map(Some), show show_opt),
    var!("OUTBOUND_IPV6", Empty("the kernel's choice"),
        "source address of outbound SMTP connections over IPv6 (an address of this host)",
        outbound.ipv6 = |v: &str| parse::ipv6(v).and_then(on_this_host).map(Some), show show_opt),
    // --- trust and filtering ---
    var!("DMARC_REPORTS", Text("on"),
        "`on` or `off`: record DMARC results of port-25 mail and send daily aggregate reports (RFC 7489 7.2) to the domains that ask",
        dmarc_reports = |v: &str| choose(ON_OFF, v), show |b: &bool| word(ON_OFF, b)),
    var!("TLS_REPORTS", Text("on"),
        "`on` or `off`: record the TLS results of outbound deliveries and send daily SMTP TLS reports (RFC 8460) to the domains that ask",
        tls_reports = |v: &str| choose(ON_OFF, v), show |b: &bool| word(ON_OFF, b)),
    // --- web pages ---
    var!("WEB", Text("on"),
        "`on` or `off`: the account pages (`/account`) and the admin page (`/admin`) on the HTTPS port",
        web = |v: &str| choose(ON_OFF, v), show |b: &bool| word(ON_OFF, b)),
    var!("ADMINS", Empty("empty"),
        "comma-separated account addresses that may open the admin page (`/admin`); each must be an account",
        admins = admin_list, show |a: &Vec<accounts::Address>| a.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")),
    var!("DNSBL", Empty("empty"),
        "comma-separated DNS blocklist zones checked for connecting IPs",
        scan.dnsbl = |v: &str| -> Result<Vec<String>, String> { v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse::domain_name).collect() },
        show |z: &Vec<String>| z.join(",")),
    var!("RSPAMD_URL", Empty("empty"),
        "rspamd HTTP endpoint; when set, every inbound message is scanned",
        scan.rspamd_url = |v: &str| parse::http_url(v).map(Some), show show_opt),
    var!("CLAMD", Empty("empty"),
        "clamd `host:port` or socket path; when set, every message is scanned",
        scan.clamd = |v: &str| {
            let v = v.trim();
            if v.starts_with('/') || parse::host_port(v).is_ok() {
                Ok(Some(v.to_string()))
            } else {
                Err("`host:port` or an absolute socket path".to_string())
            }
        },
        show show_opt),
    var!("SCANNER_FAILURE", Text("tempfail"),
        "`tempfail` (451) or `accept` when a configured scanner is unreachable",
        scan.failure = |v: &str| choose(SCANNER_FAILURES, v), show |f: &ScannerFailure| word(SCANNER_FAILURES, f)),
    // --- sieve ---
    var!("SIEVE_BEFORE", Empty("empty"),
        "Sieve script (a file path or the script itself) run at local delivery before every account's own",
        sieve.before = |v: &str| admin_script(v).map(Some), show show_opt),
    var!("SIEVE_AFTER", Empty("empty"),
        "Sieve script (a file path or the script itself) run at local delivery after every account's own",
        sieve.after = |v: &str| admin_script(v).map(Some), show show_opt),
    // --- fetching mail from other servers ---
    var!("FETCH", Empty("empty"),
        "remote accounts fetched into local ones, one per line: `local@domain <- URL [interval=5m] [keep] [folder=INBOX]`, URL `pop3s://user@host[:port]`, `pop3://…` (STARTTLS), `imaps://user@host[:port]/FOLDER` or `imap://…` (STARTTLS)",
        fetch.sources = crate::fetch::entry::parse_entries,
        show |s: &Vec<crate::fetch::FetchSource>| s.iter().map(|s| s.name()).collect::<Vec<_>>().join("; ")),
    var!("FETCH_PASSWORDS_FILE", Empty("empty"),
        "the passwords of MAILROOM_FETCH: one `URL password` per line, the URL written exactly as in the entry",
        fetch.passwords_file = |v: &str| readable_file(v).map(Some), show show_path),
    var!("FETCH_CA_FILE", Empty("empty"),
        "PEM root certificates trusted for the servers of MAILROOM_FETCH besides the web PKI",
        fetch.ca_file = |v: &str| pem_roots_file(v).map(Some), show show_path),
    // --- logging ---
    var!("LOG", Text("info"),
        "log filter (tracing EnvFilter syntax)",
        log = |v: &str| tracing_subscriber::EnvFilter::try_new(v)
            .map(|_| v.to_string())
            .map_err(|_| "a log filter like `info` or `mailroom=debug,info`".to_string()),
        show String::clone),
    var!("LOG_FORMAT", Text("text"),
        "`text` or `json` (one JSON object per line)",
        log_format = |v: &str| choose(LOG_FORMATS, v), show |f: &LogFormat| word(LOG_FORMATS, f)),
];

/// `MAILROOM_ADMINS`: comma-separated addresses, normalised.
fn admin_list(v: &str) -> Result<Vec<accounts::Address>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|a| {
            accounts::Address::parse(a)
                .map_err(|e| format!("{a:?} is not a mail address ({e}); expected account addresses, comma-separated"))
        })
        .collect()
}

/// The words of a variable that picks one of a few values, each spelled once for both
/// parsing and `check-config`.
const CHALLENGES: &[(&str, AcmeChallenge)] =
    &[("tls-alpn-01", AcmeChallenge::TlsAlpn01), ("http-01", AcmeChallenge::Http01)];
const SCANNER_FAILURES: &[(&str, ScannerFailure)] =
    &[("tempfail", ScannerFailure::Tempfail), ("accept", ScannerFailure::Accept)];
const ON_OFF: &[(&str, bool)] = &[("on", true), ("off", false)];
const LOG_FORMATS: &[(&str, LogFormat)] = &[("text", LogFormat::Text), ("json", LogFormat::Json)];

/// The value `v` names, or "`a` or `b`" (every word, quoted) as what was expected.
fn choose<T: Copy>(choices: &[(&str, T)], v: &str) -> Result<T, String> {
    if let Some((_, value)) = choices.iter().find(|(word, _)| *word == v.trim()) {
        return Ok(*value);
    }
    let words: Vec<String> = choices.iter().map(|(word, _)| format!("`{word}`")).collect();
    match words.split_last() {
        Some((last, [])) => Err(last.clone()),
        Some((last, rest)) => Err(format!("{} or {last}", rest.join(", "))),
        None => Err("nothing (no choices)".to_string()),
    }
}

/// The word for `value`, as `check-config` prints it.
fn word<T: PartialEq>(choices: &[(&str, T)], value: &T) -> String {
    choices.iter().find(|(_, v)| v == value).map(|(word, _)| word.to_string()).unwrap_or_default()
}

fn system_hostname(c: &mut Config) {
    c.hostname = parse::domain_name(&parse::system_hostname()).unwrap_or_else(|_| "localhost".into());
}

fn domains_from_hostname(c: &mut Config) {
    c.domains = vec![parse::default_domain_for(&c.hostname)];
}

/// Only a name a public CA can issue for gets Let's Encrypt without being asked.
fn acme_from_hostname(c: &mut Config) {
    c.acme.mode =
        if parse::is_public_fqdn(&c.hostname) { AcmeMode::Directory(LETSENCRYPT.into()) } else { AcmeMode::Off };
}

fn parse_acme(v: &str) -> Result<AcmeMode, String> {
    match v.trim() {
        "off" => Ok(AcmeMode::Off),
        "letsencrypt" => Ok(AcmeMode::Directory(LETSENCRYPT.into())),
        "letsencrypt-staging" => Ok(AcmeMode::Directory(LETSENCRYPT_STAGING.into())),
        other if other.starts_with("https://") || other.starts_with("http://") => {
            Ok(AcmeMode::Directory(other.to_string()))
        }
        _ => Err("`off`, `letsencrypt`, `letsencrypt-staging` or an ACME directory URL".into()),
    }
}

fn show_acme(mode: &AcmeMode) -> String {
    match mode {
        AcmeMode::Off => "off".to_string(),
        AcmeMode::Directory(url) => url.clone(),
    }
}

fn parse_extra_names(v: &str) -> Result<Vec<AcmeExtraName>, String> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = match item.to_ascii_lowercase().as_str() {
            "mta-sts" => AcmeExtraName::MtaSts,
            "autoconfig" => AcmeExtraName::Autoconfig,
            _ => return Err("a comma-separated list of `mta-sts` and `autoconfig`".to_string()),
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn parse_rate(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number of at least 1".to_string()),
    }
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    units::parse_duration(v).map_err(|_| "a duration like `90s`, `5m`, `4h` or `5d`".to_string())
}

/// A readable file whose DNSKEY records hickory accepts as trust anchors: checked here
/// so that a typo stops the server at start, not DANE at the first delivery.
fn trust_anchors_file(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v.trim());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("a readable file of DNSKEY records ({e})"))?;
    text.parse::<hickory_resolver::proto::dnssec::TrustAnchors>()
        .map_err(|e| format!("a file of DNSKEY records in zone-file form ({e})"))?;
    Ok(path)
}

/// A readable PEM file holding at least one certificate.
fn pem_roots_file(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v.trim());
    super::pem_roots(&path)?;
    Ok(path)
}

fn readable_file(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v.trim());
    match std::fs::File::open(&path) {
        Ok(_) => Ok(path),
        Err(e) => Err(format!("a readable file ({e})")),
    }
}

/// Addresses only: the hashes stay secret even in `check-config`.
fn show_accounts(c: &Config) -> String {
    if !c.accounts.entries.is_empty() {
        return c.accounts.entries.iter().map(|a| format!("{}:<redacted>", a.address)).collect::<Vec<_>>().join(",");
    }
    let generated = accounts::generated_accounts_file(&c.data_dir);
    if generated.exists() {
        format!("(none: the generated postmaster account in {} is used)", generated.display())
    } else {
        format!("(none: postmaster@{} is created at the first start)", c.primary_domain())
    }
}

fn show_listen(addrs: &[ListenAddr]) -> String {
    if addrs.is_empty() { "off".to_string() } else { join(addrs) }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// An admin Sieve script: a value of one line naming a file (absolute, or starting with
/// `./`) is read from it, anything else is the script itself. It must compile: a broken
/// script found at start is better than one that keeps every message in INBOX.
fn admin_script(v: &str) -> Result<super::AdminScript, String> {
    let one_line = v.trim();
    let is_path = !one_line.contains('\n') && (one_line.starts_with('/') || one_line.starts_with("./"));
    let (path, text) = if is_path {
        let path = PathBuf::from(one_line);
        match std::fs::read_to_string(&path) {
            Ok(text) => (Some(path), text),
            Err(e) => return Err(format!("a readable Sieve script file ({}: {e})", path.display())),
        }
    } else {
        (None, v.to_string())
    };
    crate::sieve::compile_admin_script(text.as_bytes()).map_err(|e| format!("a Sieve script that compiles ({e})"))?;
    Ok(super::AdminScript { path, text })
}

fn show_opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

fn show_path(p: &Option<PathBuf>) -> String {
    p.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

fn show_display<T: std::fmt::Display>(v: &T) -> String {
    v.to_string()
}

fn show_duration(d: &Duration) -> String {
    units::format_duration(*d)
}

/// A source address must be one of this host's (binding any other fails at every
/// delivery, so it is refused at start).
fn on_this_host<T: Into<std::net::IpAddr> + Copy>(ip: T) -> Result<T, String> {
    let addr: std::net::IpAddr = ip.into();
    if crate::dns::interfaces::local_addresses().contains(&addr) {
        Ok(ip)
    } else {
        Err(format!("an address of this host ({addr} is on no network interface)"))
    }
}
