//! Sender Rewriting Scheme for mail we forward to outside addresses (aliases whose
//! target is remote). Without it, the receiving side's SPF check of the original
//! envelope sender fails, because we are not that sender's permitted host.
//!
//! The format is the de-facto Shevek scheme of libsrs2 and postsrsd, so bounces
//! reach us in the form every other forwarder uses:
//! - `SRS0=HHHH=TT=orig.domain=local@our.domain` for a first forward, where `TT` is
//!   the day number (mod 1024) in two base32 characters and `HHHH` the first four
//!   base64 characters of HMAC-SHA1(secret, lowercase(TT ‖ domain ‖ local));
//! - `SRS1=HHHH=first.hop==HHHH=TT=orig.domain=local@our.domain` when the sender is
//!   already an SRS0 address of another forwarder (we keep its address and only
//!   add our hash over (first.hop, rest), so the chain does not grow).
//!
//! Reversal accepts hashes case-insensitively (some MTAs lowercase local parts,
//! libsrs2 does the same) and timestamps up to 21 days old; anything else is `None`
//! and the bounce is refused (we are not an open bounce relay). The HMAC key is
//! generated once into `<data>/state/srs.key` (0600) and must survive restarts, or
//! bounces of mail forwarded before the restart are refused.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use ring::hmac;

/// Days a rewritten address stays valid for bounces (postsrsd's default).
pub const MAX_AGE_DAYS: u64 = 21;
const TICK_SLOTS: u64 = 1024;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HASH_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum SrsError {
    #[error("SRS key {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("SRS key {0} is empty")]
    Empty(String),
}

/// The rewriter, holding the HMAC key.
pub struct Srs {
    key: hmac::Key,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Srs(<key>)")
    }
}

impl Srs {
    /// Read `<state_dir>/srs.key`, creating it (32 random bytes, base64, 0600) on first use.
    pub fn load_or_create(state_dir: &Path) -> Result<Srs, SrsError> {
        let path = state_dir.join("srs.key");
        let io = |source| SrsError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let secret = text.trim();
                if secret.is_empty() {
                    return Err(SrsError::Empty(path.display().to_string()));
                }
                Ok(Srs::from_secret(secret.as_bytes()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir).map_err(io)?;
                let mut raw = [0u8; 32];
                rand::rng().fill_bytes(&mut raw);
                let secret = STANDARD.encode(raw);
                crate::durable::write_atomic(
                    &path,
                    format!("{secret}\n").as_bytes(),
                    crate::datadir::PRIVATE_FILE_MODE,
                )
                .map_err(|e| io(e.into()))?;
                Ok(Srs::from_secret(secret.as_bytes()))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A rewriter with a given secret (postsrsd's secret file holds such a line).
    pub fn from_secret(secret: &[u8]) -> Srs {
        Srs { key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret) }
    }

    /// The envelope sender to use when forwarding mail from `sender` out of
    /// `our_domain`. The null sender and our own addresses stay as they are.
    pub fn forward(&self, sender: &str, our_domain: &str) -> String {
        self.forward_on_day(sender, our_domain, today())
    }

    /// [`Srs::forward`] on a given day number (days since the Unix epoch).
    pub fn forward_on_day(&self, sender: &str, our_domain: &str, day: u64) -> String {
        let Some((local, domain)) = sender.rsplit_once('@') else { return sender.to_string() };
        if local.is_empty() || domain.is_empty() || domain.eq_ignore_ascii_case(our_domain) {
            return sender.to_string();
        }
        if let Some(rest) = strip_tag(local, "SRS1") {
            // SRS1=HHHH=first.hop==rest: keep first.hop and rest, re-hash for us.
            if let Some((_, after_hash)) = rest.split_once('=')
                && let Some((first_hop, srs0_rest)) = after_hash.split_once("==")
            {
                let hash = self.hash(&[first_hop, &format!("={srs0_rest}")]);
                return format!("SRS1={hash}={first_hop}=={srs0_rest}@{our_domain}");
            }
        }
        if strip_tag(local, "SRS0").is_some() {
            // Another forwarder's SRS0: we become the second hop. The rest keeps its
            // leading separator, which gives the `==` of the SRS1 form.
            let srs0_rest = &local[4..];
            let hash = self.hash(&[domain, srs0_rest]);
            return format!("SRS1={hash}={domain}={srs0_rest}@{our_domain}");
        }
        let stamp = timestamp(day);
        let hash = self.hash(&[&stamp, domain, local]);
        format!("SRS0={hash}={stamp}={domain}={local}@{our_domain}")
    }

    /// The address a bounce to `address` should go to, or `None` when `address`
    /// is not a valid, unexpired SRS address made with our key.
    pub fn reverse(&self, address: &str) -> Option<String> {
        self.reverse_on_day(address, today())
    }

    /// [`Srs::reverse`] on a given day number.
    pub fn reverse_on_day(&self, address: &str, day: u64) -> Option<String> {
        let (local, _our_domain) = address.rsplit_once('@')?;
        if let Some(rest) = strip_tag(local, "SRS1") {
            let (hash, after) = rest.split_once('=')?;
            let (first_hop, srs0_rest) = after.split_once("==")?;
            if first_hop.is_empty() || !self.hash_ok(hash, &[first_hop, &format!("={srs0_rest}")]) {
                return None;
            }
            return Some(format!("SRS0={srs0_rest}@{first_hop}"));
        }
        let rest = strip_tag(local, "SRS0")?;
        let mut parts = rest.splitn(4, '=');
        let (hash, stamp, domain, orig_local) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if domain.is_empty() || orig_local.is_empty() || !self.hash_ok(hash, &[stamp, domain, orig_local]) {
            return None;
        }
        if !stamp_fresh(stamp, day) {
            return None;
        }
        Some(format!("{orig_local}@{domain}"))
    }

    fn hash(&self, parts: &[&str]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(p.to_ascii_lowercase().as_bytes());
        }
        let tag = ctx.sign();
        let mut text = STANDARD.encode(tag.as_ref());
        text.truncate(HASH_LEN);
        text
    }

    fn hash_ok(&self, given: &str, parts: &[&str]) -> bool {
        let expected = self.hash(parts);
        // Constant-time is not needed for 24 bits of a hash that is not secret
        // once sent, but compare case-insensitively as libsrs2 does.
        given.len() == HASH_LEN && given.eq_ignore_ascii_case(&expected)
    }
}

/// `local` without its `SRS0`/`SRS1` tag and the separator after it (any of
/// `=`, `+`, `-`, as libsrs2 accepts), case-insensitive.
fn strip_tag<'a>(local: &'a str, tag: &str) -> Option<&'a str> {
    let head = local.get(..tag.len())?;
    if !head.eq_ignore_ascii_case(tag) {
        return None;
    }
    let rest = &local[tag.len()..];
    rest.strip_prefix(['=', '+', '-'])
}

