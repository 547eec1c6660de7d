//! One client connection to a remote SMTP server: TLS from the first byte (a smarthost's
//! port 465) or STARTTLS, greeting, EHLO, AUTH (never without TLS), mail transactions,
//! RSET, QUIT — the I/O around the pure [`reply`](super::reply) parser and
//! [`Transaction`](super::transaction::Transaction) state machine.
//!
//! Every read and write has a timeout (RFC 5321 §4.5.3.2 suggests minutes; a stuck
//! server must not pin a queue worker forever). After `220` to STARTTLS any bytes the
//! server already sent are refused: they were sent in clear and could be an injection
//! (the CVE-2011-0411 class of bugs).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::reply::{Capabilities, ReplyError, parse_reply};
use super::transaction::{MailParams, Step, Transaction, dot_stuff};
use crate::accounts::Address;
use crate::queue::RecipientOutcome;
use crate::smtp::status::{Code, Status};
use crate::smtp::stream::Stream;

/// Waiting for a reply to a command (RFC 5321 §4.5.3.2: 5 minutes for MAIL/RCPT).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Waiting for the reply after the final dot (RFC 5321 §4.5.3.2.6: 10 minutes).
const DATA_END_TIMEOUT: Duration = Duration::from_secs(600);
/// Writing a block of data.
const WRITE_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("connection closed by the server")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(#[from] ReplyError),
    /// Says itself what went wrong with TLS (`TLS handshake failed: …`).
    #[error("{0}")]
    Tls(String),
    #[error("server said: {0}")]
    Rejected(Status),
    /// The TLS handshake or the STARTTLS the policy required failed, and why as TLS
    /// reports (RFC 8460) classify it.
    #[error("{1}")]
    TlsFailed(super::tls_outcome::ResultType, String),
}

impl SessionError {
    /// As a temporary per-recipient diagnostic (`4.4.x` network problems, RFC 3463).
    pub fn diagnostic(&self) -> Status {
        match self {
            SessionError::Rejected(r) => r.clone(),
            SessionError::Connect(..) => Status::local((4, 4, 1), self.to_string()),
            SessionError::Tls(_) | SessionError::TlsFailed(..) => Status::local((4, 7, 5), self.to_string()),
            _ => Status::local((4, 4, 2), self.to_string()),
        }
    }

    /// [`diagnostic`](Self::diagnostic) saying where it happened: `relay smtps://r:465:
    /// TLS handshake failed: …`. A server's refusal keeps its code; the context leads
    /// its text.
    pub fn diagnostic_at(&self, context: &str) -> Status {
        in_context(self.diagnostic(), context)
    }
}

/// `status` with `context: ` leading its text (its code and enhanced code kept).
pub fn in_context(mut status: Status, context: &str) -> Status {
    match status.text.first_mut() {
        Some(first) => *first = format!("{context}: {first}"),
        None => status.text.push(context.to_string()),
    }
    status
}

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsState {
    None,
    /// Encrypted, certificate not checked (opportunistic STARTTLS, RFC 7435).
    Unverified,
    /// Encrypted with a certificate valid for the name we asked for.
    Verified,
}

/// An open SMTP client connection: one session with a remote server, reused by the
/// transport's pool for several messages.
pub struct ClientSession {
    stream: Option<Stream>,
    buf: Vec<u8>,
    pub peer: SocketAddr,
    /// The host name we connected to (MX name or relay host).
    pub host: String,
    pub caps: Capabilities,
    pub tls: TlsState,
}

impl ClientSession {
    /// Connect and read the greeting. A non-2xx greeting is `Rejected`.
    pub async fn connect(addr: SocketAddr, host: &str, timeout: Duration) -> Result<ClientSession, SessionError> {
        ClientSession::connect_from(addr, None, host, timeout).await
    }

