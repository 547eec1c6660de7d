//! Writing to a client that may read slowly or not at all. The write timeout is a bound on
//! how long the client may take *no* bytes, not on how long a reply or a message takes: a
//! reader on a slow link that keeps taking data gets a message of any size, one that stops
//! reading is cut off within the timeout, and either way the server holds at most the
//! buffer it is writing from.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The error of a peer that did not keep up for the whole of a limit.
pub fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client does not read")
}

/// One step of I/O, bounded by `limit`.
pub async fn within<T>(limit: Duration, step: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(limit, step).await.unwrap_or_else(|_| Err(stalled()))
}

/// All of `buf` written, failing when the writer accepts no byte for `limit`. Each
/// `write` returns as soon as the socket (or the TLS layer's bounded record buffer) takes
/// some bytes, so the limit restarts with every bit of progress.
pub async fn write_all<W: AsyncWrite + Unpin + ?Sized>(
    writer: &mut W,
    mut buf: &[u8],
    limit: Duration,
) -> io::Result<()> {
    while !buf.is_empty() {
        match within(limit, writer.write(buf)).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// `buf` written as [`write_all`] does, then flushed within `limit` (a TLS stream keeps
/// the last records until flushed).
pub async fn write_and_flush<W: AsyncWrite + Unpin + ?Sized>(
    writer: &mut W,
    buf: &[u8],
    limit: Duration,
) -> io::Result<()> {
    write_all(writer, buf, limit).await?;
    within(limit, writer.flush()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A reader taking 8 bytes every 100 ms gets 4 KiB (5 s) through a 1 s limit.
    #[tokio::test(start_paused = true)]
    async fn a_slow_steady_reader_gets_everything() {
        let (mut server, mut client) = tokio::io::duplex(16);
        let data: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 8];
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match client.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let started = tokio::time::Instant::now();
        write_and_flush(&mut server, &data, Duration::from_secs(1)).await.unwrap();
        assert!(started.elapsed() > Duration::from_secs(5));
        drop(server);
        assert_eq!(reader.await.unwrap(), data);
    }

    /// A reader that stops: the write fails once no byte was taken for the limit.
    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_cut_off_after_the_limit() {
        let (mut server, mut client) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            client.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(client);
        });
        let started = tokio::time::Instant::now();
        let err = write_all(&mut server, &[7u8; 4096], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_millis(1100), "{:?}", started.elapsed());
        reader.abort();
    }
}
