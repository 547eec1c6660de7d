//! ACME (RFC 8555): obtain and renew the server certificate from Let's Encrypt or
//! any ACME CA, with instant-acme.
//!
//! Owns the account, the orders, the challenge answers (TLS-ALPN-01 through the
//! certificate store, HTTP-01 through a token table the port-80 service reads), the
//! stored certificate and the renewal schedule. It never serves traffic itself and
//! never blocks start-up: until the first certificate arrives the self-signed one
//! serves and `/readyz` says what we are waiting for (readiness blocker `acme`).
//! A stored, unexpired certificate is served at once on restart, with no new order.
//!
//! With the mail in PostgreSQL several replicas share one hostname, and so one
//! certificate: only the holder of the `acme` lease orders and renews (one order, not one
//! per replica, and CAs rate-limit them); the files it writes reach the other replicas
//! through the shared-files mirror, and [`AcmeReload`] puts them in service there.

mod challenge;
mod client;
mod order;
mod schedule;
mod storage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_resolver::TokioResolver;
use instant_acme::{Account, CertificateIdentifier, NewAccount};
use thiserror::Error;

use crate::config::{AcmeChallenge, AcmeConfig, AcmeExtraName, AcmeMode};
use crate::metrics::metrics;
use crate::readiness::Readiness;
use crate::store::pg::{PgLease, PgStore};
use crate::tls::{CertSource, CertStore, LoadedCert, TlsError};

pub use challenge::{ChallengeGuard, Http01Tokens, tls_alpn_certificate};
pub use client::{HickoryResolve, http_client};
pub use order::{Issued, run_order};
pub use schedule::{BACKOFF_MAX, BACKOFF_MIN, Backoff, in_window, renew_at, two_thirds, validity, wait_until};
pub use storage::AcmeFiles;

/// The readiness key under which we report a missing ACME certificate.
pub const READINESS_KEY: &str = "acme";
/// The lease whose holder orders and renews for every replica.
pub const LEASE_NAME: &str = "acme";
/// How often a replica that does not hold the lease tries to take it (the holder's lease
/// outlives it by [`crate::store::pg::LEASE_TTL`] at most when it dies).
const LEASE_POLL: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("ACME order refused: {0}")]
    Rejected(String),
    #[error("ACME HTTP client: {0}")]
    Client(String),
    #[error("{path}: {source}")]
    Storage { path: String, source: std::io::Error },
    #[error("issued certificate unusable: {0}")]
    Certificate(#[from] TlsError),
    #[error("cannot create challenge certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl AcmeError {
    /// RFC 8555 §6.5: a `badNonce` is to be retried with a fresh nonce. instant-acme
    /// retries 3 times per request; pebble rejects 5% of nonces on purpose, so we
    /// retry the whole order a few times before counting it a failure.
    fn is_bad_nonce(&self) -> bool {
        match self {
            AcmeError::Protocol(instant_acme::Error::Api(p)) => {
                p.r#type.as_deref().is_some_and(|t| t.ends_with(":badNonce"))
            }
            _ => false,
        }
    }
}

/// Everything the ACME task needs from the configuration.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    pub challenge: AcmeChallenge,
    pub ca_file: Option<PathBuf>,
    /// The certificate's names; the first (the hostname) names the files.
    pub names: Vec<String>,
    pub renew_before: Option<Duration>,
    /// `MAILROOM_DANE=on`: each order reuses the key in service, so the published
    /// `3 1 1` TLSA record (a hash of the key) stays true across renewals.
    pub keep_key: bool,
}

impl AcmeSettings {
    /// `None` when ACME is off. The caller does not ask when the operator supplies
    /// certificate files: those replace ACME.
    pub fn new(acme: &AcmeConfig, hostname: &str, domains: &[String]) -> Option<AcmeSettings> {
        let AcmeMode::Directory(directory) = &acme.mode else { return None };
        Some(AcmeSettings {
            directory: directory.clone(),
            email: acme.email.clone(),
            challenge: acme.challenge,
            ca_file: acme.ca_file.clone(),
            names: certificate_names(hostname, domains, &acme.extra_names),
            renew_before: acme.renew_before,
            keep_key: false,
        })
    }

    fn primary(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or("localhost")
    }
}

