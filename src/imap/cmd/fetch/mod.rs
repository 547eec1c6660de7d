//! FETCH / UID FETCH (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED),
//! in three steps: `plan` picks once which data source the items need (index metadata,
//! header cache, header block, whole-file stream, body parts streamed from the file,
//! message in memory) and loads each message from it; `render` writes its response. This file runs them in order: resolve
//! the set, report VANISHED, set `\Seen` first (durably) for body sections read without
//! .PEEK, then load and render message by message, flushing as it goes.

mod file_source;
mod parts;
mod plan;
mod readers;
mod render;
#[cfg(test)]
mod stream_tests;

pub use render::section_label;

use plan::{FetchPlan, LoadError, load};
use render::render_message;

use super::{HEADER_BATCH, Tagged, store_error};
use crate::imap::command::{FetchCommand, FetchItem};
use crate::imap::render::section::BinaryError;
use crate::imap::sequence::format_numbers;
use crate::imap::session::Session;
use crate::store::{Flag as StFlag, FlagOp, StoreError};

impl Session {
    pub(crate) async fn cmd_fetch(&mut self, f: &FetchCommand) -> std::io::Result<Tagged> {
        let enabled_now =
            (f.items.contains(&FetchItem::ModSeq) || f.changed_since.is_some()) && self.enable_condstore();
        if f.vanished && !self.enabled.qresync {
            return Ok(Tagged::bad("Enable QRESYNC first"));
        }
        self.refresh_selected(f.uid, false).await;
        let Some(sel) = self.selected() else {
            return Ok(Tagged::bad("No mailbox selected"));
        };
        let mut targets = match sel.resolve(&f.set, f.uid) {
            Ok(t) => t,
            Err(t) => return Ok(t),
        };
        let mut items = f.items.clone();
        if let Some(since) = f.changed_since {
            targets.retain(|i| sel.messages[*i].modseq > since);
            if !items.contains(&FetchItem::ModSeq) {
                items.push(FetchItem::ModSeq);
            }
            if f.vanished {
                let largest = sel.uid_next.saturating_sub(1);
                let gone: Vec<u32> = sel
                    .mailbox
                    .vanished_since(since)
                    .await
                    .into_iter()
                    .filter(|u| f.set.contains(*u, largest))
                    .collect();
                if !gone.is_empty() {
                    self.out
                        .extend_from_slice(format!("* VANISHED (EARLIER) {}\r\n", format_numbers(&gone)).as_bytes());
                }
            }
        }
        let Some(sel) = self.selected() else {
            return Ok(Tagged::bad("No mailbox selected"));
        };
        let plan = FetchPlan::new(items);
        // Implicit \Seen, durable before the data is sent.
        let mut seen_now: Vec<u32> = Vec::new();
        if !sel.read_only && plan.sets_seen {
            let unseen: Vec<u32> = targets
                .iter()
                .map(|i| &sel.messages[*i])
                .filter(|m| !m.flags.contains(&StFlag::Seen))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                let mailbox = sel.mailbox.clone();
                match mailbox.store_flags(&unseen, FlagOp::Add, &[StFlag::Seen], None).await {
                    Ok(outcome) => {
                        if let Some(sel) = self.selected_mut() {
                            for (uid, flags, modseq) in outcome.updated {
                                if let Some(i) = sel.index_of_uid(uid) {
                                    sel.messages[i].flags = flags;
                                    sel.messages[i].modseq = modseq;
                                    seen_now.push(uid);
                                }
                            }
                        }
                    }
                    Err(e) => return Ok(store_error(&e, &self.peer)),
                }
            }
        }
        let mut result = Tagged::ok("");
        let mut headers: Vec<Option<bytes::Bytes>> = Vec::new();
        for (k, i) in targets.iter().copied().enumerate() {
            let Some(sel) = self.selected() else {
                break;
            };
            let Some(meta) = sel.messages.get(i).cloned() else {
                continue;
            };
            if plan.batches_headers() && k % HEADER_BATCH == 0 {
                // Header blocks for the next batch in one store call (header cache).
                let uids: Vec<u32> =
                    targets[k..].iter().take(HEADER_BATCH).map(|t| sel.messages.get(*t).map_or(0, |m| m.uid)).collect();
                headers = match sel.mailbox.read_headers(&uids).await {
                    Ok(h) => h,
                    Err(e) => return Ok(store_error(&e, &self.peer)),
                };
            }
            let cached = headers.get_mut(k % HEADER_BATCH).and_then(Option::take);
            // Held until the response has gone out when the message is read into memory.
            let (loaded, _memory) = match load(&plan, &sel.mailbox, meta.uid, meta.size, cached, &self.ctx.memory).await
            {
                Ok(l) => l,
                Err(LoadError::Store(StoreError::NoSuchMessage(_))) => {
                    result = Tagged::no("Some messages were expunged").code("EXPUNGEISSUED");
                    continue;
                }
                Err(LoadError::Store(e)) => return Ok(store_error(&e, &self.peer)),
                Err(LoadError::Io(e)) => return Err(e),
            };
            let recent = sel.is_recent(meta.uid);
            let seen = seen_now.contains(&meta.uid);
            if let Err(e) = render_message(&mut self.out, i + 1, &plan.items, &meta, recent, loaded, seen) {
                return Ok(match e {
                    BinaryError::UnknownCte => Tagged::no("Unknown Content-Transfer-Encoding").code("UNKNOWN-CTE"),
                    BinaryError::NoSuchPart => Tagged::no("No such message part"),
                });
            }
            self.maybe_flush().await?;
        }
        self.refresh_selected(f.uid, false).await;
        Ok(if enabled_now { self.condstore_enabled_reply(result) } else { result })
    }
}
