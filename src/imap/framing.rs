//! Command framing: the cheap first phase of reading a command (as in mini-redis'
//! `Frame::check`). It answers "is a whole command buffered?" without parsing or allocating,
//! so a partial read never half-consumes input. A command is a line plus, for every literal
//! announced at a line end (`{n}`, `{n+}` LITERAL+ RFC 7888, `~{n}` BINARY RFC 3516), exactly
//! n bytes and the rest of the command after them.
//!
//! Bounds (architecture.md "every input has a bound"): the command text excluding literals
//! may not pass `max_line` (64 KiB), and the literals of one command together may not pass
//! `max_literal` (the APPENDLIMIT), so one command never buffers more than about that.

/// The bounds the framer enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub max_line: usize,
    pub max_literal: u64,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits { max_line: 64 * 1024, max_literal: 25 * 1024 * 1024 }
    }
}

/// What the buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Read more bytes.
    Incomplete,
    /// The client announced synchronizing literal number `index` (0-based within this
    /// command) and waits for a `+` continuation before sending it (RFC 9051 4.3). The
    /// session sends one `+ ` per index, then reads more.
    AwaitingLiteral { index: usize, size: u64 },
    /// `buf[..len]` is one complete command (including its final CRLF).
    Complete { len: usize },
    /// The command text passed `max_line` without a line end: the session says BYE
    /// (we cannot find where the next command starts).
    LineTooLong,
    /// A literal passes `max_literal`. For a synchronizing literal the client has not sent
    /// the data yet: answer `tag NO [TOOBIG]` (APPEND) or `tag BAD` and drop `discard`
    /// bytes. For a non-synchronizing one the data is already on its way; RFC 7888 4 lets
    /// us close the connection with BYE.
    LiteralTooBig { tag: Option<String>, is_append: bool, synchronizing: bool, size: u64, discard: usize },
}

