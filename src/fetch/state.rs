//! What each source has fetched already, so a message is fetched once across restarts,
//! crashes and replicas: kept by the store (`store::FetchState`, one durable event per
//! change) under the source's key, with the one message in flight (`pending`) and where
//! its copy would land, so a crash between the local copy and the record can be told
//! apart from a crash before the copy (see `run.rs`).
//!
//! Owns: the key of a source, and importing the record older versions kept in the data
//! dir, `state/fetch/<key>.state` (a whole file rewritten at every change): read once
//! into the store, then renamed `<key>.state.migrated`.

use std::path::{Path, PathBuf};

use super::entry::FetchSource;
use crate::store::{FetchPending, FetchState, Store, StoreError};

/// The store key of a source: a digest of the local account and URL, so reordering
/// `MAILROOM_FETCH` keeps each source's record, and changing either starts a new one.
pub fn key(source: &FetchSource) -> String {
    let text = format!("{} <- {}", source.local, source.url);
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// The file an older version kept the source's record in.
pub fn legacy_path(data_dir: &Path, source: &FetchSource) -> PathBuf {
    data_dir.join("state").join("fetch").join(format!("{}.state", key(source)))
}

/// Move an older version's record into the store, once. Writing it is idempotent, so a
/// crash before the rename only imports it again.
pub async fn import_legacy(store: &Store, data_dir: &Path, source: &FetchSource) -> Result<(), String> {
    let path = legacy_path(data_dir, source);
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || load_legacy(&path)).await.map_err(|e| e.to_string())?
    };
    let Some(state) = read? else { return Ok(()) };
    store.fetch_state_replace(&key(source), &state).await.map_err(|e: StoreError| e.to_string())?;
    let done = path.with_extension("state.migrated");
    std::fs::rename(&path, &done).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(source = %source.name(), file = %done.display(), "fetch record imported into the store");
    Ok(())
}

/// The older record, `None` without a file. A line it does not understand is an error:
/// guessing could fetch everything again.
fn load_legacy(path: &Path) -> Result<Option<FetchState>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut state = FetchState::default();
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
                    Some(FetchPending { id: id.to_string(), uid_next: uid_next.parse().map_err(|_| bad())? });
            }
            _ => return Err(bad()),
        }
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_older_record_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "mx.example.org").unwrap();
        let source = super::super::entry::parse_entries("a@example.com <- pop3s://u@h").unwrap().remove(0);
        let path = legacy_path(dir.path(), &source);
        import_legacy(&store, dir.path(), &source).await.unwrap();
        assert_eq!(store.fetch_state_load(&key(&source)).await.unwrap(), FetchState::default());

        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "# a@example.com <- pop3s://u@h\nseen 000001a.b\npending 12 x y\n").unwrap();
        import_legacy(&store, dir.path(), &source).await.unwrap();
        let mut expected = FetchState::default();
        expected.seen.insert("000001a.b".into());
        expected.pending = Some(FetchPending { id: "x y".into(), uid_next: 12 });
        assert_eq!(store.fetch_state_load(&key(&source)).await.unwrap(), expected);
        assert!(!path.exists() && path.with_extension("state.migrated").exists());

        std::fs::write(&path, "what 1\n").unwrap();
        assert!(import_legacy(&store, dir.path(), &source).await.unwrap_err().contains("unreadable line"));
    }
}
