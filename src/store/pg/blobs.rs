//! Message bodies in PostgreSQL, stored once per content.
//!
//! Owns: the `blobs` and `blob_chunks` tables, and where each body's bytes are
//! (`blobs.location`). A body is keyed by its SHA-256, so a message to 50 local
//! recipients, or a COPY, stores its bytes once; `refcount` counts the message rows (live
//! and tombstones) that name it. The bytes are either 1 MiB `blob_chunks` rows
//! ([`IN_CHUNKS`]), written and read one at a time, so a 50 MiB message never sits in
//! memory whole, or one object in an S3 bucket ([`IN_OBJECTS`], `objects.rs`). A body keeps
//! the location it was first stored with, so turning an object store on later leaves the
//! existing bodies readable from their chunks.
//!
//! Why chunks are race-free without a GC lease: a body's row and its chunks are inserted
//! in the transaction that first references it, and deleted in the transaction whose unref
//! took the count to zero. Both take the row lock, so a delivery of the same body either
//! finds the row (and its chunks) or, after the delete committed, inserts both again.
//!
//! Objects cannot join a transaction, so their protocol is:
//! - Write: the object is PUT before the transaction (never holding a lock during a
//!   50 MiB upload), skipped when a live row already names it. In the transaction, the
//!   reference that makes the count 1 (a new row, or one revived from 0) HEADs the object
//!   and re-PUTs it if it is missing, holding the row lock and the body's advisory lock.
//! - Delete: the transaction that takes the count to 0 deletes the row; after COMMIT,
//!   [`delete_objects`] takes the body's advisory lock, checks that no row came back, and
//!   deletes the object. A delivery racing with it either committed its row first (the
//!   object stays) or takes the advisory lock after the delete (its HEAD sees the object
//!   gone and re-PUTs it).
//! - A failed delete, or a crash (or failed COMMIT) between a PUT and its COMMIT, leaves
//!   an object no row names: harmless, apart from the space. The orphan sweep
//!   (`sweep.rs`) reclaims those older than a day through [`delete_object`], under the
//!   same advisory lock.

use std::collections::HashMap;
use std::io;

use bytes::{Bytes, BytesMut};
use sqlx::{PgConnection, PgPool};
use tokio::io::AsyncReadExt;

use super::db_error;
use super::objects::Objects;
use crate::store::maildir::header_end;
use crate::store::{MessageBody, MessageReader, StoreError};

/// Bytes per `blob_chunks` row.
pub(super) const CHUNK: usize = 1 << 20;
/// Longest header block kept in `blobs.header` (the header cache); longer ones are read
/// from the chunks.
pub const MAX_CACHED_HEADER: usize = 64 * 1024;

/// `blobs.location`: the bytes are `blob_chunks` rows.
pub const IN_CHUNKS: i16 = 0;
/// `blobs.location`: the bytes are one object in the object store.
pub const IN_OBJECTS: i16 = 1;

/// Where a stored body's bytes are, as a message row names it.
#[derive(Clone, Debug)]
pub struct BodyRef {
    pub hash: Vec<u8>,
    pub size: u64,
    /// [`IN_CHUNKS`] or [`IN_OBJECTS`].
    pub location: i16,
}

/// A body's identity, computed before any transaction.
#[derive(Clone, Debug)]
pub struct Blob {
    /// SHA-256 of the bytes.
    pub hash: Vec<u8>,
    /// Length in bytes.
    pub size: u64,
    /// The header block, when at most [`MAX_CACHED_HEADER`].
    pub header: Option<Vec<u8>>,
}

/// Read `body` once: its hash, size and header block.
pub async fn describe(body: &MessageBody) -> Result<Blob, StoreError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut head = Vec::new();
    let mut size = 0u64;
    let mut take = |chunk: &[u8]| {
        ctx.update(chunk);
        if head.len() <= MAX_CACHED_HEADER {
            head.extend_from_slice(&chunk[..chunk.len().min(MAX_CACHED_HEADER + 1 - head.len())]);
        }
        size += chunk.len() as u64;
    };
    match body {
        MessageBody::Memory(b) => take(b),
        MessageBody::File { path, len } => {
            let mut file = open_body(path, *len).await?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).await.map_err(|e| StoreError::io(path, e))?;
                if n == 0 {
                    break;
                }
                take(&buf[..n]);
            }
        }
    }
    let complete = size <= MAX_CACHED_HEADER as u64;
    let header = header_end(&head, complete).filter(|end| *end <= MAX_CACHED_HEADER).map(|end| head[..end].to_vec());
    Ok(Blob { hash: ctx.finish().as_ref().to_vec(), size, header })
}

