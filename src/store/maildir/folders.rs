//! Folder management: LIST, CREATE, DELETE, RENAME, SUBSCRIBE, special-use.
//!
//! Owns: the Maildir++ folder tree of an account (`.Name` directories, as Dovecot lays them
//! out), the Dovecot `subscriptions` file (version 2: `V\t2`, a blank line, then one mUTF-7
//! name per line with TAB as hierarchy separator — checked against doveadm 2.3.19) and our
//! `mailroom-special-use` file (RFC 6154 attributes given at CREATE; Drafts/Sent/Junk/Trash
//! get theirs by name). Both files live in the Maildir root because they are user data, not
//! rebuildable state. Changes are atomic (write tmp, fsync, rename, fsync dir).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::MaildirStore;
use super::durable::FILE_MODE;
use super::error::{StoreError, blocking};
use super::folder_name::FolderPath;
use super::layout::{DEFAULT_FOLDERS, create_maildir, is_maildir};
use super::types::{FolderInfo, MailboxOwner, SpecialUse};
use crate::durable::{sync_dir, write_atomic_via};

const SUBSCRIPTIONS: &str = "subscriptions";
const SPECIAL_USE: &str = "mailroom-special-use";
/// Prefix of a folder being deleted (not a valid folder name: never listed, never backed up).
pub(crate) const TRASHED_PREFIX: &str = "..mailroom-deleted.";

/// Write `content` to `root/name` atomically and durably. Blocking.
fn replace_file(root: &Path, name: &str, content: &[u8]) -> Result<(), StoreError> {
    // Unique temp name in the Maildir's tmp/: two sessions may rewrite the same file at
    // once (first delivery to a new account from two SMTP sessions); each rename is
    // atomic, the last one wins.
    let tmp = root.join("tmp").join(super::filename::new_base_name(name, 0));
    Ok(write_atomic_via(&tmp, &root.join(name), content, FILE_MODE)?)
}

/// Parse a subscriptions file (version 2 or the old one-name-per-line form).
pub fn parse_subscriptions(text: &str) -> BTreeSet<FolderPath> {
    let mut lines = text.lines().peekable();
    if lines.peek() == Some(&"V\t2") {
        lines.next();
    }
    lines.filter(|l| !l.is_empty()).filter_map(FolderPath::from_subscription_name).collect()
}

fn render_subscriptions(subs: &BTreeSet<FolderPath>) -> String {
    let mut s = String::from("V\t2\n\n");
    for f in subs {
        s.push_str(&f.subscription_name());
        s.push('\n');
    }
    s
}

fn read_subscriptions(root: &Path) -> BTreeSet<FolderPath> {
    std::fs::read_to_string(root.join(SUBSCRIPTIONS)).map(|t| parse_subscriptions(&t)).unwrap_or_default()
}

/// Write the initial subscriptions file (INBOX's default siblings) if there is none.
pub(crate) fn init_subscriptions(root: &Path) -> Result<(), StoreError> {
    if root.join(SUBSCRIPTIONS).exists() {
        return Ok(());
    }
    let subs: BTreeSet<FolderPath> = DEFAULT_FOLDERS.iter().filter_map(|n| FolderPath::from_api(n).ok()).collect();
    replace_file(root, SUBSCRIPTIONS, render_subscriptions(&subs).as_bytes())
}

/// `\Attr .disk.name` per line.
fn read_special_use(root: &Path) -> BTreeMap<FolderPath, SpecialUse> {
    let text = std::fs::read_to_string(root.join(SPECIAL_USE)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (attr, disk) = l.split_once(' ')?;
            Some((FolderPath::from_disk(disk)?, SpecialUse::from_attribute(attr)?))
        })
        .collect()
}

fn write_special_use(root: &Path, map: &BTreeMap<FolderPath, SpecialUse>) -> Result<(), StoreError> {
    let mut s = String::new();
    for (f, u) in map {
        s.push_str(u.attribute());
        s.push(' ');
        s.push_str(f.disk_name());
        s.push('\n');
    }
    replace_file(root, SPECIAL_USE, s.as_bytes())
}

fn default_special_use(f: &FolderPath) -> Option<SpecialUse> {
    match f.disk_name() {
        ".Drafts" => Some(SpecialUse::Drafts),
        ".Sent" => Some(SpecialUse::Sent),
        ".Junk" => Some(SpecialUse::Junk),
        ".Trash" => Some(SpecialUse::Trash),
        _ => None,
    }
}

