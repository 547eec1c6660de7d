//! MTA-STS (RFC 8461): a domain's published promise that its MX hosts speak TLS with
//! valid certificates, which turns opportunistic STARTTLS into required, checked TLS and
//! so defeats an attacker who strips STARTTLS or spoofs MX answers.
//!
//! Discovery: TXT `_mta-sts.<domain>` (`v=STSv1; id=…`); the policy itself comes over
//! HTTPS (certificate checked) from `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
//! Policies are cached by domain until `max_age`; a TXT id equal to the cached one means
//! no refetch (§5.1). If a fetch fails the cached policy still applies, and with none the
//! domain is treated as having no policy (§5, "fail open" on first contact).
//!
//! The parsers (TXT record, policy file, HTTP response, MX patterns) are pure and tested.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::mx::lookup_addresses;
use super::tls::server_name;
use super::tls_outcome::{ResultType, certificate_invalid};

/// RFC 8461 §3.3: policies are small; refuse bigger bodies.
const MAX_POLICY: usize = 64 * 1024;
/// RFC 8461 §3.2: max_age is at most one year.
const MAX_AGE_CAP: u64 = 31_557_600;
/// Fetch deadline (RFC 8461 §3.3 suggests a short one).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub mode: Mode,
    /// `mx:` patterns: exact names or `*.example.com` (one leftmost label).
    pub mx: Vec<String>,
    pub max_age: u64,
}

impl Policy {
    /// Whether `host` (an MX name) is allowed by this policy.
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// RFC 8461 §4.1: `*.example.com` matches exactly one extra leftmost label.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// The `id` of a `v=STSv1; id=…` TXT record (RFC 8461 §3.1), if it is one.
pub fn parse_txt(record: &str) -> Option<String> {
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next()? != "v=STSv1" {
        return None;
    }
    fields
        .find_map(|f| f.strip_prefix("id="))
        .filter(|id| (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_string)
}

/// Parse a policy file (RFC 8461 §3.2): `key: value` lines, CRLF or LF.
pub fn parse_policy(body: &str, id: &str) -> Result<Policy, String> {
    let mut version = None;
    let mut mode = None;
    let mut max_age = None;
    let mut mx = Vec::new();
    for line in body.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim() {
            "version" => version = Some(value.to_string()),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {other:?}")),
                })
            }
            "max_age" => max_age = Some(value.parse::<u64>().map_err(|_| format!("bad max_age {value:?}"))?),
            "mx" => mx.push(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("missing version: STSv1".into());
    }
    let mode = mode.ok_or("missing mode")?;
    let max_age = max_age.ok_or("missing max_age")?.min(MAX_AGE_CAP);
    if mode != Mode::None && mx.is_empty() {
        return Err("no mx patterns".into());
    }
    Ok(Policy { id: id.to_string(), mode, mx, max_age })
}

/// Split an HTTP/1.x response into status and body (we send HTTP/1.0 requests, so the
/// body is never chunked and ends at the end of the stream).
pub fn parse_http_response(bytes: &[u8]) -> Result<(u16, &[u8]), String> {
    let end = memchr::memmem::find(bytes, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "headers are not text")?;
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split_ascii_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    let status = parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or("no status code")?;
    if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:")) {
        return Err("unexpected transfer-encoding".into());
    }
    Ok((status, &bytes[end + 4..]))
}

/// What MTA-STS says for a domain now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sts {
    /// The fetched or cached policy.
    Policy(Policy),
    /// No `_mta-sts` record (and nothing cached): no policy.
    None,
    /// A record is published but its policy could not be had, and none is cached:
    /// mail goes as without a policy (§5, fail open), and TLS reports say why.
    Failed(StsFailure),
}

/// Why a published policy could not be had, typed for TLS reports (RFC 8460 §4.3.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsFailure {
    /// The id in the `_mta-sts` record.
    pub id: String,
    /// `sts-webpki-invalid`, `sts-policy-invalid` or `sts-policy-fetch-error`.
    pub result_type: ResultType,
    pub why: String,
}

struct Cached {
    policy: Policy,
    expires: Instant,
}

/// The policy cache and fetcher.
pub struct MtaSts {
    cache: Mutex<HashMap<String, Cached>>,
    /// 443 in production; tests point it elsewhere.
    https_port: u16,
}

impl MtaSts {
    pub fn new(https_port: u16) -> MtaSts {
        MtaSts { cache: Mutex::new(HashMap::new()), https_port }
    }

