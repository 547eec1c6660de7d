//! The per-mailbox index: an append-only, checksummed record log.
//!
//! Owns: `state/index/<domain>/<local>/<folder>.idx`, which keeps what a Maildir cannot —
//! UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, uid -> base name, keywords, modseqs, wire sizes,
//! internal dates and expunge tombstones (for QRESYNC `VANISHED (EARLIER)`). A 50,000-message
//! SELECT / `FETCH 1:* FLAGS` is answered from here without opening message files.
//!
//! Format: one record per line, `<fnv1a32 hex>\t<payload>`, payload fields TAB-separated.
//! Text so an operator can read it; the checksum detects torn or damaged lines. A torn
//! *last* line is a crash during an append that was never acknowledged: it is dropped. Any
//! other damage makes the index corrupt: the caller rebuilds it from the Maildir with a new
//! UIDVALIDITY. The log is replayed at open and rewritten atomically (tmp + fsync + rename
//! + dir fsync) when it holds more than twice the live records.
//!
//! Record payloads:
//! `H 1 <uidvalidity>` header (first line) · `S <uidnext> <highestmodseq>` counters ·
//! `A <uid> <modseq> <size> <secs> <nanos> <letters> <keywords> <base>` message added ·
//! `F <uid> <modseq> <letters> <keywords>` flags changed · `X <uid> <modseq>` expunged ·
//! `T <uid> <modseq>` tombstone carried over by compaction. Keywords are space-separated
//! (IMAP atoms contain no space); the base name is the last field.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::durable::FILE_MODE;
use super::error::StoreError;
use super::filename::FlagSet;
use crate::durable::{AppendLog, write_atomic_via};

/// Expunge tombstones kept for QRESYNC (brief: the last 10,000).
pub const MAX_TOMBSTONES: usize = 10_000;
/// Do not compact tiny logs.
const MIN_COMPACT_RECORDS: usize = 1_000;

/// One message as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Maildir base name (stable id).
    pub base: String,
    /// Flags and keywords.
    pub flags: FlagSet,
    /// Modseq of the last change.
    pub modseq: u64,
    /// Wire (CRLF) size.
    pub size: u64,
    /// INTERNALDATE.
    pub internal_date: SystemTime,
    /// Current file name in `cur/` (not persisted: derived, then corrected by a scan).
    pub file_name: String,
}

/// The replayed state of a mailbox index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexData {
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// Next UID to assign.
    pub uid_next: u32,
    /// Highest modseq used.
    pub highest_modseq: u64,
    /// Messages by uid.
    pub messages: BTreeMap<u32, IndexEntry>,
    /// Expunged (uid, modseq), oldest first.
    pub tombstones: VecDeque<(u32, u64)>,
    /// Messages from this UID on are `\Recent` for the next session that selects the
    /// mailbox (RFC 3501 2.3.2; Dovecot keeps "first recent UID" in its index header).
    /// `None` in a log written before it was recorded: nothing is recent then.
    pub first_recent_uid: Option<u32>,
}

/// A change to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Header.
    Header { uid_validity: u32 },
    /// Counters.
    Counters { uid_next: u32, highest_modseq: u64 },
    /// Message added.
    Add { uid: u32, entry: IndexEntry },
    /// Flags changed.
    Flags { uid: u32, modseq: u64, flags: FlagSet },
    /// Message expunged.
    Expunge { uid: u32, modseq: u64 },
    /// Tombstone (compaction).
    Tombstone { uid: u32, modseq: u64 },
    /// The `\Recent` messages below this UID have been claimed by a session.
    Recent { first_uid: u32 },
}

/// Why a log could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexCorrupt {
    /// A damaged record before the last line, or a missing header.
    #[error("corrupt index record at line {line}")]
    BadRecord {
        /// 1-based line number.
        line: usize,
        /// UIDVALIDITY from the header, if it could be read (the rebuild must exceed it).
        uid_validity: Option<u32>,
    },
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

fn date_parts(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

/// Encode one record as a full line (checksum, payload, newline).
pub fn encode(rec: &Record) -> String {
    let payload = match rec {
        Record::Header { uid_validity } => format!("H\t1\t{uid_validity}"),
        Record::Counters { uid_next, highest_modseq } => format!("S\t{uid_next}\t{highest_modseq}"),
        Record::Add { uid, entry } => {
            let (s, n) = date_parts(entry.internal_date);
            format!(
                "A\t{uid}\t{}\t{}\t{s}\t{n}\t{}\t{}\t{}",
                entry.modseq,
                entry.size,
                entry.flags.letters(),
                entry.flags.keywords().join(" "),
                entry.base
            )
        }
        Record::Flags { uid, modseq, flags } => {
            format!("F\t{uid}\t{modseq}\t{}\t{}", flags.letters(), flags.keywords().join(" "))
        }
        Record::Expunge { uid, modseq } => format!("X\t{uid}\t{modseq}"),
        Record::Tombstone { uid, modseq } => format!("T\t{uid}\t{modseq}"),
        Record::Recent { first_uid } => format!("R\t{first_uid}"),
    };
    format!("{:08x}\t{payload}\n", fnv1a(payload.as_bytes()))
}

fn keywords(field: &str) -> impl Iterator<Item = String> + '_ {
    field.split(' ').filter(|k| !k.is_empty()).map(str::to_string)
}

