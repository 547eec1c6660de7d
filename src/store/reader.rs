//! Streaming a stored message as CRLF wire bytes.
//!
//! Owns: [`MessageReader`], what IMAP FETCH and POP3 RETR read. Our own files are stored
//! with CRLF and stream through unchanged; files written by others (Postfix `local`, mutt,
//! some Dovecot setups) may use bare LF, which is turned into CRLF on the fly so the bytes
//! sent always match the advertised RFC822.SIZE / LIST size. Large messages are never held
//! in memory. A backend without files hands over its own stream instead (`from_stream`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

/// Size of the message once every bare LF becomes CRLF. `prev_cr` carries the state across
/// chunks (start with `false`).
pub fn wire_len(chunk: &[u8], prev_cr: &mut bool) -> u64 {
    let mut extra = 0u64;
    for &b in chunk {
        if b == b'\n' && !*prev_cr {
            extra += 1;
        }
        *prev_cr = b == b'\r';
    }
    chunk.len() as u64 + extra
}

/// Wire size of a whole file. Blocking.
pub fn file_wire_len(path: &std::path::Path) -> io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut prev_cr = false;
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += wire_len(&buf[..n], &mut prev_cr);
    }
}

/// An open message: `AsyncRead` yielding its CRLF wire form, and its wire size. Small
/// messages are read whole in one blocking call (`Memory`); through `tokio::fs` every read
/// would be its own hop to the blocking pool, which dominated POP3 RETR and IMAP `BODY[]`
/// of typical mail. Large ones stream from the file.
#[derive(Debug)]
pub struct MessageReader {
    size: u64,
    source: Source,
}

