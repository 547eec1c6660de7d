//! The per-mailbox header cache: the header block of each message, kept next to the index.
//!
//! Owns: `state/index/<domain>/<local>/<folder>.hdr`. Mail clients list folders with
//! `FETCH n:m (ENVELOPE)` or `BODY.PEEK[HEADER.FIELDS (...)]` and search with `FROM`,
//! `SUBJECT`, `HEADER`: all of them need only the top-level header block. Reading it from
//! one cache file (a `pread` per message, one blocking hop per batch) instead of opening,
//! reading and closing every message file is what made those commands several times
//! faster (bench/README.md); Dovecot's `dovecot.index.cache` exists for the same reason.
//!
//! The cache is only a copy: nothing here is fsynced or acknowledged, and anything wrong
//! with the file (torn tail after a crash, damage, another UIDVALIDITY) just drops the bad
//! part, which is then read from the Maildir again. Messages never change under a UID, so
//! an entry never goes stale; expunged messages leave dead records that are dropped when
//! the file is rewritten at load (more dead than live bytes).
//!
//! Format: an 8-byte magic `MRHDR2\0\0`, the UIDVALIDITY (u32 LE), then records:
//! `uid u32 LE · len u32 LE · crc32(uid, len, bytes) u32 LE · bytes`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"MRHDR2\0\0";
const FILE_HEADER: u64 = 12;
const RECORD_HEADER: usize = 12;
/// Header blocks longer than this are not cached (read from the message file each time).
pub const MAX_CACHED_HEADER: usize = 256 * 1024;
/// Records read with one `pread` at most (a batch of headers, not a whole mailbox).
const MAX_RUN_BYTES: u64 = 1 << 20;
/// Do not bother rewriting small files.
const MIN_REWRITE_BYTES: u64 = 1 << 20;

/// The open cache of one mailbox: where each UID's header block is in the file.
#[derive(Debug)]
pub struct HeaderCache {
    path: PathBuf,
    uid_validity: u32,
    /// `None` when the file cannot be written (the cache then only reads message files).
    file: Option<File>,
    entries: HashMap<u32, (u64, u32)>,
    len: u64,
    /// File length past which [`HeaderCache::compact`] is due: a mailbox kept open (an
    /// IDLE client holds it for days) never reloads, so its dead records must be dropped
    /// while it is open, or the file and `entries` grow with every message ever received.
    next_check: u64,
}

/// CRC-32 of a record (SIMD-accelerated: a byte-at-a-time hash was a third of the CPU time
/// of `SEARCH FROM` over cached headers).
fn checksum(uid: u32, bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&uid.to_le_bytes());
    h.update(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    h.update(bytes);
    h.finalize()
}

