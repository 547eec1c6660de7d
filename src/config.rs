//! `Config`: the one typed view of every `MAILROOM_*` variable (interface.md).
//!
//! Every environment variable is read here and nowhere else, and declared once, as a
//! row of the table in `variables.rs`; `load` and `effective` walk that table.
//! Loading never stops at the first problem: it collects every bad value, naming the
//! variable, the value (unless it is a secret) and what was expected, so an operator
//! fixes them all in one go. `serve` and `check-config` exit 2 on any problem.

mod env;
mod parse;
mod relay;
mod s3;
mod sections;
mod variables;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::Serialized;
use ipnet::IpNet;

use crate::accounts;

pub use env::{EnvSource, PREFIX};
pub use parse::{ListenAddr, default_domain_for, is_public_fqdn};
pub use relay::{RELAY_FORMS, RelayHost, RelayMode};
pub use s3::{S3Config, S3Url, Secret};
pub use sections::{
    AccountsConfig, AcmeConfig, AdminScript, DnsConfig, Limits, ListenConfig, OutboundConfig, OutboundIpv6, PgUrl,
    QueueConfig, SIEVE_SCRIPT_CEILING, ScanConfig, SieveConfig, StoreConfig,
};
pub use variables::{DefaultValue, VARIABLES, Variable};

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
    ManageSieve,
    Lmtp,
    Http,
    Https,
    Metrics,
}

impl Protocol {
    pub const ALL: [Protocol; 12] = [
        Protocol::Smtp,
        Protocol::Submission,
        Protocol::Submissions,
        Protocol::Imap,
        Protocol::Imaps,
        Protocol::Pop3,
        Protocol::Pop3s,
        Protocol::ManageSieve,
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
            Protocol::ManageSieve => "managesieve",
            Protocol::Lmtp => "lmtp",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Metrics => "metrics",
        }
    }

    fn variable(self) -> String {
        format!("{}_LISTEN", self.name().to_ascii_uppercase())
    }
}

/// Every setting, typed and validated. Built only by [`Config::load`].
#[derive(Clone, Debug)]
pub struct Config {
    pub hostname: String,
    /// Mail domains, normalised; the first is primary.
    pub domains: Vec<String>,
    pub data_dir: PathBuf,
    /// Where mail is kept: see [`Config::store`].
    store: StoreConfig,
    /// Where a PostgreSQL store keeps bodies: see [`Config::blob_store`].
    blob_store: Option<S3Url>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<Secret>,
    pub accounts: AccountsConfig,
    pub acme: AcmeConfig,
    /// A certificate/key pair supplied by the operator (replaces ACME): see
    /// [`Config::tls_files`].
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub dkim_selector: Option<String>,
    /// Publish a TLSA record for our MX and keep the certificate key across renewals.
    pub dane: bool,
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    pub listen: ListenConfig,
    pub limits: Limits,
    pub relay_host: Option<RelayHost>,
    /// Roots trusted for the smarthost besides the web PKI: see [`pem_roots`].
    pub relay_ca_file: Option<PathBuf>,
    pub dns_servers: Vec<SocketAddr>,
    /// DNSKEY records DANE trusts besides the root's.
    pub dnssec_trust_anchors: Option<PathBuf>,
    pub trusted_networks: Vec<IpNet>,
    pub queue: QueueConfig,
    pub outbound_smtp_port: u16,
    pub outbound: OutboundConfig,
    /// Record DMARC results and send aggregate reports (`dmarc/`).
    pub dmarc_reports: bool,
    /// Record outbound TLS results and send SMTP TLS reports (RFC 8460).
    pub tls_reports: bool,
    /// Serve the account and admin pages on the HTTPS port (`web/`).
    pub web: bool,
    /// Accounts that may open `/admin`; each is a configured account.
    pub admins: Vec<accounts::Address>,
    pub scan: ScanConfig,
    pub sieve: SieveConfig,
    /// Remote POP3/IMAP accounts fetched into local ones (`fetch/`).
    pub fetch: crate::fetch::FetchConfig,
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

    /// Record a bad value, echoing it unless the variable is a secret.
    fn fail(&mut self, var: &Variable, raw: &str, expected: &str) {
        let message = if var.secret {
            format!("invalid value (not shown: secret); expected {expected}")
        } else {
            format!("invalid value {raw:?}; expected {expected}")
        };
        self.errors.push(ConfigError { variable: format!("{PREFIX}{}", var.name), message });
    }

    fn fail_plain(&mut self, name: &str, message: String) {
        self.errors.push(ConfigError { variable: format!("{PREFIX}{name}"), message });
    }
}

