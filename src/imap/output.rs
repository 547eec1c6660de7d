//! The responses a session has produced and not yet sent: bytes, and literals to be
//! streamed from a reader (FETCH BODY[] of a large message). Handlers write here, never to
//! the socket; the connection sends it (`Connection::send`), a test can read it instead.

use std::ops::{Deref, DerefMut};

use tokio::io::AsyncRead;

/// A literal's data source: read when the response is sent, not when it is made.
pub type LiteralReader = Box<dyn AsyncRead + Unpin + Send>;

/// Flush the output when it grows past this during long responses (bounded memory).
pub const OUT_FLUSH: usize = 256 * 1024;

/// Room taken when the first response bytes after a send are written: enough for most
/// responses in one allocation. Between sends the buffer holds no memory at all, because
/// most connections idle and the bytes sent are dropped with the write.
const FIRST_WRITE: usize = 1024;

/// Exactly `size` bytes copied from `reader` into the response stream, after the
/// `{size}` CRLF already in the bytes before it.
pub struct StreamedLiteral {
    pub reader: LiteralReader,
    pub size: u64,
}

/// Pending responses. Dereferences to the byte buffer being written (the one after the
/// last streamed literal), so handlers append bytes as to a `Vec<u8>`.
#[derive(Default)]
pub struct Output {
    head: Vec<u8>,
    /// Each streamed literal with the bytes that follow it.
    literals: Vec<(StreamedLiteral, Vec<u8>)>,
    buffered: usize,
}

impl Output {
    /// `{size}` CRLF now and the data from `reader` when sent. Streamed rather than held
    /// so a large message never sits in memory whole.
    pub fn literal_from(&mut self, reader: LiteralReader, size: u64) {
        self.extend_from_slice(format!("{{{size}}}\r\n").as_bytes());
        self.buffered += self.current().len();
        self.literals.push((StreamedLiteral { reader, size }, Vec::new()));
    }

    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.literals.is_empty()
    }

    /// Time to send: a lot is buffered, or a literal holds an open file.
    pub fn should_flush(&self) -> bool {
        !self.literals.is_empty() || self.buffered + self.current().len() >= OUT_FLUSH
    }

    /// Take everything for sending: the leading bytes and each literal with what follows.
    /// Nothing is left allocated: an idle connection holds no output buffer.
    pub fn take(&mut self) -> (Vec<u8>, Vec<(StreamedLiteral, Vec<u8>)>) {
        let head = std::mem::take(&mut self.head);
        self.buffered = 0;
        (head, std::mem::take(&mut self.literals))
    }

    fn current(&self) -> &Vec<u8> {
        match self.literals.last() {
            Some((_, after)) => after,
            None => &self.head,
        }
    }
}

impl Deref for Output {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        self.current()
    }
}

impl DerefMut for Output {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        if self.head.capacity() == 0 && self.literals.is_empty() {
            self.head.reserve(FIRST_WRITE);
        }
        match self.literals.last_mut() {
            Some((_, after)) => after,
            None => &mut self.head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_keep_their_place_between_bytes() {
        let mut out = Output::default();
        out.extend_from_slice(b"* 1 FETCH (BODY[] ");
        assert!(!out.should_flush());
        out.literal_from(Box::new(&b"abc"[..]), 3);
        out.extend_from_slice(b")\r\n");
        assert!(out.should_flush() && !out.is_empty());
        let (head, literals) = out.take();
        assert_eq!(head, b"* 1 FETCH (BODY[] {3}\r\n");
        assert_eq!(literals.len(), 1);
        assert_eq!(literals[0].0.size, 3);
        assert_eq!(literals[0].1, b")\r\n");
        assert!(out.is_empty() && !out.should_flush());
        assert_eq!(out.head.capacity(), 0, "sent output keeps no buffer");
        out.extend_from_slice(b"* OK\r\n");
        assert!(out.head.capacity() >= FIRST_WRITE, "one allocation for a typical response");
    }
}
