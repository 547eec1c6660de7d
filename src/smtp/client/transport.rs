//! [`SmtpTransport`]: the queue's [`Transport`] over SMTP — direct to each domain's MX
//! hosts, or everything through the configured smarthost.
//!
//! Direct delivery: MTA-STS policy (if the domain has one), MX hosts in preference order,
//! every address of each (IPv6 then IPv4, IPv6 only as [`OutboundRoute`] allows), until
//! one takes the transaction; a host that cannot be reached or greets with an error is
//! skipped (RFC 5321 §5.1). Connections leave from the pinned source address, if any,
//! MX and smarthost alike. STARTTLS is used whenever offered; its certificate is only
//! checked when MTA-STS enforces it, and a failed opportunistic handshake falls back to
//! clear text on a new connection (RFC 7435: some security beats none, and a broken TLS
//! stack must not stop mail).
//!
//! Smarthost (`MAILROOM_RELAY_HOST`, see `config/relay.rs`): implicit TLS (`smtps://`) or
//! STARTTLS (`smtp://`), both with a certificate valid for the relay's name, or plain TCP
//! inside a private network (`smtp+insecure://`: STARTTLS if offered, never AUTH).
//! Credentials are never sent in clear, and every relay failure is temporary, including
//! refused AUTH and a relay name that does not resolve (a configuration problem the
//! operator fixes; the mail should wait, not bounce). Diagnostics name the relay's URL,
//! so the operator sees which mode failed.
//!
//! After a transaction whose every reply was read, the connection is parked for a short
//! while so the next message to the same destination reuses it (RSET first).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use rustls_pki_types::CertificateDer;

use super::connection::{ClientSession, SessionError, TlsState, in_context};
use super::dane::{self, Dane, HostPolicy};
use super::family::OutboundRoute;
use super::mta_sts::{Mode, MtaSts, Sts};
use super::mx::{Dnssec, RouteError, ValidatedMx, build_resolver, lookup_addresses, lookup_mx};
use super::require_tls;
use super::tls::{Connectors, server_name};
use super::tls_outcome::{ResultType, TlsFailure, TlsOutcome, TlsPolicy, TlsRecorder, is_tls_report};
use crate::config::{RelayHost, RelayMode};
use crate::queue::{BatchOutcome, BoxFuture, DeliveryBatch, RecipientOutcome, Relay, Transport};
use crate::smtp::status::Status;

/// How long an idle connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per destination.
const POOL_PER_KEY: usize = 4;

/// Settings of the outbound client.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Our name in EHLO.
    pub hostname: String,
    /// Port of remote MX hosts (25; tests use another).
    pub port: u16,
    pub relay: Option<RelayHost>,
    /// Resolvers (`ip:port`); empty = the system's.
    pub dns_servers: Vec<SocketAddr>,
    /// Roots trusted besides the public web PKI (a private relay's CA, test CAs).
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub connect_timeout: Duration,
    /// Look up and honour MTA-STS policies.
    pub mta_sts: bool,
    /// Port for MTA-STS policy fetches (443; tests use another).
    pub mta_sts_port: u16,
    /// DANE (RFC 7672): validate MX and TLSA answers with DNSSEC and honour them.
    pub dane: bool,
    /// DNSKEY records trusted besides the root's (`MAILROOM_DNSSEC_TRUST_ANCHORS`).
    pub dnssec_anchors: Option<std::path::PathBuf>,
    /// Which family reaches MX hosts, and the pinned source addresses.
    pub route: Arc<OutboundRoute>,
    /// Where each MX session's TLS result goes (SMTP TLS reports); `None`: nowhere.
    pub tls_recorder: Option<Arc<dyn TlsRecorder>>,
}

