//! Wiring: build the shared state from a `Config`, bind every listener, start the
//! services, and shut down gracefully.
//!
//! Start-up order follows architecture.md: data dir -> resolver -> store (with PostgreSQL:
//! the shared files are taken from it, under a lock held until the listeners are bound)
//! -> accounts -> TLS -> DKIM -> outbound queue (the first reverse DNS verdict on the
//! sending addresses, then the workers and the `mailroom queue` control socket) ->
//! listeners -> shared files uploaded, lock released.
//! Submitted, relayed and forwarded mail reaches the queue through the SMTP sessions;
//! bounces for our own senders come back through the `LocalCourier` into their INBOX.
//! Every failure before serving is a [`StartError`]: one line naming the cause, and
//! the process exits 2 with nothing written half-way. Listeners are all bound before
//! any is served, so a port in use aborts the start instead of leaving a server that
//! answers on some ports only.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use thiserror::Error;

use crate::accounts::{self, Directory};
use crate::acme::{Acme, AcmeSettings, Http01Tokens};
use crate::config::{Config, DnsConfig, LogFormat, Protocol};
use crate::datadir::{DataDir, DataDirError};
use crate::mailauth::{ArcSealKey, InboundAuthenticator, KeyError, KeyRing, Signers, Srs};
use crate::metrics::metrics;
use crate::net::{self, AcceptContext, BindError, BoundListener, ConnectionLimiter, Limiter, Service, Shutdown};
use crate::queue::{Queue, QueueError, QueueSettings};
use crate::readiness::Readiness;
use crate::scan::Scanners;
use crate::sieve::{AdminScripts, Engine, SieveDelivery, compile_admin_script};
use crate::smtp::client::family::start_reverse_watch;
use crate::smtp::client::{ClientError, ClientSettings, OutboundRoute, SmtpTransport};
use crate::smtp::courier::LocalCourier;
use crate::smtp::inbound::InboundChecks;
use crate::smtp::sieve_outbound::QueueOutbound;
use crate::store::pg::mirror::{Mirror, MirrorError};
use crate::store::{MailboxOwner, Store, StoreError};
use crate::tls::{self, CertStore, TlsError};

mod services;
mod status;
mod web_backend;
use services::services;

