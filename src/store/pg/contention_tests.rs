//! Writers that lock the same rows from different sides: a COPY of a message locks the
//! two folders and then the body's row, a delivery of the same body into those folders
//! locks the body's row and a folder. Hammered concurrently, neither may fail (a deadlock
//! is avoided by the lock order, or retried), and the body's count stays exact.

use super::retry;
use super::*;
use crate::store::{LocalDelivery, MailStore, MailboxOps, MessageBody};

const ROUNDS: usize = 200;

fn alice() -> MailboxOwner {
    MailboxOwner::new("alice", "example.org")
}

fn to(folder: &str) -> LocalDelivery {
    LocalDelivery {
        owner: alice(),
        folder: folder.into(),
        header_prefix: format!("X-To: {folder}\r\n").into_bytes(),
        flags: Vec::new(),
    }
}

#[tokio::test]
async fn copies_and_deliveries_of_one_body_run_concurrently_without_errors() {
    let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() else { return };
    hammer(PgStore::connect(&url, None).await.unwrap()).await;
}

/// The same with the body in the bucket (moto's S3 server).
#[tokio::test]
async fn copies_and_deliveries_of_one_body_in_the_bucket_run_concurrently_without_errors() {
    let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() else { return };
    let Some(bucket) = tokio::task::spawn_blocking(crate::test_s3::bucket).await.unwrap() else { return };
    hammer(PgStore::connect_with(&url, None, Some(bucket.object_store_config())).await.unwrap()).await;
}

/// [`ROUNDS`] copies of A's message 1 to B, while the same body is delivered to B and A
/// [`ROUNDS`] times; then the body's count must equal the messages naming it.
async fn hammer(store: PgStore) {
    let text = "Subject: the same body\r\n\r\ndelivered and copied at once\r\n";
    let body = MessageBody::Memory(bytes::Bytes::from(text));
    for r in store.deliver(&body, &[to("A"), to("B")]).await {
        r.unwrap();
    }
    let a = store.open_mailbox(&alice(), "A").await.unwrap();
    let b = store.open_mailbox(&alice(), "B").await.unwrap();

    let copier = tokio::spawn(async move {
        for round in 0..ROUNDS {
            a.copy_to(&[1], &b).await.unwrap_or_else(|e| panic!("copy {round}: {e}"));
        }
    });
    let (s, d) = (store.clone(), body.clone());
    let deliverer = tokio::spawn(async move {
        for round in 0..ROUNDS {
            for r in s.deliver(&d, &[to("B"), to("A")]).await {
                r.unwrap_or_else(|e| panic!("delivery {round}: {e}"));
            }
        }
    });
    copier.await.unwrap();
    deliverer.await.unwrap();

    let (refcount, rows): (i64, i64) =
        sqlx::query_as("SELECT b.refcount, (SELECT count(*) FROM messages m WHERE m.body_hash = b.hash) FROM blobs b")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(rows, 2 + 3 * ROUNDS as i64, "every copy and delivery made its message");
    assert_eq!(refcount, rows, "the count is the number of messages naming the body");
}

/// Two transactions that lock two rows in opposite orders, made to meet halfway on their
/// first attempt: PostgreSQL aborts one as a deadlock (40P01), and [`retry::transaction`]
/// runs it again to success.
#[tokio::test]
async fn a_transaction_aborted_as_a_deadlock_is_run_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() else { return };
    let store = PgStore::connect(&url, None).await.unwrap();
    let pool = store.pool().clone();
    sqlx::query("CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL)").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO pair VALUES (1, 0), (2, 0)").execute(&pool).await.unwrap();
    let halfway = Arc::new(tokio::sync::Barrier::new(2));
    let run = |first: i32, second: i32| {
        let (pool, halfway) = (pool.clone(), halfway.clone());
        tokio::spawn(async move {
            let attempts = AtomicU32::new(0);
            let done = retry::transaction(|| {
                let (pool, halfway) = (pool.clone(), halfway.clone());
                let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    let bump = |id: i32| sqlx::query("UPDATE pair SET n = n + 1 WHERE id = $1").bind(id);
                    let mut tx = pool.begin().await.map_err(db_error)?;
                    bump(first).execute(&mut *tx).await.map_err(db_error)?;
                    if attempt == 1 {
                        halfway.wait().await;
                    }
                    bump(second).execute(&mut *tx).await.map_err(db_error)?;
                    tx.commit().await.map_err(db_error)
                }
            })
            .await;
            (done, attempts.load(Ordering::Relaxed))
        })
    };
    let (one, two) = (run(1, 2), run(2, 1));
    let (one, two) = (one.await.unwrap(), two.await.unwrap());
    one.0.unwrap();
    two.0.unwrap();
    assert_eq!(one.1 + two.1, 3, "one of them ran twice");
    let counts: Vec<i32> = sqlx::query_scalar("SELECT n FROM pair ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(counts, vec![2, 2], "each committed once");
}