/// Decode one line (without the newline). `None` when damaged.
pub fn decode(line: &str) -> Option<Record> {
    let (sum, payload) = line.split_once('\t')?;
    if sum.len() != 8 || u32::from_str_radix(sum, 16).ok()? != fnv1a(payload.as_bytes()) {
        return None;
    }
    let f: Vec<&str> = payload.splitn(9, '\t').collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    let uid = |i: usize| f.get(i).and_then(|s| s.parse::<u32>().ok());
    Some(match *f.first()? {
        "H" if f.len() == 3 && f[1] == "1" => Record::Header { uid_validity: uid(2)? },
        "S" if f.len() == 3 => Record::Counters { uid_next: uid(1)?, highest_modseq: num(2)? },
        "A" if f.len() == 9 => {
            let flags = FlagSet::from_parts(f[6], keywords(f[7]));
            Record::Add {
                uid: uid(1)?,
                entry: IndexEntry {
                    modseq: num(2)?,
                    size: num(3)?,
                    internal_date: UNIX_EPOCH.checked_add(Duration::new(num(4)?, uid(5)?.min(999_999_999)))?,
                    // A guess (keyword letters unknown here); the first scan corrects it.
                    file_name: super::filename::cur_name(f[8], &flags, ""),
                    flags,
                    base: f[8].to_string(),
                },
            }
        }
        "F" if f.len() == 5 => {
            Record::Flags { uid: uid(1)?, modseq: num(2)?, flags: FlagSet::from_parts(f[3], keywords(f[4])) }
        }
        "X" if f.len() == 3 => Record::Expunge { uid: uid(1)?, modseq: num(2)? },
        "T" if f.len() == 3 => Record::Tombstone { uid: uid(1)?, modseq: num(2)? },
        "R" if f.len() == 2 => Record::Recent { first_uid: uid(1)? },
        _ => return None,
    })
}

impl IndexData {
    /// A fresh, empty index.
    pub fn new(uid_validity: u32) -> IndexData {
        IndexData { uid_validity, uid_next: 1, highest_modseq: 1, first_recent_uid: Some(1), ..IndexData::default() }
    }

    /// Apply one record (replay or live change).
    pub fn apply(&mut self, rec: &Record) {
        match rec {
            Record::Header { uid_validity } => self.uid_validity = *uid_validity,
            Record::Counters { uid_next, highest_modseq } => {
                self.uid_next = self.uid_next.max(*uid_next);
                self.highest_modseq = self.highest_modseq.max(*highest_modseq);
            }
            Record::Add { uid, entry } => {
                self.uid_next = self.uid_next.max(uid.saturating_add(1));
                self.highest_modseq = self.highest_modseq.max(entry.modseq);
                self.messages.insert(*uid, entry.clone());
            }
            Record::Flags { uid, modseq, flags } => {
                self.highest_modseq = self.highest_modseq.max(*modseq);
                if let Some(e) = self.messages.get_mut(uid) {
                    e.flags = flags.clone();
                    e.modseq = *modseq;
                }
            }
            Record::Recent { first_uid } => {
                self.first_recent_uid = Some(self.first_recent_uid.unwrap_or(0).max(*first_uid));
            }
            Record::Expunge { uid, modseq } | Record::Tombstone { uid, modseq } => {
                self.highest_modseq = self.highest_modseq.max(*modseq);
                self.uid_next = self.uid_next.max(uid.saturating_add(1));
                self.messages.remove(uid);
                self.tombstones.push_back((*uid, *modseq));
                while self.tombstones.len() > MAX_TOMBSTONES {
                    self.tombstones.pop_front();
                }
            }
        }
    }

