//! The orphan sweep on moto's S3 server (`test_s3`) under a PostgreSQL store: an old
//! object no row names is deleted; one a row names, and a fresh unnamed one (a delivery
//! not yet committed), are kept; only the lease holder sweeps.

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;

use super::objects::Objects;
use super::{PgStore, SweepReport};
use crate::store::{MailboxOwner, MessageBody, Store};
use crate::test_s3;

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

fn memory(text: &str) -> MessageBody {
    MessageBody::Memory(Bytes::from(text.to_string()))
}

/// A store whose bodies go to a fresh prefix of moto's bucket, and a second client of
/// that bucket for the test's own PUTs; `None` when PostgreSQL or moto is missing.
async fn s3_store() -> Option<(PgStore, Objects)> {
    let url = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap()?;
    let location = tokio::task::spawn_blocking(test_s3::bucket).await.unwrap()?;
    let config = location.object_store_config();
    let store = PgStore::connect_with(&url, None, Some(config.clone())).await.unwrap();
    Some((store, Objects::new(&config).unwrap()))
}

#[tokio::test]
async fn old_unnamed_objects_go_and_named_or_fresh_ones_stay() {
    let Some((store, objects)) = s3_store().await else { return };
    let owner = MailboxOwner::new("alice", "example.org");
    let s = Store::Pg(store.clone());
    s.ensure_account(&owner).await.unwrap();
    let inbox = s.open_mailbox(&owner, "INBOX").await.unwrap();
    let named = "Subject: kept\r\n\r\na message names this body\r\n";
    inbox.append(&memory(named), &[], None).await.unwrap();
    // Three objects left by deliveries that never committed, and a key under blobs/
    // that is not a body's.
    let old: Vec<String> = (0..3).map(|i| format!("Subject: orphan {i}\r\n\r\nnever committed\r\n")).collect();
    for text in &old {
        objects.put(&sha256(text.as_bytes()), &memory(text)).await.unwrap();
    }
    let beside = objects.key(&sha256(b"x"));
    let stray = ObjectPath::from(format!("{}/stray", beside.as_ref().rsplit_once('/').unwrap().0));
    objects.put_key(&stray, Bytes::from_static(b"not a body")).await.unwrap();

    // Nothing is a day old.
    let report = store.sweep_orphans(super::SWEEP_GRACE).await.unwrap();
    assert_eq!(report, SweepReport { listed: 4, ..Default::default() });

    // S3 times may have whole seconds: 4 s apart, a grace of 2 s splits them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fresh = "Subject: in flight\r\n\r\nits delivery has not committed yet\r\n";
    objects.put(&sha256(fresh.as_bytes()), &memory(fresh)).await.unwrap();
    let report = store.sweep_in_batches(Duration::from_secs(2), 2).await.unwrap();
    assert_eq!(report, SweepReport { listed: 5, orphans: 3, deleted: 3, failed: 0 });
    for text in &old {
        assert!(!objects.exists(&sha256(text.as_bytes())).await.unwrap(), "{text}");
    }
    assert!(objects.exists(&sha256(named.as_bytes())).await.unwrap(), "a row names it");
    assert!(objects.exists(&sha256(fresh.as_bytes())).await.unwrap(), "younger than the grace");
    assert!(objects.key_exists(&stray).await.unwrap(), "a key that is not a body's is left alone");
    assert_eq!(&inbox.read_message(1, 1000).await.unwrap()[..], named.as_bytes());
}

#[tokio::test]
async fn only_the_lease_holder_sweeps() {
    let Some((store, objects)) = s3_store().await else { return };
    let text = "Subject: orphan\r\n\r\nnever committed\r\n";
    objects.put(&sha256(text.as_bytes()), &memory(text)).await.unwrap();
    let held = store.try_lease(super::sweep::LEASE_NAME).await.unwrap().unwrap();
    assert_eq!(store.sweep_if_leased(Duration::ZERO).await.unwrap(), None, "another replica holds the lease");
    assert!(objects.exists(&sha256(text.as_bytes())).await.unwrap());
    drop(held);
    // The lease row is deleted in the background.
    let mut swept = None;
    for _ in 0..50 {
        swept = store.sweep_if_leased(Duration::ZERO).await.unwrap();
        if swept.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(swept.map(|r| r.deleted), Some(1));
    assert!(!objects.exists(&sha256(text.as_bytes())).await.unwrap());
}
