//! Writing the copy: one file at a time, durably, with its mode, owner and mtime.
//!
//! Owns: how anything lands in the backup. Each file is created new (never overwriting),
//! streamed with `io::copy` (a 25 MiB message never sits in memory), given the source's
//! mode (0600 keys stay 0600), owner (when we may) and mtime (a Maildir file's mtime is its
//! INTERNALDATE), and fsynced. Every directory that received an entry is remembered and
//! fsynced once at the end through [`crate::datadir::sync_dir`], before the backup is
//! renamed into place. Also the plain recursive copy used for `dkim/`, `tls/` and `state/`,
//! and the queue's pairwise copy.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::BackupError;
use crate::durable::sync_dir;

/// Mode bits kept from the source: the permissions and the setuid, setgid and sticky bits.
const MODE_BITS: u32 = 0o7777;

/// Counters for the summary and the directories still to fsync.
#[derive(Debug, Default)]
pub(super) struct Writer {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Directories whose entries changed; fsynced by [`Writer::sync_dirs`].
    dirs: BTreeSet<PathBuf>,
}

/// `io::Error` with the path it is about.
pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// True for names the server writes only for a moment before renaming them into place
/// (`.name.tmp123`, `x.idx.tmp`, `x.tmp`, the data dir's `.write-probe`): a copy of one is
/// at best a stale duplicate of the file it becomes.
pub(super) fn is_transient(name: &str) -> bool {
    name.ends_with(".tmp") || (name.starts_with('.') && name.contains(".tmp")) || name == ".write-probe"
}

impl Writer {
    /// Create `dst` (mode and owner of `src_meta`) unless it exists.
    pub fn create_dir(&mut self, dst: &Path, src_meta: &Metadata) -> Result<(), BackupError> {
        let mode = src_meta.permissions().mode() & MODE_BITS;
        match fs::DirBuilder::new().mode(mode).create(dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(io_error(dst)(e)),
        }
        self.changed(dst);
        set_dir_attributes(dst, src_meta)
    }

    /// Copy the already open `src` to the new file `dst`: content streamed, then mode,
    /// owner, mtime, fsync. Returns the bytes copied.
    pub fn copy_open(&mut self, mut src: File, meta: &Metadata, dst: &Path) -> Result<u64, BackupError> {
        let err = io_error(dst);
        let mode = meta.permissions().mode() & MODE_BITS;
        let mut out = OpenOptions::new().write(true).create_new(true).mode(mode).open(dst).map_err(err)?;
        let written = (|| {
            let n = io::copy(&mut src, &mut out)?;
            out.set_permissions(fs::Permissions::from_mode(mode))?;
            out.set_modified(meta.modified()?)?;
            Ok(n)
        })();
        let n = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(dst);
                return Err(io_error(dst)(e));
            }
        };
        keep_owner(dst, std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid())))?;
        out.sync_all().map_err(io_error(dst))?;
        self.files += 1;
        self.bytes += n;
        self.changed(dst);
        Ok(n)
    }

    /// Copy the file at `src` to `dst`. `Ok(false)` when `src` is gone (removed between the
    /// listing and now): the caller decides whether that matters.
    pub fn copy_path(&mut self, src: &Path, dst: &Path) -> Result<bool, BackupError> {
        match open_regular(src)? {
            Some((file, meta)) => self.copy_open(file, &meta, dst).map(|_| true),
            None => Ok(false),
        }
    }

    /// Copy a symbolic link as a link (what it points at is not ours to copy).
    fn copy_symlink(&mut self, src: &Path, dst: &Path) -> Result<(), BackupError> {
        let target = match fs::read_link(src) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(src)(e)),
        };
        std::os::unix::fs::symlink(&target, dst).map_err(io_error(dst))?;
        self.files += 1;
        self.changed(dst);
        Ok(())
    }

    fn changed(&mut self, path: &Path) {
        if let Some(parent) = path.parent() {
            self.dirs.insert(parent.to_path_buf());
        }
    }

    /// fsync every directory that received an entry, deepest first, so that once the
    /// backup is renamed into place every name in it is on disk.
    pub fn sync_dirs(&mut self) -> Result<(), BackupError> {
        let mut dirs: Vec<PathBuf> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            sync_dir(&d).map_err(io::Error::from).map_err(io_error(&d))?;
        }
        Ok(())
    }
}

