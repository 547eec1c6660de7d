//! The files backend: the spool directory of one process (`spool.rs`) plus the in-memory
//! map of its items, which is what the scheduler scans.
//!
//! This is the queue of a single server with a data dir: the map is the truth while the
//! process runs, the spool is what survives it. Only this process touches the directory
//! (the data dir lock), so "in flight" is a flag in memory and needs no lease: an item in
//! flight at a crash is simply due again at the next [`FilesBackend::open`].

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::backend::{Claimed, Finished, Lease, set_gauges};
use super::envelope::{Envelope, ItemOptions, ItemState, QueueId};
use super::spool::Spool;
use super::{ItemVisitor, QueueError, QueueItemDetail, QueueItemSummary, io_err};
use crate::accounts::Address;

/// An item as the queue holds it in memory.
#[derive(Debug)]
struct Slot {
    envelope: Envelope,
    size: u64,
    in_flight: bool,
    /// `delete` arrived during an attempt: the attempt removes the files when done.
    deleted: bool,
}

pub(super) struct FilesBackend {
    spool: Spool,
    items: Mutex<HashMap<QueueId, Slot>>,
    /// Serialises envelope rewrites, each of which writes the newest in-memory state.
    write_lock: tokio::sync::Mutex<()>,
}

impl FilesBackend {
    /// Open (or create) the spool in `dir` and load every item found there.
    pub(super) fn open(dir: &Path) -> Result<FilesBackend, QueueError> {
        let spool = Spool::open(dir).map_err(io_err(dir))?;
        let recovered = spool.recover().map_err(io_err(dir))?;
        for (path, why) in &recovered.broken {
            tracing::error!(path = %path.display(), reason = %why, "queue: unusable envelope set aside as .broken");
        }
        let now = SystemTime::now();
        let mut items = HashMap::new();
        for mut env in recovered.envelopes {
            // In flight at the crash: it is due again now (Hold stays held).
            if env.state == ItemState::Active {
                env.next_attempt = env.next_attempt.min(now);
            }
            let size = std::fs::metadata(spool.message_path(&env.id)).map(|m| m.len()).unwrap_or(0);
            tracing::info!(queue_id = %env.id, msgid = %env.message_id, state = env.state.name(), "queue: recovered item");
            items.insert(env.id.clone(), Slot { envelope: env, size, in_flight: false, deleted: false });
        }
        Ok(FilesBackend { spool, items: Mutex::new(items), write_lock: tokio::sync::Mutex::new(()) })
    }

