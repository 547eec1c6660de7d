//! Render: one message's FETCH response from its metadata and what `plan::load` brought
//! (nothing, bytes in memory, or a literal to stream). Writes into the session's `Output`
//! and does no I/O: a streamed literal is left there as an effect for the connection.

use std::cell::OnceCell;
use std::fs::File;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

use super::parts::PartItem;
use super::plan::Loaded;
use super::readers::{Decoded, FileRange};
use crate::imap::command::{FetchItem, Section, SectionText};
use crate::imap::output::Output;
use crate::imap::render::mime::{self, MimePart};
use crate::imap::render::section::{BinaryError, binary, body_section, partial};
use crate::imap::render::{bodystructure, date_time, envelope, literal, nstring, number, replace_nuls, text_literal};
use crate::imap::response::write_flags_recent;
use crate::store::MessageMeta;

/// `* n FETCH (...)` for the message at sequence number `seq`. `flags_changed`: this
/// FETCH set `\Seen` on it, so FLAGS is reported even when not asked for. `envelope`: the
/// message's ENVELOPE as rendered before (then written as it is), else where the one
/// rendered now is left for the envelope cache. On an error nothing of the message is
/// written (the caller answers NO).
#[allow(clippy::too_many_arguments)]
pub(super) fn render_message(
    out: &mut Output,
    seq: usize,
    items: &[FetchItem],
    meta: &MessageMeta,
    recent: bool,
    loaded: Loaded,
    flags_changed: bool,
    envelope: &mut Option<Bytes>,
) -> Result<(), BinaryError> {
    let (raw, mut stream) = match loaded {
        Loaded::Nothing => (None, None),
        Loaded::Bytes(b) => (Some(b), None),
        Loaded::Stream { reader, size } => (None, Some((reader, size))),
        Loaded::Parts { file, items: parts } => {
            return render_parts(out, seq, items, meta, recent, &file, parts, flags_changed, envelope);
        }
    };
    let content = Content::new(raw.as_deref().unwrap_or_default());
    let mut line = fetch_line_start(seq);
    let mut first = true;
    let mut wrote_flags = false;
    for item in items {
        if !first {
            line.push(b' ');
        }
        first = false;
        if *item == FetchItem::Flags {
            wrote_flags = true;
        }
        let label = whole_message_label(item).map(|(label, _)| label).or(header_block_label(item).map(String::from));
        if let Some(label) = label
            && let Some((reader, size)) = stream.take()
        {
            line.extend_from_slice(label.as_bytes());
            out.extend_from_slice(&line);
            line.clear();
            out.literal_from(reader, size);
            continue;
        }
        render_item(&mut line, item, meta, recent, &content, envelope)?;
    }
    if !wrote_flags && flags_changed {
        line.extend_from_slice(b" FLAGS ");
        write_flags_recent(&mut line, &meta.flags, recent);
    }
    line.extend_from_slice(b")\r\n");
    out.extend_from_slice(&line);
    Ok(())
}

/// `* n FETCH (`, the start of every message's response.
fn fetch_line_start(seq: usize) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"* ");
    number(&mut line, seq);
    line.extend_from_slice(b" FETCH (");
    line
}

/// [`render_message`] for items resolved against the message file (`parts`): each body
/// item a literal streamed from its byte range.
#[allow(clippy::too_many_arguments)]
fn render_parts(
    out: &mut Output,
    seq: usize,
    items: &[FetchItem],
    meta: &MessageMeta,
    recent: bool,
    file: &Arc<File>,
    parts: Vec<PartItem>,
    flags_changed: bool,
    envelope: &mut Option<Bytes>,
) -> Result<(), BinaryError> {
    // Nothing of the message is written when one item fails.
    if let Some(PartItem::Failed(e)) = parts.iter().find(|p| matches!(p, PartItem::Failed(_))) {
        return Err(e.clone());
    }
    let mut line = fetch_line_start(seq);
    for (i, (item, part)) in items.iter().zip(parts).enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        let label = content_label(item);
        match part {
            PartItem::Meta | PartItem::Failed(_) => {
                render_item(&mut line, item, meta, recent, &Content::new(b""), envelope)?
            }
            PartItem::Nil => {
                line.extend_from_slice(label.as_bytes());
                nstring(&mut line, None);
            }
            PartItem::Size(n) => line.extend_from_slice(format!("{label}{n}").as_bytes()),
            PartItem::Bytes(b) if *item == FetchItem::Envelope => {
                line.extend_from_slice(label.as_bytes());
                write_envelope(&mut line, &b, envelope);
            }
            PartItem::Bytes(b) => {
                line.extend_from_slice(label.as_bytes());
                text_literal(&mut line, &b);
            }
            PartItem::Text { start, end } => {
                line.extend_from_slice(label.as_bytes());
                out.extend_from_slice(&line);
                line.clear();
                out.literal_from(Box::new(NoNuls(FileRange::new(file.clone(), start, end))), end - start);
            }
            PartItem::Binary { start, end, decoder, skip, size, literal8 } => {
                line.extend_from_slice(label.as_bytes());
                if literal8 {
                    line.push(b'~');
                }
                out.extend_from_slice(&line);
                line.clear();
                let range = FileRange::new(file.clone(), start, end);
                out.literal_from(Box::new(Decoded::new(range, decoder, skip, size)), size);
            }
        }
    }
    if flags_changed && !items.contains(&FetchItem::Flags) {
        line.extend_from_slice(b" FLAGS ");
        write_flags_recent(&mut line, &meta.flags, recent);
    }
    line.extend_from_slice(b")\r\n");
    out.extend_from_slice(&line);
    Ok(())
}

