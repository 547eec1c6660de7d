//! Literal readers for body parts streamed from the message file: a byte range of the
//! file ([`FileRange`]) and a part with its transfer encoding undone on the way
//! ([`Decoded`]). Each holds one chunk, so a FETCH of a 20 MiB attachment costs the same
//! memory as one of 20 KiB.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::task::JoinHandle;

use super::file_source::read_full_at;
use crate::imap::render::transfer::Decoder;

/// Bytes read from the file at a time.
const CHUNK: usize = 64 * 1024;

/// A byte range of a message file, read with positional reads (several readers share the
/// open file, each at its own position, and a rename of the file by a flag change does not
/// disturb them).
pub(super) struct FileRange {
    file: Arc<File>,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_pos: usize,
    pending: Option<JoinHandle<io::Result<Vec<u8>>>>,
}

impl FileRange {
    pub fn new(file: Arc<File>, start: u64, end: u64) -> FileRange {
        FileRange { file, pos: start, end: end.max(start), buf: Vec::new(), buf_pos: 0, pending: None }
    }
}

impl AsyncRead for FileRange {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.buf_pos < this.buf.len() {
                let n = out.remaining().min(this.buf.len() - this.buf_pos);
                out.put_slice(&this.buf[this.buf_pos..this.buf_pos + n]);
                this.buf_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.pos >= this.end {
                return Poll::Ready(Ok(()));
            }
            let pending = this.pending.get_or_insert_with(|| {
                let file = this.file.clone();
                let (pos, len) = (this.pos, usize::try_from(this.end - this.pos).unwrap_or(CHUNK).min(CHUNK));
                let mut buf = std::mem::take(&mut this.buf);
                tokio::task::spawn_blocking(move || {
                    buf.resize(len, 0);
                    let got = read_full_at(&file, &mut buf, pos)?;
                    buf.truncate(got);
                    Ok(buf)
                })
            });
            let joined = ready!(Pin::new(pending).poll(cx));
            this.pending = None;
            let buf = joined.map_err(io::Error::other)??;
            if buf.is_empty() {
                // The file is shorter than the range: end here (the connection pads).
                this.pos = this.end;
            }
            this.pos += buf.len() as u64;
            this.buf = buf;
            this.buf_pos = 0;
        }
    }
}

/// The decoded content of a part: `inner` (its encoded bytes) through `decoder`, the first
/// `skip` decoded bytes dropped (BINARY[part]<start.len>), at most `size` given.
pub(super) struct Decoded<R> {
    inner: R,
    decoder: Decoder,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    skip: u64,
    left: u64,
    finished: bool,
}

impl<R> Decoded<R> {
    pub fn new(inner: R, decoder: Decoder, skip: u64, size: u64) -> Decoded<R> {
        Decoded { inner, decoder, raw: Vec::new(), out: Vec::new(), out_pos: 0, skip, left: size, finished: false }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Decoded<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.left == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.out_pos < this.out.len() {
                let avail = this.out.len() - this.out_pos;
                let n = buf.remaining().min(avail).min(usize::try_from(this.left).unwrap_or(usize::MAX));
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                this.left -= n as u64;
                return Poll::Ready(Ok(()));
            }
            if this.finished {
                return Poll::Ready(Ok(()));
            }
            this.raw.resize(CHUNK, 0);
            let mut rb = ReadBuf::new(&mut this.raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            this.out.clear();
            this.out_pos = 0;
            if n == 0 {
                this.decoder.finish(&mut this.out);
                this.finished = true;
            } else {
                this.decoder.feed(&this.raw[..n], &mut this.out).map_err(io::Error::other)?;
            }
            let dropped = usize::try_from(this.skip).unwrap_or(usize::MAX).min(this.out.len());
            this.out_pos = dropped;
            this.skip -= dropped as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    fn file_with(content: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        Arc::new(f)
    }

    async fn read_all(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).await.unwrap();
        v
    }

    #[tokio::test]
    async fn ranges_of_one_file_read_independently() {
        let content: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let file = file_with(&content);
        let mut a = FileRange::new(file.clone(), 5, (2 * CHUNK + 3) as u64);
        let b = FileRange::new(file.clone(), CHUNK as u64 - 1, content.len() as u64 + 100);
        let mut first = [0u8; 10];
        a.read_exact(&mut first).await.unwrap();
        assert_eq!(read_all(b).await, &content[CHUNK - 1..]);
        let mut rest = read_all(a).await;
        rest.splice(0..0, first);
        assert_eq!(rest, &content[5..2 * CHUNK + 3]);
        assert!(read_all(FileRange::new(file, 9, 9)).await.is_empty());
    }

    #[tokio::test]
    async fn decoded_skips_and_stops() {
        let b64: Vec<u8> = b"aGVsbG8gd29ybGQ=\r\n".to_vec();
        let file = file_with(&b64);
        let r = Decoded::new(FileRange::new(file.clone(), 0, b64.len() as u64), Decoder::base64(), 6, 3);
        assert_eq!(read_all(r).await, b"wor");
        let r = Decoded::new(FileRange::new(file, 0, b64.len() as u64), Decoder::base64(), 0, u64::MAX);
        assert_eq!(read_all(r).await, b"hello world");
    }
}
