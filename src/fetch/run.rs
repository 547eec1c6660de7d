//! The loop of each source: every `interval` (longer after failures, doubling up to an
//! hour), one run — take the source's lease (a replica sharing the store that holds it is
//! running the source: this run is skipped), recover the message a crash left in flight,
//! log in, list, and for each new message in order:
//!
//! 1. record it as `pending`, with the local folder's UIDNEXT (durable in the store);
//! 2. download it into a file under `state/spool/` (one message on disk at a time,
//!    never whole in memory; bounded by `MAILROOM_MESSAGE_SIZE_LIMIT`);
//! 3. deliver it through the local courier (Sieve, quota) with our `Received:` line
//!    on top of the original header, untouched (the remote's Authentication-Results
//!    included): durable when it returns;
//! 4. record it as done (durable), clearing `pending`;
//! 5. only then, without `keep`, delete it on the server.
//!
//! A crash before 3 finishes leaves `pending` with no copy: the next run fetches it
//! again. A crash between 3 and 4 leaves `pending` and a copy: the next run finds the
//! copy by the id in our `Received:` line among the folder's messages from the recorded
//! UIDNEXT on, and records it instead of delivering it twice. (A copy Sieve filed
//! elsewhere is not looked for: that one message may then arrive twice; none is lost.)
//! A crash after 4 leaves the message on the server: the next run deletes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use super::entry::{FetchSource, RemoteProtocol};
use super::imap::ImapSession;
use super::pop3::Pop3Session;
use super::state;
use super::{FetchError, FetchStatus, Remote};
use crate::accounts::{self, Address, Directory};
use crate::config::Secret;
use crate::maillog::{self, Mail};
use crate::metrics::metrics;
use crate::sieve::ScanVerdict;
use crate::smtp::command::{Mailbox, ReversePath};
use crate::smtp::courier::{Disposition, LocalCourier, Replies};
use crate::smtp::deliver::TraceInfo;
use crate::smtp::refusal::Refusal;
use crate::smtp::session::{AcceptedRecipient, ClientInfo, Envelope};
use crate::store::{FetchEvent, FetchPending, FetchState, MailboxOwner, MessageBody, Store, StoreError};

/// The longest wait between runs of a failing source (or its interval, when longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The sources to run, each with its password.
pub type Sources = Vec<(FetchSource, Secret)>;

/// What every source's loop shares.
pub struct Fetcher {
    pub hostname: String,
    pub data_dir: PathBuf,
    pub directory: Arc<Directory>,
    pub store: Store,
    pub courier: LocalCourier,
    pub tls: TlsConnector,
    pub max_message_size: u64,
    pub status: Arc<FetchStatus>,
}

/// One task per source, each stopping at shutdown (between messages, never inside a
/// delivery); returns when all have. Run it as a task shutdown waits for.
pub async fn run_all(fetcher: Arc<Fetcher>, sources: Sources, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for (source, password) in sources {
        tasks.spawn(source_loop(fetcher.clone(), source, password, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// The wait after `failures` failed runs in a row.
pub fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let cap = interval.max(MAX_BACKOFF);
    interval.saturating_mul(1u32 << failures.min(16)).min(cap)
}

async fn source_loop(
    fetcher: Arc<Fetcher>,
    source: FetchSource,
    password: Secret,
    mut shutdown: watch::Receiver<bool>,
) {
    let label = source.index.to_string();
    let m = metrics();
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let outcome = match run_once(&fetcher, &source, password.expose(), &shutdown).await {
            Ok(None) => {
                tracing::debug!(source = %source.name(), "another replica is fetching this source; run skipped");
                if wait_or_stop(source.interval, &mut shutdown).await {
                    return;
                }
                continue;
            }
            Ok(Some(n)) => Ok(n),
            Err(e) => Err(e),
        };
        let now = SystemTime::now();
        let wait = next_delay(source.interval, if outcome.is_ok() { 0 } else { failures.saturating_add(1) });
        let unix = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let over_quota = matches!(outcome, Err(FetchError::OverQuota { .. }));
        m.fetch_over_quota.with_label_values(&[&label]).set(over_quota as i64);
        match &outcome {
            Ok(n) => {
                failures = 0;
                m.fetch_last_success_timestamp_seconds.with_label_values(&[&label]).set(unix);
                fetcher.status.update(source.index, |s| {
                    s.last_success = Some(now);
                    s.over_quota = false;
                    s.failures = 0;
                    s.next_try = Some(now + wait);
                });
                tracing::info!(source = %source.name(), messages = n, "fetch done");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                m.fetch_errors_total.with_label_values(&[&label, e.kind()]).inc();
                m.fetch_last_error_timestamp_seconds.with_label_values(&[&label]).set(unix);
                fetcher.status.update(source.index, |s| {
                    s.last_error = Some((now, e.to_string()));
                    s.over_quota = over_quota;
                    s.failures = failures;
                    s.next_try = Some(now + wait);
                });
                tracing::error!(source = %source.name(), error = %e, kind = %e.kind(), retry_in_secs = wait.as_secs(), "fetch failed");
            }
        }
        if wait_or_stop(wait, &mut shutdown).await {
            return;
        }
    }
}

/// Sleep `wait`; true when shutdown came first.
async fn wait_or_stop(wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.changed() => true,
    }
}

/// A source's record as this run knows it, written to the store one event at a time.
struct Record<'a> {
    store: &'a Store,
    key: String,
    state: FetchState,
}

