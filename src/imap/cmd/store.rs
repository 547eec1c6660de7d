//! STORE / UID STORE (RFC 9051 6.4.6) with .SILENT and CONDSTORE's UNCHANGEDSINCE
//! (RFC 7162 3.1.3: refused messages are listed in `[MODIFIED ...]`). The change is durable
//! (Maildir file renamed, index fsynced) before the OK, and other sessions learn about it
//! through the store's change events.

use super::{Tagged, store_error, to_store_flag, write_flags_recent};
use crate::imap::command::{StoreCommand, StoreOp};
use crate::imap::sequence::format_numbers;
use crate::imap::session::Session;
use crate::store::{Flag as StFlag, FlagOp};

impl Session {
    pub(crate) async fn cmd_store(&mut self, s: &StoreCommand) -> Tagged {
        let enabled_now = s.unchanged_since.is_some() && self.enable_condstore();
        self.refresh_selected(s.uid, false).await;
        let condstore = self.enabled.condstore;
        let peer = self.peer;
        let Some(sel) = self.selected() else {
            return Tagged::bad("No mailbox selected");
        };
        if sel.read_only {
            return Tagged::no("Mailbox is read-only").code("READ-ONLY");
        }
        let targets = match sel.resolve(&s.set, s.uid) {
            Ok(t) => t,
            Err(t) => return t,
        };
        let uids: Vec<u32> = targets.iter().map(|i| sel.messages[*i].uid).collect();
        if uids.is_empty() {
            return if enabled_now { self.condstore_enabled_reply(Tagged::ok("")) } else { Tagged::ok("") };
        }
        let flags: Vec<StFlag> = s.flags.iter().map(to_store_flag).collect();
        let op = match s.op {
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
            StoreOp::Replace => FlagOp::Replace,
        };
        let mailbox = sel.mailbox.clone();
        let outcome = match mailbox.store_flags(&uids, op, &flags, s.unchanged_since).await {
            Ok(o) => o,
            Err(e) => return store_error(&e, &peer),
        };
        let Some(sel) = self.selected_mut() else {
            return Tagged::bad("No mailbox selected");
        };
        let mut out = Vec::new();
        let mut changed: Vec<(usize, bool)> = Vec::new();
        if let Some(modseq) = outcome.updated.iter().map(|u| u.2).max() {
            sel.own_changes.push(modseq);
        }
        for (uid, flags, modseq) in &outcome.updated {
            if let Some(i) = sel.index_of_uid(*uid) {
                sel.messages[i].flags = flags.clone();
                sel.messages[i].modseq = *modseq;
                // The view's HIGHESTMODSEQ stays: the next sync must still bring changes by
                // others with lower modseqs that committed after our last sync.
                changed.push((i, true));
            }
        }
        for (uid, flags, modseq) in &outcome.unchanged {
            if let Some(i) = sel.index_of_uid(*uid) {
                // Already so in the store (another session may have set it a moment ago):
                // answer with the flags as stored, not the view's older ones. With .SILENT
                // nothing is answered, so the next sync reports them instead.
                if !s.silent {
                    sel.messages[i].flags = flags.clone();
                    sel.messages[i].modseq = *modseq;
                }
                changed.push((i, false));
            }
        }
        changed.sort_unstable();
        sel.announce_new_keywords(&mut out);
        for (i, really_changed) in changed {
            let m = &sel.messages[i];
            // RFC 7162 3.1.3: with .SILENT, CONDSTORE clients still get the new MODSEQ.
            if s.silent && !(condstore && really_changed) {
                continue;
            }
            out.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
            let mut parts = Vec::new();
            if s.uid {
                parts.push(format!("UID {}", m.uid).into_bytes());
            }
            if !s.silent {
                let mut f = b"FLAGS ".to_vec();
                write_flags_recent(&mut f, &m.flags, sel.is_recent(m.uid));
                parts.push(f);
            }
            if condstore {
                parts.push(format!("MODSEQ ({})", m.modseq).into_bytes());
            }
            out.extend_from_slice(&parts.join(&b' '));
            out.extend_from_slice(b")\r\n");
        }
        let failed: Vec<u32> = if s.uid {
            outcome.failed.clone()
        } else {
            outcome.failed.iter().filter_map(|u| sel.index_of_uid(*u).map(|i| i as u32 + 1)).collect()
        };
        self.out.extend_from_slice(&out);
        self.refresh_selected(s.uid, false).await;
        let tagged = if failed.is_empty() {
            Tagged::ok("")
        } else {
            Tagged::ok("Conditional STORE failed for some messages")
                .code(format!("MODIFIED {}", format_numbers(&failed)))
        };
        if enabled_now { self.condstore_enabled_reply(tagged) } else { tagged }
    }
}