    fn lock_items(&self) -> std::sync::MutexGuard<'_, HashMap<QueueId, Slot>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write message and envelope durably (fsynced) under a fresh id.
    pub(super) async fn enqueue(
        &self,
        sender: Option<Address>,
        recipients: Vec<Address>,
        parts: Vec<Bytes>,
        msgid: String,
        options: ItemOptions,
    ) -> Result<Envelope, QueueError> {
        let spool = self.spool.clone();
        let size = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let envelope = tokio::task::spawn_blocking(move || {
            // An id collision (same microsecond, same 32 random bits) is refused by the
            // spool; take another id.
            let mut tries = 0;
            loop {
                let env = Envelope::new(QueueId::generate(), sender.clone(), &recipients, &msgid).with_options(options);
                let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_ref()).collect();
                match spool.create(&env, &slices) {
                    Ok(()) => return Ok(env),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 5 => tries += 1,
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .map_err(|e| QueueError::Task(e.to_string()))?
        .map_err(io_err(self.spool.dir()))?;
        self.lock_items()
            .insert(envelope.id.clone(), Slot { envelope: envelope.clone(), size, in_flight: false, deleted: false });
        Ok(envelope)
    }

    /// Mark every due item in flight; also say when the next one is due.
    pub(super) fn claim_due(&self, now: SystemTime) -> (Vec<Claimed>, Option<SystemTime>) {
        let mut items = self.lock_items();
        let mut due = Vec::new();
        let mut next: Option<SystemTime> = None;
        for slot in items.values_mut() {
            if slot.in_flight || slot.envelope.state == ItemState::Hold {
                continue;
            }
            if slot.envelope.next_attempt <= now {
                slot.in_flight = true;
                slot.envelope.state = ItemState::Active;
                due.push(Claimed { envelope: slot.envelope.clone(), lease: Lease::Local });
            } else {
                next = Some(next.map_or(slot.envelope.next_attempt, |n| n.min(slot.envelope.next_attempt)));
            }
        }
        (due, next)
    }

    pub(super) async fn read_message(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        let spool = self.spool.clone();
        let owned = id.clone();
        tokio::task::spawn_blocking(move || spool.read_message(&owned))
            .await
            .map_err(|e| QueueError::Task(e.to_string()))?
            .map_err(io_err(&self.spool.message_path(id)))
    }

    /// Store the attempt's result (or remove the item), honouring what the operator did
    /// meanwhile (hold, delete).
    pub(super) async fn finish(&self, mut env: Envelope) -> Result<Finished, QueueError> {
        let id = env.id.clone();
        let done = env.pending().next().is_none();
        let remove = {
            let mut items = self.lock_items();
            match items.get_mut(&id) {
                None => return Ok(Finished::Gone),
                Some(slot) if slot.deleted || done => {
                    items.remove(&id);
                    true
                }
                Some(slot) => {
                    if slot.envelope.state == ItemState::Hold {
                        env.state = ItemState::Hold;
                    }
                    slot.envelope = env;
                    slot.in_flight = false;
                    false
                }
            }
        };
        if remove {
            self.remove_files(&id).await?;
            Ok(Finished::Removed)
        } else {
            self.persist(&id).await?;
            Ok(Finished::Updated)
        }
    }

    pub(super) fn list(&self) -> Vec<QueueItemSummary> {
        let items = self.lock_items();
        items.values().map(|s| QueueItemSummary::of(&s.envelope, s.size, s.in_flight)).collect()
    }

    /// Each item in id order, the lock taken per item so that workers are not held up
    /// by a long listing; an item finished meanwhile is left out.
    pub(super) fn visit(&self, visit: &mut ItemVisitor<'_>) {
        let mut ids: Vec<QueueId> = self.lock_items().keys().cloned().collect();
        ids.sort();
        for id in ids {
            let items = self.lock_items();
            if let Some(s) = items.get(&id) {
                visit(&QueueItemSummary::of(&s.envelope, s.size, s.in_flight), &s.envelope);
            }
        }
    }

    pub(super) fn show(&self, id: &QueueId) -> Option<QueueItemDetail> {
        let items = self.lock_items();
        items.get(id).map(|s| QueueItemDetail { envelope: s.envelope.clone(), size: s.size, in_flight: s.in_flight })
    }

    pub(super) async fn retry(&self, id: Option<&QueueId>) -> Result<usize, QueueError> {
        let now = SystemTime::now();
        let ids: Vec<QueueId> = {
            let mut items = self.lock_items();
            if let Some(id) = id
                && !items.contains_key(id)
            {
                return Err(QueueError::NotFound(id.to_string()));
            }
            items
                .values_mut()
                .filter(|s| id.is_none_or(|id| &s.envelope.id == id) && s.envelope.state != ItemState::Hold)
                .map(|s| {
                    s.envelope.next_attempt = now;
                    s.envelope.id.clone()
                })
                .collect()
        };
        for id in &ids {
            self.persist(id).await?;
        }
        Ok(ids.len())
    }

    pub(super) async fn set_state(&self, id: &QueueId, change: impl FnOnce(&mut Envelope)) -> Result<(), QueueError> {
        {
            let mut items = self.lock_items();
            let slot = items.get_mut(id).ok_or_else(|| QueueError::NotFound(id.to_string()))?;
            change(&mut slot.envelope);
        }
        self.persist(id).await
    }

    /// Remove an item now, or (in flight) when its attempt ends. Returns its Message-ID.
    pub(super) async fn delete(&self, id: &QueueId) -> Result<String, QueueError> {
        let (remove_now, msgid) = {
            let mut items = self.lock_items();
            let slot = items.get_mut(id).ok_or_else(|| QueueError::NotFound(id.to_string()))?;
            let msgid = slot.envelope.message_id.clone();
            let remove_now = if slot.in_flight {
                slot.deleted = true;
                false
            } else {
                items.remove(id);
                true
            };
            (remove_now, msgid)
        };
        if remove_now {
            self.remove_files(id).await?;
        }
        Ok(msgid)
    }

    /// Write the newest in-memory envelope of `id` to disk (no-op if it is gone).
    async fn persist(&self, id: &QueueId) -> Result<(), QueueError> {
        let _guard = self.write_lock.lock().await;
        let Some(env) = self.lock_items().get(id).map(|s| s.envelope.clone()) else { return Ok(()) };
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.update(&env))
            .await
            .map_err(|e| QueueError::Task(e.to_string()))?
            .map_err(io_err(self.spool.dir()))
    }

    async fn remove_files(&self, id: &QueueId) -> Result<(), QueueError> {
        let _guard = self.write_lock.lock().await;
        let spool = self.spool.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || spool.remove(&id))
            .await
            .map_err(|e| QueueError::Task(e.to_string()))?
            .map_err(io_err(self.spool.dir()))
    }

    /// Recompute the queue gauges (items by state, oldest age) from the map.
    pub(super) fn refresh_gauges(&self) {
        let now = SystemTime::now();
        let (mut active, mut deferred, mut hold, mut oldest) = (0i64, 0i64, 0i64, Duration::ZERO);
        for slot in self.lock_items().values() {
            match slot.envelope.state {
                ItemState::Active => active += 1,
                ItemState::Deferred => deferred += 1,
                ItemState::Hold => hold += 1,
            }
            oldest = oldest.max(slot.envelope.age(now));
        }
        set_gauges(active, deferred, hold, oldest);
    }
}
