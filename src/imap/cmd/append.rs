//! APPEND (with MULTIAPPEND, RFC 3502), COPY and MOVE (RFC 6851), answering with UIDPLUS
//! codes (RFC 4315: `[APPENDUID v uids]`, `[COPYUID v src dst]`). A missing target is
//! `[TRYCREATE]` so clients offer to create it; a full account or a full disk is `[OVERQUOTA]`. Everything
//! is durable before the OK (the store fsyncs).

use std::time::{Duration, UNIX_EPOCH};

use super::{Tagged, store_error, to_store_flag};
use crate::imap::command::AppendMessage;
use crate::imap::sequence::{SequenceSet, format_numbers_ordered};
use crate::imap::session::{Session, SpooledLiteral};
use crate::smtp::deliver::SpooledMessage;
use crate::store::{Flag as StFlag, Mailbox, MessageBody, StoreError};

impl Session {
    /// The account's quota in bytes, if it has one.
    pub(crate) fn quota_limit(&self) -> Option<u64> {
        let user = self.user()?;
        self.ctx.directory.account(&user.address)?.quota
    }

    /// Open a COPY/MOVE/APPEND target: a missing one is `[TRYCREATE]` (RFC 9051 6.3.12).
    async fn open_target(&mut self, raw_name: &str) -> Result<Mailbox, Tagged> {
        let name = self.mailbox_from_client(raw_name)?;
        let user = self.user().ok_or_else(|| Tagged::bad("Log in first"))?;
        match self.ctx.store.open_mailbox(&user.owner, &name).await {
            Ok(m) => Ok(m),
            Err(StoreError::NoSuchFolder(_)) => Err(Tagged::no("Mailbox does not exist").code("TRYCREATE")),
            Err(e) => Err(store_error(&e, &self.peer)),
        }
    }

    /// The content of each message: from the command itself, or from the spool file its
    /// literal was streamed to (returned too, so the files live until the copies are made).
    fn append_bodies(
        &self,
        messages: &[AppendMessage],
        mut spooled: Vec<SpooledLiteral>,
    ) -> Result<(Vec<MessageBody>, Vec<SpooledMessage>), Tagged> {
        let mut bodies = Vec::with_capacity(messages.len());
        let mut files = Vec::with_capacity(spooled.len());
        for m in messages {
            let Some(i) = spooled.iter().position(|s| s.index == m.literal) else {
                bodies.push(MessageBody::Memory(bytes::Bytes::copy_from_slice(&m.data)));
                continue;
            };
            let s = spooled.swap_remove(i);
            if s.has_nul && !m.binary {
                return Err(Tagged::bad("NUL in literal (use literal8)"));
            }
            match s.body {
                Ok(file) => {
                    bodies.push(file.body.clone());
                    files.push(file);
                }
                Err(e) => {
                    tracing::warn!(peer = %self.peer, error = %e, "IMAP APPEND spool failure");
                    if crate::disk::is_full(&e) {
                        return Err(Tagged::no("Not enough disk space").code("OVERQUOTA"));
                    }
                    return Err(Tagged::no("Internal error, try again later").code("UNAVAILABLE"));
                }
            }
        }
        if !spooled.is_empty() {
            // Only messages may be big literals: a streamed mailbox name is not one.
            return Err(Tagged::bad("Literal too big"));
        }
        Ok((bodies, files))
    }

    /// Would `extra` more bytes pass the user's quota? Asks the store for the current usage
    /// (`&mut`: a shared borrow of the session held across the wait would need it `Sync`).
    async fn over_quota(&mut self, extra: u64) -> Result<bool, StoreError> {
        match (self.quota_limit(), self.user()) {
            (Some(limit), Some(user)) => {
                Ok(self.ctx.store.quota_usage(&user.owner).await?.saturating_add(extra) > limit)
            }
            _ => Ok(false),
        }
    }

