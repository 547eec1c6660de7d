//! Slow and hostile clients against the real binary: `bench/slow-clients` run small and
//! fast (the bench runs 2,000 tricklers at one byte per 10 s and the default timeouts;
//! numbers in bench/README.md).
//!
//! - 500 plaintext IMAP connections trickle a byte every 0.5 s and never log in: each is
//!   closed by `MAILROOM_LOGIN_TIMEOUT` (3 s here), however often it sends, while a normal
//!   client over TLS keeps logging in and getting answers fast;
//! - a client sends `FETCH 1:* BODY[]` for a 64 MiB mailbox through a 4 KiB receive
//!   window and never reads: the server's resident memory grows by far less than the
//!   mailbox, and `MAILROOM_WRITE_TIMEOUT` (2 s here) closes the connection.

use crate::common;

use std::process::Command;

const TRICKLERS: u64 = 500;
const LOGIN_TIMEOUT_S: f64 = 3.0;
/// What the server may add to its resident memory for one client that does not read:
/// a chunk of output, TLS buffers and allocator slack, never the 64 MiB it was asked for.
const FETCH_GROWTH_BOUND_MIB: f64 = 24.0;

#[test]
fn tricklers_are_closed_at_the_login_timeout_and_a_non_reader_by_the_write_timeout() {
    if !common::have_tool("python3") {
        return;
    }
    let script = format!("{}/bench/slow-clients", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([&script, "--binary", env!("CARGO_BIN_EXE_mailroom")])
        .args(["--tricklers", &TRICKLERS.to_string(), "--interval", "0.5"])
        .args(["--login-timeout", "3s", "--write-timeout", "2s"])
        .args(["--fetch-messages", "64", "--fetch-mib", "1"])
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench/slow-clients failed:\n{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");

    let trickle = &result["trickle"];
    assert_eq!(trickle["closed"].as_u64(), Some(TRICKLERS), "every trickler closed: {result}");
    let first = trickle["closed_after_s_min"].as_f64().unwrap_or(0.0);
    let last = trickle["closed_after_s_max"].as_f64().unwrap_or(f64::MAX);
    // Counted from the greeting, which follows the connect by a few milliseconds; the
    // last ones wait for a loaded machine to get round to them.
    assert!(first >= LOGIN_TIMEOUT_S - 0.1, "a trickler was closed too early: {result}");
    assert!(last < LOGIN_TIMEOUT_S + 10.0, "a trickler stayed too long: {result}");
    assert!(trickle["normal_rounds"].as_u64().unwrap_or(0) >= 2, "the normal client got no turn: {result}");
    assert_eq!(trickle["normal_errors"].as_array().map(Vec::len), Some(0), "{result}");
    let slowest = trickle["normal_round_s_max"].as_f64().unwrap_or(f64::MAX);
    assert!(slowest < 5.0, "a normal login round took {slowest} s among the tricklers: {result}");

    let fetch = &result["fetch"];
    assert_eq!(fetch["closed_by_server"].as_bool(), Some(true), "{result}");
    let growth = fetch["rss_growth_mib"].as_f64().unwrap_or(f64::MAX);
    assert!(growth < FETCH_GROWTH_BOUND_MIB, "RSS grew {growth} MiB for a client that does not read: {result}");
}
