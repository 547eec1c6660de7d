//! The selected mailbox: SELECT/EXAMINE (with CONDSTORE and QRESYNC, RFC 7162), the
//! session's view of the message list (sequence number = position), the untagged updates
//! that keep that view in step with other sessions and deliveries (EXISTS, EXPUNGE or
//! VANISHED, FETCH FLAGS), CLOSE, UNSELECT, EXPUNGE and IDLE (RFC 2177).
//!
//! Sequence numbers only change when we tell the client: expunges by others are held back
//! while a FETCH, STORE or SEARCH runs (RFC 9051 7.5.1) and reported at the next allowed
//! point.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Tagged, store_error, write_flags_recent};
use crate::imap::command::{QresyncParams, SelectParams};
use crate::imap::sequence::{SequenceSet, format_numbers};
use crate::imap::session::{Session, State};
use crate::store::{Flag as StFlag, Mailbox, MailboxChanges, MailboxEvent, MailboxSnapshot, MessageMeta, ViewTicket};

/// A selected mailbox as this session sees it.
pub struct Selected {
    pub name: String,
    pub mailbox: Mailbox,
    pub read_only: bool,
    /// Messages in sequence order (sorted by UID): seq n is `messages[n - 1]`.
    pub messages: Vec<MessageMeta>,
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
}

