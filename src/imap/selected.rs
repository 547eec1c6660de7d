//! The selected mailbox as one session sees it: the message list (sequence number =
//! position), `\Recent`, the saved search result, and the untagged updates that keep the
//! view in step with other sessions and deliveries (EXISTS, EXPUNGE or VANISHED, FETCH
//! FLAGS). Written into a byte buffer, never to a socket, so it can be driven in tests.
//!
//! Sequence numbers only change when we tell the client: expunges by others are held back
//! while a FETCH, STORE or SEARCH runs (RFC 9051 7.5.1) and reported at the next allowed
//! point.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::command::QresyncParams;
use super::response::{Enabled, Tagged, write_flags_recent};
use super::sequence::{SequenceSet, format_numbers};
use crate::store::{
    Flag as StFlag, FlagChange, Mailbox, MailboxChanges, MailboxEvent, MailboxSnapshot, MessageList, MessageMeta,
    ViewTicket, uid_position,
};

/// How a refresh of the view may go: what it may report now and how to write it.
#[derive(Debug, Clone, Copy)]
pub struct Refresh {
    /// False while answering FETCH/STORE/SEARCH (expunges are held back, RFC 9051 7.5.1).
    pub allow_expunge: bool,
    /// Sync even when no event arrived (NOOP, IDLE start: files dropped into the Maildir
    /// by others only show up on a sync).
    pub force: bool,
    pub enabled: Enabled,
}

/// A selected mailbox as this session sees it.
pub struct Selected {
    pub name: String,
    pub mailbox: Mailbox,
    pub read_only: bool,
    /// Messages in sequence order (sorted by UID): seq n is `messages[n - 1]`. Shares its
    /// storage with the store's list and other sessions' views until one of them changes.
    pub messages: MessageList,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub events: broadcast::Receiver<MailboxEvent>,
    /// SEARCHRES `$` (RFC 5182), as UIDs.
    pub saved: Vec<u32>,
    /// UIDs in the view that are `\Recent` for this session, ascending (RFC 3501 2.3.2;
    /// claimed from the store so only one session sees a message as recent). Always empty
    /// for EXAMINE and for IMAP4rev2 sessions (RFC 9051 E.1 removed `\Recent`).
    pub recent: Vec<u32>,
    /// Expunged in the store but still in the view: sequence numbers may only change
    /// when the client can be told (not during FETCH, STORE, SEARCH; RFC 9051 7.5.1).
    pub expunged_unreported: Vec<u32>,
    /// Keywords the client was told about in the last untagged FLAGS (sorted): a FETCH
    /// FLAGS may only carry those (RFC 3501 7.2.6), so a new one is announced first.
    /// The store's interned strings: no copy per session.
    pub keywords: Vec<Arc<str>>,
    /// Keeps messages other sessions expunge readable until this view has reported them
    /// (RFC 2180 4.1.1); released as EXPUNGE/VANISHED goes out, and on deselect.
    pub view: ViewTicket,
    /// Modseqs of flag changes this session made and already applied to `messages` (STORE,
    /// FETCH's implicit \Seen): their events need no trip to the store. Emptied at each
    /// refresh, so it holds one or two entries.
    pub own_changes: Vec<u64>,
}

/// The distinct keywords of a message list, sorted.
pub fn keywords_of(messages: &MessageList) -> Vec<Arc<str>> {
    let mut keywords: Vec<Arc<str>> = messages
        .iter()
        .flat_map(|m| m.flags.iter())
        .filter_map(|f| match f {
            StFlag::Keyword(k) => Some(k.clone()),
            _ => None,
        })
        .collect();
    keywords.sort();
    keywords.dedup();
    keywords
}

/// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` for a keyword set: at SELECT, and
/// again whenever a new keyword shows up (RFC 3501 7.2.6: the FLAGS response "MUST be
/// recorded by the client"; 7.1 PERMANENTFLAGS). `\*` says new keywords may be created;
/// not once the mailbox holds as many as the store admits (STORE would get NO [LIMIT]).
pub fn write_flags_announcement(out: &mut Vec<u8>, keywords: &[Arc<str>], read_only: bool) {
    let kw: String = keywords.iter().map(|k| format!(" {k}")).collect();
    out.extend_from_slice(format!("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})\r\n").as_bytes());
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    } else {
        let may_create = if keywords.len() < crate::store::MAX_KEYWORDS { " \\*" } else { "" };
        out.extend_from_slice(
            format!(
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw}{may_create})] Flags permitted\r\n"
            )
            .as_bytes(),
        );
    }
}

impl Selected {
    /// Announce keywords the view's messages carry that the last FLAGS did not list, before
    /// any FETCH FLAGS that uses them (the caller writes those after this).
    pub fn announce_new_keywords(&mut self, out: &mut Vec<u8>) {
        let known = |k: &str| self.keywords.binary_search_by(|a| (**a).cmp(k)).is_ok();
        let unknown = self.messages.iter().flat_map(|m| m.flags.iter()).any(|f| match f {
            StFlag::Keyword(k) => !known(k),
            _ => false,
        });
        if unknown {
            self.keywords = keywords_of(&self.messages);
            write_flags_announcement(out, &self.keywords, self.read_only);
        }
    }

    pub fn index_of_uid(&self, uid: u32) -> Option<usize> {
        uid_position(&self.messages, uid).ok()
    }

    /// Is the message `\Recent` in this session (RFC 3501 2.3.2)?
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    /// Take the messages in `claimed` (a range [`Mailbox::take_recent`] gave this session)
    /// that are in the view as `\Recent`.
    pub fn add_recent(&mut self, claimed: std::ops::Range<u32>) {
        let start = uid_position(&self.messages, claimed.start).unwrap_or_else(|i| i);
        let new = self.messages.skip(start);
        self.recent.extend(new.iter().map(|m| m.uid).take_while(|u| claimed.contains(u)));
        self.recent.sort_unstable();
        self.recent.dedup();
    }

    /// Drop expunged messages (`gone`: sorted UIDs) from the view and write what tells
    /// the client: `* n EXPUNGE` per message, or one `VANISHED` with QRESYNC (RFC 7162
    /// 3.2.10). The saved search result loses them too (RFC 5182 2.1).
    /// Each removal is O(log n) and leaves the rest of the list shared.
    pub fn remove_from_view(&mut self, gone: &[u32], qresync: bool, out: &mut Vec<u8>) {
        if qresync {
            out.extend_from_slice(format!("* VANISHED {}\r\n", format_numbers(gone)).as_bytes());
        }
        // Ascending, each number counted after the removals before it (RFC 9051 7.5.1).
        for uid in gone {
            if let Some(i) = self.index_of_uid(*uid) {
                self.messages.remove(i);
                if !qresync {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                }
            }
        }
        self.saved.retain(|u| gone.binary_search(u).is_err());
        self.view.release(gone);
        self.recent.retain(|u| gone.binary_search(u).is_err());
    }

    pub fn max_uid(&self) -> u32 {
        self.messages.last().map(|m| m.uid).unwrap_or(0)
    }

