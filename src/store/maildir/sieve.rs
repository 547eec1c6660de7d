//! Sieve scripts of the Maildir backend, in the account's home with Dovecot Pigeonhole's
//! layout: `<home>/sieve/<name>.sieve` per script, and the active one marked by the
//! symlink `<home>/.dovecot.sieve -> sieve/<name>.sieve`. A Dovecot home copied to
//! `<data>/home/<domain>/<local>/` keeps its scripts and its active one, and a home
//! written here can be handed back to Dovecot.
//!
//! The vacation/duplicate memory is `<home>/.mailroom-sieve-memory`, one line per key:
//! `<expiry, unix seconds> <sha256 of the key, hex>`, rewritten whole (atomic replace) on
//! each new key, pruned of expired lines and capped at [`MAX_REMEMBERED_KEYS`].
//!
//! A `.dovecot.sieve` that is a plain file is no managed script (it is listed nowhere and
//! delivery does not run it); the first SETACTIVE keeps it as the script `dovecot.orig`,
//! as Pigeonhole does.
//!
//! Every change goes through `durable.rs`: a script through [`write_atomic`], the link
//! through a rename of a new link over the old one plus [`sync_dir`]. Changes are
//! serialised by the store's `sieve_lock`, so a check (exists? active?) and the change it
//! guards cannot interleave with another session's.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::MaildirStore;
use super::error::{StoreError, blocking};
use super::types::{MailboxOwner, SieveScriptInfo};
use crate::durable::{sync_dir, write_atomic};
use crate::store::sieve::remembered_key_digest;
use crate::store::{MAX_REMEMBERED_KEYS, check_script_name};

/// The link Pigeonhole reads to find the active script.
const ACTIVE_LINK: &str = ".dovecot.sieve";
/// The scripts' directory inside the home.
const SCRIPT_DIR: &str = "sieve";
/// Pigeonhole's suffix of a script file.
const SUFFIX: &str = ".sieve";
/// The vacation/duplicate memory inside the home.
const MEMORY_FILE: &str = ".mailroom-sieve-memory";

/// Paths of one account's Sieve files.
struct Home {
    dir: PathBuf,
}

impl Home {
    fn scripts(&self) -> PathBuf {
        self.dir.join(SCRIPT_DIR)
    }

    fn script(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_script_name(name)?;
        Ok(self.scripts().join(format!("{name}{SUFFIX}")))
    }

    fn link(&self) -> PathBuf {
        self.dir.join(ACTIVE_LINK)
    }

    /// The active script's name: the link's target when it is `sieve/<name>.sieve`.
    /// A missing link, or one pointing elsewhere (a hand-made Dovecot setup), is none.
    fn active(&self) -> Result<Option<String>, StoreError> {
        let link = self.link();
        let target = match std::fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput) => return Ok(None),
            Err(e) => return Err(StoreError::io(&link, e)),
        };
        let name = target
            .strip_prefix(SCRIPT_DIR)
            .ok()
            .and_then(|rest| rest.to_str())
            .and_then(|rest| rest.strip_suffix(SUFFIX))
            .filter(|n| check_script_name(n).is_ok());
        Ok(name.map(str::to_string))
    }

    /// Create the home and `sieve/`, making their names durable (idempotent).
    fn create(&self) -> Result<(), StoreError> {
        let scripts = self.scripts();
        if scripts.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(&scripts).map_err(|e| StoreError::io(&scripts, e))?;
        // Any of `home/`, `<domain>/`, `<local>/` and `sieve/` may be new: each name is
        // durable once the directory holding it is fsynced (up to the data dir).
        for d in self.dir.ancestors().take(4) {
            sync_dir(d)?;
        }
        Ok(())
    }

    /// Point the link at `name`, or remove it: a new link under a temp name renamed over
    /// the old one, so a reader sees the old target or the new one, then the home fsynced.
    fn set_active(&self, name: Option<&str>) -> Result<(), StoreError> {
        let link = self.link();
        self.keep_plain_file()?;
        match name {
            Some(name) => {
                let tmp = self.dir.join(format!("{ACTIVE_LINK}.tmp"));
                let _ = std::fs::remove_file(&tmp);
                let target = Path::new(SCRIPT_DIR).join(format!("{name}{SUFFIX}"));
                std::os::unix::fs::symlink(&target, &tmp).map_err(|e| StoreError::io(&tmp, e))?;
                std::fs::rename(&tmp, &link).map_err(|e| StoreError::io(&link, e))?;
            }
            None => match std::fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(StoreError::io(&link, e)),
            },
        }
        Ok(sync_dir(&self.dir)?)
    }
}

