//! The Maildir part of a backup: every message exactly once, while the server moves files.
//!
//! Owns: copying `mail/` under the server's feet. Files move while we walk: a reader moves
//! `new/` into `cur/`, a flag change renames a file within `cur/`, IMAP MOVE renames it into
//! another folder's `cur/` (store/maildir/message_ops.rs), an expunge moves it to `tmp/` or unlinks
//! it. What never changes is the base name (before `:2,`, store/maildir/filename.rs): MOVE keeps it
//! too, unless the destination already has it. So:
//!
//! - a message is keyed by its base name, and one folder never gets a base name twice;
//! - `new/` is listed before `cur/`, so a file moving from one to the other between the two
//!   listings is seen at least once;
//! - a file gone between the listing and its opening is looked for again, by base name,
//!   in the same folder's `new/` and `cur/`;
//! - a file met in a second folder that is the very file (same base name, device and inode)
//!   copied from a first one was moved after we copied it, and is not copied again;
//! - after a pass over every folder, the tree is walked again and whatever was missed
//!   (moved into a folder already copied, renamed while `readdir` ran) is added, until a
//!   pass neither adds a message older than the backup's start nor loses track of one it
//!   listed (a message that left its folder may have gone to one already walked).
//!   Messages that arrived during the backup are copied when met but do not keep the loop
//!   going, so a busy server still settles; the passes are bounded and a tree that never
//!   settles fails the backup. What no walk of listings can see is a message moved against
//!   the walk (into a folder already listed, out of one not listed yet) in every pass that
//!   has not copied it: that takes a client moving the same message again and again,
//!   timed to the walk.
//!
//! `tmp/` is never copied: it holds deliveries not yet acknowledged and expunged messages
//! kept for sessions (store/maildir/retained.rs). Folder-level files (`dovecot-keywords`,
//! `subscriptions`, `maildirfolder`, ...) are copied last, so the keyword table is at least
//! as new as the letters in every copied file name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::BackupError;
use super::files::{Writer, io_error, is_transient, list_dir, open_regular};
use crate::store::maildir::{TRASHED_PREFIX, is_maildir, parse_file_name};

/// Passes over the mail tree before giving up. The first copies; the next ones only pick
/// up what moved past the walk, and the second or third usually finds nothing to do.
pub(super) const MAX_PASSES: usize = 10;
/// How often one message is looked for again after it vanished before it could be opened.
const LOOK_AGAIN: usize = 4;

/// The two Maildir sub-directories that hold messages, in the order they are listed.
const MESSAGE_DIRS: [&str; 2] = ["new", "cur"];

/// What the mail copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MailStats {
    /// Folders (Maildirs) in the backup.
    pub mailboxes: usize,
    /// Message files copied.
    pub messages: u64,
    /// Of those, messages whose file is not older than the backup's start (arrived during it).
    pub after_start: u64,
    /// Passes over the tree.
    pub passes: usize,
}

/// Called with a message's path just before it is opened (a seam for tests).
type OpenHook<'w> = Box<dyn FnMut(&Path) + 'w>;

/// A directory of the mail tree.
struct Found {
    meta: Metadata,
    /// For a Maildir folder: its account, the outermost Maildir above it (or itself).
    account: Option<PathBuf>,
}

/// A message file opened for copying, under the name it had when opened.
struct Opened {
    file: File,
    meta: Metadata,
    sub: &'static str,
    name: String,
}

/// One copy of `mail/` (see the module doc).
pub(super) struct MailCopy<'w> {
    src: PathBuf,
    dst: PathBuf,
    start: SystemTime,
    writer: &'w mut Writer,
    /// Every directory met in any pass, by path relative to `src`.
    dirs: BTreeMap<PathBuf, Found>,
    /// Base names copied into each folder.
    copied: HashMap<PathBuf, HashSet<String>>,
    /// (base name, device, inode) of every message copied, per account.
    files: HashMap<PathBuf, HashSet<(String, u64, u64)>>,
    stats: MailStats,
    /// Called with a message's path just before it is opened: a seam for tests that move
    /// files at exactly that moment.
    before_open: Option<OpenHook<'w>>,
}

