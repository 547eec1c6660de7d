//! rspamd through its HTTP `/checkv2` API (`MAILROOM_RSPAMD_URL`): POST the raw
//! message with the envelope in request headers (`IP`, `Helo`, `From`, one `Rcpt`
//! per recipient, `Hostname`, `Queue-Id`, `User`), read the JSON `action`.
//!
//! A small hyper 1 client over plain TCP: rspamd sits beside us (loopback, a pod
//! network, a compose network), so no TLS and no connection pool; one connection
//! per message keeps failure handling trivial. Host names resolve through our
//! resolver (no getaddrinfo in the static binary). The reply parser is pure.

use std::time::Duration;

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;

use super::clamd::resolve;

/// Largest reply body we read (rspamd's replies are a few KiB).
const MAX_REPLY: usize = 1024 * 1024;

/// Where rspamd's normal worker listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RspamdEndpoint {
    pub host: String,
    pub port: u16,
    /// Path prefix (usually empty) before `/checkv2`.
    pub base_path: String,
}

impl RspamdEndpoint {
    /// Parse `http://host[:port][/prefix]`; `https://` is refused (not supported:
    /// run rspamd next to mailroom).
    pub fn parse(url: &str) -> Result<RspamdEndpoint, String> {
        let url = url.trim();
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("{url}: bad IPv6 literal"))?;
            let port = after.strip_prefix(':').map(str::parse::<u16>).transpose();
            (h.to_string(), port.map_err(|_| format!("{url}: bad port"))?)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().map_err(|_| format!("{url}: bad port"))?)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(RspamdEndpoint { host, port: port.unwrap_or(80), base_path: path.to_string() })
    }
}

/// rspamd's recommended action (its `actions` config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RspamdAction {
    Reject,
    SoftReject,
    RewriteSubject,
    AddHeader,
    Greylist,
    NoAction,
}

/// The parts of the `/checkv2` reply we act on.
#[derive(Clone, Debug, PartialEq)]
pub struct RspamdReply {
    pub action: RspamdAction,
    pub score: f64,
    pub required_score: f64,
    /// Symbol names, sorted (for the log and the header).
    pub symbols: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RspamdError {
    #[error("cannot reach rspamd: {0}")]
    Connect(String),
    #[error("rspamd HTTP error: {0}")]
    Http(String),
    #[error("rspamd answered HTTP {0}")]
    Status(u16),
    #[error("rspamd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected rspamd reply: {0}")]
    Protocol(String),
}

/// The envelope as rspamd wants it.
#[derive(Clone, Debug, Default)]
pub struct RspamdRequest<'a> {
    pub ip: Option<std::net::IpAddr>,
    pub helo: Option<&'a str>,
    pub mail_from: Option<&'a str>,
    pub recipients: &'a [String],
    /// The client's reverse-DNS name; `unknown` when it has none (postfix's word).
    pub client_hostname: Option<&'a str>,
    pub queue_id: Option<&'a str>,
    /// The authenticated user, for submission.
    pub user: Option<&'a str>,
}

/// Parse a `/checkv2` JSON reply (pure; never panics).
pub fn parse_reply(body: &[u8]) -> Result<RspamdReply, RspamdError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| RspamdError::Protocol(format!("not JSON: {e}")))?;
    let action = match v.get("action").and_then(|a| a.as_str()) {
        Some("reject") => RspamdAction::Reject,
        Some("soft reject") => RspamdAction::SoftReject,
        Some("rewrite subject") => RspamdAction::RewriteSubject,
        Some("add header") => RspamdAction::AddHeader,
        Some("greylist") => RspamdAction::Greylist,
        Some("no action") => RspamdAction::NoAction,
        Some(other) => return Err(RspamdError::Protocol(format!("unknown action {other:?}"))),
        None => return Err(RspamdError::Protocol("no action in the reply".into())),
    };
    let num = |k: &str| v.get(k).and_then(|s| s.as_f64()).filter(|f| f.is_finite()).unwrap_or(0.0);
    let mut symbols: Vec<String> =
        v.get("symbols").and_then(|s| s.as_object()).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    symbols.sort();
    Ok(RspamdReply { action, score: num("score"), required_score: num("required_score"), symbols })
}

/// POST `msg` to `/checkv2`, giving up after `timeout` in total.
pub async fn check(
    endpoint: &RspamdEndpoint,
    resolver: &TokioResolver,
    msg: &[u8],
    req: &RspamdRequest<'_>,
    timeout: Duration,
) -> Result<RspamdReply, RspamdError> {
    match tokio::time::timeout(timeout, check_inner(endpoint, resolver, msg, req)).await {
        Ok(r) => r,
        Err(_) => Err(RspamdError::Timeout(timeout)),
    }
}

async fn check_inner(
    endpoint: &RspamdEndpoint,
    resolver: &TokioResolver,
    msg: &[u8],
    req: &RspamdRequest<'_>,
) -> Result<RspamdReply, RspamdError> {
    let ips = resolve(resolver, &endpoint.host).await.map_err(RspamdError::Connect)?;
    let mut stream = None;
    let mut last = String::from("no address");
    for ip in ips {
        match tokio::net::TcpStream::connect((ip, endpoint.port)).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{ip}:{}: {e}", endpoint.port),
        }
    }
    let stream = stream.ok_or(RspamdError::Connect(last))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| RspamdError::Http(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });

    let host_header = if endpoint.host.contains(':') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    };
    let mut builder = Request::post(format!("{}/checkv2", endpoint.base_path)).header("Host", host_header);
    let mut headers = builder.headers_mut();
    let mut add = |name: &'static str, value: &str| {
        // Envelope values come from the network: skip what HTTP cannot carry.
        if let (Some(h), Ok(v)) = (headers.as_mut(), HeaderValue::from_str(value)) {
            h.append(HeaderName::from_static(name), v);
        }
    };
    if let Some(ip) = req.ip {
        add("ip", &ip.to_string());
    }
    if let Some(helo) = req.helo {
        add("helo", helo);
    }
    add("from", req.mail_from.unwrap_or(""));
    for rcpt in req.recipients {
        add("rcpt", rcpt);
    }
    add("hostname", req.client_hostname.unwrap_or("unknown"));
    if let Some(id) = req.queue_id {
        add("queue-id", id);
    }
    if let Some(user) = req.user {
        add("user", user);
    }
    let request = builder.body(Full::new(Bytes::copy_from_slice(msg))).map_err(|e| RspamdError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| RspamdError::Http(e.to_string()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_REPLY)
        .collect()
        .await
        .map_err(|e| RspamdError::Http(e.to_string()))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(RspamdError::Status(status.as_u16()));
    }
    parse_reply(&body)
}

#[cfg(test)]
#[path = "rspamd_tests.rs"]
mod tests;
