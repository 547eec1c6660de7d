//! Durable writes: the one place that knows how bytes reach the disk for good.
//!
//! Why: mailroom acknowledges a change (SMTP and LMTP `250` after DATA, the queue's enqueue
//! behind a relayed `250`, IMAP `OK` to APPEND, STORE, EXPUNGE, COPY and MOVE, POP3 `+OK` to
//! QUIT) only once it survives a crash or a power failure (architecture.md, "durable before
//! acknowledged"). A crash, a `kill -9` or a full disk may lose work in progress — it was
//! never acknowledged, so the client tries again — but never anything acknowledged. Every
//! durable write takes these steps, in this order:
//!
//! 1. write the bytes to a temp file, never under the final name, so no reader and no
//!    crash recovery ever sees half a file;
//! 2. fsync the file (its data and its size);
//! 3. rename it to its final name: atomic, readers see the old content or the new one;
//! 4. fsync the *directory*. A rename, like any new or removed name, changes the directory,
//!    not the file: ext4 and xfs keep that change in memory until the directory itself is
//!    flushed, so after a power failure a renamed file whose data was fsynced can be gone,
//!    or back under its temp name. Without step 4 the `250` would be a promise the disk
//!    does not keep.
//!
//! A full disk fails in step 1 or 2, before the rename: the old file (if any) stays as it
//! was, the temp file is removed, and the caller answers with a temporary error (4xx). So
//! that this cannot be forgotten, the temp file of a [`SyncedFile`] removes itself unless
//! it was committed.
//!
//! What is here:
//! - [`write_atomic`] and [`write_atomic_via`]: a small whole file, steps 1 to 4 at once.
//! - [`SyncedFile`]: the streaming writer for large files (a message is copied through it,
//!   never held in memory whole), created in step 1, then either fsynced and renamed into
//!   place ([`SyncedFile::commit`], [`SyncedFile::commit_new`]) or fsynced where it is for
//!   a rename its caller does later ([`SyncedFile::sync_in_place`], Maildir).
//! - [`sync_dir`]: step 4 alone, blocking, for rare paths and for batching several names
//!   behind one directory fsync.
//! - [`AppendLog`]: an append-only log whose appends become durable with
//!   [`AppendLog::sync`] or through [`GroupSync`].
//! - [`GroupSync`]: group commit of directory and log fsyncs across concurrent sessions.
//!
//! Who relies on what:
//! - `queue/spool.rs` (enqueue, before the `250` of a relayed message; envelope updates;
//!   removal): `.msg` then `.env` through [`SyncedFile::beside`] and
//!   [`SyncedFile::commit_new`] (a hard link: an id collision never replaces another
//!   message), then one [`sync_dir`] for both names; envelope updates through
//!   [`write_atomic`]; removal through [`sync_dir`]. Its crash recovery deletes
//!   `.<name>.tmp<n>` leftovers: that temp name of [`SyncedFile::beside`] is part of its
//!   contract.
//! - `store/maildir/deliver.rs` (the `250` of local delivery): each copy a
//!   [`SyncedFile::unnamed`] in `new/` or `cur/`, fdatasynced and linked in under its name
//!   ([`SyncedFile::link_unnamed`]): steps 1 and 3 without a temp name. Where the system
//!   cannot, and in `store/maildir/message_ops.rs` (APPEND, COPY and MOVE across file
//!   systems): through `store/maildir/durable.rs`, a [`SyncedFile::create_new`] in the
//!   Maildir's own `tmp/` and [`SyncedFile::sync_in_place`]; the store renames it into
//!   `new/` or `cur/` (the Maildir protocol Dovecot and mbsync rely on). Either way it then
//!   fsyncs that directory through [`GroupSync`].
//! - `store/maildir/mailbox.rs`, `store/maildir/mailbox_sync.rs`, `store/maildir/message_ops.rs` (STORE, EXPUNGE,
//!   moves from `new/` to `cur/`): the renames and unlinks are the store's; the index log
//!   and the directories are made durable together with [`GroupSync::sync_many`].
//! - `store/maildir/index.rs`: the index log is an [`AppendLog`]; its compaction is
//!   [`write_atomic_via`] with the fixed temp name `<folder>.idx.tmp`.
//! - `store/maildir/folders.rs`, `store/maildir/keywords.rs`: the `subscriptions`, `mailroom-special-use`
//!   and `dovecot-keywords` files through [`write_atomic_via`] with a temp file in the
//!   Maildir's `tmp/` (whose stale files Dovecot and our sweeper remove); folder creation,
//!   rename and deletion through [`sync_dir`].
//! - `store/maildir/layout.rs`, `store/maildir/mod.rs`: a new Maildir or account through [`sync_dir`] of the
//!   folder and of its parent.
//! - `datadir.rs` (the format file), `tls/selfsigned.rs`, `acme/storage.rs` (account key,
//!   certificates), `mailauth/keys.rs` (DKIM keys), `mailauth/srs.rs` (the SRS secret),
//!   `accounts/generated.rs` (the generated postmaster): [`write_atomic`] with mode 0600.
//!
//! Deliberately not durable, because nothing acknowledged depends on them: the spool of
//! a message still arriving (`smtp/deliver.rs`, removed after delivery; the store's copy
//! is the durable one), the header cache (`store/maildir/header_cache.rs`), the quota usage file
//! (`store/maildir/quota.rs`, recomputed from the Maildir), the `\Recent` claim in the index log
//! (`store/maildir/mailbox_status.rs`), and the data dir's write probe.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Why a durable write failed.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// A system call failed on `path` (disk full, permissions, a vanished directory...).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the failing call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A background fsync did not finish (the runtime is shutting down, a task panicked):
    /// the change may not be durable.
    #[error("{0}")]
    Background(String),
}