/// How long shutdown waits for sessions to finish.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("accounts: {0}")]
    Accounts(String),
    #[error("TLS certificate (MAILROOM_TLS_CERT_FILE/MAILROOM_TLS_KEY_FILE): {0}")]
    TlsFiles(TlsError),
    #[error("self-signed certificate in the data dir: {0}")]
    SelfSigned(TlsError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Dkim(#[from] KeyError),
    #[error("inbound checks: {0}")]
    Scanners(String),
    #[error("mail store: {0}")]
    Store(#[from] StoreError),
    #[error("mail store (MAILROOM_STORE): {0}")]
    OpenStore(#[from] crate::store::open::OpenError),
    #[error(transparent)]
    SharedFiles(#[from] MirrorError),
    #[error("outbound SMTP client: {0}")]
    Client(#[from] ClientError),
    #[error("MAILROOM_RELAY_CA_FILE: {0}")]
    RelayCa(String),
    #[error("outbound queue: {0}")]
    Queue(#[from] QueueError),
    #[error("sieve: {0}")]
    Sieve(String),
    #[error("web pages: {0}")]
    Web(String),
    #[error("fetch: {0}")]
    Fetch(String),
}

/// State every protocol shares. Cheap to clone (Arcs inside).
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub directory: Arc<Directory>,
    pub certs: Arc<CertStore>,
    pub readiness: Arc<Readiness>,
    /// Pending ACME HTTP-01 answers, served on port 80.
    pub acme_tokens: Arc<Http01Tokens>,
    pub shutdown: Shutdown,
    pub signers: Arc<Signers>,
    pub store: Store,
    /// The outbound queue (remote copies of submitted, relayed and forwarded mail).
    pub queue: Queue,
    /// Slows password guessing on the submission ports (per IP and per account).
    /// One limiter for logins (SMTP AUTH, IMAP, POP3), connection rates and message rates.
    pub limiter: Arc<Limiter>,
    /// Port 25's SPF/DKIM/DMARC/ARC and scanner checks.
    pub inbound: Arc<InboundChecks>,
    /// The one DNS resolver, shared so every lookup uses one cache.
    pub resolver: TokioResolver,
    /// Message bytes held whole in memory at once, server-wide (checks, signing).
    pub message_memory: crate::net::MessageMemory,
    /// Local delivery for every SMTP service and the queue's DSNs.
    pub courier: LocalCourier,
    /// The report kinds that are on (DMARC aggregate, SMTP TLS): flushed at shutdown.
    pub reports: Vec<Arc<dyn crate::reports::Kind>>,
    /// What the admin page and `mailroom status` show.
    pub status: Arc<crate::status::StatusSources>,
    /// The data dir's free space, sampled every second: SMTP refuses new mail below
    /// `MAILROOM_DISK_MIN_FREE`.
    pub disk: crate::disk::DiskSpace,
    /// Each `MAILROOM_FETCH` source's last success and error, for the admin page.
    pub fetch: Arc<crate::fetch::FetchStatus>,
}

/// A started server: its bound addresses and the means to stop it.
pub struct Running {
    pub shared: Shared,
    /// Every bound listener address, by protocol (real ports when `:0` was asked).
    pub addresses: Vec<(Protocol, SocketAddr)>,
    _data_dir: DataDir,
}

/// Install the global tracing subscriber per `MAILROOM_LOG` / `MAILROOM_LOG_FORMAT`.
/// Logs go to stderr; JSON mode writes exactly one object per line.
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// Start everything; returns once every listener is bound and serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let started = Instant::now();
    tls::install_default_provider();
    let data_dir = DataDir::open(&config.data_dir)?;
    // One resolver (and so one cache) for every lookup: the database host, the SMTP
    // client, ACME, inbound checks, sender domains, scanners and the periodic DNS check.
    let resolver = crate::dns::resolver::build(&config.dns_servers).map_err(ClientError::Resolver)?;
    let store = crate::store::open::open_configured(&config, data_dir.root(), &resolver).await?;
    // Replicas sharing a database share their keys, secrets, certificates and generated
    // postmaster: take the stored ones before anything below loads or generates them.
    let shared_files = match &store {
        Store::Pg(pg) => Some(Mirror::begin(pg.clone(), data_dir.root()).await?),
        Store::Maildir(_) => None,
    };

    let mut entries = config.accounts.entries.clone();
    // Saved (and its password shown) only once every listener is bound.
    let mut new_postmaster = None;
    if entries.is_empty() {
        match accounts::load_generated(data_dir.root()).map_err(StartError::Accounts)? {
            Some(entry) => entries.push(entry),
            None => {
                let fresh = accounts::NewPostmaster::generate(config.primary_domain()).map_err(StartError::Accounts)?;
                entries.push(fresh.entry.clone());
                new_postmaster = Some(fresh);
            }
        }
    }
    let directory = Directory::new(config.domains.clone(), entries, config.accounts.aliases.clone())
        .map_err(|e| StartError::Accounts(e.join("; ")))?;
    if !config.accounts.entries.is_empty() && matches!(config.store(), crate::config::StoreConfig::Maildir) {
        report_retired_postmaster(data_dir.root(), &directory);
    }

    let certs = CertStore::new();
    match config.tls_files() {
        Some((cert, key)) => {
            let loaded = tls::load_pair(cert, key, tls::CertSource::Files).map_err(StartError::TlsFiles)?;
            certs.set_default(loaded);
        }
        None => {
            let loaded =
                tls::load_or_create_self_signed(&data_dir.tls(), &config.hostname).map_err(StartError::SelfSigned)?;
            certs.set_default(loaded);
        }
    }
    // One key ring for the signers, the ARC key and the records logged at start.
    let ring = KeyRing::load_or_generate(&data_dir.dkim(), &config.domains, config.dkim_selector.as_deref())?;
    let signers =
        Arc::new(Signers::from_ring(&data_dir.dkim(), &config.domains, config.dkim_selector.as_deref(), &ring));
    store
        .ensure_accounts(
            directory
                .accounts()
                .into_iter()
                .map(|a| MailboxOwner { local: a.address.local.clone(), domain: a.address.domain.clone() }),
        )
        .await?;
    let readiness = Readiness::new(certs.clone());
    let acme_tokens = Http01Tokens::new();
    // A stored ACME certificate replaces the self-signed one before any listener
    // serves; without one, /readyz waits for the first order.
    let acme = match config.tls_files() {
        Some(_) => None,
        None => AcmeSettings::new(&config.acme, &config.hostname, &config.domains)
            .map(|s| AcmeSettings { keep_key: config.dane, ..s }),
    };
    let acme_progress = Arc::new(crate::status::AcmeSlot::default());
    let acme = acme.map(|s| {
        let acme =
            Acme::prepare(s, resolver.clone(), &data_dir.tls(), certs.clone(), readiness.clone(), acme_tokens.clone())
                .with_progress(acme_progress.clone());
        match &store {
            Store::Pg(pg) => acme.with_lease(pg.clone()),
            Store::Maildir(_) => acme,
        }
    });
    let acme_reload = acme.as_ref().map(Acme::reloader);
    if config.dane {
        crate::dns::tlsa::log_at_start(&config.dns());
    }
    let mut client = ClientSettings::new(
        &config.hostname,
        config.outbound_smtp_port,
        config.relay_host.clone(),
        config.dns_servers.clone(),
    );
    client.dnssec_anchors = config.dnssec_trust_anchors.clone();
    if let Some(path) = &config.relay_ca_file {
        client.extra_roots = crate::config::pem_roots(path).map_err(StartError::RelayCa)?;
    }
    let route = Arc::new(OutboundRoute::new(&config.outbound));
    client.route = route.clone();
    let tls_recorder = config.tls_reports.then(|| Arc::new(crate::tlsrpt::Recorder::default()));
    client.tls_recorder = tls_recorder.clone().map(|r| r as Arc<dyn crate::smtp::client::tls_outcome::TlsRecorder>);
    let transport = SmtpTransport::with_resolver(client, resolver.clone())?;
    let directory = Arc::new(directory);
    let dmarc_recorder = config.dmarc_reports.then(|| Arc::new(crate::dmarc::Recorder::default()));
    let inbound = inbound_checks(&config, &data_dir, &ring, resolver.clone(), dmarc_recorder.clone())?;
    let plain_courier = LocalCourier::new(directory.clone(), store.clone());
    let bounces = Arc::new(plain_courier.clone());
    let queue_cell = Arc::new(std::sync::OnceLock::new());
    let message_memory = crate::net::MessageMemory::default();
    let courier = plain_courier.clone().with_sieve(sieve_delivery(
        &config,
        &store,
        message_memory.clone(),
        QueueOutbound {
            queue: queue_cell.clone(),
            local: plain_courier,
            directory: directory.clone(),
            signers: signers.clone(),
            srs: Some(inbound.srs.clone()),
        },
    )?);
    let settings = QueueSettings::new(&config.hostname, &config.queue);
    // With the mail in PostgreSQL the queue is there too: every replica shares it.
    let queue = match &store {
        Store::Pg(pg) => {
            Queue::open_pg(pg, crate::queue::PgQueueOptions::default(), settings, Arc::new(transport), bounces).await?
        }
        Store::Maildir(_) => Queue::open(&data_dir.queue(), settings, Arc::new(transport), bounces)?,
    };
    let _ = queue_cell.set(queue.clone());
    let outbox = Arc::new(crate::reports::Outbox {
        store: store.clone(),
        queue: queue.clone(),
        signers: signers.clone(),
        resolver: resolver.clone(),
        hostname: config.hostname.clone(),
        primary_domain: config.primary_domain().to_string(),
    });
    let mut reports: Vec<Arc<dyn crate::reports::Kind>> = Vec::new();
    if let Some(recorder) = dmarc_recorder {
        reports.push(Arc::new(crate::dmarc::Reporter { recorder, outbox: outbox.clone() }));
    }
    if let Some(recorder) = tls_recorder {
        reports.push(Arc::new(crate::tlsrpt::Reporter { recorder, outbox }));
    }
    // Every report run (daily, or on command) leaves its result for the status page.
    let report_runs = Arc::new(crate::status::ReportRuns::default());
    let reports = status::recording_runs(reports, &report_runs);
    let status = status::status_sources(
        &config,
        &queue,
        certs.clone(),
        acme_progress,
        directory.clone(),
        store.clone(),
        report_runs,
    );
    let disk_watch = crate::disk::DiskWatch::new(data_dir.root(), config.limits.disk_min_free);
    let shared = Shared {
        disk: crate::disk::DiskSpace::new(disk_watch.clone()),
        status,
        fetch: Arc::new(crate::fetch::FetchStatus::new(&config.fetch.sources)),
        signers,
        store,
        queue,
        limiter: Arc::new(Limiter::configured(&config.limits, &config.trusted_networks)),
        inbound,
        resolver,
        message_memory,
        courier,
        config: Arc::new(config),
        directory,
        certs: certs.clone(),
        readiness: readiness.clone(),
        acme_tokens,
        shutdown: Shutdown::new(),
        reports,
    };
    stop_with(&shared.shutdown, disk_watch.spawn(readiness.clone()));
    if !shared.reports.is_empty() {
        stop_with(&shared.shutdown, crate::reports::spawn(shared.reports.clone(), shared.shutdown.signal()));
    }
    if let Store::Pg(pg) = &shared.store {
        stop_with(&shared.shutdown, watch_database(pg.clone(), readiness.clone()));
        // Bodies in a bucket: one replica at a time deletes the objects no row names.
        if let Some(sweeper) = pg.spawn_orphan_sweeper() {
            stop_with(&shared.shutdown, sweeper);
        }
    }
    if let Some((cert, key)) = shared.config.tls_files() {
        let watcher =
            tls::spawn_file_watcher(certs.clone(), cert.to_path_buf(), key.to_path_buf(), Duration::from_secs(10));
        stop_with(&shared.shutdown, watcher);
    }

    // Before the first delivery: `auto` starts from a reverse DNS verdict.
    let public = crate::dns::configured_public(&shared.config.dns());
    let watch = start_reverse_watch(route, shared.resolver.clone(), shared.config.hostname.clone(), public).await;
    stop_with(&shared.shutdown, watch);
    // Workers and the operator's socket start before the listeners: a message accepted
    // in the first millisecond is already being delivered.
    // The workers watch the shutdown signal themselves and let attempts in flight finish.
    let _workers = shared.queue.spawn_workers(shared.shutdown.signal());
    let kinds = shared.reports.clone();
    let reports_command = (!kinds.is_empty()).then(|| -> crate::queue::ReportsCommand {
        Arc::new(move || {
            let kinds = kinds.clone();
            Box::pin(async move {
                let today = crate::reports::day_of(std::time::SystemTime::now());
                crate::reports::run_all(&kinds, today).await
            })
        })
    });
    let commands = crate::queue::ControlCommands {
        reports: reports_command,
        status: Some(status::status_command(shared.status.clone())),
        import: Some(services::import_command(&shared)?),
    };
    crate::queue::spawn_control_server(shared.queue.clone(), commands, data_dir.root(), shared.shutdown.signal())?;

    // Bind everything first, serve after: all ports or none.
    let pages = services::web_pages(&shared)?;
    let services = services(&shared, pages);
    let mut bound: Vec<(BoundListener, Service)> = Vec::new();
    for (protocol, service) in services {
        for listener in net::bind(protocol, shared.config.listen_addrs(protocol))? {
            bound.push((listener, service.clone()));
        }
    }
    let addresses: Vec<(Protocol, SocketAddr)> = bound.iter().map(|(l, _)| (l.protocol, l.local_addr)).collect();
    let accept = AcceptContext {
        limiter: ConnectionLimiter::new(
            shared.config.listen.max_connections,
            shared.config.listen.max_connections_per_ip,
        ),
        shutdown: shared.shutdown.clone(),
        proxy_from: Arc::new(shared.config.listen.proxy_protocol_from.clone()),
        rate: Some(shared.limiter.clone()),
    };
    if !shared.config.listen.proxy_protocol_from.is_empty() {
        tracing::info!(from = ?shared.config.listen.proxy_protocol_from, "PROXY protocol required from these networks and refused from others");
    }
    for (listener, service) in bound {
        tokio::spawn(net::serve(listener, service, accept.clone()));
    }
    if let Some(fresh) = new_postmaster {
        fresh.save(data_dir.root()).map_err(StartError::Accounts)?;
        tracing::warn!(
            account = %fresh.entry.address,
            password = %fresh.password,
            "no MAILROOM_ACCOUNTS given: created this account with a random password; it is shown only now (only its hash is kept in the data dir; `mailroom reset-password` makes a new one)"
        );
    }
    // Everything made above is on disk now: publish it to the other replicas, release
    // the start-up lock, and keep syncing.
    if let Some(guard) = shared_files {
        let mirror = guard.finish().await?;
        let (signers, certs, tls_dir) = (shared.signers.clone(), certs.clone(), data_dir.tls());
        let sync = mirror.spawn(move |names| reload_shared(names, &signers, &certs, &tls_dir, acme_reload.as_ref()));
        stop_with(&shared.shutdown, sync);
    }
    readiness.set_listeners_bound();
    // Orders start once port 443/80 listen: the CA validates against them.
    if let Some(acme) = acme {
        stop_with(&shared.shutdown, acme.spawn());
    }
    log_banner(&shared, &addresses, started);
    let dns = shared.config.dns();
    log_dns_records(&dns, &ring);
    let signers = shared.signers.clone();
    let checker = crate::dns::spawn_periodic_check(dns, shared.resolver.clone(), move || {
        if let Err(e) = signers.reload() {
            tracing::error!(error = %e, "cannot reload DKIM keys");
        }
    });
    stop_with(&shared.shutdown, checker);
    let checklist = shared.status.dns.spawn(shared.config.dns(), shared.resolver.clone());
    stop_with(&shared.shutdown, checklist);
    let reloader = spawn_account_reloader(
        accounts::AccountSources::new(&shared.config.domains, &shared.config.data_dir, &shared.config.accounts),
        shared.directory.clone(),
        shared.store.clone(),
    );
    stop_with(&shared.shutdown, reloader);
    if let Some((fetcher, sources)) = services::fetcher(&shared)? {
        shared.shutdown.spawn(crate::fetch::run_all(fetcher, sources, shared.shutdown.signal()));
    }
    Ok(Running { shared, addresses, _data_dir: data_dir })
}

/// Sieve at delivery: the admin scripts of `MAILROOM_SIEVE_BEFORE`/`_AFTER` (checked to
/// compile when the configuration was read), and the accounts' active scripts and their
/// vacation/duplicate memory from the store.
fn sieve_delivery(
    config: &Config,
    store: &Store,
    memory: crate::net::MessageMemory,
    outbound: QueueOutbound,
) -> Result<SieveDelivery, StartError> {
    let compile = |name: &str, script: &Option<crate::config::AdminScript>| {
        script
            .as_ref()
            .map(|s| {
                compile_admin_script(s.text.as_bytes()).map_err(|e| StartError::Sieve(format!("MAILROOM_{name}: {e}")))
            })
            .transpose()
    };
    let admin = AdminScripts {
        before: compile("SIEVE_BEFORE", &config.sieve.before)?,
        after: compile("SIEVE_AFTER", &config.sieve.after)?,
    };
    Ok(SieveDelivery {
        engine: Arc::new(Engine::new(&config.hostname, admin)),
        source: Arc::new(store.clone()),
        folders: Arc::new(store.clone()),
        outbound: Arc::new(outbound),
        memory,
    })
}

/// Port 25's checks: SPF/DKIM/DMARC/ARC through our resolver, the configured scanners,
/// SRS with a key kept in `state/`, and ARC seals with the primary domain's DKIM key.
fn inbound_checks(
    config: &Config,
    data_dir: &DataDir,
    ring: &KeyRing,
    resolver: TokioResolver,
    dmarc_reports: Option<Arc<crate::dmarc::Recorder>>,
) -> Result<Arc<InboundChecks>, StartError> {
    let scanners = Scanners::new(&config.scan, &config.hostname, resolver.clone())
        .map_err(|e| StartError::Scanners(e.to_string()))?;
    let srs = Srs::load_or_create(&data_dir.state()).map_err(|e| StartError::Scanners(e.to_string()))?;
    let primary = config.primary_domain().to_string();
    let arc_key = ring.signing_keys(&primary).and_then(|keys| ArcSealKey::new(keys).ok()).map(|key| (primary, key));
    Ok(Arc::new(InboundChecks {
        hostname: config.hostname.clone(),
        // A DNS outage must not hold every inbound session for minutes: past this the
        // results are `temperror` and the message is accepted (never refused).
        authenticator: InboundAuthenticator::new(resolver).with_timeout(Duration::from_secs(30)),
        scanners,
        srs: Arc::new(srs),
        arc_key,
        dmarc_reports,
        dmarc_inbox: Some(Arc::new(crate::dmarc::receive::ReportInbox::new(&config.domains))),
    }))
}

/// Put shared files that another replica changed in service: the code that read them at
/// start reads them again. The accounts reloader already watches the generated
/// postmaster's file, and the SRS secret is made once, before any replica serves.
fn reload_shared(
    names: &[String],
    signers: &Signers,
    certs: &CertStore,
    tls_dir: &Path,
    acme: Option<&crate::acme::AcmeReload>,
) {
    if names.iter().any(|n| n.starts_with("dkim/")) {
        match signers.reload() {
            Ok(()) => tracing::info!("DKIM keys reloaded"),
            Err(e) => tracing::error!(error = %e, "cannot reload DKIM keys"),
        }
    }
    if !names.iter().any(|n| n.starts_with("tls/")) {
        return;
    }
    if acme.is_some_and(|a| a.reload()) {
        return;
    }
    let serving = certs.default_cert();
    if serving.as_ref().is_some_and(|c| c.source == tls::CertSource::SelfSigned) {
        let (cert, key) = (tls_dir.join("selfsigned.crt"), tls_dir.join("selfsigned.key"));
        match tls::load_pair(&cert, &key, tls::CertSource::SelfSigned) {
            Ok(loaded) if serving.is_some_and(|c| c.key.cert.first() != loaded.key.cert.first()) => {
                tracing::info!(names = ?loaded.names, "serving the self-signed certificate stored by another replica");
                certs.set_default(loaded);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the self-signed certificate stored by another replica is unusable"),
        }
    }
}

/// How often the accounts and aliases files are looked at (a digest of a few small files).
const ACCOUNTS_POLL: Duration = Duration::from_secs(2);

/// Apply changed accounts/aliases files without a restart: a valid new set replaces the
/// old one at once (new accounts get their Maildir first); an invalid one is refused
/// whole, loudly, and the old set stays in use until the file changes again.
fn spawn_account_reloader(
    sources: accounts::AccountSources,
    directory: Arc<Directory>,
    store: Store,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let read_version = |s: &accounts::AccountSources| {
            let s = s.clone();
            tokio::task::spawn_blocking(move || s.version())
        };
        let Ok(mut version) = read_version(&sources).await else {
            return;
        };
        tracing::info!(version, accounts = directory.accounts().len(), "accounts loaded");
        loop {
            tokio::time::sleep(ACCOUNTS_POLL).await;
            let Ok(now) = read_version(&sources).await else {
                continue;
            };
            if now == version {
                continue;
            }
            let s = sources.clone();
            let Ok(loaded) = tokio::task::spawn_blocking(move || s.load()).await else {
                continue;
            };
            let result = match loaded {
                Ok(loaded) => {
                    let owners = loaded
                        .directory
                        .accounts()
                        .into_iter()
                        .map(|a| MailboxOwner { local: a.address.local.clone(), domain: a.address.domain.clone() });
                    if let Err(e) = store.ensure_accounts(owners).await {
                        tracing::error!(error = %e, "accounts NOT reloaded: cannot create the new accounts' Maildirs; the previous accounts stay in use");
                        continue;
                    }
                    directory.replace_with(loaded.directory);
                    tracing::info!(
                        version = loaded.version,
                        accounts = loaded.accounts,
                        aliases = loaded.aliases,
                        "accounts reloaded"
                    );
                    version = loaded.version;
                    "applied"
                }
                Err(problems) => {
                    tracing::error!(
                        version = now,
                        problems = %problems.join("; "),
                        "accounts NOT reloaded: the new content is invalid; the previous accounts stay in use"
                    );
                    version = now;
                    "invalid"
                }
            };
            metrics().accounts_reloads_total.with_label_values(&[result]).inc();
        }
    })
}

/// With the mail in PostgreSQL, `/readyz` fails while the database cannot be reached, so a
/// load balancer sends clients to replicas that can serve them (sessions here get
/// temporary errors meanwhile, and the pool reconnects by itself).
fn watch_database(store: crate::store::PgStore, readiness: Arc<Readiness>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let reason = store.ping().await.err().map(|e| format!("the mail store is unreachable: {e}"));
            readiness.set_blocker("store", reason);
        }
    })
}

