//! `mailroom backup DEST`: a copy of the data dir, taken while the server runs, that is a
//! data dir as it is (stop the server, put the copy in place, start).
//!
//! Owns: what is copied, in which order, and how the copy becomes a backup. The order is
//! `format`, `accounts`, `dkim/`, `tls/`, `home/` (Sieve scripts), `state/`, `mail/`,
//! `queue/`. Never copied: `lock` (the running server's flock), `state/spool/` (messages still arriving, not
//! acknowledged), `state/control.sock`, the `tmp/` of every Maildir (deliveries in progress
//! and expunged messages kept for sessions, `tmp/mailroom-expunged.*`), and the short-lived
//! temporary files the server renames into place.
//!
//! Why `state/` before `mail/`: the indexes (`state/index/`) are copied first, so a
//! restored index knows at most what the copied Maildir holds. That is the state a crash
//! leaves, and the store repairs it when a mailbox is opened: a delivery is acknowledged
//! once its file is in `new/`, before any index record (store/maildir/deliver.rs), and APPEND,
//! COPY and MOVE rename files into `cur/` before appending their index records
//! (store/maildir/message_ops.rs), so after a crash the Maildir may hold more than the index. At
//! open the index is replayed (a torn last record, which a copy taken mid-append can also
//! end with, is dropped: store/maildir/index.rs) and the first sync has no trust in directory
//! mtimes, so it lists everything (store/maildir/mailbox_sync.rs): files the index does not know
//! get UIDs after its UIDNEXT, messages whose files are gone (moved or expunged while we
//! copied) become expunges after a second look, and flag letters that differ from the
//! index are adopted with a new modseq. Within a directory of `state/`, every `.idx` is
//! copied after the other files, so a folder's header cache (`.hdr`, keyed by UID only)
//! holds no UID its copied index does not know: a UID the restore hands out anew never
//! meets a stale cached header.
//!
//! How a Maildir is copied while files move is in `maildir.rs`; how each file is written
//! (streamed, fsynced, mode, owner and mtime kept) in `files.rs`. The backup is written
//! under a hidden temporary name next to DEST and renamed to DEST only when everything in
//! it is on disk, so a half-finished backup is never mistaken for a good one.

mod files;
mod maildir;

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

pub use maildir::MailStats;

use files::{TreeRules, Writer, copy_queue, copy_tree, io_error, set_dir_attributes};
use maildir::MailCopy;

/// Why a backup was refused or failed.
#[derive(Debug, Error)]
pub enum BackupError {
    #[error("{dest} exists and is not empty: give a new or an empty directory")]
    DestNotEmpty { dest: String },
    #[error("{dest} exists and is not a directory")]
    DestNotDirectory { dest: String },
    #[error("{dest} is inside the data dir {data_dir}: the backup would copy itself; put it elsewhere")]
    DestInsideDataDir { dest: String, data_dir: String },
    #[error("{parent}, where {dest} would go, does not exist")]
    DestParentMissing { dest: String, parent: String },
    #[error("{path} is not a mailroom data dir (it has neither mail/ nor format): check MAILROOM_DATA_DIR")]
    NotADataDir { path: String },
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "messages kept moving: after {passes} passes over {root} the last one still found mail from before the backup started; nothing was written, try again"
    )]
    NotSettled { passes: usize, root: String },
}

impl BackupError {
    /// True when the request itself was refused (nothing was read or written): the command
    /// exits 2 for these, as for configuration problems, and 1 for failures on the way.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BackupError::DestNotEmpty { .. }
                | BackupError::DestNotDirectory { .. }
                | BackupError::DestInsideDataDir { .. }
                | BackupError::DestParentMissing { .. }
                | BackupError::NotADataDir { .. }
        )
    }
}

/// What a finished backup holds.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Where it is.
    pub dest: PathBuf,
    /// Files written (messages, indexes, keys, queue items, ...).
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// The mail part.
    pub mail: MailStats,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backup written to {}: {} files, {} bytes, {} mailboxes, {:.1} s ({} messages, {} of them arrived during the backup; {} passes over mail/)",
            self.dest.display(),
            self.files,
            self.bytes,
            self.mail.mailboxes,
            self.elapsed.as_secs_f64(),
            self.mail.messages,
            self.mail.after_start,
            self.mail.passes
        )
    }
}

