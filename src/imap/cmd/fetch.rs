//! FETCH / UID FETCH (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED).
//! Metadata items come from the index; the message file is read only when an item needs
//! its bytes (ENVELOPE, BODY*, RFC822*, BINARY*), so `FETCH 1:* (FLAGS UID)` on a big
//! mailbox opens no file. Reading a body section without .PEEK sets \Seen first (durably)
//! and reports the new FLAGS in the same response.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::{HEADER_BATCH, Tagged, store_error, write_flags_recent};
use crate::imap::command::{FetchCommand, FetchItem, Section, SectionText};
use crate::imap::render::mime::{self, MimePart};
use crate::imap::render::section::{BinaryError, binary, body_section, partial};
use crate::imap::render::{bodystructure, date_time, envelope, literal, nstring, replace_nuls, text_literal};
use crate::imap::sequence::format_numbers;
use crate::imap::session::Session;
use crate::store::{Flag as StFlag, FlagOp, MessageMeta, StoreError};

/// Largest message read into memory for FETCH.
const MAX_FETCH_BYTES: u64 = 256 * 1024 * 1024;

fn needs_content(item: &FetchItem) -> bool {
    !matches!(
        item,
        FetchItem::Flags | FetchItem::InternalDate | FetchItem::Rfc822Size | FetchItem::Uid | FetchItem::ModSeq
    )
}

/// Items that set \Seen (RFC 9051 6.4.5: BODY[...], RFC822, RFC822.TEXT, BINARY[...]).
fn sets_seen(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::Rfc822
            | FetchItem::Rfc822Text
            | FetchItem::BodySection { peek: false, .. }
            | FetchItem::Binary { peek: false, .. }
    )
}

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
        // Implicit \Seen, durable before the data is sent.
        let mut seen_now: Vec<u32> = Vec::new();
        if !sel.read_only && items.iter().any(sets_seen) {
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
        let content_needed = items.iter().any(needs_content);
        // `BODY[]`/`RFC822` alone: stream the file instead of loading it (large messages
        // never sit in memory whole).
        let content_items: Vec<&FetchItem> = items.iter().filter(|i| needs_content(i)).collect();
        let streamed = match content_items.as_slice() {
            [one] if whole_message_label(one).is_some() => Some((*one).clone()),
            _ => None,
        };
        // ENVELOPE and header sections only need the start of the file.
        let header_only = content_items.iter().all(|i| is_header_item(i));
        // `BODY[HEADER]`/`RFC822.HEADER` alone: a header the cache does not keep is streamed
        // from the file like BODY[] (a 1 MB header never sits in memory whole).
        let header_streamable = matches!(content_items.as_slice(), [one] if header_block_label(one).is_some());
        let mut result = Tagged::ok("");
        let mut headers: Vec<Option<bytes::Bytes>> = Vec::new();
        for (k, i) in targets.iter().copied().enumerate() {
            let Some(sel) = self.selected() else {
                break;
            };
            let Some(meta) = sel.messages.get(i).cloned() else {
                continue;
            };
            if content_needed && header_only && k % HEADER_BATCH == 0 {
                // Header blocks for the next batch in one store call (header cache).
                let uids: Vec<u32> =
                    targets[k..].iter().take(HEADER_BATCH).map(|t| sel.messages.get(*t).map_or(0, |m| m.uid)).collect();
                headers = match sel.mailbox.read_headers(&uids).await {
                    Ok(h) => h,
                    Err(e) => return Ok(store_error(&e, &self.peer)),
                };
            }
            let cached = headers.get_mut(k % HEADER_BATCH).and_then(Option::take);
            let mut reader = None;
            let mut header_reader = None;
            let raw = if cached.is_some() {
                cached
            } else if header_streamable {
                match sel.mailbox.header_block_reader(meta.uid).await {
                    Ok(r) => header_reader = Some(r),
                    Err(StoreError::NoSuchMessage(_)) => {
                        result = Tagged::no("Some messages were expunged").code("EXPUNGEISSUED");
                        continue;
                    }
                    Err(e) => return Ok(store_error(&e, &self.peer)),
                }
                None
            } else if streamed.is_some() {
                match sel.mailbox.open_message(meta.uid).await {
                    Ok(r) => reader = Some(r),
                    Err(StoreError::NoSuchMessage(_)) => {
                        result = Tagged::no("Some messages were expunged").code("EXPUNGEISSUED");
                        continue;
                    }
                    Err(e) => return Ok(store_error(&e, &self.peer)),
                }
                None
            } else if content_needed {
                let read = if header_only {
                    sel.mailbox.read_header_block(meta.uid).await
                } else {
                    sel.mailbox.read_message(meta.uid, MAX_FETCH_BYTES as usize).await
                };
                match read {
                    Ok(b) => Some(b),
                    Err(StoreError::NoSuchMessage(_)) => {
                        result = Tagged::no("Some messages were expunged").code("EXPUNGEISSUED");
                        continue;
                    }
                    Err(e) => return Ok(store_error(&e, &self.peer)),
                }
            } else {
                None
            };
            let recent = self.selected().is_some_and(|s| s.is_recent(meta.uid));
            let tree = raw.as_deref().map(mime::parse);
            let content = raw.as_deref().zip(tree.as_ref());
            let mut line = format!("* {} FETCH (", i + 1).into_bytes();
            let mut first = true;
            let mut wrote_flags = false;
            for item in &items {
                if !first {
                    line.push(b' ');
                }
                first = false;
                if *item == FetchItem::Flags {
                    wrote_flags = true;
                }
                if let Some((label, range)) = whole_message_label(item)
                    && let Some(mut r) = reader.take()
                {
                    line.extend_from_slice(label.as_bytes());
                    self.out.extend_from_slice(&line);
                    line.clear();
                    // A partial (Thunderbird downloads big messages in 64 KiB chunks) skips
                    // to its start instead of reading the message into memory.
                    let (start, len) = range.unwrap_or((0, u64::MAX));
                    let start = start.min(r.size());
                    let size = len.min(r.size() - start);
                    r.skip(start).await.map_err(std::io::Error::other)?;
                    if label.ends_with('~') {
                        self.out.literal_from(Box::new(r), size);
                    } else {
                        self.out.literal_from(Box::new(NoNuls(r)), size);
                    }
                    continue;
                }
                if let Some(label) = header_block_label(item)
                    && let Some((r, len)) = header_reader.take()
                {
                    line.extend_from_slice(label.as_bytes());
                    self.out.extend_from_slice(&line);
                    line.clear();
                    self.out.literal_from(Box::new(NoNuls(r)), len);
                    continue;
                }
                if let Err(e) = render_item(&mut line, item, &meta, recent, content) {
                    return Ok(match e {
                        BinaryError::UnknownCte => Tagged::no("Unknown Content-Transfer-Encoding").code("UNKNOWN-CTE"),
                        BinaryError::NoSuchPart => Tagged::no("No such message part"),
                    });
                }
            }
            if !wrote_flags && seen_now.contains(&meta.uid) {
                line.extend_from_slice(b" FLAGS ");
                write_flags_recent(&mut line, &meta.flags, recent);
            }
            line.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&line);
            self.maybe_flush().await?;
        }
        self.refresh_selected(f.uid, false).await;
        Ok(if enabled_now { self.condstore_enabled_reply(result) } else { result })
    }
}

