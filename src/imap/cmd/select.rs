//! SELECT/EXAMINE (with CONDSTORE and QRESYNC, RFC 7162), CLOSE, UNSELECT, EXPUNGE and
//! IDLE (RFC 2177): the commands that open, change and leave the selected mailbox. The view
//! itself and its untagged updates are `imap::selected`.

use super::{Tagged, store_error};
use crate::imap::command::SelectParams;
use crate::imap::selected::{Refresh, Selected, keywords_of, write_flags_announcement};
use crate::imap::sequence::SequenceSet;
use crate::imap::session::{Next, Session, State, Step, Waiting};
use crate::store::Flag as StFlag;

impl Session {
    pub(crate) async fn cmd_select(&mut self, raw_name: &str, params: SelectParams, read_only: bool) -> Tagged {
        // The mailbox being left stays open until the new one is: a client selecting its
        // INBOX again (or alone on it) must not make the store reload the index from disk.
        let _previous = self.selected().map(|s| s.mailbox.clone());
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
            own_changes: Vec::new(),
        };
        selected.add_recent(claimed);
        selected.view.release_absent(|u| selected.index_of_uid(u).is_some());
        if let Some(q) = &params.qresync {
            selected.qresync_catch_up(q, &mut self.out).await;
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
        let enabled = self.enabled;
        let peer = self.peer;
        let State::Selected(_, sel) = &mut self.state else {
            return;
        };
        sel.refresh(Refresh { allow_expunge, force, enabled }, &mut self.out, &peer).await;
    }

    /// IDLE (RFC 2177): `+ idling` and the updates so far; then the command waits while the
    /// driver watches the mailbox (`idle_changed`) and the input (`idle_done`), bounded by
    /// the idle timeout (autologout) and shutdown.
    pub(crate) async fn cmd_idle(&mut self) -> Step {
        self.out.extend_from_slice(b"+ idling\r\n");
        self.refresh_selected(true, true).await;
        Step::Wait(Waiting::Idle)
    }

    /// The selected mailbox changed while idling: its untagged updates, for the driver to send.
    pub(crate) async fn idle_changed(&mut self) {
        self.refresh_selected(true, true).await;
    }

    /// The client's line ends IDLE: DONE completes it, anything else is BAD.
    pub(crate) fn idle_done(&mut self, line: &[u8]) -> Next {
        let (tag, name, _) = match self.take_suspended(|w| matches!(w, Waiting::Idle)) {
            Ok(s) => s,
            Err(next) => return next,
        };
        let tagged = if line.eq_ignore_ascii_case(b"DONE") {
            Tagged::ok("IDLE terminated")
        } else {
            Tagged::bad("Expected DONE")
        };
        self.complete(&tag, name, tagged)
    }
}
