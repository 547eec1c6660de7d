//! The POP3 side (RFC 1939, STLS from RFC 2595, UIDL): log in over TLS, list the
//! maildrop by UIDL, download one message at a time into a file, delete. Deletions are
//! committed by QUIT only, so a crash leaves the maildrop as it was.

use std::collections::HashMap;
use std::io::Write;

use tokio_rustls::TlsConnector;

use super::entry::{FetchSource, TlsStart};
use super::wire::{self, TlsWire};
use super::{FetchError, Remote};

/// A logged-in POP3 session in the TRANSACTION state.
pub struct Pop3Session {
    wire: TlsWire,
}

fn ok_or(line: &[u8], on_err: impl FnOnce(String) -> FetchError) -> Result<(), FetchError> {
    if line.starts_with(b"+OK") {
        Ok(())
    } else {
        Err(on_err(String::from_utf8_lossy(line).chars().take(200).collect()))
    }
}

impl Pop3Session {
    pub fn peer(&self) -> std::net::IpAddr {
        self.wire.peer
    }

    pub fn tls_info(&self) -> (String, String) {
        self.wire.tls_info()
    }

    /// Connect, start TLS (implicitly or with STLS), log in with USER/PASS.
    pub async fn login(source: &FetchSource, password: &str, tls: &TlsConnector) -> Result<Pop3Session, FetchError> {
        let mut plain = wire::connect(&source.host, source.port).await?;
        let mut wire = match source.tls {
            TlsStart::Implicit => plain.start_tls(tls, &source.host).await?,
            TlsStart::StartTls => {
                ok_or(&plain.line().await?, FetchError::Protocol)?;
                plain.send(b"STLS").await?;
                ok_or(&plain.line().await?, |l| FetchError::Tls(format!("the server refused STLS: {l}")))?;
                let mut wire = plain.start_tls(tls, &source.host).await?;
                // RFC 2595: no new greeting after STLS; CAPA (RFC 2449) is the one command
                // the AUTHORIZATION state answers before a login, and its answer proves the
                // TLS session works.
                wire.send(b"CAPA").await?;
                ok_or(&wire.line().await?, FetchError::Protocol)?;
                while wire.line().await? != b"." {}
                wire
            }
        };
        if source.tls == TlsStart::Implicit {
            ok_or(&wire.line().await?, FetchError::Protocol)?;
        }
        if source.user.contains(['\r', '\n']) || password.contains(['\r', '\n']) {
            return Err(FetchError::Login("the user or password holds a line break".into()));
        }
        wire.send(format!("USER {}", source.user).as_bytes()).await?;
        ok_or(&wire.line().await?, FetchError::Login)?;
        wire.send(format!("PASS {password}").as_bytes()).await?;
        ok_or(&wire.line().await?, FetchError::Login)?;
        Ok(Pop3Session { wire })
    }

    /// The lines of a multi-line answer (RFC 1939 3: dot-stuffed, ends with `.`).
    async fn multiline(&mut self, command: &[u8]) -> Result<Vec<Vec<u8>>, FetchError> {
        self.wire.send(command).await?;
        ok_or(&self.wire.line().await?, FetchError::Protocol)?;
        let mut lines = Vec::new();
        loop {
            let line = self.wire.line().await?;
            if line == b"." {
                return Ok(lines);
            }
            lines.push(line.strip_prefix(b".").map(<[u8]>::to_vec).unwrap_or(line));
            if lines.len() > 1_000_000 {
                return Err(FetchError::Protocol("over a million lines in a listing".into()));
            }
        }
    }

    /// Every message as (number, UIDL, size).
    pub async fn list(&mut self) -> Result<Vec<Remote>, FetchError> {
        let mut sizes = HashMap::new();
        for line in self.multiline(b"LIST").await? {
            let text = String::from_utf8_lossy(&line);
            let mut w = text.split_whitespace();
            if let (Some(n), Some(size)) = (w.next().and_then(|n| n.parse::<u32>().ok()), w.next()) {
                sizes.insert(n, size.parse::<u64>().unwrap_or(0));
            }
        }
        let mut out = Vec::new();
        for line in self.multiline(b"UIDL").await? {
            let text = String::from_utf8_lossy(&line);
            let mut w = text.split_whitespace();
            let (Some(n), Some(uidl)) = (w.next().and_then(|n| n.parse::<u32>().ok()), w.next()) else {
                return Err(FetchError::Protocol(format!("a UIDL line that is not `n uidl`: {text}")));
            };
            out.push(Remote { number: n, id: uidl.to_string(), size: sizes.get(&n).copied().unwrap_or(0) });
        }
        Ok(out)
    }

    /// RETR into `out`, un-dot-stuffed, CRLF line ends; more than `max` bytes is an error.
    pub async fn retrieve(&mut self, number: u32, max: u64, out: &mut impl Write) -> Result<u64, FetchError> {
        self.wire.send(format!("RETR {number}").as_bytes()).await?;
        ok_or(&self.wire.line().await?, FetchError::Protocol)?;
        let mut written = 0u64;
        let mut line = Vec::new();
        loop {
            let n = self.wire.raw_line(&mut line, wire::MAX_LINE * 16).await?;
            if n == 0 {
                return Err(FetchError::Io("the server closed the connection inside a message".into()));
            }
            let content = line.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l));
            let Some(content) = content else {
                // A line longer than the read bound: pass it through in pieces.
                out.write_all(&line).map_err(|e| FetchError::Local(format!("temporary file: {e}")))?;
                written += line.len() as u64;
                if written > max {
                    return Err(FetchError::TooBig { size: written, max });
                }
                continue;
            };
            if content == b"." {
                return Ok(written);
            }
            let content = content.strip_prefix(b".").unwrap_or(content);
            written += content.len() as u64 + 2;
            if written > max {
                return Err(FetchError::TooBig { size: written, max });
            }
            out.write_all(content)
                .and_then(|_| out.write_all(b"\r\n"))
                .map_err(|e| FetchError::Local(format!("temporary file: {e}")))?;
        }
    }

    pub async fn delete(&mut self, number: u32) -> Result<(), FetchError> {
        self.wire.send(format!("DELE {number}").as_bytes()).await?;
        ok_or(&self.wire.line().await?, FetchError::Protocol)
    }

    /// QUIT: the server commits the deletions (the UPDATE state).
    pub async fn quit(mut self) -> Result<(), FetchError> {
        self.wire.send(b"QUIT").await?;
        ok_or(&self.wire.line().await?, FetchError::Protocol)
    }
}
