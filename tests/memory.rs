//! Peak memory while many sessions move large messages at once: `bench/memory` (smtplib
//! and imaplib against the real binary on loopback) with 20 sessions of 20 MiB each, on
//! port 25 and for FETCH of a 20 MiB attachment. Without the server-wide budget for
//! messages held whole, the peak grows with every session (a release build measured 497
//! MiB on port 25 and 842 MiB fetching, with these 20 sessions); with it, it stays under
//! the 200 MiB a small VPS can spare (95–100 MiB measured with 50 sessions on port 25; FETCH
//! streams body parts from the file and peaked at 27–28 MiB, bench/README.md).

mod common;

use std::process::Command;

const BOUND_MIB: f64 = 200.0;

#[test]
fn twenty_sessions_with_20_mib_messages_stay_under_200_mib() {
    if !common::have_tool("python3") {
        return;
    }
    let script = format!("{}/bench/memory", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([&script, "--binary", env!("CARGO_BIN_EXE_mailroom"), "--sessions", "20", "--mib", "20"])
        .args(["--phases", "smtp,fetch"])
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench/memory failed:\n{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for phase in ["smtp", "fetch"] {
        let peak = result[format!("{phase}_peak_rss_mib")].as_f64().expect("peak RSS");
        assert!(peak < BOUND_MIB, "{phase}: peak RSS {peak} MiB with 20 sessions of 20 MiB: {result}");
    }
}
