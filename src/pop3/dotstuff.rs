//! Byte-exact streaming of a message for RETR and TOP (RFC 1939 §3, §7, §11).
//!
//! The store hands us the message in its CRLF wire form; we copy it through in chunks,
//! doubling a `.` at the start of every line ("byte-stuffing") and closing the multi-line
//! response with `.` CRLF. Nothing else is changed: the bytes a client un-stuffs are exactly
//! the bytes LIST/STAT counted. The whole message is never held in memory — a 20 MiB
//! message passes through one fixed buffer — and the state machine ([`DotStuffer`]) is pure
//! so chunk boundaries (a `.` or CRLF split across two reads) are tested without I/O.
//!
//! TOP n m (RFC 1939 §7) sends the header, the blank line separating it from the body, and
//! then at most m body lines. A message without a blank line is all header and is sent
//! whole. If the stored message does not end in CRLF (a foreign file cut short), a CRLF is
//! added before the terminating dot, as RFC 1939 requires the terminator on its own line.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::net::stall;

/// Read size for streaming; also the upper bound of what is buffered per message.
const CHUNK: usize = 64 * 1024;

/// TOP progress: still in the header, or counting body lines.
#[derive(Debug, Clone, Copy)]
struct TopLimit {
    in_header: bool,
    body_lines_left: u64,
}

/// Pure dot-stuffing state machine; feed it chunks in order, then call [`finish`].
///
/// [`finish`]: DotStuffer::finish
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    /// Octets of the current line seen so far (terminator included once complete).
    line_len: usize,
    line_first: u8,
    wrote_any: bool,
    last_byte: u8,
    top: Option<TopLimit>,
    done: bool,
}

impl DotStuffer {
    /// `top`: `None` for RETR (whole message), `Some(m)` for TOP with m body lines.
    pub fn new(top: Option<u64>) -> DotStuffer {
        DotStuffer {
            at_line_start: true,
            line_len: 0,
            line_first: 0,
            wrote_any: false,
            last_byte: b'\n',
            top: top.map(|n| TopLimit { in_header: true, body_lines_left: n }),
            done: false,
        }
    }

    /// True once TOP has sent all it should: the caller can stop reading.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Append the stuffed form of `chunk` to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        while !chunk.is_empty() && !self.done {
            if self.at_line_start {
                if let Some(top) = self.top
                    && !top.in_header
                    && top.body_lines_left == 0
                {
                    self.done = true;
                    return;
                }
                if chunk[0] == b'.' {
                    out.push(b'.');
                }
                self.line_first = chunk[0];
                self.line_len = 0;
            }
            let (segment, ends_line) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..=i], true),
                None => (chunk, false),
            };
            out.extend_from_slice(segment);
            self.wrote_any = true;
            self.line_len += segment.len();
            if let Some(&b) = segment.last() {
                self.last_byte = b;
            }
            if ends_line {
                self.line_ended();
            }
            self.at_line_start = ends_line;
            chunk = &chunk[segment.len()..];
        }
    }

    fn line_ended(&mut self) {
        let empty = self.line_len == 1 || (self.line_len == 2 && self.line_first == b'\r');
        if let Some(top) = &mut self.top {
            if top.in_header {
                if empty {
                    top.in_header = false;
                }
            } else {
                top.body_lines_left = top.body_lines_left.saturating_sub(1);
            }
        }
    }

    /// Append the end of the response: a CRLF if the last line was unterminated, then `.`
    /// CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.wrote_any && self.last_byte != b'\n' {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.done = true;
    }
}