    /// Replay a whole log. Returns the data and the byte length of the valid prefix (a torn
    /// last line is excluded and should be truncated away).
    pub fn replay(bytes: &[u8]) -> Result<(IndexData, usize), IndexCorrupt> {
        let mut data = IndexData::default();
        let mut valid_len = 0;
        let mut header = None;
        let mut pos = 0;
        let mut line_no = 0;
        while pos < bytes.len() {
            line_no += 1;
            let (line, next, complete) = match memchr::memchr(b'\n', &bytes[pos..]) {
                Some(i) => (&bytes[pos..pos + i], pos + i + 1, true),
                None => (&bytes[pos..], bytes.len(), false),
            };
            let rec = std::str::from_utf8(line).ok().and_then(decode);
            let is_last = next >= bytes.len();
            match rec {
                Some(rec) if complete => {
                    if line_no == 1 {
                        match rec {
                            Record::Header { uid_validity } => {
                                header = Some(uid_validity);
                                // Only an `R` record says what is recent (a log from
                                // before it was kept has none: nothing is).
                                data = IndexData { first_recent_uid: None, ..IndexData::new(uid_validity) };
                            }
                            _ => {
                                return Err(IndexCorrupt::BadRecord { line: 1, uid_validity: None });
                            }
                        }
                    } else {
                        data.apply(&rec);
                    }
                    valid_len = next;
                }
                // Torn tail: an append interrupted by a crash, never acknowledged.
                _ if is_last && line_no > 1 => break,
                _ => {
                    return Err(IndexCorrupt::BadRecord { line: line_no, uid_validity: header });
                }
            }
            pos = next;
        }
        if header.is_none() {
            return Err(IndexCorrupt::BadRecord { line: 1, uid_validity: None });
        }
        Ok((data, valid_len))
    }

    /// Records that recreate this state (compaction).
    pub fn snapshot_records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.messages.len() + self.tombstones.len() + 2);
        out.push(Record::Header { uid_validity: self.uid_validity });
        for (uid, modseq) in &self.tombstones {
            out.push(Record::Tombstone { uid: *uid, modseq: *modseq });
        }
        for (uid, entry) in &self.messages {
            out.push(Record::Add { uid: *uid, entry: entry.clone() });
        }
        out.push(Record::Counters { uid_next: self.uid_next, highest_modseq: self.highest_modseq });
        if let Some(first_uid) = self.first_recent_uid {
            out.push(Record::Recent { first_uid });
        }
        out
    }
}

/// The open log file of one mailbox. A failed append is cut back to the last whole record
/// ([`AppendLog`]), so a transient ENOSPC never leaves a torn record in the middle of the log.
pub struct IndexLog {
    log: AppendLog,
    records: usize,
}

impl std::fmt::Debug for IndexLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexLog").field("path", &self.log.path()).finish()
    }
}

/// Outcome of opening an index.
pub enum Opened {
    /// Replayed fine.
    Loaded(IndexData, IndexLog),
    /// Missing or corrupt: a fresh empty index was written; the caller must scan the Maildir.
    /// `previous` is the old UIDVALIDITY when it could be read.
    Rebuilt(IndexData, IndexLog, Option<u32>),
}

impl IndexLog {
    /// The log's path (batching key for fsync).
    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// The open file (for group-committed fsync).
    pub fn file(&self) -> Arc<File> {
        self.log.file()
    }

