//! Bounded line reading for the POP3 connection: returns one CRLF/LF-terminated line, or
//! says the line was too long (after discarding it), or that the peer went away.
//!
//! The bound matters: a client must not make us buffer an unbounded line. An over-long line
//! is skipped up to its newline so the connection can continue with `-ERR`; but a peer that
//! streams more than [`MAX_DISCARD`] octets without any newline is not talking POP3 and the
//! read fails (the server closes). Reading is two-phase like mini-redis: look at the
//! buffered bytes, take only what forms the line, leave the rest for the next command
//! (PIPELINING, RFC 2449 §6.6).

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Octets of a single over-long line we are willing to skip before giving up.
pub const MAX_DISCARD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// `buf` holds one line, terminator included.
    Line,
    /// The line exceeded the limit and was discarded.
    TooLong,
    /// The peer closed (a partial last line is dropped: it was never a command).
    Eof,
}

pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<LineRead> {
    buf.clear();
    let mut discarded = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(LineRead::Eof);
        }
        let (used, complete) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if discarded == 0 && buf.len() + used <= limit {
            buf.extend_from_slice(&available[..used]);
        } else {
            discarded += buf.len() + used;
            buf.clear();
        }
        reader.consume(used);
        if complete {
            return Ok(if discarded > 0 { LineRead::TooLong } else { LineRead::Line });
        }
        if discarded > MAX_DISCARD {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line without end"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn lines(input: &[u8], limit: usize) -> Vec<Result<(LineRead, Vec<u8>), String>> {
        // A tiny buffer forces lines to straddle reads.
        let mut r = BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            match read_line(&mut r, limit, &mut buf).await {
                Ok(LineRead::Eof) => {
                    out.push(Ok((LineRead::Eof, Vec::new())));
                    return out;
                }
                Ok(kind) => out.push(Ok((kind, buf.clone()))),
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn pipelined_lines_come_out_one_by_one() {
        let got = lines(b"USER a\r\nPASS b\r\nSTAT\n", 512).await;
        assert_eq!(
            got,
            vec![
                Ok((LineRead::Line, b"USER a\r\n".to_vec())),
                Ok((LineRead::Line, b"PASS b\r\n".to_vec())),
                Ok((LineRead::Line, b"STAT\n".to_vec())),
                Ok((LineRead::Eof, vec![])),
            ]
        );
    }

    #[tokio::test]
    async fn over_long_line_is_skipped_and_reading_continues() {
        let got = lines(b"USER aaaaaaaaaaaaaaaaaaaa\r\nNOOP\r\n", 10).await;
        assert_eq!(
            got,
            vec![
                Ok((LineRead::TooLong, vec![])),
                Ok((LineRead::Line, b"NOOP\r\n".to_vec())),
                Ok((LineRead::Eof, vec![])),
            ]
        );
    }

    #[tokio::test]
    async fn endless_line_fails_and_partial_line_at_eof_is_dropped() {
        let endless = vec![b'x'; MAX_DISCARD + 100];
        let got = lines(&endless, 512).await;
        assert!(matches!(got.last(), Some(Err(_))));
        assert_eq!(lines(b"QUI", 512).await, vec![Ok((LineRead::Eof, vec![]))]);
    }
}
