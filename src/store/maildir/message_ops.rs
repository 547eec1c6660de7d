//! Operations that put messages into a mailbox: APPEND, COPY and MOVE.
//!
//! Owns: the Maildir side of RFC 3502 APPEND, RFC 3501 COPY and RFC 6851 MOVE, each durable
//! before it returns (file fsync for new data, directory fsyncs, index log fsyncs). COPY uses
//! hard links when possible (no data copied, like Dovecot's `maildir_copy_with_hardlinks`);
//! MOVE renames the file into the destination's `cur/`, so a crash leaves the message in
//! exactly one place (never lost, never duplicated). Both mailboxes are locked in address
//! order while the move happens, so no concurrent scan can see a half-moved message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::MutexGuard;

use super::durable::write_new_file;
use super::error::{StoreError, blocking};
use super::filename::{FlagSet, new_base_name, new_base_name_sizes, parse_file_name};
use super::index::{IndexEntry, Record};
use super::keywords::KeywordTable;
use super::mailbox::{MaildirMailbox, State};
use super::retained;
use super::types::{Flag, MailboxEvent, MessageBody};

/// A message picked from the source mailbox.
struct Source {
    uid: u32,
    entry: IndexEntry,
}

/// A message placed in the destination's `cur/`.
struct Placed {
    src_uid: u32,
    entry: IndexEntry,
}

fn collect(st: &State, uids: &[u32]) -> Vec<Source> {
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    uids.into_iter().filter_map(|uid| st.index.messages.get(&uid).map(|e| Source { uid, entry: e.clone() })).collect()
}

async fn lock_two<'a>(a: &'a MaildirMailbox, b: &'a MaildirMailbox) -> (MutexGuard<'a, State>, MutexGuard<'a, State>) {
    if Arc::as_ptr(&a.shared) < Arc::as_ptr(&b.shared) {
        let ga = a.lock().await;
        let gb = b.lock().await;
        (ga, gb)
    } else {
        let gb = b.lock().await;
        let ga = a.lock().await;
        (ga, gb)
    }
}

/// Link (or copy) one message into `dest_dir/cur`. `None` when the source vanished.
fn copy_one(
    src_cur: &Path,
    dest_dir: &Path,
    host: &str,
    table: &KeywordTable,
    s: &Source,
) -> Result<Option<Placed>, StoreError> {
    let from = src_cur.join(&s.entry.file_name);
    let physical = match std::fs::metadata(&from) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&from, e)),
    };
    let base = new_base_name_sizes(host, physical, s.entry.size);
    let name = table.file_name(&base, &s.entry.flags, None);
    let to = dest_dir.join("cur").join(&name);
    if std::fs::hard_link(&from, &to).is_err() {
        // EXDEV/EPERM/EMLINK: copy the bytes durably instead.
        let tmp = dest_dir.join("tmp").join(&base);
        let body = MessageBody::File { path: from.clone(), len: physical };
        write_new_file(&tmp, b"", &body)?;
        let done = std::fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(s.entry.internal_date))
            .and_then(|()| std::fs::rename(&tmp, &to));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::io(&to, e));
        }
    }
    Ok(Some(Placed { src_uid: s.uid, entry: IndexEntry { base, file_name: name, ..s.entry.clone() } }))
}

fn add_placed(st: &mut State, placed: Vec<Placed>) -> (Vec<Record>, Vec<(u32, u32)>, u64) {
    let mut records = Vec::with_capacity(placed.len());
    let mut pairs = Vec::with_capacity(placed.len());
    let mut bytes = 0;
    for p in placed {
        bytes += p.entry.size;
        let (uid, rec) = st.add(p.entry);
        records.extend(rec);
        pairs.push((p.src_uid, uid));
    }
    (records, pairs, bytes)
}

