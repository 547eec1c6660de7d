//! Command-line framing, two-phase as in mini-redis: first *check* whether the buffer
//! holds a complete line (cheap, no allocation, nothing consumed), then let the caller
//! take exactly that many bytes. Partial reads therefore never half-consume a command.
//!
//! It owns the command line limit (2,048 octets including CRLF by default; RFC 5321
//! §4.5.3.1.4 sets 512 as the minimum, real clients send long `RCPT` parameters): a longer
//! line is dropped in full, however many reads it spans, and reported once, when its end
//! arrives, so replies stay in step with a pipelining client (RFC 2920). Content lines
//! inside DATA are not framed here (`data.rs`): long lines there are legitimate mail.
//!
//! A line ends at LF; the CR before it is optional here and stripped by the parser, since
//! a bare LF on a *command* line cannot smuggle anything.

/// What the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete command line of this many bytes (terminator included).
    Line(usize),
    /// Drop this many bytes silently: the middle of an over-long line.
    Discard(usize),
    /// Drop this many bytes, which end an over-long line: answer 500 5.5.2 now.
    TooLong(usize),
    /// Need more bytes.
    Incomplete,
}

/// The framing state of one connection (it remembers that it is inside a long line).
#[derive(Debug, Clone)]
pub struct LineFramer {
    max: usize,
    discarding: bool,
}

impl LineFramer {
    /// `max`: the longest accepted line including its terminator (at least 1).
    pub fn new(max: usize) -> LineFramer {
        LineFramer { max: max.max(1), discarding: false }
    }

    /// Look at the buffered bytes; the caller must then consume what the frame says.
    pub fn check(&mut self, buf: &[u8]) -> Frame {
        if self.discarding {
            return match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    self.discarding = false;
                    Frame::TooLong(i + 1)
                }
                None if buf.is_empty() => Frame::Incomplete,
                None => Frame::Discard(buf.len()),
            };
        }
        let window = &buf[..buf.len().min(self.max)];
        match memchr::memchr(b'\n', window) {
            Some(i) => Frame::Line(i + 1),
            None if buf.len() >= self.max => match memchr::memchr(b'\n', buf) {
                // The over-long line already ended inside the buffer.
                Some(i) => Frame::TooLong(i + 1),
                None => {
                    self.discarding = true;
                    Frame::Discard(buf.len())
                }
            },
            None => Frame::Incomplete,
        }
    }

    /// Forget a long line in progress (the buffer was thrown away, e.g. at STARTTLS).
    pub fn reset(&mut self) {
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive the framer like the server does; returns the events.
    fn frames(framer: &mut LineFramer, buf: &mut Vec<u8>) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match framer.check(buf) {
                Frame::Line(n) => {
                    out.push(format!("line {:?}", String::from_utf8_lossy(&buf[..n])));
                    buf.drain(..n);
                }
                Frame::Discard(n) => {
                    buf.drain(..n);
                }
                Frame::TooLong(n) => {
                    out.push("too long".into());
                    buf.drain(..n);
                }
                Frame::Incomplete => return out,
            }
        }
    }

    #[test]
    fn pipelined_lines_come_out_one_by_one() {
        let mut f = LineFramer::new(2048);
        let mut buf = b"MAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\nDA".to_vec();
        assert_eq!(frames(&mut f, &mut buf), ["line \"MAIL FROM:<>\\r\\n\"", "line \"RCPT TO:<a@b.example>\\r\\n\""]);
        assert_eq!(buf, b"DA");
        buf.extend_from_slice(b"TA\r\n");
        assert_eq!(frames(&mut f, &mut buf), ["line \"DATA\\r\\n\""]);
    }

    #[test]
    fn exactly_max_is_accepted_one_more_is_not() {
        let mut f = LineFramer::new(10);
        let mut buf = b"12345678\r\n".to_vec();
        assert_eq!(frames(&mut f, &mut buf).len(), 1);
        let mut buf = b"123456789\r\nNOOP\r\n".to_vec();
        assert_eq!(frames(&mut f, &mut buf), ["too long", "line \"NOOP\\r\\n\""]);
    }

    #[test]
    fn long_line_across_many_reads_is_reported_once_at_its_end() {
        let mut f = LineFramer::new(8);
        let mut buf = b"AAAAAAAAAAAA".to_vec();
        assert!(frames(&mut f, &mut buf).is_empty());
        assert!(buf.is_empty(), "memory stays bounded");
        buf.extend_from_slice(b"BBBBBBBBBBBB");
        assert!(frames(&mut f, &mut buf).is_empty());
        buf.extend_from_slice(b"C\r\nQUIT\r\n");
        assert_eq!(frames(&mut f, &mut buf), ["too long", "line \"QUIT\\r\\n\""]);
    }

    #[test]
    fn reset_forgets_a_long_line() {
        let mut f = LineFramer::new(4);
        let mut buf = b"AAAAAA".to_vec();
        frames(&mut f, &mut buf);
        f.reset();
        let mut buf = b"EH\n".to_vec();
        assert_eq!(frames(&mut f, &mut buf), ["line \"EH\\n\""]);
    }

    /// Garbage in: random buffers never panic and every byte is accounted for.
    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 42;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let max = (seed >> 60) as usize;
            let mut f = LineFramer::new(max);
            let len = ((seed >> 40) % 50) as usize;
            let mut buf: Vec<u8> = (0..len).map(|i| if (seed >> (i % 60)) & 7 == 0 { b'\n' } else { b'x' }).collect();
            frames(&mut f, &mut buf);
            assert!(buf.len() < f.max.max(1));
        }
    }
}
