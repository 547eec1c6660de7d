//! The import job, run by the server: log in to the source over verified TLS, list its
//! folders, plan (what each folder misses here), then copy folder by folder, one message
//! at a time streamed to a spool file and appended through the store with its flags,
//! keywords and internal date. Events go to the command as they happen; a command that
//! went away stops the job between two messages.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;

use super::plan::{inbox_prefixed, local_name, missing, selected};
use super::{Event, ImportRequest, Summary};
use crate::accounts::{Address, Directory};
use crate::fetch::{Access, FetchError, FetchSource, ImapSession, RemoteFolder, RemoteMessage};
use crate::store::{Mailbox, MailboxOwner, MessageBody, Store, StoreError};

/// What the job needs from the server.
pub struct Importer {
    pub store: Store,
    pub directory: Arc<Directory>,
    pub data_dir: PathBuf,
    /// `MAILROOM_FETCH_CA_FILE`'s roots (read at the start).
    pub fetch_roots: Vec<CertificateDer<'static>>,
    /// `MAILROOM_MAX_MESSAGE_SIZE`: a bigger remote message is reported and left behind.
    pub max_message_size: u64,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
enum ImportError {
    #[error("{0}")]
    Request(String),
    /// The source's side; the command prints the source's URL before it.
    #[error("{0}")]
    Source(FetchError),
    #[error("{account}: {error}")]
    Local { account: String, error: StoreError },
    #[error(
        "{account} is over quota: {used} of {quota} bytes used, the next message has {size}; the import stops (re-run it once there is room)"
    )]
    OverQuota { account: String, used: u64, quota: u64, size: u64 },
    #[error("the command went away; the import stopped")]
    Gone,
}

/// One folder to copy: its remote side, local name and the missing messages.
struct FolderPlan {
    remote: RemoteFolder,
    local: String,
    todo: Vec<RemoteMessage>,
}

/// The running job's context.
struct Job<'a> {
    importer: &'a Importer,
    source: FetchSource,
    owner: MailboxOwner,
    quota: Option<u64>,
    events: mpsc::Sender<Event>,
}

/// How many events may wait for a slow command: the job pauses rather than buffer more.
const EVENTS_WAITING: usize = 64;

/// Start an import requested as JSON (the control socket's `import` line) on a task of
/// its own; its events, as lines, come out of the receiver, which ends after the last.
pub fn spawn_job(importer: Arc<Importer>, request: &str, password: String) -> mpsc::Receiver<String> {
    let (lines_tx, lines_rx) = mpsc::channel(EVENTS_WAITING);
    let request: Result<ImportRequest, _> = serde_json::from_str(request);
    tokio::spawn(async move {
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                let _ =
                    lines_tx.send(Event::Failed { text: format!("a malformed import request: {e}") }.to_line()).await;
                return;
            }
        };
        let (events_tx, mut events_rx) = mpsc::channel(EVENTS_WAITING);
        let job = run(&importer, request, password, events_tx);
        // Forwarding stops when the command goes away; dropping the events receiver then
        // makes the job's next send fail, and the job stops between two messages.
        let forward = async move {
            while let Some(event) = events_rx.recv().await {
                if lines_tx.send(event.to_line()).await.is_err() {
                    break;
                }
            }
        };
        tokio::join!(job, forward);
    });
    lines_rx
}

/// Run an import to its end, sending [`Event`]s, the last one `Done` or `Failed`.
pub async fn run(importer: &Importer, request: ImportRequest, password: String, events: mpsc::Sender<Event>) {
    let last = match start(importer, &request, &password, events.clone()).await {
        Ok(summary) => Event::Done { summary },
        Err(ImportError::Gone) => return,
        Err(e) => {
            tracing::warn!(source = %request.source, to = %request.to, error = %e, "import failed");
            Event::Failed { text: e.to_string() }
        }
    };
    let _ = events.send(last).await;
}

async fn start(
    importer: &Importer,
    request: &ImportRequest,
    password: &str,
    events: mpsc::Sender<Event>,
) -> Result<Summary, ImportError> {
    let mut source = crate::fetch::parse_import_url(&request.source).map_err(ImportError::Request)?;
    let address = Address::parse(&request.to).map_err(|e| ImportError::Request(format!("{:?}: {e}", request.to)))?;
    let account = importer
        .directory
        .account(&address)
        .ok_or_else(|| ImportError::Request(format!("{address} is not an account here")))?;
    source.local = account.address.clone();
    let mut roots = importer.fetch_roots.clone();
    if let Some(path) = &request.ca_file {
        let extra = crate::config::pem_roots(std::path::Path::new(path))
            .map_err(|e| ImportError::Request(format!("--ca-file {path}: {e}")))?;
        roots.extend(extra);
    }
    let tls = crate::fetch::connector(&roots).map_err(|e| ImportError::Request(format!("TLS roots: {e}")))?;
    let owner = MailboxOwner::new(account.address.local.clone(), account.address.domain.clone());
    let job = Job { importer, source, owner, quota: account.quota, events };
    tracing::info!(source = %request.source, to = %address, "import started");
    let mut session = ImapSession::connect(&job.source, password, &tls).await.map_err(ImportError::Source)?;
    let (plans, skipped) = job.plan(&mut session, &request.folders).await?;
    let summary = Summary { skipped, ..job.copy(&mut session, plans).await? };
    let _ = session.logout().await;
    tracing::info!(
        source = %request.source,
        to = %address,
        messages = summary.messages,
        bytes = summary.bytes,
        skipped = summary.skipped,
        errors = summary.errors,
        "import done"
    );
    Ok(summary)
}

