//! Opening the configured store at start (`serve`) and checking it (`mailroom store check`).
//!
//! Owns: turning `MAILROOM_STORE` into a [`Store`]. A PostgreSQL host name is resolved
//! through the shared hickory resolver, never the system's getaddrinfo (the static binary
//! has none that works), and the address is handed to the driver while the name stays in
//! the URL for TLS verification. A database that is not up yet is waited for, briefly, so
//! replicas started together with their database do not crash-loop.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use hickory_resolver::TokioResolver;

use super::pg::migrate::MigrateError;
use super::pg::{CheckReport, ObjectStoreConfig, PgStore, check_bucket};
use super::{Store, StoreError};
use crate::config::{Config, PgUrl, StoreConfig};

/// How long `serve` waits for an unreachable database before giving up.
const WAIT_FOR_DATABASE: Duration = Duration::from_secs(60);

/// Why the configured store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database host name did not resolve.
    #[error("cannot resolve the database host {host}: {reason}")]
    Resolve {
        /// The host of MAILROOM_STORE.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The store could not be opened or reached (after waiting).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The schema could not be migrated (or is newer than this binary).
    #[error(transparent)]
    Schema(#[from] MigrateError),
}

/// The address to connect to for `url`: `None` when the host is an IP address already.
pub async fn resolve_host(url: &PgUrl, resolver: &TokioResolver) -> Result<Option<IpAddr>, OpenError> {
    let host = url.host();
    if host.parse::<IpAddr>().is_ok() {
        return Ok(None);
    }
    let fqdn = if host.ends_with('.') { host.to_string() } else { format!("{host}.") };
    let lookup = resolver
        .lookup_ip(fqdn)
        .await
        .map_err(|e| OpenError::Resolve { host: host.to_string(), reason: e.to_string() })?;
    match lookup.iter().next() {
        Some(ip) => Ok(Some(ip)),
        None => Err(OpenError::Resolve { host: host.to_string(), reason: "no address".into() }),
    }
}

/// Open the configured store for `serve`: the Maildir under `data_dir`, or the database
/// (migrated to this binary's schema, new bodies in the object store when
/// `MAILROOM_BLOB_STORE` names one), waiting up to a minute for it to come up.
pub async fn open_configured(config: &Config, data_dir: &Path, resolver: &TokioResolver) -> Result<Store, OpenError> {
    let url = match config.store() {
        StoreConfig::Maildir => return Ok(Store::open(data_dir, &config.hostname)?),
        StoreConfig::Postgres(url) => url,
    };
    let objects = config.blob_store().map(|s3| ObjectStoreConfig { s3, resolver: resolver.clone() });
    let deadline = tokio::time::Instant::now() + WAIT_FOR_DATABASE;
    let mut logged = false;
    loop {
        let attempt = match resolve_host(url, resolver).await {
            Ok(addr) => PgStore::connect_with(url.url(), addr, objects.clone()).await.map_err(OpenError::from),
            Err(e) => Err(e),
        };
        match attempt {
            Ok(store) => {
                tracing::info!(database = %url.redacted(), "mail store: PostgreSQL");
                return Ok(Store::Pg(store));
            }
            Err(e @ OpenError::Schema(MigrateError::Newer { .. })) => return Err(e),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(e) => {
                if !logged {
                    tracing::warn!(database = %url.redacted(), error = %e, "waiting for the database");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// `mailroom store check`: connect once (no waiting, no migration) and report.
pub async fn check(url: &PgUrl, resolver: &TokioResolver) -> Result<CheckReport, OpenError> {
    let addr = resolve_host(url, resolver).await?;
    let store = PgStore::connect_only(url.url(), addr).await?;
    Ok(store.check().await?)
}

/// `mailroom store check` with `MAILROOM_BLOB_STORE=s3://…`: PUT, GET and DELETE a
/// probe object in the bucket. The error names the failed call, never the keys.
pub async fn check_blob_store(s3: crate::config::S3Config, resolver: &TokioResolver) -> Result<(), StoreError> {
    check_bucket(&ObjectStoreConfig { s3, resolver: resolver.clone() }).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvSource;
    use crate::store::{LocalDelivery, MailboxOwner, MessageBody};

    /// The variables as an operator writes them reach the backend: a PostgreSQL store
    /// whose new bodies go to the bucket `MAILROOM_BLOB_STORE` names.
    #[tokio::test]
    async fn the_variables_open_a_postgresql_store_with_bodies_in_the_bucket() {
        let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() else { return };
        let Some(bucket) = tokio::task::spawn_blocking(crate::test_s3::bucket).await.unwrap() else { return };
        let dir = tempfile::tempdir().unwrap();
        let env = EnvSource::from_pairs([
            ("MAILROOM_HOSTNAME", "mx.example.org".to_string()),
            ("MAILROOM_STORE", url.clone()),
            ("MAILROOM_BLOB_STORE", bucket.url()),
            ("MAILROOM_S3_ACCESS_KEY_ID", crate::test_s3::ACCESS_KEY_ID.to_string()),
            ("MAILROOM_S3_SECRET_ACCESS_KEY", crate::test_s3::SECRET_ACCESS_KEY.to_string()),
        ]);
        let (config, _) = Config::load(&env).unwrap_or_else(|e| panic!("{:?}", e.0));
        let resolver = crate::dns::resolver::build(&["127.0.0.1:1".parse().unwrap()]).unwrap();
        let store = open_configured(&config, dir.path(), &resolver).await.unwrap();
        let Store::Pg(pg) = &store else { panic!("not the PostgreSQL store") };
        let owner = MailboxOwner::new("alice", "example.org");
        let delivery = LocalDelivery {
            owner: owner.clone(),
            folder: "INBOX".into(),
            header_prefix: Vec::new(),
            flags: Vec::new(),
        };
        let text = "Subject: to the bucket\r\n\r\nhi\r\n";
        for r in store.deliver(&MessageBody::Memory(text.as_bytes().to_vec().into()), &[delivery]).await {
            r.unwrap();
        }
        let location: i16 = sqlx::query_scalar("SELECT location FROM blobs").fetch_one(pg.pool()).await.unwrap();
        assert_eq!(location, 1, "the body is in the object store");
        let inbox = store.open_mailbox(&owner, "INBOX").await.unwrap();
        assert_eq!(&inbox.read_message(1, 1000).await.unwrap()[..], text.as_bytes());
        assert!(std::fs::read_dir(dir.path().join("mail")).is_err(), "no Maildir was made");
    }
}
