//! rspamd replies as transcripts, then Debian's rspamd itself, started offline on a
//! loopback port with the GTUBE test patterns enabled (`enable_test_patterns`): the
//! X/Y/Z variants of the GTUBE line make it answer reject / add header / rewrite
//! subject deterministically, without any rules download or Redis.

use super::*;
use crate::dns::testdns::{free_port, tool_available};

#[test]
fn replies() {
    let r = parse_reply(br#"{"action":"add header","score":6.5,"required_score":15,"symbols":{"GTUBE":{},"A":{}}}"#)
        .unwrap();
    assert_eq!(r.action, RspamdAction::AddHeader);
    assert_eq!((r.score, r.required_score), (6.5, 15.0));
    assert_eq!(r.symbols, ["A", "GTUBE"]);
    for (text, action) in [
        ("reject", RspamdAction::Reject),
        ("soft reject", RspamdAction::SoftReject),
        ("rewrite subject", RspamdAction::RewriteSubject),
        ("greylist", RspamdAction::Greylist),
        ("no action", RspamdAction::NoAction),
    ] {
        let body = format!(r#"{{"action":"{text}"}}"#);
        assert_eq!(parse_reply(body.as_bytes()).unwrap().action, action);
    }
    assert!(parse_reply(br#"{"action":"explode"}"#).is_err());
    assert!(parse_reply(br#"{"score":1}"#).is_err());
    assert!(parse_reply(b"<html>").is_err());
}

#[test]
fn endpoints() {
    let e = RspamdEndpoint::parse("http://rspamd:11333").unwrap();
    assert_eq!((e.host.as_str(), e.port, e.base_path.as_str()), ("rspamd", 11333, ""));
    let e = RspamdEndpoint::parse("http://[::1]:11333/spam/").unwrap();
    assert_eq!((e.host.as_str(), e.port, e.base_path.as_str()), ("::1", 11333, "/spam"));
    assert_eq!(RspamdEndpoint::parse("http://rspamd").unwrap().port, 80);
    assert!(RspamdEndpoint::parse("https://rspamd:11333").is_err());
    assert!(RspamdEndpoint::parse("http://:11333").is_err());
    assert!(RspamdEndpoint::parse("http://rspamd:port").is_err());
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0xdead_beef_cafe_f00du64;
    let alphabet = br#"{"action":[]}, 0.5e9reject\/"#;
    for len in 0..300 {
        let bytes: Vec<u8> = crate::testing::garbage(&mut seed, alphabet, len);
        let _ = parse_reply(&bytes);
        let _ = RspamdEndpoint::parse(&format!("http://{}", String::from_utf8_lossy(&bytes)));
    }
}

/// The GTUBE line; its first letter picks rspamd's action (X reject, Y add header,
/// Z rewrite subject).
pub(crate) fn gtube(first: char) -> String {
    format!("{first}JS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")
}

/// An offline rspamd on a loopback port; killed on drop.
pub(crate) struct TestRspamd {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TestRspamd {
    fn drop(&mut self) {
        // rspamd forks workers; kill its whole process group, not just the main
        // process, or the workers outlive the test.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals the group we created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

impl TestRspamd {
    pub(crate) fn start() -> Option<TestRspamd> {
        if !tool_available("rspamd") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        for sub in ["run", "log", "db", "local.d", "override.d"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let port = free_port();
        // The packaged configuration (CONFDIR) with our own top file: one normal
        // worker on our port, test patterns on, DNS pointed at a dead port so
        // nothing leaves the machine and lookups fail fast.
        let conf = format!(
            r#".include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    enable_test_patterns = true;
    dns {{ nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "$LOGDIR/rspamd.log"; level = "warning"; }}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
"#
        );
        std::fs::write(dir.path().join("rspamd.conf"), conf).unwrap();
        let p = |s: &str| dir.path().join(s).display().to_string();
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("rspamd")
            .process_group(0)
            .args(["-f", "-u", "root", "-g", "root", "-i", "-c", &p("rspamd.conf")])
            .arg("--var=CONFDIR=/etc/rspamd")
            .arg(format!("--var=LOCAL_CONFDIR={}", dir.path().display()))
            .arg(format!("--var=RUNDIR={}", p("run")))
            .arg(format!("--var=DBDIR={}", p("db")))
            .arg(format!("--var=LOGDIR={}", p("log")))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn rspamd");
        let rspamd = TestRspamd { child, port, _dir: dir };
        // Loading the packaged rules takes ~25 s on a small machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.contains("pong") {
                    return Some(rspamd);
                }
            }
            assert!(std::time::Instant::now() < deadline, "rspamd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[tokio::test]
async fn real_rspamd_actions() {
    let Some(rspamd) = TestRspamd::start() else { return };
    let endpoint = RspamdEndpoint::parse(&format!("http://127.0.0.1:{}", rspamd.port)).unwrap();
    let resolver = crate::dns::resolver::build(&["127.0.0.1:9".parse().unwrap()]).unwrap();
    let rcpts = vec!["bob@ours.test".to_string(), "carol@ours.test".to_string()];
    let req = RspamdRequest {
        ip: Some("192.0.2.1".parse().unwrap()),
        helo: Some("mail.sender.test"),
        mail_from: Some("alice@sender.test"),
        recipients: &rcpts,
        client_hostname: None,
        queue_id: Some("Q123"),
        user: None,
    };
    let t = Duration::from_secs(60);
    let msg = |body: &str| format!("From: alice@sender.test\r\nTo: bob@ours.test\r\nSubject: t\r\n\r\n{body}\r\n");
    let r = check(&endpoint, &resolver, msg(&gtube('X')).as_bytes(), &req, t).await.unwrap();
    assert_eq!(r.action, RspamdAction::Reject, "{r:?}");
    assert!(r.symbols.contains(&"GTUBE".to_string()), "{r:?}");
    let r = check(&endpoint, &resolver, msg(&gtube('Y')).as_bytes(), &req, t).await.unwrap();
    assert_eq!(r.action, RspamdAction::AddHeader, "{r:?}");
    let r = check(&endpoint, &resolver, msg(&gtube('Z')).as_bytes(), &req, t).await.unwrap();
    assert_eq!(r.action, RspamdAction::RewriteSubject, "{r:?}");
    let r = check(&endpoint, &resolver, msg("Lunch at noon?").as_bytes(), &req, t).await.unwrap();
    assert_ne!(r.action, RspamdAction::Reject, "{r:?}");
}

#[tokio::test]
async fn unreachable_rspamd_is_an_error() {
    let endpoint = RspamdEndpoint::parse(&format!("http://127.0.0.1:{}", free_port())).unwrap();
    let resolver = crate::dns::resolver::build(&["127.0.0.1:9".parse().unwrap()]).unwrap();
    let r = check(&endpoint, &resolver, b"x", &RspamdRequest::default(), Duration::from_secs(5)).await;
    assert!(matches!(r, Err(RspamdError::Connect(_))), "{r:?}");
}
