//! Change notifications across replicas: two `PgStore`s on one database, each with its own
//! pool and listener, stand for two replicas. The payload format is checked without a
//! database.

use std::time::Duration;

use tokio::sync::broadcast;

use super::notify::{Change, MAX_UIDS, parse, payload};
use super::{LISTENER_APPLICATION_NAME, PgMailbox, PgStore};
use crate::store::api::{MailStore, MailboxOps};
use crate::store::{Flag, FlagOp, LocalDelivery, MailboxEvent, MailboxOwner, MessageBody};

fn alice() -> MailboxOwner {
    MailboxOwner::new("alice", "example.org")
}

fn body(text: &str) -> MessageBody {
    MessageBody::Memory(bytes::Bytes::from(text.to_string()))
}

/// Two replicas on one fresh database; `None` when PostgreSQL is not installed here.
async fn replicas() -> Option<(PgStore, PgStore)> {
    let url = tokio::task::spawn_blocking(crate::test_pg::database).await.expect("fixture")?;
    let a = PgStore::connect(&url, None).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let b = PgStore::connect(&url, None).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    Some((a, b))
}

async fn open(store: &PgStore, folder: &str) -> PgMailbox {
    store.ensure_account(&alice()).await.expect("account");
    store.open_mailbox(&alice(), folder).await.expect("open")
}

/// Wait up to `within` for `want`, skipping other events and overflows (events are hints:
/// extra or dropped ones are allowed, a missing last one is not).
async fn expect(rx: &mut broadcast::Receiver<MailboxEvent>, want: MailboxEvent, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) if ev == want => return,
            Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("waiting for {want:?}: {other:?}"),
        }
    }
}

/// Every event that arrives until none has for `quiet`.
async fn drain(rx: &mut broadcast::Receiver<MailboxEvent>, quiet: Duration) -> Vec<MailboxEvent> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Ok(ev)) => got.push(ev),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return got,
        }
    }
}

/// Listener connections to this store's database, as the server sees them.
async fn listeners(store: &PgStore) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_one(store.pool())
    .await
    .expect("pg_stat_activity")
}