/// Give the directory `dst` the mode and owner of `src_meta`: the umask may have narrowed
/// the mode, and the owner changes only where we may.
pub(super) fn set_dir_attributes(dst: &Path, src_meta: &Metadata) -> Result<(), BackupError> {
    let mode = src_meta.permissions().mode() & MODE_BITS;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(io_error(dst))?;
    keep_owner(dst, std::os::unix::fs::chown(dst, Some(src_meta.uid()), Some(src_meta.gid())))
}

/// A refused chown is fine (an unprivileged backup of one's own files needs none); any
/// other failure is not.
fn keep_owner(path: &Path, result: io::Result<()>) -> Result<(), BackupError> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::PermissionDenied => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// Open `path` for reading with its metadata; `None` when it is gone or not a regular file.
pub(super) fn open_regular(path: &Path) -> Result<Option<(File, Metadata)>, BackupError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let meta = file.metadata().map_err(io_error(path))?;
    Ok(meta.is_file().then_some((file, meta)))
}

/// The entries of `dir` sorted by name (a stable order for the copy and the tests), or
/// `None` when `dir` is gone. Names that are not UTF-8 are kept as they are.
pub(super) fn list_dir(dir: &Path) -> Result<Option<Vec<fs::DirEntry>>, BackupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(dir)(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        out.push(e.map_err(io_error(dir))?);
    }
    out.sort_by_key(fs::DirEntry::file_name);
    Ok(Some(out))
}

/// What a plain recursive copy leaves out and which files of a directory go last.
pub(super) struct TreeRules<'a> {
    /// Directories (relative to the tree's root) not copied at all.
    pub skip_dirs: &'a [&'a str],
    /// Files with this suffix are copied after every other entry of their directory.
    pub last_suffix: Option<&'a str>,
}

/// Move the entries whose name ends with `suffix` to the end; a stable sort keeps the name
/// order inside both groups.
fn put_last(entries: &mut [fs::DirEntry], suffix: &str) {
    entries.sort_by_key(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(suffix)));
}

/// Copy the tree at `src` to `dst` (created with `src`'s mode): regular files, directories
/// and symbolic links, without transient files, sockets or anything in `rules.skip_dirs`.
/// Entries that vanish meanwhile are skipped. A missing `src` copies nothing.
pub(super) fn copy_tree(w: &mut Writer, src: &Path, dst: &Path, rules: &TreeRules) -> Result<(), BackupError> {
    let meta = match fs::metadata(src) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(src)(e)),
    };
    w.create_dir(dst, &meta)?;
    copy_tree_below(w, src, dst, Path::new(""), rules)
}

fn copy_tree_below(w: &mut Writer, src: &Path, dst: &Path, rel: &Path, rules: &TreeRules) -> Result<(), BackupError> {
    let Some(mut entries) = list_dir(src)? else {
        return Ok(());
    };
    if let Some(suffix) = rules.last_suffix {
        put_last(&mut entries, suffix);
    }
    for entry in entries {
        let name = entry.file_name();
        if name.to_str().is_some_and(is_transient) {
            continue;
        }
        let (from, to, rel) = (entry.path(), dst.join(&name), rel.join(&name));
        let kind = match entry.file_type() {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&from)(e)),
        };
        if kind.is_dir() {
            if rules.skip_dirs.iter().any(|d| Path::new(d) == rel) {
                continue;
            }
            match fs::metadata(&from) {
                Ok(meta) => w.create_dir(&to, &meta)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&from)(e)),
            }
            copy_tree_below(w, &from, &to, &rel, rules)?;
        } else if kind.is_file() {
            w.copy_path(&from, &to)?;
        } else if kind.is_symlink() {
            w.copy_symlink(&from, &to)?;
        }
        // Sockets (state/control.sock), fifos, devices: meaningless in a copy.
    }
    Ok(())
}

