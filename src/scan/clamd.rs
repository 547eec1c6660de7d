//! ClamAV through clamd's INSTREAM command, over TCP (`host:port`) or a Unix socket
//! (an absolute path), as `MAILROOM_CLAMD` says.
//!
//! Protocol (clamd(8)): `zINSTREAM\0`, then chunks each preceded by its length as a
//! 4-byte big-endian integer, then a zero-length chunk; the one reply is
//! `stream: OK\0`, `stream: <signature> FOUND\0` or `... ERROR\0` (for example when
//! the stream exceeds clamd's StreamMaxLength). The reply parser is pure.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where clamd listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdTarget {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl ClamdTarget {
    /// Parse `MAILROOM_CLAMD`: an absolute socket path, or `host:port` / `[v6]:port`.
    pub fn parse(value: &str) -> Option<ClamdTarget> {
        let value = value.trim();
        if value.starts_with('/') {
            return Some(ClamdTarget::Unix(PathBuf::from(value)));
        }
        let (host, port) = value.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| ClamdTarget::Tcp { host: host.to_string(), port })
    }
}

/// clamd's verdict on a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdVerdict {
    Clean,
    Infected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    #[error("cannot reach clamd: {0}")]
    Connect(String),
    #[error("clamd I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("clamd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("clamd error: {0}")]
    Clamd(String),
    #[error("unexpected clamd reply: {0:?}")]
    Protocol(String),
}

/// Bytes per INSTREAM chunk (clamd reads up to StreamMaxLength in total).
const CHUNK: usize = 64 * 1024;
/// A reply longer than this is not clamd.
const MAX_REPLY: usize = 4096;

/// Parse clamd's reply to INSTREAM (without I/O; never panics).
pub fn parse_reply(reply: &[u8]) -> Result<ClamdVerdict, ClamdError> {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r']).trim();
    let Some(rest) = text.strip_prefix("stream:") else {
        return Err(if text.ends_with("ERROR") {
            ClamdError::Clamd(text.to_string())
        } else {
            ClamdError::Protocol(text.chars().take(200).collect())
        });
    };
    let rest = rest.trim();
    if rest == "OK" {
        Ok(ClamdVerdict::Clean)
    } else if let Some(name) = rest.strip_suffix(" FOUND") {
        Ok(ClamdVerdict::Infected(name.trim().to_string()))
    } else if rest.ends_with("ERROR") {
        Err(ClamdError::Clamd(rest.to_string()))
    } else {
        Err(ClamdError::Protocol(rest.chars().take(200).collect()))
    }
}

/// Scan `msg`, giving up after `timeout` in total.
pub async fn scan(
    target: &ClamdTarget,
    resolver: &TokioResolver,
    msg: &[u8],
    timeout: Duration,
) -> Result<ClamdVerdict, ClamdError> {
    match tokio::time::timeout(timeout, scan_inner(target, resolver, msg)).await {
        Ok(r) => r,
        Err(_) => Err(ClamdError::Timeout(timeout)),
    }
}

async fn scan_inner(target: &ClamdTarget, resolver: &TokioResolver, msg: &[u8]) -> Result<ClamdVerdict, ClamdError> {
    match target {
        ClamdTarget::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| ClamdError::Connect(format!("{}: {e}", path.display())))?;
            instream(stream, msg).await
        }
        ClamdTarget::Tcp { host, port } => {
            let ips = resolve(resolver, host).await.map_err(ClamdError::Connect)?;
            let mut last = String::from("no address");
            for ip in ips {
                match tokio::net::TcpStream::connect((ip, *port)).await {
                    Ok(stream) => return instream(stream, msg).await,
                    Err(e) => last = format!("{ip}:{port}: {e}"),
                }
            }
            Err(ClamdError::Connect(last))
        }
    }
}

/// Addresses of `host` (an IP literal, or a name looked up through our resolver:
/// no getaddrinfo in a static binary).
pub(crate) async fn resolve(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let fqdn = if host.ends_with('.') { host.to_string() } else { format!("{host}.") };
    let ips: Vec<IpAddr> =
        resolver.lookup_ip(fqdn.as_str()).await.map_err(|e| format!("{host}: {e}"))?.iter().collect();
    if ips.is_empty() { Err(format!("{host}: no address")) } else { Ok(ips) }
}

async fn instream<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, msg: &[u8]) -> Result<ClamdVerdict, ClamdError> {
    stream.write_all(b"zINSTREAM\0").await?;
    for chunk in msg.chunks(CHUNK) {
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(chunk).await?;
    }
    stream.write_all(&0u32.to_be_bytes()).await?;
    stream.flush().await?;
    // clamd may answer early (size limit) and close; read until NUL or EOF.
    let mut reply = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.contains(&0) || reply.len() > MAX_REPLY {
            break;
        }
    }
    parse_reply(&reply)
}

#[cfg(test)]
#[path = "clamd_tests.rs"]
pub(crate) mod tests;