/// Check whether `buf` starts with one complete command.
pub fn next_frame(buf: &[u8], limits: FrameLimits) -> Frame {
    let mut pos = 0usize;
    let mut line_bytes = 0usize;
    let mut literal_total = 0u64;
    let mut index = 0usize;
    loop {
        let Some(rel) = memchr::memchr(b'\n', &buf[pos..]) else {
            if line_bytes + (buf.len() - pos) > limits.max_line {
                return Frame::LineTooLong;
            }
            return Frame::Incomplete;
        };
        let nl = pos + rel;
        line_bytes += rel + 1;
        if line_bytes > limits.max_line {
            return Frame::LineTooLong;
        }
        let segment = strip_cr(&buf[pos..nl]);
        let Some(literal) = literal_marker(segment) else {
            return Frame::Complete { len: nl + 1 };
        };
        literal_total = literal_total.saturating_add(literal.size);
        if literal.size > limits.max_literal || literal_total > limits.max_literal {
            let (tag, is_append) = tag_and_append(buf);
            return Frame::LiteralTooBig {
                tag,
                is_append,
                synchronizing: literal.synchronizing,
                size: literal.size,
                discard: nl + 1,
            };
        }
        let data_start = nl + 1;
        // size <= max_literal, which is far below usize::MAX on 64-bit targets.
        let size = usize::try_from(literal.size).unwrap_or(usize::MAX);
        let available = buf.len().saturating_sub(data_start);
        // A client that sent `{0}` also waits for the `+` before the rest of its line.
        let waiting_for_plus = literal.synchronizing && size == 0 && available == 0;
        if available < size || waiting_for_plus {
            if literal.synchronizing {
                return Frame::AwaitingLiteral { index, size: literal.size };
            }
            return Frame::Incomplete;
        }
        pos = data_start + size;
        index += 1;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A literal announced at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralMarker {
    pub size: u64,
    pub synchronizing: bool,
    pub binary: bool,
    /// Length of the marker text (`~{12+}` is 6).
    pub marker_len: usize,
}

/// Recognise `{n}`, `{n+}`, `~{n}` at the end of a line (CR already stripped). Digits are
/// bounded so the number cannot overflow.
pub fn literal_marker(line: &[u8]) -> Option<LiteralMarker> {
    let inner_end = line.len().checked_sub(1)?;
    if line.last() != Some(&b'}') {
        return None;
    }
    let open = memchr::memrchr(b'{', &line[..inner_end])?;
    let mut digits = &line[open + 1..inner_end];
    let mut synchronizing = true;
    if let Some(d) = digits.strip_suffix(b"+") {
        digits = d;
        synchronizing = false;
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let binary = open > 0 && line[open - 1] == b'~';
    let start = if binary { open - 1 } else { open };
    Some(LiteralMarker { size, synchronizing, binary, marker_len: line.len() - start })
}

/// The tag (first word) and whether the command is APPEND, for the early reply to an
/// oversized literal.
fn tag_and_append(buf: &[u8]) -> (Option<String>, bool) {
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    let line = strip_cr(&buf[..line_end]);
    let mut words = line.split(|b| *b == b' ');
    let tag = words
        .next()
        .filter(|t| !t.is_empty() && t.iter().all(|b| super::parser::lexer::is_tag_char(*b)))
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(str::to_string);
    let is_append = words.next().is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"));
    (tag, is_append)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FrameLimits {
        FrameLimits { max_line: 100, max_literal: 50 }
    }

    #[test]
    fn simple_line_is_complete() {
        assert_eq!(next_frame(b"a1 NOOP\r\nb2", limits()), Frame::Complete { len: 9 });
        assert_eq!(next_frame(b"a1 NOO", limits()), Frame::Incomplete);
    }

    #[test]
    fn synchronizing_literal_waits_for_continuation() {
        let buf = b"a LOGIN {4}\r\n";
        assert_eq!(next_frame(buf, limits()), Frame::AwaitingLiteral { index: 0, size: 4 });
        let buf = b"a LOGIN {4}\r\nfred {3}\r\nab";
        assert_eq!(next_frame(buf, limits()), Frame::AwaitingLiteral { index: 1, size: 3 });
        let buf = b"a LOGIN {4}\r\nfred {3}\r\nabc\r\nNEXT";
        assert_eq!(next_frame(buf, limits()), Frame::Complete { len: 28 });
    }

    #[test]
    fn empty_synchronizing_literal_still_needs_continuation() {
        assert_eq!(next_frame(b"a LOGIN fred {0}\r\n", limits()), Frame::AwaitingLiteral { index: 0, size: 0 });
        let buf = b"a LOGIN fred {0}\r\n\r\n";
        assert_eq!(next_frame(buf, limits()), Frame::Complete { len: buf.len() });
    }

    #[test]
    fn non_synchronizing_and_binary_literals() {
        assert_eq!(next_frame(b"a LOGIN {4+}\r\nfr", limits()), Frame::Incomplete);
        let buf = b"a APPEND x ~{3+}\r\n\0\0\0\r\n";
        assert_eq!(next_frame(buf, limits()), Frame::Complete { len: buf.len() });
        let m = literal_marker(b"x ~{12+}").unwrap();
        assert!(m.binary && !m.synchronizing && m.marker_len == 6 && m.size == 12);
    }

    #[test]
    fn literal_too_big_names_tag_and_append() {
        let buf = b"A003 APPEND saved {51}\r\n";
        assert_eq!(
            next_frame(buf, limits()),
            Frame::LiteralTooBig {
                tag: Some("A003".into()),
                is_append: true,
                synchronizing: true,
                size: 51,
                discard: buf.len()
            }
        );
        // literals of one command add up
        let buf = b"a APPEND x {30+}\r\n";
        let mut v = buf.to_vec();
        v.extend_from_slice(&[b'x'; 30]);
        v.extend_from_slice(b" {30}\r\n");
        assert!(matches!(next_frame(&v, limits()), Frame::LiteralTooBig { .. }));
    }

    #[test]
    fn line_too_long() {
        let long = vec![b'a'; 101];
        assert_eq!(next_frame(&long, limits()), Frame::LineTooLong);
        let mut with_nl = vec![b'a'; 120];
        with_nl.extend_from_slice(b"\r\n");
        assert_eq!(next_frame(&with_nl, limits()), Frame::LineTooLong);
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..400 {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let b = (seed >> 16) as u8;
                buf.push(match b % 7 {
                    0 => b'{',
                    1 => b'}',
                    2 => b'\n',
                    3 => b'\r',
                    4 => b'0' + b % 10,
                    5 => b'+',
                    _ => b,
                });
            }
            let _ = next_frame(&buf, limits());
            let _ = literal_marker(&buf);
        }
        let _ = literal_marker(b"}");
        let _ = literal_marker(b"{99999999999999999999999}");
    }
}
