//! The parts of [`Config`](super::Config) that one module owns: each is handed its
//! section, so it depends on the settings it uses and not on the whole configuration.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::{AcmeChallenge, AcmeExtraName, AcmeMode, ListenAddr, Protocol, ScannerFailure};
use crate::accounts::{AccountEntry, AliasRule};

/// What the listeners bind and how connections are admitted (`net`, autoconfig).
#[derive(Clone, Debug)]
pub struct ListenConfig {
    /// Listen addresses per protocol, in [`Protocol::ALL`] order; empty = off.
    pub addrs: Vec<(Protocol, Vec<ListenAddr>)>,
    /// Load balancers that may (and then must) send a PROXY protocol header.
    pub proxy_protocol_from: Vec<IpNet>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl ListenConfig {
    /// The listen addresses of one protocol (empty when off).
    pub fn of(&self, protocol: Protocol) -> &[ListenAddr] {
        self.addrs.iter().find(|(p, _)| *p == protocol).map(|(_, a)| a.as_slice()).unwrap_or(&[])
    }

    pub(super) fn set(&mut self, protocol: Protocol, addrs: Vec<ListenAddr>) {
        if let Some(entry) = self.addrs.iter_mut().find(|(p, _)| *p == protocol) {
            entry.1 = addrs;
        }
    }
}

/// The accounts and aliases as given at start, and the files to re-read while running
/// (`accounts::AccountSources`).
#[derive(Clone, Debug)]
pub struct AccountsConfig {
    /// `MAILROOM_ACCOUNTS` (or the content of `MAILROOM_ACCOUNTS_FILE`); empty = the
    /// generated postmaster account.
    pub entries: Vec<AccountEntry>,
    pub aliases: Vec<AliasRule>,
    /// `MAILROOM_ACCOUNTS_FILE` / `MAILROOM_ALIASES_FILE`: re-read while running, so a
    /// changed file (a Kubernetes Secret updated in place) applies without a restart.
    pub accounts_file: Option<PathBuf>,
    pub aliases_file: Option<PathBuf>,
}

/// Where certificates come from when the operator supplies none (`acme`).
#[derive(Clone, Debug)]
pub struct AcmeConfig {
    pub mode: AcmeMode,
    pub email: Option<String>,
    pub challenge: AcmeChallenge,
    pub ca_file: Option<PathBuf>,
    pub extra_names: Vec<AcmeExtraName>,
    /// Renew when less than this is left (None: two thirds of the lifetime, or ARI).
    pub renew_before: Option<Duration>,
}

/// Sizes, timeouts and rates that protect the server from one client (`smtp`, `imap`,
/// `net::ratelimit`).
#[derive(Clone, Debug)]
pub struct Limits {
    pub message_size: u64,
    /// Below this many free bytes on the data dir's file system new mail is refused
    /// (`452 4.3.1`) and `/readyz` fails; 0: never (`disk`).
    pub disk_min_free: u64,
    /// SMTP/LMTP: a command line must be complete this long after its first byte; message
    /// content gets this plus one second per KiB (slowloris, `smtp::deadline`).
    pub smtp_command_timeout: Duration,
    /// IMAP, POP3, ManageSieve: from accept to a successful login, whatever the client
    /// sends meanwhile (a byte every few seconds resets no timer), so unauthenticated
    /// sockets cannot pile up.
    pub login_timeout: Duration,
    /// Every protocol: how long one write may wait for the client to take our output (a
    /// long response is written in chunks, each bounded), so a client that stops reading
    /// frees its connection and the bounded output buffer behind it.
    pub write_timeout: Duration,
    /// New connections per client address per minute (trusted networks exempt).
    pub connections_per_minute: u32,
    /// Messages per authenticated sender per hour.
    pub messages_per_hour: u32,
    /// Accepted recipients per authenticated sender per hour.
    pub recipients_per_hour: u32,
    /// ManageSieve: largest Sieve script (`QUOTA/MAXSIZE`), at most
    /// [`SIEVE_SCRIPT_CEILING`].
    pub sieve_max_script_size: u64,
    /// ManageSieve: most Sieve scripts per account (`QUOTA/MAXSCRIPTS`).
    pub sieve_max_scripts: usize,
}

/// How long and how often the outbound queue retries (`queue`).
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// How long a message is retried before it bounces.
    pub lifetime: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// The operator's Sieve scripts, run at local delivery for every account (`sieve`).
#[derive(Clone, Debug, Default)]
pub struct SieveConfig {
    /// Runs before the account's script.
    pub before: Option<AdminScript>,
    /// Runs after it (unless a script said `stop`).
    pub after: Option<AdminScript>,
}

/// One admin script: its text, checked to compile when the configuration was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminScript {
    /// The file it was read from, or `None` for a script given inline.
    pub path: Option<std::path::PathBuf>,
    pub text: String,
}