    /// Indices (0-based, ascending, unique) named by a set. Message numbers past the end
    /// are a client error (RFC 9051 9 `seq-number`); UIDs that do not exist are ignored.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Tagged> {
        let mut out = Vec::new();
        match set {
            SequenceSet::Saved => {
                out.extend(self.saved.iter().filter_map(|u| self.index_of_uid(*u)));
            }
            SequenceSet::Ranges(_) if uid => {
                // RFC 9051 6.4.9: `*` is the largest UID in use; with no messages, none.
                let largest = self.max_uid();
                for (lo, hi) in set.ranges(largest) {
                    let start = uid_position(&self.messages, lo).unwrap_or_else(|i| i);
                    let end = uid_position(&self.messages, hi).map_or_else(|i| i, |i| i + 1);
                    out.extend(start..end.max(start));
                }
            }
            SequenceSet::Ranges(_) => {
                let n = self.messages.len() as u32;
                for (lo, hi) in set.ranges(n) {
                    if lo == 0 || hi > n {
                        return Err(Tagged::bad("Invalid message sequence number"));
                    }
                    out.extend((lo - 1) as usize..hi as usize);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// RFC 7162 3.2.5: report what changed since the client's last known state.
    pub async fn qresync_catch_up(&self, q: &QresyncParams, out: &mut Vec<u8>) {
        let sel = self;
        if q.uid_validity != sel.uid_validity {
            return;
        }
        let known = |uid: u32| q.known_uids.as_ref().is_none_or(|set| set.contains(uid, u32::MAX));
        let vanished: Vec<u32> =
            sel.mailbox.vanished_since(q.mod_seq).await.into_iter().filter(|u| known(*u)).collect();
        if !vanished.is_empty() {
            out.extend_from_slice(format!("* VANISHED (EARLIER) {}\r\n", format_numbers(&vanished)).as_bytes());
        }
        for (i, m) in sel.messages.iter().enumerate() {
            if m.modseq > q.mod_seq && known(m.uid) {
                out.extend_from_slice(format!("* {} FETCH (UID {} FLAGS ", i + 1, m.uid).as_bytes());
                write_flags_recent(out, &m.flags, sel.is_recent(m.uid));
                out.extend_from_slice(format!(" MODSEQ ({}))\r\n", m.modseq).as_bytes());
            }
        }
    }

    /// Bring the view up to date with the store and write the untagged updates into `into`.
    pub async fn refresh(&mut self, how: Refresh, into: &mut Vec<u8>, peer: &std::net::SocketAddr) {
        let condstore = how.enabled.condstore;
        let qresync = how.enabled.qresync;
        let rev1 = !how.enabled.imap4rev2;
        let (allow_expunge, force) = (how.allow_expunge, how.force);
        let sel = self;
        // Flag changes made in this process come with their result; anything else (new
        // messages, expunges, changes heard from other replicas, a lagging receiver) is
        // asked of the store.
        let mut ask_store = force;
        let mut known: Vec<FlagChange> = Vec::new();
        loop {
            match sel.events.try_recv() {
                // Our own change, already in the view. (A modseq is given once per folder,
                // so no other change carries it.)
                Ok(MailboxEvent::FlagsChanged { modseq, .. }) if sel.own_changes.contains(&modseq) => {}
                Ok(MailboxEvent::FlagsChanged { known: Some(k), .. }) => known.extend(k.iter().cloned()),
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => ask_store = true,
                Err(_) => break,
            }
        }
        sel.own_changes.clear();
        if !ask_store && known.is_empty() {
            return;
        }
        let changes = if ask_store { None } else { sel.changes_from_events(known) };
        // Only what changed since the view's HIGHESTMODSEQ; a full snapshot to compare
        // with when the store cannot tell (tombstones gone, new UIDVALIDITY). Changes
        // applied from events leave HIGHESTMODSEQ where it was, so changes by others with
        // lower modseqs still come with the next answer from the store.
        let changes = match changes {
            Some(c) => Ok(c),
            None => match sel.mailbox.changes_since(sel.uid_validity, sel.highest_modseq).await {
                Ok(Some(c)) => Ok(c),
                Ok(None) => sel.mailbox.sync().await.map(|snap| changes_from_snapshot(&sel.messages, snap)),
                Err(e) => Err(e),
            },
        };
        let changes = match changes {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "mailbox sync failed");
                return;
            }
        };
        let mut out = Vec::new();
        // 1. expunges of messages in view: reported now, or held back until allowed
        let (in_view, never_seen): (Vec<u32>, Vec<u32>) =
            changes.expunged.into_iter().partition(|u| sel.index_of_uid(*u).is_some());
        sel.view.release(&never_seen);
        if !in_view.is_empty() {
            sel.expunged_unreported.extend(in_view);
            sel.expunged_unreported.sort_unstable();
            sel.expunged_unreported.dedup();
        }
        if allow_expunge && !sel.expunged_unreported.is_empty() {
            let gone = std::mem::take(&mut sel.expunged_unreported);
            sel.remove_from_view(&gone, qresync, &mut out);
        }
        // 2. flag changes of messages in view, and new messages (sorted by UID)
        let before = sel.messages.len();
        let any_changed = !changes.changed.is_empty();
        for c in changes.changed {
            let Some(i) = sel.index_of_uid(c.uid) else {
                if c.uid > sel.max_uid() {
                    sel.messages.push_back(c);
                }
                continue;
            };
            let m = &mut sel.messages[i];
            // Events may arrive out of order; a message's modseq only grows.
            if c.modseq < m.modseq || (c.flags == m.flags && c.modseq == m.modseq) {
                continue;
            }
            let flags_changed = c.flags != m.flags;
            m.flags = c.flags;
            m.modseq = c.modseq;
            let recent = sel.recent.binary_search(&m.uid).is_ok();
            let m = &sel.messages[i];
            if flags_changed || condstore {
                out.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
                if qresync {
                    out.extend_from_slice(format!("UID {} ", m.uid).as_bytes());
                }
                out.extend_from_slice(b"FLAGS ");
                write_flags_recent(&mut out, &m.flags, recent);
                if condstore {
                    out.extend_from_slice(format!(" MODSEQ ({})", m.modseq).as_bytes());
                }
                out.extend_from_slice(b")\r\n");
            }
        }
        // 3. the new messages' count
        if sel.messages.len() != before {
            out.extend_from_slice(format!("* {} EXISTS\r\n", sel.messages.len()).as_bytes());
            // RFC 3501 7.3.2: new mail that arrives while selected is recent here.
            if rev1 {
                if !sel.read_only {
                    let claimed = sel.mailbox.take_recent(changes.uid_next).await;
                    sel.add_recent(claimed);
                }
                out.extend_from_slice(format!("* {} RECENT\r\n", sel.recent.len()).as_bytes());
            }
        }
        sel.uid_next = changes.uid_next;
        sel.highest_modseq = changes.highest_modseq;
        let mut announcement = Vec::new();
        if any_changed {
            sel.announce_new_keywords(&mut announcement);
        }
        into.extend_from_slice(&announcement);
        into.extend_from_slice(&out);
    }
}

impl Selected {
    /// The changes flag events of this process announced, as the store would have
    /// answered them; `None` when one names a message the view has not seen yet (its
    /// arrival must come from the store first).
    fn changes_from_events(&self, mut known: Vec<FlagChange>) -> Option<MailboxChanges> {
        known.sort_unstable_by_key(|(uid, _, modseq)| (*uid, *modseq));
        let mut changed: Vec<MessageMeta> = Vec::with_capacity(known.len());
        for (uid, flags, modseq) in known {
            let Some(i) = self.index_of_uid(uid) else {
                if uid > self.max_uid() {
                    return None;
                }
                continue; // expunged from the view
            };
            if changed.last().is_some_and(|c| c.uid == uid) {
                changed.pop(); // the later of two changes to one message
            }
            changed.push(MessageMeta { flags, modseq, ..self.messages[i].clone() });
        }
        Some(MailboxChanges {
            uid_next: self.uid_next,
            highest_modseq: self.highest_modseq,
            changed,
            expunged: Vec::new(),
        })
    }
}

/// The changes a full snapshot shows against the view: messages missing from it are
/// expunged; every message is passed on as possibly changed (unchanged ones are skipped).
fn changes_from_snapshot(view: &MessageList, snap: MailboxSnapshot) -> MailboxChanges {
    let expunged = view.iter().map(|m| m.uid).filter(|u| uid_position(&snap.messages, *u).is_err()).collect();
    MailboxChanges {
        uid_next: snap.uid_next,
        highest_modseq: snap.highest_modseq,
        changed: snap.messages.into_iter().collect(),
        expunged,
    }
}