fn record(uid: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + bytes.len());
    out.extend_from_slice(&uid.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(uid, bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Where the header block of a CRLF message ends: after the first empty line, or the whole
/// input when there is none yet. `None` while more input could still hold the blank line.
pub fn header_end(bytes: &[u8], complete: bool) -> Option<usize> {
    if bytes.starts_with(b"\r\n") {
        return Some(2);
    }
    match memchr::memmem::find(bytes, b"\r\n\r\n") {
        Some(i) => Some(i + 4),
        None if complete => Some(bytes.len()),
        None => None,
    }
}

/// Valid records of a cache file image: uid -> (offset, len), and the length of the valid
/// prefix (everything after it is torn or damaged).
fn scan(bytes: &[u8]) -> (HashMap<u32, (u64, u32)>, u64) {
    let mut entries = HashMap::new();
    let mut pos = FILE_HEADER as usize;
    while bytes.len() - pos >= RECORD_HEADER {
        let word = |i: usize| u32::from_le_bytes(bytes[pos + i..pos + i + 4].try_into().unwrap_or_default());
        let (uid, len, sum) = (word(0), word(4), word(8));
        let start = pos + RECORD_HEADER;
        let Some(end) = start.checked_add(len as usize).filter(|e| *e <= bytes.len()) else {
            break;
        };
        if checksum(uid, &bytes[start..end]) != sum {
            break;
        }
        entries.insert(uid, (start as u64, len));
        pos = end;
    }
    (entries, pos as u64)
}

impl HeaderCache {
    /// Open (or create) the cache at `path` for a mailbox with `uid_validity`; `live` says
    /// which UIDs still exist. A file for another UIDVALIDITY, or one with more dead than
    /// live bytes, is rewritten. Never fails: an unusable file leaves a cache that only
    /// reads message files. Blocking.
    pub fn open(path: &Path, uid_validity: u32, live: impl Fn(u32) -> bool) -> HeaderCache {
        let mut cache = HeaderCache {
            path: path.to_path_buf(),
            uid_validity,
            file: None,
            entries: HashMap::new(),
            len: 0,
            next_check: MIN_REWRITE_BYTES,
        };
        let bytes = std::fs::read(path).unwrap_or_default();
        let ours =
            bytes.len() as u64 >= FILE_HEADER && &bytes[..8] == MAGIC && bytes[8..12] == uid_validity.to_le_bytes();
        if ours {
            let (entries, valid) = scan(&bytes);
            let live_bytes: u64 = entries.iter().filter(|(u, _)| live(**u)).map(|(_, (_, l))| u64::from(*l)).sum();
            if valid > MIN_REWRITE_BYTES && valid - FILE_HEADER > 2 * live_bytes {
                let kept: Vec<(u32, &[u8])> = entries
                    .iter()
                    .filter(|(u, _)| live(**u))
                    .map(|(u, (off, len))| (*u, &bytes[*off as usize..(*off + u64::from(*len)) as usize]))
                    .collect();
                cache.rewrite(&kept);
                return cache;
            }
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(file) => {
                    if valid < bytes.len() as u64 {
                        // A torn or damaged tail: cut it so new records follow valid ones.
                        let _ = file.set_len(valid);
                    }
                    cache.entries = entries;
                    cache.len = valid;
                    cache.next_check = MIN_REWRITE_BYTES.max(2 * valid);
                    cache.file = Some(file);
                }
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "header cache not writable"),
            }
            return cache;
        }
        cache.rewrite(&[]);
        cache
    }

    /// Replace the file with these records (tmp + rename; not fsynced: it is a cache).
    fn rewrite(&mut self, kept: &[(u32, &[u8])]) {
        let tmp = self.path.with_extension("hdr.tmp");
        let mut image =
            Vec::with_capacity(FILE_HEADER as usize + kept.iter().map(|(_, b)| b.len() + 12).sum::<usize>());
        image.extend_from_slice(MAGIC);
        image.extend_from_slice(&self.uid_validity.to_le_bytes());
        let mut entries = HashMap::with_capacity(kept.len());
        for (uid, bytes) in kept {
            entries.insert(*uid, ((image.len() + RECORD_HEADER) as u64, bytes.len() as u32));
            image.extend_from_slice(&record(*uid, bytes));
        }
        let written = std::fs::write(&tmp, &image)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .and_then(|()| OpenOptions::new().read(true).write(true).open(&self.path));
        match written {
            Ok(file) => {
                self.file = Some(file);
                self.entries = entries;
                self.len = image.len() as u64;
                self.next_check = MIN_REWRITE_BYTES.max(2 * self.len);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::debug!(path = %self.path.display(), error = %e, "header cache not writable");
            }
        }
    }

    /// Has the file doubled since it was last looked at? (Then call
    /// [`HeaderCache::compact`] with the UIDs that still exist: the check is amortised over
    /// the appends that doubled it.)
    pub fn compaction_due(&self) -> bool {
        self.len > self.next_check
    }

    /// Forget the records of UIDs no longer `live` and, when dead bytes outnumber live ones
    /// twice over (as [`HeaderCache::open`] decides), rewrite the file with the live ones.
    /// Blocking. A record that cannot be read back is just not kept (it is a cache).
    pub fn compact(&mut self, live: impl Fn(u32) -> bool) {
        self.entries.retain(|uid, _| live(*uid));
        let live_bytes: u64 = self.entries.values().map(|(_, len)| u64::from(*len) + RECORD_HEADER as u64).sum();
        if self.len > MIN_REWRITE_BYTES && self.len - FILE_HEADER > 2 * live_bytes {
            let mut uids: Vec<u32> = self.entries.keys().copied().collect();
            uids.sort_unstable();
            let kept: Vec<(u32, bytes::Bytes)> = uids.into_iter().filter_map(|u| Some((u, self.get(u)?))).collect();
            let kept: Vec<(u32, &[u8])> = kept.iter().map(|(u, b)| (*u, b.as_ref())).collect();
            self.rewrite(&kept);
        }
        self.next_check = MIN_REWRITE_BYTES.max(2 * self.len);
    }

    /// The UIDVALIDITY this cache is for.
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// The cached header block of `uid`, if present and intact.
    pub fn get(&self, uid: u32) -> Option<bytes::Bytes> {
        self.get_many(&[uid]).pop().flatten()
    }

    /// The cached header blocks of `uids` (`None` for one not cached or damaged), reading
    /// records that lie back to back in the file with one `pread` (they do when they were
    /// cached in UID order, as a first SEARCH or FETCH over the mailbox caches them): a
    /// header SEARCH over 100,000 messages made 100,000 `pread`s, now a few hundred.
    pub fn get_many(&self, uids: &[u32]) -> Vec<Option<bytes::Bytes>> {
        let Some(file) = self.file.as_ref() else {
            return vec![None; uids.len()];
        };
        let mut out = Vec::with_capacity(uids.len());
        let mut i = 0;
        while i < uids.len() {
            let Some(&(offset, len)) = self.entries.get(&uids[i]) else {
                out.push(None);
                i += 1;
                continue;
            };
            // The run of records from uids[i] on that follow each other in the file.
            let start = offset - RECORD_HEADER as u64;
            let mut end = offset + u64::from(len);
            let mut run = 1;
            while let Some(&(o, l)) = uids.get(i + run).and_then(|u| self.entries.get(u)) {
                if o - RECORD_HEADER as u64 != end || end - start > MAX_RUN_BYTES {
                    break;
                }
                end = o + u64::from(l);
                run += 1;
            }
            let mut buf = vec![0u8; (end - start) as usize];
            let read = file.read_exact_at(&mut buf, start).is_ok();
            let buf = bytes::Bytes::from(buf);
            let mut at = 0usize;
            for &uid in &uids[i..i + run] {
                let len = self.entries.get(&uid).map_or(0, |e| e.1 as usize);
                let (head, body) = (at..at + RECORD_HEADER, at + RECORD_HEADER..at + RECORD_HEADER + len);
                let sum = buf[head][8..12].try_into().map(u32::from_le_bytes);
                let good = read && sum.is_ok_and(|sum| checksum(uid, &buf[body.clone()]) == sum);
                out.push(good.then(|| buf.slice(body.clone())));
                at = body.end;
            }
            i += run;
        }
        out
    }

    /// Remember the header block of `uid` (best effort).
    pub fn put(&mut self, uid: u32, header: &[u8]) {
        if header.len() > MAX_CACHED_HEADER || self.entries.contains_key(&uid) {
            return;
        }
        let Some(file) = self.file.as_ref() else {
            return;
        };
        let rec = record(uid, header);
        match file.write_all_at(&rec, self.len) {
            Ok(()) => {
                self.entries.insert(uid, (self.len + RECORD_HEADER as u64, header.len() as u32));
                self.len += rec.len() as u64;
            }
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "header cache write failed");
                let _ = file.set_len(self.len);
            }
        }
    }
}

