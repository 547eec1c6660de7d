//! The credentials record of the Maildir backend: `<home>/.mailroom-credentials`, one
//! small JSON file per account (`{"version": n, "record": {...}}`), mode 0600, replaced
//! whole through `durable.rs` (temp file fsynced, renamed, directory fsynced), so a crash
//! leaves the old record or the new one, never half of one.
//!
//! Compare-and-swap: a Maildir data dir belongs to one process, so the store's
//! `credentials_lock` makes "is it still at the version the caller read? then write the
//! next one" a single step for every writer.

use std::io;
use std::path::PathBuf;

use super::MaildirStore;
use super::error::{StoreError, blocking};
use super::types::MailboxOwner;
use crate::durable::{sync_dir, write_atomic};
use crate::store::{CredentialRecord, CredentialsPut, VersionedCredentials};

/// The record's file inside the account's home.
const FILE: &str = ".mailroom-credentials";

/// The file's content: the record and its version.
#[derive(serde::Serialize, serde::Deserialize)]
struct OnDisk {
    version: u64,
    record: CredentialRecord,
}

fn read(path: &PathBuf) -> Result<VersionedCredentials, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(VersionedCredentials::default()),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let damaged = |e: String| StoreError::io(path, io::Error::new(io::ErrorKind::InvalidData, e));
    let disk: OnDisk =
        serde_json::from_str(&text).map_err(|e| damaged(format!("credentials record is damaged: {e}")))?;
    Ok(VersionedCredentials { record: disk.record, version: disk.version })
}

impl MaildirStore {
    fn credentials_path(&self, account: &MailboxOwner) -> Result<(PathBuf, PathBuf), StoreError> {
        let home = self.inner.layout.home_dir(account)?;
        Ok((home.join(FILE), home))
    }

    pub(super) async fn credentials_get_impl(
        &self,
        account: &MailboxOwner,
    ) -> Result<VersionedCredentials, StoreError> {
        let (path, _) = self.credentials_path(account)?;
        blocking(move || read(&path)).await
    }

    pub(super) async fn credentials_put_impl(
        &self,
        account: &MailboxOwner,
        expected_version: u64,
        record: &CredentialRecord,
    ) -> Result<CredentialsPut, StoreError> {
        let (path, home) = self.credentials_path(account)?;
        let record = record.clone();
        let _guard = self.inner.credentials_lock.lock().await;
        blocking(move || {
            if read(&path)?.version != expected_version {
                return Ok(CredentialsPut::Conflict);
            }
            if !home.is_dir() {
                std::fs::create_dir_all(&home).map_err(|e| StoreError::io(&home, e))?;
                // `home/`, `<domain>/` and `<local>/` may be new: each name is durable once
                // the directory holding it is fsynced.
                for d in home.ancestors().take(4) {
                    sync_dir(d)?;
                }
            }
            let version = expected_version + 1;
            let bytes =
                serde_json::to_vec(&OnDisk { version, record }).map_err(|e| StoreError::Background(e.to_string()))?;
            write_atomic(&path, &bytes, 0o600)?;
            Ok(CredentialsPut::Written(version))
        })
        .await
    }
}
