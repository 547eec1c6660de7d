//! The web ports. Port 80: ACME HTTP-01 answers, `/.well-known/*`, and a 301 to
//! HTTPS for everything else. Port 443 (TLS through the certificate store, so SNI
//! and renewals apply): the MTA-STS policy, Thunderbird autoconfig, Outlook
//! autodiscover and `/healthz`; and TLS-ALPN-01 validation, which ends with the
//! handshake (RFC 8737 §3: no application data on an `acme-tls/1` connection).
//! `/account…` and `/admin…` on port 443 are the web pages of [`crate::web`] (404
//! when `MAILROOM_WEB=off`).
//!
//! Routing is a pure function of a [`WebRequest`], tested without sockets.
//! Bodies are capped at 64 KiB and must arrive within 10 s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::autoconfig::{self, MailEndpoints};
use super::mta_sts::{self, StsMode};
use super::{response, text};
use crate::acme::Http01Tokens;
use crate::config::{ListenConfig, Protocol};
use crate::metrics::metrics;
use crate::net::{BoxFuture, Connection, Service};
use crate::tls::{self, ACME_TLS_ALPN, CertStore};

const MAX_BODY: usize = 64 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const XML: &str = "application/xml; charset=utf-8";

/// What the web routes need.
pub struct WebContext {
    /// Our name: the MTA-STS policy's `mx`, the servers autoconfig points clients at.
    pub hostname: String,
    /// The mail domains, primary first: settings are only given out for these.
    pub domains: Vec<String>,
    /// The ports autoconfig advertises and the HTTPS port redirects go to.
    pub listen: ListenConfig,
    pub certs: Arc<CertStore>,
    pub tokens: Arc<Http01Tokens>,
    /// The account and admin pages; `None` when `MAILROOM_WEB=off`.
    pub web: Option<Arc<crate::web::WebApp>>,
}

/// The parts of a request the routes look at.
#[derive(Debug, Clone)]
pub struct WebRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// Host header without port, lower-cased.
    pub host: Option<String>,
    /// Every header as sent (the web pages read Cookie, Origin, Sec-Fetch-Site, Host).
    pub headers: hyper::HeaderMap,
    /// The client (for the login limiter); `None` in tests without a connection.
    pub peer: Option<std::net::IpAddr>,
    pub body: Bytes,
}

impl WebRequest {
    pub fn get(path: &str) -> WebRequest {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path.to_string(), None),
        };
        WebRequest {
            method: Method::GET,
            path,
            query,
            host: None,
            headers: hyper::HeaderMap::new(),
            peer: None,
            body: Bytes::new(),
        }
    }

    fn query_param(&self, key: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| percent_decode(v))
    }
}

/// `%XX` decoding of a query value (RFC 3986 §2.1). `+` stays `+`: Thunderbird
/// encodes with `encodeURIComponent`, and `+` in an address is subaddressing, not
/// a space. Malformed escapes are kept as they are; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Port 80.
pub fn route_http(ctx: &WebContext, req: &WebRequest) -> Response<Full<Bytes>> {
    if let Some(token) = req.path.strip_prefix("/.well-known/acme-challenge/") {
        // RFC 8555 §8.3: the body is the key authorization, nothing else.
        return match ctx.tokens.get(token) {
            Some(key_authorization) => response(StatusCode::OK, "application/octet-stream", key_authorization.into()),
            None => text(StatusCode::NOT_FOUND, "no such challenge\n"),
        };
    }
    if req.path.starts_with("/.well-known/") {
        return route_common(ctx, req).unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"));
    }
    redirect_to_https(ctx, req)
}

/// Port 443.
pub fn route_https(ctx: &WebContext, req: &WebRequest) -> Response<Full<Bytes>> {
    if req.path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    route_common(ctx, req).unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"))
}

/// Routes served on both ports.
fn route_common(ctx: &WebContext, req: &WebRequest) -> Option<Response<Full<Bytes>>> {
    let path = req.path.to_ascii_lowercase();
    let read_only = req.method == Method::GET || req.method == Method::HEAD;
    match path.as_str() {
        "/.well-known/mta-sts.txt" if read_only => {
            let policy = mta_sts::policy_text(&[&ctx.hostname], StsMode::for_store(&ctx.certs));
            Some(text(StatusCode::OK, &policy))
        }
        "/.well-known/autoconfig/mail/config-v1.1.xml" | "/mail/config-v1.1.xml" if read_only => {
            let Some(domain) = thunderbird_domain(&ctx.domains, req) else {
                return Some(text(StatusCode::NOT_FOUND, "not a mail domain of this server\n"));
            };
            let xml = autoconfig::thunderbird_config(
                &ctx.hostname,
                &ctx.domains,
                &domain,
                &MailEndpoints::from_listen(&ctx.listen),
            );
            Some(response(StatusCode::OK, XML, xml.into_bytes()))
        }
        "/autodiscover/autodiscover.xml" if read_only || req.method == Method::POST => {
            let email = if req.method == Method::POST {
                autoconfig::autodiscover_email(&req.body)
            } else {
                req.query_param("email").and_then(|e| crate::accounts::Address::parse(&e).ok())
            };
            // Settings for somebody else's domain would point its users' clients at us.
            if email.as_ref().is_some_and(|a| !is_our_domain(&ctx.domains, &a.domain)) {
                return Some(text(StatusCode::NOT_FOUND, "not a mail domain of this server\n"));
            }
            let xml = autoconfig::autodiscover_response(
                &ctx.hostname,
                email.as_ref(),
                &MailEndpoints::from_listen(&ctx.listen),
            );
            Some(response(StatusCode::OK, XML, xml.into_bytes()))
        }
        _ => None,
    }
}

