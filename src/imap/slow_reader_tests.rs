//! Clients that read FETCH output slowly or not at all, through a receive window as small
//! as the kernel allows: the write timeout bounds how long the client takes no bytes, not
//! the whole literal, so a slow but steady reader gets a message of any size, and one
//! that stops reading is disconnected.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::test_support::*;
use crate::store::{LocalDelivery, MailboxOwner, MessageBody};

const BOB: &str = "bob@example.org";

/// A message of `size` octets (bob has no quota).
async fn deliver_to_bob(server: &TestServer, size: usize, n: usize) -> Vec<u8> {
    let mut msg = format!("Subject: big {n}\r\n\r\n").into_bytes();
    let mut i = 0u64;
    while msg.len() < size {
        msg.extend_from_slice(format!("line {i:08} of message {n}, padding padding padding\r\n").as_bytes());
        i += 1;
    }
    let delivery = LocalDelivery {
        owner: MailboxOwner::new("bob", "example.org"),
        folder: "INBOX".into(),
        header_prefix: Vec::new(),
        flags: Vec::new(),
    };
    let r = server.store.deliver(&MessageBody::Memory(bytes::Bytes::from(msg.clone())), &[delivery]).await;
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
    msg
}

/// Plain TCP with a 4 KiB receive buffer, logged in as bob with INBOX selected.
async fn tiny_window_session(server: &TestServer) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut s = socket.connect(server.addr).await.expect("connect");
    s.write_all(format!("a LOGIN {BOB} bobpw\r\nb SELECT INBOX\r\n").as_bytes()).await.expect("send");
    read_until(&mut s, b"\r\nb OK", Duration::from_millis(0)).await;
    s
}

/// Read (pausing `pause` after every 128 KiB) until `end` and a CRLF after it arrived.
async fn read_until(s: &mut TcpStream, end: &[u8], pause: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut since_pause = 0;
    loop {
        let n =
            tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await.expect("no response").expect("read");
        assert!(n > 0, "closed after {} octets", got.len());
        got.extend_from_slice(&buf[..n]);
        // Only the new bytes and a line before them: scanning all of a 4 MiB response
        // after every 4 KiB read would make this client the slow one.
        let tail = &got[got.len().saturating_sub(n + 256)..];
        if let Some(at) = memchr::memmem::rfind(tail, end)
            && tail[at + end.len()..].ends_with(b"\r\n")
        {
            return got;
        }
        since_pause += n;
        if !pause.is_zero() && since_pause >= 128 * 1024 {
            since_pause = 0;
            tokio::time::sleep(pause).await;
        }
    }
}

/// 4 MiB read with a 50 ms pause after every 128 KiB takes longer than the 1 s write
/// timeout, yet the client never goes that long without taking bytes: the literal
/// arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_reader_gets_a_literal_that_outlasts_the_write_timeout() {
    let server = start_with(|ctx| ctx.limits.write_timeout = Duration::from_secs(1)).await;
    let msg = deliver_to_bob(&server, 4 << 20, 1).await;
    let mut s = tiny_window_session(&server).await;
    let started = std::time::Instant::now();
    s.write_all(b"c FETCH 1 BODY.PEEK[]\r\n").await.expect("send");
    let got = read_until(&mut s, b"\r\nc OK", Duration::from_millis(50)).await;
    assert!(started.elapsed() > Duration::from_secs(1), "read too fast to test: {:?}", started.elapsed());
    let head = format!("* 1 FETCH (BODY[] {{{}}}\r\n", msg.len());
    let at = memchr::memmem::find(&got, head.as_bytes()).expect("FETCH response");
    let body = &got[at + head.len()..];
    assert!(body.starts_with(&msg) && body[msg.len()..].starts_with(b")\r\n"), "literal not byte-exact");
}

/// FETCH 1:* BODY[] of 40 MiB to a client that never reads: the connection is closed
/// once a write waited the write timeout, long before the mailbox was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_fetch_is_disconnected() {
    let server = start_with(|ctx| ctx.limits.write_timeout = Duration::from_millis(500)).await;
    for n in 0..20 {
        deliver_to_bob(&server, 2 << 20, n).await;
    }
    let mut s = tiny_window_session(&server).await;
    s.write_all(b"c FETCH 1:* BODY[]\r\n").await.expect("send");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut drained = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the connection is still open: no write timeout");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    assert!(drained < 4 << 20, "{drained} octets arrived after the client stopped reading");
}
