//! What Sieve's `size` test sees: the whole message's size, though a script evaluates
//! only its first [`super::EVAL_PREFIX`] bytes.
//!
//! `sieve-rs` takes the size from the length of the raw message it holds, and has no
//! way to be told otherwise. So the prefix is parsed on its own and then given a raw
//! message as long as the whole one: the prefix followed by anonymous zero pages that
//! are mapped but never touched, which cost address space, not memory. Every test
//! reads through the parsed parts' offsets, and those all lie inside the prefix.

use std::borrow::Cow;
use std::ptr::NonNull;

use mail_parser::{Encoding, Message, MessageParser, MessagePart, PartType};

/// A buffer of `len` bytes whose first bytes are a copy of the prefix and whose rest is
/// untouched zero pages.
pub(super) struct Padded {
    ptr: NonNull<u8>,
    len: usize,
}

// The mapping is owned by this value alone and only read after construction.
unsafe impl Send for Padded {}
unsafe impl Sync for Padded {}

impl Padded {
    /// `prefix` followed by zeros up to `len` bytes; `None` when `len` is not larger
    /// than the prefix or the mapping cannot be made (then the prefix alone is used).
    pub(super) fn new(prefix: &[u8], len: usize) -> Option<Padded> {
        if len <= prefix.len() {
            return None;
        }
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it. The
        // result is checked before use, and `prefix` (shorter than `len`) is copied into
        // memory this call owns.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        let ptr = NonNull::new(ptr.cast::<u8>())?;
        // SAFETY: `ptr` points at `len` writable bytes, `prefix.len() < len`, and the two
        // regions cannot overlap (the mapping is new).
        unsafe { std::ptr::copy_nonoverlapping(prefix.as_ptr(), ptr.as_ptr(), prefix.len()) };
        Some(Padded { ptr, len })
    }

    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping holds `len` initialised bytes (zero pages read as zeros)
        // and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Padded {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no borrow of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The message `sieve-rs` evaluates: `raw[..prefix_len]` parsed, with `raw` (the prefix,
/// or a [`Padded`] copy of it as long as the whole message) as its raw message.
pub(super) fn parse(raw: &[u8], prefix_len: usize) -> Message<'_> {
    match MessageParser::new().parse(&raw[..prefix_len.min(raw.len())]) {
        Some(mut message) => {
            message.raw_message = Cow::Borrowed(raw);
            message
        }
        // What `sieve-rs` itself evaluates when parsing fails: one empty part.
        None => Message {
            parts: vec![MessagePart {
                headers: Vec::new(),
                is_encoding_problem: false,
                body: PartType::Text("".into()),
                encoding: Encoding::None,
                offset_header: 0,
                offset_body: 0,
                offset_end: 0,
            }],
            ..Message::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// A gigabyte of padding costs the prefix's pages, not a gigabyte.
    #[test]
    fn padding_costs_address_space_not_memory() {
        let before = resident_bytes();
        let padded = Padded::new(b"Subject: hi\r\n\r\nbody\r\n", 1 << 30).unwrap();
        let bytes = padded.bytes();
        assert_eq!(bytes.len(), 1 << 30);
        assert_eq!((&bytes[..11], bytes[(1 << 30) - 1]), (&b"Subject: hi"[..], 0));
        let message = parse(bytes, 21);
        assert_eq!((message.raw_message.len(), message.subject()), (1 << 30, Some("hi")));
        assert!(resident_bytes() < before + (64 << 20), "{} -> {}", before, resident_bytes());
        assert!(Padded::new(b"abc", 3).is_none());
    }
}
