//! The one error type of the store.
//!
//! Owns: every failure a caller of `store/` can see. Protocol layers map these to their own
//! replies in one place (SMTP 4xx, IMAP `NO [TRYCREATE]`/`[NONEXISTENT]`, POP3 `-ERR`); the
//! store never decides a protocol answer. I/O errors carry the path so a log line says
//! which file or directory failed.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the Maildir store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed (disk full, permissions, vanished directory...).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The account's local part or domain cannot be used as a directory name (path
    /// traversal: `..`, `/`, NUL, leading dot). Callers normalise addresses first.
    #[error("invalid account name {0:?}")]
    InvalidAccount(String),
    /// A folder name the store refuses (empty component, `.` inside a component, control
    /// characters, too long). IMAP answers `NO` / `BAD`.
    #[error("invalid folder name {0:?}")]
    InvalidFolderName(String),
    /// The folder does not exist (IMAP `[NONEXISTENT]` / `[TRYCREATE]`).
    #[error("no such folder {0:?}")]
    NoSuchFolder(String),
    /// The folder already exists (IMAP `[ALREADYEXISTS]`).
    #[error("folder {0:?} already exists")]
    FolderExists(String),
    /// The folder has sub-folders and cannot be deleted (RFC 3501 6.3.4 allows refusing).
    #[error("folder {0:?} has sub-folders")]
    HasChildren(String),
    /// The operation is not allowed on this folder (deleting INBOX, RFC 3501 6.3.4).
    #[error("operation not permitted on {0:?}")]
    NotPermitted(String),
    /// No message with this UID in the mailbox (expunged meanwhile).
    #[error("no message with uid {0}")]
    NoSuchMessage(u32),
    /// A per-mailbox limit would be passed (too many distinct keywords, a keyword too
    /// long). IMAP answers `NO [LIMIT]` (RFC 5530).
    #[error("limit exceeded: {0}")]
    Limit(&'static str),
    /// A Sieve script name RFC 5804 does not allow (empty, over 128 bytes, control
    /// characters, `/`). ManageSieve answers `NO`.
    #[error("invalid Sieve script name {0:?}")]
    InvalidScriptName(String),
    /// The account has no Sieve script of this name (ManageSieve `NO (NONEXISTENT)`).
    #[error("no Sieve script {0:?}")]
    NoSuchScript(String),
    /// A Sieve script of this name exists already (ManageSieve `NO (ALREADYEXISTS)`).
    #[error("Sieve script {0:?} already exists")]
    ScriptExists(String),
    /// The script is the active one and cannot be deleted (ManageSieve `NO (ACTIVE)`,
    /// RFC 5804 2.10: deactivate it first).
    #[error("Sieve script {0:?} is active")]
    ScriptActive(String),
    /// A background blocking task died (panicked or was cancelled at shutdown).
    #[error("background task failed: {0}")]
    Background(String),
    /// The backend cannot be reached for now (a database or object store that is down or
    /// failing over). Maildir never returns it; a networked backend does, and every
    /// protocol then answers "try again later" instead of a permanent refusal.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A networked backend aborted the operation to break a lock cycle with a concurrent
    /// one (PostgreSQL's deadlock or serialization failure). Nothing was changed; the
    /// PostgreSQL writers run it again by themselves, so a caller sees it rarely, and
    /// answers it like [`StoreError::Unavailable`].
    #[error("store conflict: {0}")]
    Conflict(String),
}

impl StoreError {
    /// Wrap an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io { path: path.into(), source }
    }

    /// True when a write failed because the file system or the file system quota is full
    /// (SMTP `452 4.3.1`, IMAP `NO [OVERQUOTA]`).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if crate::disk::is_full(source))
    }

    /// True when the system cannot do what was asked this way (no `O_TMPFILE`, no /proc):
    /// the caller takes its other way.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::Unsupported)
    }

    /// True when the error is a temporary condition worth retrying (I/O, background task,
    /// unreachable backend), false for errors caused by the request itself. SMTP maps true
    /// to 4xx.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            StoreError::Io { .. } | StoreError::Background(_) | StoreError::Unavailable(_) | StoreError::Conflict(_)
        )
    }
}

/// A failed durable write keeps its path: `Io` stays `Io`, a background fsync that did
/// not finish is `Background`, as when the store did its own fsyncs.
impl From<crate::durable::DurableError> for StoreError {
    fn from(e: crate::durable::DurableError) -> StoreError {
        match e {
            crate::durable::DurableError::Io { path, source } => StoreError::Io { path, source },
            crate::durable::DurableError::Background(msg) => StoreError::Background(msg),
        }
    }
}

/// Run blocking file system work on tokio's blocking pool and flatten the join error.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Background(e.to_string())),
    }
}