/// Stream `reader` to `writer` stuffed and terminated, and flush; returns the octets
/// written. The caller has already sent the `+OK` line. `limit` bounds each read and the
/// time the client takes no bytes, so a client that stops reading cannot pin the session
/// forever while a slow but steady download of a huge message still completes.
///
/// The flush is not optional: a TLS stream accepts a write into its record buffer even
/// when the socket is full, so without it the last records (with the `.` terminator) can
/// stay in the server while the session waits for the client's next command, and the
/// client waits for the terminator.
pub async fn write_message<R, W>(
    reader: &mut R,
    writer: &mut W,
    top: Option<u64>,
    limit: Duration,
) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut stuffer = DotStuffer::new(top);
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + CHUNK / 8);
    let mut written = 0u64;
    while !stuffer.is_done() {
        let n = stall::within(limit, reader.read(&mut buf)).await?;
        if n == 0 {
            break;
        }
        out.clear();
        stuffer.feed(&buf[..n], &mut out);
        stall::write_all(writer, &out, limit).await?;
        written += out.len() as u64;
    }
    out.clear();
    stuffer.finish(&mut out);
    stall::write_and_flush(writer, &out, limit).await?;
    written += out.len() as u64;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff_in_chunks(msg: &[u8], top: Option<u64>, chunk: usize) -> Vec<u8> {
        let mut s = DotStuffer::new(top);
        let mut out = Vec::new();
        for part in msg.chunks(chunk.max(1)) {
            s.feed(part, &mut out);
        }
        s.finish(&mut out);
        out
    }

    /// Every chunking of the input must give the same bytes as one big chunk.
    fn stuff(msg: &[u8], top: Option<u64>) -> Vec<u8> {
        let whole = stuff_in_chunks(msg, top, msg.len());
        for size in 1..=8 {
            assert_eq!(stuff_in_chunks(msg, top, size), whole, "chunk size {size}");
        }
        whole
    }

    /// The client side of RFC 1939 §3: strip the terminator, un-double leading dots.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").unwrap_or(wire);
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    const MSG: &[u8] =
        b"Subject: dots\r\nFrom: a@example.com\r\n\r\n.leading dot\r\nmiddle . dot\r\n..two dots\r\n.\r\nlast\r\n";

    #[test]
    fn retr_doubles_leading_dots_and_terminates() {
        let wire = stuff(MSG, None);
        assert_eq!(
            wire,
            b"Subject: dots\r\nFrom: a@example.com\r\n\r\n..leading dot\r\nmiddle . dot\r\n...two dots\r\n..\r\nlast\r\n.\r\n"
        );
        assert_eq!(unstuff(&wire), MSG);
    }

    #[test]
    fn unterminated_last_line_gets_crlf() {
        assert_eq!(stuff(b"Subject: x\r\n\r\nno newline", None), b"Subject: x\r\n\r\nno newline\r\n.\r\n");
        assert_eq!(stuff(b"", None), b".\r\n");
        assert_eq!(stuff(b".", None), b"..\r\n.\r\n");
    }

    #[test]
    fn top_sends_header_blank_line_and_n_body_lines() {
        assert_eq!(stuff(MSG, Some(0)), b"Subject: dots\r\nFrom: a@example.com\r\n\r\n.\r\n");
        assert_eq!(
            stuff(MSG, Some(2)),
            b"Subject: dots\r\nFrom: a@example.com\r\n\r\n..leading dot\r\nmiddle . dot\r\n.\r\n"
        );
        assert_eq!(stuff(MSG, Some(1000)), stuff(MSG, None));
    }

    #[test]
    fn top_of_header_only_message_sends_it_all() {
        let msg = b"Subject: only header\r\nX: y\r\n";
        assert_eq!(stuff(msg, Some(0)), b"Subject: only header\r\nX: y\r\n.\r\n");
    }

    #[tokio::test]
    async fn streams_large_message_through_a_fixed_buffer() {
        // 3 MiB of lines, every third one starting with a dot.
        let mut msg = b"Subject: big\r\n\r\n".to_vec();
        let mut i = 0u32;
        while msg.len() < 3 * 1024 * 1024 {
            if i.is_multiple_of(3) {
                msg.push(b'.');
            }
            msg.extend_from_slice(format!("line {i} of the big message\r\n").as_bytes());
            i += 1;
        }
        let mut reader: &[u8] = &msg;
        let mut wire = Vec::new();
        let n = write_message(&mut reader, &mut wire, None, Duration::from_secs(5)).await.unwrap_or(0);
        assert_eq!(n as usize, wire.len());
        assert_eq!(unstuff(&wire), msg);
    }

    /// A writer that buffers like a TLS stream over a full socket (here a `BufWriter`
    /// bigger than the message): the terminator must reach the client without another
    /// command from it, so `write_message` itself must flush.
    #[tokio::test]
    async fn the_terminator_is_flushed_not_left_in_a_buffering_writer() {
        let msg = b"Subject: short\r\n\r\nbody\r\n";
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 16, server);
        let mut reader: &[u8] = msg;
        write_message(&mut reader, &mut writer, None, Duration::from_secs(5)).await.expect("write");
        let mut got = vec![0u8; msg.len() + 3];
        let mut client = client;
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("the whole response, terminator included, arrives without another write")
            .expect("read");
        assert!(got.ends_with(b"\r\n.\r\n"), "{:?}", String::from_utf8_lossy(&got));
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0xDEAD_BEEF_CAFE_F00D;
        let mut next = || crate::testing::xorshift(&mut seed);
        for _ in 0..2000 {
            let len = (next() % 300) as usize;
            // Bias towards the interesting bytes.
            let bytes: Vec<u8> = (0..len)
                .map(|_| match next() % 5 {
                    0 => b'.',
                    1 => b'\r',
                    2 => b'\n',
                    _ => next() as u8,
                })
                .collect();
            let top = if next() % 2 == 0 { None } else { Some(next() % 4) };
            let wire = stuff(&bytes, top);
            assert!(wire.ends_with(b".\r\n"));
            if top.is_none() && bytes.ends_with(b"\n") {
                assert_eq!(unstuff(&wire), bytes);
            }
        }
    }
}
