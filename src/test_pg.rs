//! Throwaway PostgreSQL servers for tests, driven with the stock tools (`initdb`, `pg_ctl`,
//! `psql`): the unit tests use it as `crate::test_pg`, the integration tests by `#[path]`
//! next to `test_ports` and `test_tools` (it reaches them as `super::…`).
//!
//! One cluster per test process: `initdb` plus a server start takes seconds, far too
//! slow for every test, so [`database`] starts one cluster lazily, with durability
//! off (`fsync`, `full_page_writes`, `synchronous_commit`) and room for many parallel
//! connections, and gives each test a fresh database of its own (`t_<n>`), so tests never
//! see each other's rows. It is stopped (`-m immediate`) and its directory removed when
//! the process exits (not if it is killed). A test that restarts or stops the server, or
//! needs durable commits, starts its own [`PgCluster`] instead; dropping it stops it.
//!
//! Root: `initdb` and `postgres` refuse to run as root, and CI runs the tests as root. Then
//! the server side runs as the `postgres` user (created by Debian's `postgresql-15`), in a
//! temp directory owned by it with mode 0700; otherwise as the current user. Clients
//! connect over TCP on a loopback port from `test_ports::free_port`, as the `mailroom`
//! superuser, with `trust` authentication.
//!
//! Not installed: the tests skip on a developer's machine and fail under `CI=true`, as
//! with every other tool (`test_tools`). The Debian binaries are not on PATH, so besides
//! PATH this looks in `/usr/lib/postgresql/<version>/bin`, newest version first.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use super::test_ports::free_port;
use super::test_tools::tool_available;

/// The superuser `initdb` creates; every URL connects as it.
const USER: &str = "mailroom";

static SHARED: OnceLock<Option<PgCluster>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