impl Config {
    /// Read and validate the whole configuration. Warnings (unknown variables,
    /// `{PLAIN}` passwords) come back beside the config for the caller to log.
    ///
    /// Each variable of [`VARIABLES`] is parsed in table order (a default derived from
    /// another variable can rely on the ones above it), then the checks that span
    /// several variables run.
    pub fn load(env: &EnvSource) -> Result<(Config, Vec<String>), ConfigErrors> {
        let mut r = Reader::new(env);
        let from_env = r.errors.len();
        let mut warnings = env.warnings.clone();
        let mut c = Config::unset();
        for var in VARIABLES {
            let given = r.raw(var.name);
            if let Some(raw) = &given {
                match (var.set)(&mut c, raw) {
                    Ok(()) => continue,
                    Err(expected) => r.fail(var, raw, &expected),
                }
            }
            match var.default {
                DefaultValue::Text(text) => {
                    if let Err(e) = (var.set)(&mut c, text) {
                        unreachable!("the default of {} does not parse: {e}", var.name)
                    }
                }
                DefaultValue::Derived(_, derive) => derive(&mut c),
                DefaultValue::Empty(_) => {}
            }
        }
        c.accounts.accounts_file = env.file_of("ACCOUNTS").map(Path::to_path_buf);
        c.accounts.aliases_file = env.file_of("ALIASES").map(Path::to_path_buf);

        if !c.hostname.contains('.') {
            // A bare machine or container name ("vm", a container id) makes records for
            // "vm." and an account postmaster@vm: nothing a mail server can be reached at.
            let origin = if r.raw("HOSTNAME").is_some() {
                "MAILROOM_HOSTNAME is"
            } else {
                "MAILROOM_HOSTNAME is not set and this machine's name is"
            };
            warnings.push(format!(
                "{origin} {:?}, not a fully qualified domain name: set MAILROOM_HOSTNAME (e.g. mail.example.com) and MAILROOM_DOMAINS (e.g. example.com); see the variables marked REQUIRED FOR A REAL DEPLOYMENT in env.example",
                c.hostname
            ));
        }
        for entry in c.accounts.entries.iter().filter(|a| a.hash.is_plain()) {
            warnings.push(format!(
                "account {} uses a {{PLAIN}} password; replace it with the output of `mailroom hash-password`",
                entry.address
            ));
        }
        check_across(&c, &mut r);

        if r.errors.len() > from_env {
            // Problems from `_FILE` variables first, then in table order.
            let position = |e: &ConfigError| VARIABLES.iter().position(|v| format!("{PREFIX}{}", v.name) == e.variable);
            r.errors[from_env..].sort_by_key(position);
        }
        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        Ok((c, warnings))
    }

    /// Every field empty or at a placeholder; `load` then sets each from its variable.
    fn unset() -> Config {
        Config {
            hostname: String::new(),
            domains: Vec::new(),
            data_dir: PathBuf::new(),
            store: StoreConfig::Maildir,
            blob_store: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            accounts: AccountsConfig {
                entries: Vec::new(),
                aliases: Vec::new(),
                accounts_file: None,
                aliases_file: None,
            },
            acme: AcmeConfig {
                mode: AcmeMode::Off,
                email: None,
                challenge: AcmeChallenge::TlsAlpn01,
                ca_file: None,
                extra_names: Vec::new(),
                renew_before: None,
            },
            tls_cert_file: None,
            tls_key_file: None,
            dkim_selector: None,
            dane: false,
            public_ipv4: None,
            public_ipv6: None,
            listen: ListenConfig {
                addrs: Protocol::ALL.iter().map(|p| (*p, Vec::new())).collect(),
                proxy_protocol_from: Vec::new(),
                max_connections: 0,
                max_connections_per_ip: 0,
            },
            limits: Limits {
                message_size: 0,
                disk_min_free: 0,
                smtp_command_timeout: Duration::ZERO,
                login_timeout: Duration::ZERO,
                write_timeout: Duration::ZERO,
                connections_per_minute: 0,
                messages_per_hour: 0,
                recipients_per_hour: 0,
                sieve_max_script_size: 0,
                sieve_max_scripts: 0,
            },
            relay_host: None,
            relay_ca_file: None,
            dns_servers: Vec::new(),
            dnssec_trust_anchors: None,
            trusted_networks: Vec::new(),
            queue: QueueConfig { lifetime: Duration::ZERO, retry_min: Duration::ZERO, retry_max: Duration::ZERO },
            outbound_smtp_port: 0,
            outbound: OutboundConfig { ipv6_mode: OutboundIpv6::Auto, ipv4: None, ipv6: None },
            dmarc_reports: true,
            tls_reports: true,
            web: true,
            admins: Vec::new(),
            scan: ScanConfig { dnsbl: Vec::new(), rspamd_url: None, clamd: None, failure: ScannerFailure::Tempfail },
            sieve: SieveConfig::default(),
            fetch: crate::fetch::FetchConfig::default(),
            log: String::new(),
            log_format: LogFormat::Text,
        }
    }