/// Copy the data dir at `data_dir` to the new directory `dest` (see the module doc).
pub fn run(data_dir: &Path, dest: &Path) -> Result<Summary, BackupError> {
    let (started, start) = (Instant::now(), SystemTime::now());
    let (data_dir, dest) = check_paths(data_dir, dest)?;
    let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = parent.join(format!(".{name}.partial-{:08x}", rand::random::<u32>()));
    // 0700 from the first instant: the copy holds private keys and mail.
    fs::DirBuilder::new().mode(0o700).create(&partial).map_err(io_error(&partial))?;
    let mut w = Writer::default();
    let copied =
        copy_all(&mut w, &data_dir, &partial, start).and_then(|mail| w.sync_dirs().map(|()| mail)).and_then(|mail| {
            fs::rename(&partial, &dest).map_err(io_error(&dest))?;
            crate::durable::sync_dir(&parent).map_err(std::io::Error::from).map_err(io_error(&parent))?;
            Ok(mail)
        });
    match copied {
        Ok(mail) => Ok(Summary { dest, files: w.files, bytes: w.bytes, elapsed: started.elapsed(), mail }),
        Err(e) => {
            let _ = fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

/// Everything, in the order the module doc gives, into `out` (which exists, empty).
fn copy_all(w: &mut Writer, data: &Path, out: &Path, start: SystemTime) -> Result<MailStats, BackupError> {
    set_dir_attributes(out, &fs::metadata(data).map_err(io_error(data))?)?;
    for file in ["format", "accounts"] {
        w.copy_path(&data.join(file), &out.join(file))?;
    }
    let plain = TreeRules { skip_dirs: &[], last_suffix: None };
    copy_tree(w, &data.join("dkim"), &out.join("dkim"), &plain)?;
    copy_tree(w, &data.join("tls"), &out.join("tls"), &plain)?;
    copy_tree(w, &data.join("home"), &out.join("home"), &plain)?;
    let state = TreeRules { skip_dirs: &["spool"], last_suffix: Some(".idx") };
    copy_tree(w, &data.join("state"), &out.join("state"), &state)?;
    let mail = MailCopy::new(w, &data.join("mail"), &out.join("mail"), start).run()?;
    copy_queue(w, &data.join("queue"), &out.join("queue"))?;
    Ok(mail)
}

/// Resolve both paths and refuse what cannot work: a data dir that is not one, a DEST
/// that is not new or empty, or one inside the data dir (the copy would copy itself).
/// Returns both as absolute paths without symbolic links.
fn check_paths(data_dir: &Path, dest: &Path) -> Result<(PathBuf, PathBuf), BackupError> {
    let not_data_dir = || BackupError::NotADataDir { path: data_dir.display().to_string() };
    let data = fs::canonicalize(data_dir).map_err(|_| not_data_dir())?;
    if !data.join("mail").is_dir() && !data.join("format").is_file() {
        return Err(not_data_dir());
    }
    let shown = dest.display().to_string();
    let (abs, empty) = match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            let abs = fs::canonicalize(dest).map_err(io_error(dest))?;
            let empty = fs::read_dir(&abs).map_err(io_error(dest))?.next().is_none();
            (abs, empty)
        }
        Ok(_) => return Err(BackupError::DestNotDirectory { dest: shown }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let missing =
                || BackupError::DestParentMissing { dest: shown.clone(), parent: parent.display().to_string() };
            let (Ok(parent), Some(name)) = (fs::canonicalize(parent), dest.file_name()) else {
                return Err(missing());
            };
            (parent.join(name), true)
        }
        Err(e) => return Err(io_error(dest)(e)),
    };
    if abs.starts_with(&data) {
        return Err(BackupError::DestInsideDataDir { dest: shown, data_dir: data.display().to_string() });
    }
    if !empty {
        return Err(BackupError::DestNotEmpty { dest: shown });
    }
    Ok((data, abs))
}

#[cfg(test)]
mod tests;
