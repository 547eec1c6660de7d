//! Expunged messages that other sessions may still read. RFC 2180 4.1.1: a session that
//! has not yet been told about an expunge may still FETCH the message by its old sequence
//! number, and the data should be there (Dovecot serves it; failing with
//! `NO [EXPUNGEISSUED]` broke clients under concurrent expunges).
//!
//! While any session has the mailbox selected (holds a [`ViewTicket`]), an expunge moves
//! the file out of `cur/` into `tmp/` under [`RETAINED_PREFIX`] instead of unlinking it:
//! Dovecot, mbsync and a rescan see it expunged at once (readers never look in `tmp/`), but
//! the index here still knows where it went. Every view registered at the time holds it;
//! each releases it once it has reported the EXPUNGE (or deselects), and the last release
//! unlinks the file. After a crash no view survives, so opening the mailbox sweeps the
//! leftovers: nothing retained is ever served as mail or grows without bound.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::StoreError;
use super::mailbox::{MaildirMailbox, Shared};
use super::reader::MessageReader;

/// Name prefix of retained files in `tmp/` (swept at open, skipped by the tmp cleaner).
pub(crate) const RETAINED_PREFIX: &str = "mailroom-expunged.";

/// The retained file name of a message.
pub(crate) fn retained_path(dir: &Path, uid_validity: u32, uid: u32) -> PathBuf {
    dir.join("tmp").join(format!("{RETAINED_PREFIX}{uid_validity}.{uid}"))
}

/// Remove the retained files a crash left behind (blocking; call when no view exists).
pub(crate) fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("tmp")) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(|n| n.starts_with(RETAINED_PREFIX)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The selected views of one mailbox and the expunged files they still hold.
#[derive(Default)]
pub(crate) struct Retained {
    next_view: u64,
    views: BTreeSet<u64>,
    files: HashMap<u32, RetainedFile>,
}

struct RetainedFile {
    path: PathBuf,
    size: u64,
    holders: BTreeSet<u64>,
}

impl Retained {
    /// Should an expunge keep the file (is any session's view open)?
    pub(crate) fn has_views(&self) -> bool {
        !self.views.is_empty()
    }

    /// Keep an expunged message's file for every view open now.
    pub(crate) fn keep(&mut self, uid: u32, path: PathBuf, size: u64) {
        self.files.insert(uid, RetainedFile { path, size, holders: self.views.clone() });
    }

    /// Where an expunged message's data still is, and its wire size.
    pub(crate) fn lookup(&self, uid: u32) -> Option<(PathBuf, u64)> {
        self.files.get(&uid).map(|f| (f.path.clone(), f.size))
    }

    /// `view` no longer needs the messages `done` says; returns the files nobody holds.
    fn release(&mut self, view: u64, done: impl Fn(u32) -> bool) -> Vec<PathBuf> {
        let mut unlink = Vec::new();
        self.files.retain(|uid, f| {
            if done(*uid) {
                f.holders.remove(&view);
            }
            if f.holders.is_empty() {
                unlink.push(std::mem::take(&mut f.path));
                return false;
            }
            true
        });
        unlink
    }
}

/// A session's registration as a reader of the mailbox (one per SELECT/EXAMINE); dropping
/// it releases every expunged file it held.
pub struct ViewTicket {
    shared: Arc<Shared>,
    id: u64,
}

impl ViewTicket {
    pub(crate) fn register(shared: &Arc<Shared>) -> ViewTicket {
        let mut r = lock(&shared.retained);
        r.next_view += 1;
        let id = r.next_view;
        r.views.insert(id);
        ViewTicket { shared: shared.clone(), id }
    }

    /// The session has reported these expunges (or never had them): their data may go.
    pub fn release(&self, uids: &[u32]) {
        if uids.is_empty() {
            return;
        }
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        self.release_where(|u| sorted.binary_search(&u).is_ok());
    }

    /// Release every retained message that is not in the view (`in_view` false): a view
    /// whose snapshot was taken after an expunge never had it.
    pub fn release_absent(&self, in_view: impl Fn(u32) -> bool) {
        self.release_where(|u| !in_view(u));
    }

    fn release_where(&self, done: impl Fn(u32) -> bool) {
        let unlink = lock(&self.shared.retained).release(self.id, done);
        unlink_all(unlink);
    }
}

impl Drop for ViewTicket {
    fn drop(&mut self) {
        let unlink = {
            let mut r = lock(&self.shared.retained);
            r.views.remove(&self.id);
            r.release(self.id, |_| true)
        };
        unlink_all(unlink);
    }
}

/// Unlink released files: one quick syscall each, done at once so that a session that has
/// reported an expunge leaves nothing behind (the tests check for the file).
fn unlink_all(paths: Vec<PathBuf>) {
    for p in paths {
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %p.display(), error = %e, "could not remove an expunged message");
        }
    }
}

impl MaildirMailbox {
    /// Open an expunged message a session may still read (see the module comment);
    /// `NoSuchMessage` when its data is really gone.
    pub(crate) async fn open_retained(&self, uid: u32) -> Result<MessageReader, StoreError> {
        let Some((path, size)) = lock(&self.shared.retained).lookup(uid) else {
            return Err(StoreError::NoSuchMessage(uid));
        };
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let physical = file.metadata().await.map_err(|e| StoreError::io(&path, e))?.len();
                Ok(MessageReader::new(file, size, physical != size))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NoSuchMessage(uid)),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }
}

pub(crate) fn lock(m: &std::sync::Mutex<Retained>) -> std::sync::MutexGuard<'_, Retained> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_holder_unlinks() {
        let mut r = Retained::default();
        r.views.extend([1, 2]);
        r.keep(7, PathBuf::from("/x/7"), 5);
        assert_eq!(r.lookup(7), Some((PathBuf::from("/x/7"), 5)));
        assert!(r.release(1, |u| u == 7).is_empty());
        assert!(r.release(2, |u| u == 8).is_empty());
        assert_eq!(r.release(2, |u| u == 7), [PathBuf::from("/x/7")]);
        assert_eq!(r.lookup(7), None);
    }
}