/// Message text streamed into a plain literal: NUL becomes 0x80 on the way, as
/// `render::text_literal` does for text served from memory (only literal8 may carry NUL).
struct NoNuls<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for NoNuls<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            replace_nuls(&mut buf.filled_mut()[before..]);
        }
        polled
    }
}

/// Items answered from the top-level header alone (clients list folders with ENVELOPE
/// or HEADER.FIELDS, so this is the hot path).
fn is_header_item(item: &FetchItem) -> bool {
    match item {
        FetchItem::Envelope | FetchItem::Rfc822Header => true,
        FetchItem::BodySection { section, .. } => {
            section.part.is_empty()
                && matches!(
                    section.text,
                    Some(SectionText::Header)
                        | Some(SectionText::HeaderFields(_))
                        | Some(SectionText::HeaderFieldsNot(_))
                )
        }
        _ => false,
    }
}

/// The response label of an item that is the header block verbatim (streamable when the
/// header cache does not hold it).
fn header_block_label(item: &FetchItem) -> Option<&'static str> {
    match item {
        FetchItem::Rfc822Header => Some("RFC822.HEADER "),
        FetchItem::BodySection { section, partial: None, .. }
            if section.part.is_empty() && section.text == Some(SectionText::Header) =>
        {
            Some("BODY[HEADER] ")
        }
        _ => None,
    }
}