    /// Open and replay, or create a fresh index with the UIDVALIDITY `new_uid_validity`
    /// returns (given the old one, if readable). Blocking.
    pub fn open(path: &Path, new_uid_validity: impl FnOnce(Option<u32>) -> u32) -> Result<Opened, StoreError> {
        let io = |e| StoreError::io(path, e);
        match std::fs::read(path) {
            Ok(bytes) => match IndexData::replay(&bytes) {
                Ok((data, valid_len)) => {
                    let mut log = AppendLog::open(path, bytes.len() as u64)?;
                    if valid_len < bytes.len() {
                        tracing::warn!(path = %path.display(), "dropping torn last index record");
                        log.truncate(valid_len as u64)?;
                    }
                    let records = bytes[..valid_len].iter().filter(|b| **b == b'\n').count();
                    Ok(Opened::Loaded(data, IndexLog { log, records }))
                }
                Err(IndexCorrupt::BadRecord { line, uid_validity }) => {
                    tracing::warn!(path = %path.display(), line, "index corrupt; rebuilding from the Maildir with a new UIDVALIDITY");
                    let data = IndexData::new(new_uid_validity(uid_validity));
                    let log = IndexLog::write_fresh(path, &data)?;
                    Ok(Opened::Rebuilt(data, log, uid_validity))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let data = IndexData::new(new_uid_validity(None));
                let log = IndexLog::write_fresh(path, &data)?;
                Ok(Opened::Rebuilt(data, log, None))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Atomically replace the log with a snapshot of `data`. Blocking.
    pub fn write_fresh(path: &Path, data: &IndexData) -> Result<IndexLog, StoreError> {
        let dir = path.parent().ok_or_else(|| StoreError::io(path, std::io::ErrorKind::InvalidInput.into()))?;
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let tmp = path.with_extension("idx.tmp");
        let records = data.snapshot_records();
        let mut text = String::with_capacity(records.len() * 96);
        for r in &records {
            text.push_str(&encode(r));
        }
        write_atomic_via(&tmp, path, text.as_bytes(), FILE_MODE)?;
        let log = AppendLog::open(path, text.len() as u64)?;
        Ok(IndexLog { log, records: records.len() })
    }

    /// Append records (one `write`, page cache only; the caller then awaits a
    /// group-committed fsync before acknowledging).
    pub fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let mut text = String::with_capacity(records.len() * 96);
        for r in records {
            text.push_str(&encode(r));
        }
        self.log.append(text.as_bytes())?;
        self.records += records.len();
        Ok(())
    }

    /// True when the log holds more than twice the live records (then the caller rewrites
    /// it with [`IndexLog::write_fresh`], off the async threads).
    pub fn needs_compaction(&self, data: &IndexData) -> bool {
        let live = data.messages.len() + data.tombstones.len() + 2;
        self.records >= MIN_COMPACT_RECORDS && self.records > 2 * live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: &str, modseq: u64) -> IndexEntry {
        let flags = FlagSet::from_parts("S", ["$Junk".to_string(), "work".to_string()]);
        IndexEntry {
            file_name: super::super::filename::cur_name(base, &flags, ""),
            base: base.into(),
            flags,
            modseq,
            size: 42,
            internal_date: UNIX_EPOCH + Duration::new(1_700_000_000, 123),
        }
    }

    #[test]
    fn records_round_trip() {
        let recs = [
            Record::Header { uid_validity: 77 },
            Record::Counters { uid_next: 9, highest_modseq: 12 },
            Record::Add { uid: 3, entry: entry("1.M2P3Q4.h,S=42,W=42", 5) },
            Record::Flags { uid: 3, modseq: 6, flags: FlagSet::from_parts("FT", Vec::<String>::new()) },
            Record::Expunge { uid: 3, modseq: 7 },
            Record::Tombstone { uid: 2, modseq: 4 },
            Record::Recent { first_uid: 8 },
        ];
        for r in &recs {
            let line = encode(r);
            assert!(line.ends_with('\n'));
            assert_eq!(decode(line.trim_end_matches('\n')).as_ref(), Some(r));
        }
    }

    #[test]
    fn replay_drops_a_torn_tail_but_refuses_damage_in_the_middle() {
        let mut log = String::new();
        log.push_str(&encode(&Record::Header { uid_validity: 5 }));
        log.push_str(&encode(&Record::Add { uid: 1, entry: entry("a", 2) }));
        let good_len = log.len();
        log.push_str(&encode(&Record::Add { uid: 2, entry: entry("b", 3) }));
        let torn = &log.as_bytes()[..log.len() - 10];
        let (data, valid) = IndexData::replay(torn).unwrap();
        assert_eq!(valid, good_len);
        assert_eq!(data.messages.len(), 1);
        assert_eq!(data.uid_next, 2);

        let mut damaged = log.clone().into_bytes();
        damaged[good_len - 5] ^= 1; // flip a bit in record 2 of 3
        assert_eq!(IndexData::replay(&damaged), Err(IndexCorrupt::BadRecord { line: 2, uid_validity: Some(5) }));
        assert!(IndexData::replay(b"").is_err());
    }

    #[test]
    fn expunges_keep_uid_next_and_bounded_tombstones() {
        let mut d = IndexData::new(1);
        for uid in 1..=(MAX_TOMBSTONES as u32 + 5) {
            d.apply(&Record::Add { uid, entry: entry("x", u64::from(uid)) });
            d.apply(&Record::Expunge { uid, modseq: u64::from(uid) + 1 });
        }
        assert_eq!(d.tombstones.len(), MAX_TOMBSTONES);
        let (back, _) =
            IndexData::replay(d.snapshot_records().iter().map(encode).collect::<String>().as_bytes()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn garbage_in() {
        let mut seed = 99u32;
        let valid: String = [Record::Header { uid_validity: 5 }, Record::Add { uid: 1, entry: entry("a", 2) }]
            .iter()
            .map(encode)
            .collect();
        for len in 0..400 {
            let mut bytes: Vec<u8> = valid.as_bytes().iter().cycle().take(len).copied().collect();
            for b in bytes.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if seed >> 28 == 0 {
                    *b = (seed >> 8) as u8;
                }
            }
            let _ = IndexData::replay(&bytes);
        }
    }
}
