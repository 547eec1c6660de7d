//! Where the MIME parser (`mime::parse_source`) reads its bytes from: the questions it
//! asks (where is the next LF, does a line start with this boundary, the header block of
//! a part), answered here for a message in memory ([`SliceSource`]) and by FETCH for a
//! message file read through a small window (`cmd/fetch/file_source.rs`). One parser for
//! both, so a body part streamed from the file is exactly the part served from memory;
//! the parser itself stays pure, any I/O is the source's.

use std::borrow::Cow;
use std::ops::Range;

/// The questions the MIME parser asks of the message bytes. Positions index the message;
/// every range is within `0..len()`.
pub trait MimeSource {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Position of the first `needle` in `range`.
    fn find_byte(&mut self, needle: u8, range: Range<usize>) -> Option<usize>;

    /// Do the bytes `at..end` start with `prefix`?
    fn starts_with(&mut self, at: usize, end: usize, prefix: &[u8]) -> bool;

    /// Does every byte in `range` satisfy `pred`?
    fn all_bytes(&mut self, range: Range<usize>, pred: fn(u8) -> bool) -> bool;

    /// The byte at `at`.
    fn byte(&mut self, at: usize) -> Option<u8>;

    /// The bytes of a header block (small; a file source refuses large ones, see the
    /// module comment).
    fn block(&mut self, range: Range<usize>) -> Cow<'_, [u8]>;
}

/// A message in memory.
#[derive(Debug, Clone, Copy)]
pub struct SliceSource<'m>(pub &'m [u8]);

impl MimeSource for SliceSource<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn find_byte(&mut self, needle: u8, range: Range<usize>) -> Option<usize> {
        memchr::memchr(needle, &self.0[range.clone()]).map(|p| range.start + p)
    }

    fn starts_with(&mut self, at: usize, end: usize, prefix: &[u8]) -> bool {
        self.0[at..end].starts_with(prefix)
    }

    fn all_bytes(&mut self, range: Range<usize>, pred: fn(u8) -> bool) -> bool {
        self.0[range].iter().all(|b| pred(*b))
    }

    fn byte(&mut self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }

    fn block(&mut self, range: Range<usize>) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0[range])
    }
}
