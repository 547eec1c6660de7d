//! Sieve scripts and the Sieve memory in PostgreSQL (tables of `schema/0005_sieve.sql`).
//!
//! Owns: the rows of `sieve_scripts` and `sieve_remembered`. Each write is one committed
//! transaction (run again by `retry.rs` after a deadlock), so it is durable when the call
//! returns, and every replica sees it at once. "At most one active script per account"
//! is the partial unique index's job; SETACTIVE clears the old one first in the same
//! transaction. The account row is locked (`FOR UPDATE`) by writers so that a check (is
//! it active? does the target exist?) and the change it guards are one step.

use std::time::SystemTime;

use bytes::Bytes;
use sqlx::{PgConnection, Row};

use super::mailbox::from_time;
use super::{PgStore, db_error, retry};
use crate::store::sieve::remembered_key_digest;
use crate::store::{MAX_REMEMBERED_KEYS, MailboxOwner, SieveScriptInfo, StoreError, check_script_name};

/// Lock the account's row: writers of one account's scripts and memory take turns.
async fn lock_account(conn: &mut PgConnection, account: i64) -> Result<(), StoreError> {
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
        .bind(account)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(db_error)
}

impl PgStore {
    pub(super) async fn sieve_list_impl(&self, account: &MailboxOwner) -> Result<Vec<SieveScriptInfo>, StoreError> {
        let id = self.account_id(account).await?;
        let rows = sqlx::query(
            "SELECT name, octet_length(content)::bigint, active FROM sieve_scripts WHERE account = $1 ORDER BY name",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|r| SieveScriptInfo {
                name: r.get(0),
                size: u64::try_from(r.get::<i64, _>(1)).unwrap_or(0),
                active: r.get(2),
            })
            .collect())
    }

    pub(super) async fn sieve_get_impl(&self, account: &MailboxOwner, name: &str) -> Result<Option<Bytes>, StoreError> {
        check_script_name(name)?;
        let id = self.account_id(account).await?;
        let content: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT content FROM sieve_scripts WHERE account = $1 AND name = $2")
                .bind(id)
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(db_error)?;
        Ok(content.map(Bytes::from))
    }

    pub(super) async fn sieve_put_impl(
        &self,
        account: &MailboxOwner,
        name: &str,
        content: &[u8],
    ) -> Result<(), StoreError> {
        check_script_name(name)?;
        let id = self.account_id(account).await?;
        retry::transaction(|| async move {
            sqlx::query(
                "INSERT INTO sieve_scripts (account, name, content) VALUES ($1, $2, $3) \
                 ON CONFLICT (account, name) DO UPDATE SET content = EXCLUDED.content, updated_at = now()",
            )
            .bind(id)
            .bind(name)
            .bind(content)
            .execute(self.pool())
            .await
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    pub(super) async fn sieve_delete_impl(&self, account: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        check_script_name(name)?;
        let id = self.account_id(account).await?;
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            lock_account(&mut tx, id).await?;
            let active: Option<bool> =
                sqlx::query_scalar("SELECT active FROM sieve_scripts WHERE account = $1 AND name = $2")
                    .bind(id)
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            match active {
                None => return Err(StoreError::NoSuchScript(name.to_string())),
                Some(true) => return Err(StoreError::ScriptActive(name.to_string())),
                Some(false) => {}
            }
            sqlx::query("DELETE FROM sieve_scripts WHERE account = $1 AND name = $2")
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
        .await
    }

    pub(super) async fn sieve_rename_impl(
        &self,
        account: &MailboxOwner,
        old: &str,
        new: &str,
    ) -> Result<(), StoreError> {
        check_script_name(old)?;
        check_script_name(new)?;
        let id = self.account_id(account).await?;
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            lock_account(&mut tx, id).await?;
            let names: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sieve_scripts WHERE account = $1 AND name IN ($2, $3)")
                    .bind(id)
                    .bind(old)
                    .bind(new)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?;
            if !names.iter().any(|n| n == old) {
                return Err(StoreError::NoSuchScript(old.to_string()));
            }
            // Renaming a script onto itself is onto an existing name, as on Maildir.
            if names.iter().any(|n| n == new) {
                return Err(StoreError::ScriptExists(new.to_string()));
            }
            sqlx::query("UPDATE sieve_scripts SET name = $3, updated_at = now() WHERE account = $1 AND name = $2")
                .bind(id)
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
        .await
    }

    pub(super) async fn sieve_set_active_impl(
        &self,
        account: &MailboxOwner,
        name: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(n) = name {
            check_script_name(n)?;
        }
        let id = self.account_id(account).await?;
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            lock_account(&mut tx, id).await?;
            if let Some(n) = name {
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM sieve_scripts WHERE account = $1 AND name = $2")
                        .bind(id)
                        .bind(n)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_error)?;
                if exists.is_none() {
                    return Err(StoreError::NoSuchScript(n.to_string()));
                }
            }
            sqlx::query("UPDATE sieve_scripts SET active = false WHERE account = $1 AND active")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            if let Some(n) = name {
                sqlx::query("UPDATE sieve_scripts SET active = true WHERE account = $1 AND name = $2")
                    .bind(id)
                    .bind(n)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)
        })
        .await
    }

    pub(super) async fn sieve_active_impl(
        &self,
        account: &MailboxOwner,
    ) -> Result<Option<(String, Bytes)>, StoreError> {
        let id = self.account_id(account).await?;
        let row = sqlx::query("SELECT name, content FROM sieve_scripts WHERE account = $1 AND active")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| (r.get::<String, _>(0), Bytes::from(r.get::<Vec<u8>, _>(1)))))
    }

    pub(super) async fn sieve_remember_impl(
        &self,
        account: &MailboxOwner,
        key: &str,
        until: SystemTime,
    ) -> Result<bool, StoreError> {
        let id = self.account_id(account).await?;
        let digest = remembered_key_digest(key);
        let until = from_time(until);
        let digest = digest.as_str();
        retry::transaction(|| async move {
            let mut tx = self.pool().begin().await.map_err(db_error)?;
            lock_account(&mut tx, id).await?;
            sqlx::query("DELETE FROM sieve_remembered WHERE account = $1 AND expires_at <= now()")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            let known: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM sieve_remembered WHERE account = $1 AND key = $2")
                    .bind(id)
                    .bind(digest)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            if known.is_some() {
                tx.commit().await.map_err(db_error)?;
                return Ok(true);
            }
            sqlx::query("INSERT INTO sieve_remembered (account, key, expires_at) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(digest)
                .bind(until)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            // Past the cap, the keys expiring first go.
            sqlx::query(
                "DELETE FROM sieve_remembered WHERE account = $1 AND key IN (SELECT key FROM sieve_remembered \
                 WHERE account = $1 ORDER BY expires_at DESC, key OFFSET $2)",
            )
            .bind(id)
            .bind(i64::try_from(MAX_REMEMBERED_KEYS).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            Ok(false)
        })
        .await
    }
}