impl<'w> MailCopy<'w> {
    /// Copy `src` (the data dir's `mail/`) to `dst`; messages whose file is older than
    /// `start` must not be missed.
    pub fn new(writer: &'w mut Writer, src: &Path, dst: &Path, start: SystemTime) -> MailCopy<'w> {
        MailCopy {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            start,
            writer,
            dirs: BTreeMap::new(),
            copied: HashMap::new(),
            files: HashMap::new(),
            stats: MailStats::default(),
            before_open: None,
        }
    }

    /// Run the passes, then copy the folder-level files.
    pub fn run(mut self) -> Result<MailStats, BackupError> {
        if !self.src.is_dir() {
            return Ok(self.stats);
        }
        let mut settled = false;
        for pass in 1..=MAX_PASSES {
            self.stats.passes = pass;
            let unsettled = self.pass()?;
            if pass > 1 && unsettled == 0 {
                settled = true;
                break;
            }
        }
        if !settled {
            return Err(BackupError::NotSettled { passes: MAX_PASSES, root: self.src.display().to_string() });
        }
        let rels: Vec<PathBuf> = self.dirs.keys().cloned().collect();
        for rel in &rels {
            self.copy_plain_files(rel)?;
        }
        self.stats.mailboxes = self.dirs.values().filter(|d| d.account.is_some()).count();
        Ok(self.stats)
    }

    /// Walk the tree once; returns how many messages older than the start it added or
    /// lost track of (either calls for another pass).
    fn pass(&mut self) -> Result<u64, BackupError> {
        let mut found = Vec::new();
        self.discover(PathBuf::new(), None, &mut found)?;
        let mut unsettled = 0;
        for (rel, dir) in found {
            self.writer.create_dir(&self.dst.join(&rel), &dir.meta)?;
            if let Some(account) = &dir.account {
                unsettled += self.copy_folder(&rel, account)?;
            }
            self.dirs.entry(rel).or_insert(dir);
        }
        Ok(unsettled)
    }

    /// The directories below `rel` (itself first, then its children in name order), with
    /// the account of each Maildir. Folders being deleted are left out; a directory that
    /// vanished meanwhile was renamed or deleted and is met under its new name, if any.
    fn discover(
        &self,
        rel: PathBuf,
        account: Option<&Path>,
        out: &mut Vec<(PathBuf, Found)>,
    ) -> Result<(), BackupError> {
        let dir = self.src.join(&rel);
        let meta = match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&dir)(e)),
        };
        let folder = is_maildir(&dir);
        let account = match account {
            Some(a) => Some(a.to_path_buf()),
            None if folder => Some(rel.clone()),
            None => None,
        };
        out.push((rel.clone(), Found { meta, account: if folder { account.clone() } else { None } }));
        let Some(entries) = list_dir(&dir)? else {
            return Ok(());
        };
        for e in entries {
            let name = e.file_name();
            let skip = name
                .to_str()
                .is_some_and(|n| n.starts_with(TRASHED_PREFIX) || (folder && ["cur", "new", "tmp"].contains(&n)));
            if skip || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            self.discover(rel.join(&name), account.as_deref(), out)?;
        }
        Ok(())
    }

    /// Copy the messages of one folder not copied yet; returns how many of them are older
    /// than the start, plus how many listed ones it could not find any more.
    fn copy_folder(&mut self, rel: &Path, account: &Path) -> Result<u64, BackupError> {
        let (dir, out) = (self.src.join(rel), self.dst.join(rel));
        let listing = list_messages(&dir)?;
        for sub in ["cur", "new", "tmp"] {
            match fs::metadata(dir.join(sub)) {
                Ok(meta) => self.writer.create_dir(&out.join(sub), &meta)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&dir.join(sub))(e)),
            }
        }
        let mut unsettled = 0;
        for (sub, name) in listing {
            let Some(base) = parse_file_name(&name).map(|p| p.base.to_string()) else {
                continue;
            };
            if self.copied.get(rel).is_some_and(|s| s.contains(&base)) {
                continue;
            }
            let Some(msg) = self.open_message(&dir, sub, name, &base)? else {
                unsettled += 1;
                continue;
            };
            let id = (base, msg.meta.dev(), msg.meta.ino());
            if self.files.get(account).is_some_and(|s| s.contains(&id)) {
                // The file we copied from another folder, moved here since.
                continue;
            }
            let is_old = msg.meta.modified().is_ok_and(|m| m < self.start);
            self.writer.copy_open(msg.file, &msg.meta, &out.join(msg.sub).join(&msg.name))?;
            self.copied.entry(rel.to_path_buf()).or_default().insert(id.0.clone());
            self.files.entry(account.to_path_buf()).or_default().insert(id);
            self.stats.messages += 1;
            if is_old {
                unsettled += 1;
            } else {
                self.stats.after_start += 1;
            }
        }
        Ok(unsettled)
    }

    /// Open a listed message; if it is gone, find its base name again in the folder (it was
    /// moved from `new/` to `cur/` or renamed by a flag change). `None` when the folder no
    /// longer has it (moved to another folder, or expunged).
    fn open_message(
        &mut self,
        dir: &Path,
        mut sub: &'static str,
        mut name: String,
        base: &str,
    ) -> Result<Option<Opened>, BackupError> {
        for _ in 0..LOOK_AGAIN {
            let path = dir.join(sub).join(&name);
            if let Some(hook) = self.before_open.as_mut() {
                hook(&path);
            }
            if let Some((file, meta)) = open_regular(&path)? {
                return Ok(Some(Opened { file, meta, sub, name }));
            }
            let again =
                list_messages(dir)?.into_iter().find(|(_, n)| parse_file_name(n).is_some_and(|p| p.base == base));
            match again {
                Some((s, n)) => (sub, name) = (s, n),
                None => return Ok(None),
            }
        }
        // Renamed on every look: a later pass meets it under its newest name.
        Ok(None)
    }

    /// Copy the regular files of one directory (a folder's `dovecot-keywords`,
    /// `maildirfolder`, an account's `subscriptions`), once, after every message.
    fn copy_plain_files(&mut self, rel: &Path) -> Result<(), BackupError> {
        let (dir, out) = (self.src.join(rel), self.dst.join(rel));
        let Some(entries) = list_dir(&dir)? else {
            return Ok(());
        };
        for e in entries {
            let name = e.file_name();
            // Dovecot's dot-locks are held only for a moment; a copied one would be stale.
            let transient = name.to_str().is_none_or(|n| is_transient(n) || n.ends_with(".lock"));
            if transient || !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            self.writer.copy_path(&dir.join(&name), &out.join(&name))?;
        }
        Ok(())
    }
}

