//! The one Prometheus registry and every metric family mailroom exports.
//!
//! Metric definitions live here and nowhere else (architecture.md), so the names,
//! labels and help texts form one reviewable list. Names are `mailroom_*`, counters end
//! in `_total`, times are in seconds and sizes in bytes (Prometheus naming rules, checked
//! by `promtool check metrics` in the tests). Protocol modules only increment.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every metric family. Reach it through [`metrics()`].
pub struct Metrics {
    pub registry: Registry,
    pub build_info: IntGaugeVec,
    pub connections_total: IntCounterVec,
    pub connections_active: IntGaugeVec,
    pub connections_refused_total: IntCounterVec,
    pub tls_handshake_failures_total: IntCounterVec,
    pub tls_certificate_expiry: GaugeVec,
    pub ready: IntGauge,
    pub disk_free_bytes: IntGauge,
    pub disk_size_bytes: IntGauge,
    // ACME
    pub acme_orders_total: IntCounterVec,
    pub acme_renewals_total: IntCounterVec,
    // SMTP inbound
    pub smtp_messages_received_total: IntCounterVec,
    pub smtp_messages_refused_total: IntCounterVec,
    pub smtp_transactions_total: IntCounterVec,
    pub smtp_recipients_total: IntCounterVec,
    pub smtp_received_bytes_total: IntCounter,
    pub smtp_sessions_active: IntGaugeVec,
    pub delivery_duration_seconds: Histogram,
    pub smtp_data_duration_seconds: HistogramVec,
    pub smtp_message_size_bytes: HistogramVec,
    pub tls_sessions_total: IntCounterVec,
    // Store
    pub store_fsync_batch_size: Histogram,
    pub store_operation_duration_seconds: HistogramVec,
    pub store_errors_total: IntCounterVec,
    // Auth (shared by SMTP AUTH, IMAP, POP3)
    pub auth_attempts_total: IntCounterVec,
    pub auth_failures_total: IntCounter,
    pub auth_blocked_total: IntCounterVec,
    pub auth_blocks_started_total: IntCounterVec,
    pub ratelimit_rejections_total: IntCounterVec,
    pub accounts_reloads_total: IntCounterVec,
    // Inbound authentication and scanners
    pub inbound_auth_results_total: IntCounterVec,
    pub scan_results_total: IntCounterVec,
    pub scan_duration_seconds: HistogramVec,
    pub dnsbl_listings_total: IntCounterVec,
    // IMAP / POP3 / ManageSieve
    pub imap_commands_total: IntCounterVec,
    pub imap_command_duration_seconds: HistogramVec,
    pub pop3_commands_total: IntCounterVec,
    pub managesieve_commands_total: IntCounterVec,
    pub imap_idle_sessions: IntGauge,
    pub pop3_command_duration_seconds: HistogramVec,
    pub managesieve_command_duration_seconds: HistogramVec,
    pub sessions: IntGaugeVec,
    pub bytes_sent_total: IntCounterVec,
    // Web pages
    pub web_render_seconds: HistogramVec,
    // DNS
    pub dns_record_ok: IntGaugeVec,
    pub dns_reverse_ok: IntGaugeVec,
    pub dns_lookups_total: IntCounterVec,
    pub dns_lookup_duration_seconds: HistogramVec,
    // Outbound queue
    pub queue_items: IntGaugeVec,
    pub queue_oldest_item_age_seconds: Gauge,
    pub queue_deliveries_total: IntCounterVec,
    pub queue_delivery_attempts_total: IntCounter,
    pub queue_bounces_total: IntCounterVec,
    pub queue_attempt_duration_seconds: Histogram,
    pub queue_time_seconds: HistogramVec,
    pub queue_delivery_status_total: IntCounterVec,
    pub outbound_tls_sessions_total: IntCounterVec,
    // Mail store
    pub store_orphan_objects_deleted_total: IntCounter,
    // Sieve at delivery
    pub sieve_scripts_run_total: IntCounter,
    pub sieve_actions_total: IntCounterVec,
    pub sieve_errors_total: IntCounter,
    pub sieve_vacation_replies_total: IntCounter,
    // DMARC aggregate reports
    pub dmarc_report_messages_dropped_total: IntCounter,
    pub dmarc_reports_sent_total: IntCounter,
    pub dmarc_reports_skipped_total: IntCounterVec,
    pub dmarc_reports_received_total: IntCounterVec,
    pub dmarc_report_messages_total: IntCounterVec,
    pub dmarc_reports_unreadable_total: IntCounter,
    pub tls_report_sessions_dropped_total: IntCounter,
    pub tls_reports_sent_total: IntCounter,
    pub tls_reports_skipped_total: IntCounterVec,
    pub tls_reports_received_total: IntCounterVec,
    pub tls_report_sessions_total: IntCounterVec,
    // Fetching mail from other servers (the `source` label is the entry's position in
    // MAILROOM_FETCH: configured, so bounded)
    pub fetch_messages_total: IntCounterVec,
    pub fetch_bytes_total: IntCounterVec,
    pub fetch_errors_total: IntCounterVec,
    pub fetch_last_success_timestamp_seconds: IntGaugeVec,
    pub fetch_last_error_timestamp_seconds: IntGaugeVec,
    pub fetch_over_quota: IntGaugeVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    // Registration only fails for duplicate or malformed names, which are fixed
    // here at compile time; a test registers the whole set.
    if let Err(e) = registry.register(Box::new(c.clone())) {
        panic!("metric definition error: {e}");
    }
    c
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&r, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            register(&r, HistogramVec::new(opts, labels).expect("valid metric"))
        };
        let m = Metrics {
            build_info: gauge_vec("mailroom_build_info", "Build information; always 1.", &["version", "rustc"]),
            connections_total: counter_vec(
                "mailroom_connections_total",
                "Connections accepted, by protocol.",
                &["protocol"],
            ),
            connections_active: gauge_vec(
                "mailroom_connections_active",
                "Connections open now, by protocol.",
                &["protocol"],
            ),
            connections_refused_total: counter_vec(
                "mailroom_connections_refused_total",
                "Connections refused before the protocol started, by protocol and reason.",
                &["protocol", "reason"],
            ),
            tls_handshake_failures_total: counter_vec(
                "mailroom_tls_handshake_failures_total",
                "TLS handshakes that failed, by protocol.",
                &["protocol"],
            ),
            tls_certificate_expiry: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "mailroom_tls_certificate_expiry_timestamp_seconds",
                        "Expiry (notAfter) of the served certificate as a Unix timestamp, by name and source.",
                    ),
                    &["name", "source"],
                )
                .expect("valid metric"),
            ),
            ready: register(
                &r,
                IntGauge::new("mailroom_ready", "1 when every listener is bound and a certificate is loaded.")
                    .expect("valid metric"),
            ),
            disk_free_bytes: register(
                &r,
                IntGauge::new(
                    "mailroom_disk_free_bytes",
                    "Bytes free for mailroom on the data dir's file system (sampled every second).",
                )
                .expect("valid metric"),
            ),
            disk_size_bytes: register(
                &r,
                IntGauge::new("mailroom_disk_size_bytes", "Size in bytes of the data dir's file system.")
                    .expect("valid metric"),
            ),
            accounts_reloads_total: counter_vec(
                "mailroom_accounts_reloads_total",
                "Changed accounts/aliases files read while running, by result (applied, or invalid and kept the previous set).",
                &["result"],
            ),
            acme_orders_total: counter_vec(
                "mailroom_acme_orders_total",
                "ACME certificate orders, by result (success or failure).",
                &["result"],
            ),
            acme_renewals_total: counter_vec(
                "mailroom_acme_renewals_total",
                "ACME orders that replace a stored certificate (renewals), by result (success or failure); also in mailroom_acme_orders_total.",
                &["result"],
            ),
            smtp_messages_received_total: counter_vec(
                "mailroom_smtp_messages_received_total",
                "Messages accepted (250 after DATA/BDAT), by service.",
                &["service"],
            ),
            smtp_messages_refused_total: counter_vec(
                "mailroom_smtp_messages_refused_total",
                "Messages refused after their content arrived, by service and reason (size, dmarc, policy, virus, spam, scanner, rate_limit, auth, quota, unknown_user, local).",
                &["service", "reason"],
            ),
            smtp_transactions_total: counter_vec(
                "mailroom_smtp_transactions_total",
                "SMTP transactions by service, outcome (accepted, refused, abandoned) and reason of a refusal at MAIL, RCPT or after the content (none when not refused).",
                &["service", "outcome", "reason"],
            ),
            smtp_recipients_total: counter_vec(
                "mailroom_smtp_recipients_total",
                "RCPT commands by service and outcome.",
                &["service", "outcome"],
            ),
            smtp_received_bytes_total: register(
                &r,
                IntCounter::new("mailroom_smtp_received_bytes_total", "Message bytes accepted over SMTP/LMTP.")
                    .expect("valid metric"),
            ),
            smtp_sessions_active: gauge_vec(
                "mailroom_smtp_sessions_active",
                "SMTP sessions open now, by service.",
                &["service"],
            ),
            delivery_duration_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mailroom_delivery_duration_seconds",
                        "Time from end of DATA to every local copy being durable.",
                    )
                    .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                )
                .expect("valid metric"),
            ),
            smtp_data_duration_seconds: histogram_vec(
                "mailroom_smtp_data_duration_seconds",
                "Time from the end of the message (DATA or the last BDAT) to the final reply, accepted or refused, by service.",
                &["service"],
                LATENCY_BUCKETS,
            ),
            smtp_message_size_bytes: histogram_vec(
                "mailroom_smtp_message_size_bytes",
                "Size of the messages received within the size limit (accepted or refused), by service.",
                &["service"],
                SIZE_BUCKETS,
            ),
            tls_sessions_total: counter_vec(
                "mailroom_tls_sessions_total",
                "TLS sessions established by clients, by protocol and TLS version (TLSv1.2, TLSv1.3, other).",
                &["protocol", "version"],
            ),
            store_fsync_batch_size: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mailroom_store_fsync_batch_size",
                        "Directory fsync requests served by one group commit.",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
                )
                .expect("valid metric"),
            ),
            store_operation_duration_seconds: histogram_vec(
                "mailroom_store_operation_duration_seconds",
                "Time one mail store call took, by backend (maildir, pg) and operation (deliver, open, sync, append, fetch, expunge, copy, move, flags, quota).",
                &["backend", "op"],
                STORE_BUCKETS,
            ),
            store_errors_total: counter_vec(
                "mailroom_store_errors_total",
                "Mail store calls that failed on the store's side, by backend, operation and kind (disk_full, io, background, unavailable, conflict).",
                &["backend", "op", "kind"],
            ),
            auth_attempts_total: counter_vec(
                "mailroom_auth_attempts_total",
                "Logins by protocol (smtp, submission, submissions, imap, pop3, managesieve, web), mechanism (plain, login, password) and result (success, failure, refused, unavailable).",
                &["protocol", "mechanism", "result"],
            ),
            auth_failures_total: register(
                &r,
                IntCounter::new(
                    "mailroom_auth_failures_total",
                    "Failed logins (any protocol) recorded by the brute-force limiter.",
                )
                .expect("valid metric"),
            ),
            auth_blocked_total: counter_vec(
                "mailroom_auth_blocked_total",
                "Login attempts refused without a password check, by scope (ip: address blocked, account: over its guess budget, busy: no verification slot).",
                &["scope"],
            ),
            auth_blocks_started_total: counter_vec(
                "mailroom_auth_blocks_started_total",
                "Address blocks (ip) and account throttles (account) started after too many failed logins.",
                &["scope"],
            ),
            ratelimit_rejections_total: counter_vec(
                "mailroom_ratelimit_rejections_total",
                "Connections, messages or recipients refused by a rate limit, by kind (connection, message, recipient).",
                &["kind"],
            ),
            inbound_auth_results_total: counter_vec(
                "mailroom_inbound_auth_results_total",
                "Inbound authentication outcomes by method (spf, dkim, dmarc, arc) and result.",
                &["method", "result"],
            ),
            scan_results_total: counter_vec(
                "mailroom_scan_results_total",
                "Content scanner outcomes by scanner (dnsbl, rspamd, clamd) and result.",
                &["scanner", "result"],
            ),
            scan_duration_seconds: histogram_vec(
                "mailroom_scan_duration_seconds",
                "Time one content scanner call took (clamd, rspamd), whatever its result.",
                &["scanner"],
                LATENCY_BUCKETS,
            ),
            dnsbl_listings_total: counter_vec(
                "mailroom_dnsbl_listings_total",
                "Client addresses a DNSBL listed, by zone (one of the configured zones).",
                &["zone"],
            ),
            imap_idle_sessions: register(
                &r,
                IntGauge::new("mailroom_imap_idle_sessions", "IMAP connections in IDLE now.").expect("valid metric"),
            ),
            imap_commands_total: counter_vec(
                "mailroom_imap_commands_total",
                "IMAP commands by name and result.",
                &["command", "result"],
            ),
            imap_command_duration_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("mailroom_imap_command_duration_seconds", "IMAP command latency by command.")
                        .buckets(COMMAND_BUCKETS.to_vec()),
                    &["command"],
                )
                .expect("valid metric"),
            ),
            pop3_command_duration_seconds: histogram_vec(
                "mailroom_pop3_command_duration_seconds",
                "POP3 command latency by command, from the command read to its reply queued (RETR and TOP: to the message sent).",
                &["command"],
                COMMAND_BUCKETS,
            ),
            managesieve_command_duration_seconds: histogram_vec(
                "mailroom_managesieve_command_duration_seconds",
                "ManageSieve command latency by command, from the command read to its reply queued.",
                &["command"],
                COMMAND_BUCKETS,
            ),
            sessions: gauge_vec(
                "mailroom_sessions",
                "IMAP, POP3 and ManageSieve sessions open now, by service and protocol state.",
                &["service", "state"],
            ),
            bytes_sent_total: counter_vec(
                "mailroom_bytes_sent_total",
                "Bytes written to clients by IMAP, POP3 and ManageSieve sessions (after TLS decryption, before encryption), by service.",
                &["service"],
            ),
            web_render_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "mailroom_web_render_seconds",
                        "Server time of a web page request, from the request read to the response built, by page.",
                    )
                    .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                    &["page"],
                )
                .expect("valid metric"),
            ),
            pop3_commands_total: counter_vec(
                "mailroom_pop3_commands_total",
                "POP3 commands by name and result.",
                &["command", "result"],
            ),
            managesieve_commands_total: counter_vec(
                "mailroom_managesieve_commands_total",
                "ManageSieve commands by name and result (ok, no, bye).",
                &["command", "result"],
            ),
            dns_record_ok: gauge_vec(
                "mailroom_dns_record_ok",
                "1 when the published DNS record matches what mailroom needs, by domain and record.",
                &["domain", "record"],
            ),
            dns_reverse_ok: gauge_vec(
                "mailroom_dns_reverse_ok",
                "1 when the outbound source address of the family has forward-confirmed reverse DNS in the hostname's domain.",
                &["family"],
            ),
            dns_lookups_total: counter_vec(
                "mailroom_dns_lookups_total",
                "DNS lookups by record type (A/AAAA as ADDR) and result (found, none: NXDOMAIN or no records, error).",
                &["type", "result"],
            ),
            dns_lookup_duration_seconds: histogram_vec(
                "mailroom_dns_lookup_duration_seconds",
                "DNS lookup latency by record type.",
                &["type"],
                LATENCY_BUCKETS,
            ),
            queue_items: gauge_vec("mailroom_queue_items", "Outbound queue items by state.", &["state"]),
            queue_oldest_item_age_seconds: register(
                &r,
                Gauge::new("mailroom_queue_oldest_item_age_seconds", "Age of the oldest outbound queue item.")
                    .expect("valid metric"),
            ),
            queue_deliveries_total: counter_vec(
                "mailroom_queue_deliveries_total",
                "Outbound recipient deliveries by result (delivered, deferred, failed, expired).",
                &["result"],
            ),
            queue_delivery_attempts_total: register(
                &r,
                IntCounter::new(
                    "mailroom_queue_delivery_attempts_total",
                    "Outbound queue delivery attempts (per item).",
                )
                .expect("valid metric"),
            ),
            queue_bounces_total: counter_vec(
                "mailroom_queue_bounces_total",
                "Delivery status notifications generated, by kind (failure, delay).",
                &["kind"],
            ),
            queue_attempt_duration_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mailroom_queue_attempt_duration_seconds",
                        "Time one delivery attempt of one queue item took (every recipient of it, DNS and SMTP).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            queue_time_seconds: histogram_vec(
                "mailroom_queue_time_seconds",
                "Time from queueing to a recipient's final result, by result (delivered, bounced).",
                &["result"],
                QUEUE_TIME_BUCKETS,
            ),
            queue_delivery_status_total: counter_vec(
                "mailroom_queue_delivery_status_total",
                "Outbound recipient results by result (delivered, deferred, bounced) and RFC 3463 status class and subject (2.0, 4.4, 5.1, ...; none without an enhanced code).",
                &["result", "status_class"],
            ),
            outbound_tls_sessions_total: counter_vec(
                "mailroom_outbound_tls_sessions_total",
                "Outbound TLS sessions to MX hosts by the policy that applied (mta_sts, dane, none) and result (success, failure).",
                &["policy", "result"],
            ),
            store_orphan_objects_deleted_total: register(
                &r,
                IntCounter::new(
                    "mailroom_store_orphan_objects_deleted_total",
                    "Body objects in the S3 bucket that no message named, deleted by the orphan sweep.",
                )
                .expect("valid metric"),
            ),
            sieve_scripts_run_total: register(
                &r,
                IntCounter::new(
                    "mailroom_sieve_scripts_run_total",
                    "Deliveries to one mailbox that ran Sieve (the account's script or the admin scripts).",
                )
                .expect("valid metric"),
            ),
            sieve_actions_total: counter_vec(
                "mailroom_sieve_actions_total",
                "Actions carried out for Sieve, by action (keep, fileinto, redirect, reject, discard, vacation).",
                &["action"],
            ),
            sieve_errors_total: register(
                &r,
                IntCounter::new(
                    "mailroom_sieve_errors_total",
                    "Sieve runs that failed (compile, runtime or limit) and kept the message instead.",
                )
                .expect("valid metric"),
            ),
            sieve_vacation_replies_total: register(
                &r,
                IntCounter::new("mailroom_sieve_vacation_replies_total", "Vacation replies queued.")
                    .expect("valid metric"),
            ),
            dmarc_report_messages_dropped_total: register(
                &r,
                IntCounter::new(
                    "mailroom_dmarc_report_messages_dropped_total",
                    "Messages left out of DMARC aggregate reports because a domain's day reached its row cap.",
                )
                .expect("valid metric"),
            ),
            dmarc_reports_sent_total: register(
                &r,
                IntCounter::new(
                    "mailroom_dmarc_reports_sent_total",
                    "DMARC aggregate reports queued, one per destination.",
                )
                .expect("valid metric"),
            ),
            dmarc_reports_skipped_total: counter_vec(
                "mailroom_dmarc_reports_skipped_total",
                "DMARC report destinations not sent to, by reason (unauthorised, size, address, queue).",
                &["reason"],
            ),
            dmarc_reports_received_total: counter_vec(
                "mailroom_dmarc_reports_received_total",
                "DMARC aggregate reports received at a report address, by reported domain (ours, or other).",
                &["domain"],
            ),
            dmarc_report_messages_total: counter_vec(
                "mailroom_dmarc_report_messages_total",
                "Messages counted in received DMARC aggregate reports, by reported domain and DMARC result (pass, fail).",
                &["domain", "result"],
            ),
            dmarc_reports_unreadable_total: register(
                &r,
                IntCounter::new(
                    "mailroom_dmarc_reports_unreadable_total",
                    "Messages to a DMARC report address not read as a report (not a report, damaged, too large, or another being read).",
                )
                .expect("valid metric"),
            ),
            tls_report_sessions_dropped_total: register(
                &r,
                IntCounter::new(
                    "mailroom_tls_report_sessions_dropped_total",
                    "Outbound TLS sessions left out of SMTP TLS reports because a domain's day reached its row cap.",
                )
                .expect("valid metric"),
            ),
            tls_reports_sent_total: register(
                &r,
                IntCounter::new("mailroom_tls_reports_sent_total", "SMTP TLS reports queued, one per destination.")
                    .expect("valid metric"),
            ),
            tls_reports_skipped_total: counter_vec(
                "mailroom_tls_reports_skipped_total",
                "SMTP TLS report destinations not sent to, by reason (https, address, queue).",
                &["reason"],
            ),
            tls_reports_received_total: counter_vec(
                "mailroom_tls_reports_received_total",
                "SMTP TLS reports received at a report address, by policy domain (ours, or other).",
                &["domain"],
            ),
            tls_report_sessions_total: counter_vec(
                "mailroom_tls_report_sessions_total",
                "Sessions counted in received SMTP TLS reports, by policy domain and result (success, failure).",
                &["domain", "result"],
            ),
            fetch_messages_total: counter_vec(
                "mailroom_fetch_messages_total",
                "Messages fetched from a remote POP3/IMAP account and delivered, by source (position in MAILROOM_FETCH).",
                &["source"],
            ),
            fetch_bytes_total: counter_vec(
                "mailroom_fetch_bytes_total",
                "Bytes of the messages fetched and delivered, by source.",
                &["source"],
            ),
            fetch_errors_total: counter_vec(
                "mailroom_fetch_errors_total",
                "Fetch runs that failed, by source and kind (connect, tls, login, protocol, too_big, over_quota, delivery, local).",
                &["source", "kind"],
            ),
            fetch_last_success_timestamp_seconds: gauge_vec(
                "mailroom_fetch_last_success_timestamp_seconds",
                "When a fetch run of the source last completed, as a Unix timestamp.",
                &["source"],
            ),
            fetch_last_error_timestamp_seconds: gauge_vec(
                "mailroom_fetch_last_error_timestamp_seconds",
                "When a fetch run of the source last failed, as a Unix timestamp.",
                &["source"],
            ),
            fetch_over_quota: gauge_vec(
                "mailroom_fetch_over_quota",
                "1 while the source's local account is over quota and its fetch is stopped.",
                &["source"],
            ),
            registry: r,
        };
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), rustc_version()]).set(1);
        m
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// The `version` label of `mailroom_tls_sessions_total`: the two versions rustls
/// speaks, anything else folded into `other` so the label stays bounded.
pub fn tls_version_label(version: Option<rustls::ProtocolVersion>) -> &'static str {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "other",
    }
}

