//! `Config`: the one typed view of every `MAILROOM_*` variable (interface.md).
//!
//! Every environment variable is read here and nowhere else. Loading never stops at
//! the first problem: it collects every bad value, naming the variable, the value
//! (unless it is a secret) and what was expected, so an operator fixes them all in
//! one go. `serve` and `check-config` exit 2 on any problem.

mod env;
mod parse;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::Serialized;
use ipnet::IpNet;

use crate::accounts::{self, AccountEntry, AliasRule};
use crate::units;

pub use env::{EnvSource, PREFIX, VARIABLES};
pub use parse::{ListenAddr, default_domain_for, is_public_fqdn};

const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcmeMode {
    Off,
    /// An ACME directory URL (Let's Encrypt's, its staging one, or any other CA's).
    Directory(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcmeChallenge {
    TlsAlpn01,
    Http01,
}

/// Extra names, per mail domain, put on the ACME certificate when the operator opts
/// in (`MAILROOM_ACME_EXTRA_NAMES`): opt-in because the CA validates every name, so
/// each needs its DNS record published first, or the whole order fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcmeExtraName {
    /// `mta-sts.<domain>`: RFC 8461 fetches the policy from exactly this host.
    MtaSts,
    /// `autoconfig.<domain>`: where Thunderbird looks first.
    Autoconfig,
}

impl AcmeExtraName {
    pub fn label(self) -> &'static str {
        match self {
            AcmeExtraName::MtaSts => "mta-sts",
            AcmeExtraName::Autoconfig => "autoconfig",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScannerFailure {
    /// Answer 451 4.7.1 when a configured scanner cannot be reached.
    Tempfail,
    /// Accept the message, with a header saying it was not scanned.
    Accept,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The protocols mailroom listens for; one `MAILROOM_<P>_LISTEN` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Smtp,
    Submission,
    Submissions,
    Imap,
    Imaps,
    Pop3,
    Pop3s,
    Lmtp,
    Http,
    Https,
    Metrics,
}

impl Protocol {
    pub const ALL: [Protocol; 11] = [
        Protocol::Smtp,
        Protocol::Submission,
        Protocol::Submissions,
        Protocol::Imap,
        Protocol::Imaps,
        Protocol::Pop3,
        Protocol::Pop3s,
        Protocol::Lmtp,
        Protocol::Http,
        Protocol::Https,
        Protocol::Metrics,
    ];

    /// Lower-case name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Submissions => "submissions",
            Protocol::Imap => "imap",
            Protocol::Imaps => "imaps",
            Protocol::Pop3 => "pop3",
            Protocol::Pop3s => "pop3s",
            Protocol::Lmtp => "lmtp",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Metrics => "metrics",
        }
    }

    fn variable(self) -> String {
        format!("{}_LISTEN", self.name().to_ascii_uppercase())
    }

    fn default_listen(self) -> &'static str {
        match self {
            Protocol::Smtp => ":25",
            Protocol::Submission => ":587",
            Protocol::Submissions => ":465",
            Protocol::Imap => ":143",
            Protocol::Imaps => ":993",
            Protocol::Pop3 => ":110",
            Protocol::Pop3s => ":995",
            Protocol::Lmtp => "off",
            Protocol::Http => ":80",
            Protocol::Https => ":443",
            Protocol::Metrics => ":9090",
        }
    }
}

