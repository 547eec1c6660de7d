//! A throwaway S3 API server for tests: moto's (`python3 -m moto.server`, PyPI
//! `moto[server]`), on a loopback port, used as `crate::test_s3`.
//!
//! One server per test process: Python with moto and boto3 takes a second or two to start,
//! so [`bucket`] starts it lazily, creates one bucket, and gives each test a key prefix
//! of its own (`t<n>`), so tests never see each other's objects. The server is killed
//! when the process exits (not if it is killed).
//!
//! The bucket is created with boto3 (moto depends on it): moto does not create buckets
//! for unsigned requests, and the store never creates its bucket (an operator's bucket
//! comes with its own policy). The key pair is moto's placeholder `test`/`test`.
//!
//! The file is also built into the integration tests (`tests/common`), so it names
//! nothing of the crate; the store's client configuration for a location is made in
//! `store::pg::objects`.
//!
//! Not installed: the tests skip on a developer's machine and fail under `CI=true`, as
//! with every other tool (`test_tools`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::test_ports::free_port;
use super::test_tools::{missing, tool_available};

/// The bucket every test of the process shares (each under its own prefix).
pub const BUCKET: &str = "mailroom-test";
/// moto accepts any key pair; these are its documented placeholders.
pub const ACCESS_KEY_ID: &str = "test";
pub const SECRET_ACCESS_KEY: &str = "test";
pub const REGION: &str = "us-east-1";

static SHARED: OnceLock<Option<MotoServer>> = OnceLock::new();
static NEXT_PREFIX: AtomicU32 = AtomicU32::new(1);

/// Where a test keeps its objects.
#[derive(Clone, Debug)]
pub struct S3Location {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub bucket: &'static str,
    /// `t<n>`: this test's own.
    pub prefix: String,
}

impl S3Location {
    /// As `MAILROOM_BLOB_STORE` takes it.
    pub fn url(&self) -> String {
        format!("s3://{}/{}?endpoint={}&region={REGION}", self.bucket, self.prefix, self.endpoint)
    }
}

/// A fresh prefix in the shared bucket of this process's moto server (started on first
/// use). `None`: moto is not installed (the test returns early and is listed as skipped);
/// under CI that is a panic instead.
pub fn bucket() -> Option<S3Location> {
    let server = SHARED
        .get_or_init(|| {
            let server = MotoServer::start()?;
            // SAFETY: registering a plain `extern "C" fn` with no captured state.
            unsafe {
                libc::atexit(stop_shared);
            }
            Some(server)
        })
        .as_ref()?;
    Some(S3Location {
        endpoint: server.endpoint(),
        bucket: BUCKET,
        prefix: format!("t{}", NEXT_PREFIX.fetch_add(1, Ordering::Relaxed)),
    })
}

/// moto's server process.
struct MotoServer {
    child: Mutex<Child>,
    port: u16,
}

impl MotoServer {
    fn start() -> Option<MotoServer> {
        if !tool_available("python3") {
            return None;
        }
        let importable = Command::new("python3")
            .args(["-c", "import moto.server, flask_cors, boto3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !importable {
            missing("python3 -m moto.server (pip install 'moto[server]')");
            return None;
        }
        let port = free_port();
        // `python3 -m`, not the `moto_server` shim: killing a pyenv shim's pid leaves
        // the real server behind.
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m moto.server");
        let server = MotoServer { child: Mutex::new(child), port };
        server.wait_ready();
        server.create_bucket();
        Some(server)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Ready when `GET /moto-api/` answers 200.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.status_of("/moto-api/") == Some(200) {
                return;
            }
            if let Ok(Some(status)) = self.child.lock().unwrap_or_else(|p| p.into_inner()).try_wait() {
                panic!("moto server exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "moto server on port {} not ready after 60 s", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The status code of a plain `GET path`, `None` while nothing answers.
    fn status_of(&self, path: &str) -> Option<u16> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(conn, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    fn create_bucket(&self) {
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='{ACCESS_KEY_ID}', \
             aws_secret_access_key='{SECRET_ACCESS_KEY}', region_name='{REGION}').create_bucket(Bucket='{BUCKET}')",
            self.endpoint()
        );
        let out = Command::new("python3").args(["-c", &script]).output().expect("run python3 boto3");
        assert!(out.status.success(), "create bucket {BUCKET}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs at process exit: statics are never dropped, so the shared server is killed here.
extern "C" fn stop_shared() {
    if let Some(Some(server)) = SHARED.get() {
        server.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_distinct_on_one_server() {
        let Some(a) = bucket() else { return };
        let b = bucket().unwrap();
        assert_eq!(a.endpoint, b.endpoint);
        assert_ne!(a.prefix, b.prefix);
        assert!(a.url().starts_with("s3://mailroom-test/t"));
    }
}
