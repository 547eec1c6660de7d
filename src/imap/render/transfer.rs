//! Undoing a Content-Transfer-Encoding for BINARY[part] (RFC 3516), chunk by chunk: the
//! decoders keep their state between chunks, so the same code decodes a part in memory
//! (one chunk) and a 20 MiB attachment read from the file in small pieces, first to count
//! the decoded size (the literal's `{n}` comes before the data), then to send it.

/// A decoder for one part's body. Feed it the body in chunks of any size, then
/// [`Decoder::finish`]; the output is the same however the body was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoder {
    /// 7bit/8bit/binary of a non-text part, and `BINARY[]`: as stored.
    Identity,
    /// 7bit/8bit/binary text: every bare LF becomes CRLF (RFC 3516 4.2: textual data goes
    /// out with the IMAP CRLF line ends "regardless of the underlying storage"; an APPEND
    /// may store LF).
    CrlfText { prev_cr: bool },
    /// Base64, leniently: line breaks and stray characters are skipped, decoding stops at
    /// the first `=` (mail in the wild).
    Base64 { acc: u32, bits: u32, done: bool },
    /// Quoted-printable (see [`decode_qp_line`]), line by line; `line` holds the start of a
    /// line cut by a chunk, at most `max_line` bytes.
    QuotedPrintable { line: Vec<u8>, max_line: usize },
}

/// A quoted-printable line longer than the decoder's bound (streamed decoding only; the
/// caller then decodes the part in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quoted-printable line longer than {0} bytes")]
pub struct LineTooLong(pub usize);

impl Decoder {
    pub fn base64() -> Decoder {
        Decoder::Base64 { acc: 0, bits: 0, done: false }
    }

    pub fn crlf_text() -> Decoder {
        Decoder::CrlfText { prev_cr: false }
    }

    /// `max_line`: the longest line held between chunks (`usize::MAX` in memory).
    pub fn quoted_printable(max_line: usize) -> Decoder {
        Decoder::QuotedPrintable { line: Vec::new(), max_line }
    }

    /// Decode the next chunk of the body into `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), LineTooLong> {
        match self {
            Decoder::Identity => out.extend_from_slice(input),
            Decoder::CrlfText { prev_cr } => {
                out.reserve(input.len());
                for &b in input {
                    if b == b'\n' && !*prev_cr {
                        out.push(b'\r');
                    }
                    out.push(b);
                    *prev_cr = b == b'\r';
                }
            }
            Decoder::Base64 { acc, bits, done } => {
                out.reserve(input.len() * 3 / 4);
                for &b in input {
                    if *done {
                        break;
                    }
                    let v = match b {
                        b'A'..=b'Z' => b - b'A',
                        b'a'..=b'z' => b - b'a' + 26,
                        b'0'..=b'9' => b - b'0' + 52,
                        b'+' => 62,
                        b'/' => 63,
                        b'=' => {
                            *done = true;
                            break;
                        }
                        _ => continue,
                    };
                    *acc = (*acc << 6) | u32::from(v);
                    *bits += 6;
                    if *bits >= 8 {
                        *bits -= 8;
                        out.push((*acc >> *bits) as u8);
                        *acc &= (1 << *bits) - 1;
                    }
                }
            }
            Decoder::QuotedPrintable { line, max_line } => {
                let mut rest = input;
                while let Some(lf) = memchr::memchr(b'\n', rest) {
                    let (this, after) = rest.split_at(lf + 1);
                    if line.is_empty() {
                        decode_qp_line(this, out);
                    } else {
                        line.extend_from_slice(this);
                        decode_qp_line(line, out);
                        line.clear();
                    }
                    rest = after;
                }
                if line.len() + rest.len() > *max_line {
                    return Err(LineTooLong(*max_line));
                }
                line.extend_from_slice(rest);
            }
        }
        Ok(())
    }

    /// The end of the body: decode what is held back (a last line without line end).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Decoder::QuotedPrintable { line, .. } = self
            && !line.is_empty()
        {
            decode_qp_line(line, out);
            line.clear();
        }
    }

    /// Decode a whole body held in memory.
    pub fn decode_all(mut self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len());
        // Only a quoted-printable line can exceed a bound, and in memory there is none.
        if let Decoder::QuotedPrintable { max_line, .. } = &mut self {
            *max_line = usize::MAX;
        }
        let _ = self.feed(body, &mut out);
        self.finish(&mut out);
        out
    }
}

