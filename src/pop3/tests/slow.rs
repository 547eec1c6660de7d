//! Slow, stalled and hostile clients against the real server over loopback: several
//! 20 MiB RETRs over TLS at once to clients that read slowly through a tiny receive
//! window, a pipelined command cut in two by the network, a client trickling bytes to
//! stay unauthenticated, and one that stops reading in the middle of a RETR.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::harness::{MemoryBackend, RawClient, start, test_limits, tls_client_stream};
use crate::pop3::dotstuff::DotStuffer;
use crate::pop3::server::Pop3Limits;

/// Sessions reading at once, and RETRs of the big message each: 10 × 20 MiB in all.
const SESSIONS: usize = 2;
const RETRS_PER_SESSION: usize = 5;
const BIG: usize = 20 * 1024 * 1024;

fn account(i: usize) -> String {
    format!("reader{i}@example.com")
}

/// A message of `size` octets whose every seventh line starts with dots (stuffing).
fn big_message(size: usize) -> Vec<u8> {
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while big.len() < size {
        if i.is_multiple_of(7) {
            big.extend_from_slice(b"..");
        }
        big.extend_from_slice(format!("line {i:08} of a large message, padding padding padding\r\n").as_bytes());
        i += 1;
    }
    big.extend_from_slice(b".\r\n");
    big
}

/// What RETR puts on the wire after its `+OK` line: the stuffed message and `.` CRLF.
fn wire_form(message: &[u8]) -> Vec<u8> {
    let mut stuffer = DotStuffer::new(None);
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    stuffer.feed(message, &mut out);
    stuffer.finish(&mut out);
    out
}

/// A TCP connection whose receive buffer is as small as the kernel allows, so the
/// server's socket is full for most of a large response (the condition under which a
/// TLS record left unflushed stays in the server).
async fn tiny_window(addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect")
}

