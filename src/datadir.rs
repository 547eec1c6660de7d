//! The data dir: its layout (interface.md), its permissions, and the lock that keeps
//! a second server off it.
//!
//! Everything persistent lives under one directory so that a container volume or a
//! PersistentVolumeClaim carries the whole server. It is created 0700 (mail, keys and
//! certificates are private) and locked with an advisory `flock` on `data/lock` held
//! for the life of the process: two writers on one Maildir and queue would corrupt
//! indexes and deliver twice.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::durable::write_atomic;

/// The mode of files that hold secrets or server state (keys, certificates, the SRS
/// secret, the generated postmaster, the format file): readable by the server alone.
/// Written through [`write_atomic`](crate::durable::write_atomic).
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Sub-directories created at start.
pub const LAYOUT: &[&str] = &["mail", "queue", "dkim", "tls", "state"];

/// The data-dir format this binary writes, recorded in `data/format`. A newer binary
/// migrates an older data dir at start (and then records its own number); an older
/// binary refuses a newer data dir instead of misreading it. A data dir from before the
/// file existed is format 1. Format 2: mailbox index logs may hold `R` records (the
/// `\Recent` claim), which format-1 binaries would take for damage and rebuild the index
/// with a new UIDVALIDITY; format 1 -> 2 needs no migration.
pub const FORMAT: u32 = 2;
const FORMAT_FILE: &str = "format";

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("data dir {path}: cannot create or use it: {source} (set MAILROOM_DATA_DIR to a writable directory)")]
    Unusable { path: String, source: io::Error },
    #[error(
        "data dir {path} is in use by another mailroom process (lock {lock} is held); stop it first or use another MAILROOM_DATA_DIR"
    )]
    Locked { path: String, lock: String },
    #[error(
        "data dir {path} has format {found}, written by a newer mailroom; this one understands format {FORMAT} and older: run the newer version (or restore a backup made for this one)"
    )]
    TooNew { path: String, found: u32 },
    #[error("data dir {path}: {file} does not hold a format number: {content:?}")]
    BadFormat { path: String, file: String, content: String },
}

/// An opened, locked data dir. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Create the layout (0700) if needed, check it is writable, and take the lock.
    pub fn open(root: &Path) -> Result<DataDir, DataDirError> {
        let unusable = |e: io::Error| DataDirError::Unusable { path: root.display().to_string(), source: e };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(unusable)?;
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(unusable)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked {
                    path: root.display().to_string(),
                    lock: lock_path.display().to_string(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(unusable(e)),
        }
        for sub in LAYOUT {
            let dir = root.join(sub);
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(unusable)?;
        }
        // Tighten a pre-existing root that was created with a looser umask.
        let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        // Probe writability now, so a read-only volume fails at start, not at the
        // first message.
        let probe = root.join("state").join(".write-probe");
        fs::write(&probe, b"ok").map_err(unusable)?;
        let _ = fs::remove_file(&probe);
        check_format(root)?;
        remove_spool_leftovers(&spool_dir(root));
        Ok(DataDir { root: root.to_path_buf(), _lock: lock })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn mail(&self) -> PathBuf {
        self.root.join("mail")
    }
    pub fn queue(&self) -> PathBuf {
        self.root.join("queue")
    }
    pub fn dkim(&self) -> PathBuf {
        self.root.join("dkim")
    }
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
}

/// Where messages that are still arriving wait (SMTP DATA, big IMAP APPEND literals):
/// `<data>/state/spool`. It belongs to this replica's data dir, not to the mail store:
/// nothing in it has been acknowledged, and a store on another backend still spools here.
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("spool")
}

/// Empty the spool of a process that died (SIGKILL, OOM, power) while messages were
/// arriving or being downloaded: nothing in it was acknowledged (the sender or the
/// fetched server still has the message) and no process of ours can be writing it, since
/// we hold the lock. Without this each big message cut mid-transfer would stay on disk
/// for good. Best effort: a file that cannot be removed costs space, not mail.
fn remove_spool_leftovers(spool: &Path) {
    let Ok(entries) = fs::read_dir(spool) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Read `data/format` (absent: format 1), refuse a newer one, migrate an older one, and
/// record [`FORMAT`]. Runs under the data-dir lock.
fn check_format(root: &Path) -> Result<u32, DataDirError> {
    let file = root.join(FORMAT_FILE);
    let found = match fs::read_to_string(&file) {
        Ok(text) => text.trim().parse::<u32>().map_err(|_| DataDirError::BadFormat {
            path: root.display().to_string(),
            file: file.display().to_string(),
            content: text.chars().take(40).collect(),
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 1,
        Err(e) => return Err(DataDirError::Unusable { path: root.display().to_string(), source: e }),
    };
    if found > FORMAT {
        return Err(DataDirError::TooNew { path: root.display().to_string(), found });
    }
    // Migrations from `found` up to FORMAT go here, one function per step, each safe to
    // run again after a crash half-way. 1 -> 2 only adds a record type: nothing to do.
    if found != FORMAT || !file.exists() {
        write_atomic(&file, format!("{FORMAT}\n").as_bytes(), PRIVATE_FILE_MODE)
            .map_err(|e| DataDirError::Unusable { path: root.display().to_string(), source: e.into() })?;
    }
    Ok(FORMAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let dd = DataDir::open(&root).unwrap();
        for sub in LAYOUT {
            assert!(dd.root().join(sub).is_dir(), "{sub}");
        }
        let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_crashed_process_spool_is_emptied_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = spool_dir(tmp.path());
        fs::create_dir_all(&spool).unwrap();
        for name in ["RFY37LPEEAC7.118c78f4.spool", "fetch-1", "import-2"] {
            fs::write(spool.join(name), b"half a message").unwrap();
        }
        let _dd = DataDir::open(tmp.path()).unwrap();
        assert_eq!(fs::read_dir(&spool).unwrap().count(), 0);
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDir::open(tmp.path()).unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("in use by another mailroom process"), "{err}");
        drop(first);
        DataDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn format_is_recorded_and_a_newer_one_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        drop(DataDir::open(&root).unwrap());
        assert_eq!(fs::read_to_string(root.join("format")).unwrap(), format!("{FORMAT}\n"));
        fs::write(root.join("format"), format!("{}\n", FORMAT + 1)).unwrap();
        let err = DataDir::open(&root).unwrap_err().to_string();
        assert!(err.contains("written by a newer mailroom"), "{err}");
        fs::write(root.join("format"), "banana").unwrap();
        assert!(DataDir::open(&root).unwrap_err().to_string().contains("does not hold a format number"));
        fs::remove_file(root.join("format")).unwrap();
        drop(DataDir::open(&root).expect("a data dir from before the file is format 1"));
    }

    #[test]
    fn the_format_file_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        drop(DataDir::open(tmp.path()).unwrap());
        let p = tmp.path().join(FORMAT_FILE);
        assert_eq!(fs::read(&p).unwrap(), format!("{FORMAT}\n").as_bytes());
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
