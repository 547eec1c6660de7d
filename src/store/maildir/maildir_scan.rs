//! Reading a Maildir directory: what is in `new/` and `cur/` right now.
//!
//! Owns: the blocking directory work behind `MaildirMailbox::sync` — moving `new/` into `cur/`
//! (adding the `:2,` info as the Maildir spec says a reader does), listing `cur/`, and
//! measuring files the index does not know yet (wire size from `W=`, else by reading; the
//! internal date is the file's mtime). Also the cheap "did anything change?" check on
//! directory mtimes, which must allow for coarse mtime granularity: a stamp is only trusted
//! once it is more than a second old, as Dovecot does.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::error::StoreError;
use super::filename::parse_file_name;
use super::reader::file_wire_len;

/// Modification times of `new/` and `cur/`.
pub type Stamp = (SystemTime, SystemTime);

/// An mtime newer than this may still change without the mtime changing (coarse file
/// system clocks), so it cannot prove "nothing changed" on its own.
const SETTLE: Duration = Duration::from_secs(1);

/// What the index is known to reflect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    /// The directory mtimes the in-memory state matches.
    pub stamp: Stamp,
    /// True when a full scan saw this stamp already settled; false when the stamp comes
    /// from our own change (trusted only until it settles, then verified by one full scan).
    pub settled: bool,
}

/// How much of the Maildir must be looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Nothing changed.
    Unchanged,
    /// Only `new/` changed: move its files, no need to list `cur/`.
    NewOnly,
    /// List everything.
    Changed,
}

/// Compare the current mtimes with what the index reflects.
pub fn freshness(trust: Option<Trust>, disk: Stamp, now: SystemTime) -> Freshness {
    let Some(t) = trust else {
        return Freshness::Changed;
    };
    let young = |m: SystemTime| now.duration_since(m).map(|d| d < SETTLE).unwrap_or(true);
    let same = |a: SystemTime, b: SystemTime| a == b && (t.settled || young(b));
    match (same(t.stamp.0, disk.0), same(t.stamp.1, disk.1)) {
        (true, true) => Freshness::Unchanged,
        (false, true) => Freshness::NewOnly,
        _ => Freshness::Changed,
    }
}

/// Trust after a full scan that started with `before`: settled if it was old enough and
/// the scan changed nothing itself, else our own (unsettled) view of `after`.
pub fn trust_after_scan(before: Stamp, after: Stamp, now: SystemTime) -> Trust {
    let old = |m: SystemTime| now.duration_since(m).map(|d| d >= SETTLE).unwrap_or(false);
    if before == after && old(before.0) && old(before.1) {
        Trust { stamp: before, settled: true }
    } else {
        Trust { stamp: after, settled: false }
    }
}

/// Current mtimes of `new/` and `cur/`.
pub fn stamp(dir: &Path) -> Result<Stamp, StoreError> {
    let m = |sub: &str| {
        let p = dir.join(sub);
        std::fs::metadata(&p).and_then(|m| m.modified()).map_err(|e| StoreError::io(&p, e))
    };
    Ok((m("new")?, m("cur")?))
}

/// Move every message in `new/` into `cur/` as `<name>:2,`. A file that vanished meanwhile
/// (another reader moved it) is skipped. Returns the new names in `cur/`.
pub fn move_new_to_cur(dir: &Path) -> Result<Vec<String>, StoreError> {
    let new = dir.join("new");
    let cur = dir.join("cur");
    let entries = std::fs::read_dir(&new).map_err(|e| StoreError::io(&new, e))?;
    let mut moved = Vec::new();
    for e in entries {
        let e = e.map_err(|e| StoreError::io(&new, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(parsed) = parse_file_name(name) else {
            continue;
        };
        let target = if parsed.flags.is_some() || name.contains(':') { name.to_string() } else { format!("{name}:2,") };
        match std::fs::rename(new.join(name), cur.join(&target)) {
            Ok(()) => moved.push(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(new.join(name), e)),
        }
    }
    Ok(moved)
}

/// Files left in `tmp/` by a crash are garbage once older than 36 hours (the Maildir spec's
/// rule; younger ones may still be written by a slow delivery).
const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

/// Remove stale files from `tmp/`. Best effort; returns how many were removed.
pub fn clean_tmp(dir: &Path, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir.join("tmp")) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        // Expunged messages sessions still read: swept when the mailbox opens instead.
        if e.file_name().to_str().is_some_and(|n| n.starts_with(super::retained::RETAINED_PREFIX)) {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > TMP_MAX_AGE);
        if old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// File names in `cur/` that are messages.
pub fn list_cur(dir: &Path) -> Result<Vec<String>, StoreError> {
    let cur = dir.join("cur");
    let entries = std::fs::read_dir(&cur).map_err(|e| StoreError::io(&cur, e))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| StoreError::io(&cur, e))?;
        let name = e.file_name();
        match name.to_str() {
            Some(n) if parse_file_name(n).is_some() => out.push(n.to_string()),
            Some(_) => {}
            None => tracing::warn!(dir = %cur.display(), "skipping non-UTF-8 file name"),
        }
    }
    Ok(out)
}