/// The response label of an item whose data follows it (`BODY[1.MIME]<0> `).
fn content_label(item: &FetchItem) -> String {
    let start = |p: &Option<(u32, u32)>| p.map(|(s, _)| format!("<{s}>")).unwrap_or_default();
    match item {
        FetchItem::Envelope => "ENVELOPE ".into(),
        FetchItem::Rfc822 => "RFC822 ".into(),
        FetchItem::Rfc822Header => "RFC822.HEADER ".into(),
        FetchItem::Rfc822Text => "RFC822.TEXT ".into(),
        FetchItem::BodySection { section, partial, .. } => {
            format!("BODY[{}]{} ", section_label(section), start(partial))
        }
        FetchItem::Binary { part, partial, .. } => format!("BINARY[{}]{} ", part_label(part), start(partial)),
        FetchItem::BinarySize { part } => format!("BINARY.SIZE[{}] ", part_label(part)),
        _ => String::new(),
    }
}

/// Message text streamed into a plain literal: NUL becomes 0x80 on the way, as
/// `render::text_literal` does for text served from memory (only literal8 may carry NUL).
pub(super) struct NoNuls<R>(pub R);

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

/// The response label of an item that is the header block verbatim (streamable when the
/// header cache does not hold it).
pub(super) fn header_block_label(item: &FetchItem) -> Option<&'static str> {
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
pub(super) fn whole_message_label(item: &FetchItem) -> Option<(String, Option<(u64, u64)>)> {
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

/// The bytes FETCH items are rendered from (the message, its header block, or nothing
/// for items the index answers), with the MIME tree parsed only for an item that needs
/// it: `FETCH 1:* (UID FLAGS ENVELOPE)`, what clients list folders with, never parses one.
struct Content<'a> {
    raw: &'a [u8],
    tree: OnceCell<MimePart>,
}

impl<'a> Content<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Content { raw, tree: OnceCell::new() }
    }

    fn tree(&self) -> &MimePart {
        self.tree.get_or_init(|| mime::parse(self.raw))
    }

    /// The top-level header block (the tree's root has the same range).
    fn header(&self) -> &'a [u8] {
        let (header, _) = mime::split_header(self.raw, 0..self.raw.len());
        &self.raw[header]
    }
}

/// The ENVELOPE of `header`: `cached` as it is, else rendered now and left in `cached`.
fn write_envelope(out: &mut Vec<u8>, header: &[u8], cached: &mut Option<Bytes>) {
    match cached {
        Some(bytes) => out.extend_from_slice(bytes),
        None => {
            let start = out.len();
            envelope::envelope(out, header);
            *cached = Some(Bytes::copy_from_slice(&out[start..]));
        }
    }
}

/// Append one FETCH data item (`envelope` as [`render_message`] takes it).
fn render_item(
    out: &mut Vec<u8>,
    item: &FetchItem,
    meta: &MessageMeta,
    recent: bool,
    content: &Content<'_>,
    envelope: &mut Option<Bytes>,
) -> Result<(), BinaryError> {
    let raw = content.raw;
    match item {
        FetchItem::Uid => {
            out.extend_from_slice(b"UID ");
            number(out, meta.uid);
        }
        FetchItem::Flags => {
            out.extend_from_slice(b"FLAGS ");
            write_flags_recent(out, &meta.flags, recent);
        }
        FetchItem::InternalDate => {
            let secs =
                meta.internal_date.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            out.extend_from_slice(format!("INTERNALDATE {}", date_time(secs)).as_bytes());
        }
        FetchItem::Rfc822Size => {
            out.extend_from_slice(b"RFC822.SIZE ");
            number(out, meta.size);
        }
        FetchItem::ModSeq => {
            out.extend_from_slice(b"MODSEQ (");
            number(out, meta.modseq);
            out.push(b')');
        }
        FetchItem::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            write_envelope(out, content.header(), envelope);
        }
        FetchItem::Body => {
            out.extend_from_slice(b"BODY ");
            bodystructure::body_structure(out, raw, content.tree(), false);
        }
        FetchItem::BodyStructure => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            bodystructure::body_structure(out, raw, content.tree(), true);
        }
        FetchItem::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            text_literal(out, raw);
        }
        FetchItem::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            text_literal(out, content.header());
        }
        FetchItem::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            text_literal(out, &raw[content.tree().body.clone()]);
        }
        FetchItem::BodySection { section, partial: p, .. } => {
            out.extend_from_slice(format!("BODY[{}]", section_label(section)).as_bytes());
            if let Some((start, _)) = p {
                out.extend_from_slice(format!("<{start}>").as_bytes());
            }
            out.push(b' ');
            match body_section(raw, content.tree(), section) {
                Some(data) => text_literal(out, partial(&data, *p)),
                None => nstring(out, None),
            }
        }
        FetchItem::Binary { part, partial: p, .. } => {
            let data = binary(raw, content.tree(), part)?;
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
            let data = binary(raw, content.tree(), part)?;
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