    /// [`connect`](Self::connect) from a pinned source address (`MAILROOM_OUTBOUND_IPV4/6`).
    pub async fn connect_from(
        addr: SocketAddr,
        source: Option<IpAddr>,
        host: &str,
        timeout: Duration,
    ) -> Result<ClientSession, SessionError> {
        let tcp = match tokio::time::timeout(timeout, super::family::connect_from(addr, source)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SessionError::Connect(addr, e)),
            Err(_) => return Err(SessionError::Timeout("the TCP connection")),
        };
        let _ = tcp.set_nodelay(true);
        ClientSession::greeted(Stream::Plain(tcp), addr, host, TlsState::None).await
    }

    /// Connect with TLS from the first byte (RFC 8314 implicit TLS, port 465) for
    /// `name`, then read the greeting. `verified` says whether `connector` checks the
    /// certificate (as for [`starttls`](Self::starttls)).
    pub async fn connect_tls(
        addr: SocketAddr,
        source: Option<IpAddr>,
        host: &str,
        timeout: Duration,
        connector: &TlsConnector,
        name: ServerName<'static>,
        verified: bool,
    ) -> Result<ClientSession, SessionError> {
        let tcp = match tokio::time::timeout(timeout, super::family::connect_from(addr, source)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SessionError::Connect(addr, e)),
            Err(_) => return Err(SessionError::Timeout("the TCP connection")),
        };
        let _ = tcp.set_nodelay(true);
        let tls = match tokio::time::timeout(COMMAND_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let kind = super::tls_outcome::ResultType::of_handshake(&e);
                return Err(SessionError::TlsFailed(kind, format!("TLS handshake failed: {e}")));
            }
            Err(_) => return Err(SessionError::Timeout("the TLS handshake")),
        };
        let state = if verified { TlsState::Verified } else { TlsState::Unverified };
        ClientSession::greeted(Stream::Tls(Box::new(tls.into())), addr, host, state).await
    }

    async fn greeted(
        stream: Stream,
        addr: SocketAddr,
        host: &str,
        tls: TlsState,
    ) -> Result<ClientSession, SessionError> {
        let mut conn = ClientSession {
            stream: Some(stream),
            buf: Vec::with_capacity(1024),
            peer: addr,
            host: host.to_string(),
            caps: Capabilities::default(),
            tls,
        };
        let greeting = conn.read_reply(COMMAND_TIMEOUT, "the greeting").await?;
        if !greeting.is_completion() {
            return Err(SessionError::Rejected(greeting));
        }
        Ok(conn)
    }

    fn stream(&mut self) -> Result<&mut Stream, SessionError> {
        self.stream.as_mut().ok_or(SessionError::Closed)
    }

    /// Read one complete reply.
    pub async fn read_reply(&mut self, timeout: Duration, what: &'static str) -> Result<Status, SessionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let stream = self.stream()?;
            let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => return Err(SessionError::Timeout(what)),
            };
            if n == 0 {
                return Err(SessionError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let stream = self.stream()?;
        match tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        {
            Ok(r) => Ok(r?),
            Err(_) => Err(SessionError::Timeout("a write")),
        }
    }

    /// Send one command line and read its reply.
    pub async fn command(&mut self, line: &str) -> Result<Status, SessionError> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(COMMAND_TIMEOUT, "a command reply").await
    }

    /// EHLO (falling back to HELO for an ancient server); records the capabilities.
    pub async fn ehlo(&mut self, hostname: &str) -> Result<(), SessionError> {
        let reply = self.command(&format!("EHLO {hostname}")).await?;
        if reply.is_completion() {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.is_permanent() {
            let helo = self.command(&format!("HELO {hostname}")).await?;
            if helo.is_completion() {
                self.caps = Capabilities::default();
                return Ok(());
            }
            return Err(SessionError::Rejected(helo));
        }
        Err(SessionError::Rejected(reply))
    }

    /// STARTTLS (RFC 3207) then EHLO again, as the RFC requires.
    pub async fn starttls(
        &mut self,
        connector: &TlsConnector,
        name: ServerName<'static>,
        verified: bool,
        hostname: &str,
    ) -> Result<(), SessionError> {
        let reply = self.command("STARTTLS").await?;
        if reply.code != Code::Reply(220) {
            return Err(SessionError::Rejected(reply));
        }
        if !self.buf.is_empty() {
            return Err(SessionError::Tls("the server sent data before the TLS handshake (injection?)".into()));
        }
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(SessionError::Tls("STARTTLS on a connection that is already TLS".into()));
        };
        let tls = match tokio::time::timeout(COMMAND_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let kind = super::tls_outcome::ResultType::of_handshake(&e);
                return Err(SessionError::TlsFailed(kind, format!("TLS handshake failed: {e}")));
            }
            Err(_) => return Err(SessionError::Timeout("the TLS handshake")),
        };
        self.stream = Some(Stream::Tls(Box::new(tls.into())));
        self.tls = if verified { TlsState::Verified } else { TlsState::Unverified };
        self.ehlo(hostname).await
    }

    /// AUTH PLAIN (RFC 4616) if offered, else AUTH LOGIN. Refused on a connection
    /// without TLS whatever the caller decided: credentials are never sent in clear.
    pub async fn auth(&mut self, username: &str, password: &str) -> Result<(), SessionError> {
        if self.tls == TlsState::None {
            return Err(SessionError::Tls("refusing to send credentials (AUTH) on a connection without TLS".into()));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let reply = if self.caps.auth_plain || !self.caps.auth_login {
            let token = b64.encode(format!("\0{username}\0{password}"));
            self.command(&format!("AUTH PLAIN {token}")).await?
        } else {
            let r = self.command("AUTH LOGIN").await?;
            if r.code != Code::Reply(334) {
                return Err(SessionError::Rejected(r));
            }
            let r = self.command(&b64.encode(username)).await?;
            if r.code != Code::Reply(334) {
                return Err(SessionError::Rejected(r));
            }
            self.command(&b64.encode(password)).await?
        };
        if reply.is_completion() { Ok(()) } else { Err(SessionError::Rejected(reply)) }
    }

    /// Run one mail transaction. Returns per-recipient outcomes and whether the
    /// connection can carry another message (every reply was read, no error).
    pub async fn send_mail(
        &mut self,
        sender: Option<&Address>,
        recipients: &[Address],
        message: &[u8],
        require_tls: bool,
    ) -> (Vec<RecipientOutcome>, bool) {
        // RFC 8689: the transport only picks such a connection for a REQUIRETLS
        // message; this is the last line of that rule, never to be crossed.
        if require_tls && (self.tls != TlsState::Verified || !self.caps.require_tls) {
            let why =
                super::require_tls::refused(format!("{} is not a verified TLS hop that takes REQUIRETLS", self.host));
            return (vec![RecipientOutcome::Permanent(why); recipients.len()], true);
        }
        // RFC 1870 §6: a message over the server's fixed limit fails for good.
        if let Some(limit) = self.caps.size
            && limit > 0
            && message.len() as u64 > limit
        {
            let why = Status::new(
                552,
                (5, 3, 4),
                format!("message size {} exceeds the limit {limit} of {}", message.len(), self.host),
            );
            return (vec![RecipientOutcome::Permanent(why); recipients.len()], true);
        }
        let eight_bit = !message.is_ascii();
        let utf8 =
            sender.is_some_and(|s| !s.to_string().is_ascii()) || recipients.iter().any(|r| !r.to_string().is_ascii());
        if utf8 && !self.caps.smtputf8 {
            let why = Status::new(553, (5, 6, 7), "the receiving server does not support SMTPUTF8 addresses");
            return (vec![RecipientOutcome::Permanent(why); recipients.len()], true);
        }
        let params = MailParams {
            size: self.caps.size.map(|_| message.len()),
            eight_bit: eight_bit && self.caps.eight_bit_mime,
            smtputf8: utf8,
            require_tls,
        };
        let mut tx = Transaction::new(sender, recipients, params, self.caps.pipelining);
        let first = tx.start();
        match self.drive(&mut tx, first, message).await {
            Ok(()) => {
                let reusable = tx.is_settled();
                (tx.into_outcomes(), reusable)
            }
            Err(e) => {
                tx.fail_remaining(&e.diagnostic());
                (tx.into_outcomes(), false)
            }
        }
    }

    async fn drive(&mut self, tx: &mut Transaction, first: String, message: &[u8]) -> Result<(), SessionError> {
        self.write(first.as_bytes()).await?;
        let mut timeout = COMMAND_TIMEOUT;
        loop {
            let reply = self.read_reply(timeout, "a transaction reply").await?;
            timeout = COMMAND_TIMEOUT;
            match tx.on_reply(&reply) {
                Step::Done => return Ok(()),
                Step::Wait => {}
                Step::Send(lines) => self.write(lines.as_bytes()).await?,
                Step::SendBody => {
                    self.write(&dot_stuff(message)).await?;
                    timeout = DATA_END_TIMEOUT;
                }
                Step::SendEmptyBody => self.write(b".\r\n").await?,
            }
        }
    }

    /// Reset for the next message on this connection; false if it is no longer usable.
    pub async fn rset(&mut self) -> bool {
        matches!(self.command("RSET").await, Ok(r) if r.is_completion())
    }

    /// Say goodbye (best effort, bounded).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command("QUIT")).await;
        if let Some(mut s) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.shutdown()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A server that sends `greeting`, then for each expected command prefix answers the
    /// given raw bytes. Returns its address.
    async fn scripted(greeting: &'static str, script: Vec<(&'static str, &'static str)>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (read, mut write) = tcp.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(greeting.as_bytes()).await.unwrap();
            for (expect, answer) in script {
                let Ok(Some(line)) = lines.next_line().await else { return };
                assert!(line.starts_with(expect), "client sent {line:?}, expected {expect:?}");
                write.write_all(answer.as_bytes()).await.unwrap();
            }
            let _ = lines.next_line().await;
        });
        addr
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn refusing_greeting_is_rejected() {
        let addr = scripted("554 5.7.1 go away\r\n", vec![]).await;
        let err = ClientSession::connect(addr, "mx.test", T).await.err().unwrap();
        assert!(matches!(err, SessionError::Rejected(ref r) if r.code == Code::Reply(554)), "{err}");
    }

    #[tokio::test]
    async fn ehlo_refused_falls_back_to_helo() {
        let addr = scripted(
            "220 old.test\r\n",
            vec![("EHLO me.test", "500 5.5.1 what?\r\n"), ("HELO me.test", "250 old.test\r\n")],
        )
        .await;
        let mut conn = ClientSession::connect(addr, "old.test", T).await.unwrap();
        conn.ehlo("me.test").await.unwrap();
        assert_eq!(conn.caps, Capabilities::default());
    }

    #[tokio::test]
    async fn data_sent_in_clear_before_tls_is_refused() {
        // The 220 to STARTTLS arrives with an extra reply glued on: an injection.
        let addr = scripted(
            "220 mx.test\r\n",
            vec![
                ("EHLO me.test", "250-mx.test\r\n250 STARTTLS\r\n"),
                ("STARTTLS", "220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n"),
            ],
        )
        .await;
        let mut conn = ClientSession::connect(addr, "mx.test", T).await.unwrap();
        conn.ehlo("me.test").await.unwrap();
        assert!(conn.caps.starttls);
        let connectors = super::super::tls::Connectors::new(&[]).unwrap();
        let name = super::super::tls::server_name("mx.test").unwrap();
        // Both replies may arrive in one read; if not, the handshake fails instead.
        let err = conn.starttls(&connectors.unverified, name, false, "me.test").await.unwrap_err();
        assert!(matches!(err, SessionError::Tls(_)), "{err}");
    }

    #[tokio::test]
    async fn auth_is_refused_on_a_connection_without_tls() {
        // The server expects RSET after EHLO: had AUTH been sent, it would hang up instead.
        let addr = scripted(
            "220 relay.test\r\n",
            vec![("EHLO me.test", "250-relay.test\r\n250 AUTH PLAIN\r\n"), ("RSET", "250 ok\r\n")],
        )
        .await;
        let mut conn = ClientSession::connect(addr, "relay.test", T).await.unwrap();
        conn.ehlo("me.test").await.unwrap();
        let err = conn.auth("user", "secret").await.unwrap_err();
        assert!(matches!(err, SessionError::Tls(ref m) if m.contains("without TLS")), "{err}");
        let status = err.diagnostic_at("relay smtp+insecure://relay.test:25");
        assert_eq!(
            status.one_line(),
            "4.7.5 relay smtp+insecure://relay.test:25: refusing to send credentials (AUTH) on a connection without TLS"
        );
        assert!(conn.rset().await, "the server saw something other than RSET");
    }

    #[tokio::test]
    async fn message_over_the_advertised_size_fails_without_sending() {
        let addr = scripted("220 mx.test\r\n", vec![("EHLO me.test", "250-mx.test\r\n250 SIZE 10\r\n")]).await;
        let mut conn = ClientSession::connect(addr, "mx.test", T).await.unwrap();
        conn.ehlo("me.test").await.unwrap();
        let rcpt = Address::parse("x@mx.test").unwrap();
        let (outcomes, reusable) = conn.send_mail(None, &[rcpt], b"Subject: too big\r\n\r\n", false).await;
        assert!(reusable);
        assert!(
            matches!(&outcomes[0], RecipientOutcome::Permanent(t) if t.one_line().starts_with("552 5.3.4")),
            "{outcomes:?}"
        );
    }

    #[tokio::test]
    async fn server_hanging_up_mid_transaction_is_temporary() {
        let addr =
            scripted("220 mx.test\r\n", vec![("EHLO me.test", "250 mx.test\r\n"), ("MAIL FROM:<>", "250 ok\r\n")])
                .await;
        let mut conn = ClientSession::connect(addr, "mx.test", T).await.unwrap();
        conn.ehlo("me.test").await.unwrap();
        let rcpt = Address::parse("x@mx.test").unwrap();
        // The script ends after MAIL: the server reads RCPT and closes.
        let (outcomes, reusable) = conn.send_mail(None, &[rcpt], b"Subject: hi\r\n\r\nx\r\n", false).await;
        assert!(!reusable);
        assert!(
            matches!(&outcomes[0], RecipientOutcome::Temporary(t) if t.one_line().starts_with("4.4.2")),
            "{outcomes:?}"
        );
    }
}
