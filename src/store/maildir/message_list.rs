//! The open mailbox's message list as snapshots hand it out: one persistent vector per
//! open folder, kept in step with the index, so `sync()` gives every session an O(1) clone
//! that shares storage with all the others (see [`MessageList`]).
//!
//! Owns: building the list from the index once (at the first snapshot after an open or a
//! reload) and changing it in O(log n) as the index changes. Never the truth: the index is,
//! and anything that replaces the index wholesale must [`SharedList::invalidate`] it.

use super::index::{IndexData, IndexEntry};
use super::mailbox::meta;
use super::types::{MessageList, uid_position};

/// The list, or `None` until someone asks for it.
#[derive(Default)]
pub(crate) struct SharedList(Option<MessageList>);

impl SharedList {
    /// The current list (built from `index` if it is not yet): a clone that shares storage.
    pub(crate) fn get(&mut self, index: &IndexData) -> MessageList {
        self.0.get_or_insert_with(|| index.messages.iter().map(|(uid, e)| meta(*uid, e)).collect()).clone()
    }

    /// The index was replaced: build afresh at the next snapshot.
    pub(crate) fn invalidate(&mut self) {
        self.0 = None;
    }

    /// A message was added to the index, or its flags or modseq changed.
    pub(crate) fn upsert(&mut self, uid: u32, entry: &IndexEntry) {
        let Some(list) = &mut self.0 else { return };
        match uid_position(list, uid) {
            // Flags and modseq only: the rest (and the shared uidl) never change.
            Ok(i) => {
                let m = &mut list[i];
                m.flags = entry.flags.to_flags();
                m.modseq = entry.modseq;
            }
            Err(i) if i == list.len() => list.push_back(meta(uid, entry)),
            Err(i) => list.insert(i, meta(uid, entry)),
        }
    }

    /// A message was expunged from the index.
    pub(crate) fn remove(&mut self, uid: u32) {
        if let Some(list) = &mut self.0
            && let Ok(i) = uid_position(list, uid)
        {
            list.remove(i);
        }
    }
}