/// The response label of an item that is the whole message as stored, or a byte range of
/// it (`BODY[]<start.len>`), which can be streamed from the file (BINARY[] is the stored
/// message too: no decoding at the root).
fn whole_message_label(item: &FetchItem) -> Option<(String, Option<(u64, u64)>)> {
    match item {
        FetchItem::Rfc822 => Some(("RFC822 ".into(), None)),
        FetchItem::BodySection { section, partial, .. } if section.part.is_empty() && section.text.is_none() => {
            Some(match partial {
                None => ("BODY[] ".into(), None),
                Some((start, len)) => (format!("BODY[]<{start}> "), Some((u64::from(*start), u64::from(*len)))),
            })
        }
        FetchItem::Binary { part, partial: None, .. } if part.is_empty() => Some(("BINARY[] ~".into(), None)),
        _ => None,
    }
}

/// Append one FETCH data item.
fn render_item(
    out: &mut Vec<u8>,
    item: &FetchItem,
    meta: &MessageMeta,
    recent: bool,
    content: Option<(&[u8], &MimePart)>,
) -> Result<(), BinaryError> {
    let empty_tree;
    let (raw, tree): (&[u8], &MimePart) = match content {
        Some(c) => c,
        None => {
            empty_tree = mime::parse(b"");
            (b"", &empty_tree)
        }
    };
    match item {
        FetchItem::Uid => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
        FetchItem::Flags => {
            out.extend_from_slice(b"FLAGS ");
            write_flags_recent(out, &meta.flags, recent);
        }
        FetchItem::InternalDate => {
            let secs =
                meta.internal_date.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            out.extend_from_slice(format!("INTERNALDATE {}", date_time(secs)).as_bytes());
        }
        FetchItem::Rfc822Size => out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes()),
        FetchItem::ModSeq => out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes()),
        FetchItem::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            envelope::envelope(out, &raw[tree.header.clone()]);
        }
        FetchItem::Body => {
            out.extend_from_slice(b"BODY ");
            bodystructure::body_structure(out, raw, tree, false);
        }
        FetchItem::BodyStructure => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            bodystructure::body_structure(out, raw, tree, true);
        }
        FetchItem::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            text_literal(out, raw);
        }
        FetchItem::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            text_literal(out, &raw[tree.header.clone()]);
        }
        FetchItem::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            text_literal(out, &raw[tree.body.clone()]);
        }
        FetchItem::BodySection { section, partial: p, .. } => {
            out.extend_from_slice(format!("BODY[{}]", section_label(section)).as_bytes());
            if let Some((start, _)) = p {
                out.extend_from_slice(format!("<{start}>").as_bytes());
            }
            out.push(b' ');
            match body_section(raw, tree, section) {
                Some(data) => text_literal(out, partial(&data, *p)),
                None => nstring(out, None),
            }
        }
        FetchItem::Binary { part, partial: p, .. } => {
            let data = binary(raw, tree, part)?;
            out.extend_from_slice(format!("BINARY[{}]", part_label(part)).as_bytes());
            if let Some((start, _)) = p {
                out.extend_from_slice(format!("<{start}>").as_bytes());
            }
            out.push(b' ');
            let data = partial(&data, *p);
            if data.contains(&0) {
                // RFC 3516 4.2: literal8 for content with NUL.
                out.push(b'~');
            }
            literal(out, data);
        }
        FetchItem::BinarySize { part } => {
            let data = binary(raw, tree, part)?;
            out.extend_from_slice(format!("BINARY.SIZE[{}] {}", part_label(part), data.len()).as_bytes());
        }
    }
    Ok(())
}

fn part_label(part: &[u32]) -> String {
    part.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// The section spec as echoed in the response (`1.2.HEADER.FIELDS (DATE FROM)`).
pub fn section_label(section: &Section) -> String {
    let mut s = part_label(&section.part);
    let text = match &section.text {
        None => return s,
        Some(SectionText::Header) => "HEADER".to_string(),
        Some(SectionText::Text) => "TEXT".to_string(),
        Some(SectionText::Mime) => "MIME".to_string(),
        Some(SectionText::HeaderFields(names)) => format!("HEADER.FIELDS ({})", names.join(" ")),
        Some(SectionText::HeaderFieldsNot(names)) => {
            format!("HEADER.FIELDS.NOT ({})", names.join(" "))
        }
    };
    if !s.is_empty() {
        s.push('.');
    }
    s.push_str(&text);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_labels() {
        assert_eq!(section_label(&Section::default()), "");
        assert_eq!(
            section_label(&Section {
                part: vec![1, 2],
                text: Some(SectionText::HeaderFields(vec!["DATE".into(), "FROM".into()]))
            }),
            "1.2.HEADER.FIELDS (DATE FROM)"
        );
        assert_eq!(section_label(&Section { part: vec![], text: Some(SectionText::Text) }), "TEXT");
    }
}
