//! Body parts of a large message served from its file: the MIME structure is scanned from
//! the file (`mime::parse_source` over a windowed `FileSource`, the parser the in-memory
//! path uses), each item resolved to a byte range, and BINARY's decoded size counted in a
//! first decoding pass (its `{n}` precedes the data). The literals are then streamed from
//! the ranges (`readers`). Memory per FETCH: the scan window, one header block and the
//! tree, bounded whatever the message size, so sessions fetching big attachments run side
//! by side instead of taking turns for the server-wide budget.
//!
//! Runs blocking (positional reads): call it on the blocking pool.

use std::fs::File;

use super::file_source::{FileSource, ScanError, read_full_at};
use crate::imap::command::FetchItem;
use crate::imap::render::mime::parse_source;
use crate::imap::render::mime_source::MimeSource;
use crate::imap::render::section::{BinaryError, SectionData, binary_source, partial, section_data};
use crate::imap::render::transfer::Decoder;

/// Longest quoted-printable line the decoding holds between reads (RFC 2045 allows 76
/// characters); a part with a longer one is decoded in memory instead.
const MAX_QP_LINE: usize = 64 * 1024;
/// Bytes read at a time by the counting pass.
const CHUNK: usize = 64 * 1024;

/// What one FETCH item of a message resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PartItem {
    /// Answered from the metadata (FLAGS, UID, sizes, dates).
    Meta,
    /// Message text: the bytes `start..end` of the file, as a literal (NUL goes as 0x80).
    Text { start: u64, end: u64 },
    /// BINARY: the encoded bytes `start..end` through `decoder`, the first `skip` decoded
    /// bytes dropped, `size` sent; `literal8` when those contain NUL (RFC 3516 4.2).
    Binary { start: u64, end: u64, decoder: Decoder, skip: u64, size: u64, literal8: bool },
    /// Small data made from a header block (HEADER.FIELDS, the header for ENVELOPE).
    Bytes(Vec<u8>),
    /// A section this message does not have.
    Nil,
    /// BINARY.SIZE.
    Size(u64),
    /// BINARY that cannot be served: the command answers NO.
    Failed(BinaryError),
}

/// Why the items cannot be served from the file.
#[derive(Debug, thiserror::Error)]
pub(super) enum PartsError {
    /// Beyond the scan's bounds (a huge header block, a huge quoted-printable line) or an
    /// item that needs the whole message (BODYSTRUCTURE): serve it from memory.
    #[error("needs the message in memory")]
    InMemory,
    #[error("reading the message file: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ScanError> for PartsError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::TooLarge => PartsError::InMemory,
            ScanError::Io(e) => PartsError::Io(e),
        }
    }
}

/// Resolve `items` for the message in `file` (`size` bytes, CRLF as stored: file offsets
/// are wire offsets).
pub(super) fn resolve(file: &File, size: u64, items: &[FetchItem]) -> Result<Vec<PartItem>, PartsError> {
    let mut src = FileSource::new(file, size);
    let root = parse_source(&mut src);
    src.finish()?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let resolved = match item {
            FetchItem::Flags | FetchItem::InternalDate | FetchItem::Rfc822Size | FetchItem::Uid | FetchItem::ModSeq => {
                PartItem::Meta
            }
            FetchItem::Body | FetchItem::BodyStructure => return Err(PartsError::InMemory),
            FetchItem::Envelope => PartItem::Bytes(src.block(root.header.clone()).into_owned()),
            FetchItem::Rfc822 => text(0..src.len(), None),
            FetchItem::Rfc822Header => text(root.header.clone(), None),
            FetchItem::Rfc822Text => text(root.body.clone(), None),
            FetchItem::BodySection { section, partial: p, .. } => match section_data(&mut src, &root, section) {
                None => PartItem::Nil,
                Some(SectionData::Range(r)) => text(r, *p),
                Some(SectionData::Owned(v)) => PartItem::Bytes(partial(&v, *p).to_vec()),
            },
            FetchItem::Binary { part, partial: p, .. } => match binary_source(&mut src, &root, part) {
                Err(e) => PartItem::Failed(e),
                Ok((r, decoder)) => {
                    let decoder = bounded(decoder);
                    let window = p.map(|(s, l)| (u64::from(s), u64::from(l)));
                    let m = measure(file, r.start as u64..r.end as u64, decoder.clone(), window)?;
                    PartItem::Binary {
                        start: r.start as u64,
                        end: r.end as u64,
                        decoder,
                        skip: m.skip,
                        size: m.size,
                        literal8: m.nul,
                    }
                }
            },
            FetchItem::BinarySize { part } => match binary_source(&mut src, &root, part) {
                Err(e) => PartItem::Failed(e),
                Ok((r, decoder)) => {
                    PartItem::Size(measure(file, r.start as u64..r.end as u64, bounded(decoder), None)?.size)
                }
            },
        };
        out.push(resolved);
        src.finish()?;
    }
    Ok(out)
}

/// A text item's byte range after `<start.len>` (RFC 9051 6.4.5: empty when start is past
/// the end).
fn text(r: std::ops::Range<usize>, p: Option<(u32, u32)>) -> PartItem {
    let (start, end) = (r.start as u64, r.end as u64);
    match p {
        None => PartItem::Text { start, end },
        Some((s, l)) => {
            let from = start.saturating_add(u64::from(s)).min(end);
            PartItem::Text { start: from, end: from.saturating_add(u64::from(l)).min(end) }
        }
    }
}

/// The decoder for streaming: quoted-printable lines held between reads are bounded.
fn bounded(decoder: Decoder) -> Decoder {
    match decoder {
        Decoder::QuotedPrintable { line, .. } => Decoder::QuotedPrintable { line, max_line: MAX_QP_LINE },
        d => d,
    }
}

/// The decoded size of a part and what `<start.len>` keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Measured {
    skip: u64,
    size: u64,
    /// The kept bytes contain NUL.
    nul: bool,
}

/// Decode `range` of the file chunk by chunk, counting; `window` is `<start.len>`.
fn measure(
    file: &File,
    range: std::ops::Range<u64>,
    mut decoder: Decoder,
    window: Option<(u64, u64)>,
) -> Result<Measured, PartsError> {
    let (w_start, w_end) = window.map_or((0, u64::MAX), |(s, l)| (s, s.saturating_add(l)));
    let mut raw = vec![0u8; CHUNK];
    let mut decoded = Vec::with_capacity(CHUNK);
    let (mut pos, mut total, mut nul) = (range.start, 0u64, false);
    let mut done = false;
    while !done {
        let want = usize::try_from(range.end.saturating_sub(pos)).unwrap_or(CHUNK).min(CHUNK);
        let got = if want == 0 { 0 } else { read_full_at(file, &mut raw[..want], pos)? };
        decoded.clear();
        if got == 0 {
            decoder.finish(&mut decoded);
            done = true;
        } else {
            decoder.feed(&raw[..got], &mut decoded).map_err(|_| PartsError::InMemory)?;
            pos += got as u64;
        }
        // The kept window within this chunk of decoded bytes.
        let chunk_end = total + decoded.len() as u64;
        let (a, b) = (w_start.max(total), w_end.min(chunk_end));
        if !nul && a < b {
            nul = memchr::memchr(0, &decoded[(a - total) as usize..(b - total) as usize]).is_some();
        }
        total = chunk_end;
    }
    let skip = w_start.min(total);
    Ok(Measured { skip, size: w_end.min(total) - skip, nul })
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