/// Read exactly `want.len()` octets in small reads, pausing every MiB and once more
/// just before the last 64 KiB (when the terminator is the server's last write), and
/// compare them with `want`.
async fn read_slowly<R: tokio::io::AsyncRead + Unpin>(r: &mut R, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    let mut at = 0;
    let mut paused_at_end = false;
    while at < got.len() {
        let end = (at + 16 * 1024).min(got.len());
        let n = r.read(&mut got[at..end]).await.expect("read");
        assert!(n > 0, "EOF after {at} of {} octets", want.len());
        if (at + n) / (1 << 20) != at / (1 << 20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        at += n;
        if !paused_at_end && got.len() - at < 64 * 1024 {
            paused_at_end = true;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(got == want, "the RETR response differs from the stuffed message");
}

/// The loop that once stalled about one CI run in four: 20 MiB RETRs over TLS, several
/// sessions at once, each client reading slowly through a 4 KiB window. Every response
/// must arrive whole, terminator included, without another command from the client;
/// the short write timeout turns a stall into a failure within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_slow_readers_get_every_20_mib_retr_whole() {
    let users: Vec<(String, String)> = (0..SESSIONS).map(|i| (account(i), "pw".to_string())).collect();
    let user_refs: Vec<(&str, &str)> = users.iter().map(|(u, p)| (u.as_str(), p.as_str())).collect();
    let backend = MemoryBackend::new(&user_refs);
    let message = bytes::Bytes::from(big_message(BIG));
    for (user, _) in &users {
        backend.deliver(user, message.clone());
    }
    let limits = Pop3Limits { write_timeout: Duration::from_secs(10), ..test_limits() };
    let server = start(Arc::new(backend), limits).await;
    let wire = Arc::new(wire_form(&message));
    let started = Instant::now();
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let (addr, ca, wire) = (server.tls, server.ca_file.clone(), wire.clone());
        let size = message.len();
        sessions.push(tokio::spawn(async move {
            let tls = tls_client_stream(tiny_window(addr).await, &ca).await;
            let mut c = BufReader::new(tls);
            let mut line = String::new();
            c.read_line(&mut line).await.expect("greeting");
            for command in [format!("USER {}\r\n", account(i)), "PASS pw\r\n".to_string()] {
                c.get_mut().write_all(command.as_bytes()).await.expect("send");
                line.clear();
                c.read_line(&mut line).await.expect("reply");
                assert!(line.starts_with("+OK"), "{command}: {line}");
            }
            for round in 0..RETRS_PER_SESSION {
                c.get_mut().write_all(b"RETR 1\r\n").await.expect("send");
                line.clear();
                c.read_line(&mut line).await.expect("+OK line");
                assert_eq!(line, format!("+OK {size} octets\r\n"), "session {i} round {round}");
                read_slowly(&mut c, &wire).await;
            }
            c.get_mut().write_all(b"QUIT\r\n").await.expect("send");
            line.clear();
            c.read_line(&mut line).await.expect("QUIT reply");
            assert_eq!(line, "+OK Bye\r\n");
        }));
    }
    for s in sessions {
        tokio::time::timeout(Duration::from_secs(120), s).await.expect("a session stalled").expect("session");
    }
    eprintln!("{} × {} MiB RETR in {:?}", SESSIONS * RETRS_PER_SESSION, BIG >> 20, started.elapsed());
}

/// A pipelining client's next command may arrive in two pieces. The replies to what is
/// complete must go out without waiting for the rest: the client may send the rest only
/// once it has read them.
#[tokio::test]
async fn half_a_pipelined_command_does_not_hold_back_the_replies() {
    let backend = Arc::new(MemoryBackend::new(&[("alice@example.com", "pw")]));
    let server = start(backend, test_limits()).await;
    let mut c = RawClient::plain(server.plain).await;
    c.send_raw(b"CAPA\r\nCA").await;
    let first = tokio::time::timeout(Duration::from_secs(10), c.line()).await;
    assert_eq!(first.as_deref().ok(), Some("+OK Capability list follows"), "the CAPA reply was held back");
    assert!(c.body().await.contains(&"PIPELINING".to_string()));
    c.send_raw(b"PA\r\n").await;
    assert_eq!(c.line().await, "+OK Capability list follows");
}

/// One byte every 100 ms resets every per-read timeout, but not the time to log in: the
/// trickler is closed when it is up, while a session that logged in goes on.
#[tokio::test]
async fn a_trickling_client_is_closed_when_the_time_to_log_in_is_up() {
    let b = MemoryBackend::new(&[("alice@example.com", "pw")]);
    b.deliver("alice@example.com", &b"Subject: one\r\n\r\nfirst\r\n"[..]);
    let limits = Pop3Limits { login_timeout: Duration::from_millis(800), ..test_limits() };
    let server = start(Arc::new(b), limits).await;
    let mut logged_in = RawClient::login(server.tls, &server.ca_file, "alice@example.com", "pw").await;

    let started = Instant::now();
    let (r, mut w) = TcpStream::connect(server.plain).await.expect("connect").into_split();
    let trickle = tokio::spawn(async move {
        for b in b"CAPA\r\n".iter().cycle() {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut r = BufReader::new(r);
    let mut last = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .expect("the trickler was not closed")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        last = line;
    }
    let elapsed = started.elapsed();
    trickle.abort();
    assert_eq!(last, "-ERR Login took too long\r\n");
    assert!(elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    logged_in.expect("NOOP", "+OK").await;
}

/// A client that stops reading in the middle of a RETR is disconnected once a write has
/// waited the write timeout; the server holds no more than a chunk for it meanwhile and
/// deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_by_the_write_timeout() {
    let b = MemoryBackend::new(&[("alice@example.com", "pw")]);
    let message = big_message(BIG);
    b.deliver("alice@example.com", message.clone());
    let limits = Pop3Limits { write_timeout: Duration::from_millis(500), ..test_limits() };
    let server = start(Arc::new(b), limits).await;
    let tls = tls_client_stream(tiny_window(server.tls).await, &server.ca_file).await;
    let mut c = RawClient::new(tls);
    assert_eq!(c.line().await, "+OK pop.test.example POP3 ready");
    c.expect("USER alice@example.com", "+OK Send PASS").await;
    let size = message.len();
    c.expect("PASS pw", &format!("+OK Logged in, 1 messages ({size} octets)")).await;
    c.send("RETR 1").await;
    // Not reading: the server's writes wait on a full socket until the timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut stream = c.into_inner();
    let mut drained = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the connection is still open: no write timeout");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    assert!(drained < message.len(), "the whole message arrived: {drained} octets");
    assert_eq!(server.backend.uids("alice@example.com"), vec![1]);
}