async fn open_body(path: &std::path::Path, len: u64) -> Result<tokio::io::Take<tokio::fs::File>, StoreError> {
    let file = tokio::fs::File::open(path).await.map_err(|e| StoreError::io(path, e))?;
    Ok(file.take(len))
}

/// With an object store, upload `body` before the transaction that will reference it,
/// unless a live row shows it stored already (a second recipient, a re-delivery).
pub async fn stage(
    pool: &PgPool,
    objects: Option<&Objects>,
    blob: &Blob,
    body: &MessageBody,
) -> Result<(), StoreError> {
    let Some(objects) = objects else { return Ok(()) };
    let live: Option<bool> = sqlx::query_scalar("SELECT refcount > 0 FROM blobs WHERE hash = $1")
        .bind(&blob.hash)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    if live != Some(true) {
        objects.put(&blob.hash, body).await?;
    }
    Ok(())
}

/// Lock the rows of `hashes` in hash order, before a statement that changes several:
/// an `UPDATE … FROM unnest(…)` locks them in whatever order its plan visits them, and
/// two such transactions over the same bodies would deadlock.
async fn lock_in_order(conn: &mut PgConnection, hashes: &[Vec<u8>]) -> Result<(), StoreError> {
    if hashes.len() > 1 {
        sqlx::query("SELECT hash FROM blobs WHERE hash = ANY($1) ORDER BY hash FOR NO KEY UPDATE")
            .bind(hashes)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// The advisory lock that orders an object's deletion against its re-upload (the row
/// lock cannot: the deleted row is gone). The one-`bigint` key space is apart from the
/// two-`int` one the migrator locks.
fn lock_key(hash: &[u8]) -> i64 {
    let mut key = [0u8; 8];
    let n = hash.len().min(8);
    key[..n].copy_from_slice(&hash[..n]);
    i64::from_be_bytes(key)
}

/// Count one more reference to `blob`, inserting its row (stored at `location`) if there
/// is none. Returns whether it was inserted now, the new count, and where the bytes are.
async fn take_ref(conn: &mut PgConnection, blob: &Blob, location: i16) -> Result<(bool, i64, i16), StoreError> {
    sqlx::query_as(
        "INSERT INTO blobs (hash, size, refcount, header, location) VALUES ($1, $2, 1, $3, $4) \
         ON CONFLICT (hash) DO UPDATE SET refcount = blobs.refcount + 1, zero_since = NULL \
         RETURNING (xmax = 0), refcount, location",
    )
    .bind(&blob.hash)
    .bind(blob.size as i64)
    .bind(blob.header.as_deref())
    .bind(location)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)
}

/// Add one reference to `blob`, storing its bytes when this is the first: as chunks in
/// this transaction, or (with an object store) by making sure the object [`stage`] sent
/// is still there.
pub async fn add_ref(
    conn: &mut PgConnection,
    blob: &Blob,
    body: &MessageBody,
    objects: Option<&Objects>,
) -> Result<(), StoreError> {
    let location = if objects.is_some() { IN_OBJECTS } else { IN_CHUNKS };
    let (inserted, refcount, location) = take_ref(conn, blob, location).await?;
    match location {
        IN_OBJECTS if refcount == 1 => {
            let objects = objects.ok_or_else(not_configured)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key(&blob.hash))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            if !objects.exists(&blob.hash).await? {
                objects.put(&blob.hash, body).await?;
            }
        }
        IN_CHUNKS if inserted => write_chunks(conn, &blob.hash, body).await?,
        _ => {}
    }
    Ok(())
}

fn not_configured() -> StoreError {
    StoreError::Unavailable("the body is in the object store, and MAILROOM_BLOB_STORE names none".into())
}