    /// Where mail is kept (`MAILROOM_STORE`): Maildir in the data dir, or PostgreSQL.
    pub fn store(&self) -> &StoreConfig {
        &self.store
    }

    /// Where a PostgreSQL store keeps message bodies (`MAILROOM_BLOB_STORE`): `None` in
    /// the database itself, or an S3 bucket with its key pair (`load` made sure both keys
    /// are set and the store is PostgreSQL).
    pub fn blob_store(&self) -> Option<S3Config> {
        Some(S3Config {
            url: self.blob_store.clone()?,
            access_key_id: self.s3_access_key_id.clone()?,
            secret_access_key: self.s3_secret_access_key.clone()?,
        })
    }

    /// The listen addresses of one protocol (empty when off).
    pub fn listen_addrs(&self, protocol: Protocol) -> &[ListenAddr] {
        self.listen.of(protocol)
    }

    /// The certificate and key the operator supplied (replacing ACME); `load` makes
    /// sure both or neither are set.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert_file.as_deref()?, self.tls_key_file.as_deref()?))
    }

    /// The settings the DNS records and their check depend on.
    pub fn dns(&self) -> DnsConfig {
        DnsConfig {
            hostname: self.hostname.clone(),
            domains: self.domains.clone(),
            public_ipv4: self.public_ipv4,
            public_ipv6: self.public_ipv6,
            relayed: self.relay_host.is_some(),
            listen: self.listen.clone(),
            acme: self.acme.mode.clone(),
            operator_certificate: self.tls_files().is_some(),
            dkim_dir: self.data_dir.join("dkim"),
            dkim_selector: self.dkim_selector.clone(),
            dane: self.dane,
            tls_dir: self.data_dir.join("tls"),
            tls_cert_file: self.tls_files().map(|(cert, _)| cert.to_path_buf()),
            dns_servers: self.dns_servers.clone(),
            outbound: self.outbound,
        }
    }

    pub fn primary_domain(&self) -> &str {
        &self.domains[0]
    }

    /// `(variable, value)` for every setting, secrets redacted, for `check-config`.
    pub fn effective(&self) -> Vec<(String, String)> {
        VARIABLES.iter().map(|v| (format!("{PREFIX}{}", v.name), (v.show)(self))).collect()
    }
}

/// The checks that need more than one variable; each names the variable to change.
fn check_across(c: &Config, r: &mut Reader) {
    if !c.accounts.entries.is_empty()
        && let Err(problems) =
            accounts::Directory::new(c.domains.clone(), c.accounts.entries.clone(), c.accounts.aliases.clone())
    {
        for p in problems {
            r.fail_plain("ACCOUNTS", p);
        }
    }
    match (r.raw("TLS_CERT_FILE"), r.raw("TLS_KEY_FILE")) {
        (Some(_), None) => {
            r.fail_plain("TLS_KEY_FILE", "not set; expected the key file that goes with MAILROOM_TLS_CERT_FILE".into())
        }
        (None, Some(_)) => r.fail_plain(
            "TLS_CERT_FILE",
            "not set; expected the certificate file that goes with MAILROOM_TLS_KEY_FILE".into(),
        ),
        _ => {}
    }
    check_port_clashes(&c.listen.addrs, r);
    check_acme_listener(&c.acme.mode, c.acme.challenge, &c.listen.addrs, r);
    let relay_username = r.raw("RELAY_USERNAME");
    let relay_password = r.raw("RELAY_PASSWORD");
    if (relay_username.is_some() || relay_password.is_some()) && r.raw("RELAY_HOST").is_none() {
        r.fail_plain(
            "RELAY_HOST",
            "not set, but MAILROOM_RELAY_USERNAME/_PASSWORD are; expected the smarthost as `smtps://host` or `smtp://host`".into(),
        );
    }
    // Credentials are never sent without TLS, and smtp+insecure:// does not require it.
    if let Some(relay) = c.relay_host.as_ref().filter(|r| r.mode == RelayMode::Insecure) {
        for (name, set) in [("RELAY_USERNAME", relay_username.is_some()), ("RELAY_PASSWORD", relay_password.is_some())]
        {
            if set {
                r.fail_plain(
                    name,
                    format!(
                        "is set, but MAILROOM_RELAY_HOST is {relay}, which does not require TLS, and credentials are \
                         never sent without it; expected smtps:// or smtp:// for a relay that needs AUTH, or no credentials"
                    ),
                );
            }
        }
    }
    if relay_username.is_some() != relay_password.is_some() {
        r.fail_plain(
            "RELAY_PASSWORD",
            "MAILROOM_RELAY_USERNAME and MAILROOM_RELAY_PASSWORD must be set together".into(),
        );
    }
    check_blob_store(c, r);
    check_admins(c, r);
    check_fetch(c, r);
    if c.queue.retry_min > c.queue.retry_max {
        r.fail_plain("QUEUE_RETRY_MIN", "is longer than MAILROOM_QUEUE_RETRY_MAX; expected min <= max".into());
    }
}

