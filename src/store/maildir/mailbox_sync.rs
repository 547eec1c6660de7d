//! Bringing an open mailbox's index up to date with its Maildir (`MaildirMailbox::sync`).
//!
//! Owns: the reconciliation rules. Files in `new/` move to `cur/` and get UIDs; files
//! dropped into `cur/` by anyone get UIDs; files that vanished become expunges (after a
//! second look, since readdir racing a rename can miss a file); flag letters changed by
//! another program (Dovecot, mutt) are adopted with a new modseq. Directory mtimes decide
//! how much work is needed (see `maildir_scan.rs`), so a sync with no change costs two `stat`s. A
//! Maildir indexed for the first time keeps Dovecot's UIDs (`uidlist.rs`).
//!
//! Also the incremental form sessions use to stay current, [`MaildirMailbox::changes_since`]:
//! every change (new message, flags, expunge) bumps the modseq, so "what changed after
//! modseq N" is a filter over the index plus the expunge tombstones, not a copy of a
//! 50,000-message list after every STORE by any session.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::error::{StoreError, blocking};
use super::filename::{FlagSet, parse_file_name};
use super::index::{IndexData, IndexEntry, IndexLog, Record};
use super::keywords::KeywordTable;
use super::mailbox::{MaildirMailbox, State, meta};
use super::maildir_scan::{self, Freshness, Trust};
use super::types::{MailboxChanges, MailboxEvent};

/// Take the current on-disk name of a known message; if its flag letters differ from the
/// index (another program changed them), adopt them with a new modseq.
fn adopt_name(st: &mut State, uid: u32, name: String) -> Option<Record> {
    let entry = st.index.messages.get_mut(&uid)?;
    if name == entry.file_name {
        return None;
    }
    let letters = parse_file_name(&name).and_then(|p| p.flags).unwrap_or("");
    let adopted = st.keywords.adopt(&entry.flags, letters);
    let differs = adopted != entry.flags;
    entry.file_name = name;
    differs.then(|| st.set_flags(uid, adopted))
}

/// Adopt Dovecot's UIDVALIDITY and UIDs for a Maildir we index for the first time.
pub(crate) async fn import_dovecot(
    dir: &std::path::Path,
    fresh: IndexData,
    log: IndexLog,
) -> Result<(IndexData, IndexLog, HashMap<String, u32>), StoreError> {
    let (dir, path, shown) = (dir.to_path_buf(), log.path().to_path_buf(), dir.to_path_buf());
    let imported = blocking(move || {
        let Some(list) = super::uidlist::load(&dir) else {
            return Ok(None);
        };
        // Only a uidlist that knows every message in cur/ is Dovecot's current truth. One
        // that misses some is stale (say our state dir was lost after a migration and we
        // delivered since): reusing its UIDVALIDITY could give a cached UID a different
        // message, so start a new UIDVALIDITY instead. Unlisted files in new/ are fine:
        // no client has seen a UID for them yet.
        let complete = maildir_scan::list_cur(&dir)?
            .iter()
            .all(|name| parse_file_name(name).is_some_and(|p| list.uids.contains_key(p.base)));
        if !complete {
            tracing::info!(dir = %dir.display(), "dovecot-uidlist is stale; not importing its UIDs");
            return Ok(None);
        }
        let mut data = IndexData::new(list.uid_validity);
        data.uid_next = list.uid_next;
        let log = IndexLog::write_fresh(&path, &data)?;
        Ok(Some((data, log, list.uids)))
    })
    .await?;
    Ok(match imported {
        Some((data, log, uids)) => {
            tracing::info!(dir = %shown.display(), uid_validity = data.uid_validity, "imported UIDs from dovecot-uidlist");
            (data, log, uids)
        }
        None => (fresh, log, HashMap::new()),
    })
}