impl Record<'_> {
    /// Durable in the store, then true of the run's copy.
    async fn write(&mut self, event: FetchEvent) -> Result<(), FetchError> {
        self.store
            .fetch_record(&self.key, &event)
            .await
            .map_err(|e| FetchError::Local(format!("fetch record: {e}")))?;
        self.state.apply(&event);
        Ok(())
    }
}

/// The session with the remote server, either protocol.
enum Session {
    Pop3(Pop3Session),
    Imap(ImapSession),
}

/// One run: the number of messages delivered, `None` when another replica holds the
/// source's lease.
async fn run_once(
    fetcher: &Fetcher,
    source: &FetchSource,
    password: &str,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<u64>, FetchError> {
    let local = local_mailbox(&fetcher.directory, &source.local)?;
    let owner = MailboxOwner::new(local.local.clone(), local.domain.clone());
    let key = state::key(source);
    let Some(lease) = fetcher.store.try_lease(&format!("fetch:{key}")).await.map_err(store_error)? else {
        return Ok(None);
    };
    state::import_legacy(&fetcher.store, &fetcher.data_dir, source).await.map_err(FetchError::Local)?;
    let state =
        fetcher.store.fetch_state_load(&key).await.map_err(|e| FetchError::Local(format!("fetch record: {e}")))?;
    let mut record = Record { store: &fetcher.store, key, state };
    ensure_folder(&fetcher.store, &owner, &source.folder).await?;
    if let Some(pending) = record.state.pending.clone() {
        recover(fetcher, source, &owner, &mut record, &pending).await?;
    }
    let mut session = match source.protocol {
        RemoteProtocol::Pop3 => Session::Pop3(Pop3Session::login(source, password, &fetcher.tls).await?),
        RemoteProtocol::Imap => Session::Imap(ImapSession::login(source, password, &fetcher.tls).await?),
    };
    let new = match &mut session {
        Session::Pop3(s) => {
            let all = s.list().await?;
            let on_server: std::collections::HashSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
            let gone: Vec<String> =
                record.state.seen.iter().filter(|id| !on_server.contains(id.as_str())).cloned().collect();
            if !gone.is_empty() {
                record.write(FetchEvent::Forget(gone)).await?;
            }
            let (done, new): (Vec<Remote>, Vec<Remote>) =
                all.into_iter().partition(|r| record.state.seen.contains(&r.id));
            if !source.keep {
                // Delivered and recorded by a run that did not get to QUIT.
                for r in &done {
                    s.delete(r.number).await?;
                }
            }
            new
        }
        Session::Imap(s) => {
            if record.state.uid_validity != Some(s.uid_validity) {
                if record.state.uid_validity.is_some() {
                    tracing::warn!(source = %source.name(), "the remote folder's UIDVALIDITY changed: its messages are fetched again");
                }
                record.write(FetchEvent::UidValidity(s.uid_validity)).await?;
            } else if !source.keep && record.state.last_uid > 0 {
                s.delete(&format!("1:{}", record.state.last_uid)).await?;
            }
            s.list_after(record.state.last_uid).await?
        }
    };
    let mut delivered = 0;
    for remote in new {
        if *shutdown.borrow() {
            break;
        }
        // Another replica may have taken the source over while this one was cut off from
        // the store for longer than a lease lives: it must not deliver the same message.
        if !lease.still_held().await.map_err(store_error)? {
            return Err(FetchError::Local("the source's lease expired and another replica took it over".into()));
        }
        fetch_one(fetcher, source, &local, &owner, &mut session, &mut record, &remote).await?;
        delivered += 1;
    }
    match session {
        Session::Pop3(s) => s.quit().await?,
        Session::Imap(s) => s.logout().await?,
    }
    Ok(Some(delivered))
}

/// The steps 1-5 of the module doc for one message.
#[allow(clippy::too_many_arguments)]
async fn fetch_one(
    fetcher: &Fetcher,
    source: &FetchSource,
    local: &Address,
    owner: &MailboxOwner,
    session: &mut Session,
    record: &mut Record<'_>,
    remote: &Remote,
) -> Result<(), FetchError> {
    if remote.size > fetcher.max_message_size {
        return Err(FetchError::TooBig { size: remote.size, max: fetcher.max_message_size });
    }
    if let Some(quota) = fetcher.directory.account(local).and_then(|a| a.quota) {
        let used = fetcher.store.quota_usage(owner).await.map_err(|e| FetchError::Delivery(e.to_string()))?;
        if used.saturating_add(remote.size) > quota {
            return Err(FetchError::OverQuota { used, quota });
        }
    }
    let imap_uid = matches!(session, Session::Imap(_)).then_some(remote.number);
    let folder = fetcher.store.open_mailbox(owner, &source.folder).await.map_err(store_error)?;
    let uid_next = folder.status().await.map_err(store_error)?.uid_next;
    record.write(FetchEvent::Pending(FetchPending { id: remote.id.clone(), uid_next })).await?;

    let spool = crate::datadir::spool_dir(&fetcher.data_dir);
    let file_path = spool.join(format!("fetch-{}-{}", source.index, rand::random::<u64>()));
    let download = download(session, remote, fetcher.max_message_size, &file_path).await;
    let (len, peer, tls) = match download {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&file_path);
            return Err(e);
        }
    };
    let delivered = deliver(fetcher, source, local, &file_path, len, peer, tls, &marker(source, &remote.id)).await;
    let _ = std::fs::remove_file(&file_path);
    delivered?;

    record.write(FetchEvent::Done { id: remote.id.clone(), imap_uid }).await?;
    if !source.keep {
        match session {
            Session::Pop3(s) => s.delete(remote.number).await?,
            Session::Imap(s) => s.delete(&remote.number.to_string()).await?,
        }
    }
    let label = source.index.to_string();
    metrics().fetch_messages_total.with_label_values(&[&label]).inc();
    metrics().fetch_bytes_total.with_label_values(&[&label]).inc_by(len);
    fetcher.status.update(source.index, |s| s.messages += 1);
    tracing::info!(source = %source.name(), remote_id = %remote.id, bytes = len, "fetched message delivered");
    Ok(())
}

