//! Bodies in an S3 bucket (moto's server, `test_s3`) under a PostgreSQL store: bytes
//! read back exactly, one object per body however many messages name it, the object
//! deleted after the last reference, and re-uploaded when it vanished behind a row.

use std::io::Write;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::blobs::{self, IN_CHUNKS, IN_OBJECTS};
use super::objects::{Objects, check_bucket};
use super::{ObjectStoreConfig, PgStore};
use crate::store::{LocalDelivery, Mailbox, MailboxOwner, MessageBody, Store};
use crate::test_s3;

fn alice() -> MailboxOwner {
    MailboxOwner::new("alice", "example.org")
}

/// A fresh database and bucket prefix, or `None` when PostgreSQL or moto is missing.
async fn servers() -> Option<(String, ObjectStoreConfig)> {
    let url = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap()?;
    let location = tokio::task::spawn_blocking(test_s3::bucket).await.unwrap()?;
    Some((url, location.object_store_config()))
}

async fn s3_store() -> Option<(PgStore, Objects)> {
    let (url, config) = servers().await?;
    let store = PgStore::connect_with(&url, None, Some(config.clone())).await.unwrap();
    Some((store, Objects::new(&config).unwrap()))
}

async fn folder(store: &PgStore, name: &str) -> Mailbox {
    let store = Store::Pg(store.clone());
    store.ensure_account(&alice()).await.unwrap();
    if name != "INBOX" {
        store.create_folder(&alice(), name, None).await.unwrap();
    }
    store.open_mailbox(&alice(), name).await.unwrap()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

/// A message of `len` bytes whose content differs per `seed`, CRLF lines.
fn message(seed: &str, len: usize) -> Vec<u8> {
    let mut m = format!("Subject: {seed}\r\n\r\n").into_bytes();
    let mut i = 0u64;
    while m.len() < len {
        m.extend_from_slice(format!("{seed} line {i:08}\r\n").as_bytes());
        i += 1;
    }
    m.truncate(len);
    m
}

async fn read_all(mb: &Mailbox, uid: u32) -> Vec<u8> {
    let mut reader = mb.open_message(uid).await.unwrap();
    let size = reader.size();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len() as u64, size, "the reader's size matches its bytes");
    out
}

async fn row(store: &PgStore, hash: &[u8]) -> Option<(i64, i16)> {
    sqlx::query_as("SELECT refcount, location FROM blobs WHERE hash = $1")
        .bind(hash)
        .fetch_optional(store.pool())
        .await
        .unwrap()
}

async fn chunk_count(store: &PgStore) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM blob_chunks").fetch_one(store.pool()).await.unwrap()
}

#[tokio::test]
async fn bodies_go_to_the_bucket_and_read_back_exactly() {
    let Some((store, objects)) = s3_store().await else { return };
    let inbox = folder(&store, "INBOX").await;
    let small = message("small", 300);
    let uid = inbox.append(&MessageBody::Memory(Bytes::from(small.clone())), &[], None).await.unwrap();
    assert_eq!(read_all(&inbox, uid).await, small);
    assert_eq!(row(&store, &sha256(&small)).await, Some((1, IN_OBJECTS)));
    assert!(objects.exists(&sha256(&small)).await.unwrap());
    assert!(objects.key(&sha256(&small)).as_ref().contains("/blobs/"));

    // Delivered with a per-recipient prefix; a 5 MiB spool file (one PUT) and a 17 MiB
    // one (a multipart upload), each read back through the stream.
    let dir = tempfile::tempdir().unwrap();
    for (seed, len) in [("five", 5 << 20), ("seventeen", 17 << 20)] {
        let body = message(seed, len);
        let path = dir.path().join(seed);
        std::fs::File::create(&path).unwrap().write_all(&body).unwrap();
        let trace = format!("Received: for {seed}\r\n").into_bytes();
        let d =
            LocalDelivery { owner: alice(), folder: "INBOX".into(), header_prefix: trace.clone(), flags: Vec::new() };
        let spool = MessageBody::File { path, len: len as u64 };
        let delivered = Store::Pg(store.clone()).deliver(&spool, &[d]).await;
        delivered.into_iter().for_each(|r| drop(r.unwrap()));
        let uid = inbox.sync().await.unwrap().messages.last().unwrap().uid;
        let mut want = trace;
        want.extend_from_slice(&body);
        let got = read_all(&inbox, uid).await;
        assert!(got == want, "{seed}: {} bytes read, {} expected", got.len(), want.len());
        assert_eq!(row(&store, &sha256(&body)).await, Some((1, IN_OBJECTS)));
    }
    assert_eq!(chunk_count(&store).await, 0, "no body went to blob_chunks");
}

#[tokio::test]
async fn copies_share_one_object_and_the_last_reference_deletes_it() {
    let Some((store, objects)) = s3_store().await else { return };
    let inbox = folder(&store, "INBOX").await;
    let doomed = folder(&store, "Doomed").await;
    let body = message("shared", 2000);
    let hash = sha256(&body);
    let uid = doomed.append(&MessageBody::Memory(Bytes::from(body.clone())), &[], None).await.unwrap();
    let copied = doomed.copy_to(&[uid], &inbox).await.unwrap();
    assert_eq!(row(&store, &hash).await, Some((2, IN_OBJECTS)));
    let s = Store::Pg(store.clone());
    s.delete_folder(&alice(), "Doomed").await.unwrap();
    assert_eq!(row(&store, &hash).await, Some((1, IN_OBJECTS)));
    assert!(objects.exists(&hash).await.unwrap(), "a reference is left: the object stays");
    assert_eq!(read_all(&inbox, copied[0].1).await, body);

    let gone = folder(&store, "Gone").await;
    let only = message("only here", 1500);
    gone.append(&MessageBody::Memory(Bytes::from(only.clone())), &[], None).await.unwrap();
    assert!(objects.exists(&sha256(&only)).await.unwrap());
    s.delete_folder(&alice(), "Gone").await.unwrap();
    assert_eq!(row(&store, &sha256(&only)).await, None);
    assert!(!objects.exists(&sha256(&only)).await.unwrap(), "the last reference took the object with it");
}