impl ClientSettings {
    /// The settings a server runs with: MX hosts on `port`, or everything through
    /// `relay`; MTA-STS on, 30 s to connect.
    pub fn new(hostname: &str, port: u16, relay: Option<RelayHost>, dns_servers: Vec<SocketAddr>) -> ClientSettings {
        ClientSettings {
            hostname: hostname.to_string(),
            port,
            relay,
            dns_servers,
            extra_roots: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            mta_sts: true,
            mta_sts_port: 443,
            dane: true,
            dnssec_anchors: None,
            route: Arc::new(OutboundRoute::any_family()),
            tls_recorder: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("DNS resolver: {0}")]
    Resolver(String),
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// What TLS a connection must have.
#[derive(Clone)]
enum TlsNeed {
    /// STARTTLS with a certificate the host's TLSA records allow (`dane.rs`).
    Dane(tokio_rustls::TlsConnector),
    /// Use STARTTLS if offered, any certificate.
    Opportunistic,
    /// Opportunistic, but the handshake failed once: go without.
    Plain,
    /// STARTTLS with a certificate valid for the host name, or no delivery.
    Verified,
    /// TLS from the first byte (port 465), certificate valid for the host name.
    Implicit,
}

/// One batch's TLS-report emitter: the policy that applied, and the recorder.
#[derive(Clone)]
struct TlsReport {
    recorder: Option<Arc<dyn TlsRecorder>>,
    domain: String,
    policy: TlsPolicy,
    /// The policy itself failed (a fetch error, unusable TLSA records): every session
    /// under it counts as this failure, whatever its TLS did.
    policy_failure: Option<ResultType>,
    route: Arc<OutboundRoute>,
}

impl TlsReport {
    /// One session with MX `host` at `ip`: `None` succeeded, else its result type.
    /// `host` is `None` when validation failed before any host was chosen.
    fn emit(&self, host: Option<&str>, ip: Option<std::net::IpAddr>, failure: Option<ResultType>) {
        let policy = match self.policy {
            TlsPolicy::Sts { .. } | TlsPolicy::StsUnavailable { .. } => "mta_sts",
            TlsPolicy::Tlsa { .. } => "dane",
            TlsPolicy::NoPolicyFound => "none",
        };
        let result = if self.policy_failure.or(failure).is_some() { "failure" } else { "success" };
        crate::metrics::metrics().outbound_tls_sessions_total.with_label_values(&[policy, result]).inc();
        let Some(recorder) = &self.recorder else { return };
        let failure = self.policy_failure.or(failure).map(|result_type| TlsFailure {
            result_type,
            sending_mta_ip: ip.and_then(|ip| self.route.source_for(&ip)),
            receiving_mx_hostname: host.map(|h| h.trim_end_matches('.').to_string()),
            receiving_ip: ip,
        });
        recorder.tls_outcome(TlsOutcome { domain: self.domain.clone(), policy: self.policy.clone(), failure });
    }

    /// The same emitter under another policy (DANE's, per MX host).
    fn under(&self, policy: TlsPolicy, policy_failure: Option<ResultType>) -> TlsReport {
        TlsReport { policy, policy_failure, ..self.clone() }
    }
}

/// The SMTP transport. One per server; share it behind an `Arc`.
pub struct SmtpTransport {
    settings: ClientSettings,
    resolver: TokioResolver,
    connectors: Connectors,
    sts: MtaSts,
    /// `None` when DANE is off.
    dane: Option<Dane>,
    pool: Mutex<HashMap<String, Vec<(ClientSession, Instant)>>>,
}

impl SmtpTransport {
    /// A transport with a resolver of its own, built from `settings.dns_servers`.
    pub fn new(settings: ClientSettings) -> Result<SmtpTransport, ClientError> {
        let resolver = build_resolver(&settings.dns_servers).map_err(ClientError::Resolver)?;
        SmtpTransport::with_resolver(settings, resolver)
    }

    /// Same, sharing the server's resolver (and its cache).
    pub fn with_resolver(settings: ClientSettings, resolver: TokioResolver) -> Result<SmtpTransport, ClientError> {
        let connectors = Connectors::new(&settings.extra_roots)?;
        let sts = MtaSts::new(settings.mta_sts_port);
        let dane = match settings.dane {
            false => None,
            true => Some(Dane::new(
                crate::dns::resolver::build_validating(&settings.dns_servers, settings.dnssec_anchors.as_deref())
                    .map_err(ClientError::Resolver)?,
                match settings.dnssec_anchors.as_deref() {
                    Some(path) => crate::dns::resolver::anchor_zones(path).map_err(ClientError::Resolver)?,
                    None => Vec::new(),
                },
            )),
        };
        Ok(SmtpTransport { settings, resolver, connectors, sts, dane, pool: Mutex::new(HashMap::new()) })
    }

    async fn deliver_batch(&self, batch: DeliveryBatch) -> BatchOutcome {
        let n = batch.recipients.len();
        let result = match &self.settings.relay {
            Some(relay) => self.via_relay(relay, &batch).await,
            None => self.direct(&batch).await,
        };
        result.unwrap_or_else(|e| {
            tracing::info!(queue_id = %batch.queue_id, domain = %batch.domain, error = %e, "smtp client: no delivery");
            let outcome = match e {
                RouteError::Permanent(s) => RecipientOutcome::Permanent(s),
                RouteError::Temporary(s) => RecipientOutcome::Temporary(s),
            };
            vec![outcome; n].into()
        })
    }

    async fn direct(&self, batch: &DeliveryBatch) -> Result<BatchOutcome, RouteError> {
        let domain = batch.domain.as_str();
        // With DANE, one validating MX lookup gives the hosts and DNSSEC's verdict on
        // them; the verdict picks the pool key, so it comes first. A bogus answer is not
        // followed (dane.rs). Without DANE the lookup waits until no pooled connection fits.
        let validated = match &self.dane {
            None => None,
            Some(d) => match d.lookup_mx(&self.resolver, domain).await? {
                ValidatedMx::Hosts(hosts, verdict) => Some((hosts, verdict == Dnssec::Secure)),
                ValidatedMx::Bogus(why) => {
                    tracing::info!(queue_id = %batch.queue_id, domain, why, "smtp client: no delivery: DNSSEC");
                    let report = self.tls_report(batch, Sts::None, false);
                    let policy = TlsPolicy::Tlsa { mx_host: None, records: Vec::new() };
                    report.under(policy, None).emit(None, None, Some(ResultType::DnssecInvalid));
                    return Err(RouteError::Temporary(Status::local((4, 7, 5), format!("DANE: {why}"))));
                }
            },
        };
        // DANE (dane.rs) applies to the hosts of a DNSSEC-secure MX answer; it replaces
        // MTA-STS for them (RFC 8461 section 2) and validates the MX names REQUIRETLS
        // needs validated.
        let dane = self.dane.as_ref().filter(|_| validated.as_ref().is_some_and(|(_, secure)| *secure));
        let sts = match self.settings.mta_sts {
            true => self.sts.policy(&self.resolver, &self.connectors.verified, domain).await,
            false => Sts::None,
        };
        let policy = match &sts {
            Sts::Policy(p) => Some(p),
            Sts::None | Sts::Failed(_) => None,
        };
        // `TLS-Required: No` waives the recipient's policy; REQUIRETLS wins over it and
        // needs a policy that names the MX hosts (require_tls.rs), or DNSSEC.
        let waived = !batch.require_tls && require_tls::tls_optional(&batch.message);
        if waived && policy.is_some_and(|p| p.mode == Mode::Enforce) {
            tracing::info!(queue_id = %batch.queue_id, domain, "smtp client: TLS-Required: No, MTA-STS not enforced");
        }
        let report = self.tls_report(batch, sts.clone(), dane.is_some());
        let enforce = match (batch.require_tls, dane.is_some()) {
            (true, false) => Some(require_tls::validating_policy(policy, domain).map_err(RouteError::Permanent)?),
            (_, true) => None,
            (false, false) => policy.filter(|p| p.mode == Mode::Enforce && !waived),
        };
        // Only verified connections to REQUIRETLS servers may carry REQUIRETLS mail, and
        // a DANE domain's connections were all checked against its TLSA records.
        let key = match (batch.require_tls, dane.is_some()) {
            (true, _) => format!("mx-requiretls:{domain}"),
            (false, true) => format!("mx-dane:{domain}"),
            (false, false) => format!("mx:{domain}"),
        };
        if let Some(out) = self.try_pooled(&key, batch).await {
            return Ok(out);
        }
        let mut hosts = match validated {
            Some((hosts, _)) => hosts,
            None => lookup_mx(&self.resolver, domain).await?,
        };
        // RFC 8461 §5: `testing` only reports; we log what enforce would have refused.
        if let Some(p) = policy.filter(|p| p.mode == Mode::Testing && dane.is_none()) {
            for h in hosts.iter().filter(|h| !p.allows(&h.name)) {
                tracing::warn!(domain, mx = %h.name, id = %p.id, "MTA-STS (testing): MX not in the policy");
            }
        }
        if let Some(p) = enforce {
            for h in hosts.iter().filter(|h| !p.allows(&h.name)) {
                report.emit(Some(&h.name), None, Some(ResultType::ValidationFailure));
            }
            hosts.retain(|h| p.allows(&h.name));
            if hosts.is_empty() {
                return Err(RouteError::Temporary(Status::local(
                    (4, 7, 5),
                    format!("no MX host of {domain} matches its MTA-STS policy (id {})", p.id),
                )));
            }
        }
        let verified = enforce.is_some() || (batch.require_tls && dane.is_some());
        let mut last = Status::local((4, 4, 1), format!("no MX host of {domain} could be reached"));
        // A host that answered but cannot take REQUIRETLS makes the end permanent.
        let mut unsupported: Option<Status> = None;
        for host in hosts {
            // DANE's policy is per host: its TLSA records (RFC 8460 section 4.4).
            let mut host_report = report.clone();
            let need = match dane.map(|d| (d, self.settings.port)) {
                Some((d, port)) => match d.host_policy(&host.name, port).await {
                    HostPolicy::Required { usable, records } => {
                        let unusable = usable.is_empty().then_some(ResultType::TlsaInvalid);
                        let policy = TlsPolicy::Tlsa { mx_host: Some(host.name.clone()), records };
                        host_report = report.under(policy, unusable);
                        let connector = dane::connector(usable, &host.name)
                            .map_err(|e| RouteError::Temporary(Status::local((4, 7, 5), format!("DANE: {e}"))))?;
                        TlsNeed::Dane(connector)
                    }
                    HostPolicy::Unknown { why, bogus } => {
                        tracing::info!(queue_id = %batch.queue_id, host = %host.name, why, "smtp client: host skipped");
                        if bogus {
                            let policy = TlsPolicy::Tlsa { mx_host: Some(host.name.clone()), records: Vec::new() };
                            report.under(policy, None).emit(Some(&host.name), None, Some(ResultType::DnssecInvalid));
                        }
                        last = Status::local((4, 7, 5), format!("DANE: {why}"));
                        continue;
                    }
                    // A secure MX without TLSA records: DANE does not apply to it.
                    HostPolicy::None => {
                        host_report = report.under(TlsPolicy::NoPolicyFound, None);
                        if verified { TlsNeed::Verified } else { TlsNeed::Opportunistic }
                    }
                },
                None if verified => TlsNeed::Verified,
                None => TlsNeed::Opportunistic,
            };
            let ips = match lookup_addresses(&self.resolver, &host.name).await {
                Ok(ips) => ips,
                Err(e) => {
                    last = e.into_status();
                    continue;
                }
            };
            let ips = self.settings.route.mx_addresses(ips);
            if ips.is_empty() {
                let why = self.settings.route.ipv6_refusal();
                last = Status::local((4, 4, 4), format!("MX host {} has IPv6 addresses only, and {why}", host.name));
                tracing::info!(queue_id = %batch.queue_id, host = %host.name, "smtp client: host skipped: {why}");
                continue;
            }
            for ip in ips {
                let addr = SocketAddr::new(ip, self.settings.port);
                let opened = self.open(addr, &host.name, need.clone(), None).await;
                let at = Some(addr.ip());
                match &opened {
                    Ok(conn) if conn.tls != TlsState::None => host_report.emit(Some(&host.name), at, None),
                    // Opportunistic without TLS: not offered, or the handshake failed.
                    Ok(conn) => {
                        let kind = match conn.caps.starttls {
                            true => ResultType::ValidationFailure,
                            false => ResultType::StarttlsNotSupported,
                        };
                        host_report.emit(Some(&host.name), at, Some(kind));
                    }
                    Err(SessionError::TlsFailed(kind, _)) => host_report.emit(Some(&host.name), at, Some(*kind)),
                    // No TLS session was attempted (connection refused, timeouts).
                    Err(_) => {}
                }
                match opened {
                    Ok(conn) if batch.require_tls && !conn.caps.require_tls => {
                        tracing::info!(queue_id = %batch.queue_id, host = %host.name, %addr, "smtp client: host skipped: no REQUIRETLS");
                        unsupported = Some(require_tls::refused(format!("{} does not support REQUIRETLS", host.name)));
                        conn.quit().await;
                    }
                    Ok(conn) => return Ok(self.transact(conn, &key, batch).await),
                    Err(e) => {
                        tracing::info!(queue_id = %batch.queue_id, host = %host.name, %addr, error = %e, "smtp client: host skipped");
                        last = e.diagnostic();
                    }
                }
            }
        }
        match unsupported {
            Some(status) => Err(RouteError::Permanent(status)),
            None => Err(RouteError::Temporary(last)),
        }
    }

    /// Where this batch's TLS results go: nowhere without a recorder, or when the
    /// message is itself a TLS report (RFC 8460 section 3: no report loops). A DANE
    /// domain's policy is set per host (`TlsReport::under`).
    fn tls_report(&self, batch: &DeliveryBatch, sts: Sts, dane: bool) -> TlsReport {
        let recorder = self.settings.tls_recorder.clone().filter(|_| !is_tls_report(&batch.message));
        let (policy, policy_failure) = match (dane, sts) {
            (true, _) => (TlsPolicy::Tlsa { mx_host: None, records: Vec::new() }, None),
            (false, Sts::Policy(p)) if p.mode != Mode::None => {
                let mode = if p.mode == Mode::Enforce { "enforce" } else { "testing" }.to_string();
                (TlsPolicy::Sts { id: p.id, mode, mx: p.mx, max_age: p.max_age }, None)
            }
            (false, Sts::Failed(f)) => (TlsPolicy::StsUnavailable { id: f.id }, Some(f.result_type)),
            (false, _) => (TlsPolicy::NoPolicyFound, None),
        };
        TlsReport { recorder, domain: batch.domain.clone(), policy, policy_failure, route: self.settings.route.clone() }
    }

    async fn via_relay(&self, relay: &RelayHost, batch: &DeliveryBatch) -> Result<BatchOutcome, RouteError> {
        let key = "relay".to_string();
        if let Some(out) = self.try_pooled(&key, batch).await {
            return Ok(out);
        }
        let credentials = match (&relay.username, &relay.password) {
            (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
            _ => None,
        };
        let need = match relay.mode {
            RelayMode::Smtps => TlsNeed::Implicit,
            RelayMode::StartTls => TlsNeed::Verified,
            RelayMode::Insecure => TlsNeed::Opportunistic,
        };
        let context = format!("relay {relay}");
        if batch.require_tls && relay.mode == RelayMode::Insecure {
            return Err(RouteError::Permanent(require_tls::refused(format!("{context} is not required to use TLS"))));
        }
        let ips = lookup_addresses(&self.resolver, &relay.host)
            .await
            .map_err(|e| RouteError::Temporary(in_context(e.into_status(), &context)))?;
        let mut last = Status::local((4, 4, 1), format!("{context}: could not be reached"));
        for ip in ips {
            let addr = SocketAddr::new(ip, relay.port);
            match self.open(addr, &relay.host, need.clone(), credentials).await {
                Ok(conn) if batch.require_tls && !conn.caps.require_tls => {
                    conn.quit().await;
                    let why = require_tls::refused(format!("{context} does not support REQUIRETLS"));
                    return Err(RouteError::Permanent(why));
                }
                Ok(conn) => return Ok(self.transact(conn, &key, batch).await),
                Err(e) => {
                    tracing::warn!(queue_id = %batch.queue_id, %relay, %addr, error = %e, "smtp client: relay failed");
                    last = e.diagnostic_at(&context);
                }
            }
        }
        Err(RouteError::Temporary(last))
    }

    /// Connect, EHLO, STARTTLS as `need` says, AUTH if given.
    async fn open(
        &self,
        addr: SocketAddr,
        host: &str,
        need: TlsNeed,
        credentials: Option<(&str, &str)>,
    ) -> Result<ClientSession, SessionError> {
        let hostname = &self.settings.hostname;
        let timeout = self.settings.connect_timeout;
        let name = server_name(host);
        let no_name = || SessionError::Tls(format!("{host:?} is not a valid TLS name"));
        let source = self.settings.route.source_for(&addr.ip());
        let mut conn = if matches!(need, TlsNeed::Implicit) {
            let name = name.clone().ok_or_else(no_name)?;
            ClientSession::connect_tls(addr, source, host, timeout, &self.connectors.verified, name, true).await?
        } else {
            ClientSession::connect_from(addr, source, host, timeout).await?
        };
        conn.ehlo(hostname).await?;
        match need {
            TlsNeed::Verified => {
                if !conn.caps.starttls {
                    return Err(SessionError::TlsFailed(
                        ResultType::StarttlsNotSupported,
                        format!("{host} does not offer STARTTLS, which is required"),
                    ));
                }
                conn.starttls(&self.connectors.verified, name.ok_or_else(no_name)?, true, hostname).await?;
            }
            TlsNeed::Dane(connector) => {
                if !conn.caps.starttls {
                    return Err(SessionError::TlsFailed(
                        ResultType::StarttlsNotSupported,
                        format!("{host} does not offer STARTTLS, which its TLSA records require"),
                    ));
                }
                conn.starttls(&connector, name.ok_or_else(no_name)?, true, hostname).await?;
            }
            TlsNeed::Opportunistic if conn.caps.starttls => {
                // The certificate is not checked, so any syntactically valid name will do.
                let name = name.or_else(|| server_name("invalid")).ok_or_else(no_name)?;
                if let Err(e) = conn.starttls(&self.connectors.unverified, name, false, hostname).await {
                    tracing::info!(host, %addr, error = %e, "smtp client: STARTTLS failed, retrying without TLS");
                    return Box::pin(self.open(addr, host, TlsNeed::Plain, credentials)).await;
                }
            }
            TlsNeed::Opportunistic | TlsNeed::Plain | TlsNeed::Implicit => {}
        }
        if let Some((user, password)) = credentials {
            // `auth` itself refuses a connection without TLS.
            conn.auth(user, password).await.map_err(|e| match e {
                SessionError::Rejected(r) => SessionError::Tls(format!("relay refused our credentials: {r}")),
                other => other,
            })?;
        }
        tracing::debug!(host, %addr, tls = ?conn.tls, "smtp client: connected");
        Ok(conn)
    }

    /// Run the batch's transaction on `conn`, then park or close it.
    async fn transact(&self, mut conn: ClientSession, key: &str, batch: &DeliveryBatch) -> BatchOutcome {
        let (outcomes, reusable) =
            conn.send_mail(batch.sender.as_ref(), &batch.recipients, &batch.message, batch.require_tls).await;
        let tls = match conn.tls {
            TlsState::None => "none",
            TlsState::Unverified => "unverified",
            TlsState::Verified => "verified",
        };
        let host = format!("{}[{}]:{}", conn.host.trim_end_matches('.'), conn.peer.ip(), conn.peer.port());
        let outcome = BatchOutcome { outcomes, relay: Some(Relay { host, tls }) };
        if reusable {
            self.park(key, conn);
        } else {
            conn.quit().await;
        }
        outcome
    }

    /// Use an idle connection to the same destination, if one is fresh and RSET works.
    async fn try_pooled(&self, key: &str, batch: &DeliveryBatch) -> Option<BatchOutcome> {
        loop {
            let candidate = {
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                pool.get_mut(key).and_then(Vec::pop)
            };
            let (mut conn, parked) = candidate?;
            if parked.elapsed() > POOL_IDLE {
                conn.quit().await;
                continue;
            }
            if conn.rset().await {
                tracing::debug!(queue_id = %batch.queue_id, host = %conn.host, "smtp client: reusing connection");
                return Some(self.transact(conn, key, batch).await);
            }
        }
    }

    fn park(&self, key: &str, conn: ClientSession) {
        let mut stale = Vec::new();
        {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            for list in pool.values_mut() {
                let (keep, old): (Vec<_>, Vec<_>) = list.drain(..).partition(|(_, t)| t.elapsed() <= POOL_IDLE);
                *list = keep;
                stale.extend(old.into_iter().map(|(c, _)| c));
            }
            pool.retain(|_, list| !list.is_empty());
            let list = pool.entry(key.to_string()).or_default();
            if list.len() < POOL_PER_KEY {
                list.push((conn, Instant::now()));
            } else {
                stale.push(conn);
            }
        }
        for conn in stale {
            tokio::spawn(conn.quit());
        }
    }
}

impl Transport for SmtpTransport {
    fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, BatchOutcome> {
        Box::pin(self.deliver_batch(batch))
    }
}
