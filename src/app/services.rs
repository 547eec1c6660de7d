//! The listeners' services: one per protocol, each a handler that runs a session on an
//! accepted connection with the context built here from the shared state.

use std::sync::Arc;

use super::Shared;
use crate::config::Protocol;
use crate::http;
use crate::imap::{self, ImapContext, ImapLimits};
use crate::managesieve::{self, ManageSieveContext, ManageSieveLimits};
use crate::net::{self, Service};
use crate::pop3::{self, Pop3Context, Pop3Limits};
use crate::smtp::{self, AnyDomainExists, SenderDomainCheck, SmtpContext, SmtpLimits, SmtpMode};
use crate::tls;

/// The service for each protocol that exists. Protocol issues add theirs here.
pub(super) fn services(shared: &Shared, pages: Option<Arc<crate::web::WebApp>>) -> Vec<(Protocol, Service)> {
    let web = Arc::new(http::web::WebContext {
        hostname: shared.config.hostname.clone(),
        domains: shared.config.domains.clone(),
        listen: shared.config.listen.clone(),
        certs: shared.certs.clone(),
        tokens: shared.acme_tokens.clone(),
        web: pages,
    });
    let limits = &shared.config.limits;
    let imap_limits = ImapLimits {
        max_literal: limits.message_size,
        login_deadline: limits.login_timeout,
        write_timeout: limits.write_timeout,
        ..ImapLimits::default()
    };
    let imap_ctx = Arc::new(
        ImapContext::new(
            shared.config.hostname.clone(),
            shared.directory.clone(),
            shared.store.clone(),
            crate::datadir::spool_dir(&shared.config.data_dir),
            Some(tls::acceptor(&shared.certs)),
            imap_limits,
        )
        .with_limiter(shared.limiter.clone())
        .with_memory(shared.message_memory.clone()),
    );
    let pop3_ctx = Arc::new(Pop3Context {
        hostname: shared.config.hostname.clone(),
        directory: shared.directory.clone(),
        store: shared.store.clone(),
        tls: Some(tls::acceptor(&shared.certs)),
        limits: Pop3Limits {
            login_timeout: limits.login_timeout,
            write_timeout: limits.write_timeout,
            ..Pop3Limits::default()
        },
        limiter: shared.limiter.clone(),
    });
    let sieve_limits = ManageSieveLimits {
        max_script_size: shared.config.limits.sieve_max_script_size,
        max_scripts: shared.config.limits.sieve_max_scripts,
        login_timeout: limits.login_timeout,
        write_timeout: limits.write_timeout,
        ..ManageSieveLimits::default()
    };
    let managesieve_ctx = Arc::new(ManageSieveContext {
        directory: shared.directory.clone(),
        store: shared.store.clone(),
        tls: Some(tls::acceptor(&shared.certs)),
        limiter: shared.limiter.clone(),
        limits: sieve_limits,
    });
    vec![
        (Protocol::Metrics, http::metrics_service(shared.readiness.clone())),
        (Protocol::Http, http::web::http_service(web.clone())),
        (Protocol::Https, http::web::https_service(web)),
        (Protocol::Smtp, smtp_service(shared, SmtpMode::Mx, false)),
        (Protocol::Lmtp, smtp_service(shared, SmtpMode::Lmtp, false)),
        (Protocol::Submission, smtp_service(shared, SmtpMode::Submission, false)),
        (Protocol::Submissions, smtp_service(shared, SmtpMode::Submission, true)),
        (Protocol::Imap, imap_service(imap_ctx.clone(), false)),
        (Protocol::Imaps, imap_service(imap_ctx, true)),
        (Protocol::Pop3, pop3_service(pop3_ctx.clone(), false)),
        (Protocol::Pop3s, pop3_service(pop3_ctx, true)),
        (Protocol::ManageSieve, managesieve_service(managesieve_ctx)),
    ]
}

