//! What a received message needs before its copies are made: the spool that holds the
//! content while it arrives, the trace headers prepended to each copy, and the mapping of
//! store errors to replies. The copies themselves are `courier.rs`'s.
//!
//! The spool keeps up to 1 MiB in memory and moves larger messages to a temporary file
//! under `<data>/state/spool/` (removed when delivery is done), so fifty concurrent 25 MiB
//! messages do not need 1.2 GiB of RAM. It is not fsynced: it is never the acknowledged
//! copy — the 250 goes out only when the store says every Maildir copy is durable.
//! A spool write error (disk full) is remembered, the content is still read to its end
//! (so the dialogue stays in step) and the message then gets 452 4.3.1 (451 4.3.0 for
//! other errors); the partial spool file is removed with the transaction.
//!
//! Each copy gets `Return-Path` (RFC 5321 §4.4, the envelope sender as the client wrote
//! it), `Delivered-To` (the final mailbox, what Postfix local and Dovecot LDA add for loop
//! detection) and `Received` (client name and IP, TLS version and cipher, our message id,
//! the protocol keyword of RFC 3848 such as ESMTPS or LMTP), all CRLF-terminated.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::accounts::Address;
use crate::store::{MessageBody, StoreError};

use super::command::ReversePath;
use super::session::{ClientInfo, Envelope};
use super::status::Status;

/// Content above this size goes to a spool file instead of memory.
pub const SPOOL_MEMORY_LIMIT: usize = 1024 * 1024;

/// A message being received.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    id: String,
    memory: Vec<u8>,
    /// Content up to this size stays in memory.
    memory_limit: usize,
    file: Option<(tokio::io::BufWriter<tokio::fs::File>, TempFile)>,
    len: u64,
    error: Option<std::io::Error>,
}

/// A spool file removed when dropped (after delivery, or when the transaction aborts).
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The complete content, ready for the store; keeps the spool file alive.
#[derive(Debug)]
pub struct SpooledMessage {
    pub body: MessageBody,
    _file: Option<TempFile>,
}

impl Spool {
    /// `dir`: `<data>/state/spool`; `id`: the transaction's message id (file name).
    pub fn new(dir: &Path, id: &str) -> Spool {
        Spool::with_memory_limit(dir, id, SPOOL_MEMORY_LIMIT)
    }

    /// A spool that keeps at most `memory_limit` bytes in memory (IMAP APPEND streams
    /// straight to the file: a MULTIAPPEND of many 1 MiB messages would otherwise hold
    /// them all).
    pub fn with_memory_limit(dir: &Path, id: &str, memory_limit: usize) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            id: id.to_string(),
            memory: Vec::new(),
            memory_limit,
            file: None,
            len: 0,
            error: None,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append content. Errors are kept for [`Spool::finish`]; the caller keeps reading.
    pub async fn write(&mut self, bytes: &[u8]) {
        if self.error.is_some() || bytes.is_empty() {
            return;
        }
        self.len += bytes.len() as u64;
        if self.file.is_none() && self.memory.len() + bytes.len() <= self.memory_limit {
            self.memory.extend_from_slice(bytes);
            return;
        }
        if self.file.is_none()
            && let Err(e) = self.open_file().await
        {
            self.error = Some(e);
            self.memory = Vec::new();
            return;
        }
        if let Some((w, _)) = self.file.as_mut()
            && let Err(e) = w.write_all(bytes).await
        {
            self.error = Some(e);
        }
    }

    async fn open_file(&mut self) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let suffix: u32 = rand::random();
        let path = self.dir.join(format!("{}.{suffix:08x}.spool", self.id));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        let guard = TempFile(path);
        let mut w = tokio::io::BufWriter::with_capacity(64 * 1024, file);
        w.write_all(&self.memory).await?;
        self.memory = Vec::new();
        self.file = Some((w, guard));
        Ok(())
    }

    /// The content as a store body (memory or file), or the first write error.
    pub async fn finish(self) -> std::io::Result<SpooledMessage> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.file {
            None => Ok(SpooledMessage { body: MessageBody::Memory(bytes::Bytes::from(self.memory)), _file: None }),
            Some((mut w, guard)) => {
                w.flush().await?;
                Ok(SpooledMessage {
                    body: MessageBody::File { path: guard.0.clone(), len: self.len },
                    _file: Some(guard),
                })
            }
        }
    }
}