/// Download into `file_path`: (bytes, server IP, TLS version and cipher).
async fn download(
    session: &mut Session,
    remote: &Remote,
    max: u64,
    file_path: &Path,
) -> Result<(u64, std::net::IpAddr, (String, String)), FetchError> {
    let local = |e: std::io::Error| FetchError::Local(format!("{}: {e}", file_path.display()));
    if let Some(dir) = file_path.parent() {
        std::fs::create_dir_all(dir).map_err(local)?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(file_path).map_err(local)?);
    let (len, peer, tls) = match session {
        Session::Pop3(s) => (s.retrieve(remote.number, max, &mut file).await?, s.peer(), s.tls_info()),
        Session::Imap(s) => (s.retrieve(remote.number, max, &mut file).await?, s.peer(), s.tls_info()),
    };
    std::io::Write::flush(&mut file).map_err(local)?;
    Ok((len, peer, tls))
}

/// The id of the copy of a remote message in our `Received:` line: the source's state
/// digest and the remote id, in the characters a Received id allows.
fn marker(source: &FetchSource, remote_id: &str) -> String {
    let key = state::key(source);
    let hex = &key[..12];
    let id: String =
        remote_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    format!("fetch.{hex}.{id}")
}

/// Through the courier as port 25 would deliver to the account.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    fetcher: &Fetcher,
    source: &FetchSource,
    local: &Address,
    file_path: &Path,
    len: u64,
    peer: std::net::IpAddr,
    tls: (String, String),
    id: &str,
) -> Result<(), FetchError> {
    let head = read_head(file_path).map_err(|e| FetchError::Local(e.to_string()))?;
    let sender = return_path(&head).map(ReversePath::Mailbox).unwrap_or(ReversePath::Null);
    let env = Envelope {
        id: id.to_string(),
        sender,
        recipients: vec![AcceptedRecipient {
            address: local.clone(),
            mailboxes: vec![local.clone()],
            forwards: Vec::new(),
        }],
        body: None,
        smtputf8: false,
        require_tls: false,
    };
    let (from, to) = (crate::smtp::accept::sender_text(&env.sender), local.to_string());
    let mail = Mail { msgid: id, service: "fetch", from: &from, size: len };
    maillog::received(&mail, &to, 1, peer, &source.host, &tls.0);
    let client = ClientInfo {
        ip: peer,
        helo: Some(source.host.clone()),
        tls: Some(crate::smtp::session::TlsInfo { version: tls.0, cipher: tls.1 }),
        authenticated: None,
    };
    let protocol = match source.protocol {
        RemoteProtocol::Pop3 => "POP3S",
        RemoteProtocol::Imap => "IMAPS",
    };
    let trace = TraceInfo {
        hostname: &fetcher.hostname,
        client: &client,
        protocol: protocol.into(),
        date: chrono::Utc::now().to_rfc2822(),
    };
    let how = Disposition { folder: &source.folder, verdict: ScanVerdict::default(), replies: Replies::One };
    let body = MessageBody::File { path: file_path.to_path_buf(), len };
    let results = fetcher.courier.deliver(&env, b"", &body, &trace, how).await;
    match results.into_iter().next() {
        Some(Ok(())) => {
            maillog::stored(&mail, &to);
            Ok(())
        }
        Some(Err(status)) => {
            maillog::refused(&mail, &to, &status, Refusal::of_delivery(&status));
            Err(FetchError::Delivery(status.to_string()))
        }
        None => Err(FetchError::Delivery("no result".into())),
    }
}

