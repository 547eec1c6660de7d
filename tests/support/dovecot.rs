//! A real Dovecot as the "remote" server of the fetch and import tests
//! (tests/it/fetch.rs, tests/it/import.rs): POP3 and IMAP, each with STARTTLS and
//! implicit TLS, on loopback ports, its certificate for 127.0.0.1 signed by a CA of the
//! test (`Dovecot::ca`), users in a passwd file, all in a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{free_port, have_tool};

const WAIT: Duration = Duration::from_secs(60);
/// Every remote user's password.
pub const REMOTE_PASSWORD: &str = "remote-secret";

/// Dovecot on loopback in a temp dir: POP3 (STLS), POP3S, IMAP (STARTTLS) and IMAPS.
pub struct Dovecot {
    dir: tempfile::TempDir,
    pub pop3: u16,
    pub pop3s: u16,
    pub imap: u16,
    pub imaps: u16,
}

impl Dovecot {
    /// `None` when Dovecot is not installed (a failure under CI=true).
    pub fn start(users: &[&str]) -> Option<Dovecot> {
        Dovecot::start_with(users, "")
    }

    /// [`Dovecot::start`] with `extra` lines of configuration (namespaces, special-use
    /// folders).
    pub fn start_with(users: &[&str], extra: &str) -> Option<Dovecot> {
        if !have_tool("dovecot") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().display().to_string();
        let (pop3, pop3s, imap, imaps) = (free_port(), free_port(), free_port(), free_port());
        for d in ["run", "mail"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        // Dovecot refuses mail access as root: as root, the mail belongs to nobody.
        let (uid, gid) = match unsafe { (libc::getuid(), libc::getgid()) } {
            (0, _) => (65534, 65534),
            ids => ids,
        };
        let mut passwd = String::new();
        for u in users {
            passwd.push_str(&format!("{u}:{{PLAIN}}{REMOTE_PASSWORD}:{uid}:{gid}::{t}/mail/{u}::\n"));
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(dir.path().join("mail").join(u).join(sub)).unwrap();
            }
        }
        for entry in walk(&dir.path().join("mail")) {
            std::os::unix::fs::chown(&entry, Some(uid), Some(gid)).unwrap();
        }
        std::fs::write(dir.path().join("passwd"), passwd).unwrap();
        // Dovecot's auth process runs as its own user: it must reach the passwd file.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (cert, key) = test_ca(dir.path());
        let conf = format!(
            r#"
base_dir = {t}/run
state_dir = {t}/run/state
log_path = {t}/dovecot.log
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
protocols = imap pop3
listen = 127.0.0.1
mail_location = maildir:{t}/mail/%u
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = {t}/passwd
}}
userdb {{
  driver = passwd-file
  args = {t}/passwd
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
{extra}
"#,
            cert = cert.display(),
            key = key.display()
        );
        std::fs::write(dir.path().join("dovecot.conf"), conf).unwrap();
        let status = Command::new("dovecot").arg("-c").arg(dir.path().join("dovecot.conf")).status().unwrap();
        assert!(status.success(), "dovecot did not start");
        let dovecot = Dovecot { dir, pop3, pop3s, imap, imaps };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", imaps)).is_err() {
            assert!(Instant::now() < deadline, "dovecot does not listen: {}", dovecot.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(dovecot)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    /// Deliver `n` messages into the remote account's Maildir, numbered from `first`.
    pub fn put(&self, user: &str, first: usize, n: usize) {
        for i in first..first + n {
            let msg = message(i);
            let tmp = self.maildir(user).join("tmp").join(format!("m{i}"));
            std::fs::write(&tmp, msg).unwrap();
            std::fs::rename(&tmp, self.maildir(user).join("new").join(format!("{}.m{i}.remote", 1_700_000_000 + i)))
                .unwrap();
        }
    }

    /// Messages in the remote account (new and cur).
    pub fn count(&self, user: &str) -> usize {
        count_files(&self.maildir(user))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- dovecot log:\n{}", self.log());
        }
        let _ = Command::new("doveadm").arg("-c").arg(self.dir.path().join("dovecot.conf")).arg("stop").output();
    }
}

/// `dir` and every directory under it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// A CA, and Dovecot's certificate for 127.0.0.1 signed by it.
fn test_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "mailroom fetch test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    (cert, key)
}

/// Message `i`: its own Message-ID, an Authentication-Results of the remote server.
fn message(i: usize) -> String {
    format!(
        "Return-Path: <sender{i}@remote.test>\r\nAuthentication-Results: remote.test; dkim=pass header.d=remote.test\r\n\
         From: sender{i}@remote.test\r\nTo: someone@remote.test\r\nSubject: number {i}\r\n\
         Message-ID: <m{i}@remote.test>\r\n\r\nBody of message {i}.\r\n.leading dot line\r\n"
    )
}

fn count_files(maildir: &Path) -> usize {
    ["new", "cur"].iter().map(|d| std::fs::read_dir(maildir.join(d)).map(|r| r.count()).unwrap_or(0)).sum()
}