/// The smarthost for all outbound mail.
#[derive(Clone, Debug)]
pub struct RelayHost {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Every setting, typed and validated. Built only by [`Config::load`].
#[derive(Clone, Debug)]
pub struct Config {
    pub hostname: String,
    /// Mail domains, normalised; the first is primary.
    pub domains: Vec<String>,
    pub data_dir: PathBuf,
    pub accounts: Vec<AccountEntry>,
    pub aliases: Vec<AliasRule>,
    /// `MAILROOM_ACCOUNTS_FILE` / `MAILROOM_ALIASES_FILE`: re-read while running, so a
    /// changed file (a Kubernetes Secret updated in place) applies without a restart.
    pub accounts_file: Option<PathBuf>,
    pub aliases_file: Option<PathBuf>,
    pub acme: AcmeMode,
    pub acme_email: Option<String>,
    pub acme_challenge: AcmeChallenge,
    pub acme_ca_file: Option<PathBuf>,
    pub acme_extra_names: Vec<AcmeExtraName>,
    /// Renew when less than this is left (None: two thirds of the lifetime, or ARI).
    pub acme_renew_before: Option<Duration>,
    /// A certificate/key pair supplied by the operator (replaces ACME).
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub dkim_selector: Option<String>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    /// Listen addresses per protocol, in [`Protocol::ALL`] order; empty = off.
    pub listen: Vec<(Protocol, Vec<ListenAddr>)>,
    pub message_size_limit: u64,
    /// SMTP/LMTP: a command line must be complete this long after its first byte; message
    /// content gets this plus one second per KiB (slowloris, `smtp::deadline`).
    pub smtp_command_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// New connections per client address per minute (trusted networks exempt).
    pub connections_per_minute: u32,
    /// Messages per authenticated sender per hour.
    pub messages_per_hour: u32,
    /// Accepted recipients per authenticated sender per hour.
    pub recipients_per_hour: u32,
    pub relay_host: Option<RelayHost>,
    pub dns_servers: Vec<SocketAddr>,
    pub trusted_networks: Vec<IpNet>,
    pub proxy_protocol_from: Vec<IpNet>,
    pub queue_lifetime: Duration,
    pub queue_retry_min: Duration,
    pub queue_retry_max: Duration,
    pub outbound_smtp_port: u16,
    pub dnsbl: Vec<String>,
    pub rspamd_url: Option<String>,
    pub clamd: Option<String>,
    pub scanner_failure: ScannerFailure,
    pub log: String,
    pub log_format: LogFormat,
}

/// One bad variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Full variable name, e.g. `MAILROOM_SMTP_LISTEN`.
    pub variable: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// Every problem found, in variable order.
#[derive(Clone, Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads raw values through figment (so every value passes one provider chain) and
/// collects errors while typed fields are parsed.
struct Reader {
    figment: Figment,
    errors: Vec<ConfigError>,
}

impl Reader {
    fn new(env: &EnvSource) -> Reader {
        let map: std::collections::BTreeMap<String, String> = env
            .values()
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let errors = env
            .errors
            .iter()
            .map(|(variable, message)| ConfigError { variable: variable.clone(), message: message.clone() })
            .collect();
        Reader { figment: Figment::from(Serialized::globals(map)), errors }
    }

    fn raw(&self, name: &str) -> Option<String> {
        self.figment.extract_inner::<String>(&name.to_ascii_lowercase()).ok()
    }

    /// Parse `name` with `parse`, or use `default` when unset. On error, record it
    /// (echoing the value unless secret) and return the default.
    fn get<T>(&mut self, name: &str, default: T, parse: impl FnOnce(&str) -> Result<T, String>) -> T {
        match self.raw(name) {
            None => default,
            Some(raw) => match parse(&raw) {
                Ok(v) => v,
                Err(expected) => {
                    self.fail(name, &raw, &expected);
                    default
                }
            },
        }
    }

    fn fail(&mut self, name: &str, raw: &str, expected: &str) {
        let message = if env::is_secret(name) {
            format!("invalid value (not shown: secret); expected {expected}")
        } else {
            format!("invalid value {raw:?}; expected {expected}")
        };
        self.errors.push(ConfigError { variable: format!("{PREFIX}{name}"), message });
    }