/// Base64 body decoding that skips line breaks and stray characters (mail in the wild).
pub fn decode_base64_lenient(body: &[u8]) -> Vec<u8> {
    Decoder::base64().decode_all(body)
}

/// Quoted-printable (RFC 2045 6.7) to the octets it encodes.
pub fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    Decoder::quoted_printable(usize::MAX).decode_all(body)
}

/// One quoted-printable line (with its LF, or the last line without). White space at the
/// end of an encoded line is transport padding and goes (rule 3); a line ending in `=`
/// (after that padding) is a soft line break and joins the next (rule 5); `=XX` is one
/// octet (either case of hex, as robust decoders accept); any other `=` is kept as it is.
/// Hard line breaks come out as CRLF whatever the stored line end was (RFC 3516 4.2:
/// textual BINARY data uses the IMAP CRLF convention).
fn decode_qp_line(line: &[u8], out: &mut Vec<u8>) {
    let (text, hard_break) = match line.strip_suffix(b"\n") {
        Some(t) => (t.strip_suffix(b"\r").unwrap_or(t), true),
        None => (line, false),
    };
    let end = text.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(0, |p| p + 1);
    let text = &text[..end];
    let (text, soft) = match text.strip_suffix(b"=") {
        Some(t) => (t, true),
        None => (text, false),
    };
    decode_qp_text(text, out);
    if hard_break && !soft {
        out.extend_from_slice(b"\r\n");
    }
}

/// The `=XX` escapes of one quoted-printable line (no line end in `text`).
fn decode_qp_text(text: &[u8], out: &mut Vec<u8>) {
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'='
            && let (Some(hi), Some(lo)) = (text.get(i + 1).and_then(|c| hex(*c)), text.get(i + 2).and_then(|c| hex(*c)))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `body` cut into chunks of `size` bytes.
    fn chunked(mut d: Decoder, body: &[u8], size: usize) -> Result<Vec<u8>, LineTooLong> {
        let mut out = Vec::new();
        for chunk in body.chunks(size.max(1)) {
            d.feed(chunk, &mut out)?;
        }
        d.finish(&mut out);
        Ok(out)
    }

    /// Every decoder gives the same bytes whatever the chunking, including a chunk end
    /// between CR and LF, inside `=XX`, and between `=` and the line end.
    #[test]
    fn chunking_never_changes_the_output() {
        let qp = b"caf=C3=A9 =\r\nok  \r\nsoft=  \t\r\nbreak\nbare=\nx=4=\r\n==\r\nlast=\r".as_slice();
        let b64 = b"aGVs\r\nbG8g\r\nd29y bGQ=\r\nignored".as_slice();
        let text = b"\none\ntwo\r\nthree\r\r\n\n".as_slice();
        let cases: [(Decoder, &[u8]); 4] = [
            (Decoder::quoted_printable(usize::MAX), qp),
            (Decoder::base64(), b64),
            (Decoder::crlf_text(), text),
            (Decoder::Identity, text),
        ];
        for (d, body) in cases {
            let whole = d.clone().decode_all(body);
            for size in 1..body.len() + 1 {
                assert_eq!(chunked(d.clone(), body, size).unwrap(), whole, "{d:?} in chunks of {size}");
            }
        }
        assert_eq!(decode_base64_lenient(b64), b"hello world");
        assert_eq!(Decoder::crlf_text().decode_all(text), b"\r\none\r\ntwo\r\nthree\r\r\n\r\n");
    }

    #[test]
    fn long_quoted_printable_lines_are_refused_when_streaming() {
        let line = vec![b'a'; 100];
        assert_eq!(chunked(Decoder::quoted_printable(64), &line, 10), Err(LineTooLong(64)));
        let mut lines = line.clone();
        lines.push(b'\n');
        lines.extend_from_slice(&line[..50]);
        assert_eq!(chunked(Decoder::quoted_printable(64), &lines, 200).map(|o| o.len()), Ok(152));
        assert_eq!(Decoder::quoted_printable(64).decode_all(&line), line);
    }
}