impl Job<'_> {
    fn local(&self, error: StoreError) -> ImportError {
        ImportError::Local { account: self.owner.to_string(), error }
    }

    async fn send(&self, event: Event) -> Result<(), ImportError> {
        self.events.send(event).await.map_err(|_| ImportError::Gone)
    }

    /// List, map and compare every selected folder; create the local folders; send the
    /// plan. The plan holds the metadata of the missing messages only; also returns how
    /// many messages were already here.
    async fn plan(&self, session: &mut ImapSession, wanted: &[String]) -> Result<(Vec<FolderPlan>, u64), ImportError> {
        let store = &self.importer.store;
        let remote_folders = session.folders().await.map_err(ImportError::Source)?;
        let ours: Vec<_> = store
            .list_folders(&self.owner)
            .await
            .map_err(|e| self.local(e))?
            .into_iter()
            .filter_map(|f| Some((f.special_use?, f.name)))
            .collect();
        let inbox_prefix = inbox_prefixed(&remote_folders);
        let mut plans = Vec::new();
        let (mut messages, mut bytes, mut skipped) = (0, 0, 0);
        for remote in remote_folders.into_iter().filter(|f| selected(f, wanted)) {
            let local = local_name(&remote, &ours, inbox_prefix);
            let mailbox = self.local_folder(&local).await?;
            if !remote.selectable {
                continue;
            }
            let exists = session.open_folder(Access::Examine, &remote.name).await.map_err(ImportError::Source)?;
            let listed = session.messages(exists).await.map_err(ImportError::Source)?;
            let here = mailbox.sync().await.map_err(|e| self.local(e))?;
            let (todo, there) = missing(listed, &here.messages);
            messages += todo.len() as u64;
            bytes += todo.iter().map(|m| m.size).sum::<u64>();
            skipped += there;
            plans.push(FolderPlan { remote, local, todo });
        }
        let folders = plans.len() as u64;
        self.send(Event::Plan { folders, messages, bytes, skipped }).await?;
        Ok((plans, skipped))
    }

    /// The local folder, created (with its parents) when missing.
    async fn local_folder(&self, name: &str) -> Result<Mailbox, ImportError> {
        let store = &self.importer.store;
        match store.open_mailbox(&self.owner, name).await {
            Err(StoreError::NoSuchFolder(_)) => {
                store.create_folder(&self.owner, name, None).await.map_err(|e| self.local(e))?;
                store.open_mailbox(&self.owner, name).await.map_err(|e| self.local(e))
            }
            other => other.map_err(|e| self.local(e)),
        }
    }

    async fn copy(&self, session: &mut ImapSession, plans: Vec<FolderPlan>) -> Result<Summary, ImportError> {
        let mut summary = Summary { folders: plans.len() as u64, ..Summary::default() };
        for plan in plans {
            self.send(Event::Folder {
                remote: plan.remote.name.clone(),
                local: plan.local.clone(),
                messages: plan.todo.len() as u64,
            })
            .await?;
            if plan.todo.is_empty() {
                continue;
            }
            let mailbox = self.local_folder(&plan.local).await?;
            session.open_folder(Access::Examine, &plan.remote.name).await.map_err(ImportError::Source)?;
            for message in &plan.todo {
                match self.copy_one(session, &mailbox, message).await {
                    Ok(len) => {
                        summary.messages += 1;
                        summary.bytes += len;
                        self.send(Event::Progress { messages: summary.messages, bytes: summary.bytes }).await?;
                    }
                    Err(ImportError::Source(error @ (FetchError::TooBig { .. } | FetchError::Vanished))) => {
                        summary.errors += 1;
                        let text = format!("{} UID {}: {error}", plan.remote.name, message.uid);
                        self.send(Event::Warning { text }).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(summary)
    }

    /// One message: quota check, download to a spool file, append, remove the file.
    async fn copy_one(
        &self,
        session: &mut ImapSession,
        mailbox: &Mailbox,
        message: &RemoteMessage,
    ) -> Result<u64, ImportError> {
        let store = &self.importer.store;
        if let Some(quota) = self.quota {
            let used = store.quota_usage(&self.owner).await.map_err(|e| self.local(e))?;
            if used.saturating_add(message.size) > quota {
                return Err(ImportError::OverQuota {
                    account: self.owner.to_string(),
                    used,
                    quota,
                    size: message.size,
                });
            }
        }
        let spool = crate::datadir::spool_dir(&self.importer.data_dir);
        let path = spool.join(format!("import-{}", rand::random::<u64>()));
        let result = self.download_and_append(session, mailbox, message, &path).await;
        let _ = std::fs::remove_file(&path);
        result
    }

    async fn download_and_append(
        &self,
        session: &mut ImapSession,
        mailbox: &Mailbox,
        message: &RemoteMessage,
        path: &std::path::Path,
    ) -> Result<u64, ImportError> {
        let file_error = |e: std::io::Error| ImportError::Source(FetchError::Local(format!("{}: {e}", path.display())));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(file_error)?;
        }
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(file_error)?);
        let len = session
            .retrieve(message.uid, self.importer.max_message_size, &mut file)
            .await
            .map_err(ImportError::Source)?;
        std::io::Write::flush(&mut file).map_err(file_error)?;
        drop(file);
        let body = MessageBody::File { path: path.to_path_buf(), len };
        mailbox.append(&body, &message.flags, Some(message.internal_date)).await.map_err(|e| self.local(e))?;
        Ok(len)
    }
}