impl DurableError {
    fn at(path: &Path, source: io::Error) -> DurableError {
        DurableError::Io { path: path.to_path_buf(), source }
    }

    /// The kind of the underlying I/O error (`Other` for a background failure).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            DurableError::Io { source, .. } => source.kind(),
            DurableError::Background(_) => io::ErrorKind::Other,
        }
    }
}

/// For callers whose convention is a plain `io::Error` to which they add the path
/// themselves (the queue, the data dir, keys and certificates).
impl From<DurableError> for io::Error {
    fn from(e: DurableError) -> io::Error {
        match e {
            DurableError::Io { source, .. } => source,
            DurableError::Background(msg) => io::Error::other(msg),
        }
    }
}

/// The directory holding `path`'s name (the one whose fsync makes a rename durable).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replace `path` with `bytes` atomically and durably: a temp file beside it (see
/// [`SyncedFile::beside`]) created with `mode`, written, fsynced, renamed over `path`, and
/// the directory fsynced. Readers see the old content or the new one, never a mix; on any
/// error the temp file is gone and `path` is untouched (unless the error came from the
/// final directory fsync, after the rename). Blocking.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DurableError> {
    let file = SyncedFile::beside(path, mode)?;
    finish_atomic(file, path, bytes)
}

/// [`write_atomic`] with the temp file at `tmp`, created or truncated (a fixed name a crash
/// may have left behind, or a unique name in a Maildir's `tmp/`). Blocking.
pub fn write_atomic_via(tmp: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<(), DurableError> {
    let file = SyncedFile::create(tmp, mode)?;
    finish_atomic(file, path, bytes)
}

fn finish_atomic(mut file: SyncedFile, path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    file.write_all(bytes).map_err(|e| DurableError::at(&file.path, e))?;
    file.commit(path)?;
    sync_dir(parent_dir(path))
}

/// fsync a directory, making the names created, renamed or removed in it durable.
/// Blocking; for many concurrent callers use [`GroupSync::sync_dir`] instead.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| DurableError::at(dir, e))
}

/// A file being written that is not yet durable. Dropped without a commit (an error, a
/// cancelled transfer, a full disk), it removes itself, so no half-written file lingers.
///
/// Write it through [`Write`] or [`SyncedFile::copy_from`], then make it durable with
/// exactly one of [`commit`](Self::commit), [`commit_new`](Self::commit_new) or
/// [`sync_in_place`](Self::sync_in_place). None of them fsyncs the directory: the caller
/// does, once for every name it changed ([`sync_dir`], [`GroupSync::sync_dir`]).
#[derive(Debug)]
pub struct SyncedFile {
    file: File,
    /// Where the file is now (its temp name).
    path: PathBuf,
    /// Remove the file when dropped (cleared once it is committed).
    armed: bool,
}