impl Home {
    /// A `.dovecot.sieve` that is a plain file (a Dovecot setup without ManageSieve) is
    /// kept as the script `dovecot.orig`, as Pigeonhole does, before a link replaces it.
    fn keep_plain_file(&self) -> Result<(), StoreError> {
        let link = self.link();
        let is_file = std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_file());
        if !is_file {
            return Ok(());
        }
        let kept = self.script("dovecot.orig")?;
        if kept.exists() {
            return Ok(());
        }
        self.create()?;
        std::fs::rename(&link, &kept).map_err(|e| StoreError::io(&link, e))?;
        sync_dir(&self.scripts())?;
        Ok(sync_dir(&self.dir)?)
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

fn list(home: &Home) -> Result<Vec<SieveScriptInfo>, StoreError> {
    let dir = home.scripts();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let active = home.active()?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
        let file_name = entry.file_name();
        // Names that are not UTF-8 or not `<name>.sieve` (Pigeonhole's compiled `.svbin`,
        // our temp files) are not scripts.
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else { continue };
        if check_script_name(name).is_err() {
            continue;
        }
        let meta = entry.metadata().map_err(|e| StoreError::io(entry.path(), e))?;
        if !meta.is_file() {
            continue;
        }
        out.push(SieveScriptInfo { name: name.to_string(), size: meta.len(), active: active.as_deref() == Some(name) });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn rename(home: &Home, old: &str, new: &str) -> Result<(), StoreError> {
    let from = home.script(old)?;
    let to = home.script(new)?;
    if !from.is_file() {
        return Err(StoreError::NoSuchScript(old.to_string()));
    }
    if to.exists() {
        return Err(StoreError::ScriptExists(new.to_string()));
    }
    let was_active = home.active()?.as_deref() == Some(old);
    std::fs::rename(&from, &to).map_err(|e| StoreError::io(&from, e))?;
    sync_dir(&home.scripts())?;
    if was_active {
        home.set_active(Some(new))?;
    }
    Ok(())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Check-and-record `key` in the memory file (see the module doc).
fn remember(home: &Home, key: &str, until: SystemTime) -> Result<bool, StoreError> {
    let path = home.dir.join(MEMORY_FILE);
    let now = unix_secs(SystemTime::now());
    let digest = remembered_key_digest(key);
    let text = read_optional(&path)?.unwrap_or_default();
    // A line that does not parse (a torn hand edit) is dropped rather than refusing mail.
    let mut entries: Vec<(u64, String)> = String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| {
            let (exp, k) = l.split_once(' ')?;
            Some((exp.parse().ok()?, k.to_string()))
        })
        .filter(|(exp, _)| *exp > now)
        .collect();
    if entries.iter().any(|(_, k)| *k == digest) {
        return Ok(true);
    }
    entries.push((unix_secs(until), digest));
    if entries.len() > MAX_REMEMBERED_KEYS {
        entries.sort_by_key(|(exp, _)| *exp);
        let excess = entries.len() - MAX_REMEMBERED_KEYS;
        entries.drain(..excess);
    }
    let mut out = String::with_capacity(entries.len() * 80);
    for (exp, k) in &entries {
        out.push_str(&format!("{exp} {k}\n"));
    }
    home.create()?;
    write_atomic(&path, out.as_bytes(), 0o600)?;
    Ok(false)
}

impl MaildirStore {
    fn sieve_home(&self, account: &MailboxOwner) -> Result<Home, StoreError> {
        Ok(Home { dir: self.inner.layout.home_dir(account)? })
    }

    pub(super) async fn sieve_list_impl(&self, account: &MailboxOwner) -> Result<Vec<SieveScriptInfo>, StoreError> {
        let home = self.sieve_home(account)?;
        blocking(move || list(&home)).await
    }

    pub(super) async fn sieve_get_impl(&self, account: &MailboxOwner, name: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.sieve_home(account)?.script(name)?;
        blocking(move || Ok(read_optional(&path)?.map(Bytes::from))).await
    }

    pub(super) async fn sieve_put_impl(
        &self,
        account: &MailboxOwner,
        name: &str,
        content: &[u8],
    ) -> Result<(), StoreError> {
        let home = self.sieve_home(account)?;
        let path = home.script(name)?;
        let content = content.to_vec();
        let _guard = self.inner.sieve_lock.lock().await;
        blocking(move || {
            home.create()?;
            Ok(write_atomic(&path, &content, 0o600)?)
        })
        .await
    }

    pub(super) async fn sieve_delete_impl(&self, account: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        let home = self.sieve_home(account)?;
        let path = home.script(name)?;
        let name = name.to_string();
        let _guard = self.inner.sieve_lock.lock().await;
        blocking(move || {
            if home.active()?.as_deref() == Some(name.as_str()) {
                return Err(StoreError::ScriptActive(name));
            }
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(sync_dir(&home.scripts())?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NoSuchScript(name)),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        })
        .await
    }

    pub(super) async fn sieve_rename_impl(
        &self,
        account: &MailboxOwner,
        old: &str,
        new: &str,
    ) -> Result<(), StoreError> {
        let home = self.sieve_home(account)?;
        let (old, new) = (old.to_string(), new.to_string());
        let _guard = self.inner.sieve_lock.lock().await;
        blocking(move || rename(&home, &old, &new)).await
    }

    pub(super) async fn sieve_set_active_impl(
        &self,
        account: &MailboxOwner,
        name: Option<&str>,
    ) -> Result<(), StoreError> {
        let home = self.sieve_home(account)?;
        let name = name.map(str::to_string);
        let _guard = self.inner.sieve_lock.lock().await;
        blocking(move || {
            if let Some(n) = &name
                && !home.script(n)?.is_file()
            {
                return Err(StoreError::NoSuchScript(n.clone()));
            }
            if name.is_none() && !home.dir.is_dir() {
                return Ok(());
            }
            home.set_active(name.as_deref())
        })
        .await
    }

    pub(super) async fn sieve_active_impl(
        &self,
        account: &MailboxOwner,
    ) -> Result<Option<(String, Bytes)>, StoreError> {
        let home = self.sieve_home(account)?;
        blocking(move || {
            let Some(name) = home.active()? else { return Ok(None) };
            // A link to a script deleted behind our back (by hand) means no active script.
            Ok(read_optional(&home.script(&name)?)?.map(|b| (name, Bytes::from(b))))
        })
        .await
    }

    pub(super) async fn sieve_remember_impl(
        &self,
        account: &MailboxOwner,
        key: &str,
        until: SystemTime,
    ) -> Result<bool, StoreError> {
        let home = self.sieve_home(account)?;
        let key = key.to_string();
        let _guard = self.inner.sieve_lock.lock().await;
        blocking(move || remember(&home, &key, until)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scripts_use_the_pigeonhole_layout_in_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(dir.path(), "mx.example.org").unwrap();
        let alice = MailboxOwner::new("alice", "example.org");
        store.sieve_put_impl(&alice, "main", b"keep;\r\n").await.unwrap();
        store.sieve_set_active_impl(&alice, Some("main")).await.unwrap();
        let home = dir.path().join("home/example.org/alice");
        assert_eq!(std::fs::read(home.join("sieve/main.sieve")).unwrap(), b"keep;\r\n");
        assert_eq!(std::fs::read_link(home.join(".dovecot.sieve")).unwrap(), Path::new("sieve/main.sieve"));
        assert!(!dir.path().join("mail/example.org/alice/sieve").exists(), "scripts stay out of the Maildir");
    }

    #[tokio::test]
    async fn a_dovecot_home_copied_in_keeps_its_active_script() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home/example.org/bob");
        std::fs::create_dir_all(home.join("sieve")).unwrap();
        std::fs::write(home.join("sieve/vacation.sieve"), b"keep;").unwrap();
        std::fs::write(home.join("sieve/vacation.svbin"), b"\0compiled").unwrap();
        std::os::unix::fs::symlink("sieve/vacation.sieve", home.join(".dovecot.sieve")).unwrap();
        let store = MaildirStore::open(dir.path(), "mx.example.org").unwrap();
        let bob = MailboxOwner::new("bob", "example.org");
        let list = store.sieve_list_impl(&bob).await.unwrap();
        assert_eq!(list, vec![SieveScriptInfo { name: "vacation".into(), size: 5, active: true }]);
        assert_eq!(store.sieve_active_impl(&bob).await.unwrap().unwrap().0, "vacation");
    }

    #[tokio::test]
    async fn a_plain_dovecot_sieve_file_is_kept_as_a_script_when_another_is_activated() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home/example.org/carol");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".dovecot.sieve"), b"discard;").unwrap();
        let store = MaildirStore::open(dir.path(), "mx.example.org").unwrap();
        let carol = MailboxOwner::new("carol", "example.org");
        assert_eq!(store.sieve_active_impl(&carol).await.unwrap(), None);
        store.sieve_put_impl(&carol, "main", b"keep;").await.unwrap();
        store.sieve_set_active_impl(&carol, Some("main")).await.unwrap();
        assert_eq!(store.sieve_get_impl(&carol, "dovecot.orig").await.unwrap().as_deref(), Some(&b"discard;"[..]));
        assert_eq!(store.sieve_active_impl(&carol).await.unwrap().unwrap().0, "main");
    }
}