/// Read the header block of a CRLF message file whose wire size is `size`. `Ok(None)` when
/// the file is not plain CRLF of that size (LF files are converted by the streaming path)
/// or its header is longer than [`MAX_CACHED_HEADER`]. Blocking.
pub fn read_header_from_file(path: &Path, size: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = File::open(path)?;
    if file.metadata()?.len() != size {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(8192.min(size as usize));
    let mut chunk = [0u8; 8192];
    loop {
        let n = file.read(&mut chunk)?;
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = header_end(&buf[searched_from..], n == 0).map(|e| e + searched_from) {
            // `header_end` on a suffix cannot see a message that starts with CRLF.
            let end = if buf.starts_with(b"\r\n") { 2 } else { end };
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() > MAX_CACHED_HEADER {
            return Ok(None);
        }
    }
}

/// For tests: write `bytes` as a whole cache file image.
#[cfg(test)]
fn write_image(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_end_finds_the_blank_line() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody", false), Some(8));
        assert_eq!(header_end(b"\r\nbody", false), Some(2));
        assert_eq!(header_end(b"A: b\r\n", false), None);
        assert_eq!(header_end(b"A: b\r\n", true), Some(6));
    }

    #[test]
    fn put_get_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("INBOX.hdr");
        let mut c = HeaderCache::open(&path, 7, |_| true);
        assert_eq!(c.get(1), None);
        c.put(1, b"From: a\r\n\r\n");
        c.put(2, b"Subject: b\r\n\r\n");
        assert_eq!(c.get(1).as_deref(), Some(&b"From: a\r\n\r\n"[..]));
        let c = HeaderCache::open(&path, 7, |_| true);
        assert_eq!(c.get(2).as_deref(), Some(&b"Subject: b\r\n\r\n"[..]));
        // Another UIDVALIDITY: the UIDs mean other messages now.
        let c = HeaderCache::open(&path, 8, |_| true);
        assert_eq!(c.get(1), None);
        assert_eq!(c.uid_validity(), 8);
    }

    #[test]
    fn many_records_read_in_runs_give_what_single_reads_give() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("INBOX.hdr");
        let mut c = HeaderCache::open(&path, 7, |_| true);
        for uid in [1, 2, 3, 5, 4] {
            c.put(uid, format!("Subject: {uid}\r\n\r\n").as_bytes());
        }
        // 6 was never cached; 4 sits after 5 in the file; 3 is asked twice.
        let uids = [1, 2, 3, 3, 6, 4, 5];
        let want: Vec<Option<bytes::Bytes>> =
            uids.iter().map(|u| (*u != 6).then(|| format!("Subject: {u}\r\n\r\n").into())).collect();
        assert_eq!(c.get_many(&uids), want);
        assert_eq!(c.get(4), want[5]);
        // A damaged record inside a run costs only itself.
        let (offset, _) = c.entries[&2];
        c.file.as_ref().unwrap().write_all_at(b"X", offset).unwrap();
        let got = c.get_many(&[1, 2, 3]);
        assert!(got[0].is_some() && got[1].is_none() && got[2].is_some(), "{got:?}");
    }

    #[test]
    fn torn_or_damaged_tails_are_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.hdr");
        let mut c = HeaderCache::open(&path, 1, |_| true);
        c.put(1, b"A: 1\r\n\r\n");
        c.put(2, b"A: 2\r\n\r\n");
        let mut image = std::fs::read(&path).unwrap();
        let last = image.len() - 3;
        image[last] ^= 0xff;
        write_image(&path, &image);
        let mut c = HeaderCache::open(&path, 1, |_| true);
        assert!(c.get(1).is_some());
        assert_eq!(c.get(2), None);
        c.put(3, b"A: 3\r\n\r\n");
        let c = HeaderCache::open(&path, 1, |_| true);
        assert_eq!(c.get(3).as_deref(), Some(&b"A: 3\r\n\r\n"[..]));
        // Garbage never panics.
        for n in 0..image.len() {
            write_image(&path, &image[..n]);
            let _ = HeaderCache::open(&path, 1, |_| true).get(1);
        }
    }

    #[test]
    fn dead_records_are_dropped_by_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.hdr");
        let mut c = HeaderCache::open(&path, 1, |_| true);
        let big = vec![b'x'; 64 * 1024];
        for uid in 1..=40 {
            c.put(uid, &big);
        }
        let before = std::fs::metadata(&path).unwrap().len();
        let c = HeaderCache::open(&path, 1, |uid| uid == 40);
        assert!(std::fs::metadata(&path).unwrap().len() < before / 10);
        assert_eq!(c.get(40).map(|b| b.len()), Some(big.len()));
        assert_eq!(c.get(1), None);
    }

    /// A mailbox that stays open while messages come and go (POP3 DELE, EXPUNGE) keeps a
    /// file and a map bounded by its live messages, not by every message it ever had.
    #[test]
    fn an_open_cache_stays_bounded_while_messages_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.hdr");
        let mut c = HeaderCache::open(&path, 1, |_| true);
        let header = vec![b'h'; 2000];
        let mut max_len = 0;
        for uid in 1..=20_000u32 {
            c.put(uid, &header);
            // Ten messages live at a time, as each newer one arrives an older one goes.
            if c.compaction_due() {
                c.compact(|u| u + 10 > uid);
            }
            max_len = max_len.max(std::fs::metadata(&path).unwrap().len());
        }
        assert!(max_len <= 2 * MIN_REWRITE_BYTES + 4096, "file reached {max_len} bytes");
        assert!(c.entries.len() < 2 * MIN_REWRITE_BYTES as usize / 2000, "{} entries", c.entries.len());
        assert_eq!(c.get(20_000).map(|b| b.len()), Some(header.len()));
        assert_eq!(c.get(19_991).map(|b| b.len()), Some(header.len()));
        c.compact(|u| u + 10 > 20_000);
        assert_eq!(c.get(1), None);
        let reopened = HeaderCache::open(&path, 1, |_| true);
        assert_eq!(reopened.get(19_995).map(|b| b.len()), Some(header.len()));
    }

    #[test]
    fn reads_the_header_block_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let msg = [&b"Subject: x\r\n"[..], &vec![b'y'; 9000], b"\r\n\r\nbody\r\n"].concat();
        std::fs::write(&path, &msg).unwrap();
        let h = read_header_from_file(&path, msg.len() as u64).unwrap().unwrap();
        assert_eq!(h.len(), msg.len() - 6);
        assert_eq!(read_header_from_file(&path, 3).unwrap(), None);
        std::fs::write(&path, b"\r\nbody").unwrap();
        assert_eq!(read_header_from_file(&path, 6).unwrap().unwrap(), b"\r\n");
        std::fs::write(&path, b"A: b\r\n").unwrap();
        assert_eq!(read_header_from_file(&path, 6).unwrap().unwrap(), b"A: b\r\n");
    }
}
