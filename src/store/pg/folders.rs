//! Accounts, folders and subscriptions in PostgreSQL.
//!
//! Owns: creating an account with its default folders, and LIST/CREATE/DELETE/RENAME/
//! SUBSCRIBE. Folder names are stored as canonical API names (`FolderPath::api_name`:
//! `INBOX` upper-case, UTF-8, `/` between levels), so one folder has one spelling, and the
//! hierarchy rules (parents created, no delete with children, INBOX special) are the same
//! `FolderPath` rules the Maildir backend follows.

use std::collections::{BTreeSet, HashMap};

use sqlx::{PgConnection, PgPool, Row};

use super::{PgStore, blobs, db_error, retry};
use crate::store::maildir::DEFAULT_FOLDERS;
use crate::store::{FolderInfo, FolderPath, MailboxOwner, SpecialUse, StoreError};

/// True when `e` is a unique-key violation (two sessions created the same row at once).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// Insert the account (idempotent) and, when this call created it, INBOX and the default
/// folders, subscribed, in the same transaction: another replica either sees the whole
/// account or none of it. Returns the account's id.
pub(super) async fn create_account(pool: &PgPool, owner: &MailboxOwner) -> Result<i64, StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO accounts (domain, local, uidvalidity_next) VALUES ($1, $2, extract(epoch FROM now())::bigint) \
         ON CONFLICT (domain, local) DO NOTHING RETURNING id",
    )
    .bind(&owner.domain)
    .bind(&owner.local)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let id = match created {
        Some(id) => {
            new_mailbox(&mut tx, id, "INBOX", None).await?;
            for name in DEFAULT_FOLDERS {
                new_mailbox(&mut tx, id, name, SpecialUse::from_attribute(name)).await?;
                subscribe(&mut tx, id, name, true).await?;
            }
            id
        }
        None => sqlx::query_scalar("SELECT id FROM accounts WHERE domain = $1 AND local = $2")
            .bind(&owner.domain)
            .bind(&owner.local)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?,
    };
    tx.commit().await.map_err(db_error)?;
    Ok(id)
}

/// A new folder row with the account's next UIDVALIDITY.
async fn new_mailbox(
    conn: &mut PgConnection,
    account: i64,
    name: &str,
    special_use: Option<SpecialUse>,
) -> Result<i64, StoreError> {
    let uid_validity: i64 = sqlx::query_scalar(
        "UPDATE accounts SET uidvalidity_next = uidvalidity_next + 1 WHERE id = $1 RETURNING uidvalidity_next - 1",
    )
    .bind(account)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    sqlx::query_scalar(
        "INSERT INTO mailboxes (account_id, name, special_use, uid_validity) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(account)
    .bind(name)
    .bind(special_use.map(SpecialUse::attribute))
    .bind(uid_validity)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| if is_unique_violation(&e) { StoreError::FolderExists(name.to_string()) } else { db_error(e) })
}

async fn subscribe(conn: &mut PgConnection, account: i64, name: &str, on: bool) -> Result<(), StoreError> {
    let sql = if on {
        "INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2"
    };
    sqlx::query(sql).bind(account).bind(name).execute(&mut *conn).await.map_err(db_error)?;
    Ok(())
}

/// The folder names of an account, locked against concurrent CREATE/DELETE/RENAME of the
/// same account (the account row is the lock).
async fn lock_folders(conn: &mut PgConnection, account: i64) -> Result<BTreeSet<String>, StoreError> {
    sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
        .bind(account)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM mailboxes WHERE account_id = $1")
        .bind(account)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(names.into_iter().collect())
}

/// Create the missing parents of `path` (never INBOX, which always exists).
async fn create_parents(
    conn: &mut PgConnection,
    account: i64,
    path: &FolderPath,
    existing: &BTreeSet<String>,
) -> Result<(), StoreError> {
    let mut parents = Vec::new();
    let mut p = path.parent();
    while let Some(parent) = p {
        p = parent.parent();
        if !parent.is_inbox() && !existing.contains(&parent.api_name()) {
            parents.push(parent);
        }
    }
    for parent in parents.iter().rev() {
        new_mailbox(conn, account, &parent.api_name(), None).await?;
    }
    Ok(())
}

/// Sort API names as the Maildir backend lists them (INBOX first, then by path).
fn sorted_paths(names: impl IntoIterator<Item = String>) -> Vec<FolderPath> {
    let set: BTreeSet<FolderPath> = names.into_iter().filter_map(|n| FolderPath::from_api(&n).ok()).collect();
    set.into_iter().collect()
}