/// Deadlocks PostgreSQL has detected in this database so far.
async fn deadlocks(store: &PgStore) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Many sessions delivering one body nobody has stored yet into one folder at once (a
/// burst of identical mail): the first stores it while the others wait for the folder.
/// Not one transaction is aborted as a deadlock (PostgreSQL detects one only after a
/// second, while every other delivery of the folder waits and the pool runs dry).
#[tokio::test]
async fn a_burst_of_one_new_body_into_one_folder_never_deadlocks() {
    let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() else { return };
    let store = PgStore::connect(&url, None).await.unwrap();
    store.ensure_account(&alice()).await.unwrap();
    let before = deadlocks(&store).await;
    const SESSIONS: usize = 40;
    for burst in 0..5 {
        let body = MessageBody::Memory(bytes::Bytes::from(format!("Subject: burst {burst}\r\n\r\nthe same\r\n")));
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|_| {
                let (s, b) = (store.clone(), body.clone());
                tokio::spawn(async move { s.deliver(&b, &[to("INBOX")]).await })
            })
            .collect();
        for t in tasks {
            for r in t.await.unwrap() {
                r.unwrap_or_else(|e| panic!("burst {burst}: {e}"));
            }
        }
    }
    // pg_stat_database is updated when a backend reports its statistics: wait for it.
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(store.pool()).await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(deadlocks(&store).await, before, "deadlocks detected");
    let inbox = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    assert_eq!(inbox.sync().await.unwrap().messages.len(), 5 * SESSIONS);
}

/// A STORE that waits for the folder's lock while another transaction sets the same flag
/// on the same message: when it runs, there is nothing left to change, and its answer must
/// still show the message as it is now (with the flag), not as it was when the STORE
/// began (a session would tell its client the flag it just stored is not there).
#[tokio::test]
async fn a_store_that_waited_for_the_folder_answers_with_the_flags_of_now() {
    use crate::store::{Flag, FlagOp};

    let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() else { return };
    let store = PgStore::connect(&url, None).await.unwrap();
    let body = MessageBody::Memory(bytes::Bytes::from("Subject: raced\r\n\r\nflagged twice\r\n"));
    for r in store.deliver(&body, &[to("INBOX")]).await {
        r.unwrap();
    }
    let inbox = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let uid = inbox.sync().await.unwrap().messages[0].uid;

    // The other writer takes the folder's lock first.
    let mut other = store.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM mailboxes WHERE id = $1 FOR UPDATE")
        .bind(inbox.row())
        .execute(&mut *other)
        .await
        .unwrap();
    let storing = {
        let inbox = inbox.clone();
        tokio::spawn(async move { inbox.store_flags(&[uid], FlagOp::Add, &[Flag::Seen], None).await })
    };
    // Once the STORE waits for the lock (its statement began, and its snapshot with it),
    // the other writer sets the flag and commits.
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    sqlx::query("UPDATE messages SET flags = flags | 1, modseq = modseq + 100 WHERE mailbox_id = $1 AND uid = $2")
        .bind(inbox.row())
        .bind(i64::from(uid))
        .execute(&mut *other)
        .await
        .unwrap();
    other.commit().await.unwrap();

    let outcome = storing.await.unwrap().unwrap();
    assert!(outcome.updated.is_empty(), "nothing was left to change: {outcome:?}");
    let [(u, flags, _)] = outcome.unchanged.as_slice() else { panic!("one message: {outcome:?}") };
    assert_eq!((*u, flags.as_slice()), (uid, &[Flag::Seen][..]), "the answer shows the flag now set");
}
