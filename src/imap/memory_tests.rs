//! Idle-connection cost (an idle authenticated connection should cost a few KiB):
//! open N logged-in connections sitting in a selected INBOX and report the resident memory
//! growth per connection. Ignored by default (it opens thousands of sockets); run with
//! `cargo test --lib imap::memory_tests -- --ignored --nocapture`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::test_support::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Log in and SELECT with a bare socket (no client-side buffers to speak of).
async fn idle_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf).await;
    s.write_all(format!("a LOGIN {USER} {PASS}\r\nb SELECT INBOX\r\n").as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    while !seen.windows(5).any(|w| w == b"b OK ") {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "server closed");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn idle_authenticated_connection_cost() {
    const N: usize = 2000;
    let srv = start_with(|ctx| ctx.limits.max_connections_per_user_ip = u32::MAX).await;
    srv.deliver_copies("INBOX", SIMPLE, 20).await;
    // warm up allocator and store caches
    let warm = idle_client(srv.addr).await;
    drop(warm);
    let before = rss_kib();
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(idle_client(srv.addr).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after = rss_kib();
    let per = (after.saturating_sub(before)) as f64 / N as f64;
    println!(
        "{N} idle selected connections: RSS {before} KiB -> {after} KiB, {per:.1} KiB per connection (server and client side together)"
    );
    assert!(per < 64.0, "{per} KiB per idle connection");
}

/// The future of one connection, in bytes (a debug build, where futures are larger than
/// in release). Everything but the read wait is boxed while it runs (the command, the
/// effects it asks for, the TLS handshake, a streamed literal), because a future is as
/// large as its largest inline await and keeps that size while the connection idles.
const IDLE_FUTURE_MAX: usize = 2048;

#[tokio::test]
async fn an_idle_connection_future_stays_small() {
    let srv = start().await;
    let (stream, _client) = tokio::io::duplex(64);
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let future = super::driver::serve_connection(srv.ctx.clone(), stream, "127.0.0.1:1".parse().unwrap(), true, rx);
    let size = std::mem::size_of_val(&future);
    assert!(size <= IDLE_FUTURE_MAX, "serve_connection future is {size} bytes");
}
