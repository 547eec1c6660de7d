//! The data-dir files every replica must hold identically, mirrored through the `kv` table.
//!
//! Owns: which files are shared, copying them between the data dir and the database, and
//! the start-up lock. With the mail in PostgreSQL each replica has a data dir of its own
//! (often empty at start), yet some files in it must be the same everywhere: DKIM keys (a
//! signature made with a key that is not in DNS fails), the SRS secret (a bounce must be
//! reversible on any replica), the certificates and the ACME account (one order, not one
//! per replica), and the generated postmaster (one password). The code that makes and
//! reads these files is unchanged; this module only makes them appear on every replica:
//!
//! - At start, [`Mirror::begin`] takes a session advisory lock (so replicas that start
//!   together do not each generate keys) and writes every stored file into the data dir.
//!   The server then loads or generates its files as it would alone, and
//!   [`StartGuard::finish`] uploads what is new or different and drops the lock.
//! - While running, [`Mirror::spawn`] syncs every [`SYNC_EVERY`], and at once when another
//!   replica stored a change (NOTIFY, see `kv.rs`): a local change (a DKIM
//!   rotation, a renewed certificate) is uploaded, a newer stored one is written here and
//!   reported so the server reloads it. Each upload names the version it replaces, so when
//!   two replicas change one file at once the first write wins and the other replica takes
//!   it instead of overwriting it.
//!
//! Nothing else leaves the data dir: mail, queue, spool, indexes, the lock, the format
//! file and the control socket stay per replica ([`is_shared`]). Deleting a file is not
//! mirrored: the next sync brings the stored copy back.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::kv::{KvEntry, KvPut};
use super::migrate::LOCK_CLASS;
use super::{PgStore, db_error};
use crate::datadir::PRIVATE_FILE_MODE;
use crate::store::StoreError;

/// How often a running replica syncs its shared files.
pub const SYNC_EVERY: Duration = Duration::from_secs(10);
/// `pg_advisory_lock(LOCK_CLASS, LOCK_SHARED_FILES)`: "a replica is creating shared files".
const LOCK_SHARED_FILES: i32 = 2;
/// How long a wake-up by NOTIFY waits before syncing: a replica that stores several files
/// at once (a key and its certificate, a DKIM generation) causes one sync, not one each.
const NOTIFY_SETTLE: Duration = Duration::from_millis(300);
/// Shared files are keys, certificates and small state files; anything larger was not
/// written by mailroom and is left alone.
const MAX_FILE: u64 = 1 << 20;
/// The directories whose whole content is shared.
const SHARED_DIRS: [&str; 2] = ["dkim", "tls"];
/// Single shared files: the generated postmaster, the SRS secret and the web session key
/// (so every replica accepts a session another issued).
const SHARED_FILES: [&str; 3] = ["accounts", "state/srs.key", crate::web::session::KEY_FILE];

/// Why shared files could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The database could not be reached or refused a statement.
    #[error("shared files in the database: {0}")]
    Store(#[from] StoreError),
    /// A file of the data dir could not be read or written.
    #[error("shared file {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// Whether `name` (a path relative to the data dir) is mirrored: `accounts`,
/// `state/srs.key`, `state/web-session.key`, or a file under `dkim/` or `tls/`. Names
/// that are not plain relative paths, or with a part starting with a dot (the temp files
/// of atomic writes), are not: a stored name can never reach outside these places.
pub fn is_shared(name: &str) -> bool {
    let mut parts = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => match part.to_str() {
                Some(p) if !p.starts_with('.') => parts.push(p),
                _ => return false,
            },
            _ => return false,
        }
    }
    match parts.as_slice() {
        [dir, _, ..] if SHARED_DIRS.contains(dir) => true,
        _ => SHARED_FILES.contains(&parts.join("/").as_str()),
    }
}

/// What this replica last agreed with the database on, per name.
struct Known {
    version: i64,
    bytes: Vec<u8>,
}