/// Abort a background task when shutdown begins.
fn stop_with(shutdown: &Shutdown, task: tokio::task::JoinHandle<()>) {
    let mut signal = shutdown.signal();
    tokio::spawn(async move {
        let _ = signal.changed().await;
        task.abort();
    });
}

/// MAILROOM_ACCOUNTS replaced the account generated at an earlier first start: say so,
/// with where its mail is and where postmaster@ goes now, instead of orphaning its
/// Maildir in silence. The file and the Maildir are left alone (the operator decides).
fn report_retired_postmaster(data_dir: &Path, directory: &Directory) {
    let Ok(Some(old)) = accounts::load_generated(data_dir) else {
        return;
    };
    if directory.account(&old.address).is_some() {
        return;
    }
    let owner = MailboxOwner { local: old.address.local.clone(), domain: old.address.domain.clone() };
    let maildir = crate::store::maildir::Layout::new(data_dir).account_dir(&owner).unwrap_or_default();
    let messages = count_maildir_messages(&maildir);
    let now_to: Vec<String> = directory
        .resolve(&old.address)
        .into_iter()
        .map(|r| match r {
            accounts::Recipient::Mailbox(a) | accounts::Recipient::Forward(a) => a.to_string(),
        })
        .collect();
    tracing::warn!(
        account = %old.address,
        messages,
        maildir = %maildir.display(),
        delivers_to = %if now_to.is_empty() { "nobody".to_string() } else { now_to.join(", ") },
        "MAILROOM_ACCOUNTS is set: the generated account is retired and can no longer log in; its messages stay in its Maildir (move them into an account, or delete the directory and {}/accounts)",
        data_dir.display()
    );
}