impl std::fmt::Display for AdminScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}", p.display()),
            None => write!(f, "(inline script, {} bytes)", self.text.len()),
        }
    }
}

/// The content checks of inbound mail (`scan`).
#[derive(Clone, Debug)]
pub struct ScanConfig {
    /// DNS blocklist zones checked for connecting addresses.
    pub dnsbl: Vec<String>,
    pub rspamd_url: Option<String>,
    /// `host:port` or an absolute socket path.
    pub clamd: Option<String>,
    pub failure: ScannerFailure,
}

/// Whether outbound SMTP reaches MX hosts over IPv6 (`MAILROOM_OUTBOUND_IPV6_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundIpv6 {
    /// Only while the IPv6 source address has forward-confirmed reverse DNS in the
    /// hostname's domain: large receivers refuse IPv6 mail without it (550 5.7.25).
    Auto,
    On,
    Off,
}

impl std::fmt::Display for OutboundIpv6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutboundIpv6::Auto => "auto",
            OutboundIpv6::On => "on",
            OutboundIpv6::Off => "off",
        })
    }
}

/// Where outbound SMTP connections come from (the SMTP client, the reverse DNS check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundConfig {
    pub ipv6_mode: OutboundIpv6,
    /// Pinned source addresses; `None`: the kernel chooses.
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// What the DNS records and their check are computed from (`dns`).
///
/// Derived rather than read: besides the public addresses, every field is a setting
/// that other parts use too, declared once in the variables table. [`Config::dns`]
/// builds it, so `dns` depends on these and not on the whole configuration.
///
/// [`Config::dns`]: super::Config::dns
#[derive(Clone, Debug)]
pub struct DnsConfig {
    pub hostname: String,
    /// Mail domains, primary first.
    pub domains: Vec<String>,
    /// Configured public addresses; unset ones are detected on the interfaces.
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    /// Outbound mail leaves through a smarthost (SPF gets `~all`).
    pub relayed: bool,
    /// The listeners the SRV records advertise.
    pub listen: ListenConfig,
    /// The ACME CA (CAA records), and whether certificates come from it.
    pub acme: AcmeMode,
    /// The operator supplies the certificate: like ACME's, publicly trusted.
    pub operator_certificate: bool,
    pub dkim_dir: PathBuf,
    pub dkim_selector: Option<String>,
    /// `MAILROOM_DANE`: print and check a TLSA record for the hostname.
    pub dane: bool,
    /// The data dir's `tls/` (ACME and self-signed certificates), and the operator's
    /// certificate file when one replaces them: where the TLSA record's key comes from.
    pub tls_dir: PathBuf,
    pub tls_cert_file: Option<PathBuf>,
    /// Resolvers for `mailroom dns --check`; empty = the system's.
    pub dns_servers: Vec<SocketAddr>,
    /// Whose reverse DNS `dns --check` checks: the pinned source addresses.
    pub outbound: OutboundConfig,
}

/// Where mail is kept (`MAILROOM_STORE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// Maildir folders in the data dir (the default).
    Maildir,
    /// A PostgreSQL database.
    Postgres(PgUrl),
}

/// A validated `postgres://` (or `postgresql://`) URL. It may hold a password, so its
/// `Debug` prints [`PgUrl::redacted`]; only [`PgUrl::url`] gives the URL as written,
/// for the connector.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// The URL as given (surrounding whitespace trimmed).
    pub(super) url: String,
    /// Where the password is in `url`, when there is one (not empty).
    pub(super) password: Option<std::ops::Range<usize>>,
    /// Without brackets for an IPv6 address.
    pub(super) host: String,
    pub(super) port: u16,
    /// Percent-decoded.
    pub(super) database: String,
}

impl PgUrl {
    /// The port used when the URL names none.
    pub const DEFAULT_PORT: u16 = 5432;

    /// Validate a URL as `MAILROOM_STORE` does. The error says what was expected and
    /// never contains any part of `raw` (it may hold a password).
    pub fn parse(raw: &str) -> Result<PgUrl, String> {
        super::parse::postgres_url(raw)
    }

    /// The URL as given, password included: for the database connector only, never
    /// for logs or messages (use [`PgUrl::redacted`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with the password replaced by `****`: what `check-config` prints.
    pub fn redacted(&self) -> String {
        match &self.password {
            Some(range) => format!("{}****{}", &self.url[..range.start], &self.url[range.end..]),
            None => self.url.clone(),
        }
    }

    /// The host name or address (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, [`PgUrl::DEFAULT_PORT`] when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database name, percent-decoded.
    pub fn database(&self) -> &str {
        &self.database
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PgUrl").field(&self.redacted()).finish()
    }
}

/// The most `MAILROOM_SIEVE_MAX_SCRIPT_SIZE` may be, and the largest script the
/// interpreter compiles: ManageSieve compiles each upload inline, so this bounds that
/// work, and no script it accepts is then too large to run.
pub const SIEVE_SCRIPT_CEILING: u64 = 1024 * 1024;
