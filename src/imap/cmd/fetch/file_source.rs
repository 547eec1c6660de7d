//! The message file as a source for the MIME parser (`render::mime_source::MimeSource`),
//! read through a window with positional reads: FETCH of a body part of a 20 MiB message
//! finds the part's byte range without holding the message. Blocking: run it on the
//! blocking pool.
//!
//! Never holds more than its window and one header block, both bounded: a header block
//! larger than [`MAX_HEADER_BLOCK`], or more header bytes in all than
//! [`MAX_HEADER_BYTES`], stops the scan with [`ScanError::TooLarge`] and the caller takes
//! the in-memory path instead (under the server-wide budget).

use std::borrow::Cow;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use crate::imap::render::mime_source::MimeSource;

/// Bytes read from a file at a time by the scan.
const WINDOW: usize = 64 * 1024;
/// A search that has fewer bytes than this left in the window refills it at the search
/// position, so a line that starts near the end of the window is read again whole and the
/// boundary test on its start does not have to go back.
const MIN_AHEAD: usize = 4096;
/// Largest header block of one part the scan reads (Content-Type, CTE, HEADER.FIELDS).
pub(super) const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Most header bytes read in one scan: with `MAX_PARTS` parts this bounds the strings the
/// tree keeps.
pub(super) const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Why a scan of a message file did not give a usable tree.
#[derive(Debug, thiserror::Error)]
pub(super) enum ScanError {
    /// A header block past the bounds: the message is served from memory instead.
    #[error("header block too large to scan from the file")]
    TooLarge,
    #[error("reading the message file: {0}")]
    Io(#[from] std::io::Error),
}

/// A message file read through a window. The parser is total and cannot stop on an
/// error, so the first error is kept here (reads then give nothing) and the caller asks
/// [`FileSource::finish`] after the parse.
#[derive(Debug)]
pub(super) struct FileSource<'f> {
    file: &'f File,
    len: usize,
    window: Vec<u8>,
    window_start: usize,
    /// [`WINDOW`] and [`MIN_AHEAD`] (smaller in tests, to cut messages everywhere).
    window_size: usize,
    min_ahead: usize,
    block: Vec<u8>,
    header_bytes_left: usize,
    error: Option<ScanError>,
}

impl<'f> FileSource<'f> {
    /// `len`: the size of the message in the file (no line-end conversion: positions are
    /// file offsets).
    pub fn new(file: &'f File, len: u64) -> FileSource<'f> {
        FileSource {
            file,
            len: usize::try_from(len).unwrap_or(usize::MAX),
            window: Vec::new(),
            window_start: 0,
            window_size: WINDOW,
            min_ahead: MIN_AHEAD,
            block: Vec::new(),
            header_bytes_left: MAX_HEADER_BYTES,
            error: None,
        }
    }

    /// The first error met while scanning, if any.
    pub fn finish(&mut self) -> Result<(), ScanError> {
        self.error.take().map_or(Ok(()), Err)
    }

    /// The window from `at` on, refilled at `at` unless it already holds `want` bytes
    /// from there (or all up to the end). Empty past the end or after an error.
    fn window_at(&mut self, at: usize, want: usize) -> &[u8] {
        let want = want.min(self.len.saturating_sub(at));
        let end = self.window_start + self.window.len();
        let held = at >= self.window_start && at <= end && end - at >= want;
        if !held && self.error.is_none() && at < self.len {
            let n = self.window_size.max(want).min(self.len - at);
            self.window.resize(n, 0);
            match read_full_at(self.file, &mut self.window, at as u64) {
                Ok(got) => self.window.truncate(got),
                Err(e) => {
                    self.window.clear();
                    self.error = Some(ScanError::Io(e));
                }
            }
            self.window_start = at;
        }
        let end = self.window_start + self.window.len();
        if at < self.window_start || at > end {
            return &[];
        }
        &self.window[at - self.window_start..]
    }
}

impl MimeSource for FileSource<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn find_byte(&mut self, needle: u8, range: Range<usize>) -> Option<usize> {
        let mut pos = range.start;
        while pos < range.end {
            let w = self.window_at(pos, self.min_ahead);
            let n = w.len().min(range.end - pos);
            if n == 0 {
                return None;
            }
            if let Some(p) = memchr::memchr(needle, &w[..n]) {
                return Some(pos + p);
            }
            pos += n;
        }
        None
    }

    fn starts_with(&mut self, at: usize, end: usize, prefix: &[u8]) -> bool {
        if end.saturating_sub(at) < prefix.len() {
            return false;
        }
        let mut done = 0;
        while done < prefix.len() {
            let w = self.window_at(at + done, prefix.len() - done);
            let n = w.len().min(prefix.len() - done);
            if n == 0 || w[..n] != prefix[done..done + n] {
                return false;
            }
            done += n;
        }
        true
    }

    fn all_bytes(&mut self, range: Range<usize>, pred: fn(u8) -> bool) -> bool {
        let mut pos = range.start;
        while pos < range.end {
            let w = self.window_at(pos, self.min_ahead);
            let n = w.len().min(range.end - pos);
            if n == 0 {
                return false;
            }
            if !w[..n].iter().all(|b| pred(*b)) {
                return false;
            }
            pos += n;
        }
        true
    }