    fn fail_plain(&mut self, name: &str, message: String) {
        self.errors.push(ConfigError { variable: format!("{PREFIX}{name}"), message });
    }
}

impl Config {
    /// Read and validate the whole configuration. Warnings (unknown variables,
    /// `{PLAIN}` passwords) come back beside the config for the caller to log.
    pub fn load(env: &EnvSource) -> Result<(Config, Vec<String>), ConfigErrors> {
        let mut r = Reader::new(env);
        let mut warnings = env.warnings.clone();

        let given = r.get("HOSTNAME", None, |v| parse::domain_name(v).map(Some));
        let hostname = given
            .clone()
            .unwrap_or_else(|| parse::domain_name(&parse::system_hostname()).unwrap_or_else(|_| "localhost".into()));
        if !hostname.contains('.') {
            // A bare machine or container name ("vm", a container id) makes records for
            // "vm." and an account postmaster@vm: nothing a mail server can be reached at.
            let origin = if given.is_some() {
                "MAILROOM_HOSTNAME is"
            } else {
                "MAILROOM_HOSTNAME is not set and this machine's name is"
            };
            warnings.push(format!(
                "{origin} {hostname:?}, not a fully qualified domain name: set MAILROOM_HOSTNAME (e.g. mail.example.com) and MAILROOM_DOMAINS (e.g. example.com); see the variables marked REQUIRED FOR A REAL DEPLOYMENT in env.example"
            ));
        }
        let default_domains = vec![parse::default_domain_for(&hostname)];
        let domains = r.get("DOMAINS", default_domains, parse::domain_list);
        let data_dir = r.get("DATA_DIR", PathBuf::from("./data"), |v| Ok(PathBuf::from(v.trim())));

        let accounts = r.get("ACCOUNTS", Vec::new(), |v| accounts::parse_accounts(v).map_err(|e| e.join("; ")));
        let aliases = r.get("ALIASES", Vec::new(), |v| accounts::parse_aliases(v).map_err(|e| e.join("; ")));
        for entry in accounts.iter().filter(|a| a.hash.is_plain()) {
            warnings.push(format!(
                "account {} uses a {{PLAIN}} password; replace it with the output of `mailroom hash-password`",
                entry.address
            ));
        }
        if let (false, Err(problems)) =
            (accounts.is_empty(), accounts::Directory::new(domains.clone(), accounts.clone(), aliases.clone()))
        {
            for p in problems {
                r.fail_plain("ACCOUNTS", p);
            }
        }

        let acme_default =
            if is_public_fqdn(&hostname) { AcmeMode::Directory(LETSENCRYPT.into()) } else { AcmeMode::Off };
        let acme = r.get("ACME", acme_default, |v| match v.trim() {
            "off" => Ok(AcmeMode::Off),
            "letsencrypt" => Ok(AcmeMode::Directory(LETSENCRYPT.into())),
            "letsencrypt-staging" => Ok(AcmeMode::Directory(LETSENCRYPT_STAGING.into())),
            other if other.starts_with("https://") || other.starts_with("http://") => {
                Ok(AcmeMode::Directory(other.to_string()))
            }
            _ => Err("`off`, `letsencrypt`, `letsencrypt-staging` or an ACME directory URL".into()),
        });
        let acme_email = r.get("ACME_EMAIL", None, |v| {
            accounts::Address::parse(v).map(|a| Some(a.to_string())).map_err(|_| "an email address".to_string())
        });
        let acme_challenge = r.get("ACME_CHALLENGE", AcmeChallenge::TlsAlpn01, |v| match v.trim() {
            "tls-alpn-01" => Ok(AcmeChallenge::TlsAlpn01),
            "http-01" => Ok(AcmeChallenge::Http01),
            _ => Err("`tls-alpn-01` or `http-01`".into()),
        });
        let acme_ca_file = r.get("ACME_CA_FILE", None, |v| readable_file(v).map(Some));
        let acme_extra_names = r.get("ACME_EXTRA_NAMES", Vec::new(), |v| {
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
        });
        let acme_renew_before = r.get("ACME_RENEW_BEFORE", None, |v| {
            units::parse_duration(v).map(Some).map_err(|_| "a duration like `30d` or `12h`".to_string())
        });
        let cert = r.get("TLS_CERT_FILE", None, |v| readable_file(v).map(Some));
        let key = r.get("TLS_KEY_FILE", None, |v| readable_file(v).map(Some));
        let tls_files = match (cert, key, r.raw("TLS_CERT_FILE"), r.raw("TLS_KEY_FILE")) {
            (Some(c), Some(k), _, _) => Some((c, k)),
            (None, None, None, None) => None,
            (_, _, Some(_), None) => {
                r.fail_plain(
                    "TLS_KEY_FILE",
                    "not set; expected the key file that goes with MAILROOM_TLS_CERT_FILE".into(),
                );
                None
            }
            (_, _, None, Some(_)) => {
                r.fail_plain(
                    "TLS_CERT_FILE",
                    "not set; expected the certificate file that goes with MAILROOM_TLS_KEY_FILE".into(),
                );
                None
            }
            _ => None, // unreadable: already reported
        };
        let dkim_selector = r.get("DKIM_SELECTOR", None, |v| {
            let ok = !v.is_empty() && v.len() <= 63 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if ok { Ok(Some(v.to_ascii_lowercase())) } else { Err("a DNS label of letters, digits and hyphens".into()) }
        });
        let public_ipv4 = r.get("PUBLIC_IPV4", None, |v| parse::ipv4(v).map(Some));
        let public_ipv6 = r.get("PUBLIC_IPV6", None, |v| parse::ipv6(v).map(Some));

        let mut listen = Vec::new();
        for p in Protocol::ALL {
            let default = parse::listen_list(p.default_listen()).unwrap_or_default();
            listen.push((p, r.get(&p.variable(), default, parse::listen_list)));
        }
        check_port_clashes(&listen, &mut r);
        check_acme_listener(&acme, acme_challenge, &listen, &mut r);

        let message_size_limit = r.get("MESSAGE_SIZE_LIMIT", 25 * 1024 * 1024, |v| match units::parse_size(v) {
            Ok(n) if n >= 1024 => Ok(n),
            _ => Err("a size of at least 1K, like `25M` or `1G`".into()),
        });
        let smtp_command_timeout =
            r.get("SMTP_COMMAND_TIMEOUT", Duration::from_secs(300), |v| match units::parse_duration(v) {
                Ok(d) if d >= Duration::from_secs(1) => Ok(d),
                _ => Err("a duration of at least 1s, like `5m` or `90s`".to_string()),
            });
        let max_connections = r.get("MAX_CONNECTIONS", 10_000, parse::positive_count);
        let max_connections_per_ip = r.get("MAX_CONNECTIONS_PER_IP", 100, parse::positive_count);
        let rate = |v: &str| match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err("a whole number of at least 1".to_string()),
        };
        let connections_per_minute = r.get("CONNECTIONS_PER_MINUTE", 60, rate);
        let messages_per_hour = r.get("MESSAGES_PER_HOUR", 500, rate);
        let recipients_per_hour = r.get("RECIPIENTS_PER_HOUR", 300, rate);

