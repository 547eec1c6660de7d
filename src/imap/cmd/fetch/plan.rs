//! Plan and load: which data source a FETCH needs per message (none, the header block,
//! the whole file as a stream, body parts streamed from the file, the message in memory),
//! chosen once from the items, and the loading of one message from that source.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

use super::parts::{self, PartItem, PartsError};
use super::render::{NoNuls, header_block_label, whole_message_label};
use crate::imap::command::{FetchItem, SectionText};
use crate::imap::output::LiteralReader;
use crate::net::{MemoryPermit, MessageMemory};
use crate::store::{Mailbox, StoreError};

/// Largest message read into memory for FETCH.
const MAX_FETCH_BYTES: u64 = 256 * 1024 * 1024;

/// Messages up to this size are read into memory for body parts: one read is cheaper than
/// scanning and then streaming ranges, and the memory is small.
const PARTS_IN_MEMORY: u64 = 256 * 1024;

/// Where the bytes of each message come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// Index metadata only (FLAGS, UID, sizes, dates): no file is opened, so
    /// `FETCH 1:* (FLAGS UID)` on a big mailbox stays cheap.
    Metadata,
    /// The top-level header block (ENVELOPE, header sections: the hot path of folder
    /// listings): from the header cache in batches, else from the file. `stream_uncached`:
    /// `BODY[HEADER]`/`RFC822.HEADER` alone streams a header the cache does not keep (a
    /// 1 MB header never sits in memory whole).
    HeaderBlock { stream_uncached: bool },
    /// `BODY[]`/`RFC822`/`BINARY[]` (or a byte range of it) alone: streamed from the file
    /// (large messages never sit in memory whole).
    WholeFile(FetchItem),
    /// Body parts, BINARY of parts, TEXT, partials, header items with them (any content
    /// items but BODY/BODYSTRUCTURE): each streamed from its byte range of the file
    /// (`parts`). Messages up to [`PARTS_IN_MEMORY`], files with bare LF line ends (wire
    /// offsets are not file offsets) and messages beyond the scan's bounds are read into
    /// memory under the server-wide budget instead.
    Parts,
    /// The message read into memory and parsed, under the server-wide budget:
    /// BODY/BODYSTRUCTURE, whose line counts and sizes need every part.
    Message,
}

/// What a FETCH command reads, decided once before any message is touched.
#[derive(Debug, Clone)]
pub(super) struct FetchPlan {
    pub items: Vec<FetchItem>,
    pub source: Source,
    /// Some item sets `\Seen` (RFC 9051 6.4.5).
    pub sets_seen: bool,
    /// ENVELOPE is asked for (its rendering can come from the envelope cache).
    pub envelope: bool,
    /// ENVELOPE is the only item that needs the message's bytes: a message whose envelope
    /// is cached needs no load at all.
    pub envelope_only: bool,
}

impl FetchPlan {
    pub fn new(items: Vec<FetchItem>) -> FetchPlan {
        let content: Vec<&FetchItem> = items.iter().filter(|i| needs_content(i)).collect();
        let source = match content.as_slice() {
            [] => Source::Metadata,
            [one] if whole_message_label(one).is_some() => Source::WholeFile((*one).clone()),
            all if all.iter().all(|i| is_header_item(i)) => {
                Source::HeaderBlock { stream_uncached: matches!(all, [one] if header_block_label(one).is_some()) }
            }
            all if all.iter().all(|i| !matches!(i, FetchItem::Body | FetchItem::BodyStructure)) => Source::Parts,
            _ => Source::Message,
        };
        let sets_seen = items.iter().any(sets_seen);
        let envelope_only = matches!(content.as_slice(), [FetchItem::Envelope]);
        let envelope = items.contains(&FetchItem::Envelope);
        FetchPlan { items, source, sets_seen, envelope, envelope_only }
    }

    /// Header blocks are asked of the header cache in batches.
    pub fn batches_headers(&self) -> bool {
        matches!(self.source, Source::HeaderBlock { .. })
    }
}

/// One message's data as loaded for its FETCH response.
pub(super) enum Loaded {
    /// Metadata only.
    Nothing,
    /// Bytes in memory: the header block or the whole message.
    Bytes(Bytes),
    /// A literal to stream (the whole message, a range of it, or the header block).
    Stream { reader: LiteralReader, size: u64 },
    /// Each item resolved against the message file, to stream from it.
    Parts { file: Arc<File>, items: Vec<PartItem> },
}

/// Why a message could not be loaded.
#[derive(Debug)]
pub(super) enum LoadError {
    /// The store failed or the message is gone (`StoreError::NoSuchMessage`).
    Store(StoreError),
    /// Positioning or reading the file for a streamed item failed: the connection cannot
    /// go on.
    Io(std::io::Error),
}

