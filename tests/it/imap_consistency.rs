//! Many IMAP sessions on one shared INBOX at once (tests/clients/imap_consistency.py):
//! appends, flag and keyword changes, expunges, copies and moves from every session
//! while each checks that what the server tells it never contradicts what it told it
//! before, and that every view ends equal to a new session's. The same script runs with
//! 200 sessions against a release build as a benchmark (bench/README.md).

use crate::common;

use std::time::Duration;

use common::*;

#[test]
fn concurrent_sessions_on_one_mailbox_stay_consistent() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = env_listening(&data, &["IMAPS"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    let mut server = Server::start_ready(&env, &data, Duration::from_secs(30));
    let imaps = server.port("imaps");
    let args = [imaps.to_string(), "alice@example.com".into(), "wonderland".into(), "30".into(), "80".into()];
    let out = run_client("imap_consistency.py", &args, &server);
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("the script's JSON");
    assert_eq!(report["sessions"], 30, "{out}");
    assert!(report["commands"].as_u64().unwrap() >= 30 * 80, "{out}");
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
}
