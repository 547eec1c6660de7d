//! Writing a message body into a Maildir `tmp/` file, durably: the store's thin layer on
//! top of `crate::durable`, which owns every fsync (and explains why each one matters).
//!
//! What stays here is store logic: a [`MessageBody`] is either in memory or a spool file
//! of an announced length, prefixed by the trace headers of one copy, and a spool file
//! shorter than announced is an error, not a shorter message. The caller renames the file
//! into `new/` or `cur/` (the Maildir protocol) and fsyncs that directory through
//! [`GroupSync`](crate::durable::GroupSync) before it acknowledges.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use super::error::StoreError;
use super::types::MessageBody;
use crate::durable::SyncedFile;

/// The mode of every file the store creates (messages, index, keywords, subscriptions):
/// what `File::create` gives, narrowed by the umask, as Dovecot and Postfix create theirs.
pub const FILE_MODE: u32 = 0o666;

/// Create `path` (which must not exist), write `prefix` then `body`, and fsync it. Blocking.
/// Returns the number of bytes written. On error nothing is left at `path`.
pub fn write_new_file(path: &Path, prefix: &[u8], body: &MessageBody) -> Result<u64, StoreError> {
    let mut file = SyncedFile::create_new(path, FILE_MODE)?;
    // Dropping `file` on an error removes it.
    let n = fill(&mut file, prefix, body).map_err(|e| StoreError::io(path, e))?;
    file.sync_in_place()?;
    Ok(n)
}

/// A file without a name in `dir` holding `prefix` then `body`, fdatasynced, for the
/// caller to name with [`SyncedFile::link_unnamed`] (see [`SyncedFile::unnamed`]).
/// Blocking. `Unsupported` where the system cannot do it; the caller then takes `tmp/`.
pub fn write_unnamed(dir: &Path, prefix: &[u8], body: &MessageBody) -> Result<SyncedFile, StoreError> {
    let mut file = SyncedFile::unnamed(dir, FILE_MODE)?;
    fill(&mut file, prefix, body).map_err(|e| StoreError::io(dir, e))?;
    file.sync_unnamed()?;
    Ok(file)
}

/// `prefix` then `body` into `file`; the byte count.
fn fill(file: &mut SyncedFile, prefix: &[u8], body: &MessageBody) -> io::Result<u64> {
    file.write_all(prefix)?;
    let mut n = prefix.len() as u64;
    match body {
        MessageBody::Memory(b) => {
            file.write_all(b)?;
            n += b.len() as u64;
        }
        MessageBody::File { path: src, len } => {
            let copied = file.copy_from(&mut File::open(src)?.take(*len))?;
            if copied != *len {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "spool file shorter than announced"));
            }
            n += copied;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_file_refuses_to_overwrite_and_copies_spool_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::write(&spool, b"body\r\nextra").unwrap();
        let target = dir.path().join("msg");
        let body = MessageBody::File { path: spool.clone(), len: 6 };
        assert_eq!(write_new_file(&target, b"H: 1\r\n", &body).unwrap(), 12);
        assert_eq!(std::fs::read(&target).unwrap(), b"H: 1\r\nbody\r\n");
        assert!(write_new_file(&target, b"", &body).is_err());
        let short = MessageBody::File { path: spool, len: 99 };
        assert!(write_new_file(&dir.path().join("m2"), b"", &short).is_err());
        assert!(!dir.path().join("m2").exists());
    }
}