/// Copy the outbound queue (`<id>.msg` + `<id>.env` per item, spool.rs). An item is
/// copied only whole: its envelope is opened first and held, then its message copied,
/// then the envelope written. A message that is gone by then was delivered meanwhile, so
/// neither is copied; one delivered after its message was copied is in the backup and
/// would be sent again from a restore. A `.msg` alone is an enqueue never acknowledged
/// (recovery would delete it) and is left out; a `.env.broken` keeps its `.msg`.
pub(super) fn copy_queue(w: &mut Writer, src: &Path, dst: &Path) -> Result<(), BackupError> {
    let meta = match fs::metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(src)(e)),
    };
    w.create_dir(dst, &meta)?;
    let Some(entries) = list_dir(src)? else {
        return Ok(());
    };
    let names: HashSet<String> = entries.iter().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect();
    for entry in &entries {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if is_transient(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".env") {
            let Some((envelope, env_meta)) = open_regular(&src.join(&name))? else {
                continue;
            };
            let msg = format!("{stem}.msg");
            if w.copy_path(&src.join(&msg), &dst.join(&msg))? {
                w.copy_open(envelope, &env_meta, &dst.join(&name))?;
            }
        } else if let Some(stem) = name.strip_suffix(".msg") {
            if names.contains(&format!("{stem}.env.broken")) {
                w.copy_path(&src.join(&name), &dst.join(&name))?;
            }
        } else {
            w.copy_path(&src.join(&name), &dst.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_keep_mode_and_mtime_and_are_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("key.pem");
        fs::write(&src, b"secret").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        File::options().write(true).open(&src).unwrap().set_modified(old).unwrap();
        let mut w = Writer::default();
        let dst = tmp.path().join("copy.pem");
        assert!(w.copy_path(&src, &dst).unwrap());
        assert_eq!(fs::read(&dst).unwrap(), b"secret");
        assert_eq!(mode(&dst), 0o600);
        assert_eq!(fs::metadata(&dst).unwrap().modified().unwrap(), old);
        assert_eq!((w.files, w.bytes), (1, 6));
        assert!(w.copy_path(&src, &dst).is_err(), "an existing file is never replaced");
        assert!(!w.copy_path(&tmp.path().join("gone"), &tmp.path().join("x")).unwrap());
        w.sync_dirs().unwrap();
    }

    #[test]
    fn tree_copy_leaves_out_transients_sockets_and_skipped_dirs_and_puts_suffix_last() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("state");
        fs::create_dir_all(src.join("index/d/l")).unwrap();
        fs::create_dir_all(src.join("spool")).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o700)).unwrap();
        for f in ["index/d/l/INBOX.idx", "index/d/l/INBOX.hdr", "srs.key", "spool/x", ".write-probe"] {
            fs::write(src.join(f), f).unwrap();
        }
        fs::write(src.join("index/d/l/INBOX.idx.tmp"), b"half").unwrap();
        fs::write(src.join(".srs.key.tmp42"), b"half").unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(src.join("control.sock")).unwrap();
        let dst = tmp.path().join("copy");
        let mut w = Writer::default();
        let rules = TreeRules { skip_dirs: &["spool"], last_suffix: Some(".idx") };
        copy_tree(&mut w, &src, &dst, &rules).unwrap();
        let mut found: Vec<String> = files_below(&dst);
        found.sort();
        assert_eq!(found, ["index/d/l/INBOX.hdr", "index/d/l/INBOX.idx", "srs.key"]);
        assert_eq!(mode(&dst), 0o700);
        let mut entries = list_dir(&src.join("index/d/l")).unwrap().unwrap();
        put_last(&mut entries, ".idx");
        let order: Vec<String> = entries.iter().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(order, ["INBOX.hdr", "INBOX.idx.tmp", "INBOX.idx"]);
    }

    /// Every file below `root`, as a relative path (unsorted).
    pub(in crate::backup) fn files_below(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        out
    }

    #[test]
    fn queue_items_are_copied_whole_or_not_at_all() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("queue");
        fs::create_dir(&src).unwrap();
        for (f, c) in [
            ("A.msg", "a"),
            ("A.env", "{a}"),
            ("B.msg", "orphan: never acknowledged"),
            ("C.env", "{c, its message delivered meanwhile}"),
            ("D.msg", "d"),
            ("D.env.broken", "{"),
            (".A.env.tmp7", "{half"),
        ] {
            fs::write(src.join(f), c).unwrap();
        }
        let dst = tmp.path().join("copy");
        let mut w = Writer::default();
        copy_queue(&mut w, &src, &dst).unwrap();
        let mut found = files_below(&dst);
        found.sort();
        assert_eq!(found, ["A.env", "A.msg", "D.env.broken", "D.msg"]);
    }
}