    fn byte(&mut self, at: usize) -> Option<u8> {
        self.window_at(at, 1).first().copied()
    }

    fn block(&mut self, range: Range<usize>) -> Cow<'_, [u8]> {
        let n = range.len();
        if n > MAX_HEADER_BLOCK || n > self.header_bytes_left {
            self.error.get_or_insert(ScanError::TooLarge);
            return Cow::Borrowed(&[]);
        }
        self.header_bytes_left -= n;
        self.block.clear();
        self.block.resize(n, 0);
        if self.error.is_none() {
            match read_full_at(self.file, &mut self.block, range.start as u64) {
                Ok(got) => self.block.truncate(got),
                Err(e) => {
                    self.block.clear();
                    self.error = Some(ScanError::Io(e));
                }
            }
        }
        Cow::Borrowed(&self.block)
    }
}

/// Read into `buf` from `offset` until it is full or the file ends; the bytes read.
pub(super) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::render::mime_source::SliceSource;
    use std::io::Write;

    fn file_with(content: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        f
    }

    /// The file source answers every question as the slice does, also across windows.
    #[test]
    fn file_answers_like_memory_across_windows() {
        let mut content = vec![b'a'; WINDOW - 3];
        content.extend_from_slice(b"\r\n--boundary  \r\n");
        content.extend(std::iter::repeat_n(b' ', WINDOW + 10));
        content.extend_from_slice(b"x\n");
        let f = file_with(&content);
        let mut file = FileSource::new(&f, content.len() as u64);
        let mut mem = SliceSource(&content);
        let len = content.len();
        for from in [0, 5, WINDOW - 4, WINDOW - 1, WINDOW + 20, len - 1] {
            assert_eq!(file.find_byte(b'\n', from..len), mem.find_byte(b'\n', from..len), "from {from}");
            assert_eq!(file.find_byte(b'x', from..len), mem.find_byte(b'x', from..len), "from {from}");
        }
        let line = WINDOW - 1;
        assert!(file.starts_with(line, len, b"--boundary"));
        assert!(!file.starts_with(line, line + 4, b"--boundary"));
        assert!(!file.starts_with(line, len, b"--boundarx"));
        let spaces = line + 12..len - 2;
        assert!(file.all_bytes(spaces.clone(), |b| b.is_ascii_whitespace()));
        assert!(!file.all_bytes(spaces.start..len, |b| b.is_ascii_whitespace()));
        for at in [0, WINDOW - 4, WINDOW, len - 1, len] {
            assert_eq!(file.byte(at), mem.byte(at));
        }
        assert_eq!(file.block(line..line + 10).as_ref(), b"--boundary");
        file.finish().unwrap();
    }

    #[test]
    fn large_header_blocks_are_refused() {
        let content = vec![b'h'; MAX_HEADER_BLOCK + 1];
        let f = file_with(&content);
        let mut file = FileSource::new(&f, content.len() as u64);
        assert!(file.block(0..MAX_HEADER_BLOCK + 1).is_empty());
        assert!(matches!(file.finish(), Err(ScanError::TooLarge)));
        // The total is bounded too.
        let mut file = FileSource::new(&f, content.len() as u64);
        for _ in 0..MAX_HEADER_BYTES / MAX_HEADER_BLOCK {
            assert_eq!(file.block(0..MAX_HEADER_BLOCK).len(), MAX_HEADER_BLOCK);
        }
        file.finish().unwrap();
        assert!(file.block(0..1).is_empty());
        assert!(matches!(file.finish(), Err(ScanError::TooLarge)));
    }

    /// The parser gives the same tree from a file read through windows of a few bytes as
    /// from memory, on garbage made of MIME pieces.
    #[test]
    fn parse_from_tiny_windows_equals_parse_in_memory() {
        use crate::imap::render::mime::{parse, parse_source};
        let pieces: [&[u8]; 10] = [
            b"--XX",
            b"\r\n",
            b"Content-Type: multipart/mixed; boundary=XX",
            b"Content-Type: message/rfc822",
            b"Content-Type: multipart/digest; boundary=\"XX\"",
            b"\n",
            b"--",
            b": ",
            b"x",
            b" \t",
        ];
        let mut seed = 7u32;
        for round in 0..2000 {
            let mut msg = Vec::new();
            for _ in 0..(seed % 60) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                msg.extend_from_slice(pieces[(seed >> 16) as usize % pieces.len()]);
            }
            seed = seed.wrapping_add(1);
            let f = file_with(&msg);
            let mut src = FileSource::new(&f, msg.len() as u64);
            (src.window_size, src.min_ahead) = (3 + round % 13, 1 + round % 3);
            assert_eq!(parse_source(&mut src), parse(&msg), "{}", String::from_utf8_lossy(&msg));
            src.finish().unwrap();
        }
    }

    /// A file shorter than its index size reads as ending early, never panics.
    #[test]
    fn short_file_reads_as_ending_early() {
        let f = file_with(b"abc");
        let mut file = FileSource::new(&f, 10);
        assert_eq!(file.find_byte(b'x', 0..10), None);
        assert_eq!(file.byte(5), None);
        assert!(!file.starts_with(2, 10, b"cd"));
        assert_eq!(file.block(0..10).as_ref(), b"abc");
    }
}
