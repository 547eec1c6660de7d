//! `mailroom store import --from maildir:DATA_DIR`: move an existing Maildir data dir into
//! PostgreSQL without clients noticing.
//!
//! Owns: copying every account, folder (with its special-use attribute), subscription,
//! Sieve script (and which one is active) and message, keeping what clients cache: each
//! folder's UIDVALIDITY, each message's UID, flags, keywords, INTERNALDATE and POP3 UIDL,
//! and UIDNEXT. So an IMAP client resumes its sync instead of downloading everything
//! again, and a POP3 client leaving mail on the server does not fetch it twice.
//!
//! Resumable: each message is its own transaction, and a message whose UID is already in
//! the target folder is skipped, so running it again after an interruption (or after more
//! mail arrived in the Maildir) copies only what is missing. A target folder that already
//! holds mail under another UIDVALIDITY is refused rather than mixed. The source is read
//! through the Maildir backend (Dovecot keyword files, LF files converted to CRLF) under
//! its data-dir lock, so no server can write to it meanwhile.

use std::fs::File;
use std::path::{Path, PathBuf};

use sqlx::Row;
use tokio::io::AsyncReadExt;

use super::blobs;
use super::mailbox::{PgMailbox, encode_flags, from_time};
use super::write::lock_admitting;
use super::{PgStore, db_error};
use crate::store::api::MailStore;
use crate::store::{FolderPath, MailboxOwner, MaildirStore, MessageBody, MessageMeta, StoreError};

/// Bodies up to this size are copied through memory; larger ones through a temp file.
const IN_MEMORY: u64 = 4 << 20;

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source is not a data dir with Maildir mail, or cannot be read.
    #[error("{0}")]
    Source(String),
    /// A server is running on the source data dir.
    #[error("a mailroom server is using {0} (its lock is held): stop it, or import from a `mailroom backup` copy")]
    Busy(String),
    /// The target folder holds other mail.
    #[error(
        "{account}/{folder}: the database already has mail in this folder under UIDVALIDITY {found} (the Maildir has {wanted}); refusing to mix them"
    )]
    Conflict {
        /// The account.
        account: String,
        /// The folder.
        folder: String,
        /// UIDVALIDITY in the database.
        found: u32,
        /// UIDVALIDITY in the Maildir.
        wanted: u32,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one folder's import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderReport {
    /// `local@domain/Folder`.
    pub folder: String,
    /// Messages copied now.
    pub copied: u64,
    /// Messages that were there already.
    pub present: u64,
    /// Messages whose file vanished while importing.
    pub vanished: u64,
    /// Bytes copied now.
    pub bytes: u64,
}