impl SyncedFile {
    /// Create `path`, which must not exist (`AlreadyExists` otherwise): a Maildir `tmp/`
    /// name must be unique, and a collision must never write into another delivery's file.
    pub fn create_new(path: &Path, mode: u32) -> Result<SyncedFile, DurableError> {
        Self::open(path, OpenOptions::new().write(true).create_new(true).mode(mode))
    }

    /// Create or truncate `path`: a fixed temp name that a crash may have left behind.
    pub fn create(path: &Path, mode: u32) -> Result<SyncedFile, DurableError> {
        Self::open(path, OpenOptions::new().write(true).create(true).truncate(true).mode(mode))
    }

    /// A new temp file `.<name>.tmp<random>` in `target`'s directory (a rename only stays
    /// atomic within one file system). The leading dot keeps it out of listings that look
    /// for real entries; the queue's recovery removes such leftovers by that pattern.
    pub fn beside(target: &Path, mode: u32) -> Result<SyncedFile, DurableError> {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = parent_dir(target).join(format!(".{name}.tmp{}", rand::random::<u32>()));
        Self::create_new(&tmp, mode)
    }

    /// A file without a name yet, in directory `dir` (Linux `O_TMPFILE`), to be named with
    /// [`link_unnamed`](Self::link_unnamed) once written. Its creation takes no lock on
    /// the directory (a named create holds it while the file system allocates the inode,
    /// which serialises concurrent deliveries into one folder), and a crash or an error
    /// leaves nothing behind: the kernel frees a file that never got a name.
    /// `Unsupported` where the file system or the kernel has no `O_TMPFILE`.
    pub fn unnamed(dir: &Path, mode: u32) -> Result<SyncedFile, DurableError> {
        match OpenOptions::new().write(true).mode(mode).custom_flags(libc::O_TMPFILE).open(dir) {
            Ok(file) => Ok(SyncedFile { file, path: dir.to_path_buf(), armed: false }),
            // Kernels and file systems without it answer EOPNOTSUPP, EISDIR (the flag
            // read as a plain directory open) or EINVAL.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                Err(DurableError::at(dir, io::ErrorKind::Unsupported.into()))
            }
            Err(e) => Err(DurableError::at(dir, e)),
        }
    }

    /// fdatasync a file from [`unnamed`](Self::unnamed) (its data and size; the name comes
    /// next), before any [`link_unnamed`](Self::link_unnamed).
    pub fn sync_unnamed(&mut self) -> Result<(), DurableError> {
        self.file.sync_data().map_err(|e| DurableError::at(&self.path, e))
    }

    /// Give a file from [`unnamed`](Self::unnamed) the name `target`, failing with
    /// `AlreadyExists` rather than replacing anything (the caller may try another name
    /// with the same file). The name is durable once the caller fsyncs its directory.
    /// Through `/proc/self/fd` (linking by descriptor needs a capability we do not
    /// have): `Unsupported` when /proc is not mounted or such links are refused.
    pub fn link_unnamed(&self, target: &Path) -> Result<(), DurableError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let at = |e| DurableError::at(target, e);
        let from = std::ffi::CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
            .map_err(|e| at(io::Error::other(e)))?;
        let to = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|e| at(io::Error::other(e)))?;
        // SAFETY: both are NUL-terminated paths that outlive the call.
        let r = unsafe {
            libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // No /proc (ENOENT for the source; a missing target directory is ENOENT too, and
        // the caller's other way then fails on it with its own error), or a system that
        // refuses links through it (EXDEV, EPERM, EACCES under some security modules).
        let refused = match e.raw_os_error() {
            Some(libc::ENOENT) => !Path::new("/proc/self/fd").is_dir(),
            Some(libc::EXDEV | libc::EPERM | libc::EACCES | libc::EOPNOTSUPP) => true,
            _ => false,
        };
        Err(at(if refused { io::Error::new(io::ErrorKind::Unsupported, e) } else { e }))
    }

    fn open(path: &Path, options: &OpenOptions) -> Result<SyncedFile, DurableError> {
        let file = options.open(path).map_err(|e| DurableError::at(path, e))?;
        Ok(SyncedFile { file, path: path.to_path_buf(), armed: true })
    }

    /// Where the file is now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copy everything `src` yields to the file; returns the byte count. Going to the
    /// [`File`] directly keeps the kernel's file-to-file copy when `src` is a file.
    pub fn copy_from<R: Read>(&mut self, src: &mut R) -> io::Result<u64> {
        io::copy(src, &mut self.file)
    }

    /// fsync (data and metadata) and rename over `target`, replacing what was there.
    /// On error the temp file is removed.
    pub fn commit(mut self, target: &Path) -> Result<(), DurableError> {
        self.file.sync_all().map_err(|e| DurableError::at(&self.path, e))?;
        fs::rename(&self.path, target).map_err(|e| DurableError::at(target, e))?;
        self.armed = false;
        Ok(())
    }

    /// fsync (data and metadata) and give the file the name `target`, failing with
    /// `AlreadyExists` instead of replacing anything (a hard link is an atomic no-clobber
    /// rename). The temp name is removed either way.
    pub fn commit_new(self, target: &Path) -> Result<(), DurableError> {
        self.file.sync_all().map_err(|e| DurableError::at(&self.path, e))?;
        fs::hard_link(&self.path, target).map_err(|e| DurableError::at(target, e))
        // Dropping `self` (still armed) removes the temp name.
    }

    /// fdatasync and keep the file where it is; returns its path. For the Maildir, whose
    /// caller renames the file from `tmp/` into `new/` or `cur/` itself (into `cur/` only
    /// once it holds the mailbox lock and knows the name). fdatasync covers the data and
    /// the size, all a reader needs; the name is made durable by the directory fsync after
    /// the caller's rename.
    pub fn sync_in_place(mut self) -> Result<PathBuf, DurableError> {
        self.file.sync_data().map_err(|e| DurableError::at(&self.path, e))?;
        self.armed = false;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for SyncedFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// An append-only log file (the store's index). Appends are one `write` each into the
/// page cache; they become durable with [`AppendLog::sync`] or, shared with other sessions,
/// [`GroupSync::sync_file`] on [`AppendLog::file`]. The caller acknowledges only after that.
#[derive(Debug)]
pub struct AppendLog {
    path: PathBuf,
    file: Arc<File>,
    /// Bytes known to hold whole records; a failed append is cut back to this.
    len: u64,
}

impl AppendLog {
    /// Open the existing log at `path` for appending; `len` is how much of it the caller
    /// read and trusts (see [`AppendLog::truncate`] for a torn tail).
    pub fn open(path: &Path, len: u64) -> Result<AppendLog, DurableError> {
        let file = OpenOptions::new().append(true).open(path).map_err(|e| DurableError::at(path, e))?;
        Ok(AppendLog { path: path.to_path_buf(), file: Arc::new(file), len })
    }

    /// Cut the log to `len` bytes and fdatasync, so a torn record left by a crash is gone
    /// for good and the next append follows a whole one.
    pub fn truncate(&mut self, len: u64) -> Result<(), DurableError> {
        let at = |e| DurableError::at(&self.path, e);
        self.file.set_len(len).map_err(at)?;
        self.file.sync_data().map_err(at)?;
        self.len = len;
        Ok(())
    }

    /// Append `bytes` in one write (page cache only). A failed write (disk full) is cut
    /// back, so the log never keeps a partial record that a later append would follow.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        if let Err(e) = (&*self.file).write_all(bytes) {
            let _ = self.file.set_len(self.len);
            return Err(DurableError::at(&self.path, e));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// fdatasync the appended records now (without batching).
    pub fn sync(&self) -> Result<(), DurableError> {
        self.file.sync_data().map_err(|e| DurableError::at(&self.path, e))
    }

    /// The log's path (the batching key for [`GroupSync::sync_file`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for [`GroupSync::sync_file`].
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Bytes of whole records.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the log holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

// Group commit. Directory fsyncs are the serial bottleneck under load, so concurrent
// callers share them: `GroupSync` batches "please fsync X" requests from every session and
// fsyncs each distinct directory (or log file) once per batch, waking every waiter. While
// one batch runs, new requests queue for the next one — classic group commit, as databases
// do for their WAL. The batch worker is a short-lived tokio task started on demand (no
// long-lived task bound to one runtime); the syscalls run on the blocking pool, in
// parallel across directories.

/// What to fsync for one key.
#[derive(Clone)]
enum Target {
    /// Open the directory and fsync it.
    Dir,
    /// fdatasync this already-open file (an index log).
    File(Arc<File>),
}

type Waiter = oneshot::Sender<Result<(), (io::ErrorKind, String)>>;

#[derive(Default)]
struct Pending {
    queue: HashMap<PathBuf, (Target, Vec<Waiter>)>,
    running: bool,
    stats: SyncStats,
}

/// Counters for metrics: how much group commit saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// fsync requests made by callers.
    pub requests: u64,
    /// fsync system calls actually issued.
    pub fsyncs: u64,
    /// Batches run.
    pub batches: u64,
}

/// Shared fsync batcher (cheap to clone).
#[derive(Clone, Default)]
pub struct GroupSync {
    inner: Arc<Mutex<Pending>>,
}

/// Resets `running` if the worker task is dropped mid-way (runtime shutdown) so a later
/// runtime can start a new worker; queued waiters then see their sender dropped -> error.
struct WorkerGuard {
    inner: Arc<Mutex<Pending>>,
    armed: bool,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.inner).running = false;
        }
    }
}