/// The message file names of a folder, `new/` first then `cur/`; names the store does not
/// read as messages (hidden, not UTF-8) are left out, as the store leaves them out.
fn list_messages(dir: &Path) -> Result<Vec<(&'static str, String)>, BackupError> {
    let mut out = Vec::new();
    for sub in MESSAGE_DIRS {
        let Some(entries) = list_dir(&dir.join(sub))? else {
            continue;
        };
        for e in entries {
            if let Some(name) = e.file_name().to_str()
                && parse_file_name(name).is_some()
            {
                out.push((sub, name.to_string()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::files::tests::files_below;
    use super::*;
    use std::time::Duration;

    /// An hour before the backup: a message acknowledged before it started.
    fn old() -> SystemTime {
        SystemTime::now() - Duration::from_secs(3600)
    }

    fn folder(root: &Path, rel: &str) -> PathBuf {
        let dir = root.join(rel);
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        dir
    }

    fn put(dir: &Path, sub_name: &str, mtime: SystemTime) {
        let path = dir.join(sub_name);
        fs::write(&path, format!("Message-ID: <{sub_name}>\r\n\r\nbody\r\n")).unwrap();
        File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    }

    /// Message files in the copy, as `folder/sub/name`, sorted.
    fn messages(root: &Path) -> Vec<String> {
        let mut out: Vec<String> = files_below(root)
            .into_iter()
            .filter(|f| ["/cur/", "/new/", "/tmp/"].iter().any(|d| f.contains(d)))
            .collect();
        out.sort();
        out
    }

    fn copy(src: &Path, dst: &Path, hook: Option<OpenHook<'static>>) -> Result<MailStats, BackupError> {
        let mut w = Writer::default();
        let mut c = MailCopy::new(&mut w, src, dst, SystemTime::now());
        c.before_open = hook;
        let stats = c.run()?;
        w.sync_dirs()?;
        Ok(stats)
    }

    /// A hook that runs `action` once, when the file named `when` is about to be opened.
    fn once_at(when: &'static str, action: impl FnOnce() + 'static) -> OpenHook<'static> {
        let mut action = Some(action);
        Box::new(move |p: &Path| {
            if p.ends_with(when)
                && let Some(a) = action.take()
            {
                a();
            }
        })
    }

    fn all(mut hooks: Vec<OpenHook<'static>>) -> OpenHook<'static> {
        Box::new(move |p: &Path| hooks.iter_mut().for_each(|h| h(p)))
    }

    #[test]
    fn a_file_renamed_while_we_walk_is_copied_once_under_its_new_name() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("mail"), tmp.path().join("copy"));
        let inbox = folder(&src, "d/l");
        put(&inbox, "new/1.M1P1Q1.h,S=9,W=9", old());
        put(&inbox, "cur/1.M2P1Q2.h,S=9,W=9:2,", old());
        let (i1, i2) = (inbox.clone(), inbox.clone());
        let hooks = vec![
            // A reader moves the new message into cur/ just before we open it...
            once_at("new/1.M1P1Q1.h,S=9,W=9", move || {
                fs::rename(i1.join("new/1.M1P1Q1.h,S=9,W=9"), i1.join("cur/1.M1P1Q1.h,S=9,W=9:2,S")).unwrap()
            }),
            // ...and a STORE renames the other within cur/.
            once_at("cur/1.M2P1Q2.h,S=9,W=9:2,", move || {
                fs::rename(i2.join("cur/1.M2P1Q2.h,S=9,W=9:2,"), i2.join("cur/1.M2P1Q2.h,S=9,W=9:2,FS")).unwrap()
            }),
        ];
        let stats = copy(&src, &dst, Some(all(hooks))).unwrap();
        assert_eq!(messages(&dst), ["d/l/cur/1.M1P1Q1.h,S=9,W=9:2,S", "d/l/cur/1.M2P1Q2.h,S=9,W=9:2,FS"]);
        assert_eq!((stats.messages, stats.after_start, stats.mailboxes, stats.passes), (2, 0, 1, 2));
        let copied = dst.join("d/l/cur/1.M1P1Q1.h,S=9,W=9:2,S");
        let original = inbox.join("cur/1.M1P1Q1.h,S=9,W=9:2,S");
        assert_eq!(fs::read(&copied).unwrap(), fs::read(&original).unwrap());
        assert_eq!(
            fs::metadata(&copied).unwrap().modified().unwrap(),
            fs::metadata(&original).unwrap().modified().unwrap(),
            "the mtime is the INTERNALDATE"
        );
    }

    #[test]
    fn a_message_moved_between_folders_while_we_walk_is_copied_exactly_once() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("mail"), tmp.path().join("copy"));
        let inbox = folder(&src, "d/l");
        let archive = folder(&src, "d/l/.Archive");
        let zed = folder(&src, "d/l/.Zed");
        // Moved before we open it: found in .Archive, which comes later.
        put(&inbox, "cur/a:2,", old());
        // Moved right after we copied it: the same file met in .Archive is not copied again.
        put(&inbox, "cur/b:2,", old());
        put(&inbox, "cur/c:2,", old());
        // Moved from a folder not copied yet into one already copied: the next pass has it.
        put(&zed, "cur/z:2,F", old());
        // The same base name in two folders as two files (a Maildir copied by hand): both.
        put(&inbox, "cur/twin:2,", old());
        put(&archive, "cur/twin:2,S", old());
        let (i, a) = (inbox.clone(), archive.clone());
        let (i2, a2) = (inbox.clone(), archive.clone());
        let (i3, z3) = (inbox.clone(), zed.clone());
        let hooks = vec![
            once_at("d/l/cur/a:2,", move || fs::rename(i.join("cur/a:2,"), a.join("cur/a:2,")).unwrap()),
            once_at("d/l/cur/c:2,", move || fs::rename(i2.join("cur/b:2,"), a2.join("cur/b:2,S")).unwrap()),
            once_at(".Archive/cur/twin:2,S", move || fs::rename(z3.join("cur/z:2,F"), i3.join("cur/z:2,F")).unwrap()),
        ];
        let stats = copy(&src, &dst, Some(all(hooks))).unwrap();
        assert_eq!(
            messages(&dst),
            [
                "d/l/.Archive/cur/a:2,",
                "d/l/.Archive/cur/twin:2,S",
                "d/l/cur/b:2,",
                "d/l/cur/c:2,",
                "d/l/cur/twin:2,",
                "d/l/cur/z:2,F",
            ]
        );
        assert_eq!((stats.messages, stats.mailboxes, stats.passes), (6, 3, 3));
    }

    #[test]
    fn a_message_that_leaves_its_folder_before_we_open_it_calls_for_another_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("mail"), tmp.path().join("copy"));
        let inbox = folder(&src, "d/l");
        let b = folder(&src, "d/l/.B");
        put(&inbox, "cur/a:2,", old());
        put(&b, "cur/b:2,", old());
        let (b1, b2, i2) = (b.clone(), b.clone(), inbox.clone());
        let hooks = vec![
            // In pass 1, after .B was listed, an old message arrives in .B (from elsewhere).
            once_at(".B/cur/b:2,", move || put(&b1, "cur/m:2,", old())),
            // In pass 2 it is listed in .B and moved to INBOX, listed already, before we
            // open it: nothing old was added in pass 2, but a message was lost track of.
            once_at(".B/cur/m:2,", move || fs::rename(b2.join("cur/m:2,"), i2.join("cur/m:2,")).unwrap()),
        ];
        let stats = copy(&src, &dst, Some(all(hooks))).unwrap();
        assert_eq!(messages(&dst), ["d/l/.B/cur/b:2,", "d/l/cur/a:2,", "d/l/cur/m:2,"]);
        assert_eq!(stats.passes, 4);
    }

    #[test]
    fn tmp_and_folders_being_deleted_are_left_out_folder_files_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("mail"), tmp.path().join("copy"));
        let inbox = folder(&src, "d/l");
        folder(&src, "d/l/.Sent");
        let gone = folder(&src, &format!("d/l/{TRASHED_PREFIX}123"));
        put(&inbox, "cur/m:2,", old());
        put(&inbox, "tmp/mailroom-expunged.7.3", old());
        put(&inbox, "tmp/1.M1P1Q9.h,S=9,W=9", old());
        put(&inbox, "cur/.hidden", old());
        put(&gone, "cur/deleted:2,", old());
        for f in ["subscriptions", "dovecot-keywords", "dovecot-uidlist.lock", ".Sent/maildirfolder"] {
            fs::write(inbox.join(f), b"x").unwrap();
        }
        let stats = copy(&src, &dst, None).unwrap();
        assert_eq!(messages(&dst), ["d/l/cur/m:2,"]);
        assert_eq!(stats.mailboxes, 2);
        for f in ["subscriptions", "dovecot-keywords", ".Sent/maildirfolder"] {
            assert!(dst.join("d/l").join(f).is_file(), "{f}");
        }
        assert!(!dst.join("d/l/dovecot-uidlist.lock").exists());
        assert!(dst.join("d/l/tmp").is_dir() && dst.join("d/l/.Sent/new").is_dir());
        assert!(!dst.join(format!("d/l/{TRASHED_PREFIX}123")).exists());
    }

    /// Copy a one-message INBOX while every open makes one more file `name(n)` with
    /// `mtime` appear in it, after this pass listed it.
    fn copy_while_files_appear(name: fn(u32) -> String, mtime: fn() -> SystemTime) -> Result<MailStats, BackupError> {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("mail"), tmp.path().join("copy"));
        let inbox = folder(&src, "d/l");
        put(&inbox, "cur/first:2,", old());
        let mut count = 0;
        let hook = Box::new(move |_: &Path| {
            count += 1;
            put(&inbox, &name(count), mtime());
        });
        copy(&src, &dst, Some(hook))
    }

    #[test]
    fn mail_arriving_during_the_backup_is_copied_but_does_not_keep_it_going() {
        let stats = copy_while_files_appear(|n| format!("new/fresh{n}"), || SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(stats.passes, 2);
        assert_eq!(stats.after_start, stats.messages - 1);
        assert!(stats.after_start >= 1);
    }

    #[test]
    fn mail_that_never_settles_fails_the_backup_clearly() {
        // A pathological mover: every open brings back an old message behind the walk.
        let err = copy_while_files_appear(|n| format!("cur/old{n}:2,"), old).unwrap_err();
        assert!(matches!(err, BackupError::NotSettled { passes: MAX_PASSES, .. }), "{err}");
        assert!(err.to_string().contains("try again"), "{err}");
    }

    #[test]
    fn a_message_expunged_before_we_open_it_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("mail"), tmp.path().join("copy"));
        let inbox = folder(&src, "d/l");
        put(&inbox, "cur/gone:2,", old());
        put(&inbox, "cur/kept:2,", old());
        let dir = inbox.clone();
        let hook = once_at("cur/gone:2,", move || fs::remove_file(dir.join("cur/gone:2,")).unwrap());
        let stats = copy(&src, &dst, Some(hook)).unwrap();
        assert_eq!(messages(&dst), ["d/l/cur/kept:2,"]);
        assert_eq!(stats.messages, 1);
    }
}
