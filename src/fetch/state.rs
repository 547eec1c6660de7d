//! What each source has fetched already, so a message is fetched once across restarts
//! and crashes: for POP3 the UIDLs seen (pruned to those still on the server), for IMAP
//! the folder's UIDVALIDITY and the highest UID done; and the one message in flight
//! (`pending`) with where its copy would land, so a crash between the local copy and
//! the record can be told apart from a crash before the copy (see `run.rs`).
//!
//! Kept in the data dir, `state/fetch/<digest of "local <- URL">.state`, a small text
//! file replaced atomically and fsynced (`durable::write_atomic`) at every change. It
//! belongs to this server's data dir even with the PostgreSQL store: run the fetch on
//! one replica (docs/interface.md says so).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::entry::FetchSource;

/// The message whose local copy may or may not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The remote id: the UIDL, or the IMAP UID.
    pub id: String,
    /// The local folder's UIDNEXT before the delivery: a copy, if made, has a UID at or
    /// above it.
    pub uid_next: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    /// IMAP: the folder's UIDVALIDITY the UIDs below belong to.
    pub uid_validity: Option<u32>,
    /// IMAP: every UID up to this one is delivered.
    pub last_uid: u32,
    /// POP3: the UIDLs delivered and still on the server.
    pub seen: BTreeSet<String>,
    pub pending: Option<Pending>,
}

/// `state/fetch/` under the data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("fetch")
}

/// The file of one source: named after the local account and URL, so reordering
/// `MAILROOM_FETCH` keeps each source's record.
pub fn path(data_dir: &Path, source: &FetchSource) -> PathBuf {
    let key = format!("{} <- {}", source.local, source.url);
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
    dir(data_dir).join(format!("{hex}.state"))
}

impl SourceState {
    /// The record, or an empty one when the source was never fetched. A line it does not
    /// understand is an error: guessing could fetch everything again.
    pub fn load(path: &Path) -> Result<SourceState, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SourceState::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut state = SourceState::default();
        for line in text.lines() {
            let bad = || format!("{}: unreadable line {line:?}", path.display());
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "" | "#" => {}
                "uidvalidity" => state.uid_validity = Some(value.parse().map_err(|_| bad())?),
                "last" => state.last_uid = value.parse().map_err(|_| bad())?,
                "seen" => {
                    state.seen.insert(value.to_string());
                }
                "pending" => {
                    let (uid_next, id) = value.split_once(' ').ok_or_else(bad)?;
                    state.pending =
                        Some(Pending { id: id.to_string(), uid_next: uid_next.parse().map_err(|_| bad())? });
                }
                _ => return Err(bad()),
            }
        }
        Ok(state)
    }

    fn render(&self, source: &FetchSource) -> String {
        let mut out = format!("# {} <- {}\n", source.local, source.url);
        if let Some(v) = self.uid_validity {
            out.push_str(&format!("uidvalidity {v}\nlast {}\n", self.last_uid));
        }
        for id in &self.seen {
            out.push_str(&format!("seen {id}\n"));
        }
        if let Some(p) = &self.pending {
            out.push_str(&format!("pending {} {}\n", p.uid_next, p.id));
        }
        out
    }

    /// Durable when it returns (temp file, fsync, rename, directory fsync). Blocking.
    pub fn save(&self, path: &Path, source: &FetchSource) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        crate::durable::write_atomic(path, self.render(source).as_bytes(), 0o600).map_err(|e| e.to_string())
    }

    /// Is this remote message delivered already?
    pub fn done(&self, id: &str, imap_uid: Option<u32>) -> bool {
        match imap_uid {
            Some(uid) => uid <= self.last_uid,
            None => self.seen.contains(id),
        }
    }

    /// Record a delivered message (and clear the pending marker).
    pub fn mark_done(&mut self, id: &str, imap_uid: Option<u32>) {
        match imap_uid {
            Some(uid) => self.last_uid = self.last_uid.max(uid),
            None => {
                self.seen.insert(id.to_string());
            }
        }
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let source = super::super::entry::parse_entries("a@example.com <- pop3s://u@h").unwrap().remove(0);
        let path = path(dir.path(), &source);
        assert_eq!(SourceState::load(&path).unwrap(), SourceState::default());
        let mut state = SourceState { uid_validity: Some(7), last_uid: 3, ..SourceState::default() };
        state.seen.insert("000001a.b".into());
        state.pending = Some(Pending { id: "x y".into(), uid_next: 12 });
        state.save(&path, &source).unwrap();
        assert_eq!(SourceState::load(&path).unwrap(), state);
        std::fs::write(&path, "what 1\n").unwrap();
        assert!(SourceState::load(&path).unwrap_err().contains("unreadable line"));
    }
}