/// Is `address` one of the configured accounts (without `MAILROOM_ACCOUNTS`, the
/// generated `postmaster@<primary domain>`)?
fn is_account(c: &Config, address: &accounts::Address) -> bool {
    if c.accounts.entries.is_empty() {
        address.local == "postmaster" && Some(address.domain.as_str()) == c.domains.first().map(String::as_str)
    } else {
        c.accounts.entries.iter().any(|e| e.address == *address)
    }
}

/// Every fetch source lands in an account and has its password: found at start, not
/// at the first run an interval later.
fn check_fetch(c: &Config, r: &mut Reader) {
    let fetch = &c.fetch;
    for s in &fetch.sources {
        if !is_account(c, &s.local) {
            r.fail_plain(
                "FETCH",
                format!(
                    "{} is not an account; expected `account@domain <- URL`, the account in MAILROOM_ACCOUNTS",
                    s.local
                ),
            );
        }
    }
    if fetch.sources.is_empty() {
        return;
    }
    let Some(path) = &fetch.passwords_file else {
        r.fail_plain(
            "FETCH_PASSWORDS_FILE",
            "not set, but MAILROOM_FETCH is; expected a file of `URL password` lines, one per source".into(),
        );
        return;
    };
    match crate::fetch::Passwords::load(path) {
        Err(e) => r.fail_plain("FETCH_PASSWORDS_FILE", e),
        Ok(passwords) => {
            for s in fetch.sources.iter().filter(|s| passwords.get(&s.url).is_none()) {
                r.fail_plain(
                    "FETCH_PASSWORDS_FILE",
                    format!("has no password for {}; expected a line `{} password`", s.url, s.url),
                );
            }
        }
    }
}

/// Every admin is an account: an alias or a typo would give nobody (or the wrong
/// person) the admin page. Without `MAILROOM_ACCOUNTS` the one account is the
/// generated `postmaster@<primary domain>`.
fn check_admins(c: &Config, r: &mut Reader) {
    for admin in &c.admins {
        if !is_account(c, admin) {
            r.fail_plain(
                "ADMINS",
                format!("{admin} is not an account; expected addresses of accounts in MAILROOM_ACCOUNTS"),
            );
        }
    }
}

/// An object store holds the bodies of a PostgreSQL store only (a Maildir keeps its
/// files), and it needs both halves of its key pair.
fn check_blob_store(c: &Config, r: &mut Reader) {
    let keys = (c.s3_access_key_id.is_some(), c.s3_secret_access_key.is_some());
    if c.blob_store.is_none() {
        if keys != (false, false) {
            r.fail_plain(
                "BLOB_STORE",
                "not an `s3://` URL, but MAILROOM_S3_ACCESS_KEY_ID/_SECRET_ACCESS_KEY are set; expected `s3://bucket[/prefix]?endpoint=…`".into(),
            );
        }
        return;
    }
    if !matches!(c.store, StoreConfig::Postgres(_)) {
        r.fail_plain(
            "BLOB_STORE",
            "an `s3://` blob store needs MAILROOM_STORE to be a PostgreSQL URL; expected MAILROOM_BLOB_STORE=postgres (the default) or MAILROOM_STORE=postgres://…".into(),
        );
    }
    if !keys.0 {
        r.fail_plain("S3_ACCESS_KEY_ID", "not set; expected the key id for the bucket of MAILROOM_BLOB_STORE".into());
    }
    if !keys.1 {
        r.fail_plain(
            "S3_SECRET_ACCESS_KEY",
            "not set; expected the secret key for the bucket of MAILROOM_BLOB_STORE".into(),
        );
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

/// The certificates of a PEM file of roots (`MAILROOM_RELAY_CA_FILE`): read at config
/// load to reject a bad file with exit 2, and again when the SMTP client is built.
pub fn pem_roots(path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("a readable PEM file of certificates ({e})"))?;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("a PEM file of certificates ({e})"))?;
    if certs.is_empty() {
        return Err("a PEM file holding at least one CERTIFICATE block".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;