/// Messages in every folder of a Maildir++ tree (files in `cur/` and `new/`).
fn count_maildir_messages(root: &Path) -> usize {
    let count_in = |dir: &Path| {
        ["cur", "new"].iter().map(|s| std::fs::read_dir(dir.join(s)).map_or(0, |d| d.count())).sum::<usize>()
    };
    let folders = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with('.') && e.path().is_dir())
                .map(|e| count_in(&e.path()))
                .sum::<usize>()
        })
        .unwrap_or(0);
    count_in(root) + folders
}

fn log_banner(shared: &Shared, addresses: &[(Protocol, SocketAddr)], started: Instant) {
    let c = &shared.config;
    let listeners: Vec<String> = addresses.iter().map(|(p, a)| format!("{}={a}", p.name())).collect();
    let trusted = if c.trusted_networks.is_empty() {
        "none".to_string()
    } else {
        c.trusted_networks.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
    };
    let cert = shared.certs.default_cert().map(|c| c.source.name()).unwrap_or("none");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        hostname = %c.hostname,
        domains = %c.domains.join(","),
        data_dir = %c.data_dir.display(),
        listeners = %listeners.join(" "),
        trusted_networks = %trusted,
        certificate = cert,
        startup_ms = started.elapsed().as_millis() as u64,
        "mailroom started"
    );
    if !c.trusted_networks.is_empty() {
        tracing::warn!(trusted_networks = %trusted, "MAILROOM_TRUSTED_NETWORKS is set: clients from these networks may relay without authentication");
    }
}