/// A fresh, empty database on this process's shared cluster (started on first use), as a
/// URL: `postgres://mailroom@127.0.0.1:PORT/t_<n>`. `None`: PostgreSQL is not installed
/// (the test returns early and is listed as skipped); under CI that is a panic instead.
pub fn database() -> Option<String> {
    bin_dir_or_skip()?;
    let cluster = SHARED
        .get_or_init(|| {
            let cluster = PgCluster::start(false)?;
            // SAFETY: registering a plain `extern "C" fn` with no captured state.
            unsafe {
                libc::atexit(stop_shared);
            }
            Some(cluster)
        })
        .as_ref()?;
    let name = format!("t_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
    cluster.create_database(&name);
    Some(cluster.url(&name))
}

/// Runs `sql` with `psql` against `url` and returns what it printed (unaligned, tuples
/// only, so `SELECT 1` gives `1`), trimmed. Panics if `psql` fails.
pub fn psql(url: &str, sql: &str) -> String {
    let bin = bin_dir().expect("psql needs PostgreSQL installed; call database() or PgCluster::start first");
    let out = Command::new(bin.join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql {url} -c {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `psql` on `url` that runs what is written to its stdin (piped) and prints as [`psql`]
/// does to its stdout (piped): for a test that holds a transaction open — a row lock —
/// while something else happens. It exits when its stdin is closed.
pub fn psql_session(url: &str) -> std::process::Child {
    let bin = bin_dir().expect("psql needs PostgreSQL installed; call database() or PgCluster::start first");
    Command::new(bin.join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run psql")
}

/// A PostgreSQL server of its own, in its own temp directory, on a fixed loopback port.
/// Dropping it stops the server (`-m immediate`) and removes the directory.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// uid/gid the server-side tools run as (the `postgres` user when we are root).
    owner: Option<(u32, u32)>,
    port: u16,
    durable: bool,
}

impl PgCluster {
    /// `initdb` and start a server. `durable`: `fsync` and `synchronous_commit` stay on (for
    /// tests that kill the server and check what survived); otherwise both are off, with
    /// `full_page_writes`. `initdb` skips its final sync either way: a server crash, not a
    /// machine crash, is what tests simulate. `None`: not installed (outside CI).
    pub fn start(durable: bool) -> Option<PgCluster> {
        let bin = bin_dir_or_skip()?;
        let dir = tempfile::Builder::new().prefix("mailroom-pg-").tempdir().expect("create temp dir");
        let owner = server_owner();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the temp dir to postgres");
        }
        let mut cluster = PgCluster { dir, bin, owner, port: 0, durable };
        let data = cluster.data();
        let mut initdb = cluster.server_tool("initdb");
        initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", USER, "-E", "UTF8", "--no-locale", "--no-sync"]);
        cluster.try_run(initdb, "initdb").unwrap_or_else(|e| panic!("{e}"));
        // The port was free when chosen; if something took it since, pick another.
        for attempt in 1.. {
            cluster.port = free_port();
            match cluster.try_pg_ctl(&["start"], true) {
                Ok(()) => break,
                Err(e) if attempt < 3 && e.contains("already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        Some(cluster)
    }

    /// The loopback TCP port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://mailroom@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// `CREATE DATABASE <name>` (an unquoted identifier: lower-case letters, digits, `_`).
    pub fn create_database(&self, name: &str) {
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name:?}");
        psql(&self.url("postgres"), &format!("CREATE DATABASE {name}"));
    }

    /// Stop cleanly (`-m fast`: open connections are dropped) and start again on the
    /// same port; returns once the server accepts connections.
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"], true);
    }

    /// Stop cleanly (`-m fast`). Connections fail until [`PgCluster::start_again`].
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"], false);
    }

    /// Stop as a crash would (`-m immediate`: no shutdown checkpoint; the next start runs
    /// crash recovery). With `durable`, every committed transaction must survive it.
    pub fn crash(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"], false);
    }

    /// Start again after [`PgCluster::stop`] or [`PgCluster::crash`], on the same port.
    pub fn start_again(&self) {
        self.pg_ctl(&["start"], true);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `initdb`/`pg_ctl`, as the user that owns the cluster, in its directory (the
    /// `postgres` user may not be able to enter the test's working directory).
    fn server_tool(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn pg_ctl(&self, args: &[&str], starts: bool) {
        self.try_pg_ctl(args, starts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `pg_ctl -D data -w <args>`; when it starts a server, with the log file and the
    /// server options (the same on every start, so restarts keep the port).
    fn try_pg_ctl(&self, args: &[&str], starts: bool) -> Result<(), String> {
        let mut cmd = self.server_tool("pg_ctl");
        cmd.arg("-D").arg(self.data()).arg("-w");
        if starts {
            let dir = self.dir.path().display();
            let mut opts = format!("-c listen_addresses=127.0.0.1 -p {} -k '{dir}' -c max_connections=300", self.port);
            if !self.durable {
                opts.push_str(" -c fsync=off -c full_page_writes=off -c synchronous_commit=off");
            }
            cmd.arg("-l").arg(self.dir.path().join("log")).arg("-o").arg(opts);
        }
        cmd.args(args);
        self.try_run(cmd, &format!("pg_ctl {}", args.join(" ")))
    }

    fn try_run(&self, mut cmd: Command, what: &str) -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
        if out.status.success() {
            return Ok(());
        }
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let dir = self.dir.path().display();
        Err(format!("{what} failed ({}) in {dir}:\n{stdout}{stderr}\nserver log:\n{log}", out.status))
    }

    /// Stop at once and remove the directory; errors ignored (already stopped, or exiting).
    fn shut_down(&self) {
        let _ = self.try_pg_ctl(&["-m", "immediate", "stop"], false);
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Runs at process exit: statics are never dropped, so the shared cluster is stopped here.
extern "C" fn stop_shared() {
    if let Some(Some(cluster)) = SHARED.get() {
        cluster.shut_down();
    }
}

/// The directory holding `initdb`, `pg_ctl` and `psql` together: on PATH, else Debian's
/// `/usr/lib/postgresql/<version>/bin`, newest first.
fn bin_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        std::env::split_paths(&path)
            .chain(versions.into_iter().map(|(_, dir)| dir))
            .find(|dir| ["initdb", "pg_ctl", "psql"].iter().all(|tool| dir.join(tool).is_file()))
    })
    .as_deref()
}

/// [`bin_dir`], or `None` with the test recorded as skipped (a panic under CI).
fn bin_dir_or_skip() -> Option<PathBuf> {
    let dir = bin_dir().map(Path::to_path_buf);
    // Not found: `tool_available` lists the test as skipped (or panics under CI).
    assert!(dir.is_some() || !tool_available("initdb"), "initdb is on PATH, but not next to pg_ctl and psql");
    dir
}

/// Root: the `postgres` user's uid/gid, since initdb and postgres refuse to run as root.
/// Anyone else runs the server as themselves.
fn server_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail; getpwnam_r writes only into the buffers passed to it.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        libc::getpwnam_r(c"postgres".as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found);
        assert!(!found.is_null(), "running as root: PostgreSQL must run as user `postgres`, which does not exist");
        Some((pw.pw_uid, pw.pw_gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These check the fixture itself: only in the library's tests, not again in every
    /// integration test binary that includes this file by `#[path]`.
    fn in_lib() -> bool {
        module_path!().starts_with("mailroom::")
    }

    #[test]
    fn shared_cluster_gives_distinct_databases() {
        let Some(a) = in_lib().then(database).flatten() else { return };
        let b = database().unwrap();
        assert_ne!(a, b);
        for url in [&a, &b] {
            let name = url.rsplit('/').next().unwrap();
            assert_eq!(psql(url, "SELECT current_database()"), name);
        }
        psql(&a, "CREATE TABLE only_in_a (x int)");
        assert_eq!(psql(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"), "0");
        assert_eq!(psql(&a, "SHOW fsync"), "off");
        assert_eq!(psql(&a, "SHOW max_connections"), "300");
    }

    #[test]
    fn own_cluster_restarts_on_the_same_port() {
        let Some(cluster) = in_lib().then(|| PgCluster::start(true)).flatten() else { return };
        let (port, dir) = (cluster.port(), cluster.dir.path().to_path_buf());
        cluster.create_database("kept");
        let url = cluster.url("kept");
        assert_eq!(url, format!("postgres://mailroom@127.0.0.1:{port}/kept"));
        assert_eq!(psql(&url, "SHOW fsync"), "on");
        psql(&url, "CREATE TABLE t (x int); INSERT INTO t VALUES (7)");

        cluster.restart();
        assert_eq!(cluster.port(), port);
        assert_eq!(psql(&url, "SELECT x FROM t"), "7");

        psql(&url, "INSERT INTO t VALUES (8)");
        cluster.crash();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "still listening after a crash");
        cluster.start_again();
        assert_eq!(psql(&url, "SELECT sum(x) FROM t"), "15");

        cluster.stop();
        cluster.start_again();
        drop(cluster);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "still listening after drop");
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
