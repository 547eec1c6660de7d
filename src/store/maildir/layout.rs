//! Where things live in the data dir, and creating Maildir directories.
//!
//! Owns: the path rules of interface.md — `mail/<domain>/<local>/` (Maildir++ root = INBOX,
//! `.Name` folders with `cur/ new/ tmp/` and a `maildirfolder` marker, as Dovecot creates
//! them) and `state/index/<domain>/<local>/<folder>.idx`. Account names are checked here so
//! no caller can escape the data dir with `..` or `/` (path traversal).

use std::io;
use std::path::{Path, PathBuf};

use super::error::StoreError;
use super::folder_name::FolderPath;
use super::types::MailboxOwner;
use crate::durable::sync_dir;

/// Folders every account gets (RFC 6154 special-use names Thunderbird and others expect).
pub const DEFAULT_FOLDERS: [&str; 4] = ["Drafts", "Sent", "Junk", "Trash"];

/// Dovecot's marker file inside a Maildir++ sub-folder.
pub const MAILDIRFOLDER: &str = "maildirfolder";

/// Paths of the data dir.
#[derive(Debug, Clone)]
pub struct Layout {
    mail_root: PathBuf,
    index_root: PathBuf,
    state_root: PathBuf,
    home_root: PathBuf,
}

impl Layout {
    /// Paths below `data_dir`.
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            mail_root: data_dir.join("mail"),
            index_root: data_dir.join("state").join("index"),
            state_root: data_dir.join("state"),
            home_root: data_dir.join("home"),
        }
    }

    /// `mail/`
    pub fn mail_root(&self) -> &Path {
        &self.mail_root
    }

    /// `state/`
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    /// The account's Maildir root (= INBOX), after checking both name parts.
    pub fn account_dir(&self, owner: &MailboxOwner) -> Result<PathBuf, StoreError> {
        owner.check()?;
        Ok(self.mail_root.join(&owner.domain).join(&owner.local))
    }

    /// The account's home, `home/<domain>/<local>/`: outside its Maildir tree, as a Dovecot
    /// home is, so a Pigeonhole `sieve/` directory and `.dovecot.sieve` link copied in from
    /// Dovecot keep working and never show up as a mail folder.
    pub fn home_dir(&self, owner: &MailboxOwner) -> Result<PathBuf, StoreError> {
        owner.check()?;
        Ok(self.home_root.join(&owner.domain).join(&owner.local))
    }

    /// A folder's Maildir directory.
    pub fn folder_dir(&self, owner: &MailboxOwner, folder: &FolderPath) -> Result<PathBuf, StoreError> {
        let root = self.account_dir(owner)?;
        Ok(match folder {
            FolderPath::Inbox => root,
            FolderPath::Folder(d) => root.join(d),
        })
    }

    /// The account's index directory.
    pub fn index_dir(&self, owner: &MailboxOwner) -> Result<PathBuf, StoreError> {
        owner.check()?;
        Ok(self.index_root.join(&owner.domain).join(&owner.local))
    }

    /// A folder's index file.
    pub fn index_path(&self, owner: &MailboxOwner, folder: &FolderPath) -> Result<PathBuf, StoreError> {
        Ok(self.index_dir(owner)?.join(format!("{}.idx", folder.disk_name())))
    }

    /// A folder's header cache file (`header_cache.rs`), next to its index.
    pub fn header_cache_path(&self, owner: &MailboxOwner, folder: &FolderPath) -> Result<PathBuf, StoreError> {
        Ok(self.index_dir(owner)?.join(format!("{}.hdr", folder.disk_name())))
    }
}

/// Create a Maildir (`dir` with `cur/ new/ tmp/`, plus `maildirfolder` for a sub-folder).
/// Idempotent; returns true when anything was created (so the caller fsyncs parents).
/// Blocking.
pub fn create_maildir(dir: &Path, sub_folder: bool) -> Result<bool, StoreError> {
    let mut created = false;
    for d in [dir.to_path_buf(), dir.join("cur"), dir.join("new"), dir.join("tmp")] {
        match std::fs::create_dir(&d) {
            Ok(()) => created = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&d).map_err(|e| StoreError::io(&d, e))?;
                created = true;
            }
            Err(e) => return Err(StoreError::io(&d, e)),
        }
    }
    if sub_folder {
        let marker = dir.join(MAILDIRFOLDER);
        if !marker.exists() {
            std::fs::write(&marker, b"").map_err(|e| StoreError::io(&marker, e))?;
            created = true;
        }
    }
    if created {
        // The entries of cur/ new/ tmp/ live in `dir`; the empty directories themselves
        // hold nothing to flush (their creation is in the same journal transaction).
        sync_dir(dir)?;
        // The folder's own entry lives in its parent directory.
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(created)
}

/// True when `dir` looks like a Maildir (has `cur/`).
pub fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_cannot_escape_the_data_dir() {
        let l = Layout::new(Path::new("/data"));
        assert_eq!(
            l.account_dir(&MailboxOwner::new("alice", "example.org")).unwrap(),
            Path::new("/data/mail/example.org/alice")
        );
        for (local, domain) in [
            ("..", "example.org"),
            ("a/b", "example.org"),
            ("alice", ".."),
            ("", "example.org"),
            (".hidden", "example.org"),
            ("a\0", "example.org"),
        ] {
            assert!(l.account_dir(&MailboxOwner::new(local, domain)).is_err());
        }
        let owner = MailboxOwner::new("a", "b");
        let sent = FolderPath::from_api("Sent").unwrap();
        assert_eq!(l.index_path(&owner, &sent).unwrap(), Path::new("/data/state/index/b/a/.Sent.idx"));
        assert_eq!(l.index_path(&owner, &FolderPath::Inbox).unwrap(), Path::new("/data/state/index/b/a/INBOX.idx"));
        assert_eq!(l.home_dir(&owner).unwrap(), Path::new("/data/home/b/a"));
        assert!(l.home_dir(&MailboxOwner::new("..", "b")).is_err());
    }
}