/// The account and admin pages, unless `MAILROOM_WEB=off`: the session key from the
/// data dir (made at first start), logins through the shared limiter.
pub(super) fn web_pages(shared: &Shared) -> Result<Option<Arc<crate::web::WebApp>>, super::StartError> {
    if !shared.config.web {
        return Ok(None);
    }
    let credentials = crate::credentials::Credentials::new(shared.store.clone(), shared.directory.clone());
    let sessions = crate::web::Sessions::load_or_create(&shared.config.data_dir)
        .map_err(|e| super::StartError::Web(format!("session key: {e}")))?;
    Ok(Some(Arc::new(crate::web::WebApp {
        hostname: shared.config.hostname.clone(),
        listen: shared.config.listen.clone(),
        certs: shared.certs.clone(),
        sessions,
        admins: shared.config.admins.iter().map(|a| a.to_string()).collect(),
        login: Arc::new(crate::web::CredentialsLogin {
            limiter: shared.limiter.clone(),
            credentials: credentials.clone(),
        }),
        backend: Arc::new(super::web_backend::StoreBackend {
            limiter: shared.limiter.clone(),
            credentials,
            store: shared.store.clone(),
        }),
        admin: Some(shared.status.clone()),
    })))
}

/// ManageSieve on 4190 (STARTTLS; AUTHENTICATE only inside TLS).
fn managesieve_service(ctx: Arc<ManageSieveContext>) -> Service {
    Service {
        handler: Arc::new(move |conn: net::Connection| -> net::BoxFuture {
            let ctx = ctx.clone();
            Box::pin(async move {
                let _permit = conn.permit;
                managesieve::serve_connection(ctx, conn.stream, conn.peer, conn.shutdown).await;
            })
        }),
        busy_reply: managesieve::BUSY_REPLY,
    }
}

/// POP3 on 110 (STLS) or 995 (implicit TLS); one context, so the one-session-per-
/// mailbox lock holds across both ports.
fn pop3_service(ctx: Arc<Pop3Context>, implicit_tls: bool) -> Service {
    Service {
        handler: Arc::new(move |conn: net::Connection| -> net::BoxFuture {
            let ctx = ctx.clone();
            Box::pin(async move {
                let _permit = conn.permit;
                pop3::serve_connection(ctx, conn.stream, conn.peer, implicit_tls, conn.shutdown).await;
            })
        }),
        busy_reply: pop3::BUSY_REPLY,
    }
}

/// IMAP on 143 (STARTTLS) or 993 (implicit TLS). Both share one context, so the
/// per-user connection cap counts both ports.
fn imap_service(ctx: Arc<ImapContext>, implicit_tls: bool) -> Service {
    Service {
        handler: Arc::new(move |conn: net::Connection| -> net::BoxFuture {
            let ctx = ctx.clone();
            Box::pin(async move {
                let _permit = conn.permit;
                imap::serve_connection(ctx, conn.stream, conn.peer, implicit_tls, conn.shutdown).await;
            })
        }),
        busy_reply: b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
    }
}

/// Port 25 (MX), LMTP, or submission (587 STARTTLS / 465 implicit TLS), sharing one
/// session implementation.
fn smtp_service(shared: &Shared, mode: SmtpMode, implicit_tls: bool) -> Service {
    let config = &shared.config;
    let sender_domains: Arc<dyn SenderDomainCheck> = match mode {
        // LMTP sits behind an MTA that already judged the sender; submission senders
        // are our own addresses (checked against the account instead).
        SmtpMode::Lmtp | SmtpMode::Submission => Arc::new(AnyDomainExists),
        SmtpMode::Mx => Arc::new(smtp::sender_dns::DnsSenderDomains::new(shared.resolver.clone())),
    };
    let limits = SmtpLimits {
        max_message_size: config.limits.message_size,
        command_timeout: config.limits.smtp_command_timeout,
        write_timeout: config.limits.write_timeout,
        disk: shared.disk.clone(),
        ..SmtpLimits::default()
    };
    let ctx = Arc::new(SmtpContext {
        hostname: config.hostname.clone(),
        directory: shared.directory.clone(),
        store: shared.store.clone(),
        tls: Some(tls::acceptor(&shared.certs)),
        limits,
        trusted_networks: config.trusted_networks.clone(),
        sender_domains,
        spool_dir: crate::datadir::spool_dir(&config.data_dir),
        mode,
        implicit_tls,
        // LMTP delivers locally only: it is the last hop, remote copies are not its job.
        queue: (mode != SmtpMode::Lmtp).then(|| shared.queue.clone()),
        signers: (mode == SmtpMode::Submission).then(|| shared.signers.clone()),
        limiter: shared.limiter.clone(),
        inbound: (mode == SmtpMode::Mx).then(|| shared.inbound.clone()),
        memory: shared.message_memory.clone(),
        courier: shared.courier.clone(),
        recent: Some(shared.status.recent.clone()),
    });
    Service {
        handler: Arc::new(move |conn: net::Connection| -> net::BoxFuture {
            let ctx = ctx.clone();
            Box::pin(async move {
                // The permit lives as long as the session: it is the connection's slot.
                let _permit = conn.permit;
                smtp::serve_connection(ctx, conn.stream, conn.peer, conn.shutdown).await;
            })
        }),
        busy_reply: b"421 4.7.0 Too many connections, try again later\r\n",
    }
}

