//! Deployment artifacts: the Helm chart, compose.yaml, the Dockerfile and the
//! image they produce.
//!
//! The chart is linted, rendered with several value sets and schema-checked offline by
//! `tests/deploy/check_chart.py` (Helm's own library through PyPI `helm-python-sdk`, and
//! `kubernetes-validate`); YAML files go through `yamllint`; the image is built from a
//! static binary with buildah and run with podman. `.ci/deploy-deps.sh` installs all of
//! that.
//!
//! A test whose tool is missing prints why and passes, except under `CI=true`, where a
//! missing tool is a failure: CI must never go green by skipping. The image test is slow
//! (it builds a static release binary) and runs only with `MAILROOM_IMAGE_TEST=1`.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The uid:gid the image runs as (Dockerfile `USER`), owner of the data volume.
const IMAGE_UID: u32 = 10001;
/// The image stays under 24 MiB (a static binary and an empty /data). It was 12 MiB before
/// the PostgreSQL client (sqlx) and the S3 client (object_store) went in, 18.7 MB after,
/// 21.4 MB after the Sieve interpreter (sieve-rs) and ManageSieve (bench/README.md records
/// the binary's size with each measurement).
const IMAGE_MAX_BYTES: u64 = 24 * 1024 * 1024;
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skip with a printed reason, or fail under CI=true.
fn skip(reason: &str) {
    assert!(!in_ci(), "CI=true, so this may not be skipped: {reason}");
    println!("SKIPPED: {reason} (run .ci/deploy-deps.sh)");
    eprintln!("SKIPPED: {reason} (run .ci/deploy-deps.sh)");
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A finished command: status and both outputs.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn must_succeed(self, what: &str) -> Self {
        assert!(
            self.status.success(),
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Run a command with a deadline. Output goes through files, not pipes, so a chatty
/// tool (buildah prints every layer) cannot fill a pipe and stall.
fn run(cmd: &mut Command, timeout: Duration) -> Ran {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {timeout:?}; stderr so far:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ran {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

// ---- chart and YAML -------------------------------------------------------------------

#[test]
fn helm_chart_lints_renders_and_validates() {
    if !have("python3") {
        return skip("python3 is not installed");
    }
    let ran = run(
        Command::new("python3")
            .arg(repo().join("tests/deploy/check_chart.py"))
            .arg(repo().join("helm/mailroom"))
            .current_dir(repo()),
        Duration::from_secs(300),
    );
    println!("{}", ran.stdout);
    if ran.status.code() == Some(77) {
        return skip(ran.stdout.trim());
    }
    ran.must_succeed("tests/deploy/check_chart.py");
}

#[test]
fn compose_and_chart_yaml_pass_yamllint() {
    if !have("yamllint") {
        return skip("yamllint is not installed");
    }
    run(
        Command::new("yamllint")
            .args(["--strict", "-c", ".yamllint"])
            .args([".yamllint", "compose.yaml", "helm/mailroom/Chart.yaml", "helm/mailroom/values.yaml"])
            .args([
                "helm/mailroom/monitoring/alerts.yaml",
                "monitoring/prometheus.yml",
                "monitoring/compose.monitoring.yaml",
            ])
            .args(["monitoring/grafana/provisioning.yaml", "monitoring/grafana/dashboards.yaml"])
            .current_dir(repo()),
        Duration::from_secs(60),
    )
    .must_succeed("yamllint");
}

/// The chart's dashboard and schema are JSON that Grafana and Helm must be able to read.
#[test]
fn chart_json_files_parse() {
    for file in ["helm/mailroom/values.schema.json", "helm/mailroom/dashboards/mailroom.json"] {
        let text = read(&repo().join(file));
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
            panic!("{file}: {e}");
        }
    }
}

// ---- Dockerfile and compose: the contract of interface.md, without any tool -----------

#[test]
fn dockerfile_states_the_image_contract() {
    let dockerfile = read(&repo().join("Dockerfile"));
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    for expected in [
        "FROM scratch AS runtime",
        "FROM runtime AS local",
        "FROM runtime AS release",
        "COPY --chown=10001:10001 .docker/data/ /data/",
        "ENV MAILROOM_DATA_DIR=/data",
        "USER 10001:10001",
        "VOLUME /data",
        "EXPOSE 25 465 587 143 993 110 995 4190 80 443 9090",
        "CMD [\"/mailroom\", \"healthcheck\"]",
        "ENTRYPOINT [\"/mailroom\"]",
        "CMD [\"serve\"]",
    ] {
        assert!(lines.contains(&expected), "Dockerfile lacks `{expected}`");
    }
    assert!(
        dockerfile.contains("RUSTFLAGS='-C target-feature=+crt-static'")
            && dockerfile.contains("--target x86_64-unknown-linux-gnu"),
        "the build stage makes the static binary"
    );
    // The last stage is what a plain `docker build .` produces: the full build.
    let last_from = lines.iter().rev().find(|l| l.starts_with("FROM "));
    assert_eq!(last_from, Some(&"FROM runtime AS release"));

    let ignore = read(&repo().join(".dockerignore"));
    assert!(ignore.lines().any(|l| l == "*"), ".dockerignore starts from nothing");
    assert!(
        ignore.lines().any(|l| l == "!target/x86_64-unknown-linux-gnu/release/mailroom"),
        "the local target's binary is in the build context"
    );
}

#[test]
fn compose_runs_one_service_the_documented_way() {
    let compose = read(&repo().join("compose.yaml"));
    for expected in [
        "env_file: .env",
        "restart: unless-stopped",
        "stop_grace_period: 60s",
        "- data:/data",
        "test: [\"CMD\", \"/mailroom\", \"healthcheck\"]",
        "target: release",
    ] {
        assert!(compose.contains(expected), "compose.yaml lacks `{expected}`");
    }
    for port in [25, 465, 587, 143, 993, 110, 995, 4190, 80, 443] {
        assert!(compose.contains(&format!("- \"{port}:{port}\"")), "compose.yaml does not publish {port}");
    }
    assert!(compose.contains("- \"127.0.0.1:9090:9090\""), "metrics stay on this host");
}

/// What compose does with an argon2 hash in `.env`, rendered by Docker Compose v2 itself
/// (`config` needs no daemon): unquoted, `$argon2id` and friends are interpolated away and
/// the server refuses the mangled hash at start; in single quotes, as env.example says,
/// the hash arrives whole and is accepted. The accounts-file lines commented in
/// compose.yaml render to a read-only mount and the variable that names it.
#[test]
fn compose_keeps_hashes_the_documented_way() {
    if !common::have_tool("docker-compose") {
        return;
    }
    let out = common::run(&["hash-password"], &[], "correct horse\n");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let account = format!("alice@example.com:{hash}");
    let tmp = tempfile::tempdir().unwrap();
    let render = |compose: &str, dotenv: &str| -> serde_json::Value {
        fs::write(tmp.path().join("compose.yaml"), compose).unwrap();
        fs::write(tmp.path().join(".env"), dotenv).unwrap();
        let ran = run(
            Command::new("docker-compose").current_dir(tmp.path()).args(["config", "--format", "json"]),
            Duration::from_secs(60),
        )
        .must_succeed("docker-compose config");
        let config: serde_json::Value = serde_json::from_str(&ran.stdout).expect("compose config JSON");
        config["services"]["mailroom"].clone()
    };
    // `config` prints a compose file, where a literal `$` is written `$$`: undo that to
    // get what the container's environment receives.
    let accounts_of = |service: &serde_json::Value| {
        service["environment"]["MAILROOM_ACCOUNTS"].as_str().unwrap_or_default().replace("$$", "$")
    };
    let check_config = |accounts: &str| {
        let mut env = common::base_env(&tmp.path().join("data"));
        env.push(("MAILROOM_ACCOUNTS".into(), accounts.to_string()));
        common::run(&["check-config"], &env, "")
    };
    let compose = read(&repo().join("compose.yaml"));
    let example = read(&repo().join("env.example"));

    // env.example as it is (every line a comment) renders.
    render(&compose, &example);

    let unquoted = render(&compose, &format!("{example}\nMAILROOM_ACCOUNTS={account}\n"));
    assert_ne!(accounts_of(&unquoted), account, "compose no longer interpolates $ in .env: the docs can say so");
    let refused = check_config(&accounts_of(&unquoted));
    assert_eq!(refused.status.code(), Some(2), "a mangled hash must be refused at start");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("MAILROOM_ACCOUNTS"));

    let quoted = render(&compose, &format!("{example}\nMAILROOM_ACCOUNTS='{account}'\n"));
    assert_eq!(accounts_of(&quoted), account, "single quotes keep the hash whole");
    assert_eq!(check_config(&accounts_of(&quoted)).status.code(), Some(0));

    let with_file = compose
        .replace("# MAILROOM_ACCOUNTS_FILE: /run/mailroom/accounts", "MAILROOM_ACCOUNTS_FILE: /run/mailroom/accounts")
        .replace("# - ./accounts:/run/mailroom/accounts:ro", "- ./accounts:/run/mailroom/accounts:ro");
    assert_ne!(with_file, compose, "compose.yaml's commented accounts-file lines changed");
    let service = render(&with_file, &example);
    assert_eq!(service["environment"]["MAILROOM_ACCOUNTS_FILE"], "/run/mailroom/accounts");
    let mounts = service["volumes"].as_array().expect("volumes");
    assert!(
        mounts.iter().any(|m| m["target"] == "/run/mailroom/accounts"
            && m["read_only"] == true
            && m["source"].as_str().is_some_and(|s| s.ends_with("/accounts"))),
        "{mounts:?}"
    );
}

// ---- the image ------------------------------------------------------------------------

/// Builds the `local` image target from the static binary, runs it on high loopback
/// ports with a named volume on /data, waits for /readyz, runs the HEALTHCHECK, stops it
/// with SIGTERM and checks exit 0 and the data dir layout. Slow: MAILROOM_IMAGE_TEST=1.
#[test]
fn image_builds_runs_and_stops_cleanly() {
    if std::env::var("MAILROOM_IMAGE_TEST").as_deref() != Ok("1") {
        println!("SKIPPED: image test is slow; run with MAILROOM_IMAGE_TEST=1");
        return;
    }
    for tool in ["buildah", "podman", "runc"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let binary = static_binary();
    assert_static(&binary);

    let work = tempfile::tempdir().expect("temp dir");
    let conf = work.path().join("containers.conf");
    // No systemd, no cgroup delegation, no ulimit changes in CI sandboxes (toolbox.md).
    fs::write(&conf, "[containers]\ndefault_ulimits = []\npids_limit = 0\n[engine]\ncgroup_manager = \"cgroupfs\"\n")
        .expect("containers.conf");
    let context = build_context(work.path(), &binary);

    let id = std::process::id();
    let env = Podman {
        conf,
        image: format!("localhost/mailroom:test-{id}"),
        container: format!("mailroom-test-{id}"),
        volume: format!("mailroom-test-{id}"),
    };

    env.buildah()
        .args(["bud", "--isolation", "chroot", "--format", "docker"])
        .args(["--target", "local", "-t", &env.image])
        .arg(&context)
        .pipe(|c| run(c, Duration::from_secs(300)))
        .must_succeed("buildah bud --target local");

    let size: u64 = env
        .podman()
        .args(["image", "inspect", "--format", "{{.Size}}", &env.image])
        .pipe(|c| run(c, Duration::from_secs(60)))
        .must_succeed("podman image inspect")
        .stdout
        .trim()
        .parse()
        .expect("image size");
    assert!(size < IMAGE_MAX_BYTES, "image is {size} bytes, over 24 MiB");

    env.podman()
        .args(["volume", "create", &env.volume])
        .pipe(|c| run(c, Duration::from_secs(60)))
        .must_succeed("podman volume create");

    let ports = Ports::pick();
    let mut start = env.podman();
    start.args(["run", "-d", "--name", &env.container, "--network", "host"]);
    start.args(["-v", &format!("{}:/data", env.volume)]);
    for (var, value) in ports.env() {
        start.args(["-e", &format!("{var}={value}")]);
    }
    start.arg(&env.image);
    run(&mut start, Duration::from_secs(120)).must_succeed("podman run");

    wait_ready(&env, ports.metrics);
    env.podman()
        .args(["healthcheck", "run", &env.container])
        .pipe(|c| run(c, Duration::from_secs(60)))
        .must_succeed("the image's HEALTHCHECK (mailroom healthcheck)");

    mail_roundtrip(&ports);

    // `podman stop` sends the image's STOPSIGNAL (SIGTERM) and SIGKILLs after --time,
    // which would show as exit 137.
    env.podman()
        .args(["stop", "--time", "60", &env.container])
        .pipe(|c| run(c, Duration::from_secs(120)))
        .must_succeed("podman stop");
    let exit = env
        .podman()
        .args(["inspect", "--format", "{{.State.ExitCode}}", &env.container])
        .pipe(|c| run(c, Duration::from_secs(60)))
        .must_succeed("podman inspect")
        .stdout;
    assert_eq!(exit.trim(), "0", "exit status after SIGTERM; logs:\n{}", env.logs());

    let mountpoint = env
        .podman()
        .args(["volume", "inspect", "--format", "{{.Mountpoint}}", &env.volume])
        .pipe(|c| run(c, Duration::from_secs(60)))
        .must_succeed("podman volume inspect")
        .stdout;
    let data = PathBuf::from(mountpoint.trim());
    assert_eq!(
        fs::metadata(&data).map(|m| m.uid()).ok(),
        Some(IMAGE_UID),
        "a fresh volume takes the image's /data owner"
    );
    for dir in ["mail", "queue", "dkim", "tls", "state"] {
        let meta = fs::metadata(data.join(dir)).unwrap_or_else(|e| panic!("data volume has no {dir}/: {e}"));
        assert!(meta.is_dir(), "{dir} is not a directory");
        assert_eq!(meta.uid(), IMAGE_UID, "{dir}/ belongs to the server");
    }
}

/// Send one message over SMTP and read it back over IMAP, with Python's smtplib and
/// imaplib (tests/clients/mail_roundtrip.py), against the running container.
fn mail_roundtrip(ports: &Ports) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mail_roundtrip.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&ports.smtp.to_string(), &ports.imap.to_string(), ROUNDTRIP_USER, ROUNDTRIP_PASSWORD, "image-test"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "SMTP -> IMAP round trip in the container failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// Loopback only (the container shares the host's network): every lookup is answered
// NXDOMAIN at once, so none leaves the machine and none waits for a timeout.
static NXDOMAIN_DNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| common::nxdomain_dns().to_string());

const ROUNDTRIP_USER: &str = "alice@test.example";
const ROUNDTRIP_PASSWORD: &str = "container-test-password";

/// `Command` lets a builder chain end in a call that takes `&mut Command`.
trait Pipe {
    fn pipe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T;
}

impl Pipe for Command {
    fn pipe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        f(self)
    }
}

/// Names of what the image test creates; dropping it removes them all.
struct Podman {
    conf: PathBuf,
    image: String,
    container: String,
    volume: String,
}

impl Podman {
    fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf).args(["--storage-driver", "vfs", "--runtime", "runc"]);
        c
    }

    fn buildah(&self) -> Command {
        let mut c = Command::new("buildah");
        c.env("CONTAINERS_CONF", &self.conf).args(["--storage-driver", "vfs"]);
        c
    }

    fn logs(&self) -> String {
        let ran = run(self.podman().args(["logs", &self.container]), Duration::from_secs(60));
        format!("{}{}", ran.stdout, ran.stderr)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Best effort: a failed cleanup must not hide the test's own failure.
        let _ = self.podman().args(["rm", "-f", "-t", "5", &self.container]).output();
        let _ = self.podman().args(["volume", "rm", "-f", &self.volume]).output();
        let _ = self.podman().args(["rmi", "-f", &self.image]).output();
    }
}