/// The records to publish, logged at every start (also `mailroom dns`).
fn log_dns_records(config: &DnsConfig, ring: &KeyRing) {
    let zone = crate::dns::zone_fragment(&crate::dns::expected_records(config, ring));
    tracing::info!("DNS records to publish (`mailroom dns` prints them, `mailroom dns --check` checks them):\n{zone}");
}

impl Running {
    /// The first bound address of `protocol`.
    pub fn address(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.addresses.iter().find(|(p, _)| *p == protocol).map(|(_, a)| *a)
    }

    /// Stop accepting, tell sessions to finish, wait up to `grace`.
    pub async fn stop(self, grace: Duration) {
        self.shared.readiness.set_draining();
        self.shared.shutdown.begin();
        let left = self.shared.shutdown.drain(grace).await;
        if left > 0 {
            tracing::warn!(sessions = left, "drain deadline passed; closing remaining sessions");
        } else {
            tracing::info!("all sessions finished");
        }
        // What the sessions recorded up to now goes into the store.
        for kind in &self.shared.reports {
            kind.flush().await;
        }
    }
}

/// `mailroom serve`: start, run until SIGTERM/SIGINT, drain, return.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let running = start(config).await?;
    wait_for_signal().await;
    tracing::info!(grace_secs = DRAIN_GRACE.as_secs(), "shutdown requested; draining");
    running.stop(DRAIN_GRACE).await;
    tracing::info!("mailroom stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailauth::keys;

    /// Files another replica changed (written here by the shared-files mirror) are put in
    /// service: the new DKIM generation signs, its self-signed certificate is served.
    #[test]
    fn shared_files_changed_elsewhere_are_put_in_service() {
        tls::install_default_provider();
        let (here, there) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dkim = here.path().join("dkim");
        let domains = ["example.org".to_string()];
        let signers = Signers::load(&dkim, &domains, None).unwrap();
        let certs = CertStore::new();
        certs.set_default(tls::load_or_create_self_signed(here.path(), "mx.example.org").unwrap());

        let theirs = tls::load_or_create_self_signed(there.path(), "mx.example.org").unwrap();
        for file in ["selfsigned.crt", "selfsigned.key"] {
            std::fs::copy(there.path().join(file), here.path().join(file)).unwrap();
        }
        keys::rotate(&dkim, "example.org", None).unwrap();
        keys::promote_pending(&dkim, "example.org").unwrap();
        let base = keys::load_domain(&dkim, "example.org", None, false).unwrap().active.base;
        let changed = ["dkim/example.org/state".to_string(), "tls/selfsigned.crt".to_string()];
        reload_shared(&changed, &signers, &certs, here.path(), None);

        assert_eq!(certs.default_cert().unwrap().key.cert.first(), theirs.key.cert.first());
        let message: &[u8] = b"From: a@example.org\r\nSubject: x\r\n\r\nhi\r\n";
        let signature = signers.sign("example.org", &[message]).unwrap().unwrap();
        assert!(signature.contains(&format!("s={base}")), "{signature}");
    }
}