/// What `Received:` needs besides the envelope.
#[derive(Debug, Clone)]
pub struct TraceInfo<'a> {
    pub hostname: &'a str,
    pub client: &'a ClientInfo,
    /// RFC 3848 keyword: SMTP, ESMTP, ESMTPS, UTF8SMTPS, LMTP, ...
    pub protocol: String,
    /// RFC 5322 date, e.g. `Fri, 27 Nov 2026 00:00:00 +0000`.
    pub date: String,
}

/// The RFC 3848 / RFC 6531 `with` keyword: LMTP, SMTP (HELO), ESMTP or UTF8SMTP, then
/// `S` for TLS and `A` for an authenticated client (ESMTPSA, UTF8SMTPS, LMTPS...).
pub fn protocol_keyword(lmtp: bool, esmtp: bool, smtputf8: bool, tls: bool, auth: bool) -> String {
    let base = match (lmtp, esmtp, smtputf8) {
        (true, _, _) => "LMTP",
        (false, false, _) => return "SMTP".into(),
        (false, true, true) => "UTF8SMTP",
        (false, true, false) => "ESMTP",
    };
    let mut k = base.to_string();
    if tls {
        k.push('S');
    }
    if auth {
        k.push('A');
    }
    k
}

/// The trace headers for one copy (CRLF-terminated lines, folded under 78 columns).
pub fn header_prefix(env: &Envelope, mailbox: &Address, trace: &TraceInfo<'_>) -> Vec<u8> {
    let return_path = match &env.sender {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(m) => m.raw.clone(),
    };
    let mut out = format!("Return-Path: <{return_path}>\r\nDelivered-To: {mailbox}\r\n");
    out.push_str(&received_header(env, Some(mailbox), trace));
    out.into_bytes()
}

/// One `Received:` field (RFC 5321 §4.4). `for` names the recipient only when the copy
/// has exactly one (a queued copy for several would disclose the others, RFC 5321 §7.2).
pub fn received_header(env: &Envelope, for_rcpt: Option<&Address>, trace: &TraceInfo<'_>) -> String {
    let helo = trace.client.helo.as_deref().unwrap_or("unknown");
    let ip = match trace.client.ip {
        std::net::IpAddr::V4(v4) => format!("[{v4}]"),
        std::net::IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    let mut received = format!(
        "Received: from {} ({ip})\r\n\tby {} (mailroom) with {} id {}",
        sanitize(helo),
        trace.hostname,
        trace.protocol,
        env.id
    );
    if let Some(tls) = &trace.client.tls {
        received.push_str(&format!("\r\n\t(using {} with cipher {})", tls.version, tls.cipher));
    }
    match for_rcpt {
        Some(r) => received.push_str(&format!("\r\n\tfor <{r}>; {}\r\n", trace.date)),
        None => received.push_str(&format!(";\r\n\t{}\r\n", trace.date)),
    }
    received
}

/// The HELO name is client-chosen: keep it printable and free of comment syntax.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '(' | ')' | '\\' | ';' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// The reply for a store failure: temporary conditions (I/O, disk full) ask the sender to
/// retry, a full disk as `452 4.3.1`; anything else about the mailbox itself is permanent.
pub fn store_error_reply(e: &StoreError) -> Status {
    if e.is_disk_full() {
        super::session::disk_full_reply()
    } else if e.is_temporary() {
        Status::new(451, (4, 3, 0), "Error: local delivery failed, try again later")
    } else {
        Status::new(550, (5, 2, 0), "Error: mailbox unavailable")
    }
}

/// Every remote address of the message, each once, in RCPT order: one queue item carries
/// them all.
pub fn remote_recipients(env: &Envelope) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::new();
    for f in env.recipients.iter().flat_map(|r| &r.forwards) {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// The whole content as one buffer, for the steps that need it (checks, signing); the
/// caller holds a [`crate::net::MemoryPermit`] for its size while it lives.
pub async fn body_bytes(body: &MessageBody) -> std::io::Result<bytes::Bytes> {
    match body {
        MessageBody::Memory(b) => Ok(b.clone()),
        MessageBody::File { path, len } => {
            let mut bytes = tokio::fs::read(path).await?;
            bytes.truncate(usize::try_from(*len).unwrap_or(usize::MAX));
            Ok(bytes.into())
        }
    }
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
