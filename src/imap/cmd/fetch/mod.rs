//! FETCH / UID FETCH (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED),
//! in three steps: `plan` picks once which data source the items need (index metadata,
//! header cache, header block, whole-file stream, body parts streamed from the file,
//! message in memory) and loads each message from it; `render` writes its response. This
//! file runs them in order: resolve the set, report VANISHED, set `\Seen` first (durably)
//! for body sections read without .PEEK, then load and render message by message.
//! Whenever the output reaches its bound (`Output::should_flush`), the command stops with
//! its cursor in a `FetchRun` and asks the driver to send what it has (`Waiting::Fetch`),
//! so a long FETCH never buffers unbounded output and a streamed literal's file is sent
//! before the next one is opened.

mod envelope_cache;
mod file_source;
mod parts;
mod plan;
mod readers;
mod render;
#[cfg(test)]
mod stream_tests;

pub use envelope_cache::{EnvelopeCache, EnvelopeKey};
pub use render::section_label;

use std::sync::Arc;

use plan::{FetchPlan, LoadError, Loaded, load};
use render::render_message;

use super::{HEADER_BATCH, Tagged, store_error};
use crate::imap::command::{FetchCommand, FetchItem};
use crate::imap::render::section::BinaryError;
use crate::imap::sequence::format_numbers;
use crate::imap::session::{Session, Step, Waiting};
use crate::net::MemoryPermit;
use crate::store::{Flag as StFlag, FlagOp, StoreError};

/// A FETCH between two messages: what it resolved and decided before the first one, and
/// how far it got, so it can stop while its output is sent and go on after.
pub(crate) struct FetchRun {
    uid: bool,
    /// Sequence indexes (0-based) of the messages to answer, in order.
    targets: Vec<usize>,
    /// Position in `targets` of the next message to answer.
    next: usize,
    plan: FetchPlan,
    /// UIDs this command set `\Seen` on (their FETCH shows the new FLAGS).
    seen_now: Vec<u32>,
    /// OK, or NO [EXPUNGEISSUED] once a message turned out gone.
    result: Tagged,
    /// The header blocks of the current batch, taken one by one.
    headers: Vec<Option<bytes::Bytes>>,
    /// The selected folder as envelope cache keys name it, when ENVELOPE is asked for.
    envelope_folder: Option<(Arc<str>, u32)>,
    /// The cached ENVELOPEs of the current header batch, taken one by one.
    envelopes: Vec<Option<bytes::Bytes>>,
    /// This command turned CONDSTORE on (the reply reports HIGHESTMODSEQ).
    enabled_now: bool,
    /// The memory budget of a message cut in memory, held until its response is sent.
    memory: Option<MemoryPermit>,
}