fn is_our_domain(domains: &[String], domain: &str) -> bool {
    domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

/// The mail domain a Thunderbird request is about: `?emailaddress=`, else the
/// `autoconfig.<domain>` host, else the primary domain. `None` when the request names a
/// domain that is not ours: Thunderbird then tries its other sources instead of being
/// sent to a server that will not accept that address.
fn thunderbird_domain(domains: &[String], req: &WebRequest) -> Option<String> {
    if let Some(e) = req.query_param("emailaddress") {
        let domain = crate::accounts::Address::parse(&e).ok()?.domain;
        return is_our_domain(domains, &domain).then_some(domain);
    }
    if let Some(d) = req.host.as_deref().and_then(|h| h.strip_prefix("autoconfig.")) {
        return is_our_domain(domains, d).then(|| d.to_ascii_lowercase());
    }
    domains.first().cloned()
}

/// 301 to the same path over HTTPS. The target host is the request's only when it
/// is one of our names (no open redirect for arbitrary Host headers).
fn redirect_to_https(ctx: &WebContext, req: &WebRequest) -> Response<Full<Bytes>> {
    let ours = |h: &str| {
        h == ctx.hostname
            || ctx
                .domains
                .iter()
                .any(|d| h == d || h.strip_suffix(d.as_str()).is_some_and(|p| p == "mta-sts." || p == "autoconfig."))
    };
    let host = req.host.as_deref().filter(|h| ours(h)).unwrap_or(&ctx.hostname);
    let port = ctx.listen.of(Protocol::Https).first().map(|a| a.port()).filter(|&p| p != 443 && p != 0);
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let query = req.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("https://{host}{port}{}{query}", req.path);
    let mut resp = text(StatusCode::MOVED_PERMANENTLY, &format!("moved to {location}\n"));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(hyper::header::LOCATION, v);
    }
    resp
}

/// The port-80 service.
pub fn http_service(ctx: Arc<WebContext>) -> Service {
    Service {
        handler: Arc::new(move |conn: Connection| -> BoxFuture {
            let ctx = ctx.clone();
            Box::pin(async move {
                let shutdown = conn.shutdown.clone();
                let peer = conn.peer.ip();
                serve(conn.stream, shutdown, ctx, peer, Port::Http).await;
                drop(conn.permit);
            })
        }),
        busy_reply: b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    }
}

/// The port-443 service: TLS offering `acme-tls/1` and `http/1.1`.
pub fn https_service(ctx: Arc<WebContext>) -> Service {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&ctx.certs, &[ACME_TLS_ALPN, b"http/1.1"]));
    Service {
        handler: Arc::new(move |conn: Connection| -> BoxFuture {
            let ctx = ctx.clone();
            let acceptor = acceptor.clone();
            Box::pin(async move {
                let Connection { stream, shutdown, permit, protocol, peer, .. } = conn;
                let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    _ => {
                        metrics().tls_handshake_failures_total.with_label_values(&[protocol.name()]).inc();
                        return;
                    }
                };
                if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                    tracing::debug!("TLS-ALPN-01 validation handshake done");
                    let _ = tls.shutdown().await;
                    return;
                }
                serve(tls, shutdown, ctx, peer.ip(), Port::Https).await;
                drop(permit);
            })
        }),
        // Plain text to a TLS client is garbage to it either way; just close.
        busy_reply: b"",
    }
}

/// Which of the two web ports a connection came in on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Http,
    Https,
}

/// Port 443's answer: the web pages (async: a login verifies a password) or the rest.
async fn answer_https(ctx: &WebContext, req: &WebRequest) -> Response<Full<Bytes>> {
    if crate::web::routes::is_web_path(&req.path) {
        return match &ctx.web {
            Some(app) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                crate::web::handle(app, req, now).await
            }
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    route_https(ctx, req)
}

/// HTTP/1.1 on any stream: collect the (bounded) body, route, answer; graceful on
/// shutdown, closed after 5 idle minutes.
async fn serve<I>(io: I, mut shutdown: watch::Receiver<bool>, ctx: Arc<WebContext>, peer: std::net::IpAddr, port: Port)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(_)) => return Ok::<_, Infallible>(text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n")),
                Err(_) => return Ok(text(StatusCode::REQUEST_TIMEOUT, "body too slow\n")),
            };
            let host = parts
                .headers
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or(parts.uri.host())
                .map(strip_port);
            let req = WebRequest {
                method: parts.method,
                path: parts.uri.path().to_string(),
                query: parts.uri.query().map(str::to_string),
                host,
                headers: parts.headers,
                peer: Some(peer),
                body,
            };
            Ok(match port {
                Port::Http => route_http(&ctx, &req),
                Port::Https => answer_https(&ctx, &req).await,
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10)).max_buf_size(64 * 1024);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let idle = tokio::time::sleep(Duration::from_secs(300));
    tokio::pin!(idle);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = &mut connection => break,
            _ = shutdown.changed(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = &mut idle => break,
        }
    }
}

/// `host[:port]` or `[v6]:port` -> host, lower-cased.
fn strip_port(h: &str) -> String {
    let h = h.trim();
    let host = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        h.rsplit_once(':').map(|(a, _)| a).unwrap_or(h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
#[path = "web_tests.rs"]
mod tests;
