//! clamd replies as transcripts, then the real clamd (Debian's) loaded with a
//! signature written here: no signature download is possible offline.

use super::*;
use crate::dns::testdns::{free_port, tool_available};

#[test]
fn replies() {
    assert_eq!(parse_reply(b"stream: OK\0").unwrap(), ClamdVerdict::Clean);
    assert_eq!(
        parse_reply(b"stream: Eicar-Signature FOUND\0").unwrap(),
        ClamdVerdict::Infected("Eicar-Signature".into())
    );
    assert!(matches!(parse_reply(b"INSTREAM size limit exceeded. ERROR\0"), Err(ClamdError::Clamd(_))));
    assert!(matches!(parse_reply(b"stream: Can't allocate memory ERROR\0"), Err(ClamdError::Clamd(_))));
    assert!(matches!(parse_reply(b"HTTP/1.1 400 Bad Request\r\n"), Err(ClamdError::Protocol(_))));
    assert!(matches!(parse_reply(b""), Err(ClamdError::Protocol(_))));
}

#[test]
fn targets() {
    assert_eq!(ClamdTarget::parse("/run/clamav/clamd.ctl"), Some(ClamdTarget::Unix("/run/clamav/clamd.ctl".into())));
    assert_eq!(ClamdTarget::parse("clamav:3310"), Some(ClamdTarget::Tcp { host: "clamav".into(), port: 3310 }));
    assert_eq!(ClamdTarget::parse("[::1]:3310"), Some(ClamdTarget::Tcp { host: "::1".into(), port: 3310 }));
    assert_eq!(ClamdTarget::parse("clamav"), None);
    assert_eq!(ClamdTarget::parse(":3310"), None);
}

#[test]
fn garbage_replies_never_panic() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    let alphabet = b"stream: OK FOUND ERROR\0\xff\r\n";
    for len in 0..300 {
        let bytes: Vec<u8> = crate::testing::garbage(&mut seed, alphabet, len);
        let _ = parse_reply(&bytes);
        let _ = ClamdTarget::parse(&String::from_utf8_lossy(&bytes));
    }
}

pub(crate) const MARKER: &str = "MAILROOM-TEST-VIRUS-MARKER-7f3a";

/// A clamd on a loopback port and a socket in a temp dir, with one signature
/// matching [`MARKER`]. Killed on drop.
pub(crate) struct TestClamd {
    child: std::process::Child,
    pub port: u16,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TestClamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestClamd {
    pub(crate) fn start() -> Option<TestClamd> {
        if !tool_available("clamd") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let hex: String = MARKER.bytes().map(|b| format!("{b:02x}")).collect();
        std::fs::write(db.join("mailroom.ndb"), format!("MailroomTest:0:*:{hex}\n")).unwrap();
        let port = free_port();
        let socket = dir.path().join("clamd.sock");
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nLocalSocket {}\n\
                 LogFile {}\nUser root\nStreamMaxLength 1M\n",
                db.display(),
                socket.display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("clamd")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn clamd");
        let clamd = TestClamd { child, port, socket, _dir: dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !(clamd.socket.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) {
            assert!(std::time::Instant::now() < deadline, "clamd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(clamd)
    }
}

fn loopback_resolver() -> TokioResolver {
    crate::dns::resolver::build(&["127.0.0.1:9".parse().unwrap()]).unwrap()
}

#[tokio::test]
async fn real_clamd_finds_the_test_signature_over_tcp_and_unix_socket() {
    let Some(clamd) = TestClamd::start() else { return };
    let r = loopback_resolver();
    let t = Duration::from_secs(30);
    let tcp = ClamdTarget::Tcp { host: "127.0.0.1".into(), port: clamd.port };
    let unix = ClamdTarget::Unix(clamd.socket.clone());
    let infected = format!("Subject: invoice\r\n\r\nplease open {MARKER} now\r\n");
    let clean = "Subject: lunch\r\n\r\nnoon?\r\n";
    for target in [&tcp, &unix] {
        assert_eq!(
            scan(target, &r, infected.as_bytes(), t).await.unwrap(),
            ClamdVerdict::Infected("MailroomTest.UNOFFICIAL".into())
        );
        assert_eq!(scan(target, &r, clean.as_bytes(), t).await.unwrap(), ClamdVerdict::Clean);
    }
    // Bigger than one chunk, marker in the last one.
    let big = format!("Subject: big\r\n\r\n{}{MARKER}\r\n", "x".repeat(3 * CHUNK));
    assert!(matches!(scan(&tcp, &r, big.as_bytes(), t).await.unwrap(), ClamdVerdict::Infected(_)));
    // Over StreamMaxLength (1M here): clamd says ERROR (or drops us), never "clean".
    let huge = vec![b'a'; 2 * 1024 * 1024];
    assert!(scan(&tcp, &r, &huge, t).await.is_err());
}

#[tokio::test]
async fn unreachable_clamd_is_an_error() {
    let r = loopback_resolver();
    let target = ClamdTarget::Tcp { host: "127.0.0.1".into(), port: free_port() };
    assert!(matches!(scan(&target, &r, b"x", Duration::from_secs(5)).await, Err(ClamdError::Connect(_))));
    let target = ClamdTarget::Unix("/nonexistent/clamd.sock".into());
    assert!(matches!(scan(&target, &r, b"x", Duration::from_secs(5)).await, Err(ClamdError::Connect(_))));
}