async fn write_chunks(conn: &mut PgConnection, hash: &[u8], body: &MessageBody) -> Result<(), StoreError> {
    let insert = |seq: i32, data: &[u8]| {
        sqlx::query("INSERT INTO blob_chunks (hash, seq, data) VALUES ($1, $2, $3)")
            .bind(hash.to_vec())
            .bind(seq)
            .bind(data.to_vec())
    };
    match body {
        MessageBody::Memory(b) => {
            for (seq, data) in b.chunks(CHUNK).enumerate() {
                insert(seq as i32, data).execute(&mut *conn).await.map_err(db_error)?;
            }
        }
        MessageBody::File { path, len } => {
            let mut file = open_body(path, *len).await?;
            let mut buf = vec![0u8; CHUNK];
            for seq in 0.. {
                let mut filled = 0;
                while filled < CHUNK {
                    let n = file.read(&mut buf[filled..]).await.map_err(|e| StoreError::io(path, e))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                insert(seq, &buf[..filled]).execute(&mut *conn).await.map_err(db_error)?;
            }
        }
    }
    Ok(())
}

/// [`describe`] for a body made of `parts` in order (the queue's trace headers, then the
/// content), without joining them. Queue bodies are always chunks, and their hash starts
/// from a separator so one never names a mailbox body (which may be in the object store,
/// where the queue does not read).
pub fn describe_parts(parts: &[Bytes]) -> Blob {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"mailroom queue body\0");
    let mut head = Vec::new();
    let mut size = 0u64;
    for part in parts {
        ctx.update(part);
        if head.len() <= MAX_CACHED_HEADER {
            head.extend_from_slice(&part[..part.len().min(MAX_CACHED_HEADER + 1 - head.len())]);
        }
        size += part.len() as u64;
    }
    let complete = size <= MAX_CACHED_HEADER as u64;
    let header = header_end(&head, complete).filter(|end| *end <= MAX_CACHED_HEADER).map(|end| head[..end].to_vec());
    Blob { hash: ctx.finish().as_ref().to_vec(), size, header }
}

/// [`add_ref`] for a body made of `parts`: the bytes are cut into the same 1 MiB rows
/// whatever the part boundaries, so [`reader`] and [`read_all`] read it like any body.
pub async fn add_ref_parts(conn: &mut PgConnection, blob: &Blob, parts: &[Bytes]) -> Result<(), StoreError> {
    let (inserted, _, _) = take_ref(conn, blob, IN_CHUNKS).await?;
    if !inserted {
        return Ok(());
    }
    let mut buf = Vec::with_capacity(CHUNK.min(blob.size as usize));
    let mut seq = 0i32;
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            let take = rest.len().min(CHUNK - buf.len());
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buf.len() == CHUNK {
                insert_chunk(conn, &blob.hash, seq, &buf).await?;
                buf.clear();
                seq += 1;
            }
        }
    }
    if !buf.is_empty() {
        insert_chunk(conn, &blob.hash, seq, &buf).await?;
    }
    Ok(())
}

async fn insert_chunk(conn: &mut PgConnection, hash: &[u8], seq: i32, data: &[u8]) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO blob_chunks (hash, seq, data) VALUES ($1, $2, $3)")
        .bind(hash)
        .bind(seq)
        .bind(data)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The whole body `hash` of `size` bytes in memory (what a delivery attempt hands the
/// transport), read one chunk per query so no connection is held for the whole read. A
/// missing chunk or a length other than `size` is an error, never a truncated message.
pub async fn read_all(pool: &PgPool, hash: &[u8], size: u64) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(size as usize);
    let chunks = size.div_ceil(CHUNK as u64) as i32;
    for seq in 0..chunks {
        let data: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM blob_chunks WHERE hash = $1 AND seq = $2")
            .bind(hash)
            .bind(seq)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
        let data = data.ok_or_else(|| StoreError::Unavailable(format!("body chunk {seq} is missing")))?;
        out.extend_from_slice(&data);
    }
    if out.len() as u64 != size {
        return Err(StoreError::Unavailable(format!("body is {} bytes, expected {size}", out.len())));
    }
    Ok(out)
}

