//! The credentials record in PostgreSQL (table `account_credentials`, from
//! `schema/0008_credentials.sql`).
//!
//! Each write is one statement that checks the version and writes the next one (an
//! `INSERT … ON CONFLICT DO NOTHING` for the first record, an `UPDATE … WHERE version =`
//! after), so the compare-and-swap holds across replicas without a lock, and the write is
//! committed (durable, seen by every replica) when the call returns.

use super::{PgStore, db_error};
use crate::store::{CredentialRecord, CredentialsPut, MailboxOwner, StoreError, VersionedCredentials};

impl PgStore {
    /// One round trip, by name rather than through `account_id` (which creates a missing
    /// account): a login as an unknown user reads a record too, so that it costs what a
    /// known one does, and must leave nothing behind.
    pub(super) async fn credentials_get_impl(
        &self,
        account: &MailboxOwner,
    ) -> Result<VersionedCredentials, StoreError> {
        account.check()?;
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT c.record, c.version FROM account_credentials c JOIN accounts a ON a.id = c.account \
             WHERE a.domain = $1 AND a.local = $2",
        )
        .bind(&account.domain)
        .bind(&account.local)
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        match row {
            None => Ok(VersionedCredentials::default()),
            Some((text, version)) => Ok(VersionedCredentials {
                record: CredentialRecord::from_json(&text)?,
                version: u64::try_from(version).unwrap_or(0),
            }),
        }
    }

    pub(super) async fn credentials_put_impl(
        &self,
        account: &MailboxOwner,
        expected_version: u64,
        record: &CredentialRecord,
    ) -> Result<CredentialsPut, StoreError> {
        let id = self.account_id(account).await?;
        let expected = i64::try_from(expected_version).map_err(|_| StoreError::Limit("credentials version"))?;
        let text = record.to_json();
        let written: Option<i64> = if expected == 0 {
            sqlx::query_scalar(
                "INSERT INTO account_credentials (account, record, version) VALUES ($1, $2, 1) \
                 ON CONFLICT (account) DO NOTHING RETURNING version",
            )
            .bind(id)
            .bind(&text)
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?
        } else {
            sqlx::query_scalar(
                "UPDATE account_credentials SET record = $2, version = version + 1, updated_at = now() \
                 WHERE account = $1 AND version = $3 RETURNING version",
            )
            .bind(id)
            .bind(&text)
            .bind(expected)
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?
        };
        Ok(match written {
            Some(v) => CredentialsPut::Written(u64::try_from(v).unwrap_or(0)),
            None => CredentialsPut::Conflict,
        })
    }
}