impl Session {
    pub(crate) async fn cmd_fetch(&mut self, f: &FetchCommand) -> std::io::Result<Step> {
        let enabled_now =
            (f.items.contains(&FetchItem::ModSeq) || f.changed_since.is_some()) && self.enable_condstore();
        if f.vanished && !self.enabled.qresync {
            return Ok(Step::Done(Tagged::bad("Enable QRESYNC first")));
        }
        self.refresh_selected(f.uid, false).await;
        let Some(sel) = self.selected() else {
            return Ok(Step::Done(Tagged::bad("No mailbox selected")));
        };
        let mut targets = match sel.resolve(&f.set, f.uid) {
            Ok(t) => t,
            Err(t) => return Ok(Step::Done(t)),
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
            return Ok(Step::Done(Tagged::bad("No mailbox selected")));
        };
        let plan = FetchPlan::new(items);
        let envelope_folder = plan.envelope.then(|| {
            let id = sel.mailbox.id();
            (Arc::from(id.location), id.uid_validity)
        });
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
                            if let Some(modseq) = outcome.updated.iter().map(|u| u.2).max() {
                                sel.own_changes.push(modseq);
                            }
                            for (uid, flags, modseq) in outcome.updated {
                                if let Some(i) = sel.index_of_uid(uid) {
                                    sel.messages[i].flags = flags;
                                    sel.messages[i].modseq = modseq;
                                    seen_now.push(uid);
                                }
                            }
                        }
                    }
                    Err(e) => return Ok(Step::Done(store_error(&e, &self.peer))),
                }
            }
        }
        let run = FetchRun {
            uid: f.uid,
            targets,
            next: 0,
            plan,
            seen_now,
            result: Tagged::ok(""),
            headers: Vec::new(),
            envelope_folder,
            envelopes: Vec::new(),
            enabled_now,
            memory: None,
        };
        self.fetch_messages(Box::new(run)).await
    }

    /// Answer the messages of `run` from its cursor on, until all are answered or the
    /// output is due to be sent (then the command waits with the cursor kept).
    pub(crate) async fn fetch_messages(&mut self, mut run: Box<FetchRun>) -> std::io::Result<Step> {
        // What the last stop held back is sent by now.
        run.memory = None;
        while let Some(&i) = run.targets.get(run.next) {
            let k = run.next;
            run.next += 1;
            let Some(sel) = self.selected() else {
                break;
            };
            let Some(meta) = sel.messages.get(i).cloned() else {
                continue;
            };
            if run.plan.batches_headers() && k.is_multiple_of(HEADER_BATCH) {
                // Header blocks for the next batch in one store call (header cache), but
                // none for a message whose cached ENVELOPE is all the FETCH needs of it.
                let uids: Vec<u32> = run.targets[k..]
                    .iter()
                    .take(HEADER_BATCH)
                    .map(|t| sel.messages.get(*t).map_or(0, |m| m.uid))
                    .collect();
                run.envelopes = match &run.envelope_folder {
                    Some(folder) => uids.iter().map(|u| self.ctx.envelopes.get(&envelope_key(folder, *u))).collect(),
                    None => Vec::new(),
                };
                let needed = |i: usize| !run.plan.envelope_only || run.envelopes.get(i).is_none_or(Option::is_none);
                let wanted: Vec<u32> = uids.iter().enumerate().filter(|(i, _)| needed(*i)).map(|(_, u)| *u).collect();
                let mut read = match sel.mailbox.read_headers(&wanted).await {
                    Ok(h) => h.into_iter(),
                    Err(e) => return Ok(Step::Done(store_error(&e, &self.peer))),
                };
                run.headers = (0..uids.len()).map(|i| if needed(i) { read.next().flatten() } else { None }).collect();
            }
            let cached = run.headers.get_mut(k % HEADER_BATCH).and_then(Option::take);
            let mut envelope = if run.plan.batches_headers() {
                run.envelopes.get_mut(k % HEADER_BATCH).and_then(Option::take)
            } else {
                run.envelope_folder.as_ref().and_then(|f| self.ctx.envelopes.get(&envelope_key(f, meta.uid)))
            };
            let was_cached = envelope.is_some();
            // A message read into memory holds its share of the server-wide budget until its
            // response has gone out (kept in the run across a flush).
            let (loaded, memory) = if was_cached && run.plan.envelope_only {
                (Loaded::Nothing, None)
            } else {
                match load(&run.plan, &sel.mailbox, meta.uid, meta.size, cached, &self.ctx.memory).await {
                    Ok(l) => l,
                    Err(LoadError::Store(StoreError::NoSuchMessage(_))) => {
                        run.result = Tagged::no("Some messages were expunged").code("EXPUNGEISSUED");
                        continue;
                    }
                    Err(LoadError::Store(e)) => return Ok(Step::Done(store_error(&e, &self.peer))),
                    Err(LoadError::Io(e)) => return Err(e),
                }
            };
            let recent = sel.is_recent(meta.uid);
            let seen = run.seen_now.contains(&meta.uid);
            let rendered =
                render_message(&mut self.out, i + 1, &run.plan.items, &meta, recent, loaded, seen, &mut envelope);
            if let Err(e) = rendered {
                return Ok(Step::Done(match e {
                    BinaryError::UnknownCte => Tagged::no("Unknown Content-Transfer-Encoding").code("UNKNOWN-CTE"),
                    BinaryError::NoSuchPart => Tagged::no("No such message part"),
                }));
            }
            if let (false, Some(rendered), Some(folder)) = (was_cached, envelope, &run.envelope_folder) {
                self.ctx.envelopes.put(envelope_key(folder, meta.uid), rendered);
            }
            if self.out.should_flush() {
                run.memory = memory;
                return Ok(Step::Wait(Waiting::Fetch(run)));
            }
        }
        self.refresh_selected(run.uid, false).await;
        let result = run.result;
        Ok(Step::Done(if run.enabled_now { self.condstore_enabled_reply(result) } else { result }))
    }
}

fn envelope_key((folder, uid_validity): &(Arc<str>, u32), uid: u32) -> EnvelopeKey {
    EnvelopeKey::new(folder.clone(), *uid_validity, uid)
}