/// Add `n` references to each of `hashes` (COPY: the bytes are there already).
pub async fn add_refs(conn: &mut PgConnection, hashes: Vec<Vec<u8>>) -> Result<(), StoreError> {
    let (hashes, counts) = count(hashes);
    lock_in_order(conn, &hashes).await?;
    sqlx::query(
        "UPDATE blobs b SET refcount = b.refcount + u.n, zero_since = NULL \
         FROM unnest($1::bytea[], $2::bigint[]) AS u(hash, n) WHERE b.hash = u.hash",
    )
    .bind(hashes)
    .bind(counts)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Drop one reference per entry of `hashes` (message rows deleted in the same transaction)
/// and delete the bodies nothing refers to any more. Returns the hashes whose object the
/// caller passes to [`delete_objects`] after COMMIT.
#[must_use = "the objects of the deleted rows are deleted after COMMIT"]
pub async fn unref(conn: &mut PgConnection, hashes: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, StoreError> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let (hashes, counts) = count(hashes);
    lock_in_order(conn, &hashes).await?;
    sqlx::query(
        "UPDATE blobs b SET refcount = b.refcount - u.n, \
         zero_since = CASE WHEN b.refcount - u.n <= 0 THEN now() END \
         FROM unnest($1::bytea[], $2::bigint[]) AS u(hash, n) WHERE b.hash = u.hash",
    )
    .bind(&hashes)
    .bind(counts)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let gone: Vec<(Vec<u8>, i16)> =
        sqlx::query_as("DELETE FROM blobs WHERE hash = ANY($1) AND refcount <= 0 RETURNING hash, location")
            .bind(&hashes)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
    Ok(gone.into_iter().filter(|(_, location)| *location == IN_OBJECTS).map(|(hash, _)| hash).collect())
}

/// Delete the objects of bodies whose rows a committed transaction deleted, unless a
/// delivery has stored the body again since. Failures are logged and left as orphans
/// (the caller's change is committed; an orphan only costs space).
pub async fn delete_objects(pool: &PgPool, objects: Option<&Objects>, hashes: Vec<Vec<u8>>) {
    let Some(objects) = objects else { return };
    for hash in hashes {
        if let Err(e) = delete_object(pool, objects, &hash).await {
            tracing::warn!(error = %e, "could not delete a body's object; it stays as an orphan");
        }
    }
}

/// Delete the object of `hash` unless a row names the body (checked under the body's
/// advisory lock, so a delivery storing it again either committed its row first or
/// re-uploads after this delete). Returns whether it was deleted.
pub(super) async fn delete_object(pool: &PgPool, objects: &Objects, hash: &[u8]) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock_key(hash)).execute(&mut *tx).await.map_err(db_error)?;
    let back: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM blobs WHERE hash = $1)")
        .bind(hash)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    if !back {
        objects.delete(hash).await?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(!back)
}

/// Distinct hashes and how often each occurs.
fn count(hashes: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Vec<i64>) {
    let mut map: HashMap<Vec<u8>, i64> = HashMap::new();
    for h in hashes {
        *map.entry(h).or_default() += 1;
    }
    map.into_iter().unzip()
}

/// A reader over `prefix` followed by the body `body`, from wherever its bytes are.
pub async fn open(
    pool: &PgPool,
    objects: Option<&Objects>,
    prefix: Bytes,
    body: &BodyRef,
) -> Result<MessageReader, StoreError> {
    if body.location == IN_OBJECTS {
        return objects.ok_or_else(not_configured)?.reader(prefix, &body.hash, body.size).await;
    }
    reader(pool, prefix, body.hash.clone(), body.size).await
}

/// A reader over `prefix` followed by the body `hash` of `size` bytes. A body of one chunk
/// is read at once; a larger one chunk by chunk as the reader is consumed, each chunk a
/// query of its own on the pool (no connection is held between reads).
async fn reader(pool: &PgPool, prefix: Bytes, hash: Vec<u8>, size: u64) -> Result<MessageReader, StoreError> {
    let total = prefix.len() as u64 + size;
    if size <= CHUNK as u64 {
        let data: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM blob_chunks WHERE hash = $1 AND seq = 0")
            .bind(&hash)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
        let mut all = BytesMut::with_capacity(total as usize);
        all.extend_from_slice(&prefix);
        all.extend_from_slice(&data.unwrap_or_default());
        return Ok(MessageReader::from_bytes(all.freeze()));
    }
    let chunks = size.div_ceil(CHUNK as u64) as i32;
    let pool = pool.clone();
    let first = futures_util::stream::once(async move { Ok::<Bytes, io::Error>(prefix) });
    let rest = futures_util::stream::unfold(0i32, move |seq| {
        let (pool, hash) = (pool.clone(), hash.clone());
        async move {
            if seq >= chunks {
                return None;
            }
            let data: Result<Vec<u8>, sqlx::Error> =
                sqlx::query_scalar("SELECT data FROM blob_chunks WHERE hash = $1 AND seq = $2")
                    .bind(hash)
                    .bind(seq)
                    .fetch_one(&pool)
                    .await;
            Some((data.map(Bytes::from).map_err(io::Error::other), seq + 1))
        }
    });
    use futures_util::StreamExt;
    let stream = tokio_util::io::StreamReader::new(first.chain(rest));
    Ok(MessageReader::from_stream(stream, total))
}
