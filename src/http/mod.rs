//! HTTP endpoints. On the metrics port: `/metrics` (Prometheus text format),
//! `/healthz` (200 while the process runs) and `/readyz` (200 only when every
//! listener is bound and a certificate is loaded; 503 with the reasons otherwise,
//! and again while draining so load balancers stop sending clients). The web ports
//! 80/443 (ACME HTTP-01, MTA-STS, client autoconfig) are in [`web`].
//!
//! HTTP/1.1 only, through hyper, on connections from our own listeners (so the
//! connection limits and metrics apply).

pub mod autoconfig;
pub mod mta_sts;
pub mod web;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::metrics::metrics;
use crate::net::{BoxFuture, Connection, Service};
use crate::readiness::Readiness;

/// The metrics-port service.
pub fn metrics_service(readiness: Arc<Readiness>) -> Service {
    Service {
        handler: Arc::new(move |conn: Connection| -> BoxFuture {
            let readiness = readiness.clone();
            Box::pin(serve_http1(conn, move |req| route_metrics_port(&readiness, req)))
        }),
        busy_reply: b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    }
}

/// Serve HTTP/1.1 on one connection with `route`, bounded in time, ending when
/// shutdown starts.
pub async fn serve_http1<F>(mut conn: Connection, route: F)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let route = Arc::new(route);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let route = route.clone();
        async move { Ok::<_, Infallible>(route(&req)) }
    });
    let io = TokioIo::new(conn.stream);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10)).max_buf_size(64 * 1024);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let idle = tokio::time::sleep(Duration::from_secs(300));
    tokio::pin!(idle);
    loop {
        tokio::select! {
            _ = &mut connection => break,
            _ = conn.shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
            }
            _ = &mut idle => break,
        }
    }
}

fn route_metrics_port(readiness: &Readiness, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let body = metrics().render();
            response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let reasons = readiness.reasons();
            if reasons.is_empty() {
                text(StatusCode::OK, "ready\n")
            } else {
                let mut body = String::from("not ready:\n");
                for r in reasons {
                    body.push_str("- ");
                    body.push_str(&r);
                    body.push('\n');
                }
                text(StatusCode::SERVICE_UNAVAILABLE, &body)
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

pub fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body.as_bytes().to_vec())
}

pub fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// `GET /readyz` against a local metrics port: the `healthcheck` command (the scratch
/// image has no curl). Returns true on HTTP 200.
pub async fn probe_ready(addr: std::net::SocketAddr) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut buf).await?;
    Ok(buf.starts_with(b"HTTP/1.1 200"))
}