/// The mirror of one data dir. Cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    store: PgStore,
    root: PathBuf,
    known: Arc<Mutex<HashMap<String, Known>>>,
}

/// The start-up phase: the lock is held and the stored files are in the data dir.
/// Dropping it without [`finish`](StartGuard::finish) (a failed start) releases the lock
/// with its connection and uploads nothing.
pub struct StartGuard {
    mirror: Mirror,
    conn: PgConnection,
}

impl Mirror {
    /// Wait for the start-up lock, then write every stored shared file into `root`.
    pub async fn begin(store: PgStore, root: &Path) -> Result<StartGuard, MirrorError> {
        // A connection of its own, closed (not returned to the pool) at the end: the lock
        // lives exactly as long as it.
        let mut conn = store.pool().acquire().await.map_err(db_error)?.detach();
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(LOCK_SHARED_FILES)
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        let mirror = Mirror { store, root: root.to_path_buf(), known: Arc::default() };
        let stored = mirror.store.kv_list_since(&[]).await?;
        let written = mirror.write_local(stored).await?;
        if !written.is_empty() {
            tracing::info!(files = ?written, "shared files taken from the database");
        }
        Ok(StartGuard { mirror, conn })
    }

    /// One round: upload local changes, write newer stored files here. Returns the names
    /// written into the data dir (what the server has to reload).
    pub async fn sync_once(&self) -> Result<Vec<String>, MirrorError> {
        let root = self.root.clone();
        let local = tokio::task::spawn_blocking(move || scan(&root)).await.map_err(|e| MirrorError::Io {
            path: self.root.display().to_string(),
            source: std::io::Error::other(e),
        })??;
        let seen: Vec<(String, i64)> = self.lock().iter().map(|(n, k)| (n.clone(), k.version)).collect();
        let mut incoming: HashMap<String, KvEntry> =
            self.store.kv_list_since(&seen).await?.into_iter().map(|e| (e.name.clone(), e)).collect();
        // Deleting a shared file is not mirrored: one that is gone here comes back.
        let restore: Vec<KvEntry> = self
            .lock()
            .iter()
            .filter(|(name, _)| is_shared(name) && !local.contains_key(*name) && !incoming.contains_key(*name))
            .map(|(name, k)| KvEntry { name: name.clone(), value: k.bytes.clone(), version: k.version })
            .collect();
        incoming.extend(restore.into_iter().map(|e| (e.name.clone(), e)));
        for (name, bytes) in local {
            let base = self.lock().get(&name).map(|k| (k.version, k.bytes == bytes));
            if matches!(base, Some((_, true))) {
                continue;
            }
            if incoming.contains_key(&name) {
                if base.is_some() {
                    tracing::warn!(file = %name, "a shared file changed here and on another replica at once; keeping the other replica's");
                }
                continue;
            }
            match self.store.kv_put(&name, &bytes, base.map(|(v, _)| v)).await? {
                KvPut::Written(version) => {
                    tracing::info!(file = %name, version, "shared file stored in the database");
                    self.lock().insert(name, Known { version, bytes });
                }
                KvPut::Lost => {
                    tracing::warn!(file = %name, "a shared file changed here and on another replica at once; keeping the other replica's");
                    if let Some(entry) = self.store.kv_get(&name).await? {
                        incoming.insert(name, entry);
                    }
                }
            }
        }
        self.write_local(incoming.into_values().collect()).await
    }

