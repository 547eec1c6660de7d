//! What the PostgreSQL backend promises beyond the store contract (`contract_tests.rs`):
//! migrations that are safe when replicas start together, UIDs that stay unique when two
//! replicas append to one folder, bodies stored once and freed with their last message,
//! and a database outage that is a temporary error, not a hang or a crash.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::migrate::{self, MigrateError};
use super::*;
use crate::store::{Flag, FlagOp, LocalDelivery, MailStore, MailboxOps, MessageBody};
use crate::test_pg::{self, PgCluster};

fn alice() -> MailboxOwner {
    MailboxOwner::new("alice", "example.org")
}

fn body(text: &str) -> MessageBody {
    MessageBody::Memory(bytes::Bytes::from(text.to_string()))
}

async fn fresh() -> Option<(String, PgStore)> {
    let url = tokio::task::spawn_blocking(test_pg::database).await.unwrap()?;
    let store = PgStore::connect(&url, None).await.unwrap();
    Some((url, store))
}

#[tokio::test]
async fn migrations_run_once_even_when_replicas_start_together() {
    let Some(url) = tokio::task::spawn_blocking(test_pg::database).await.unwrap() else { return };
    let stores: Vec<PgStore> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(PgStore::connect_only(&url, None).await.unwrap());
        }
        v
    };
    let runs = stores.iter().map(|s| {
        let pool = s.pool().clone();
        tokio::spawn(async move { migrate::migrate(&pool).await })
    });
    let mut applied = Vec::new();
    for r in runs {
        applied.push(r.await.unwrap().unwrap());
    }
    let all: Vec<i32> = migrate::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(applied.iter().filter(|a| **a == all).count(), 1, "{applied:?}");
    assert_eq!(applied.iter().filter(|a| a.is_empty()).count(), 3, "{applied:?}");
    // Again: nothing to do, and the check reports the current version.
    assert!(migrate::migrate(stores[0].pool()).await.unwrap().is_empty());
    let report = stores[0].check().await.unwrap();
    assert_eq!((report.version, report.known), (migrate::current_version(), migrate::current_version()));
    assert!(report.server.starts_with(char::is_numeric), "{report:?}");
}