/// The first 64 KiB of the message: enough for the `Return-Path` of the header.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?.take(64 * 1024).read_to_end(&mut head)?;
    Ok(head)
}

/// The envelope sender the remote server recorded (`Return-Path: <a@b>`), so Sieve's
/// `envelope :from` and vacation see the real sender rather than the null one.
fn return_path(head: &[u8]) -> Option<Mailbox> {
    let text = String::from_utf8_lossy(head);
    for line in text.split("\r\n").take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("return-path") {
            let raw = value.trim().strip_prefix('<')?.strip_suffix('>')?.to_string();
            let address = Address::parse(&raw).ok()?;
            return Some(Mailbox { address, raw });
        }
    }
    None
}

/// The copy of the pending message, if the crash came after the delivery: recorded
/// as done; otherwise the marker is cleared and the message fetched again.
async fn recover(
    fetcher: &Fetcher,
    source: &FetchSource,
    owner: &MailboxOwner,
    record: &mut Record<'_>,
    pending: &FetchPending,
) -> Result<(), FetchError> {
    let folder = fetcher.store.open_mailbox(owner, &source.folder).await.map_err(store_error)?;
    let snapshot = folder.sync().await.map_err(store_error)?;
    let needle = format!(" id {}", marker(source, &pending.id));
    for meta in snapshot.messages.iter().filter(|m| m.uid >= pending.uid_next) {
        let head = folder.read_message(meta.uid, 16 * 1024).await.map_err(store_error)?;
        if head.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            tracing::info!(source = %source.name(), remote_id = %pending.id, "the message in flight at the last stop was delivered; recorded");
            let imap_uid = (source.protocol == RemoteProtocol::Imap).then(|| pending.id.parse().unwrap_or(0));
            return record.write(FetchEvent::Done { id: pending.id.clone(), imap_uid }).await;
        }
    }
    record.write(FetchEvent::Abandoned).await
}

/// The account mail is fetched for: it must (still) be an account.
fn local_mailbox(directory: &Directory, address: &Address) -> Result<Address, FetchError> {
    directory
        .resolve(address)
        .into_iter()
        .find_map(|r| match r {
            accounts::Recipient::Mailbox(m) if m == *address => Some(m),
            _ => None,
        })
        .ok_or_else(|| FetchError::Delivery(format!("{address} is not a local account")))
}

async fn ensure_folder(store: &Store, owner: &MailboxOwner, folder: &str) -> Result<(), FetchError> {
    if folder.eq_ignore_ascii_case("INBOX") {
        return Ok(());
    }
    match store.create_folder(owner, folder, None).await {
        Ok(_) | Err(StoreError::FolderExists(_)) => Ok(()),
        Err(e) => Err(store_error(e)),
    }
}

fn store_error(e: StoreError) -> FetchError {
    FetchError::Delivery(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let i = Duration::from_secs(60);
        assert_eq!(next_delay(i, 0), i);
        assert_eq!(next_delay(i, 1), Duration::from_secs(120));
        assert_eq!(next_delay(i, 3), Duration::from_secs(480));
        assert_eq!(next_delay(i, 30), MAX_BACKOFF);
        let long = Duration::from_secs(7200);
        assert_eq!(next_delay(long, 5), long);
    }

    #[test]
    fn return_path_of_the_header_only() {
        let m = return_path(b"Return-Path: <Bob@Example.org>\r\nSubject: x\r\n\r\nReturn-Path: <no@x>\r\n").unwrap();
        assert_eq!(m.raw, "Bob@Example.org");
        assert!(return_path(b"Subject: x\r\n\r\nReturn-Path: <no@x>\r\n").is_none());
        assert!(return_path(b"Return-Path: <>\r\n\r\n").is_none());
    }
}
