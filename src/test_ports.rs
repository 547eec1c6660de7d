//! Loopback ports for tests that must name a port before a server binds it (dnsmasq's
//! `--port`, an MX sink the server under test is pointed at, a server restarted on the
//! same ports). Shared by the unit tests and, by `#[path]`, by the integration tests.
//! Where the test only needs to reach mailroom, it listens on `127.0.0.1:0` and the test
//! reads the bound ports from its start line (`tests/common`: `Server::start_ready`):
//! nothing to race for at all.
//!
//! Why not "bind port 0, read the port, release it": that port comes from the kernel's
//! ephemeral range (`net.ipv4.ip_local_port_range`, 32768–60999 by default), the same
//! range every outgoing connection draws its source port from. Under the parallel load of
//! `cargo test`, a client connection elsewhere took the released port before the server
//! bound it (`cannot listen on 127.0.0.1:46285 … already in use`). Ports below that range
//! are never handed out to `connect()`, so only explicit binds can collide: each test
//! process walks its own slice of 20000–32767 (chosen by its pid), never hands a port out
//! twice, and skips any port that is taken for TCP or UDP right now.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const LAST: u32 = 32_767;
/// Ports per process slice: 16 slices, enough for every port a test binary asks for.
const SLICE: u32 = (LAST - FIRST + 1) / 16;

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A loopback port that is free for TCP and UDP now, below the ephemeral range, and not
/// returned before by this process.
pub fn free_port() -> u16 {
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let start = FIRST + (std::process::id() % 16) * SLICE;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..=(LAST - FIRST) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (n - FIRST) % (LAST - FIRST + 1)) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..={LAST}");
}
