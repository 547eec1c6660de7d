//! External tools the tests talk to (swaks, dnsmasq, python3, …): one check for the unit
//! tests and, by `#[path]`, the integration tests.
//!
//! A missing tool skips the test on a developer's machine and fails it under `CI=true`
//! (CI installs everything with `.ci/deps.sh`). A skipped test still prints `ok`, so each
//! test binary ends with one uncaptured summary line naming what was skipped and why.

use std::path::Path;
use std::sync::{Mutex, Once};

static SKIPPED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static SUMMARY_AT_EXIT: Once = Once::new();

/// True when running under CI, where a missing tool must fail instead of skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Is `tool` on PATH? Missing: `false` (the test returns early and is listed in the
/// summary), or a panic under CI.
pub fn tool_available(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(Into::into))
        .any(|dir| is_executable(&dir.join(tool)));
    if !found {
        missing(tool);
    }
    found
}

/// Record that `tool` is missing: the calling test returns early and is listed in the
/// summary, or, under CI, this panics. For tools `tool_available` cannot find on PATH
/// (a Python module, say).
pub fn missing(tool: &str) {
    assert!(!in_ci(), "{tool} is required under CI=true but is not installed (bash .ci/deps.sh)");
    let test = std::thread::current().name().unwrap_or("?").to_string();
    if let Ok(mut skipped) = SKIPPED.lock() {
        skipped.push((test, tool.to_string()));
    }
    SUMMARY_AT_EXIT.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe {
            libc::atexit(print_summary);
        }
    });
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs when the test binary exits, after libtest's own summary. Written straight to
/// stderr: libtest captures only the print macros.
extern "C" fn print_summary() {
    use std::io::Write;
    let Ok(skipped) = SKIPPED.lock() else {
        return;
    };
    let mut tools: Vec<&str> = skipped.iter().map(|(_, tool)| tool.as_str()).collect();
    tools.sort_unstable();
    tools.dedup();
    let tests: Vec<&str> = skipped.iter().map(|(test, _)| test.as_str()).collect();
    let line = format!(
        "SKIPPED {} test(s) whose tools are not installed ({}): {} — `bash .ci/deps.sh` installs them\n",
        tests.len(),
        tools.join(", "),
        tests.join(", ")
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}