#[tokio::test]
async fn a_schema_from_a_newer_mailroom_is_refused() {
    let Some((url, store)) = fresh().await else { return };
    let newer = migrate::current_version() + 1;
    sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')")
        .bind(newer)
        .execute(store.pool())
        .await
        .unwrap();
    match PgStore::connect(&url, None).await {
        Err(MigrateError::Newer { found, known }) => assert_eq!((found, known), (newer, migrate::current_version())),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn two_replicas_appending_to_one_folder_never_share_a_uid() {
    let Some((url, a)) = fresh().await else { return };
    let b = PgStore::connect(&url, None).await.unwrap();
    a.account_id(&alice()).await.unwrap();
    const EACH: usize = 200;
    let mut tasks = Vec::new();
    for store in [a.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
            let mut uids = Vec::with_capacity(EACH);
            for i in 0..EACH {
                uids.push(mb.append(&body(&format!("Subject: {i}\r\n\r\nx\r\n")), &[], None).await.unwrap());
            }
            uids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let uids = t.await.unwrap();
        assert!(uids.windows(2).all(|w| w[0] < w[1]), "each replica sees its UIDs ascend");
        all.extend(uids);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=2 * EACH as u32).collect::<Vec<_>>(), "unique, no gaps");
    let snap = b.open_mailbox(&alice(), "INBOX").await.unwrap().sync().await.unwrap();
    assert_eq!((snap.messages.len(), snap.uid_next), (2 * EACH, 2 * EACH as u32 + 1));
    let modseqs: std::collections::HashSet<u64> = snap.messages.iter().map(|m| m.modseq).collect();
    assert_eq!(modseqs.len(), 2 * EACH, "every append has its own modseq");
}

/// STOREs of different flags on one message from two replicas at once (the one-statement
/// path) build on each other: none overwrites the other's flag, and every change that
/// changed something has a modseq of its own.
#[tokio::test]
async fn concurrent_stores_on_one_message_from_two_replicas_lose_no_flag() {
    let Some((url, a)) = fresh().await else { return };
    let b = PgStore::connect(&url, None).await.unwrap();
    a.account_id(&alice()).await.unwrap();
    let inbox = a.open_mailbox(&alice(), "INBOX").await.unwrap();
    inbox.append(&body("Subject: x\r\n\r\nx\r\n"), &[Flag::Keyword("$Label1".into())], None).await.unwrap();
    const ROUNDS: usize = 100;
    let mut tasks = Vec::new();
    for (store, flag) in [(a.clone(), Flag::Seen), (b.clone(), Flag::Flagged)] {
        tasks.push(tokio::spawn(async move {
            let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
            let mut modseqs = Vec::new();
            for i in 0..ROUNDS {
                // Ends with the flag added (ROUNDS is even).
                let op = if i % 2 == 0 { FlagOp::Remove } else { FlagOp::Add };
                let out = mb.store_flags(&[1], op, std::slice::from_ref(&flag), None).await.unwrap();
                modseqs.extend(out.updated.iter().map(|u| u.2));
            }
            modseqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let snap = inbox.sync().await.unwrap();
    let flags = &snap.messages[0].flags;
    for f in [Flag::Seen, Flag::Flagged, Flag::Keyword("$Label1".into())] {
        assert!(flags.contains(&f), "{f:?} kept: {flags:?}");
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a modseq per change");
    assert!(n >= ROUNDS, "the adds after the removes changed the message: {n}");
    // Removing a keyword keeps the others (and their stored order).
    inbox.store_flags(&[1], FlagOp::Add, &[Flag::Keyword("$Label2".into())], None).await.unwrap();
    let out = inbox.store_flags(&[1], FlagOp::Remove, &[Flag::Keyword("$Label1".into())], None).await.unwrap();
    assert_eq!(out.updated.len(), 1);
    assert!(out.updated[0].1.contains(&Flag::Keyword("$Label2".into())), "{:?}", out.updated);
    assert!(!out.updated[0].1.contains(&Flag::Keyword("$Label1".into())), "{:?}", out.updated);
}

/// `(refcount, chunks)` of the one body in the database, `None` when it is gone.
async fn the_blob(store: &PgStore) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT refcount, (SELECT count(*) FROM blob_chunks c WHERE c.hash = b.hash) FROM blobs b")
        .fetch_optional(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_body_is_stored_once_and_freed_with_its_last_message() {
    let Some((_, store)) = fresh().await else { return };
    let to = |folder: &str| LocalDelivery {
        owner: alice(),
        folder: folder.into(),
        header_prefix: format!("X-Folder: {folder}\r\n").into_bytes(),
        flags: Vec::new(),
    };
    let text = "Subject: shared\r\n\r\nsame body\r\n";
    for r in store.deliver(&body(text), &[to("INBOX"), to("Lists")]).await {
        r.unwrap();
    }
    assert_eq!(the_blob(&store).await, Some((2, 1)));
    let inbox = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let trash = store.open_mailbox(&alice(), "Trash").await.unwrap();
    inbox.copy_to(&[1], &trash).await.unwrap();
    assert_eq!(the_blob(&store).await, Some((3, 1)), "a copy adds a reference, not bytes");
    assert_eq!(&inbox.read_message(1, 1000).await.unwrap()[..], format!("X-Folder: INBOX\r\n{text}").as_bytes());
    // An expunged message stays readable (RFC 2180) and keeps its reference.
    inbox.expunge(&[1]).await.unwrap();
    assert_eq!(&inbox.read_message(1, 9).await.unwrap()[..], b"X-Folder:");
    assert_eq!(the_blob(&store).await, Some((3, 1)));
    store.delete_folder(&alice(), "Lists").await.unwrap();
    store.delete_folder(&alice(), "Trash").await.unwrap();
    assert_eq!(the_blob(&store).await, Some((1, 1)), "the tombstone still refers to it");
    // Purge the tombstone as if it had aged, through the next expunge.
    sqlx::query("UPDATE messages SET expunged_at = now() - interval '2 hours'").execute(store.pool()).await.unwrap();
    inbox.append(&body("other\r\n"), &[], None).await.unwrap();
    inbox.expunge(&[2]).await.unwrap();
    let left: Vec<i64> = sqlx::query_scalar("SELECT refcount FROM blobs b WHERE b.size = $1")
        .bind(text.len() as i64)
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(left.is_empty(), "freed with its last reference: {left:?}");
    assert!(matches!(inbox.read_message(1, 10).await, Err(StoreError::NoSuchMessage(1))));
    let changes = inbox.changes_since(inbox.uid_validity(), 1).await.unwrap();
    assert_eq!(changes, None, "a client state older than the purge must resync");
}

/// The kept message list is brought forward by what changed since its modseq, unless
/// expunged rows were purged past it: then only a full read can tell what left.
#[tokio::test]
async fn a_purge_past_the_kept_list_makes_the_next_sync_read_the_folder_afresh() {
    let Some((url, store)) = fresh().await else { return };
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    for t in ["a\r\n", "b\r\n", "c\r\n"] {
        mb.append(&body(t), &[], None).await.unwrap();
    }
    let kept = mb.sync().await.unwrap();
    assert_eq!(kept.messages.len(), 3);
    // Through another replica, so no event or shared state of this one is involved.
    let other = PgStore::connect(&url, None).await.unwrap();
    let there = other.open_mailbox(&alice(), "INBOX").await.unwrap();
    there.expunge(&[1]).await.unwrap();
    sqlx::query("UPDATE messages SET expunged_at = now() - interval '2 hours' WHERE expunged_at IS NOT NULL")
        .execute(store.pool())
        .await
        .unwrap();
    there.expunge(&[2]).await.unwrap(); // purges uid 1's tombstone
    let purged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE uid = 1").fetch_one(store.pool()).await.unwrap();
    assert_eq!(purged, 0);
    let now = mb.sync().await.unwrap();
    assert_eq!(now.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), [3]);
    assert_eq!(now, there.sync().await.unwrap());
}

#[tokio::test]
async fn a_large_message_streams_in_and_out_in_chunks() {
    let Some((_, store)) = fresh().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool");
    let mut text = b"Subject: big\r\n\r\n".to_vec();
    while text.len() < 3 * 1024 * 1024 + 17 {
        text.extend_from_slice(format!("line {}\r\n", text.len()).as_bytes());
    }
    std::fs::write(&path, &text).unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let spooled = MessageBody::File { path, len: text.len() as u64 };
    let uid = mb.append(&spooled, &[Flag::Seen], None).await.unwrap();
    assert_eq!(the_blob(&store).await, Some((1, 4)), "1 MiB chunks");
    let mut reader = mb.open_message(uid).await.unwrap();
    assert_eq!(reader.size(), text.len() as u64);
    reader.skip(1_500_000).await.unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    assert!(rest == text[1_500_000..], "byte-exact after a skip across chunks");
    assert_eq!(&mb.read_header_block(uid).await.unwrap()[..], b"Subject: big\r\n\r\n");
}

#[tokio::test]
async fn a_database_outage_is_a_temporary_error_and_the_store_recovers() {
    let Some(cluster) = tokio::task::spawn_blocking(|| PgCluster::start(true)).await.unwrap() else { return };
    let url = cluster.url("postgres");
    let store = PgStore::connect(&url, None).await.unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    mb.append(&body("before\r\n"), &[], None).await.unwrap();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.crash();
        cluster
    })
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let err = mb.append(&body("during\r\n"), &[], None).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)) && err.is_temporary(), "{err:?}");
    assert!(started.elapsed() < ACQUIRE_TIMEOUT + Duration::from_secs(5), "answers, does not hang");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    // The pool reconnects by itself; what was acknowledged before the crash is there.
    let mut snap = None;
    for _ in 0..50 {
        match mb.sync().await {
            Ok(s) => {
                snap = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let snap = snap.expect("the store recovers without a restart");
    assert_eq!(snap.messages.len(), 1);
    assert_eq!(mb.append(&body("after\r\n"), &[], None).await.unwrap(), 2);
    drop(store);
    drop(cluster);
}

#[tokio::test]
async fn a_lease_excludes_other_replicas_until_released_or_expired() {
    let Some((url, a)) = fresh().await else { return };
    let b = PgStore::connect(&url, None).await.unwrap();
    let held = a.try_lease("pop3:alice@example.org").await.unwrap().expect("free at first");
    assert!(b.try_lease("pop3:alice@example.org").await.unwrap().is_none(), "held on the other replica");
    assert!(b.try_lease("pop3:bob@example.org").await.unwrap().is_some(), "per name");
    drop(held);
    let mut again = None;
    for _ in 0..50 {
        again = b.try_lease("pop3:alice@example.org").await.unwrap();
        if again.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = again.expect("released when dropped");
    // A holder that died (its row expired) is taken over; its successor's row is not
    // touched by the dead holder's late release.
    sqlx::query("UPDATE leases SET until = now() - interval '1 second'").execute(a.pool()).await.unwrap();
    let successor = a.try_lease("pop3:alice@example.org").await.unwrap().expect("expired: taken over");
    assert!(!again.still_held().await.unwrap(), "the old holder can tell it lost the lease");
    assert!(successor.still_held().await.unwrap());
    drop(again);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.try_lease("pop3:alice@example.org").await.unwrap().is_none(), "the successor still holds it");
    drop(successor);
}

#[tokio::test]
async fn a_maildir_imports_with_its_uids_and_flags_and_resumes() {
    let Some((_, pg)) = fresh().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let maildir = crate::store::Store::open(dir.path(), "old.example.org").unwrap();
    for i in 0..3 {
        maildir
            .deliver(
                &body(&format!("Subject: {i}\r\n\r\nx\r\n")),
                &[LocalDelivery {
                    owner: alice(),
                    folder: "INBOX".into(),
                    header_prefix: Vec::new(),
                    flags: Vec::new(),
                }],
            )
            .await;
    }
    let inbox = maildir.open_mailbox(&alice(), "INBOX").await.unwrap();
    inbox
        .store_flags(&[1], crate::store::FlagOp::Add, &[Flag::Seen, Flag::Keyword("$Work".into())], None)
        .await
        .unwrap();
    inbox.expunge(&[2]).await.unwrap();
    maildir.create_folder(&alice(), "Archive/2024", Some(crate::store::SpecialUse::Archive)).await.unwrap();
    let archive = maildir.open_mailbox(&alice(), "Archive/2024").await.unwrap();
    archive.append(&body("Subject: old\r\n\r\nkept\r\n"), &[Flag::Answered], None).await.unwrap();
    maildir.set_subscribed(&alice(), "Lists/rust", true).await.unwrap();
    maildir.sieve_put(&alice(), "main", b"keep;\r\n").await.unwrap();
    maildir.sieve_put(&alice(), "spare", b"stop;").await.unwrap();
    maildir.sieve_set_active(&alice(), Some("main")).await.unwrap();
    let want = inbox.sync().await.unwrap();

    let reports = pg.import_maildir(dir.path(), |_| {}).await.unwrap();
    let copied: u64 = reports.iter().map(|r| r.copied).sum();
    assert_eq!(copied, 3, "{reports:?}");
    let got = pg.open_mailbox(&alice(), "INBOX").await.unwrap();
    let snap = got.sync().await.unwrap();
    assert_eq!((snap.uid_validity, snap.uid_next), (want.uid_validity, want.uid_next));
    // PostgreSQL keeps microseconds; INTERNALDATE shows seconds.
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let strip = |m: &crate::store::MessageMeta| (m.uid, m.flags.clone(), m.size, secs(m.internal_date), m.uidl.clone());
    assert_eq!(
        snap.messages.iter().map(strip).collect::<Vec<_>>(),
        want.messages.iter().map(strip).collect::<Vec<_>>()
    );
    assert_eq!(got.read_message(3, 100).await.unwrap(), inbox.read_message(3, 100).await.unwrap());
    let folders = pg.list_folders(&alice()).await.unwrap();
    let old = folders.iter().find(|f| f.name == "Archive/2024").expect("folder imported");
    assert_eq!(old.special_use, Some(crate::store::SpecialUse::Archive));
    assert!(pg.subscriptions(&alice()).await.unwrap().contains(&"Lists/rust".to_string()));
    assert_eq!(pg.sieve_list(&alice()).await.unwrap(), maildir.sieve_list(&alice()).await.unwrap());
    assert_eq!(pg.sieve_active(&alice()).await.unwrap(), maildir.sieve_active(&alice()).await.unwrap());
    // A new delivery to the Maildir, then a second run: only that one is copied.
    inbox.append(&body("Subject: late\r\n\r\nx\r\n"), &[], None).await.unwrap();
    let again = pg.import_maildir(dir.path(), |_| {}).await.unwrap();
    let (copied, present): (u64, u64) = again.iter().fold((0, 0), |(c, p), r| (c + r.copied, p + r.present));
    assert_eq!((copied, present), (1, 3), "{again:?}");
    assert_eq!(uids(&got.sync().await.unwrap().messages), [1, 3, 4]);
    // A server running on the data dir holds its lock: refused.
    let lock = std::fs::File::create(dir.path().join("lock")).unwrap();
    lock.try_lock().unwrap();
    assert!(matches!(pg.import_maildir(dir.path(), |_| {}).await, Err(super::ImportError::Busy(_))));
}

fn uids<'a>(messages: impl IntoIterator<Item = &'a crate::store::MessageMeta>) -> Vec<u32> {
    messages.into_iter().map(|m| m.uid).collect()
}

/// Every connection of the pool plans statements once (generic plans, `mod.rs`), set by a
/// statement after connecting rather than by a startup parameter poolers may refuse.
#[tokio::test]
async fn pool_connections_use_generic_plans() {
    let Some((_, store)) = fresh().await else { return };
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode").fetch_one(store.pool()).await.unwrap();
    assert_eq!(mode, "force_generic_plan");
}