/// Poll [`listeners`] until it is `want`, for up to five seconds.
async fn wait_for_listeners(store: &PgStore, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = listeners(store).await;
        if n == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} listener connections, expected {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn payloads_round_trip_and_stay_far_below_the_notify_limit() {
    let cases = [
        MailboxEvent::NewMessages,
        MailboxEvent::FlagsChanged { uids: vec![1, 2, 3], modseq: u64::MAX, known: None },
        MailboxEvent::Expunged { uids: vec![4, 5] },
    ];
    let change = |mailbox, modseq, event| Change { mailbox, modseq, event };
    for event in cases {
        let c = change(42, u64::MAX, event);
        assert_eq!(parse(&payload(u64::MAX, &c)), Some((u64::MAX, c)));
    }
    assert_eq!(
        payload(0xab, &change(7, 12, MailboxEvent::FlagsChanged { uids: vec![1, 9], modseq: 12, known: None })),
        "ab 7 12 F 1,9"
    );
    // Too many UIDs (or none): a resync hint, which sessions receive as NewMessages.
    let many: Vec<u32> = (1..=MAX_UIDS as u32 + 1).collect();
    assert_eq!(payload(0xab, &change(7, 12, MailboxEvent::Expunged { uids: many })), "ab 7 12 R");
    assert_eq!(parse("ab 7 12 R"), Some((0xab, change(7, 12, MailboxEvent::NewMessages))));
    let largest =
        payload(u64::MAX, &change(i64::MAX, u64::MAX, MailboxEvent::Expunged { uids: vec![u32::MAX; MAX_UIDS] }));
    assert!(largest.len() < 8000, "{} bytes", largest.len());
    for junk in [
        "",
        "7",
        "ab 7",
        "ab 7 N",
        "ab x 1 N",
        "zz 7 1 N",
        "ab 7 -1 N",
        "ab 7 1 N extra",
        "ab 7 1 F",
        "ab 7 1 F 1,,2",
        "ab 7 1 X -1",
        "ab 7 1 Q 1",
    ] {
        assert_eq!(parse(junk), None, "{junk:?}");
    }
}

#[tokio::test]
async fn changes_on_one_replica_reach_sessions_on_another() {
    let Some((a, b)) = replicas().await else { return };
    let on_a = open(&a, "INBOX").await;
    let on_b = open(&b, "INBOX").await;
    let mut idle = on_b.subscribe();
    let second = Duration::from_secs(1);
    // Another program's notification on the channel is ignored.
    sqlx::query("SELECT pg_notify('mailroom', 'hello')").execute(a.pool()).await.expect("notify");

    on_a.append(&body("Subject: 1\r\n\r\nx\r\n"), &[], None).await.expect("append");
    expect(&mut idle, MailboxEvent::NewMessages, second).await;
    let d = LocalDelivery { owner: alice(), folder: "INBOX".into(), header_prefix: Vec::new(), flags: Vec::new() };
    for r in a.deliver(&body("Subject: 2\r\n\r\ny\r\n"), &[d]).await {
        r.expect("deliver");
    }
    expect(&mut idle, MailboxEvent::NewMessages, second).await;
    assert_eq!(on_b.sync().await.expect("sync").messages.len(), 2);

    let modseq = on_a.store_flags(&[1, 2], FlagOp::Add, &[Flag::Seen], None).await.expect("store").updated[0].2;
    expect(&mut idle, MailboxEvent::FlagsChanged { uids: vec![1, 2], modseq, known: None }, second).await;
    on_a.expunge(&[1]).await.expect("expunge");
    expect(&mut idle, MailboxEvent::Expunged { uids: vec![1] }, second).await;

    // MOVE: the source hears an expunge, the destination new mail.
    let trash_on_a = open(&a, "Trash").await;
    let trash_on_b = open(&b, "Trash").await;
    let mut trash_idle = trash_on_b.subscribe();
    on_a.move_to(&[2], &trash_on_a).await.expect("move");
    expect(&mut idle, MailboxEvent::Expunged { uids: vec![2] }, second).await;
    expect(&mut trash_idle, MailboxEvent::NewMessages, second).await;
    trash_on_a.copy_to(&[1], &on_a).await.expect("copy");
    expect(&mut idle, MailboxEvent::NewMessages, second).await;

    let truth = on_b.changes_since(on_b.uid_validity(), 0).await.expect("changes").expect("known modseq");
    assert_eq!(truth.expunged, [1, 2]);
    assert_eq!(truth.changed.iter().map(|m| m.uid).collect::<Vec<_>>(), [3]);
}

#[tokio::test]
async fn a_change_too_large_to_list_asks_sessions_to_resync() {
    let Some((a, b)) = replicas().await else { return };
    let on_a = open(&a, "INBOX").await;
    // The handle stays open: a folder's channel closes with its last handle.
    let on_b = open(&b, "INBOX").await;
    let mut idle = on_b.subscribe();
    let n = MAX_UIDS as u32 + 1;
    for i in 0..n {
        on_a.append(&body(&format!("Subject: {i}\r\n\r\nx\r\n")), &[], None).await.expect("append");
    }
    // Notifications arrive in commit order: once this one is in, the appends' are too.
    let modseq = on_a.store_flags(&[1], FlagOp::Add, &[Flag::Seen], None).await.expect("store").updated[0].2;
    expect(&mut idle, MailboxEvent::FlagsChanged { uids: vec![1], modseq, known: None }, Duration::from_secs(5)).await;
    let all: Vec<u32> = (1..=n).collect();
    on_a.store_flags(&all, FlagOp::Add, &[Flag::Flagged], None).await.expect("store");
    let got = drain(&mut idle, Duration::from_millis(500)).await;
    assert_eq!(got, [MailboxEvent::NewMessages]);
}

#[tokio::test]
async fn a_lost_listener_connection_comes_back_and_asks_sessions_to_resync() {
    let Some((a, b)) = replicas().await else { return };
    let on_a = open(&a, "INBOX").await;
    // The handle stays open: a folder's channel closes with its last handle.
    let on_b = open(&b, "INBOX").await;
    let mut idle = on_b.subscribe();
    wait_for_listeners(&a, 2).await;

    // Both replicas' listeners (the server cannot tell them apart by name).
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_all(a.pool())
    .await
    .expect("terminate");
    assert_eq!(killed, [true, true]);
    // Nothing was written: the event is the resync hint, sent once the listener is back.
    expect(&mut idle, MailboxEvent::NewMessages, Duration::from_secs(5)).await;
    wait_for_listeners(&a, 2).await;

    on_a.append(&body("Subject: after\r\n\r\nx\r\n"), &[], None).await.expect("append");
    let modseq = on_a.store_flags(&[1], FlagOp::Add, &[Flag::Seen], None).await.expect("store").updated[0].2;
    expect(&mut idle, MailboxEvent::FlagsChanged { uids: vec![1], modseq, known: None }, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn dropping_every_clone_of_a_store_ends_its_listener() {
    let Some((a, b)) = replicas().await else { return };
    let mailbox = open(&a, "INBOX").await;
    let clone = a.clone();
    wait_for_listeners(&b, 2).await;
    drop(a);
    drop(clone);
    // An open mailbox keeps its store, and so the listener, alive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listeners(&b).await, 2);
    drop(mailbox);
    wait_for_listeners(&b, 1).await;
}

#[tokio::test]
async fn the_writing_replica_hears_each_change_once_and_at_once() {
    let Some((a, b)) = replicas().await else { return };
    let writer = open(&a, "INBOX").await;
    let mut idle = writer.subscribe();
    writer.append(&body("Subject: 1\r\n\r\nx\r\n"), &[], None).await.expect("append");
    // Already there when the write returns: IMAP reports a session's own APPEND in its
    // response only then.
    assert_eq!(idle.try_recv(), Ok(MailboxEvent::NewMessages));
    let updated = writer.store_flags(&[1], FlagOp::Add, &[Flag::Seen], None).await.expect("store").updated;
    // With the new flags: this replica's sessions need not ask the database.
    let (modseq, known) = (updated[0].2, Some(updated.into()));
    assert_eq!(idle.try_recv(), Ok(MailboxEvent::FlagsChanged { uids: vec![1], modseq, known }));
    // Its own NOTIFYs come back to its listener, which skips them: the next event is the
    // other replica's later change (notifications arrive in commit order).
    open(&b, "INBOX").await.expunge(&[1]).await.expect("expunge");
    let next = tokio::time::timeout(Duration::from_secs(1), idle.recv()).await;
    assert_eq!(next, Ok(Ok(MailboxEvent::Expunged { uids: vec![1] })));
}

/// A notification lost with its sender (the replica died between its COMMIT and its
/// outbox's send): the catch-up poll finds the folder's modseq past what its sessions were
/// told, and asks them to resync, once.
#[tokio::test]
async fn the_catch_up_poll_finds_a_change_whose_notification_was_lost() {
    let Some((a, b)) = replicas().await else { return };
    let on_a = open(&a, "INBOX").await;
    let on_b = open(&b, "INBOX").await;
    let mut idle = on_b.subscribe();
    b.catch_up().await.expect("poll");
    assert_eq!(drain(&mut idle, Duration::from_millis(200)).await, [], "nothing changed yet");
    // A committed change that no NOTIFY announces.
    sqlx::query("UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1")
        .bind(on_a.row())
        .execute(a.pool())
        .await
        .expect("update");
    b.catch_up().await.expect("poll");
    assert_eq!(idle.try_recv(), Ok(MailboxEvent::NewMessages));
    b.catch_up().await.expect("poll");
    assert_eq!(drain(&mut idle, Duration::from_millis(200)).await, [], "told once");
    // A change that was announced is not announced again by the poll.
    on_a.append(&body("Subject: 1\r\n\r\nx\r\n"), &[], None).await.expect("append");
    expect(&mut idle, MailboxEvent::NewMessages, Duration::from_secs(5)).await;
    b.catch_up().await.expect("poll");
    assert_eq!(drain(&mut idle, Duration::from_millis(200)).await, [], "the NOTIFY already told");
}
