//! Periodic-fetch records in the data dir: `state/fetch/<source>.log`, one line per
//! [`FetchEvent`], appended in one write and fdatasynced before the call returns, so a
//! message costs two small durable writes whatever the record's size. Loading replays the
//! lines. A line cut by a crash (no newline yet) was never acknowledged: it is cut off.
//!
//! The log is compacted (the record written whole, atomically) once it has grown past
//! twice its last compacted size and [`COMPACT_MIN`]: each line is rewritten a bounded
//! number of times, so the cost per message stays constant.
//!
//! Lines: `uidvalidity <n>`, `last <uid>`, `done <id>`, `forget <id>`,
//! `pending <uid_next> <id>`, `abandon`. Anything else is an error rather than a guess:
//! guessing could fetch everything again.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::MaildirStore;
use crate::store::error::blocking;
use crate::store::{FetchEvent, FetchPending, FetchState, StoreError};

/// A log smaller than this is never compacted.
const COMPACT_MIN: u64 = 64 * 1024;

impl MaildirStore {
    fn fetch_dir(&self) -> PathBuf {
        self.inner.layout.state_root().join("fetch")
    }

    pub(super) async fn fetch_state_load_impl(&self, source: &str) -> Result<FetchState, StoreError> {
        let path = self.fetch_dir().join(format!("{source}.log"));
        let _guard = self.inner.fetch_lock.lock().await;
        blocking(move || load(&path)).await
    }

    pub(super) async fn fetch_record_impl(&self, source: &str, event: &FetchEvent) -> Result<(), StoreError> {
        let (dir, key, line) = (self.fetch_dir(), source.to_string(), render_event(event));
        let mut sizes = self.inner.fetch_lock.lock().await;
        let compacted = sizes.get(source).copied();
        let new_size = blocking(move || {
            let path = dir.join(format!("{key}.log"));
            let len = append(&dir, &path, line.as_bytes())?;
            let base = match compacted {
                Some(b) => b,
                None if len < COMPACT_MIN => return Ok(None),
                None => render_state(&load(&path)?).len() as u64,
            };
            if len < COMPACT_MIN || len < 2 * base {
                return Ok(compacted.is_none().then_some(base));
            }
            let whole = render_state(&load(&path)?);
            crate::durable::write_atomic(&path, whole.as_bytes(), 0o600)?;
            Ok(Some(whole.len() as u64))
        })
        .await?;
        if let Some(size) = new_size {
            sizes.insert(source.to_string(), size);
        }
        Ok(())
    }

    pub(super) async fn fetch_state_replace_impl(&self, source: &str, state: &FetchState) -> Result<(), StoreError> {
        let (dir, whole) = (self.fetch_dir(), render_state(state));
        let path = dir.join(format!("{source}.log"));
        let mut sizes = self.inner.fetch_lock.lock().await;
        let size = whole.len() as u64;
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
            crate::durable::write_atomic(&path, whole.as_bytes(), 0o600)?;
            Ok(())
        })
        .await?;
        sizes.insert(source.to_string(), size);
        Ok(())
    }
}

/// Append one record and fdatasync it (and, for a new file, its directory); the log's
/// length after it. The fetch loop loads a record before it writes one, and the load cuts
/// a torn last line, so the record follows a whole line.
fn append(dir: &Path, path: &Path, bytes: &[u8]) -> Result<u64, StoreError> {
    let io = |e| StoreError::io(path, e);
    let new = !path.exists();
    if new {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io)?;
    let before = file.metadata().map_err(io)?.len();
    if let Err(e) = file.write_all(bytes) {
        // Never leave a part of a line that the next one would follow.
        let _ = file.set_len(before);
        return Err(io(e));
    }
    file.sync_data().map_err(io)?;
    if new {
        crate::durable::sync_dir(dir)?;
    }
    Ok(before + bytes.len() as u64)
}

/// Replay the log; an absent one is an empty record. A torn last line is cut off for good.
fn load(path: &Path) -> Result<FetchState, StoreError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FetchState::default()),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        tracing::warn!(path = %path.display(), "a fetch record line cut by a crash is dropped");
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| StoreError::io(path, e))?;
        file.set_len(whole as u64).and_then(|_| file.sync_data()).map_err(|e| StoreError::io(path, e))?;
    }
    let text = std::str::from_utf8(&text[..whole])
        .map_err(|_| StoreError::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8")))?;
    let mut state = FetchState::default();
    for line in text.lines() {
        let event = parse_line(line).ok_or_else(|| {
            StoreError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unreadable line {line:?}")),
            )
        })?;
        state.apply(&event);
    }
    Ok(state)
}