    fn cached(&self, domain: &str) -> Option<Policy> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(domain).filter(|c| c.expires > Instant::now()).map(|c| c.policy.clone())
    }

    /// The policy that applies to `domain` now, if any.
    pub async fn policy(&self, resolver: &TokioResolver, connector: &TlsConnector, domain: &str) -> Sts {
        let cached = self.cached(domain);
        match self.current(resolver, connector, domain, cached.clone()).await {
            Ok(Some(policy)) => Sts::Policy(policy),
            Ok(None) => Sts::None,
            Err(failure) => cached.map_or(Sts::Failed(failure), Sts::Policy),
        }
    }

    /// The fetched or cached policy; `Err` when fetching a published one failed.
    async fn current(
        &self,
        resolver: &TokioResolver,
        connector: &TlsConnector,
        domain: &str,
        cached: Option<Policy>,
    ) -> Result<Option<Policy>, StsFailure> {
        let txt_id =
            match crate::dns::resolver::counted("TXT", resolver.lookup(format!("_mta-sts.{domain}."), RecordType::TXT))
                .await
            {
                Ok(lookup) => lookup.answers().iter().find_map(|r| match &r.data {
                    RData::TXT(txt) => {
                        let joined: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                        parse_txt(&String::from_utf8_lossy(&joined))
                    }
                    _ => None,
                }),
                Err(_) => None,
            };
        let Some(id) = txt_id else { return Ok(cached) };
        if let Some(c) = &cached
            && c.id == id
        {
            return Ok(cached);
        }
        match self.fetch(resolver, connector, domain, &id).await {
            Ok(policy) => {
                tracing::info!(domain, id = %policy.id, mode = ?policy.mode, "MTA-STS policy fetched");
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                let expires = Instant::now() + Duration::from_secs(policy.max_age);
                cache.insert(domain.to_string(), Cached { policy: policy.clone(), expires });
                Ok(Some(policy))
            }
            Err((result_type, why)) => {
                tracing::warn!(domain, error = %why, "MTA-STS policy fetch failed");
                Err(StsFailure { id, result_type, why })
            }
        }
    }

    async fn fetch(
        &self,
        resolver: &TokioResolver,
        connector: &TlsConnector,
        domain: &str,
        id: &str,
    ) -> Result<Policy, (ResultType, String)> {
        let fetch_error = |e: String| (ResultType::StsPolicyFetchError, e);
        let host = format!("mta-sts.{domain}");
        let name = server_name(&host).ok_or_else(|| fetch_error("bad host name".into()))?;
        let ips = lookup_addresses(resolver, &host).await.map_err(|e| fetch_error(e.to_string()))?;
        let request = format!(
            "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\nUser-Agent: mailroom\r\nConnection: close\r\n\r\n"
        );
        let mut last = fetch_error("no address".into());
        for ip in ips {
            let addr = SocketAddr::new(ip, self.https_port);
            let attempt = async {
                let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| fetch_error(e.to_string()))?;
                let mut tls = connector.connect(name.clone(), tcp).await.map_err(|e| {
                    // RFC 8461 §3.3: the policy host's certificate must be valid.
                    let kind = match certificate_invalid(&e) {
                        true => ResultType::StsWebpkiInvalid,
                        false => ResultType::StsPolicyFetchError,
                    };
                    (kind, format!("TLS: {e}"))
                })?;
                tls.write_all(request.as_bytes()).await.map_err(|e| fetch_error(e.to_string()))?;
                // A TLS write may leave records buffered; the server answers only what it got.
                tls.flush().await.map_err(|e| fetch_error(e.to_string()))?;
                let mut body = Vec::new();
                // Read one byte past the limit to detect an oversized policy.
                let mut limited = (&mut tls).take((MAX_POLICY + 4096) as u64);
                // A server closing without TLS close_notify is common; keep what we got.
                let _ = limited.read_to_end(&mut body).await;
                let (status, content) = parse_http_response(&body).map_err(fetch_error)?;
                if status != 200 {
                    return Err(fetch_error(format!("HTTP status {status}")));
                }
                if content.len() > MAX_POLICY {
                    return Err((ResultType::StsPolicyInvalid, "policy too large".to_string()));
                }
                parse_policy(&String::from_utf8_lossy(content), id).map_err(|e| (ResultType::StsPolicyInvalid, e))
            };
            match tokio::time::timeout(FETCH_TIMEOUT, attempt).await {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err(e)) => last = e,
                Err(_) => last = fetch_error("timed out".into()),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records() {
        assert_eq!(parse_txt("v=STSv1; id=20160831085700Z;"), Some("20160831085700Z".into()));
        assert_eq!(parse_txt("v=STSv1;id=abc"), Some("abc".into()));
        assert_eq!(parse_txt("v=spf1 -all"), None);
        assert_eq!(parse_txt("v=STSv1; id=bad-id!"), None);
        assert_eq!(parse_txt(""), None);
    }

    #[test]
    fn policy_file() {
        let body =
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";
        let p = parse_policy(body, "x1").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("mx1.example.net."));
        assert!(!p.allows("a.b.example.net"));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("evil.test"));
        assert!(parse_policy("version: STSv1\nmode: enforce\nmax_age: 1\n", "x").is_err());
        assert!(parse_policy("mode: enforce\nmx: a\nmax_age: 1\n", "x").is_err());
        assert_eq!(
            parse_policy("version: STSv1\nmode: none\nmax_age: 99999999999\n", "x").unwrap().max_age,
            MAX_AGE_CAP
        );
    }

    #[test]
    fn http_responses() {
        let (status, body) =
            parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\r\n").unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"version: STSv1\r\n");
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n").is_err());
        assert!(parse_http_response(b"SMTP 220 hi\r\n\r\n").is_err());
    }

    #[test]
    fn garbage_in_never_panics() {
        let inputs: [&[u8]; 4] = [b"HTTP/1.1 200 OK\r\n\r\n", b"\xff\xfe\r\n\r\n", b"HTTP/1.", b"version: STSv1\nmode"];
        for input in inputs {
            for cut in 0..=input.len() {
                let _ = parse_http_response(&input[..cut]);
                let text = String::from_utf8_lossy(&input[..cut]);
                let _ = parse_policy(&text, "x");
                let _ = parse_txt(&text);
            }
        }
    }
}