/// The accounts of a Maildir data dir: `mail/<domain>/<local>/` directories.
fn accounts(mail_root: &Path) -> Result<Vec<MailboxOwner>, ImportError> {
    let read = |dir: &Path| {
        std::fs::read_dir(dir).map_err(|e| ImportError::Source(format!("cannot read {}: {e}", dir.display())))
    };
    let mut out = Vec::new();
    for domain in read(mail_root)?.flatten() {
        if !domain.path().is_dir() {
            continue;
        }
        for local in read(&domain.path())?.flatten() {
            if crate::store::maildir::is_maildir(&local.path()) {
                let owner = MailboxOwner::new(
                    local.file_name().to_string_lossy().into_owned(),
                    domain.file_name().to_string_lossy().into_owned(),
                );
                if owner.check().is_ok() {
                    out.push(owner);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Lock the source data dir as a server would, for the length of the import.
fn lock_source(data_dir: &Path) -> Result<File, ImportError> {
    if !data_dir.join("mail").is_dir() {
        return Err(ImportError::Source(format!(
            "{} has no mail/ directory: not a mailroom data dir",
            data_dir.display()
        )));
    }
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ImportError::Source(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ImportError::Busy(data_dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(ImportError::Source(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

impl PgStore {
    /// Import the Maildir data dir at `data_dir`; `progress` is called after each folder.
    pub async fn import_maildir(
        &self,
        data_dir: &Path,
        mut progress: impl FnMut(&FolderReport),
    ) -> Result<Vec<FolderReport>, ImportError> {
        let _lock = lock_source(data_dir)?;
        let source = MaildirStore::open(data_dir, "import")?;
        let mut reports = Vec::new();
        for owner in accounts(&data_dir.join("mail"))? {
            self.account_id(&owner).await?;
            for name in source.subscriptions(&owner).await? {
                self.set_subscribed_impl(&owner, &name, true).await?;
            }
            self.import_sieve(&source, &owner).await?;
            for folder in source.list_folders(&owner).await? {
                let from = source.open_mailbox(&owner, &folder.name).await?;
                let snapshot = from.sync().await?;
                let to = self.import_target(&owner, &folder.name, folder.special_use, snapshot.uid_validity).await?;
                let mut report = FolderReport {
                    folder: format!("{owner}/{}", folder.name),
                    copied: 0,
                    present: 0,
                    vanished: 0,
                    bytes: 0,
                };
                for meta in &snapshot.messages {
                    match self.import_message(&from, &to, meta).await? {
                        Copied::Now(bytes) => {
                            report.copied += 1;
                            report.bytes += bytes;
                        }
                        Copied::Before => report.present += 1,
                        Copied::Vanished => report.vanished += 1,
                    }
                }
                sqlx::query("UPDATE mailboxes SET uid_next = GREATEST(uid_next, $2) WHERE id = $1")
                    .bind(to.row())
                    .bind(i64::from(snapshot.uid_next))
                    .execute(self.pool())
                    .await
                    .map_err(db_error)?;
                progress(&report);
                reports.push(report);
            }
        }
        Ok(reports)
    }

    /// The account's Sieve scripts (from its home, `home/<domain>/<local>/sieve/`): those
    /// the database lacks, and the active one unless the database has one active already,
    /// so running the import again never undoes a change made through ManageSieve since.
    async fn import_sieve(&self, source: &MaildirStore, owner: &MailboxOwner) -> Result<(), ImportError> {
        let present = self.sieve_list_impl(owner).await?;
        for script in MailStore::sieve_list(source, owner).await? {
            if present.iter().any(|p| p.name == script.name) {
                continue;
            }
            if let Some(content) = MailStore::sieve_get(source, owner, &script.name).await? {
                self.sieve_put_impl(owner, &script.name, &content).await?;
            }
        }
        if !present.iter().any(|p| p.active)
            && let Some((name, _)) = MailStore::sieve_active(source, owner).await?
        {
            self.sieve_set_active_impl(owner, Some(&name)).await?;
        }
        Ok(())
    }

    /// The target folder, created if needed, with the source's UIDVALIDITY.
    async fn import_target(
        &self,
        owner: &MailboxOwner,
        name: &str,
        special_use: Option<crate::store::SpecialUse>,
        uid_validity: u32,
    ) -> Result<PgMailbox, ImportError> {
        let path = FolderPath::from_api(name)?;
        let account = self.account_id(owner).await?;
        if !path.is_inbox() {
            match self.create_folder_impl(owner, name, special_use).await {
                Ok(()) | Err(StoreError::FolderExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let row = sqlx::query(
            "SELECT b.id, b.uid_validity, (SELECT count(*) FROM messages m WHERE m.mailbox_id = b.id) \
             FROM mailboxes b WHERE b.account_id = $1 AND b.name = $2",
        )
        .bind(account)
        .bind(path.api_name())
        .fetch_one(self.pool())
        .await
        .map_err(db_error)?;
        let (id, found, messages): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if found != i64::from(uid_validity) {
            if messages > 0 {
                return Err(ImportError::Conflict {
                    account: owner.to_string(),
                    folder: name.to_string(),
                    found: found as u32,
                    wanted: uid_validity,
                });
            }
            sqlx::query("UPDATE mailboxes SET uid_validity = $2 WHERE id = $1")
                .bind(id)
                .bind(i64::from(uid_validity))
                .execute(self.pool())
                .await
                .map_err(db_error)?;
        }
        Ok(self.open_path(owner, &path).await?)
    }

    /// Copy one message with its UID, unless the target has that UID already.
    async fn import_message(
        &self,
        from: &crate::store::MaildirMailbox,
        to: &PgMailbox,
        meta: &MessageMeta,
    ) -> Result<Copied, ImportError> {
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM messages WHERE mailbox_id = $1 AND uid = $2")
            .bind(to.row())
            .bind(i64::from(meta.uid))
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?;
        if exists.is_some() {
            return Ok(Copied::Before);
        }
        let reader = match from.open_message(meta.uid).await {
            Ok(r) => r,
            Err(StoreError::NoSuchMessage(_)) => return Ok(Copied::Vanished),
            Err(e) => return Err(e.into()),
        };
        let (body, spool) = read_body(reader, meta.size).await?;
        let result = self.insert_imported(to, &body, meta).await;
        if let Some(path) = spool {
            let _ = std::fs::remove_file(path);
        }
        Ok(if result? { Copied::Now(body.len()) } else { Copied::Before })
    }

    /// Insert `body` as `meta.uid` in `to`; false when that UID appeared meanwhile.
    async fn insert_imported(
        &self,
        to: &PgMailbox,
        body: &MessageBody,
        meta: &MessageMeta,
    ) -> Result<bool, StoreError> {
        let blob = blobs::describe(body).await?;
        blobs::stage(self.pool(), self.objects(), &blob, body).await?;
        let (bits, keywords) = encode_flags(&meta.flags);
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        lock_admitting(&mut tx, to, &keywords).await?;
        let taken: Option<i32> = sqlx::query_scalar("SELECT 1 FROM messages WHERE mailbox_id = $1 AND uid = $2")
            .bind(to.row())
            .bind(i64::from(meta.uid))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if taken.is_some() {
            return Ok(false);
        }
        blobs::add_ref(&mut tx, &blob, body, self.objects()).await?;
        let modseq: i64 = sqlx::query_scalar(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + 1, total_bytes = total_bytes + $2, \
             uid_next = GREATEST(uid_next, $3) WHERE id = $1 RETURNING highest_modseq",
        )
        .bind(to.row())
        .bind(blob.size as i64)
        .bind(i64::from(meta.uid) + 1)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, prefix, body_hash, uidl) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, '', $8, $9)",
        )
        .bind(to.row())
        .bind(i64::from(meta.uid))
        .bind(modseq)
        .bind(bits)
        .bind(keywords)
        .bind(from_time(meta.internal_date))
        .bind(blob.size as i64)
        .bind(&blob.hash)
        .bind(&meta.uidl)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }
}

enum Copied {
    Now(u64),
    Before,
    Vanished,
}

/// The message's CRLF bytes: in memory when small, else in a temp file (returned for
/// removal), so a 50 MiB attachment never sits in memory whole.
async fn read_body(
    mut reader: crate::store::MessageReader,
    size: u64,
) -> Result<(MessageBody, Option<PathBuf>), StoreError> {
    let io = |e: std::io::Error| StoreError::Background(format!("reading the Maildir message: {e}"));
    if size <= IN_MEMORY {
        let mut buf = Vec::with_capacity(size as usize);
        reader.read_to_end(&mut buf).await.map_err(io)?;
        return Ok((MessageBody::Memory(buf.into()), None));
    }
    let path = std::env::temp_dir().join(format!("mailroom-import-{:032x}", rand::random::<u128>()));
    let mut file = tokio::fs::File::create(&path).await.map_err(|e| StoreError::io(&path, e))?;
    let len = tokio::io::copy(&mut reader, &mut file).await.map_err(io)?;
    drop(file);
    Ok((MessageBody::File { path: path.clone(), len }, Some(path)))
}