        let relay = r.get("RELAY_HOST", None, |v| parse::host_port(v).map(Some));
        let relay_username = r.raw("RELAY_USERNAME");
        let relay_password = r.raw("RELAY_PASSWORD");
        if relay.is_none() && (relay_username.is_some() || relay_password.is_some()) && r.raw("RELAY_HOST").is_none() {
            r.fail_plain(
                "RELAY_HOST",
                "not set, but MAILROOM_RELAY_USERNAME/_PASSWORD are; expected `host:port` of the smarthost".into(),
            );
        }
        if relay_username.is_some() != relay_password.is_some() {
            r.fail_plain(
                "RELAY_PASSWORD",
                "MAILROOM_RELAY_USERNAME and MAILROOM_RELAY_PASSWORD must be set together".into(),
            );
        }
        let relay_host =
            relay.map(|(host, port)| RelayHost { host, port, username: relay_username, password: relay_password });

        let dns_servers = r.get("DNS_SERVERS", Vec::new(), parse::dns_servers);
        let trusted_networks = r.get("TRUSTED_NETWORKS", Vec::new(), parse::cidr_list);
        let proxy_protocol_from = r.get("PROXY_PROTOCOL_FROM", Vec::new(), parse::cidr_list);
        let duration =
            |v: &str| units::parse_duration(v).map_err(|_| "a duration like `90s`, `5m`, `4h` or `5d`".to_string());
        let queue_lifetime = r.get("QUEUE_LIFETIME", Duration::from_secs(5 * 86400), duration);
        let queue_retry_min = r.get("QUEUE_RETRY_MIN", Duration::from_secs(300), duration);
        let queue_retry_max = r.get("QUEUE_RETRY_MAX", Duration::from_secs(4 * 3600), duration);
        if queue_retry_min > queue_retry_max {
            r.fail_plain("QUEUE_RETRY_MIN", "is longer than MAILROOM_QUEUE_RETRY_MAX; expected min <= max".into());
        }
        let outbound_smtp_port = r.get("OUTBOUND_SMTP_PORT", 25, parse::port);
        let dnsbl = r.get("DNSBL", Vec::new(), |v| {
            v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse::domain_name).collect()
        });
        let rspamd_url = r.get("RSPAMD_URL", None, |v| parse::http_url(v).map(Some));
        let clamd = r.get("CLAMD", None, |v| {
            let v = v.trim();
            if v.starts_with('/') || parse::host_port(v).is_ok() {
                Ok(Some(v.to_string()))
            } else {
                Err("`host:port` or an absolute socket path".into())
            }
        });
        let scanner_failure = r.get("SCANNER_FAILURE", ScannerFailure::Tempfail, |v| match v.trim() {
            "tempfail" => Ok(ScannerFailure::Tempfail),
            "accept" => Ok(ScannerFailure::Accept),
            _ => Err("`tempfail` or `accept`".into()),
        });
        let log = r.get("LOG", "info".to_string(), |v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(|_| v.to_string())
                .map_err(|_| "a log filter like `info` or `mailroom=debug,info`".to_string())
        });
        let log_format = r.get("LOG_FORMAT", LogFormat::Text, |v| match v.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("`text` or `json`".into()),
        });

        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        let config = Config {
            hostname,
            domains,
            data_dir,
            accounts,
            aliases,
            accounts_file: env.file_of("ACCOUNTS").map(Path::to_path_buf),
            aliases_file: env.file_of("ALIASES").map(Path::to_path_buf),
            acme,
            acme_email,
            acme_challenge,
            acme_ca_file,
            acme_extra_names,
            acme_renew_before,
            tls_files,
            dkim_selector,
            public_ipv4,
            public_ipv6,
            listen,
            message_size_limit,
            smtp_command_timeout,
            max_connections,
            max_connections_per_ip,
            connections_per_minute,
            messages_per_hour,
            recipients_per_hour,
            relay_host,
            dns_servers,
            trusted_networks,
            proxy_protocol_from,
            queue_lifetime,
            queue_retry_min,
            queue_retry_max,
            outbound_smtp_port,
            dnsbl,
            rspamd_url,
            clamd,
            scanner_failure,
            log,
            log_format,
        };
        Ok((config, warnings))
    }

    /// The listen addresses of one protocol (empty when off).
    pub fn listen_addrs(&self, protocol: Protocol) -> &[ListenAddr] {
        self.listen.iter().find(|(p, _)| *p == protocol).map(|(_, a)| a.as_slice()).unwrap_or(&[])
    }

    pub fn primary_domain(&self) -> &str {
        &self.domains[0]
    }

    /// `(variable, value)` for every setting, secrets redacted, for `check-config`.
    pub fn effective(&self) -> Vec<(String, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let list = |v: Vec<String>| v.join(",");
        let mut out: Vec<(&str, String)> = vec![
            ("HOSTNAME", self.hostname.clone()),
            ("DOMAINS", self.domains.join(",")),
            ("DATA_DIR", self.data_dir.display().to_string()),
            (
                "ACCOUNTS",
                if self.accounts.is_empty() {
                    let generated = crate::accounts::generated_accounts_file(&self.data_dir);
                    if generated.exists() {
                        format!("(none: the generated postmaster account in {} is used)", generated.display())
                    } else {
                        format!("(none: postmaster@{} is created at the first start)", self.primary_domain())
                    }
                } else {
                    list(self.accounts.iter().map(|a| format!("{}:<redacted>", a.address)).collect())
                },
            ),
            ("ALIASES", format!("{} rule(s)", self.aliases.len())),
            (
                "ACME",
                match &self.acme {
                    AcmeMode::Off => "off".into(),
                    AcmeMode::Directory(u) => u.clone(),
                },
            ),
            ("ACME_EMAIL", opt(&self.acme_email)),
            (
                "ACME_CHALLENGE",
                match self.acme_challenge {
                    AcmeChallenge::TlsAlpn01 => "tls-alpn-01".into(),
                    AcmeChallenge::Http01 => "http-01".into(),
                },
            ),
            ("ACME_CA_FILE", path(&self.acme_ca_file)),
            ("ACME_EXTRA_NAMES", list(self.acme_extra_names.iter().map(|n| n.label().to_string()).collect())),
            ("ACME_RENEW_BEFORE", self.acme_renew_before.map(units::format_duration).unwrap_or_default()),
            ("TLS_CERT_FILE", path(&self.tls_files.as_ref().map(|t| t.0.clone()))),
            ("TLS_KEY_FILE", path(&self.tls_files.as_ref().map(|t| t.1.clone()))),
            ("DKIM_SELECTOR", opt(&self.dkim_selector)),
            ("PUBLIC_IPV4", self.public_ipv4.map(|a| a.to_string()).unwrap_or_default()),
            ("PUBLIC_IPV6", self.public_ipv6.map(|a| a.to_string()).unwrap_or_default()),
        ];
        let listens: Vec<(String, String)> = self
            .listen
            .iter()
            .map(|(p, addrs)| {
                let v = if addrs.is_empty() {
                    "off".to_string()
                } else {
                    list(addrs.iter().map(|a| a.to_string()).collect())
                };
                (p.variable(), v)
            })
            .collect();
        let relay = self.relay_host.as_ref();
        let tail: Vec<(&str, String)> = vec![
            ("MESSAGE_SIZE_LIMIT", units::format_size(self.message_size_limit)),
            ("SMTP_COMMAND_TIMEOUT", units::format_duration(self.smtp_command_timeout)),
            ("MAX_CONNECTIONS", self.max_connections.to_string()),
            ("MAX_CONNECTIONS_PER_IP", self.max_connections_per_ip.to_string()),
            ("CONNECTIONS_PER_MINUTE", self.connections_per_minute.to_string()),
            ("MESSAGES_PER_HOUR", self.messages_per_hour.to_string()),
            ("RECIPIENTS_PER_HOUR", self.recipients_per_hour.to_string()),
            ("RELAY_HOST", relay.map(|r| format!("{}:{}", r.host, r.port)).unwrap_or_default()),
            ("RELAY_USERNAME", relay.and_then(|r| r.username.clone()).unwrap_or_default()),
            (
                "RELAY_PASSWORD",
                if relay.is_some_and(|r| r.password.is_some()) { "<redacted>".into() } else { String::new() },
            ),
            (
                "DNS_SERVERS",
                if self.dns_servers.is_empty() {
                    "(system resolver)".into()
                } else {
                    list(self.dns_servers.iter().map(|s| s.to_string()).collect())
                },
            ),
            (
                "TRUSTED_NETWORKS",
                if self.trusted_networks.is_empty() {
                    "none".into()
                } else {
                    list(self.trusted_networks.iter().map(|n| n.to_string()).collect())
                },
            ),
            ("PROXY_PROTOCOL_FROM", list(self.proxy_protocol_from.iter().map(|n| n.to_string()).collect())),
            ("QUEUE_LIFETIME", units::format_duration(self.queue_lifetime)),
            ("QUEUE_RETRY_MIN", units::format_duration(self.queue_retry_min)),
            ("QUEUE_RETRY_MAX", units::format_duration(self.queue_retry_max)),
            ("OUTBOUND_SMTP_PORT", self.outbound_smtp_port.to_string()),
            ("DNSBL", self.dnsbl.join(",")),
            ("RSPAMD_URL", opt(&self.rspamd_url)),
            ("CLAMD", opt(&self.clamd)),
            (
                "SCANNER_FAILURE",
                match self.scanner_failure {
                    ScannerFailure::Tempfail => "tempfail".into(),
                    ScannerFailure::Accept => "accept".into(),
                },
            ),
            ("LOG", self.log.clone()),
            (
                "LOG_FORMAT",
                match self.log_format {
                    LogFormat::Text => "text".into(),
                    LogFormat::Json => "json".into(),
                },
            ),
        ];
        out.extend(tail);
        let mut result: Vec<(String, String)> = out.into_iter().map(|(k, v)| (format!("{PREFIX}{k}"), v)).collect();
        let at = result.iter().position(|(k, _)| k == "MAILROOM_MESSAGE_SIZE_LIMIT").unwrap_or(result.len());
        for (i, (k, v)) in listens.into_iter().enumerate() {
            result.insert(at + i, (format!("{PREFIX}{k}"), v));
        }
        result
    }
}