impl MaildirMailbox {
    pub(crate) async fn sync_locked(&self, st: &mut State, force: bool) -> Result<(), StoreError> {
        let dir = self.shared.dir.clone();
        let trust = if force { None } else { st.trust };
        let scanned = blocking(move || {
            let now = SystemTime::now();
            let before = maildir_scan::stamp(&dir)?;
            let kind = maildir_scan::freshness(trust, before, now);
            if kind == Freshness::Unchanged {
                return Ok(None);
            }
            if trust.is_none() {
                // First scan since open (or after an error): sweep crash leftovers.
                maildir_scan::clean_tmp(&dir, now);
            }
            let moved = maildir_scan::move_new_to_cur(&dir)?;
            let keywords = KeywordTable::load(&dir);
            let listing = match kind {
                Freshness::Changed => Some(maildir_scan::list_cur(&dir)?),
                _ => None,
            };
            let after = if moved.is_empty() { before } else { maildir_scan::stamp(&dir)? };
            let trust = match kind {
                Freshness::Changed => maildir_scan::trust_after_scan(before, after, now),
                _ => Trust { stamp: after, settled: false },
            };
            Ok(Some((moved, listing, keywords, trust)))
        })
        .await?;
        let Some((moved, listing, keywords, trust)) = scanned else {
            return Ok(());
        };
        st.keywords = keywords;
        let moved_any = !moved.is_empty();
        let mut records = Vec::new();
        let mut changed = Vec::new();
        let mut vanished = Vec::new();
        let new_names = match listing {
            None => moved,
            Some(names) => {
                let mut new_names = Vec::new();
                let mut seen: HashSet<u32> = HashSet::with_capacity(names.len());
                for name in names {
                    let Some(p) = parse_file_name(&name) else {
                        continue;
                    };
                    match st.by_base.get(p.base).copied() {
                        Some(uid) => {
                            if seen.insert(uid)
                                && let Some(rec) = adopt_name(st, uid, name)
                            {
                                records.push(rec);
                                changed.push(uid);
                            }
                        }
                        None => new_names.push(name),
                    }
                }
                let mut missing: HashMap<String, u32> = st
                    .index
                    .messages
                    .iter()
                    .filter(|(uid, _)| !seen.contains(uid))
                    .map(|(uid, e)| (e.base.clone(), *uid))
                    .collect();
                // readdir racing with a rename by another program (Dovecot setting flags)
                // can miss a file under both names; look once more before expunging.
                if !missing.is_empty() {
                    let dir = self.shared.dir.clone();
                    for name in blocking(move || maildir_scan::list_cur(&dir)).await? {
                        let uid = parse_file_name(&name).and_then(|p| missing.remove(p.base));
                        if let Some(uid) = uid
                            && let Some(rec) = adopt_name(st, uid, name)
                        {
                            records.push(rec);
                            changed.push(uid);
                        }
                    }
                    vanished = missing.into_values().collect();
                    vanished.sort_unstable();
                    for uid in &vanished {
                        if let Some((rec, _)) = st.remove(*uid) {
                            records.push(rec);
                        }
                    }
                }
                new_names
            }
        };
        let mut added = false;
        if !new_names.is_empty() {
            let dir = self.shared.dir.clone();
            let mut measured = blocking(move || maildir_scan::measure(&dir, new_names)).await?;
            if !st.imported.is_empty() {
                // Dovecot's UIDs first, in UID order; everything else after, by arrival.
                let imported = std::mem::take(&mut st.imported);
                let uid_of = |m: &maildir_scan::Measured| {
                    parse_file_name(&m.file_name).and_then(|p| imported.get(p.base).copied())
                };
                measured.sort_by_key(|m| uid_of(m).map_or((1, 0), |u| (0, u)));
                for m in &measured {
                    if let (Some(uid), Some(p)) = (uid_of(m), parse_file_name(&m.file_name)) {
                        let entry = IndexEntry {
                            base: p.base.to_string(),
                            flags: st.keywords.adopt(&FlagSet::default(), p.flags.unwrap_or("")),
                            modseq: 0,
                            size: m.size,
                            internal_date: m.mtime,
                            file_name: m.file_name.clone(),
                        };
                        if let (_, Some(rec)) = st.add_with_uid(entry, uid) {
                            records.push(rec);
                            added = true;
                        }
                    }
                }
                measured.retain(|m| uid_of(m).is_none());
            }
            for m in measured {
                let Some(p) = parse_file_name(&m.file_name) else {
                    continue;
                };
                let entry = IndexEntry {
                    base: p.base.to_string(),
                    flags: st.keywords.adopt(&FlagSet::default(), p.flags.unwrap_or("")),
                    modseq: 0,
                    size: m.size,
                    internal_date: m.mtime,
                    file_name: m.file_name.clone(),
                };
                if let (_, Some(rec)) = st.add(entry) {
                    records.push(rec);
                    added = true;
                }
            }
        }
        if !records.is_empty() || moved_any {
            // Files moved from new/ must stay found after a crash: fsync both directories
            // together with the index records that name them.
            let dirs =
                if moved_any { vec![self.shared.dir.join("cur"), self.shared.dir.join("new")] } else { Vec::new() };
            self.commit(st, records, dirs).await?;
        }
        st.trust = Some(trust);
        if added {
            self.shared.notify(MailboxEvent::NewMessages);
        }
        if !changed.is_empty() {
            self.shared.notify(MailboxEvent::FlagsChanged {
                uids: changed,
                modseq: st.index.highest_modseq,
                known: None,
            });
        }
        if !vanished.is_empty() {
            self.shared.notify(MailboxEvent::Expunged { uids: vanished });
        }
        Ok(())
    }

    /// Sync, then report only what changed after `modseq` (a session's HIGHESTMODSEQ):
    /// messages added or changed, and UIDs expunged. `None` when that cannot be told
    /// exactly (the UIDVALIDITY changed, or the tombstones no longer reach back): the caller
    /// then compares a full [`MaildirMailbox::sync`] snapshot.
    pub async fn changes_since(&self, uid_validity: u32, modseq: u64) -> Result<Option<MailboxChanges>, StoreError> {
        let mut st = self.lock().await;
        self.sync_locked(&mut st, false).await?;
        let index = &st.index;
        let covered = index.tombstones.len() < super::index::MAX_TOMBSTONES
            || index.tombstones.front().is_some_and(|(_, m)| *m <= modseq + 1);
        if index.uid_validity != uid_validity || !covered {
            return Ok(None);
        }
        let changed = index.messages.iter().filter(|(_, e)| e.modseq > modseq).map(|(uid, e)| meta(*uid, e)).collect();
        let mut expunged: Vec<u32> =
            index.tombstones.iter().rev().take_while(|(_, m)| *m > modseq).map(|(u, _)| *u).collect();
        expunged.sort_unstable();
        expunged.dedup();
        Ok(Some(MailboxChanges { uid_next: index.uid_next, highest_modseq: index.highest_modseq, changed, expunged }))
    }

    /// After our own change to `cur/` (made while the state matched the disk), trust the
    /// new mtimes until they settle, so the next sync does not list a 50,000-file
    /// directory just to find what we did ourselves. One full scan verifies later.
    pub(crate) async fn note_own_change(&self, st: &mut State) -> Result<(), StoreError> {
        if st.trust.is_none() {
            return Ok(());
        }
        let dir = self.shared.dir.clone();
        let stamp = blocking(move || maildir_scan::stamp(&dir)).await?;
        st.trust = Some(Trust { stamp, settled: false });
        Ok(())
    }
}