    /// Sync every [`SYNC_EVERY`] until aborted; `on_change` gets the names written here.
    pub fn spawn<F>(self, on_change: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&[String]) + Send + Sync + 'static,
    {
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SYNC_EVERY) => {}
                    _ = self.store.kv_changed() => {
                        // Let the burst it came in end: one sync for a key and its certificate.
                        tokio::time::sleep(NOTIFY_SETTLE).await;
                    }
                }
                match self.sync_once().await {
                    Ok(written) => {
                        if failing {
                            tracing::info!("shared files in sync again");
                        }
                        failing = false;
                        if !written.is_empty() {
                            tracing::info!(files = ?written, "shared files written from the database (changed by another replica, or deleted here)");
                            on_change(&written);
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot sync shared files (retrying)");
                        }
                        failing = true;
                    }
                }
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write `entries` into the data dir (skipping unchanged ones and names that are not
    /// shared) and remember their versions; returns the names written.
    async fn write_local(&self, entries: Vec<KvEntry>) -> Result<Vec<String>, MirrorError> {
        let root = self.root.clone();
        let (entries, mut written) = tokio::task::spawn_blocking(move || {
            let mut written = Vec::new();
            for entry in entries.iter().filter(|e| is_shared(&e.name)) {
                if write_file(&root, &entry.name, &entry.value)? {
                    written.push(entry.name.clone());
                }
            }
            Ok::<_, MirrorError>((entries, written))
        })
        .await
        .map_err(|e| MirrorError::Io { path: self.root.display().to_string(), source: std::io::Error::other(e) })??;
        let mut known = self.lock();
        for entry in entries {
            // Remembered too (so asked for again only when it changes), never written.
            if !is_shared(&entry.name) {
                tracing::warn!(file = %entry.name, "ignoring a stored file that is not one of the shared files");
            }
            known.insert(entry.name, Known { version: entry.version, bytes: entry.value });
        }
        written.sort();
        Ok(written)
    }
}

impl StartGuard {
    /// The mirror, for the start-up code that reads it.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// Upload the files made during start-up, release the lock, and hand back the mirror
    /// for the periodic sync.
    pub async fn finish(self) -> Result<Mirror, MirrorError> {
        let StartGuard { mirror, conn } = self;
        mirror.sync_once().await?;
        // Closing the session releases its advisory lock.
        let _ = conn.close().await;
        Ok(mirror)
    }
}

/// Every shared file under `root`, by name.
fn scan(root: &Path) -> Result<HashMap<String, Vec<u8>>, MirrorError> {
    let mut out = HashMap::new();
    for name in SHARED_FILES {
        read_into(root, name, &mut out)?;
    }
    for dir in SHARED_DIRS {
        walk(root, dir, &mut out)?;
    }
    Ok(out)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError + '_ {
    move |source| MirrorError::Io { path: path.display().to_string(), source }
}

fn walk(root: &Path, rel: &str, out: &mut HashMap<String, Vec<u8>>) -> Result<(), MirrorError> {
    let dir = root.join(rel);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(&dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error(&dir))?;
        let Some(file) = entry.file_name().to_str().map(|f| format!("{rel}/{f}")) else { continue };
        if !is_shared(&file) {
            continue;
        }
        let kind = entry.file_type().map_err(io_error(&entry.path()))?;
        if kind.is_dir() {
            walk(root, &file, out)?;
        } else if kind.is_file() {
            read_into(root, &file, out)?;
        }
    }
    Ok(())
}

/// Read the regular file `name` under `root` into `out`, if it exists and is small.
fn read_into(root: &Path, name: &str, out: &mut HashMap<String, Vec<u8>>) -> Result<(), MirrorError> {
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_FILE => {}
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(&path)(e)),
    }
    match std::fs::read(&path) {
        Ok(bytes) => {
            out.insert(name.to_string(), bytes);
            Ok(())
        }
        // Replaced between the two calls: the next round sees it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(&path)(e)),
    }
}

/// Durably replace `root/name` with `bytes` (0600, directories 0700) unless it already
/// holds them; returns whether it wrote. `name` must be [`is_shared`].
fn write_file(root: &Path, name: &str, bytes: &[u8]) -> Result<bool, MirrorError> {
    let path = root.join(name);
    if std::fs::read(&path).is_ok_and(|current| current == bytes) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io_error(parent))?;
    }
    crate::durable::write_atomic(&path, bytes, PRIVATE_FILE_MODE)
        .map_err(|e| MirrorError::Io { path: path.display().to_string(), source: e.into() })?;
    Ok(true)
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