/// The static binary: `MAILROOM_IMAGE_BINARY` if given (CI may have built it already),
/// else built here with the documented command (a no-op when it is up to date). Its path
/// comes from cargo's own JSON messages, so any target-dir setting is honoured.
fn static_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MAILROOM_IMAGE_BINARY") {
        return PathBuf::from(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = run(
        Command::new(cargo)
            .args(["build", "--release", "--locked", "--bin", "mailroom"])
            .args(["--target", STATIC_TARGET, "--message-format=json"])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .current_dir(repo()),
        Duration::from_secs(1800),
    )
    .must_succeed("static release build");
    built
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "mailroom")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no mailroom executable")
}

/// A scratch image has no dynamic loader: the binary must have no PT_INTERP segment.
fn assert_static(binary: &Path) {
    let elf = fs::read(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    assert!(elf.starts_with(b"\x7fELF\x02\x01"), "not a 64-bit little-endian ELF");
    let field = |at: usize, len: usize| -> u64 {
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&elf[at..at + len]);
        u64::from_le_bytes(bytes)
    };
    let (phoff, phentsize, phnum) = (field(0x20, 8), field(0x36, 2), field(0x38, 2));
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).expect("offset");
        const PT_INTERP: u64 = 3;
        assert_ne!(
            field(at, 4),
            PT_INTERP,
            "{} is dynamically linked; build it with RUSTFLAGS='-C target-feature=+crt-static'",
            binary.display()
        );
    }
}

