//! Command framing: the cheap first phase of reading a command (as in mini-redis'
//! `Frame::check`). It answers "is a whole command buffered?" without parsing or allocating,
//! so a partial read never half-consumes input. A command is a line plus, for every literal
//! announced at a line end (`{n}`, `{n+}` LITERAL+ RFC 7888, `~{n}` BINARY RFC 3516), exactly
//! n bytes and the rest of the command after them.
//!
//! Bounds (architecture.md "every input has a bound"): the command text excluding literals
//! may not pass `max_line`, and the literals of one command together may not pass
//! `max_literal` — or `max_append` for APPEND, the only command that carries messages.
//! The session picks them by state: before login both are a few KiB, because an
//! unauthenticated client that may announce 25 MiB literals can pin gigabytes with a few
//! dozen sockets. Big APPEND literals are not buffered at all: the framer hands them to the
//! session (`Frame::StreamLiteral`), which streams them to a spool file, and framing goes on
//! after them with a [`Resume`].

/// The bounds the framer enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub max_line: usize,
    /// Literal bytes of one command other than APPEND.
    pub max_literal: u64,
    /// Literal bytes of one APPEND (the APPENDLIMIT once logged in).
    pub max_append: u64,
    /// An APPEND literal that would take the literal bytes held in memory for the command
    /// past this is streamed instead (`Frame::StreamLiteral`); `None`: buffer everything.
    pub stream_above: Option<u64>,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits { max_line: 64 * 1024, max_literal: 64 * 1024, max_append: 25 * 1024 * 1024, stream_above: None }
    }
}

/// The tag and kind of a command, read from its first line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandHead {
    pub tag: Option<String>,
    pub is_append: bool,
}

/// How much of a command came before the bytes now in the buffer: the session streamed
/// one of its literals away and framing continues after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub head: Option<CommandHead>,
    /// Command text (without literal data) so far.
    pub line_bytes: usize,
    /// Literal bytes announced so far, streamed or not.
    pub literal_total: u64,
    /// Literal bytes so far that sit in memory (not streamed).
    pub buffered: u64,
    /// Literals so far.
    pub literals: usize,
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
    /// `buf[..len]` is one complete command (including its final CRLF), or the rest of one
    /// after a `Resume`.
    Complete { len: usize },
    /// `buf[..head_len]` ends with the announcement of a big APPEND literal of `size` bytes
    /// (its marker is the last `marker_len` bytes before the line end). The session keeps
    /// the head, sends `+` if `synchronizing`, streams the next `size` bytes to a spool and
    /// frames the rest with `resume`.
    StreamLiteral { head_len: usize, size: u64, synchronizing: bool, binary: bool, marker_len: usize, resume: Resume },
    /// The command text passed `max_line` without a line end: the session says BYE
    /// (we cannot find where the next command starts).
    LineTooLong,
    /// A literal passes its bound. For a synchronizing literal the client has not sent
    /// the data yet: answer `tag NO [TOOBIG]` (APPEND) or `tag BAD` and drop `discard`
    /// bytes. For a non-synchronizing one the data is already on its way; RFC 7888 4 lets
    /// us close the connection with BYE.
    LiteralTooBig { tag: Option<String>, is_append: bool, synchronizing: bool, size: u64, discard: usize },
}

/// Check whether `buf` starts with one complete command.
pub fn next_frame(buf: &[u8], limits: FrameLimits) -> Frame {
    resume_frame(buf, limits, &Resume::default())
}

/// Check whether `buf` completes the command described by `resume`.
pub fn resume_frame(buf: &[u8], limits: FrameLimits, resume: &Resume) -> Frame {
    let mut pos = 0usize;
    let mut line_bytes = resume.line_bytes;
    let mut literal_total = resume.literal_total;
    let mut buffered = resume.buffered;
    let mut index = resume.literals;
    let mut head = resume.head.clone();
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
        let head = head.get_or_insert_with(|| command_head(buf));
        let bound = if head.is_append { limits.max_append } else { limits.max_literal };
        literal_total = literal_total.saturating_add(literal.size);
        if literal.size > bound || literal_total > bound {
            return Frame::LiteralTooBig {
                tag: head.tag.clone(),
                is_append: head.is_append,
                synchronizing: literal.synchronizing,
                size: literal.size,
                discard: nl + 1,
            };
        }
        let data_start = nl + 1;
        if head.is_append && limits.stream_above.is_some_and(|max| buffered.saturating_add(literal.size) > max) {
            return Frame::StreamLiteral {
                head_len: data_start,
                size: literal.size,
                synchronizing: literal.synchronizing,
                binary: literal.binary,
                marker_len: literal.marker_len,
                resume: Resume { head: Some(head.clone()), line_bytes, literal_total, buffered, literals: index + 1 },
            };
        }
        buffered += literal.size;
        // size <= max_append, which is far below usize::MAX on 64-bit targets.
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

/// The tag (first word) and whether the command is APPEND: the early reply to an
/// oversized literal needs the tag, and only APPEND may carry big literals.
fn command_head(buf: &[u8]) -> CommandHead {
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    let line = strip_cr(&buf[..line_end]);
    let mut words = line.split(|b| *b == b' ');
    let tag = words
        .next()
        .filter(|t| !t.is_empty() && t.iter().all(|b| super::parser::lexer::is_tag_char(*b)))
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(str::to_string);
    let is_append = words.next().is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"));
    CommandHead { tag, is_append }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FrameLimits {
        FrameLimits { max_line: 100, max_literal: 50, max_append: 50, stream_above: None }
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
    fn only_append_gets_the_append_bound() {
        let limits = FrameLimits { max_line: 100, max_literal: 10, max_append: 50, stream_above: None };
        assert!(matches!(next_frame(b"a SEARCH TEXT {11}\r\n", limits), Frame::LiteralTooBig { is_append: false, .. }));
        assert_eq!(next_frame(b"a APPEND x {11}\r\n", limits), Frame::AwaitingLiteral { index: 0, size: 11 });
    }

    #[test]
    fn big_append_literals_are_streamed_and_framing_resumes_after_them() {
        let limits = FrameLimits { max_line: 100, max_literal: 10, max_append: 1000, stream_above: Some(20) };
        // a small literal stays in the buffer; the big one is handed over at its line end
        let buf = b"a APPEND x {5+}\r\nhello {30}\r\nxx";
        let Frame::StreamLiteral { head_len, size, synchronizing, binary, marker_len, resume } =
            next_frame(buf, limits)
        else {
            panic!("{:?}", next_frame(buf, limits));
        };
        assert_eq!((head_len, size, synchronizing, binary, marker_len), (buf.len() - 2, 30, true, false, 4));
        assert_eq!((resume.literals, resume.literal_total, resume.buffered), (2, 35, 5));
        // after the data the rest of the command is framed with the resume state
        assert_eq!(resume_frame(b" ~{3}\r\n", limits, &resume), Frame::AwaitingLiteral { index: 2, size: 3 });
        assert_eq!(resume_frame(b" ~{3}\r\nabc\r\nb", limits, &resume), Frame::Complete { len: 12 });
        // the total still counts streamed bytes
        let Frame::LiteralTooBig { tag, is_append: true, .. } = resume_frame(b" {966}\r\n", limits, &resume) else {
            panic!()
        };
        assert_eq!(tag.as_deref(), Some("a"));
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