fn readable_file(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v.trim());
    match std::fs::File::open(&path) {
        Ok(_) => Ok(path),
        Err(e) => Err(format!("a readable file ({e})")),
    }
}

/// The CA validates on our port 443 (TLS-ALPN-01) or 80 (HTTP-01): with that
/// listener off, every order would fail, so say so at start instead.
fn check_acme_listener(
    acme: &AcmeMode,
    challenge: AcmeChallenge,
    listen: &[(Protocol, Vec<ListenAddr>)],
    r: &mut Reader,
) {
    if *acme == AcmeMode::Off {
        return;
    }
    let (needed, name) = match challenge {
        AcmeChallenge::TlsAlpn01 => (Protocol::Https, "tls-alpn-01"),
        AcmeChallenge::Http01 => (Protocol::Http, "http-01"),
    };
    let off = listen.iter().any(|(p, addrs)| *p == needed && addrs.is_empty());
    if off {
        r.fail_plain(
            &needed.variable(),
            format!(
                "is off, but ACME ({name}) validates on it; turn it on, change MAILROOM_ACME_CHALLENGE, or set MAILROOM_ACME=off"
            ),
        );
    }
}

/// Two protocols on the same port of an overlapping address cannot both bind.
fn check_port_clashes(listen: &[(Protocol, Vec<ListenAddr>)], r: &mut Reader) {
    for (i, (p1, a1)) in listen.iter().enumerate() {
        for (p2, a2) in &listen[i + 1..] {
            for x in a1 {
                for y in a2 {
                    let overlap = x.port() == y.port()
                        && x.port() != 0
                        && match (x, y) {
                            (ListenAddr::Socket(s1), ListenAddr::Socket(s2)) => s1.ip() == s2.ip(),
                            _ => true,
                        };
                    if overlap {
                        r.fail_plain(
                            &p2.variable(),
                            format!("{y} clashes with MAILROOM_{} {x}; expected a different port", p1.variable()),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