fn today() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86400)
}

fn timestamp(day: u64) -> String {
    let t = day % TICK_SLOTS;
    let hi = BASE32[((t >> 5) & 31) as usize] as char;
    let lo = BASE32[(t & 31) as usize] as char;
    format!("{hi}{lo}")
}

fn stamp_fresh(stamp: &str, day: u64) -> bool {
    let bytes = stamp.as_bytes();
    if bytes.len() != 2 {
        return false;
    }
    let value = |b: u8| BASE32.iter().position(|c| *c == b.to_ascii_uppercase()).map(|p| p as u64);
    let (Some(hi), Some(lo)) = (value(bytes[0]), value(bytes[1])) else { return false };
    let then = (hi << 5) | lo;
    let now = day % TICK_SLOTS;
    let age = (now + TICK_SLOTS - then) % TICK_SLOTS;
    age <= MAX_AGE_DAYS
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 20_419; // 2025-11-27

    fn srs() -> Srs {
        Srs::from_secret(b"tHiSiSaSeCrEt")
    }

    #[test]
    fn forward_then_reverse_round_trip() {
        let s = srs();
        let fwd = s.forward_on_day("alice@sender.example", "forwarder.test", DAY);
        assert!(fwd.starts_with("SRS0="), "{fwd}");
        assert!(fwd.ends_with("=sender.example=alice@forwarder.test"), "{fwd}");
        // A bounce comes back to the rewritten address.
        assert_eq!(s.reverse_on_day(&fwd, DAY + 3).as_deref(), Some("alice@sender.example"));
        // Some MTAs lowercase the whole address.
        assert_eq!(s.reverse_on_day(&fwd.to_lowercase(), DAY).as_deref(), Some("alice@sender.example"));
    }

    #[test]
    fn tampered_or_foreign_addresses_are_refused() {
        let s = srs();
        let fwd = s.forward_on_day("alice@sender.example", "forwarder.test", DAY);
        let tampered = fwd.replace("=alice@", "=mallory@");
        assert_eq!(s.reverse_on_day(&tampered, DAY), None);
        let other_key = Srs::from_secret(b"another secret");
        assert_eq!(other_key.reverse_on_day(&fwd, DAY), None);
        for junk in ["alice@forwarder.test", "SRS0=@x", "SRS0=abcd=AA=@x", "SRS1=x@y", "", "@", "SRS0====@"] {
            assert_eq!(s.reverse_on_day(junk, DAY), None, "{junk}");
        }
    }

    #[test]
    fn expired_timestamps_are_refused() {
        let s = srs();
        let fwd = s.forward_on_day("alice@sender.example", "forwarder.test", DAY);
        assert!(s.reverse_on_day(&fwd, DAY + MAX_AGE_DAYS).is_some());
        assert_eq!(s.reverse_on_day(&fwd, DAY + MAX_AGE_DAYS + 1), None);
        // Wrap-around of the 1024-day cycle still works.
        let near_wrap = s.forward_on_day("a@b.example", "f.test", 1023);
        assert!(s.reverse_on_day(&near_wrap, 1024 + 5).is_some());
    }

    #[test]
    fn second_hop_makes_srs1_and_reverses_to_first_hop() {
        let first = Srs::from_secret(b"first");
        let ours = srs();
        let srs0 = first.forward_on_day("alice@sender.example", "first.test", DAY);
        let srs1 = ours.forward_on_day(&srs0, "forwarder.test", DAY);
        assert!(srs1.starts_with("SRS1="), "{srs1}");
        assert!(srs1.contains("=first.test=="), "{srs1}");
        // Our reversal hands the bounce to the first hop, which reverses its SRS0.
        let back = ours.reverse_on_day(&srs1, DAY).unwrap();
        assert_eq!(back, srs0);
        assert_eq!(first.reverse_on_day(&back, DAY).as_deref(), Some("alice@sender.example"));
        // A third hop keeps the first hop and stays one level deep.
        let third = Srs::from_secret(b"third");
        let srs1b = third.forward_on_day(&srs1, "third.test", DAY);
        assert!(srs1b.starts_with("SRS1=") && srs1b.contains("=first.test==") && srs1b.ends_with("@third.test"));
        assert_eq!(third.reverse_on_day(&srs1b, DAY).as_deref(), Some(srs0.as_str()));
    }

    #[test]
    fn null_sender_and_local_domain_are_not_rewritten() {
        let s = srs();
        assert_eq!(s.forward_on_day("", "forwarder.test", DAY), "");
        assert_eq!(s.forward_on_day("bob@Forwarder.test", "forwarder.test", DAY), "bob@Forwarder.test");
    }

    #[test]
    fn key_is_created_once_with_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Srs::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("srs.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let fwd = a.forward_on_day("x@y.example", "f.test", DAY);
        let b = Srs::load_or_create(dir.path()).unwrap();
        assert_eq!(b.reverse_on_day(&fwd, DAY).as_deref(), Some("x@y.example"));
    }

    #[test]
    fn reverse_survives_garbage() {
        let s = srs();
        let alphabet = b"SRS01=+-@aZ.\xc3\xa9";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let bytes: Vec<u8> = crate::testing::garbage(&mut seed, alphabet, len);
            let text = String::from_utf8_lossy(&bytes);
            let _ = s.reverse_on_day(&text, DAY);
            let _ = s.forward_on_day(&text, "f.test", DAY);
        }
    }

    /// Ask a running postsrsd (Postfix tcp_table protocol) for `get <address>`.
    fn postsrsd_get(port: u16, address: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(format!("get {address}\n").as_bytes()).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).trim().to_string()
    }

    /// postsrsd (Debian's, the reference) with the key file we created; killed on drop.
    struct PostSrsd(std::process::Child, u16, u16);

    impl Drop for PostSrsd {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn start_postsrsd(key_file: &Path) -> Option<PostSrsd> {
        use crate::dns::testdns::{free_port, tool_available};
        if !tool_available("postsrsd") {
            return None;
        }
        let (fwd, rev) = (free_port(), free_port());
        let child = std::process::Command::new("postsrsd")
            .arg(format!("-s{}", key_file.display()))
            .args(["-dforwarder.test", "-l127.0.0.1", "-4"])
            .arg(format!("-f{fwd}"))
            .arg(format!("-r{rev}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let p = PostSrsd(child, fwd, rev);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", rev)).is_err() {
            assert!(std::time::Instant::now() < deadline, "postsrsd did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(p)
    }

    #[test]
    fn interoperates_with_postsrsd() {
        let dir = tempfile::tempdir().unwrap();
        // postsrsd's secret file format is ours: the first line is the key, so an
        // operator can carry postsrsd's secret over (and old bounces still reverse).
        let ours = Srs::load_or_create(dir.path()).unwrap();
        let Some(p) = start_postsrsd(&dir.path().join("srs.key")) else { return };
        // Same rewrite, byte for byte.
        let theirs = postsrsd_get(p.1, "Alice@Sender.example");
        assert_eq!(theirs, format!("200 {}", ours.forward("Alice@Sender.example", "forwarder.test")));
        // Each reverses the other's, also after lowercasing.
        let theirs = postsrsd_get(p.1, "bob@sender.example");
        let theirs = theirs.strip_prefix("200 ").unwrap();
        assert_eq!(ours.reverse(theirs).as_deref(), Some("bob@sender.example"));
        let mine = ours.forward("carol@sender.example", "forwarder.test");
        assert_eq!(postsrsd_get(p.2, &mine.to_lowercase()), "200 carol@sender.example");
    }
}