/// The distinct keywords of a message list, sorted.
fn keywords_of(messages: &[MessageMeta]) -> Vec<Arc<str>> {
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
fn write_flags_announcement(out: &mut Vec<u8>, keywords: &[Arc<str>], read_only: bool) {
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
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// Is the message `\Recent` in this session (RFC 3501 2.3.2)?
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    /// Take the messages in `claimed` (a range [`Mailbox::take_recent`] gave this session)
    /// that are in the view as `\Recent`.
    fn add_recent(&mut self, claimed: std::ops::Range<u32>) {
        let start = self.messages.partition_point(|m| m.uid < claimed.start);
        let new = self.messages[start..].iter().map(|m| m.uid).take_while(|u| claimed.contains(u));
        self.recent.extend(new);
        self.recent.sort_unstable();
        self.recent.dedup();
    }

    /// Drop expunged messages (`gone`: sorted UIDs) from the view and write what tells
    /// the client: `* n EXPUNGE` per message, or one `VANISHED` with QRESYNC (RFC 7162
    /// 3.2.10). The saved search result loses them too (RFC 5182 2.1).
    pub fn remove_from_view(&mut self, gone: &[u32], qresync: bool, out: &mut Vec<u8>) {
        if qresync {
            out.extend_from_slice(format!("* VANISHED {}\r\n", format_numbers(gone)).as_bytes());
            self.messages.retain(|m| gone.binary_search(&m.uid).is_err());
        } else {
            let mut kept = Vec::with_capacity(self.messages.len());
            let mut removed = 0usize;
            for (i, m) in std::mem::take(&mut self.messages).into_iter().enumerate() {
                if gone.binary_search(&m.uid).is_ok() {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1 - removed).as_bytes());
                    removed += 1;
                } else {
                    kept.push(m);
                }
            }
            self.messages = kept;
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
                    let start = self.messages.partition_point(|m| m.uid < lo);
                    for (i, m) in self.messages.iter().enumerate().skip(start) {
                        if m.uid > hi {
                            break;
                        }
                        out.push(i);
                    }
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
}

impl Session {
    pub(crate) async fn cmd_select(&mut self, raw_name: &str, params: SelectParams, read_only: bool) -> Tagged {
        // RFC 9051 6.3.2: a SELECT first deselects, even if it then fails.
        let had_selection = self.deselect();
        if had_selection && self.enabled.condstore {
            // RFC 7162 3.2.11 [CLOSED] marks where the old mailbox's responses end.
            self.out.extend_from_slice(b"* OK [CLOSED] Previous mailbox closed\r\n");
        }
        let name = match self.mailbox_from_client(raw_name) {
            Ok(n) => n,
            Err(t) => return t,
        };
        if params.qresync.is_some() && !self.enabled.qresync {
            return Tagged::bad("Enable QRESYNC first");
        }
        if params.condstore {
            self.enabled.condstore = true;
        }
        let Some(user) = self.user() else {
            return Tagged::bad("Log in first");
        };
        let owner = user.owner.clone();
        let mailbox = match self.ctx.store.open_mailbox(&owner, &name).await {
            Ok(m) => m,
            Err(e) => return store_error(&e, &self.peer),
        };
        // Register and subscribe before reading the snapshot so no change falls between.
        let view = mailbox.register_view();
        let events = mailbox.subscribe();
        let snap = match mailbox.sync().await {
            Ok(s) => s,
            Err(e) => return store_error(&e, &self.peer),
        };
        // EXAMINE does not claim \Recent (RFC 3501 6.3.2, as Dovecot); IMAP4rev2 has none.
        let claimed = if read_only || self.enabled.imap4rev2 { 0..0 } else { mailbox.take_recent(snap.uid_next).await };
        let keywords = keywords_of(&snap.messages);
        let out = &mut self.out;
        write_flags_announcement(out, &keywords, read_only);
        out.extend_from_slice(format!("* {} EXISTS\r\n", snap.messages.len()).as_bytes());
        if self.enabled.imap4rev2 {
            // RFC 9051 6.3.2: LIST is a required untagged response (the canonical name).
            let mut line = b"* LIST () \"/\" ".to_vec();
            crate::imap::render::astring(&mut line, name.as_bytes());
            line.extend_from_slice(b"\r\n");
            out.extend_from_slice(&line);
        } else {
            let recent_count = snap.messages.iter().filter(|m| claimed.contains(&m.uid)).count();
            out.extend_from_slice(format!("* {recent_count} RECENT\r\n").as_bytes());
            if let Some(pos) = snap.messages.iter().position(|m| !m.flags.contains(&StFlag::Seen)) {
                out.extend_from_slice(format!("* OK [UNSEEN {}] First unseen\r\n", pos + 1).as_bytes());
            }
        }
        out.extend_from_slice(format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", snap.uid_validity).as_bytes());
        out.extend_from_slice(format!("* OK [UIDNEXT {}] Predicted next UID\r\n", snap.uid_next).as_bytes());
        out.extend_from_slice(format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", snap.highest_modseq).as_bytes());
        let mut selected = Selected {
            name,
            mailbox,
            read_only,
            messages: snap.messages,
            uid_validity: snap.uid_validity,
            uid_next: snap.uid_next,
            highest_modseq: snap.highest_modseq,
            events,
            saved: Vec::new(),
            recent: Vec::new(),
            expunged_unreported: Vec::new(),
            keywords,
            view,
        };
        selected.add_recent(claimed);
        selected.view.release_absent(|u| selected.index_of_uid(u).is_some());
        if let Some(q) = &params.qresync {
            self.qresync_catch_up(&selected, q).await;
        }
        let user = match std::mem::replace(&mut self.state, State::NotAuthenticated) {
            State::Authenticated(u) | State::Selected(u, _) => u,
            other => {
                self.state = other;
                return Tagged::bad("Log in first");
            }
        };
        self.state = State::Selected(user, Box::new(selected));
        if read_only {
            Tagged::ok("EXAMINE completed").code("READ-ONLY")
        } else {
            Tagged::ok("SELECT completed").code("READ-WRITE")
        }
    }

    /// RFC 7162 3.2.5: report what changed since the client's last known state.
    async fn qresync_catch_up(&mut self, sel: &Selected, q: &QresyncParams) {
        if q.uid_validity != sel.uid_validity {
            return;
        }
        let known = |uid: u32| q.known_uids.as_ref().is_none_or(|set| set.contains(uid, u32::MAX));
        let vanished: Vec<u32> =
            sel.mailbox.vanished_since(q.mod_seq).await.into_iter().filter(|u| known(*u)).collect();
        if !vanished.is_empty() {
            self.out.extend_from_slice(format!("* VANISHED (EARLIER) {}\r\n", format_numbers(&vanished)).as_bytes());
        }
        for (i, m) in sel.messages.iter().enumerate() {
            if m.modseq > q.mod_seq && known(m.uid) {
                self.out.extend_from_slice(format!("* {} FETCH (UID {} FLAGS ", i + 1, m.uid).as_bytes());
                write_flags_recent(&mut self.out, &m.flags, sel.is_recent(m.uid));
                self.out.extend_from_slice(format!(" MODSEQ ({}))\r\n", m.modseq).as_bytes());
            }
        }
    }

    /// Turn CONDSTORE on for a command that uses it (RFC 7162 3.1: FETCH MODSEQ or
    /// CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE); true when this command is the
    /// one that enabled it, so `condstore_enabled_reply` must report HIGHESTMODSEQ.
    pub(crate) fn enable_condstore(&mut self) -> bool {
        let first = !self.enabled.condstore;
        self.enabled.condstore = true;
        first && self.selected().is_some()
    }

    /// RFC 7162 3.1: the first CONDSTORE-enabling command with a mailbox selected reports
    /// the mailbox's HIGHESTMODSEQ, in its tagged OK or, when that carries another response
    /// code, in an untagged OK just before it.
    pub(crate) fn condstore_enabled_reply(&mut self, tagged: Tagged) -> Tagged {
        let Some(highest) = self.selected().map(|s| s.highest_modseq) else {
            return tagged;
        };
        if tagged.status != super::Status::Ok {
            return tagged;
        }
        if tagged.code.is_none() {
            return tagged.code(format!("HIGHESTMODSEQ {highest}"));
        }
        self.out.extend_from_slice(format!("* OK [HIGHESTMODSEQ {highest}] Highest\r\n").as_bytes());
        tagged
    }

    /// Leave the selected state; true when a mailbox was selected.
    fn deselect(&mut self) -> bool {
        match std::mem::replace(&mut self.state, State::NotAuthenticated) {
            State::Selected(user, _) => {
                self.state = State::Authenticated(user);
                true
            }
            other => {
                self.state = other;
                false
            }
        }
    }

    /// CLOSE (expunge silently, then deselect) or UNSELECT (just deselect).
    pub(crate) async fn cmd_close(&mut self, expunge: bool) -> Tagged {
        if expunge
            && let Some(sel) = self.selected()
            && !sel.read_only
        {
            let deleted: Vec<u32> =
                sel.messages.iter().filter(|m| m.flags.contains(&StFlag::Deleted)).map(|m| m.uid).collect();
            if !deleted.is_empty()
                && let Err(e) = sel.mailbox.expunge(&deleted).await
            {
                return store_error(&e, &self.peer);
            }
        }
        self.deselect();
        Tagged::ok("")
    }

    /// EXPUNGE / UID EXPUNGE (RFC 4315): remove \Deleted messages, durable before OK.
    pub(crate) async fn cmd_expunge(&mut self, uids: Option<&SequenceSet>) -> Tagged {
        let Some(sel) = self.selected() else {
            return Tagged::bad("No mailbox selected");
        };
        if sel.read_only {
            return Tagged::no("Mailbox is read-only").code("READ-ONLY");
        }
        let allowed = match uids {
            Some(set) => match sel.resolve(set, true) {
                Ok(v) => Some(v),
                Err(t) => return t,
            },
            None => None,
        };
        let targets: Vec<u32> = sel
            .messages
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                m.flags.contains(&StFlag::Deleted) && allowed.as_ref().is_none_or(|a| a.binary_search(i).is_ok())
            })
            .map(|(_, m)| m.uid)
            .collect();
        if !targets.is_empty()
            && let Err(e) = sel.mailbox.expunge(&targets).await
        {
            return store_error(&e, &self.peer);
        }
        self.refresh_selected(true, true).await;
        Tagged::ok("")
    }

    /// Bring the view up to date and write the untagged updates. `allow_expunge`: false
    /// while answering FETCH/STORE/SEARCH. `force`: sync even when no event arrived (NOOP,
    /// IDLE start: files dropped into the Maildir by others only show up on a sync).
    pub(crate) async fn refresh_selected(&mut self, allow_expunge: bool, force: bool) {
        let condstore = self.enabled.condstore;
        let qresync = self.enabled.qresync;
        let rev1 = !self.enabled.imap4rev2;
        let peer = self.peer;
        let Some(sel) = self.selected_mut() else {
            return;
        };
        let mut pending = false;
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = sel.events.try_recv() {
            pending = true;
        }
        if !pending && !force {
            return;
        }
        // Only what changed since the view's HIGHESTMODSEQ; a full snapshot to compare
        // with when the store cannot tell (tombstones gone, new UIDVALIDITY).
        let changes = match sel.mailbox.changes_since(sel.uid_validity, sel.highest_modseq).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => sel.mailbox.sync().await.map(|snap| changes_from_snapshot(&sel.messages, snap)),
            Err(e) => Err(e),
        };
        let changes = match changes {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "mailbox sync failed");
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
                    sel.messages.push(c);
                }
                continue;
            };
            let m = &mut sel.messages[i];
            if c.flags == m.flags && c.modseq == m.modseq {
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
        self.out.extend_from_slice(&announcement);
        self.out.extend_from_slice(&out);
    }

    /// IDLE (RFC 2177): `+ idling`, then untagged updates as they happen until DONE.
    /// The wait is bounded by the idle timeout (autologout) and ends on shutdown.
    pub(crate) async fn cmd_idle(&mut self) -> std::io::Result<Option<Tagged>> {
        self.out.extend_from_slice(b"+ idling\r\n");
        self.refresh_selected(true, true).await;
        self.flush().await?;
        loop {
            if let Some(line) = self.take_buffered_line() {
                return Ok(Some(if line.eq_ignore_ascii_case(b"DONE") {
                    Tagged::ok("IDLE terminated")
                } else {
                    Tagged::bad("Expected DONE")
                }));
            }
            match self.idle_wait().await? {
                IdleWake::Input => {}
                IdleWake::MailboxChanged => {
                    self.refresh_selected(true, true).await;
                    self.flush().await?;
                }
                IdleWake::Eof => return Ok(None),
                IdleWake::TimedOut => {
                    self.bye("Autologout; idle for too long").await?;
                    return Ok(None);
                }
                IdleWake::Shutdown => {
                    self.bye("Server shutting down").await?;
                    return Ok(None);
                }
            }
        }
    }
}

/// The changes a full snapshot shows against the view: messages missing from it are
/// expunged; every message is passed on as possibly changed (unchanged ones are skipped).
fn changes_from_snapshot(view: &[MessageMeta], snap: MailboxSnapshot) -> MailboxChanges {
    let expunged =
        view.iter().map(|m| m.uid).filter(|u| snap.messages.binary_search_by_key(u, |s| s.uid).is_err()).collect();
    MailboxChanges { uid_next: snap.uid_next, highest_modseq: snap.highest_modseq, changed: snap.messages, expunged }
}

/// Why an IDLE wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleWake {
    Input,
    MailboxChanged,
    Eof,
    TimedOut,
    Shutdown,
}
