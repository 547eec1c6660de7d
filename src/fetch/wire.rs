//! The connection to the remote server: TCP, TLS (implicit or after STARTTLS/STLS, the
//! certificate verified against the web PKI plus `MAILROOM_FETCH_CA_FILE`), and the
//! bounded line and byte reads both protocols need. Every read and write has a timeout,
//! so a server that stops answering fails the fetch instead of holding it forever.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::FetchError;

/// How long one network step may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest protocol line read (a UIDL or FETCH line; message lines are not lines here).
pub const MAX_LINE: usize = 64 * 1024;

/// The client TLS configuration: web PKI roots and the operator's private ones.
pub fn connector(extra_roots: &[CertificateDer<'static>]) -> Result<TlsConnector, rustls::Error> {
    Ok(TlsConnector::from(Arc::new(crate::tls::verified_client_config(extra_roots)?)))
}

/// A line-buffered stream, plain (before STARTTLS) or TLS.
pub struct Wire<S> {
    stream: BufReader<S>,
    /// The server's address, for our `Received:` line.
    pub peer: std::net::IpAddr,
}

pub type TlsWire = Wire<TlsStream<TcpStream>>;

/// A `timeout` around one network step.
pub async fn timed<T>(what: &'static str, f: impl Future<Output = std::io::Result<T>>) -> Result<T, FetchError> {
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FetchError::Io(format!("{what}: {e}"))),
        Err(_) => Err(FetchError::Io(format!("{what}: no answer in {}s", IO_TIMEOUT.as_secs()))),
    }
}

/// TCP to `host:port`.
pub async fn connect(host: &str, port: u16) -> Result<Wire<TcpStream>, FetchError> {
    let tcp = timed("connect", TcpStream::connect((host, port))).await?;
    let peer = tcp.peer_addr().map(|a| a.ip()).map_err(|e| FetchError::Io(e.to_string()))?;
    Ok(Wire { stream: BufReader::new(tcp), peer })
}

impl Wire<TcpStream> {
    /// The TLS handshake, verifying the certificate for `host`. Bytes the server sent
    /// before it would be a protocol violation (and an injection attempt): refused.
    pub async fn start_tls(self, tls: &TlsConnector, host: &str) -> Result<TlsWire, FetchError> {
        if !self.stream.buffer().is_empty() {
            return Err(FetchError::Protocol("the server sent data before the TLS handshake".into()));
        }
        let name = ServerName::try_from(host.to_string()).map_err(|e| FetchError::Tls(format!("{host}: {e}")))?;
        let peer = self.peer;
        let tcp = self.stream.into_inner();
        let stream = match tokio::time::timeout(IO_TIMEOUT, tls.connect(name, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(FetchError::Tls(e.to_string())),
            Err(_) => return Err(FetchError::Tls("the handshake timed out".into())),
        };
        Ok(Wire { stream: BufReader::new(stream), peer })
    }
}

impl TlsWire {
    /// The TLS version and cipher suite, for our `Received:` line.
    pub fn tls_info(&self) -> (String, String) {
        let conn = self.stream.get_ref().get_ref().1;
        let version = conn.protocol_version().and_then(|v| v.as_str()).unwrap_or("TLS").replace("TLSv1_", "TLSv1.");
        let cipher = conn.negotiated_cipher_suite().and_then(|c| c.suite().as_str()).unwrap_or("unknown").to_string();
        (version, cipher)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// One line without its CRLF; longer than [`MAX_LINE`] or the connection closed is
    /// an error.
    pub async fn line(&mut self) -> Result<Vec<u8>, FetchError> {
        let mut line = Vec::new();
        let n = timed("read", (&mut self.stream).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)).await?;
        if n == 0 {
            return Err(FetchError::Io("the server closed the connection".into()));
        }
        if !line.ends_with(b"\n") {
            return Err(FetchError::Protocol("a line over 64 KiB".into()));
        }
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
        Ok(line)
    }

    /// One raw line with its line end, for message content; `max` bounds it.
    pub async fn raw_line(&mut self, line: &mut Vec<u8>, max: usize) -> Result<usize, FetchError> {
        line.clear();
        timed("read", (&mut self.stream).take(max as u64).read_until(b'\n', line)).await
    }

    /// Exactly `len` bytes into `out`, in chunks.
    pub async fn copy_exact(&mut self, len: u64, out: &mut (impl std::io::Write + ?Sized)) -> Result<(), FetchError> {
        let mut left = len;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = timed("read", self.stream.read(&mut buf[..want])).await?;
            if n == 0 {
                return Err(FetchError::Io("the server closed the connection inside a message".into()));
            }
            out.write_all(&buf[..n]).map_err(|e| FetchError::Local(format!("temporary file: {e}")))?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Send a command (CRLF added).
    pub async fn send(&mut self, command: &[u8]) -> Result<(), FetchError> {
        let mut bytes = Vec::with_capacity(command.len() + 2);
        bytes.extend_from_slice(command);
        bytes.extend_from_slice(b"\r\n");
        timed("write", self.stream.get_mut().write_all(&bytes)).await?;
        timed("write", self.stream.get_mut().flush()).await
    }
}