fn parse_line(line: &str) -> Option<FetchEvent> {
    let (key, value) = line.split_once(' ').unwrap_or((line, ""));
    Some(match key {
        "uidvalidity" => FetchEvent::UidValidity(value.parse().ok()?),
        "last" => FetchEvent::Done { id: value.to_string(), imap_uid: Some(value.parse().ok()?) },
        "done" if !value.is_empty() => FetchEvent::Done { id: value.to_string(), imap_uid: None },
        "forget" if !value.is_empty() => FetchEvent::Forget(vec![value.to_string()]),
        "pending" => {
            let (uid_next, id) = value.split_once(' ')?;
            FetchEvent::Pending(FetchPending { id: id.to_string(), uid_next: uid_next.parse().ok()? })
        }
        "abandon" => FetchEvent::Abandoned,
        _ => return None,
    })
}

fn render_event(event: &FetchEvent) -> String {
    match event {
        FetchEvent::Pending(p) => format!("pending {} {}\n", p.uid_next, p.id),
        FetchEvent::Abandoned => "abandon\n".to_string(),
        FetchEvent::Done { imap_uid: Some(uid), .. } => format!("last {uid}\n"),
        FetchEvent::Done { id, imap_uid: None } => format!("done {id}\n"),
        FetchEvent::UidValidity(v) => format!("uidvalidity {v}\n"),
        FetchEvent::Forget(ids) => ids.iter().map(|id| format!("forget {id}\n")).collect(),
    }
}

/// The record as the fewest lines that replay to it.
fn render_state(state: &FetchState) -> String {
    let mut out = String::new();
    if let Some(v) = state.uid_validity {
        out.push_str(&render_event(&FetchEvent::UidValidity(v)));
    }
    if state.last_uid > 0 {
        out.push_str(&format!("last {}\n", state.last_uid));
    }
    for id in &state.seen {
        out.push_str(&format!("done {id}\n"));
    }
    if let Some(p) = &state.pending {
        out.push_str(&render_event(&FetchEvent::Pending(p.clone())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_log_is_replayed_compacted_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(dir.path(), "mx.example.org").unwrap();
        // Messages come and go (POP3 without keep): the record stays small while the
        // events pile up past the compaction bound.
        let (mut expected, mut appended) = (FetchState::default(), 0);
        for n in 0..700u32 {
            let id = format!("uidl-{n:06}-with-some-length");
            let mut events = vec![
                FetchEvent::Pending(FetchPending { id: id.clone(), uid_next: n + 1 }),
                FetchEvent::Done { id: id.clone(), imap_uid: None },
            ];
            if n % 10 != 0 {
                events.push(FetchEvent::Forget(vec![id]));
            }
            for event in events {
                store.fetch_record_impl("abc123", &event).await.unwrap();
                appended += render_event(&event).len() as u64;
                expected.apply(&event);
            }
        }
        let path = dir.path().join("state/fetch/abc123.log");
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(appended > COMPACT_MIN && len < COMPACT_MIN, "not compacted: {len} of {appended} bytes");
        assert_eq!(store.fetch_state_load_impl("abc123").await.unwrap(), expected);

        // A crash in the middle of an append: the part is dropped, the next line is whole.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"pending 9 torn").unwrap();
        let store = MaildirStore::open(dir.path(), "mx.example.org").unwrap();
        assert_eq!(store.fetch_state_load_impl("abc123").await.unwrap(), expected);
        store
            .fetch_record_impl("abc123", &FetchEvent::Forget(vec!["uidl-000000-with-some-length".into()]))
            .await
            .unwrap();
        expected.seen.remove("uidl-000000-with-some-length");
        assert_eq!(store.fetch_state_load_impl("abc123").await.unwrap(), expected);

        std::fs::write(&path, "what 1\n").unwrap();
        assert!(store.fetch_state_load_impl("abc123").await.unwrap_err().to_string().contains("unreadable line"));
    }
}