/// A message file found by a scan.
#[derive(Debug, Clone)]
pub struct Measured {
    /// File name in `cur/`.
    pub file_name: String,
    /// Wire size.
    pub size: u64,
    /// mtime = INTERNALDATE.
    pub mtime: SystemTime,
}

/// Measure new files; files that vanished meanwhile are left out. Sorted by (mtime, name)
/// so UIDs follow arrival order.
pub fn measure(dir: &Path, names: Vec<String>) -> Result<Vec<Measured>, StoreError> {
    let cur = dir.join("cur");
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = cur.join(&name);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let parsed = parse_file_name(&name);
        let size = match parsed.and_then(|p| p.wire_size) {
            Some(w) => w,
            None => match file_wire_len(&path) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            },
        };
        out.push(Measured { mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), file_name: name, size });
    }
    out.sort_by(|a, b| {
        a.mtime
            .cmp(&b.mtime)
            .then_with(|| arrival_key(&a.file_name).cmp(&arrival_key(&b.file_name)))
            .then_with(|| a.file_name.cmp(&b.file_name))
    });
    Ok(out)
}

/// Arrival order within one mtime tick (files written within a few ms share it): the
/// `<secs>.M<usec>` and `Q<n>` of our and Dovecot's base names, as numbers (as text,
/// `M99870` sorts after `M100120`). `None` for other names, which sort first.
fn arrival_key(name: &str) -> Option<(u64, u64, u64)> {
    let (secs, rest) = name.split_once('.')?;
    let number = |s: &str| {
        s.bytes()
            .take_while(u8::is_ascii_digit)
            .fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
    };
    let usec = rest.strip_prefix('M').map_or(0, number);
    let base = rest.split('.').next().unwrap_or("");
    let q = base.split_once('Q').map_or(0, |(_, q)| number(q));
    Some((secs.parse().ok()?, usec, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_key_orders_microseconds_as_numbers() {
        let a = arrival_key("1700000000.M99870P7Q3.mx,S=5,W=5");
        let b = arrival_key("1700000000.M100120P7Q4.mx,S=5,W=5");
        assert!(a < b, "{a:?} {b:?}");
        assert_eq!(arrival_key("1700000000.M5P9.host"), Some((1_700_000_000, 5, 0)));
        assert_eq!(arrival_key("foreign"), None);
    }

    #[test]
    fn freshness_trusts_settled_stamps_and_own_changes_until_they_settle() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let t1 = t0 + Duration::from_millis(1);
        let later = t0 + Duration::from_secs(5);
        let settled = Trust { stamp: (t0, t0), settled: true };
        assert_eq!(freshness(None, (t0, t0), later), Freshness::Changed);
        assert_eq!(freshness(Some(settled), (t0, t0), later), Freshness::Unchanged);
        assert_eq!(freshness(Some(settled), (t1, t0), later), Freshness::NewOnly);
        assert_eq!(freshness(Some(settled), (t0, t1), later), Freshness::Changed);
        let own = Trust { stamp: (t0, t0), settled: false };
        assert_eq!(freshness(Some(own), (t0, t0), t0), Freshness::Unchanged);
        // Once settled, our own stamp is verified by one full scan.
        assert_eq!(freshness(Some(own), (t0, t0), later), Freshness::Changed);
        assert_eq!(trust_after_scan((t0, t0), (t0, t0), later), settled);
        assert!(!trust_after_scan((t0, t0), (t1, t1), later).settled);
        assert!(!trust_after_scan((t0, t0), (t0, t0), t0).settled);
    }

    #[test]
    fn stale_tmp_files_are_removed_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let stale = dir.path().join("tmp/stale");
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(dir.path().join("tmp/fresh"), b"x").unwrap();
        let f = std::fs::File::options().write(true).open(&stale).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(37 * 3600)).unwrap();
        assert_eq!(clean_tmp(dir.path(), SystemTime::now()), 1);
        assert!(dir.path().join("tmp/fresh").exists() && !stale.exists());
    }
}