/// The periodic fetch of `MAILROOM_FETCH`, delivering through the shared (Sieve) courier;
/// `None` without sources. The passwords file was checked when the configuration was
/// read; it is read again here, and a source without its password stops the start.
pub(super) fn fetcher(
    shared: &Shared,
) -> Result<Option<(Arc<crate::fetch::Fetcher>, crate::fetch::Sources)>, super::StartError> {
    let fetch = &shared.config.fetch;
    if fetch.sources.is_empty() {
        return Ok(None);
    }
    let fail = |e: String| super::StartError::Fetch(e);
    let path = fetch.passwords_file.as_deref().ok_or_else(|| fail("MAILROOM_FETCH_PASSWORDS_FILE: not set".into()))?;
    let passwords =
        crate::fetch::Passwords::load(path).map_err(|e| fail(format!("MAILROOM_FETCH_PASSWORDS_FILE: {e}")))?;
    let mut sources = Vec::new();
    for s in &fetch.sources {
        let password = passwords
            .get(&s.url)
            .ok_or_else(|| fail(format!("MAILROOM_FETCH_PASSWORDS_FILE: has no password for {}", s.url)))?;
        sources.push((s.clone(), password.clone()));
    }
    let roots = match &fetch.ca_file {
        Some(p) => crate::config::pem_roots(p).map_err(|e| fail(format!("MAILROOM_FETCH_CA_FILE: {e}")))?,
        None => Vec::new(),
    };
    let tls = crate::fetch::connector(&roots).map_err(|e| fail(format!("MAILROOM_FETCH_CA_FILE: {e}")))?;
    Ok(Some((
        Arc::new(crate::fetch::Fetcher {
            hostname: shared.config.hostname.clone(),
            data_dir: shared.config.data_dir.clone(),
            directory: shared.directory.clone(),
            store: shared.store.clone(),
            courier: shared.courier.clone(),
            tls,
            max_message_size: shared.config.limits.message_size,
            status: shared.fetch.clone(),
        }),
        sources,
    )))
}

/// `mailroom import` through the control socket: the job runs here, on the server's own
/// store (see `import/`), with `MAILROOM_FETCH_CA_FILE`'s roots.
pub(super) fn import_command(shared: &Shared) -> Result<crate::queue::ImportCommand, super::StartError> {
    let fetch_roots = match &shared.config.fetch.ca_file {
        Some(p) => {
            crate::config::pem_roots(p).map_err(|e| super::StartError::Fetch(format!("MAILROOM_FETCH_CA_FILE: {e}")))?
        }
        None => Vec::new(),
    };
    let importer = Arc::new(crate::import::Importer {
        store: shared.store.clone(),
        directory: shared.directory.clone(),
        data_dir: shared.config.data_dir.clone(),
        fetch_roots,
        max_message_size: shared.config.limits.message_size,
    });
    Ok(Arc::new(move |request, password| crate::import::spawn_job(importer.clone(), request, password)))
}