#[tokio::test]
async fn an_object_lost_behind_its_row_is_uploaded_again() {
    let Some((store, objects)) = s3_store().await else { return };
    let inbox = folder(&store, "INBOX").await;
    let bytes = message("lost", 4000);
    let hash = sha256(&bytes);
    let body = MessageBody::Memory(Bytes::from(bytes.clone()));
    inbox.append(&body, &[], None).await.unwrap();

    // The race the in-transaction HEAD closes: the delivery saw a live row (so it sent
    // nothing), then the last reference went and the object was deleted before its
    // transaction took the row.
    let lose = || async {
        objects.delete(&hash).await.unwrap();
        sqlx::query("UPDATE blobs SET refcount = 0 WHERE hash = $1").bind(&hash).execute(store.pool()).await.unwrap();
        assert!(!objects.exists(&hash).await.unwrap());
    };
    lose().await;
    let blob = blobs::describe(&body).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    blobs::add_ref(&mut tx, &blob, &body, store.objects()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(objects.exists(&hash).await.unwrap(), "re-uploaded under the row lock");
    assert_eq!(row(&store, &hash).await, Some((1, IN_OBJECTS)));

    // The same through a delivery.
    lose().await;
    let d = LocalDelivery { owner: alice(), folder: "INBOX".into(), header_prefix: Vec::new(), flags: Vec::new() };
    Store::Pg(store.clone()).deliver(&body, &[d]).await.into_iter().for_each(|r| drop(r.unwrap()));
    assert!(objects.exists(&hash).await.unwrap());
    let last = inbox.sync().await.unwrap().messages.last().unwrap().uid;
    assert_eq!(read_all(&inbox, last).await, bytes);
}

#[tokio::test]
async fn bodies_in_chunks_still_read_once_the_bucket_is_on() {
    let Some((url, config)) = servers().await else { return };
    let before = PgStore::connect(&url, None).await.unwrap();
    let old = message("old", 3000);
    let first = folder(&before, "INBOX").await;
    let uid = first.append(&MessageBody::Memory(Bytes::from(old.clone())), &[], None).await.unwrap();
    assert_eq!(row(&before, &sha256(&old)).await, Some((1, IN_CHUNKS)));

    let after = PgStore::connect_with(&url, None, Some(config.clone())).await.unwrap();
    let inbox = folder(&after, "INBOX").await;
    assert_eq!(read_all(&inbox, uid).await, old);
    // The same body again keeps its chunks; a new one goes to the bucket.
    inbox.append(&MessageBody::Memory(Bytes::from(old.clone())), &[], None).await.unwrap();
    assert_eq!(row(&after, &sha256(&old)).await, Some((2, IN_CHUNKS)));
    let objects = Objects::new(&config).unwrap();
    assert!(!objects.exists(&sha256(&old)).await.unwrap());
    let new = message("new", 3000);
    let uid = inbox.append(&MessageBody::Memory(Bytes::from(new.clone())), &[], None).await.unwrap();
    assert_eq!(row(&after, &sha256(&new)).await, Some((1, IN_OBJECTS)));
    assert_eq!(read_all(&inbox, uid).await, new);
}

#[tokio::test]
async fn keys_are_laid_out_by_hash_and_an_unreachable_bucket_is_temporary() {
    let port = crate::test_ports::free_port();
    let location = test_s3::S3Location {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: test_s3::BUCKET,
        prefix: "mx/one".into(),
    };
    let objects = Objects::new(&location.object_store_config()).unwrap();
    let hash = sha256(b"x");
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(objects.key(&hash).as_ref(), format!("mx/one/blobs/{}/{hex}", &hex[..2]));
    // Nothing listens on the port: every call fails as "try again later".
    let err = objects.exists(&hash).await.unwrap_err();
    assert!(matches!(err, crate::store::StoreError::Unavailable(_)), "{err:?}");
    let err = objects.put(&hash, &MessageBody::Memory(Bytes::from_static(b"x"))).await.unwrap_err();
    assert!(matches!(err, crate::store::StoreError::Unavailable(_)), "{err:?}");
}

/// `store check` probes the bucket: a probe object is written, read back and deleted on
/// moto; a port nobody listens on and a bucket that does not exist are errors that name
/// the failed call.
#[tokio::test]
async fn the_bucket_check_writes_reads_and_deletes_a_probe() {
    let Some(location) = tokio::task::spawn_blocking(test_s3::bucket).await.unwrap() else { return };
    let config = location.object_store_config();
    check_bucket(&config).await.unwrap();
    let objects = Objects::new(&config).unwrap();
    assert_eq!(objects.check_keys().await.unwrap(), Vec::<String>::new(), "the probe was deleted");

    let mut gone = location.clone();
    gone.endpoint = format!("http://127.0.0.1:{}", crate::test_ports::free_port());
    let err = check_bucket(&gone.object_store_config()).await.unwrap_err();
    assert!(matches!(err, crate::store::StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("object store PUT"), "{err}");

    let mut wrong = location.clone();
    wrong.bucket = "no-such-bucket";
    let err = check_bucket(&wrong.object_store_config()).await.unwrap_err();
    assert!(err.to_string().contains("object store PUT"), "{err}");
}