/// All folders of the account (INBOX included). Blocking.
fn existing_folders(root: &Path) -> Result<BTreeSet<FolderPath>, StoreError> {
    let mut out = BTreeSet::new();
    let entries = std::fs::read_dir(root).map_err(|e| StoreError::io(root, e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(f) = FolderPath::from_disk(name)
            && is_maildir(&e.path())
        {
            out.insert(f);
        }
    }
    Ok(out)
}

impl MaildirStore {
    /// Every folder of the account, INBOX first, with special-use, children and
    /// subscription state (IMAP LIST / LSUB).
    pub async fn list_folders(&self, account: &MailboxOwner) -> Result<Vec<FolderInfo>, StoreError> {
        self.ensure_account_cached(account).await?;
        let root = self.inner.layout.account_dir(account)?;
        blocking(move || {
            let mut folders = existing_folders(&root)?;
            folders.insert(FolderPath::Inbox);
            let subs = read_subscriptions(&root);
            let special = read_special_use(&root);
            Ok(folders
                .iter()
                .map(|f| FolderInfo {
                    name: f.api_name(),
                    special_use: special.get(f).copied().or_else(|| default_special_use(f)),
                    has_children: folders.iter().any(|c| f.is_ancestor_of(c)),
                    subscribed: subs.contains(f),
                })
                .collect())
        })
        .await
    }

    /// Create a folder (and any missing parents, RFC 3501 6.3.3), optionally with a
    /// special-use attribute (RFC 6154 CREATE-SPECIAL-USE).
    pub async fn create_folder(
        &self,
        account: &MailboxOwner,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), StoreError> {
        let path = FolderPath::from_api(name)?;
        if path.is_inbox() {
            return Err(StoreError::FolderExists(name.to_string()));
        }
        self.ensure_account_cached(account).await?;
        let _g = self.inner.folders_lock.lock().await;
        let root = self.inner.layout.account_dir(account)?;
        let index = self.inner.layout.index_path(account, &path)?;
        let headers = self.inner.layout.header_cache_path(account, &path)?;
        self.forget_open(account, &path);
        let api = name.to_string();
        blocking(move || {
            let dir = root.join(path.disk_name());
            if is_maildir(&dir) {
                return Err(StoreError::FolderExists(api));
            }
            let mut parents = Vec::new();
            let mut p = path.parent();
            while let Some(parent) = p {
                p = parent.parent();
                // INBOX is the Maildir root: it exists already and has no `.INBOX` directory.
                if !parent.is_inbox() {
                    parents.push(parent);
                }
            }
            for parent in parents.iter().rev() {
                create_maildir(&root.join(parent.disk_name()), true)?;
            }
            // A stale index from an earlier folder of this name must not resurrect UIDs.
            let _ = std::fs::remove_file(&index);
            let _ = std::fs::remove_file(&headers);
            create_maildir(&dir, true)?;
            sync_dir(&root)?;
            if let Some(u) = special_use {
                let mut map = read_special_use(&root);
                map.insert(path, u);
                write_special_use(&root, &map)?;
            }
            Ok(())
        })
        .await
    }

    /// Delete a folder and its messages. INBOX cannot be deleted; a folder with
    /// sub-folders is refused (RFC 3501 6.3.4 lets the server say NO).
    pub async fn delete_folder(&self, account: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        let path = FolderPath::from_api(name)?;
        if path.is_inbox() {
            return Err(StoreError::NotPermitted(name.to_string()));
        }
        let _g = self.inner.folders_lock.lock().await;
        let root = self.inner.layout.account_dir(account)?;
        let index = self.inner.layout.index_path(account, &path)?;
        let headers = self.inner.layout.header_cache_path(account, &path)?;
        let api = name.to_string();
        let p2 = path.clone();
        blocking(move || {
            let dir = root.join(p2.disk_name());
            if !is_maildir(&dir) {
                return Err(StoreError::NoSuchFolder(api));
            }
            if existing_folders(&root)?.iter().any(|c| p2.is_ancestor_of(c)) {
                return Err(StoreError::HasChildren(api));
            }
            // Rename first so the folder disappears atomically, then remove at leisure.
            let trashed = root.join(format!("{TRASHED_PREFIX}{}", super::filename::new_base_name("x", 0)));
            std::fs::rename(&dir, &trashed).map_err(|e| StoreError::io(&dir, e))?;
            sync_dir(&root)?;
            let _ = std::fs::remove_file(&index);
            let _ = std::fs::remove_file(&headers);
            std::fs::remove_dir_all(&trashed).map_err(|e| StoreError::io(&trashed, e))?;
            let mut map = read_special_use(&root);
            if map.remove(&p2).is_some() {
                write_special_use(&root, &map)?;
            }
            Ok(())
        })
        .await?;
        self.forget_open(account, &path);
        Ok(())
    }

    /// Rename a folder with its sub-folders (UIDVALIDITY and UIDs are kept). INBOX is
    /// renamed by `store::Store::rename_folder`, the same way for every backend.
    pub async fn rename_folder(&self, account: &MailboxOwner, from: &str, to: &str) -> Result<(), StoreError> {
        let (src, dst) = FolderPath::for_rename(from, to)?;
        if src.is_inbox() {
            return Err(StoreError::NotPermitted(from.to_string()));
        }
        let _g = self.inner.folders_lock.lock().await;
        let root = self.inner.layout.account_dir(account)?;
        let index_dir = self.inner.layout.index_dir(account)?;
        let (from_s, to_s) = (from.to_string(), to.to_string());
        let (s2, d2) = (src.clone(), dst.clone());
        blocking(move || {
            let all = existing_folders(&root)?;
            if !all.contains(&s2) {
                return Err(StoreError::NoSuchFolder(from_s));
            }
            if all.contains(&d2) {
                return Err(StoreError::FolderExists(to_s));
            }
            let mut p = d2.parent();
            let mut parents = Vec::new();
            while let Some(parent) = p {
                p = parent.parent();
                // INBOX is the Maildir root: it exists already and has no `.INBOX` directory.
                if !parent.is_inbox() {
                    parents.push(parent);
                }
            }
            for parent in parents.iter().rev() {
                create_maildir(&root.join(parent.disk_name()), true)?;
            }
            let mut special = read_special_use(&root);
            let moving: Vec<FolderPath> = all.iter().filter(|f| **f == s2 || s2.is_ancestor_of(f)).cloned().collect();
            for old in moving {
                let suffix = &old.disk_name()[s2.disk_name().len()..];
                let new = FolderPath::Folder(format!("{}{suffix}", d2.disk_name()));
                let (a, b) = (root.join(old.disk_name()), root.join(new.disk_name()));
                std::fs::rename(&a, &b).map_err(|e| StoreError::io(&a, e))?;
                for ext in ["idx", "hdr"] {
                    let _ = std::fs::rename(
                        index_dir.join(format!("{}.{ext}", old.disk_name())),
                        index_dir.join(format!("{}.{ext}", new.disk_name())),
                    );
                }
                if let Some(u) = special.remove(&old) {
                    special.insert(new, u);
                }
            }
            sync_dir(&root)?;
            if index_dir.is_dir() {
                sync_dir(&index_dir)?;
            }
            write_special_use(&root, &special)
        })
        .await?;
        self.forget_open(account, &src);
        self.forget_open(account, &dst);
        Ok(())
    }

    /// Add or remove a folder in the subscriptions file (IMAP SUBSCRIBE/UNSUBSCRIBE). The
    /// folder need not exist (RFC 3501 6.3.6).
    pub async fn set_subscribed(&self, account: &MailboxOwner, name: &str, on: bool) -> Result<(), StoreError> {
        let path = FolderPath::from_api(name)?;
        self.ensure_account_cached(account).await?;
        let _g = self.inner.folders_lock.lock().await;
        let root = self.inner.layout.account_dir(account)?;
        blocking(move || {
            let mut subs = read_subscriptions(&root);
            let changed = if on { subs.insert(path) } else { subs.remove(&path) };
            if changed {
                replace_file(&root, SUBSCRIPTIONS, render_subscriptions(&subs).as_bytes())?;
            }
            Ok(())
        })
        .await
    }

    /// Names in the subscriptions file, including folders that no longer exist (LSUB).
    pub async fn subscriptions(&self, account: &MailboxOwner) -> Result<Vec<String>, StoreError> {
        let root = self.inner.layout.account_dir(account)?;
        blocking(move || Ok(read_subscriptions(&root).iter().map(FolderPath::api_name).collect())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_file_matches_dovecot() {
        // As written by doveadm 2.3.19 for Sent, a&b, Ärger, Ärger.Über.
        let text = "V\t2\n\nSent\na&-b\n&AMQ-rger\n&AMQ-rger\t&ANw-ber\n";
        let subs = parse_subscriptions(text);
        let names: Vec<String> = subs.iter().map(FolderPath::api_name).collect();
        assert_eq!(names, ["Ärger", "Ärger/Über", "Sent", "a&b"]);
        assert_eq!(parse_subscriptions(&render_subscriptions(&subs)), subs);
        // Version 1 (one name per line, `.` separator) and INBOX.
        let v1 = parse_subscriptions("INBOX\nLists.rust\n");
        assert!(v1.contains(&FolderPath::Inbox));
        assert!(v1.contains(&FolderPath::from_api("Lists/rust").unwrap()));
        let _ = parse_subscriptions("V\t2\n\n\t\n&&&\n.\n");
    }
}
