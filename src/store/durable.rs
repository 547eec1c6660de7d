//! Durability: group-committed fsyncs and durable file writes.
//!
//! Owns: the rule "nothing is acknowledged before it is on disk". A Maildir delivery is only
//! durable once the file is fsynced, renamed, and the *directory* is fsynced (rename is a
//! directory change; ext4/xfs lose it on power failure otherwise). Directory fsyncs are the
//! serial bottleneck under load, so concurrent callers share them: [`GroupSync`] batches
//! "please fsync X" requests from every session and fsyncs each distinct directory (or index
//! log file) once per batch, waking every waiter. While one batch runs, new requests queue
//! for the next one — classic group commit, as databases do for their WAL.
//!
//! The batch worker is a short-lived tokio task started on demand (no long-lived task bound
//! to one runtime); the syscalls run on the blocking pool, in parallel across directories.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::error::StoreError;
use super::types::MessageBody;

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
    pub async fn sync_dir(&self, dir: &Path) -> Result<(), StoreError> {
        self.request(dir, Target::Dir).await
    }

    /// Make appended data of an open file durable; `key` identifies the file for batching.
    pub async fn sync_file(&self, key: &Path, file: Arc<File>) -> Result<(), StoreError> {
        self.request(key, Target::File(file)).await
    }

    /// Counters since start.
    pub fn stats(&self) -> SyncStats {
        lock(&self.inner).stats
    }

    async fn request(&self, key: &Path, target: Target) -> Result<(), StoreError> {
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
            Ok(Err((kind, msg))) => Err(StoreError::io(key, io::Error::new(kind, msg))),
            Err(_) => Err(StoreError::Background("fsync batch abandoned".into())),
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

/// Create `path` (which must not exist), write `prefix` then `body`, and fsync it. Blocking.
/// Returns the number of bytes written.
pub fn write_new_file(path: &Path, prefix: &[u8], body: &MessageBody) -> Result<u64, StoreError> {
    let io_err = |e| StoreError::io(path, e);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io_err)?;
    let written = (|| -> io::Result<u64> {
        file.write_all(prefix)?;
        let mut n = prefix.len() as u64;
        match body {
            MessageBody::Memory(b) => {
                file.write_all(b)?;
                n += b.len() as u64;
            }
            MessageBody::File { path: src, len } => {
                let copied = io::copy(&mut File::open(src)?.take(*len), &mut file)?;
                if copied != *len {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "spool file shorter than announced"));
                }
                n += copied;
            }
        }
        file.sync_data()?;
        Ok(n)
    })();
    match written {
        Ok(n) => Ok(n),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(io_err(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::default();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let sync = sync.clone();
            let d = dir.path().join(format!("d{}", i % 3));
            std::fs::create_dir_all(&d).unwrap();
            tasks.push(tokio::spawn(async move { sync.sync_dir(&d).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // The worker exits when idle and a new request starts a new one.
        sync.sync_dir(dir.path()).await.unwrap();
        let err = sync.sync_dir(&dir.path().join("missing")).await;
        assert!(matches!(err, Err(StoreError::Io { .. })));
    }

    #[test]
    fn write_new_file_refuses_to_overwrite_and_copies_spool_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::write(&spool, b"body\r\nextra").unwrap();
        let target = dir.path().join("msg");
        let body = MessageBody::File { path: spool.clone(), len: 6 };
        assert_eq!(write_new_file(&target, b"H: 1\r\n", &body).unwrap(), 12);
        assert_eq!(std::fs::read(&target).unwrap(), b"H: 1\r\nbody\r\n");
        assert!(write_new_file(&target, b"", &body).is_err());
        let short = MessageBody::File { path: spool, len: 99 };
        assert!(write_new_file(&dir.path().join("m2"), b"", &short).is_err());
        assert!(!dir.path().join("m2").exists());
    }
}