    pub(crate) async fn cmd_append(
        &mut self,
        raw_name: &str,
        messages: Vec<AppendMessage>,
        spooled: Vec<SpooledLiteral>,
    ) -> Tagged {
        let target = match self.open_target(raw_name).await {
            Ok(m) => m,
            Err(t) => return t,
        };
        // The spool files must outlive the appends that copy them.
        let (bodies, _spool_files) = match self.append_bodies(&messages, spooled) {
            Ok(b) => b,
            Err(t) => return t,
        };
        let total: u64 = bodies.iter().map(MessageBody::len).sum();
        if bodies.iter().any(MessageBody::is_empty) {
            return Tagged::no("Cannot store an empty message");
        }
        if bodies.iter().any(|b| b.len() > self.ctx.limits.max_literal) {
            return Tagged::no("Message too big").code("TOOBIG");
        }
        match self.over_quota(total).await {
            Ok(false) => {}
            Ok(true) => return Tagged::no("Quota exceeded").code("OVERQUOTA"),
            Err(e) => return store_error(&e, &self.peer),
        }
        // Index mail waiting in new/ first, so UIDs follow arrival order.
        if let Err(e) = target.sync().await {
            return store_error(&e, &self.peer);
        }
        let mut uids = Vec::with_capacity(messages.len());
        for (m, body) in messages.iter().zip(&bodies) {
            let flags: Vec<StFlag> = m.flags.iter().map(to_store_flag).collect();
            let date = m.internal_date.and_then(|s| u64::try_from(s).ok()).map(|s| UNIX_EPOCH + Duration::from_secs(s));
            match target.append(body, &flags, date).await {
                Ok(uid) => uids.push(uid),
                Err(e) => {
                    // MULTIAPPEND is all or nothing (RFC 3502 6): undo what went in.
                    if !uids.is_empty() {
                        let _ = target.expunge(&uids).await;
                    }
                    return store_error(&e, &self.peer);
                }
            }
        }
        if self.selected().is_some() {
            self.refresh_selected(true, false).await;
        }
        Tagged::ok("APPEND completed").code(format!(
            "APPENDUID {} {}",
            target.uid_validity(),
            format_numbers_ordered(&uids)
        ))
    }

    pub(crate) async fn cmd_copy_move(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        raw_name: &str,
        is_move: bool,
    ) -> Tagged {
        // Expunges by others wait until the set is resolved: reporting them first would shift
        // the sequence numbers the client meant (RFC 9051 7.5.1), moving the wrong message.
        self.refresh_selected(uid, false).await;
        let target = match self.open_target(raw_name).await {
            Ok(m) => m,
            Err(t) => return t,
        };
        let Some(sel) = self.selected() else {
            return Tagged::bad("No mailbox selected");
        };
        if is_move && sel.read_only {
            return Tagged::no("Mailbox is read-only").code("READ-ONLY");
        }
        let targets = match sel.resolve(set, uid) {
            Ok(t) => t,
            Err(t) => return t,
        };
        let uids: Vec<u32> = targets.iter().map(|i| sel.messages[*i].uid).collect();
        if uids.is_empty() {
            return Tagged::ok(if is_move { "MOVE completed" } else { "COPY completed" });
        }
        let size: u64 = targets.iter().map(|i| sel.messages[*i].size).sum();
        let same = sel.mailbox.same_mailbox(&target);
        if !is_move || same {
            match self.over_quota(size).await {
                Ok(false) => {}
                Ok(true) => return Tagged::no("Quota exceeded").code("OVERQUOTA"),
                Err(e) => return store_error(&e, &self.peer),
            }
        }
        let Some(sel) = self.selected() else {
            return Tagged::bad("No mailbox selected");
        };
        let source = sel.mailbox.clone();
        let result = if is_move { source.move_to(&uids, &target).await } else { source.copy_to(&uids, &target).await };
        let pairs = match result {
            Ok(p) => p,
            Err(e) => return store_error(&e, &self.peer),
        };
        let src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let dst: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let code = format!(
            "COPYUID {} {} {}",
            target.uid_validity(),
            format_numbers_ordered(&src),
            format_numbers_ordered(&dst)
        );
        if pairs.is_empty() {
            return Tagged::ok("");
        }
        if is_move {
            // RFC 6851 3.3: COPYUID in an untagged OK before the expunges.
            self.out.extend_from_slice(format!("* OK [{code}] Moved\r\n").as_bytes());
            self.report_removed(&src);
            self.refresh_selected(true, false).await;
            Tagged::ok("MOVE completed")
        } else {
            if same {
                self.refresh_selected(uid, true).await;
            }
            Tagged::ok("COPY completed").code(code)
        }
    }

    /// Tell the client about messages we removed ourselves (MOVE): EXPUNGE per message, or
    /// one VANISHED with QRESYNC (RFC 7162 3.2.10).
    fn report_removed(&mut self, uids: &[u32]) {
        let qresync = self.enabled.qresync;
        let Some(sel) = self.selected_mut() else {
            return;
        };
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        let mut out = Vec::new();
        sel.remove_from_view(&sorted, qresync, &mut out);
        self.out.extend_from_slice(&out);
    }
}