/// Load message `uid` (`size` bytes) from the plan's source; `cached` is its header block
/// from the header cache when the plan batches headers and the cache had it. A message read
/// into memory holds its share of `memory` (three times its size: the message, the rendered
/// item and the output buffer) in the returned permit, to keep until the response has gone
/// out, so many sessions fetching big messages whole take turns instead of adding up.
pub(super) async fn load(
    plan: &FetchPlan,
    mailbox: &Mailbox,
    uid: u32,
    size: u64,
    cached: Option<Bytes>,
    memory: &MessageMemory,
) -> Result<(Loaded, Option<MemoryPermit>), LoadError> {
    let in_memory = || async {
        let permit = memory.reserve(size.saturating_mul(3)).await;
        let bytes = mailbox.read_message(uid, MAX_FETCH_BYTES as usize).await.map_err(LoadError::Store)?;
        Ok((Loaded::Bytes(bytes), Some(permit)))
    };
    let loaded = match &plan.source {
        Source::Message => return in_memory().await,
        Source::Parts if size <= PARTS_IN_MEMORY => return in_memory().await,
        Source::Parts => {
            let reader = mailbox.open_message(uid).await.map_err(LoadError::Store)?;
            let size = reader.size();
            let Some(file) = reader.into_std_file() else {
                return in_memory().await;
            };
            let file = Arc::new(file);
            let (f, items) = (file.clone(), plan.items.clone());
            let resolved = tokio::task::spawn_blocking(move || parts::resolve(&f, size, &items))
                .await
                .map_err(|e| LoadError::Io(std::io::Error::other(e)))?;
            match resolved {
                Ok(items) => Loaded::Parts { file, items },
                Err(PartsError::InMemory) => return in_memory().await,
                Err(PartsError::Io(e)) => return Err(LoadError::Io(e)),
            }
        }
        Source::Metadata => Loaded::Nothing,
        Source::HeaderBlock { .. } if cached.is_some() => cached.map_or(Loaded::Nothing, Loaded::Bytes),
        Source::HeaderBlock { stream_uncached: true } => {
            let (reader, size) = mailbox.header_block_reader(uid).await.map_err(LoadError::Store)?;
            Loaded::Stream { reader: Box::new(NoNuls(reader)), size }
        }
        Source::HeaderBlock { stream_uncached: false } => {
            mailbox.read_header_block(uid).await.map(Loaded::Bytes).map_err(LoadError::Store)?
        }
        Source::WholeFile(item) => {
            let mut reader = mailbox.open_message(uid).await.map_err(LoadError::Store)?;
            // A partial (Thunderbird downloads big messages in 64 KiB chunks) skips to its
            // start instead of reading the message into memory.
            let range = whole_message_label(item).and_then(|(_, range)| range);
            let (start, len) = range.unwrap_or((0, u64::MAX));
            let start = start.min(reader.size());
            let size = len.min(reader.size() - start);
            reader.skip(start).await.map_err(LoadError::Io)?;
            let reader: LiteralReader =
                if matches!(item, FetchItem::Binary { .. }) { Box::new(reader) } else { Box::new(NoNuls(reader)) };
            Loaded::Stream { reader, size }
        }
    };
    Ok((loaded, None))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::command::Section;

    fn body(text: Option<SectionText>, peek: bool) -> FetchItem {
        FetchItem::BodySection { section: Section { part: vec![], text }, partial: None, peek }
    }

    #[test]
    fn sources() {
        assert_eq!(FetchPlan::new(vec![FetchItem::Flags, FetchItem::Uid]).source, Source::Metadata);
        let whole = FetchPlan::new(vec![FetchItem::Uid, body(None, false)]);
        assert_eq!(whole.source, Source::WholeFile(body(None, false)));
        assert!(whole.sets_seen);
        let header = FetchPlan::new(vec![body(Some(SectionText::Header), true)]);
        assert_eq!(header.source, Source::HeaderBlock { stream_uncached: true });
        assert!(!header.sets_seen && header.batches_headers());
        let listing = FetchPlan::new(vec![FetchItem::Envelope, body(Some(SectionText::Header), true)]);
        assert_eq!(listing.source, Source::HeaderBlock { stream_uncached: false });
        assert!(listing.envelope && !listing.envelope_only);
        let envelopes = FetchPlan::new(vec![FetchItem::Uid, FetchItem::Flags, FetchItem::Envelope]);
        assert_eq!(envelopes.source, Source::HeaderBlock { stream_uncached: false });
        assert!(envelopes.envelope && envelopes.envelope_only);
        assert_eq!(FetchPlan::new(vec![FetchItem::BodyStructure]).source, Source::Message);
        assert_eq!(FetchPlan::new(vec![body(None, true), FetchItem::Envelope]).source, Source::Parts);
        let part = FetchItem::Binary { peek: true, part: vec![2], partial: None };
        assert_eq!(FetchPlan::new(vec![part.clone(), FetchItem::Uid]).source, Source::Parts);
        assert_eq!(FetchPlan::new(vec![part, FetchItem::BodyStructure]).source, Source::Message);
    }
}