impl MaildirMailbox {
    /// Store a new message (IMAP APPEND) with flags and INTERNALDATE (default: now).
    /// `body` is the CRLF wire form. Returns its UID (APPENDUID) once durable.
    pub async fn append(
        &self,
        body: &MessageBody,
        flags: &[Flag],
        internal_date: Option<SystemTime>,
    ) -> Result<u32, StoreError> {
        let fs = FlagSet::from_flags(flags);
        self.add_message(b"", body, fs, internal_date, false).await.map(|(uid, _)| uid)
    }

    /// Store a delivered copy (`prefix + body`) with the flags Sieve gave it, through this
    /// mailbox's state and lock like APPEND, so its keywords get letters from the same
    /// `dovecot-keywords` table STORE uses. Keywords the mailbox's limits refuse are
    /// dropped (debug log): a delivery never fails for them. Returns the file's path once
    /// durable.
    pub(crate) async fn deliver_copy(
        &self,
        prefix: &[u8],
        body: &MessageBody,
        flags: &[Flag],
    ) -> Result<PathBuf, StoreError> {
        let fs = FlagSet::from_flags(flags);
        self.add_message(prefix, body, fs, None, true).await.map(|(_, path)| path)
    }

    /// APPEND and delivery: write `prefix + body` to `tmp/`, then under the lock give it
    /// its keyword letters, move it into `cur/` and index it, durably. With `lenient`,
    /// refused keywords are dropped instead of failing.
    async fn add_message(
        &self,
        prefix: &[u8],
        body: &MessageBody,
        mut fs: FlagSet,
        internal_date: Option<SystemTime>,
        lenient: bool,
    ) -> Result<(u32, PathBuf), StoreError> {
        let size = prefix.len() as u64 + body.len();
        let base = new_base_name(&self.store.inner.host, size);
        let tmp = self.shared.dir.join("tmp").join(&base);
        let (tmp2, prefix2, body2) = (tmp.clone(), prefix.to_vec(), body.clone());
        // INTERNALDATE goes on the file only once it is in cur/: an old mtime in tmp/
        // would make it look like crash debris to the tmp/ sweeper.
        if let Err(e) = blocking(move || write_new_file(&tmp2, &prefix2, &body2)).await {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let cur = self.shared.dir.join("cur");
        let mut st = self.lock().await;
        if let Err(e) = self.sync_locked(&mut st, false).await {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if lenient {
            self.drop_refused_keywords(&mut st, &mut fs);
        }
        if let Err(e) = self.assign_keywords(&mut st, std::iter::once(&fs)).await {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let name = st.keywords.file_name(&base, &fs, None);
        let target = cur.join(&name);
        let path = target.clone();
        let tmp2 = tmp.clone();
        let mtime = blocking(move || {
            std::fs::rename(&tmp2, &target).map_err(|e| StoreError::io(&target, e))?;
            let f = std::fs::File::options().write(true).open(&target).map_err(|e| StoreError::io(&target, e))?;
            if let Some(t) = internal_date {
                f.set_modified(t).map_err(|e| StoreError::io(&target, e))?;
            }
            f.metadata().and_then(|m| m.modified()).map_err(|e| StoreError::io(&target, e))
        })
        .await;
        let mtime = match mtime {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                let _ = std::fs::remove_file(cur.join(&name));
                return Err(e);
            }
        };
        let (uid, rec) = st.add(IndexEntry {
            base,
            flags: fs,
            modseq: 0,
            size,
            internal_date: internal_date.unwrap_or(mtime),
            file_name: name,
        });
        self.commit(&mut st, rec.into_iter().collect(), vec![cur]).await?;
        self.note_own_change(&mut st).await?;
        drop(st);
        self.store.inner.quota.adjust(&self.store.inner.layout, &self.shared.owner, size as i64);
        self.shared.notify(MailboxEvent::NewMessages);
        Ok((uid, path))
    }

    /// Copy messages into `dest` (IMAP COPY). Returns (source uid, destination uid) pairs
    /// for COPYUID, once durable. Uids that no longer exist are skipped.
    pub async fn copy_to(&self, uids: &[u32], dest: &MaildirMailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        let (pairs, bytes) = if self.shares_state(dest) {
            let mut st = self.lock().await;
            self.sync_locked(&mut st, false).await?;
            let sources = collect(&st, uids);
            dest.assign_keywords(&mut st, sources.iter().map(|s| &s.entry.flags)).await?;
            let placed = self.place_copies(sources, dest, st.keywords.clone()).await?;
            let (records, pairs, bytes) = add_placed(&mut st, placed);
            dest.commit(&mut st, records, vec![dest.shared.dir.join("cur")]).await?;
            dest.note_own_change(&mut st).await?;
            (pairs, bytes)
        } else {
            let (mut src, mut dst) = lock_two(self, dest).await;
            self.sync_locked(&mut src, false).await?;
            dest.sync_locked(&mut dst, false).await?;
            let sources = collect(&src, uids);
            dest.assign_keywords(&mut dst, sources.iter().map(|s| &s.entry.flags)).await?;
            let placed = self.place_copies(sources, dest, dst.keywords.clone()).await?;
            let (records, pairs, bytes) = add_placed(&mut dst, placed);
            dest.commit(&mut dst, records, vec![dest.shared.dir.join("cur")]).await?;
            dest.note_own_change(&mut dst).await?;
            (pairs, bytes)
        };
        if !pairs.is_empty() {
            dest.store.inner.quota.adjust(&dest.store.inner.layout, &dest.shared.owner, bytes as i64);
            dest.shared.notify(MailboxEvent::NewMessages);
        }
        Ok(pairs)
    }

    /// Hard-link (or copy, across file systems) each source file into `dest`'s `cur/`
    /// under a new unique name. Blocking work on the pool.
    async fn place_copies(
        &self,
        sources: Vec<Source>,
        dest: &MaildirMailbox,
        table: KeywordTable,
    ) -> Result<Vec<Placed>, StoreError> {
        let src_cur = self.shared.dir.join("cur");
        let dest_dir = dest.shared.dir.clone();
        let host = self.store.inner.host.clone();
        blocking(move || {
            let mut placed: Vec<Placed> = Vec::with_capacity(sources.len());
            for s in sources {
                match copy_one(&src_cur, &dest_dir, &host, &table, &s) {
                    Ok(Some(p)) => placed.push(p),
                    Ok(None) => {}
                    Err(e) => {
                        // RFC 3501 6.4.7: a failed COPY leaves the destination unchanged.
                        for p in &placed {
                            let _ = std::fs::remove_file(dest_dir.join("cur").join(&p.entry.file_name));
                        }
                        return Err(e);
                    }
                }
            }
            Ok(placed)
        })
        .await
    }

    /// Move messages into `dest` (IMAP MOVE): rename into its `cur/`, expunge here.
    /// Returns (source uid, destination uid) pairs, once both sides are durable.
    pub async fn move_to(&self, uids: &[u32], dest: &MaildirMailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        if self.shares_state(dest) {
            let pairs = self.copy_to(uids, dest).await?;
            let moved: Vec<u32> = pairs.iter().map(|(s, _)| *s).collect();
            self.expunge(&moved).await?;
            return Ok(pairs);
        }
        let (mut src, mut dst) = lock_two(self, dest).await;
        self.sync_locked(&mut src, false).await?;
        dest.sync_locked(&mut dst, false).await?;
        let sources = collect(&src, uids);
        dest.assign_keywords(&mut dst, sources.iter().map(|s| &s.entry.flags)).await?;
        let src_cur = self.shared.dir.join("cur");
        let dest_dir = dest.shared.dir.clone();
        let host = self.store.inner.host.clone();
        // Keep the base name (stable POP3 UIDL) unless the destination already has it.
        let plans: Vec<(Source, String, String)> = sources
            .into_iter()
            .map(|s| {
                let base = if dst.by_base.contains_key(&s.entry.base) {
                    let p = parse_file_name(&s.entry.file_name);
                    let wire = s.entry.size;
                    let phys = p.and_then(|p| p.size).unwrap_or(wire);
                    new_base_name_sizes(&host, phys, wire)
                } else {
                    s.entry.base.clone()
                };
                let name = dst.keywords.file_name(&base, &s.entry.flags, None);
                (s, base, name)
            })
            .collect();
        // Sessions with the source selected may still FETCH the moved messages (RFC 2180
        // 4.1.1): a hard link keeps the data for them (retained.rs).
        let keep = retained::lock(&self.shared.retained).has_views();
        let (src_dir, uid_validity) = (self.shared.dir.clone(), src.index.uid_validity);
        let (placed, kept): (Vec<Placed>, Vec<(u32, PathBuf)>) = blocking(move || {
            let mut placed = Vec::with_capacity(plans.len());
            let mut kept = Vec::new();
            for (s, base, name) in plans {
                let from = src_cur.join(&s.entry.file_name);
                let to = dest_dir.join("cur").join(&name);
                let aside = keep.then(|| retained::retained_path(&src_dir, uid_validity, s.uid));
                let aside = aside.filter(|a| std::fs::hard_link(&from, a).is_ok());
                if let Some(a) = &aside {
                    kept.push((s.uid, a.clone()));
                }
                match std::fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                        let tmp = dest_dir.join("tmp").join(&base);
                        let len = std::fs::metadata(&from).map_err(|e| StoreError::io(&from, e))?.len();
                        write_new_file(&tmp, b"", &MessageBody::File { path: from.clone(), len })?;
                        std::fs::rename(&tmp, &to).map_err(|e| StoreError::io(&to, e))?;
                        std::fs::remove_file(&from).map_err(|e| StoreError::io(&from, e))?;
                    }
                    Err(e) => return Err(StoreError::io(&from, e)),
                }
                placed.push(Placed { src_uid: s.uid, entry: IndexEntry { base, file_name: name, ..s.entry } });
            }
            Ok((placed, kept))
        })
        .await?;
        {
            let mut r = retained::lock(&self.shared.retained);
            for (uid, path) in kept {
                let size = src.index.messages.get(&uid).map_or(0, |e| e.size);
                r.keep(uid, path, size);
            }
        }
        let mut src_records = Vec::with_capacity(placed.len());
        let mut moved = Vec::with_capacity(placed.len());
        for p in &placed {
            if let Some((rec, _)) = src.remove(p.src_uid) {
                src_records.push(rec);
                moved.push(p.src_uid);
            }
        }
        let (dst_records, pairs, bytes) = add_placed(&mut dst, placed);
        let dirs: Vec<PathBuf> = vec![self.shared.dir.join("cur"), dest.shared.dir.join("cur")];
        let written = src.log.append(&src_records).and_then(|()| {
            dst.log.append(&dst_records).map(|()| {
                vec![(src.log.path().to_path_buf(), src.log.file()), (dst.log.path().to_path_buf(), dst.log.file())]
            })
        });
        let result = match written {
            Ok(logs) => self.store.inner.sync.sync_many(logs, dirs).await.map_err(StoreError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // Files may already sit in the destination: both sides rescan and agree.
            self.reload(&mut src).await;
            dest.reload(&mut dst).await;
            return Err(e);
        }
        self.maybe_compact(&mut src).await?;
        dest.maybe_compact(&mut dst).await?;
        self.note_own_change(&mut src).await?;
        dest.note_own_change(&mut dst).await?;
        drop((src, dst));
        if self.shared.owner != dest.shared.owner {
            let q = &self.store.inner.quota;
            q.adjust(&self.store.inner.layout, &self.shared.owner, -(bytes as i64));
            q.adjust(&self.store.inner.layout, &dest.shared.owner, bytes as i64);
        }
        if !moved.is_empty() {
            self.shared.notify(MailboxEvent::Expunged { uids: moved });
            dest.shared.notify(MailboxEvent::NewMessages);
        }
        Ok(pairs)
    }
}
