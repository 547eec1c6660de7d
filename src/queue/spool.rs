//! The spool directory: `<id>.msg` (the message bytes as received) and `<id>.env`
//! (the [`Envelope`] as JSON) per item, and the crash-safe way to write them.
//!
//! Durability rule (architecture.md, "durable before acknowledged"): every file is
//! written to a dot-temp name, fsynced, renamed into place, and the directory fsynced,
//! all through `crate::durable`, so after a crash an item is either whole or absent. The
//! message is renamed before its envelope: an `.env` always has its `.msg`, and a `.msg`
//! without `.env` is an enqueue that never returned (never acknowledged), which recovery
//! removes, as it removes the dot-temp files (`.<name>.tmp<n>`) of writes a crash cut short.
//!
//! Everything here is blocking file I/O; the queue calls it from `spawn_blocking`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::envelope::{Envelope, QueueId};
use crate::datadir::PRIVATE_FILE_MODE;
use crate::durable::{SyncedFile, sync_dir, write_atomic};

/// One spool directory.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

/// What [`Spool::recover`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub envelopes: Vec<Envelope>,
    /// Files that could not be used, with the reason; they were renamed `*.broken`.
    pub broken: Vec<(PathBuf, String)>,
    /// Unacknowledged leftovers removed (temp files, messages without an envelope).
    pub removed: usize,
}

impl Spool {
    /// Use `dir`, creating it (0700) if needed.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        Ok(Spool { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn message_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    pub fn envelope_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(format!("{id}.env"))
    }

    /// Store a new item durably: message, then envelope, then one directory fsync.
    /// Never overwrites: an id already in use fails with `AlreadyExists` (the caller
    /// picks another id), so an id collision cannot replace someone else's message.
    /// The message file is `parts` written in order (trace and signature headers, then
    /// the content), so callers never join them into one buffer.
    pub fn create(&self, envelope: &Envelope, parts: &[&[u8]]) -> io::Result<()> {
        let msg = self.message_path(&envelope.id);
        if self.envelope_path(&envelope.id).exists() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "queue id in use"));
        }
        write_new(&msg, parts)?;
        if let Err(e) = write_new(&self.envelope_path(&envelope.id), &[&envelope.to_json()]) {
            let _ = fs::remove_file(&msg);
            return Err(e);
        }
        Ok(sync_dir(&self.dir)?)
    }

    /// Replace an envelope atomically (temp + rename + directory fsync).
    pub fn update(&self, envelope: &Envelope) -> io::Result<()> {
        Ok(write_atomic(&self.envelope_path(&envelope.id), &envelope.to_json(), PRIVATE_FILE_MODE)?)
    }

    pub fn read_message(&self, id: &QueueId) -> io::Result<Vec<u8>> {
        fs::read(self.message_path(id))
    }

    /// Remove an item: envelope first, so a crash in between leaves a `.msg` alone,
    /// which recovery cleans up instead of delivering again.
    pub fn remove(&self, id: &QueueId) -> io::Result<()> {
        match fs::remove_file(self.envelope_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = fs::remove_file(self.message_path(id));
        Ok(sync_dir(&self.dir)?)
    }

    /// Read every item back after a start or crash.
    pub fn recover(&self) -> io::Result<Recovered> {
        let mut out = Recovered::default();
        let mut messages = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp") {
                let _ = fs::remove_file(&path);
                out.removed += 1;
                continue;
            }
            if let Some(stem) = name.strip_suffix(".msg") {
                messages.push(stem.to_string());
                continue;
            }
            let Some(stem) = name.strip_suffix(".env") else { continue };
            let problem = match fs::read(&path) {
                Err(e) => Some(format!("cannot read: {e}")),
                Ok(bytes) => match Envelope::from_json(&bytes) {
                    Err(e) => Some(format!("not a valid envelope: {e}")),
                    Ok(env) if env.id.as_str() != stem => {
                        Some(format!("envelope id {} differs from file name", env.id))
                    }
                    Ok(env) if !self.message_path(&env.id).exists() => Some("its .msg file is missing".to_string()),
                    Ok(env) => {
                        out.envelopes.push(env);
                        None
                    }
                },
            };
            if let Some(why) = problem {
                let broken = path.with_extension("env.broken");
                let _ = fs::rename(&path, &broken);
                out.broken.push((path, why));
            }
        }
        for stem in messages {
            if !self.dir.join(format!("{stem}.env")).exists() && !self.dir.join(format!("{stem}.env.broken")).exists() {
                let _ = fs::remove_file(self.dir.join(format!("{stem}.msg")));
                out.removed += 1;
            }
        }
        if out.removed > 0 || !out.broken.is_empty() {
            sync_dir(&self.dir)?;
        }
        out.envelopes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// Write `parts` in order, durably, under the new name `path`, failing with
/// `AlreadyExists` instead of replacing it. The file is fsynced; the caller fsyncs the
/// directory once for the `.msg` and the `.env`.
fn write_new(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let mut file = SyncedFile::beside(path, PRIVATE_FILE_MODE)?;
    for part in parts {
        file.write_all(part)?;
    }
    Ok(file.commit_new(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Address;

    fn envelope() -> Envelope {
        Envelope::new(QueueId::generate(), None, &[Address::parse("x@remote.test").unwrap()], "<m@x>")
    }

    #[test]
    fn create_update_recover_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        let mut env = envelope();
        spool.create(&env, &[b"Subject: hi\r\n\r\nbody\r\n".as_slice()]).unwrap();
        env.attempts = 2;
        spool.update(&env).unwrap();
        let rec = spool.recover().unwrap();
        assert_eq!(rec.envelopes.len(), 1);
        assert_eq!(rec.envelopes[0].attempts, 2);
        assert_eq!(spool.read_message(&env.id).unwrap(), b"Subject: hi\r\n\r\nbody\r\n");
        spool.remove(&env.id).unwrap();
        assert!(spool.recover().unwrap().envelopes.is_empty());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_id_in_use_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        let env = envelope();
        spool.create(&env, &[b"first".as_slice()]).unwrap();
        let err = spool.create(&env, &[b"second".as_slice()]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(spool.read_message(&env.id).unwrap(), b"first");
        // A leftover .msg alone (no envelope) also blocks the id.
        let other = envelope();
        fs::write(spool.message_path(&other.id), b"old").unwrap();
        assert_eq!(spool.create(&other, &[b"new".as_slice()]).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn recovery_drops_unacknowledged_and_keeps_broken_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        // A crash between the .msg rename and the .env rename: never acknowledged.
        fs::write(tmp.path().join("00000000000000000001.msg"), b"x").unwrap();
        fs::write(tmp.path().join(".00000000000000000002.env.tmp77"), b"{").unwrap();
        // A damaged envelope is kept for the operator, not deleted, not fatal.
        fs::write(tmp.path().join("00000000000000000003.msg"), b"x").unwrap();
        fs::write(tmp.path().join("00000000000000000003.env"), b"{not json").unwrap();
        let rec = spool.recover().unwrap();
        assert!(rec.envelopes.is_empty());
        assert_eq!(rec.removed, 2);
        assert_eq!(rec.broken.len(), 1);
        assert!(tmp.path().join("00000000000000000003.env.broken").exists());
        assert!(tmp.path().join("00000000000000000003.msg").exists());
    }
}
