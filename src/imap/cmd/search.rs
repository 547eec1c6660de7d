//! SEARCH / UID SEARCH (RFC 9051 6.4.4) with ESEARCH return options (RFC 4731), SEARCHRES
//! `SAVE` and `$` (RFC 5182) and the CONDSTORE `(MODSEQ n)` suffix (RFC 7162 3.1.5). Keys
//! are evaluated by `imap::search`; message files are read only when a key needs them.
//! `evaluate` is shared with SORT and THREAD (`cmd/sort.rs`).

use super::{HEADER_BATCH, Tagged, store_error};
use crate::imap::command::{SearchCommand, SearchKey, SearchReturn};
use crate::imap::render::{number, string};
use crate::imap::search::{SearchMessage, SearchScope, matches, needs_body, needs_content};
use crate::imap::sequence::format_numbers;
use crate::imap::session::Session;
use crate::store::StoreError;

/// Largest message read into memory for a text search.
const MAX_SEARCH_BYTES: usize = 64 * 1024 * 1024;

fn has_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::And(v) => v.iter().any(has_modseq),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::Not(k) => has_modseq(k),
        _ => false,
    }
}

impl Session {
    pub(crate) async fn cmd_search(&mut self, tag: &str, s: &SearchCommand) -> Tagged {
        if let Some(cs) = &s.charset
            && !matches!(cs.as_str(), "UTF-8" | "US-ASCII")
        {
            return Tagged::no("Unsupported charset").code("BADCHARSET (UTF-8 US-ASCII)");
        }
        let with_modseq = has_modseq(&s.key);
        let enabled_now = with_modseq && self.enable_condstore();
        self.refresh_selected(s.uid, false).await;
        let found = match self.evaluate(&s.key, false, |_| ()).await {
            Ok(f) => f,
            Err(t) => return t,
        };
        let numbers: Vec<u32> = found.iter().map(|h| if s.uid { h.uid } else { h.seq }).collect();
        let max_modseq = found.iter().map(|h| h.modseq).max();
        let ret = match (&s.ret, self.enabled.imap4rev2) {
            (Some(r), _) => Some(r.clone()),
            // IMAP4rev2 has only ESEARCH (RFC 9051 7.3.4).
            (None, true) => Some(vec![SearchReturn::All]),
            (None, false) => None,
        };
        let mut out = Vec::new();
        match ret {
            None => {
                out.extend_from_slice(b"* SEARCH");
                for n in &numbers {
                    out.push(b' ');
                    number(&mut out, *n);
                }
                if let (true, Some(m)) = (with_modseq, max_modseq) {
                    out.extend_from_slice(format!(" (MODSEQ {m})").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            Some(mut opts) => {
                if opts.is_empty() {
                    opts.push(SearchReturn::All);
                }
                let save = opts.contains(&SearchReturn::Save);
                let min = numbers.iter().copied().min();
                let max = numbers.iter().copied().max();
                if save {
                    // RFC 5182 2.4: with MIN/MAX only those are saved.
                    let only_minmax = (opts.contains(&SearchReturn::Min) || opts.contains(&SearchReturn::Max))
                        && !opts.contains(&SearchReturn::All)
                        && !opts.contains(&SearchReturn::Count);
                    let pick: Vec<usize> = if only_minmax {
                        let mut v = Vec::new();
                        if opts.contains(&SearchReturn::Min) && !found.is_empty() {
                            v.push(0);
                        }
                        if opts.contains(&SearchReturn::Max) && !found.is_empty() {
                            v.push(found.len() - 1);
                        }
                        v
                    } else {
                        (0..found.len()).collect()
                    };
                    let saved: Vec<u32> = pick.iter().map(|i| found[*i].uid).collect();
                    if let Some(sel) = self.selected_mut() {
                        sel.saved = saved;
                    }
                }
                let only_save = opts.iter().all(|o| *o == SearchReturn::Save);
                if !only_save {
                    out.extend_from_slice(b"* ESEARCH (TAG ");
                    string(&mut out, tag.as_bytes());
                    out.push(b')');
                    if s.uid {
                        out.extend_from_slice(b" UID");
                    }
                    for o in &opts {
                        match o {
                            SearchReturn::Min => {
                                if let Some(v) = min {
                                    out.extend_from_slice(format!(" MIN {v}").as_bytes());
                                }
                            }
                            SearchReturn::Max => {
                                if let Some(v) = max {
                                    out.extend_from_slice(format!(" MAX {v}").as_bytes());
                                }
                            }
                            SearchReturn::Count => {
                                out.extend_from_slice(format!(" COUNT {}", numbers.len()).as_bytes())
                            }
                            SearchReturn::All => {
                                if !numbers.is_empty() {
                                    out.extend_from_slice(format!(" ALL {}", format_numbers(&numbers)).as_bytes());
                                }
                            }
                            SearchReturn::Save => {}
                        }
                    }
                    if let (true, Some(m)) = (with_modseq, returned_modseq(&found, &opts)) {
                        out.extend_from_slice(format!(" MODSEQ {m}").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        self.out.extend_from_slice(&out);
        self.refresh_selected(s.uid, false).await;
        if enabled_now { self.condstore_enabled_reply(Tagged::ok("")) } else { Tagged::ok("") }
    }
}

/// The MODSEQ of an ESEARCH answer (RFC 7162 3.1.5 with RFC 4731 3.2): the highest
/// mod-sequence of the messages the answer returns: all found ones for ALL or COUNT,
/// otherwise only the MIN and/or MAX message (MIN alone: that message's own).
fn returned_modseq<T>(found: &[Hit<T>], opts: &[SearchReturn]) -> Option<u64> {
    if opts.iter().any(|o| matches!(o, SearchReturn::All | SearchReturn::Count)) {
        return found.iter().map(|h| h.modseq).max();
    }
    let min = found.first().filter(|_| opts.contains(&SearchReturn::Min)).map(|h| h.modseq);
    let max = found.last().filter(|_| opts.contains(&SearchReturn::Max)).map(|h| h.modseq);
    min.max(max)
}

/// One matching message, with what the caller derived from it.
pub(super) struct Hit<T> {
    pub seq: u32,
    pub uid: u32,
    pub modseq: u64,
    pub extra: T,
}

/// What a caller of `evaluate` may derive per matching message (SORT values, THREAD ids).
pub(super) struct MessageFacts<'a> {
    pub seq: u32,
    pub internal_date: i64,
    pub size: u64,
    /// The header block or the whole message, when `evaluate` was asked to read the
    /// header: its readers (`mime::header_value`) stop at the blank line.
    pub header: Option<&'a [u8]>,
}

impl Session {
    /// Evaluate a search key over the selected mailbox, reading message files only when
    /// the key needs them (or `need_header`, for SORT/THREAD criteria).
    pub(super) async fn evaluate<T>(
        &mut self,
        key: &SearchKey,
        need_header: bool,
        extra: impl Fn(MessageFacts<'_>) -> T,
    ) -> Result<Vec<Hit<T>>, Tagged> {
        let peer = self.peer;
        let Some(sel) = self.selected() else {
            return Err(Tagged::bad("No mailbox selected"));
        };
        let scope = SearchScope { max_seq: sel.messages.len() as u32, max_uid: sel.max_uid(), saved: &sel.saved };
        let content = needs_content(key);
        let body = needs_body(key);
        let header_only = (content || need_header) && !body;
        let mut found = Vec::new();
        let mut headers: Vec<Option<bytes::Bytes>> = Vec::new();
        for (i, m) in sel.messages.iter().enumerate() {
            if header_only && i % HEADER_BATCH == 0 {
                // Header blocks for the next batch in one store call (header cache).
                let uids: Vec<u32> = sel.messages.skip(i).iter().take(HEADER_BATCH).map(|m| m.uid).collect();
                headers = sel.mailbox.read_headers(&uids).await.map_err(|e| store_error(&e, &peer))?;
            }
            let cached = if header_only { headers.get_mut(i % HEADER_BATCH).and_then(Option::take) } else { None };
            let raw = if cached.is_some() {
                cached
            } else if content || need_header {
                let read = if body {
                    sel.mailbox.read_message(m.uid, MAX_SEARCH_BYTES).await
                } else {
                    sel.mailbox.read_header_block(m.uid).await
                };
                match read {
                    Ok(b) => Some(b),
                    Err(StoreError::NoSuchMessage(_)) => continue,
                    Err(e) => return Err(store_error(&e, &peer)),
                }
            } else {
                None
            };
            let internal_date =
                m.internal_date.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            let flags = flags_of(m);
            let seq = i as u32 + 1;
            let msg = SearchMessage {
                seq,
                uid: m.uid,
                flags: &flags,
                modseq: m.modseq,
                size: m.size,
                internal_date,
                raw: if content { raw.as_deref() } else { None },
                recent: sel.is_recent(m.uid),
            };
            if matches(key, &msg, &scope) {
                // Only for a caller that asked for it (SORT, THREAD), not SEARCH.
                let header = raw.as_deref().filter(|_| need_header);
                found.push(Hit {
                    seq,
                    uid: m.uid,
                    modseq: m.modseq,
                    extra: extra(MessageFacts { seq, internal_date, size: m.size, header }),
                });
            }
        }
        Ok(found)
    }
}

fn flags_of(m: &crate::store::MessageMeta) -> Vec<crate::imap::command::Flag> {
    m.flags.iter().map(super::from_store_flag).collect()
}