/// The names to put on the certificate: the hostname, then `mta-sts.<domain>` and
/// `autoconfig.<domain>` for every mail domain when opted in.
pub fn certificate_names(hostname: &str, domains: &[String], extra_names: &[AcmeExtraName]) -> Vec<String> {
    let mut names = vec![hostname.to_string()];
    for domain in domains {
        for extra in extra_names {
            let name = format!("{}.{domain}", extra.label());
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The ACME side of a running server.
pub struct Acme {
    settings: AcmeSettings,
    /// The server's resolver: the directory and the CA's endpoints are looked up with it.
    resolver: TokioResolver,
    files: AcmeFiles,
    certs: Arc<CertStore>,
    readiness: Arc<Readiness>,
    tokens: Arc<Http01Tokens>,
    /// The shared database whose `acme` lease this replica must hold to order (`None`:
    /// the only replica, it orders itself).
    lease_from: Option<PgStore>,
    /// Where the status page reads the next renewal and the last error.
    progress: Option<Arc<crate::status::AcmeSlot>>,
}

/// Puts a certificate stored by another replica (through the shared-files mirror) in
/// service here. Cheap to clone.
#[derive(Clone)]
pub struct AcmeReload {
    files: AcmeFiles,
    primary: String,
    names: Vec<String>,
    certs: Arc<CertStore>,
    readiness: Arc<Readiness>,
}

impl AcmeReload {
    /// Serve the stored certificate if it is good and not the one in service already;
    /// returns whether it swapped.
    pub fn reload(&self) -> bool {
        let Some(cert) = self.files.load_cert(&self.primary, &self.names) else { return false };
        let serving = self.certs.default_cert();
        if serving.is_some_and(|c| c.source == CertSource::Acme && c.key.cert.first() == cert.key.cert.first()) {
            return false;
        }
        tracing::info!(names = ?cert.names, not_after = ?cert.not_after, "serving the ACME certificate stored by another replica");
        self.certs.set_default(cert);
        self.readiness.set_blocker(READINESS_KEY, None);
        true
    }
}

impl Acme {
    /// Serve a stored certificate at once if one is still good; otherwise mark the
    /// server not ready until the first order succeeds.
    pub fn prepare(
        settings: AcmeSettings,
        resolver: TokioResolver,
        tls_dir: &Path,
        certs: Arc<CertStore>,
        readiness: Arc<Readiness>,
        tokens: Arc<Http01Tokens>,
    ) -> Acme {
        let acme = Acme {
            files: AcmeFiles::new(tls_dir),
            settings,
            resolver,
            certs,
            readiness,
            tokens,
            lease_from: None,
            progress: None,
        };
        // Export both series at 0 so alerts on `increase(...{result="failure"})` work
        // from the first scrape.
        for result in ["success", "failure"] {
            metrics().acme_orders_total.with_label_values(&[result]);
            metrics().acme_renewals_total.with_label_values(&[result]);
        }
        match acme.stored() {
            Some(cert) => {
                tracing::info!(names = ?cert.names, not_after = ?cert.not_after, "serving the stored ACME certificate");
                acme.certs.set_default(cert);
            }
            None => acme.block(None),
        }
        acme
    }

    /// Order and renew only while holding the `acme` lease of `store` (replicas sharing
    /// one database).
    pub fn with_lease(mut self, store: PgStore) -> Acme {
        self.lease_from = Some(store);
        self
    }

    /// Tell `slot` when the next renewal is planned and why the last order failed.
    pub fn with_progress(mut self, slot: Arc<crate::status::AcmeSlot>) -> Acme {
        self.progress = Some(slot);
        self
    }

    /// The handle that serves certificates another replica stored.
    pub fn reloader(&self) -> AcmeReload {
        AcmeReload {
            files: self.files.clone(),
            primary: self.settings.primary().to_string(),
            names: self.settings.names.clone(),
            certs: self.certs.clone(),
            readiness: self.readiness.clone(),
        }
    }

    /// Run the order/renewal loop in the background (abort it to stop).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    fn stored(&self) -> Option<LoadedCert> {
        self.files.load_cert(self.settings.primary(), &self.settings.names)
    }

    fn block(&self, last_error: Option<&AcmeError>) {
        let mut reason = format!("waiting for the ACME certificate for {}", self.settings.primary());
        if let Some(e) = last_error {
            reason.push_str(&format!(" (last attempt failed: {e})"));
        }
        self.readiness.set_blocker(READINESS_KEY, Some(reason));
    }

    async fn run(self) {
        let mut account: Option<Account> = None;
        let mut backoff = Backoff::default();
        // Whether the served certificate was ordered by this process: then an
        // operator margin longer than its lifetime must not re-order in a loop.
        let mut issued_here = false;
        // Held for the life of the task: the holder stays the one replica that orders.
        let mut lease: Option<PgLease> = None;
        let mut told_follower = false;
        loop {
            if let (Some(store), None) = (&self.lease_from, &lease) {
                match store.try_lease(LEASE_NAME).await {
                    Ok(Some(held)) => {
                        tracing::info!("this replica orders and renews the ACME certificate for every replica");
                        lease = Some(held);
                    }
                    Ok(None) => {
                        if !told_follower {
                            tracing::info!(
                                "another replica orders and renews the ACME certificate; this one takes it from the database"
                            );
                            told_follower = true;
                        }
                        tokio::time::sleep(LEASE_POLL).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take the ACME lease (retrying)");
                        tokio::time::sleep(LEASE_POLL).await;
                        continue;
                    }
                }
            }
            if let Some(current) = self.stored() {
                // The account is needed to ask for renewal information (ARI).
                if account.is_none() && self.settings.renew_before.is_none() {
                    match self.account().await {
                        Ok(a) => account = Some(a),
                        Err(e) => tracing::debug!(error = %e, "ACME account not reachable now; scheduling without ARI"),
                    }
                }
                let wait = self.renewal_wait(&current, account.as_ref(), issued_here).await;
                if !wait.is_zero() {
                    let at = chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + wait);
                    tracing::info!(
                        names = ?current.names,
                        renew_at = %at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        renew_in_secs = wait.as_secs(),
                        "ACME certificate valid; renewal scheduled"
                    );
                    if let Some(p) = &self.progress {
                        p.scheduled(SystemTime::now() + wait);
                    }
                    tokio::time::sleep(wait).await;
                    continue;
                }
                tracing::info!(names = ?current.names, "ACME certificate due for renewal");
            }
            // A holder cut off from the database for longer than the lease lasts may have
            // been replaced: make sure before ordering, or two replicas would order.
            if let Some(held) = &lease {
                match held.still_held().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("the ACME lease passed to another replica; this one no longer orders");
                        lease = None;
                        told_follower = false;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot confirm the ACME lease before ordering (retrying)");
                        tokio::time::sleep(LEASE_POLL).await;
                        continue;
                    }
                }
            }
            // An order while a certificate is stored replaces it: a renewal.
            let renewal = self.stored().is_some();
            match self.attempt(&mut account).await {
                Ok(cert) => {
                    count_order("success", renewal);
                    tracing::info!(names = ?cert.names, not_after = ?cert.not_after, "ACME certificate issued; now in service");
                    self.certs.set_default(cert);
                    self.readiness.set_blocker(READINESS_KEY, None);
                    backoff.reset();
                    issued_here = true;
                    if let Some(p) = &self.progress {
                        p.succeeded();
                    }
                }
                Err(e) => {
                    count_order("failure", renewal);
                    let wait = backoff.failed();
                    tracing::warn!(error = %e, retry_in_secs = wait.as_secs(), directory = %self.settings.directory, "ACME order failed");
                    if let Some(p) = &self.progress {
                        p.failed(&e.to_string(), SystemTime::now() + wait);
                    }
                    if !self.certs.default_cert().is_some_and(|c| c.source == crate::tls::CertSource::Acme) {
                        self.block(Some(&e));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// How long until `current` should be renewed: the CA's ARI window when offered,
    /// else the operator's margin, else two thirds of the lifetime.
    async fn renewal_wait(&self, current: &LoadedCert, account: Option<&Account>, issued_here: bool) -> Duration {
        let now = SystemTime::now();
        let Some(der) = current.key.cert.first() else { return Duration::ZERO };
        let Some((not_before, not_after)) = validity(der.as_ref()) else { return Duration::ZERO };
        if let (None, Some(account)) = (self.settings.renew_before, account)
            && let Ok(id) = CertificateIdentifier::try_from(der)
        {
            match account.renewal_info(&id).await {
                Ok((info, recheck)) => {
                    let start = SystemTime::from(info.suggested_window.start);
                    let end = SystemTime::from(info.suggested_window.end);
                    let at = in_window(start, end, rand::random::<f64>());
                    return wait_until(now, at).min(recheck.max(Duration::from_secs(3600)));
                }
                Err(instant_acme::Error::Unsupported(_)) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "ACME renewal info unavailable; using two thirds of the lifetime")
                }
            }
        }
        let mut at = renew_at(not_before, not_after, self.settings.renew_before);
        if issued_here && at <= now {
            tracing::warn!(
                "MAILROOM_ACME_RENEW_BEFORE is longer than the certificate's lifetime; renewing this one at two thirds of its lifetime instead"
            );
            at = two_thirds(not_before, not_after);
        }
        wait_until(now, at)
    }

    /// One order, retried at once a few times when the CA rejected a nonce.
    async fn attempt(&self, account: &mut Option<Account>) -> Result<LoadedCert, AcmeError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.order_once(account).await {
                Err(e) if e.is_bad_nonce() && tries < 4 => {
                    tracing::debug!(error = %e, "ACME nonce rejected; retrying the order");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    async fn order_once(&self, account: &mut Option<Account>) -> Result<LoadedCert, AcmeError> {
        if account.is_none() {
            *account = Some(self.account().await?);
        }
        let Some(acc) = account.as_ref() else { return Err(AcmeError::Client("no account".into())) };
        tracing::info!(names = ?self.settings.names, challenge = ?self.settings.challenge, "ordering an ACME certificate");
        let key = if self.settings.keep_key { self.files.key_in_service(self.settings.primary()) } else { None };
        let (names, challenge) = (&self.settings.names, self.settings.challenge);
        let issued = run_order(acc, names, challenge, key, &self.certs, &self.tokens).await?;
        self.files.save_cert(self.settings.primary(), &issued.chain_pem, &issued.key_pem)
    }

    /// The stored account, or a new one (saved before use).
    async fn account(&self) -> Result<Account, AcmeError> {
        let s = &self.settings;
        let http = || http_client(s.ca_file.as_deref(), &self.resolver);
        if let Some(credentials) = self.files.load_account(&s.directory)? {
            match Account::builder_with_http(http()?).from_credentials(credentials).await {
                Ok(account) => return Ok(account),
                Err(e) => tracing::warn!(error = %e, "stored ACME account unusable; registering a new one"),
            }
        }
        let contact: Vec<String> = s.email.iter().map(|e| format!("mailto:{e}")).collect();
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) =
            Account::builder_with_http(http()?).create(&new, s.directory.clone(), None).await?;
        self.files.save_account(&s.directory, credentials)?;
        tracing::info!(directory = %s.directory, id = account.id(), "ACME account registered");
        Ok(account)
    }
}

/// `mailroom_acme_orders_total{result}`, and `mailroom_acme_renewals_total{result}` when
/// the order replaces a stored certificate.
fn count_order(result: &str, renewal: bool) {
    metrics().acme_orders_total.with_label_values(&[result]).inc();
    if renewal {
        metrics().acme_renewals_total.with_label_values(&[result]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EnvSource};

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![
            ("MAILROOM_HOSTNAME".to_string(), "mx.example.com".to_string()),
            ("MAILROOM_DOMAINS".to_string(), "example.com,example.org".to_string()),
            ("MAILROOM_ACME".to_string(), "https://127.0.0.1:14000/dir".to_string()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::load(&EnvSource::from_pairs(pairs)).unwrap().0
    }

    fn settings(c: &Config) -> Option<AcmeSettings> {
        AcmeSettings::new(&c.acme, &c.hostname, &c.domains)
    }

    #[test]
    fn names_are_the_hostname_unless_the_operator_opts_in() {
        let names = |c: &Config| certificate_names(&c.hostname, &c.domains, &c.acme.extra_names);
        assert_eq!(names(&config(&[])), vec!["mx.example.com"]);
        let c = config(&[("MAILROOM_ACME_EXTRA_NAMES", "mta-sts, autoconfig")]);
        assert_eq!(
            names(&c),
            vec![
                "mx.example.com",
                "mta-sts.example.com",
                "autoconfig.example.com",
                "mta-sts.example.org",
                "autoconfig.example.org"
            ]
        );
    }

    #[test]
    fn unknown_extra_name_is_a_config_error() {
        let env = EnvSource::from_pairs([("MAILROOM_ACME_EXTRA_NAMES", "mta-sts,www")]);
        let errors = Config::load(&env).unwrap_err();
        assert!(errors.to_string().contains("MAILROOM_ACME_EXTRA_NAMES"), "{errors}");
    }

    #[test]
    fn acme_without_its_challenge_listener_is_a_config_error() {
        let env =
            EnvSource::from_pairs([("MAILROOM_ACME", "https://127.0.0.1:14000/dir"), ("MAILROOM_HTTPS_LISTEN", "off")]);
        let errors = Config::load(&env).unwrap_err().to_string();
        assert!(errors.starts_with("MAILROOM_HTTPS_LISTEN: is off, but ACME (tls-alpn-01)"), "{errors}");
        let env = EnvSource::from_pairs([
            ("MAILROOM_ACME", "https://127.0.0.1:14000/dir"),
            ("MAILROOM_HTTPS_LISTEN", "off"),
            ("MAILROOM_ACME_CHALLENGE", "http-01"),
        ]);
        assert!(Config::load(&env).is_ok());
    }

    #[test]
    fn settings_only_when_acme_is_on() {
        let s = settings(&config(&[("MAILROOM_ACME_RENEW_BEFORE", "30d")])).unwrap();
        assert_eq!(s.directory, "https://127.0.0.1:14000/dir");
        assert_eq!(s.renew_before, Some(Duration::from_secs(30 * 86400)));
        assert!(settings(&config(&[("MAILROOM_ACME", "off")])).is_none());
    }

    /// A resolver pointing nowhere: these tests look nothing up.
    fn test_resolver() -> TokioResolver {
        crate::dns::resolver::build(&["127.0.0.1:9".parse().unwrap()]).unwrap()
    }

    #[test]
    fn without_a_stored_certificate_readiness_names_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let certs = CertStore::new();
        let readiness = Readiness::new(certs.clone());
        let settings = settings(&config(&[])).unwrap();
        let _acme = Acme::prepare(
            settings.clone(),
            test_resolver(),
            dir.path(),
            certs.clone(),
            readiness.clone(),
            Http01Tokens::new(),
        );
        assert!(readiness.reasons().iter().any(|r| r == "waiting for the ACME certificate for mx.example.com"));

        // A stored certificate covering the names serves at once, not blocked.
        let ck = rcgen::generate_simple_self_signed(vec!["mx.example.com".to_string()]).unwrap();
        AcmeFiles::new(dir.path())
            .save_cert("mx.example.com", &ck.cert.pem(), &ck.signing_key.serialize_pem())
            .unwrap();
        let readiness = Readiness::new(certs.clone());
        let _acme =
            Acme::prepare(settings, test_resolver(), dir.path(), certs.clone(), readiness.clone(), Http01Tokens::new());
        assert!(readiness.reasons().iter().all(|r| !r.contains("ACME")));
        assert_eq!(certs.default_cert().unwrap().source, crate::tls::CertSource::Acme);
    }

    /// Another replica's certificate, written by the shared-files mirror, goes into
    /// service here once, and lifts the readiness blocker.
    #[test]
    fn a_certificate_stored_by_another_replica_is_put_in_service() {
        let dir = tempfile::tempdir().unwrap();
        let certs = CertStore::new();
        let readiness = Readiness::new(certs.clone());
        let acme = Acme::prepare(
            settings(&config(&[])).unwrap(),
            test_resolver(),
            dir.path(),
            certs.clone(),
            readiness.clone(),
            Http01Tokens::new(),
        );
        let reload = acme.reloader();
        assert!(!reload.reload(), "nothing stored yet");
        let ck = rcgen::generate_simple_self_signed(vec!["mx.example.com".to_string()]).unwrap();
        AcmeFiles::new(dir.path())
            .save_cert("mx.example.com", &ck.cert.pem(), &ck.signing_key.serialize_pem())
            .unwrap();
        assert!(reload.reload());
        assert_eq!(certs.default_cert().unwrap().source, crate::tls::CertSource::Acme);
        assert!(readiness.reasons().iter().all(|r| !r.contains("ACME")));
        assert!(!reload.reload(), "already in service");
    }
}