impl PgStore {
    pub(super) async fn list_folders_impl(&self, owner: &MailboxOwner) -> Result<Vec<FolderInfo>, StoreError> {
        let account = self.account_id(owner).await?;
        let rows = sqlx::query("SELECT name, special_use FROM mailboxes WHERE account_id = $1")
            .bind(account)
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        let special: HashMap<String, Option<SpecialUse>> = rows
            .iter()
            .map(|r| {
                (r.get::<String, _>(0), r.get::<Option<String>, _>(1).and_then(|s| SpecialUse::from_attribute(&s)))
            })
            .collect();
        let subscribed: BTreeSet<String> = self.subscriptions_impl(owner).await?.into_iter().collect();
        let paths = sorted_paths(special.keys().cloned());
        Ok(paths
            .iter()
            .map(|f| {
                let name = f.api_name();
                FolderInfo {
                    special_use: special.get(&name).copied().flatten(),
                    has_children: paths.iter().any(|c| f.is_ancestor_of(c)),
                    subscribed: subscribed.contains(&name),
                    name,
                }
            })
            .collect())
    }

    pub(super) async fn create_folder_impl(
        &self,
        owner: &MailboxOwner,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), StoreError> {
        let path = FolderPath::from_api(name)?;
        if path.is_inbox() {
            return Err(StoreError::FolderExists(name.to_string()));
        }
        let account = self.account_id(owner).await?;
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        let existing = lock_folders(&mut tx, account).await?;
        let api = path.api_name();
        if existing.contains(&api) {
            return Err(StoreError::FolderExists(name.to_string()));
        }
        create_parents(&mut tx, account, &path, &existing).await?;
        new_mailbox(&mut tx, account, &api, special_use).await?;
        tx.commit().await.map_err(db_error)
    }

    pub(super) async fn delete_folder_impl(&self, owner: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        let path = FolderPath::from_api(name)?;
        if path.is_inbox() {
            return Err(StoreError::NotPermitted(name.to_string()));
        }
        let account = self.account_id(owner).await?;
        retry::transaction(|| self.delete_folder_once(account, &path, name)).await
    }

    /// The transaction of a folder's deletion: the account's row, the folder's, then its
    /// messages' bodies (`blobs::unref`, in hash order), as every writer takes them.
    async fn delete_folder_once(&self, account: i64, path: &FolderPath, name: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        let existing = lock_folders(&mut tx, account).await?;
        let api = path.api_name();
        if !existing.contains(&api) {
            return Err(StoreError::NoSuchFolder(name.to_string()));
        }
        if sorted_paths(existing).iter().any(|c| path.is_ancestor_of(c)) {
            return Err(StoreError::HasChildren(name.to_string()));
        }
        let id: i64 = sqlx::query_scalar("SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2 FOR UPDATE")
            .bind(account)
            .bind(&api)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar("DELETE FROM messages WHERE mailbox_id = $1 RETURNING body_hash")
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        let orphans = blobs::unref(&mut tx, hashes).await?;
        sqlx::query("DELETE FROM mailboxes WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.delete_objects(orphans).await;
        Ok(())
    }

    pub(super) async fn rename_folder_impl(
        &self,
        owner: &MailboxOwner,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let (src, dst) = FolderPath::for_rename(from, to)?;
        if src.is_inbox() {
            // `store::Store::rename_folder` moves INBOX's messages instead.
            return Err(StoreError::NotPermitted(from.to_string()));
        }
        let account = self.account_id(owner).await?;
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        let existing = lock_folders(&mut tx, account).await?;
        let (from_api, to_api) = (src.api_name(), dst.api_name());
        if !existing.contains(&from_api) {
            return Err(StoreError::NoSuchFolder(from.to_string()));
        }
        if existing.contains(&to_api) {
            return Err(StoreError::FolderExists(to.to_string()));
        }
        create_parents(&mut tx, account, &dst, &existing).await?;
        sqlx::query(
            "UPDATE mailboxes SET name = $3 || substr(name, length($2) + 1) \
             WHERE account_id = $1 AND (name = $2 OR left(name, length($2) + 1) = $2 || '/')",
        )
        .bind(account)
        .bind(&from_api)
        .bind(&to_api)
        .execute(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { StoreError::FolderExists(to.to_string()) } else { db_error(e) })?;
        tx.commit().await.map_err(db_error)
    }

    pub(super) async fn set_subscribed_impl(
        &self,
        owner: &MailboxOwner,
        name: &str,
        on: bool,
    ) -> Result<(), StoreError> {
        let api = FolderPath::from_api(name)?.api_name();
        let account = self.account_id(owner).await?;
        let mut conn = self.pool().acquire().await.map_err(db_error)?;
        subscribe(&mut conn, account, &api, on).await
    }

    pub(super) async fn subscriptions_impl(&self, owner: &MailboxOwner) -> Result<Vec<String>, StoreError> {
        let account = self.account_id(owner).await?;
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM subscriptions WHERE account_id = $1")
            .bind(account)
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?;
        Ok(sorted_paths(names).iter().map(FolderPath::api_name).collect())
    }

    pub(super) async fn quota_usage_impl(&self, owner: &MailboxOwner) -> Result<u64, StoreError> {
        let account = self.account_id(owner).await?;
        let bytes: i64 =
            sqlx::query_scalar("SELECT coalesce(sum(total_bytes), 0)::bigint FROM mailboxes WHERE account_id = $1")
                .bind(account)
                .fetch_one(self.pool())
                .await
                .map_err(db_error)?;
        Ok(bytes.max(0) as u64)
    }
}