/// A minimal build context: the Dockerfile, the empty /data template, and the binary
/// where the `local` target expects it (target/ itself is far too big to send).
fn build_context(work: &Path, binary: &Path) -> PathBuf {
    let context = work.join("context");
    let bin_dir = context.join("target").join(STATIC_TARGET).join("release");
    fs::create_dir_all(&bin_dir).expect("context dirs");
    fs::create_dir_all(context.join(".docker/data")).expect("data template");
    for file in ["Dockerfile", ".dockerignore"] {
        fs::copy(repo().join(file), context.join(file)).expect("copy Dockerfile");
    }
    fs::copy(binary, bin_dir.join("mailroom")).expect("copy binary");
    context
}

/// Free loopback ports for every listener: the test runs with --network host, next to
/// other tests, so nothing may bind the real mail ports.
struct Ports {
    smtp: u16,
    imap: u16,
    metrics: u16,
    others: Vec<(&'static str, u16)>,
}

impl Ports {
    fn pick() -> Self {
        let free = common::free_port;
        Ports {
            smtp: free(),
            imap: free(),
            metrics: free(),
            others: ["SUBMISSION", "SUBMISSIONS", "IMAPS", "POP3", "POP3S", "MANAGESIEVE", "HTTP", "HTTPS"]
                .into_iter()
                .map(|p| (p, free()))
                .collect(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let listen = |p: &str, port: u16| (format!("MAILROOM_{p}_LISTEN"), format!("127.0.0.1:{port}"));
        let mut env = vec![listen("SMTP", self.smtp), listen("IMAP", self.imap), listen("METRICS", self.metrics)];
        env.extend(self.others.iter().map(|(p, port)| listen(p, *port)));
        env.extend(
            [
                ("MAILROOM_HOSTNAME", "mail.test.example"),
                ("MAILROOM_DOMAINS", "test.example"),
                ("MAILROOM_ACME", "off"),
                ("MAILROOM_DNS_SERVERS", NXDOMAIN_DNS.as_str()),
                ("MAILROOM_PUBLIC_IPV4", "192.0.2.25"),
                ("MAILROOM_LOG", "debug"),
                ("MAILROOM_ACCOUNTS", "alice@test.example:{PLAIN}container-test-password"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env
    }
}

/// Poll /readyz on the metrics port until it answers 200; fail early if the container
/// exits, showing its logs.
fn wait_ready(env: &Podman, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if http_status(port, "/readyz") == Some(200) {
            return;
        }
        let state = run(
            env.podman().args(["inspect", "--format", "{{.State.Status}}", &env.container]),
            Duration::from_secs(60),
        )
        .stdout;
        assert!(
            Instant::now() < deadline && !state.contains("exited"),
            "no 200 from /readyz on 127.0.0.1:{port} (container {}); logs:\n{}",
            state.trim(),
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