enum Source {
    Memory { data: bytes::Bytes, pos: usize },
    File { file: tokio::fs::File, convert: bool, prev_cr: bool, pending: Vec<u8>, pos: usize },
    Stream(Pin<Box<dyn AsyncRead + Send>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Memory { data, pos } => {
                f.debug_struct("Memory").field("len", &data.len()).field("pos", pos).finish()
            }
            Source::File { file, convert, .. } => {
                f.debug_struct("File").field("file", file).field("convert", convert).finish()
            }
            Source::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl MessageReader {
    /// Wrap an open file. `convert` when its physical size differs from the wire size.
    pub(crate) fn new(file: tokio::fs::File, size: u64, convert: bool) -> MessageReader {
        MessageReader { size, source: Source::File { file, convert, prev_cr: false, pending: Vec::new(), pos: 0 } }
    }

    /// A message already read into memory (its CRLF wire form).
    pub(crate) fn from_bytes(data: bytes::Bytes) -> MessageReader {
        MessageReader { size: data.len() as u64, source: Source::Memory { data, pos: 0 } }
    }

    /// A backend's own stream of the CRLF wire form, `size` bytes long (for a store without
    /// message files: a prefix chained with an object store body, or database chunks).
    /// `skip` reads through it; a backend that can do ranged reads skips before wrapping.
    pub fn from_stream(stream: impl AsyncRead + Send + 'static, size: u64) -> MessageReader {
        MessageReader { size, source: Source::Stream(Box::pin(stream)) }
    }

    /// Wire size in bytes: exactly what reading to the end yields.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The open file of a message stored with CRLF line ends, whose file offsets are
    /// offsets in the wire form, for positional reads (FETCH of a body part scans the MIME
    /// structure and reads the part's byte range from the file). `None` for a message
    /// already read into memory or one whose bare LFs are converted on the way. Call
    /// before reading anything.
    pub fn into_std_file(self) -> Option<std::fs::File> {
        match self.source {
            Source::File { file, convert: false, .. } => file.try_into_std().ok(),
            _ => None,
        }
    }

    /// Skip the first `n` wire bytes (FETCH `BODY[]<start.len>`): a seek for CRLF files,
    /// reading through for converted ones. Call before reading anything.
    pub async fn skip(&mut self, n: u64) -> io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        match &mut self.source {
            _ if n == 0 => Ok(()),
            Source::Memory { data, pos } => {
                *pos = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                Ok(())
            }
            Source::File { file, convert: false, .. } => file.seek(io::SeekFrom::Start(n)).await.map(|_| ()),
            Source::File { .. } | Source::Stream(_) => {
                tokio::io::copy(&mut (&mut *self).take(n), &mut tokio::io::sink()).await?;
                Ok(())
            }
        }
    }
}

impl AsyncRead for MessageReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let (file, prev_cr, pending, pos) = match &mut self.get_mut().source {
            Source::Memory { data, pos } => {
                let n = out.remaining().min(data.len() - *pos);
                out.put_slice(&data[*pos..*pos + n]);
                *pos += n;
                return Poll::Ready(Ok(()));
            }
            Source::File { file, convert: false, .. } => return Pin::new(file).poll_read(cx, out),
            Source::Stream(stream) => return stream.as_mut().poll_read(cx, out),
            Source::File { file, prev_cr, pending, pos, .. } => (file, prev_cr, pending, pos),
        };
        loop {
            if *pos < pending.len() {
                let n = out.remaining().min(pending.len() - *pos);
                out.put_slice(&pending[*pos..*pos + n]);
                *pos += n;
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut *file).poll_read(cx, &mut rb))?;
            let data = rb.filled();
            if data.is_empty() {
                return Poll::Ready(Ok(()));
            }
            pending.clear();
            *pos = 0;
            for &b in data {
                if b == b'\n' && !*prev_cr {
                    pending.push(b'\r');
                }
                pending.push(b);
                *prev_cr = b == b'\r';
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn lf_files_stream_as_crlf_with_the_announced_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        // Mixed endings, and an LF right after a chunk boundary-sized run.
        let mut content = b"Subject: x\n\r\nline\r\n".to_vec();
        content.extend(std::iter::repeat_n(b'a', 8191));
        content.extend(b"\nend\n");
        std::fs::write(&p, &content).unwrap();
        let size = file_wire_len(&p).unwrap();
        let f = tokio::fs::File::open(&p).await.unwrap();
        let mut r = MessageReader::new(f, size, true);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len() as u64, size);
        assert!(out.starts_with(b"Subject: x\r\n\r\nline\r\n"));
        assert!(out.ends_with(b"a\r\nend\r\n"));
        assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }

    #[tokio::test]
    async fn skip_seeks_or_reads_through() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        for (content, convert) in [(&b"ab\ncd\nef"[..], true), (&b"ab\r\ncd\r\nef"[..], false)] {
            std::fs::write(&p, content).unwrap();
            let size = file_wire_len(&p).unwrap();
            let mut r = MessageReader::new(tokio::fs::File::open(&p).await.unwrap(), size, convert);
            r.skip(4).await.unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, b"cd\r\nef");
        }
        let mut r = MessageReader::from_bytes(bytes::Bytes::from_static(b"ab\r\ncd"));
        r.skip(2).await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!((out.as_slice(), r.size()), (&b"\r\ncd"[..], 6));
    }

    /// A backend's stream passes through as it is; skipping reads through it.
    #[tokio::test]
    async fn streams_pass_through_and_skip_by_reading() {
        let data = b"Subject: s\r\n\r\nbody\r\n";
        let mut r = MessageReader::from_stream(std::io::Cursor::new(data.to_vec()), data.len() as u64);
        assert_eq!(r.size(), data.len() as u64);
        r.skip(12).await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"\r\nbody\r\n");
        let r = MessageReader::from_stream(std::io::Cursor::new(data.to_vec()), data.len() as u64);
        assert!(format!("{r:?}").contains("Stream"));
        assert!(r.into_std_file().is_none(), "no positional reads on a stream");
    }

    /// Only a file read as stored gives its file for positional reads.
    #[tokio::test]
    async fn std_file_only_when_offsets_are_wire_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        std::fs::write(&p, b"a\r\nb\r\n").unwrap();
        let open = || async { tokio::fs::File::open(&p).await.unwrap() };
        assert!(MessageReader::new(open().await, 6, false).into_std_file().is_some());
        assert!(MessageReader::new(open().await, 8, true).into_std_file().is_none());
        assert!(MessageReader::from_bytes(bytes::Bytes::from_static(b"x")).into_std_file().is_none());
    }

    #[test]
    fn wire_len_counts_bare_lf_only() {
        let mut cr = false;
        assert_eq!(wire_len(b"a\r\nb\nc", &mut cr), 7);
        let mut cr = false;
        assert_eq!(wire_len(b"a\r", &mut cr) + wire_len(b"\n", &mut cr), 3);
    }
}