/// One connection's place in `mailroom_sessions{service, state}`: the gauge of its state is
/// up while it is there, moves with [`SessionGauge::set`], and goes down on drop, so every
/// way a connection ends (LOGOUT, EOF, an error, a task dropped at shutdown) takes it out.
#[derive(Debug)]
pub struct SessionGauge {
    service: &'static str,
    state: &'static str,
}

impl SessionGauge {
    pub fn enter(service: &'static str, state: &'static str) -> SessionGauge {
        metrics().sessions.with_label_values(&[service, state]).inc();
        SessionGauge { service, state }
    }

    /// The session is now in `state` (a no-op when it already was).
    pub fn set(&mut self, state: &'static str) {
        if state != self.state {
            let gauge = &metrics().sessions;
            gauge.with_label_values(&[self.service, self.state]).dec();
            gauge.with_label_values(&[self.service, state]).inc();
            self.state = state;
        }
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        metrics().sessions.with_label_values(&[self.service, self.state]).dec();
    }
}

/// Seconds: sub-millisecond local work up to a slow remote server.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Seconds: a delivery at the first attempt up to one bounced after days of retries.
const QUEUE_TIME_BUCKETS: &[f64] =
    &[1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0, 259200.0, 432000.0];

/// Seconds: a command served from memory up to one waiting on a slow disk or database.
const COMMAND_BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Seconds: a cached metadata read up to an fsync-heavy delivery on a busy disk.
const STORE_BUCKETS: &[f64] =
    &[0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Bytes: a one-line note up to the largest message size one would configure.
const SIZE_BUCKETS: &[f64] =
    &[1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0];

/// Set by build.rs from `rustc --version`.
fn rustc_version() -> &'static str {
    env!("MAILROOM_RUSTC_VERSION")
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_registers_and_renders() {
        let m = metrics();
        m.connections_total.with_label_values(&["smtp"]).inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("mailroom_build_info{"));
        assert!(text.contains("mailroom_connections_total{protocol=\"smtp\"}"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("mailroom_") || name.starts_with("process_"), "{name}");
        }
    }

    #[test]
    fn a_session_gauge_follows_its_state_and_leaves_on_drop() {
        let now = |state: &str| metrics().sessions.with_label_values(&["gauge_test", state]).get();
        let mut session = SessionGauge::enter("gauge_test", "authorization");
        assert_eq!((now("authorization"), now("transaction")), (1, 0));
        session.set("transaction");
        session.set("transaction");
        assert_eq!((now("authorization"), now("transaction")), (0, 1));
        drop(session);
        assert_eq!((now("authorization"), now("transaction")), (0, 0));
    }

    /// docs/metrics.md is the operator's list: every family must be on it.
    #[test]
    fn every_family_is_documented() {
        // The registry leaves out families with no sample yet, so read the definitions.
        let doc = include_str!("../docs/metrics.md");
        let source = include_str!("metrics.rs");
        let defined: Vec<&str> = source
            .match_indices("\"mailroom_")
            .filter_map(|(at, _)| {
                let rest = &source[at + 1..];
                let end = rest.find(|c: char| !c.is_ascii_lowercase() && c != '_')?;
                (rest[end..].starts_with('"') && !rest[..end].ends_with('_')).then(|| &rest[..end])
            })
            .collect();
        assert!(defined.len() > 50, "{defined:?}");
        for name in defined {
            assert!(doc.contains(&format!("`{name}`")), "{name} is missing from docs/metrics.md");
        }
    }
}