impl GroupSync {
    /// Make the directory entry changes in `dir` durable (after create/rename/unlink).
    pub async fn sync_dir(&self, dir: &Path) -> Result<(), DurableError> {
        self.request(dir, Target::Dir).await
    }

    /// Make appended data of an open file durable; `key` identifies the file for batching.
    pub async fn sync_file(&self, key: &Path, file: Arc<File>) -> Result<(), DurableError> {
        self.request(key, Target::File(file)).await
    }

    /// fsync log files and directories in parallel and wait for all; the first error wins.
    /// Each request is spawned, so a caller cancelled mid-way still completes the commit.
    pub async fn sync_many(&self, files: Vec<(PathBuf, Arc<File>)>, dirs: Vec<PathBuf>) -> Result<(), DurableError> {
        let mut handles = Vec::with_capacity(files.len() + dirs.len());
        for (path, file) in files {
            let sync = self.clone();
            handles.push(tokio::spawn(async move { sync.sync_file(&path, file).await }));
        }
        for dir in dirs {
            let sync = self.clone();
            handles.push(tokio::spawn(async move { sync.sync_dir(&dir).await }));
        }
        let mut result = Ok(());
        for h in handles {
            let r = h.await.unwrap_or_else(|e| Err(DurableError::Background(e.to_string())));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Counters since start.
    pub fn stats(&self) -> SyncStats {
        lock(&self.inner).stats
    }

    async fn request(&self, key: &Path, target: Target) -> Result<(), DurableError> {
        let (tx, rx) = oneshot::channel();
        let start_worker = {
            let mut p = lock(&self.inner);
            p.stats.requests += 1;
            p.queue.entry(key.to_path_buf()).or_insert_with(|| (target, Vec::new())).1.push(tx);
            !std::mem::replace(&mut p.running, true)
        };
        if start_worker {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let mut guard = WorkerGuard { inner: inner.clone(), armed: true };
                run_batches(&inner).await;
                // Normal exit: run_batches already cleared `running` under the lock, and a
                // newer worker may own it by now, so the guard must not touch it.
                guard.armed = false;
            });
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((kind, msg))) => Err(DurableError::at(key, io::Error::new(kind, msg))),
            Err(_) => Err(DurableError::Background("fsync batch abandoned".into())),
        }
    }
}

/// The queue stays usable even if a holder panicked: its data is a plain map, always
/// consistent between statements, and a stuck `running` flag would hang every commit.
fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn run_batches(inner: &Arc<Mutex<Pending>>) {
    loop {
        let batch = {
            let mut p = lock(inner);
            if p.queue.is_empty() {
                p.running = false;
                return;
            }
            p.stats.batches += 1;
            p.stats.fsyncs += p.queue.len() as u64;
            std::mem::take(&mut p.queue)
        };
        let mut tasks = Vec::with_capacity(batch.len());
        for (path, (target, waiters)) in batch {
            let handle = tokio::task::spawn_blocking(move || {
                let res = match &target {
                    Target::Dir => File::open(&path).and_then(|d| d.sync_all()),
                    Target::File(f) => f.sync_data(),
                };
                res.map_err(|e| (e.kind(), e.to_string()))
            });
            tasks.push((handle, waiters));
        }
        for (handle, waiters) in tasks {
            let res = match handle.await {
                Ok(r) => r,
                Err(e) => Err((io::ErrorKind::Other, e.to_string())),
            };
            for w in waiters {
                let _ = w.send(res.clone());
            }
        }
    }
}

#[cfg(test)]
#[path = "durable_tests.rs"]
mod tests;
