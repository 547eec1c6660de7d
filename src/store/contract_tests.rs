//! The store contract: what IMAP, POP3 and SMTP rely on from any backend, checked through
//! `store::Store` (and so through `MailStore`/`MailboxOps`) on every backend in
//! [`BACKENDS`]. A new backend adds its factory there and must pass all of it unchanged.
//!
//! Only observable behaviour is asserted here: UIDs, modseqs, flags, events, bytes read
//! back, errors. How a backend lays things out (Maildir file names, Dovecot keyword
//! letters, index files) is tested beside that backend (`maildir/mailbox_tests.rs`).

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;

use super::*;

/// A backend the contract runs on.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Maildir,
    Pg,
    /// PostgreSQL with bodies in an S3 bucket (moto's server).
    PgS3,
}

/// Every backend the contract runs on.
const BACKENDS: &[Backend] = &[Backend::Maildir, Backend::Pg, Backend::PgS3];

/// A fresh, empty store of `backend` (`dir` lives as long as the case); `None` when the
/// backend's server is not installed here (never under CI, see `test_pg`, `test_s3`).
async fn open_store(backend: Backend, dir: &Path) -> Option<Store> {
    match backend {
        Backend::Maildir => Some(Store::open(dir, "mx.example.org").unwrap()),
        Backend::Pg => {
            let url = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap()?;
            Some(Store::Pg(PgStore::connect(&url, None).await.unwrap_or_else(|e| panic!("{url}: {e}"))))
        }
        Backend::PgS3 => {
            let url = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap()?;
            let bucket = tokio::task::spawn_blocking(crate::test_s3::bucket).await.unwrap()?;
            let blobs = Some(bucket.object_store_config());
            Some(Store::Pg(PgStore::connect_with(&url, None, blobs).await.unwrap_or_else(|e| panic!("{url}: {e}"))))
        }
    }
}

/// Run `case` once per backend, each on a fresh store. The backend's name goes to stderr
/// first, so a failure says which one broke.
async fn for_each_backend<F, Fut>(case: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in BACKENDS {
        eprintln!("store contract on backend {backend:?}");
        let dir = tempfile::tempdir().unwrap();
        if let Some(store) = open_store(*backend, dir.path()).await {
            case(store).await;
        }
    }
}

fn alice() -> MailboxOwner {
    MailboxOwner::new("alice", "example.org")
}

fn bob() -> MailboxOwner {
    MailboxOwner::new("bob", "example.org")
}

fn body(text: &str) -> MessageBody {
    MessageBody::Memory(bytes::Bytes::from(text.to_string()))
}

fn uids<'a>(messages: impl IntoIterator<Item = &'a MessageMeta>) -> Vec<u32> {
    messages.into_iter().map(|m| m.uid).collect()
}

async fn deliver_to(store: &Store, owner: &MailboxOwner, text: &str) {
    let d =
        LocalDelivery { owner: owner.clone(), folder: "INBOX".into(), header_prefix: Vec::new(), flags: Vec::new() };
    for r in store.deliver(&body(text), &[d]).await {
        r.unwrap();
    }
}

async fn inbox(store: &Store) -> Mailbox {
    store.ensure_account(&alice()).await.unwrap();
    store.open_mailbox(&alice(), "INBOX").await.unwrap()
}

#[tokio::test]
async fn appends_get_ascending_uids_that_sync_reports() {
    for_each_backend(|store| async move {
        let mb = inbox(&store).await;
        let date = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let mut got = Vec::new();
        for i in 0..3 {
            got.push(mb.append(&body(&format!("Subject: {i}\r\n\r\nx\r\n")), &[Flag::Seen], Some(date)).await.unwrap());
        }
        assert_eq!(got, [1, 2, 3]);
        let snap = mb.sync().await.unwrap();
        assert_eq!(uids(&snap.messages), [1, 2, 3]);
        assert_eq!((snap.uid_next, snap.uid_validity), (4, mb.uid_validity()));
        assert_ne!(snap.uid_validity, 0);
        let m = &snap.messages[0];
        let size = "Subject: 0\r\n\r\nx\r\n".len() as u64;
        assert_eq!((m.size, m.internal_date, m.flags.as_slice()), (size, date, &[Flag::Seen][..]));
        let mut uidls: Vec<&str> = snap.messages.iter().map(|m| &*m.uidl).collect();
        uidls.sort_unstable();
        uidls.dedup();
        assert!(uidls.len() == 3 && uidls.iter().all(|u| !u.is_empty()), "{uidls:?}");
        // Another handle on the same folder sees the same mailbox.
        let again = store.open_mailbox(&alice(), "inbox").await.unwrap();
        assert!(again.same_mailbox(&mb));
        assert_eq!(again.id(), mb.id());
        assert_eq!(again.sync().await.unwrap(), snap);
        assert_eq!(mb.folder_name(), "INBOX");
        assert_eq!(mb.owner(), &alice());
        let status = mb.status().await.unwrap();
        assert_eq!((status.messages, status.unseen), (3, 0));
    })
    .await;
}

#[tokio::test]
async fn flag_changes_raise_the_modseq_and_unchangedsince_refuses_later_ones() {
    for_each_backend(|store| async move {
        let mb = inbox(&store).await;
        mb.append(&body("a\r\n"), &[], None).await.unwrap();
        mb.append(&body("b\r\n"), &[], None).await.unwrap();
        let m0 = mb.sync().await.unwrap().highest_modseq;
        let out = mb.store_flags(&[1, 2, 7], FlagOp::Add, &[Flag::Seen, Flag::Flagged], None).await.unwrap();
        assert_eq!(uids_of(&out.updated), [1, 2]);
        assert!(out.updated.iter().all(|(_, f, m)| *m > m0 && f == &[Flag::Seen, Flag::Flagged]));
        let snap = mb.sync().await.unwrap();
        assert!(snap.highest_modseq > m0);
        assert!(snap.messages.iter().all(|m| m.modseq > m0 && m.modseq <= snap.highest_modseq));
        // CONDSTORE: both changed after m0, so UNCHANGEDSINCE m0 fails for them.
        let out = mb.store_flags(&[1], FlagOp::Remove, &[Flag::Seen], Some(m0)).await.unwrap();
        assert_eq!((out.failed, out.updated.len()), (vec![1], 0));
        let out = mb.store_flags(&[2], FlagOp::Replace, &[Flag::Answered], None).await.unwrap();
        assert_eq!(out.updated[0].1, [Flag::Answered]);
        let out = mb.store_flags(&[2], FlagOp::Add, &[Flag::Answered], None).await.unwrap();
        assert_eq!((out.updated.len(), uids_of(&out.unchanged)), (0, vec![2]));
        let status = mb.status().await.unwrap();
        assert_eq!((status.messages, status.unseen), (2, 1));
    })
    .await;
}

fn uids_of(v: &[(u32, Vec<Flag>, u64)]) -> Vec<u32> {
    v.iter().map(|(u, _, _)| *u).collect()
}

#[tokio::test]
async fn keywords_are_kept_sorted_and_limited() {
    for_each_backend(|store| async move {
        let mb = inbox(&store).await;
        let kw = |k: &str| Flag::Keyword(k.into());
        mb.append(&body("a\r\n"), &[kw("work")], None).await.unwrap();
        mb.store_flags(&[1], FlagOp::Add, &[kw("$Forwarded"), Flag::Seen], None).await.unwrap();
        let flags = mb.sync().await.unwrap().messages[0].flags.clone();
        assert_eq!(flags, [Flag::Seen, kw("$Forwarded"), kw("work")]);
        let too_long = "k".repeat(MAX_KEYWORD_LEN + 1);
        let r = mb.store_flags(&[1], FlagOp::Add, &[kw(&too_long)], None).await;
        assert!(matches!(r, Err(StoreError::Limit(_))), "{r:?}");
        let many: Vec<Flag> = (0..=MAX_KEYWORDS).map(|i| kw(&format!("k{i}"))).collect();
        let r = mb.store_flags(&[1], FlagOp::Add, &many, None).await;
        assert!(matches!(r, Err(StoreError::Limit(_))), "{r:?}");
        assert_eq!(mb.sync().await.unwrap().messages[0].flags, flags, "a refused STORE changes nothing");
    })
    .await;
}

#[tokio::test]
async fn expunges_are_reported_and_remembered_by_modseq() {
    for_each_backend(|store| async move {
        let mb = inbox(&store).await;
        for t in ["a\r\n", "bb\r\n", "ccc\r\n"] {
            mb.append(&body(t), &[], None).await.unwrap();
        }
        let snap = mb.sync().await.unwrap();
        let mut events = mb.subscribe();
        assert_eq!(mb.expunge(&[3, 1, 42]).await.unwrap(), [1, 3]);
        expect_event(&mut events, MailboxEvent::Expunged { uids: vec![1, 3] }).await;
        let after = mb.sync().await.unwrap();
        assert_eq!((uids(&after.messages), after.uid_next), (vec![2], 4));
        assert!(after.highest_modseq > snap.highest_modseq);
        assert_eq!(mb.vanished_since(snap.highest_modseq).await, [1, 3]);
        assert!(mb.vanished_since(after.highest_modseq).await.is_empty());
        // UIDs are never reused.
        assert_eq!(mb.append(&body("d\r\n"), &[], None).await.unwrap(), 4);
    })
    .await;
}

#[tokio::test]
async fn changes_since_a_modseq_are_new_changed_and_expunged_messages() {
    for_each_backend(|store| async move {
        let mb = inbox(&store).await;
        for i in 0..3 {
            deliver_to(&store, &alice(), &format!("Subject: {i}\r\n\r\nx\r\n")).await;
        }
        let snap = mb.sync().await.unwrap();
        let none = mb.changes_since(snap.uid_validity, snap.highest_modseq).await.unwrap().unwrap();
        assert!(none.changed.is_empty() && none.expunged.is_empty());
        mb.store_flags(&[2], FlagOp::Add, &[Flag::Flagged], None).await.unwrap();
        mb.expunge(&[1]).await.unwrap();
        deliver_to(&store, &alice(), "Subject: 4\r\n\r\nx\r\n").await;
        let c = mb.changes_since(snap.uid_validity, snap.highest_modseq).await.unwrap().unwrap();
        assert_eq!(uids(&c.changed), [2, 4]);
        assert_eq!(c.changed[0].flags, [Flag::Flagged]);
        assert_eq!(c.expunged, [1]);
        assert_eq!((c.uid_next, c.highest_modseq), (5, mb.sync().await.unwrap().highest_modseq));
        // Another UIDVALIDITY: the caller must compare a full snapshot.
        assert_eq!(mb.changes_since(snap.uid_validity + 1, snap.highest_modseq).await.unwrap(), None);
    })
    .await;
}

/// Sessions that sync one mailbox share its message list (SELECT of a big INBOX costs
/// each session no copy), yet nobody sees another's change before syncing again, and a
/// list brought forward change by change equals the folder read afresh.
#[tokio::test]
async fn sessions_share_the_message_list_and_see_changes_only_when_they_sync() {
    for_each_backend(|store| async move {
        let a = inbox(&store).await;
        let b = store.open_mailbox(&alice(), "INBOX").await.unwrap();
        // Several of the persistent vector's chunks (64 entries each).
        for i in 0..300 {
            a.append(&body(&format!("Subject: {i}\r\n\r\nx\r\n")), &[], None).await.unwrap();
        }
        let seen_by_a = a.sync().await.unwrap().messages;
        let seen_by_b = b.sync().await.unwrap().messages;
        assert_eq!(seen_by_a.len(), 300);
        assert!(seen_by_a.ptr_eq(&seen_by_b), "a second session's list is not a copy");
        assert!(std::sync::Arc::ptr_eq(&seen_by_a[0].uidl, &seen_by_b[0].uidl));

        // A session changing its own view leaves the other's alone.
        let mut view_a = seen_by_a.clone();
        view_a[10].flags = vec![Flag::Flagged];
        assert!(seen_by_b[10].flags.is_empty());

        // A change in the store reaches a session's list only through its next sync.
        let uid = seen_by_a[20].uid;
        a.store_flags(&[uid], FlagOp::Add, &[Flag::Seen], None).await.unwrap();
        b.expunge(&[seen_by_a[30].uid]).await.unwrap();
        a.append(&body("late\r\n"), &[Flag::Draft], None).await.unwrap();
        assert!(seen_by_b[20].flags.is_empty() && seen_by_b.len() == 300, "the old list did not change");
        let now_b = b.sync().await.unwrap();
        assert_eq!((now_b.messages[20].flags.as_slice(), now_b.messages.len()), ([Flag::Seen].as_slice(), 300));
        assert!(now_b.messages.ptr_eq(&a.sync().await.unwrap().messages), "still one list after the change");

        // With every handle gone the folder is read afresh: the same state.
        drop((a, b));
        let fresh = store.open_mailbox(&alice(), "INBOX").await.unwrap().sync().await.unwrap();
        assert!(!fresh.messages.ptr_eq(&now_b.messages));
        assert_eq!(fresh, now_b);
    })
    .await;
}

#[tokio::test]
async fn copy_and_move_map_uids_and_keep_flags_dates_and_uidl() {
    for_each_backend(|store| async move {
        let inbox = inbox(&store).await;
        let sent = store.open_mailbox(&alice(), "Sent").await.unwrap();
        let date = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let text = "Subject: s\r\n\r\nhi\r\n";
        assert_eq!(sent.append(&body(text), &[Flag::Seen], Some(date)).await.unwrap(), 1);
        assert!(!sent.same_mailbox(&inbox));

        assert_eq!(sent.copy_to(&[1], &inbox).await.unwrap(), [(1, 1)]);
        assert_eq!(sent.copy_to(&[1, 9], &sent).await.unwrap(), [(1, 2)]);
        let ib = inbox.sync().await.unwrap();
        assert_eq!((ib.messages[0].flags.as_slice(), ib.messages[0].internal_date), (&[Flag::Seen][..], date));
        assert_eq!(&inbox.read_message(1, 1000).await.unwrap()[..], text.as_bytes());

        let trash = store.open_mailbox(&alice(), "Trash").await.unwrap();
        assert_eq!(inbox.move_to(&[1], &trash).await.unwrap(), [(1, 1)]);
        assert!(inbox.sync().await.unwrap().messages.is_empty());
        let t = trash.sync().await.unwrap();
        assert_eq!(t.messages[0].uidl, ib.messages[0].uidl, "MOVE keeps the UIDL");
        assert_eq!(t.messages[0].flags, [Flag::Seen]);
        // Within one mailbox, a move is a copy plus an expunge.
        assert_eq!(sent.move_to(&[2], &sent).await.unwrap(), [(2, 3)]);
        assert_eq!(uids(&sent.sync().await.unwrap().messages), [1, 3]);
    })
    .await;
}

#[tokio::test]
async fn quota_usage_follows_deliveries_appends_copies_and_expunges() {
    for_each_backend(|store| async move {
        let mb = inbox(&store).await;
        assert_eq!(store.quota_usage(&alice()).await.unwrap(), 0);
        deliver_to(&store, &alice(), "0123456789").await;
        assert_eq!(store.quota_usage(&alice()).await.unwrap(), 10);
        mb.append(&body("12345"), &[], None).await.unwrap();
        assert_eq!(store.quota_usage(&alice()).await.unwrap(), 15);
        mb.sync().await.unwrap();
        let junk = store.open_mailbox(&alice(), "Junk").await.unwrap();
        mb.copy_to(&[1], &junk).await.unwrap();
        assert_eq!(store.quota_usage(&alice()).await.unwrap(), 25);
        mb.move_to(&[2], &junk).await.unwrap();
        assert_eq!(store.quota_usage(&alice()).await.unwrap(), 25, "a move uses no more");
        mb.expunge(&[1]).await.unwrap();
        assert_eq!(store.quota_usage(&alice()).await.unwrap(), 15);
        assert_eq!(store.quota_usage(&bob()).await.unwrap(), 0, "per account");
    })
    .await;
}

#[tokio::test]
async fn one_delivery_to_two_recipients_gives_each_its_own_prefix() {
    for_each_backend(|store| async move {
        let text = "Subject: hi\r\n\r\nhello\r\n";
        let to = |owner: MailboxOwner, folder: &str| {
            let prefix = format!("Delivered-To: {owner}\r\n").into_bytes();
            LocalDelivery { owner, folder: folder.into(), header_prefix: prefix, flags: Vec::new() }
        };
        let bad = LocalDelivery { owner: MailboxOwner::new("..", "example.org"), ..to(bob(), "INBOX") };
        let res = store.deliver(&body(text), &[to(alice(), "INBOX"), bad, to(bob(), "Lists/rust")]).await;
        assert_eq!(res.len(), 3);
        assert!(matches!(res[1], Err(StoreError::InvalidAccount(_))), "{:?}", res[1]);
        for (i, owner, folder) in [(0, alice(), "INBOX"), (2, bob(), "Lists/rust")] {
            let want = format!("Delivered-To: {owner}\r\n{text}");
            let delivered = res[i].as_ref().unwrap();
            assert_eq!(delivered.size, want.len() as u64);
            assert!(!delivered.location.is_empty());
            let mb = store.open_mailbox(&owner, folder).await.unwrap();
            let snap = mb.sync().await.unwrap();
            assert_eq!(uids(&snap.messages), [1]);
            assert_eq!(snap.messages[0].size, want.len() as u64);
            assert_eq!(&mb.read_message(1, 1 << 20).await.unwrap()[..], want.as_bytes());
        }
        // The delivery created bob's account and the folder.
        assert!(store.list_folders(&bob()).await.unwrap().iter().any(|f| f.name == "Lists/rust"));
    })
    .await;
}

/// Sieve's imap4flags: system flags given at delivery are on the stored message in
/// every backend (keywords too where the backend can store them at delivery).
#[tokio::test]
async fn flags_given_at_delivery_are_stored() {
    for_each_backend(|store| async move {
        let d = LocalDelivery {
            owner: alice(),
            folder: "INBOX".into(),
            header_prefix: Vec::new(),
            flags: vec![Flag::Seen, Flag::Flagged],
        };
        for r in store.deliver(&body("Subject: f\r\n\r\nx\r\n"), &[d]).await {
            r.unwrap();
        }
        let snap = inbox(&store).await.sync().await.unwrap();
        let flags = &snap.messages[0].flags;
        assert!(flags.contains(&Flag::Seen) && flags.contains(&Flag::Flagged), "{flags:?}");
        // Keywords (Sieve imap4flags) are kept by every backend, with or without system flags.
        let kw = |k: &str| Flag::Keyword(k.into());
        let with_keywords = |flags: Vec<Flag>| LocalDelivery {
            owner: alice(),
            folder: "INBOX".into(),
            header_prefix: b"X-Test: kw\r\n".to_vec(),
            flags,
        };
        let ds = [with_keywords(vec![Flag::Seen, kw("$Work"), kw("Junk")]), with_keywords(vec![kw("$Work")])];
        for r in store.deliver(&body("Subject: k\r\n\r\nx\r\n"), &ds).await {
            r.unwrap();
        }
        let mb = inbox(&store).await;
        let snap = mb.sync().await.unwrap();
        assert_eq!(snap.messages.len(), 3, "{:?}", snap.messages);
        let mut got: Vec<Vec<Flag>> = snap.messages.skip(1).iter().map(|m| m.flags.clone()).collect();
        got.sort_by_key(|f| f.len());
        assert_eq!(got[0], [kw("$Work")]);
        assert_eq!(got[1], [Flag::Seen, kw("$Work"), kw("Junk")]);
        let whole = mb.read_message(snap.messages[1].uid, 1 << 20).await.unwrap();
        assert_eq!(&whole[..], b"X-Test: kw\r\nSubject: k\r\n\r\nx\r\n");
    })
    .await;
}

#[tokio::test]
async fn headers_and_bodies_read_back_byte_exact() {
    for_each_backend(|store| async move {
        let mb = inbox(&store).await;
        let one = "Subject: one\r\nFrom: a@b\r\n\r\nbody 1\r\n";
        mb.append(&body(one), &[], None).await.unwrap();
        mb.append(&body("Subject: two\r\n"), &[], None).await.unwrap();
        mb.sync().await.unwrap();
        let headers = ["Subject: one\r\nFrom: a@b\r\n\r\n", "Subject: two\r\n"];
        // A backend may leave any header to `read_header_block`, but what it gives is exact.
        let got = mb.read_headers(&[2, 1, 99]).await.unwrap();
        assert_eq!(got.len(), 3);
        for (g, want) in got.iter().zip([headers[1], headers[0]]) {
            if let Some(g) = g {
                assert_eq!(&g[..], want.as_bytes());
            }
        }
        assert_eq!(got[2], None);
        for (uid, want) in [(1, headers[0]), (2, headers[1])] {
            assert_eq!(&mb.read_header_block(uid).await.unwrap()[..], want.as_bytes());
            let (mut reader, len) = mb.header_block_reader(uid).await.unwrap();
            assert_eq!(len, want.len() as u64);
            let mut all = Vec::new();
            reader.read_to_end(&mut all).await.unwrap();
            assert!(all.starts_with(want.as_bytes()));
        }
        let mut reader = mb.open_message(1).await.unwrap();
        assert_eq!(reader.size(), one.len() as u64);
        reader.skip(14).await.unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, &one[14..]);
        assert_eq!(&mb.read_message(1, 7).await.unwrap()[..], b"Subject");
        assert!(matches!(mb.read_message(99, 10).await, Err(StoreError::NoSuchMessage(99))));
    })
    .await;
}

/// Wait up to a second for `want`. Events are hints: a backend may send others (a second
/// `NewMessages` when a sync notices the same delivery) before it, never instead of it.
async fn expect_event(rx: &mut broadcast::Receiver<MailboxEvent>, want: MailboxEvent) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) if ev == want => return,
            Ok(Ok(_)) => {}
            other => panic!("waiting for {want:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn sessions_share_state_and_deliveries_and_appends_wake_idle() {
    for_each_backend(|store| async move {
        let a = inbox(&store).await;
        let b = store.open_mailbox(&alice(), "INBOX").await.unwrap();
        let mut idle = b.subscribe();
        deliver_to(&store, &alice(), "x\r\n").await;
        expect_event(&mut idle, MailboxEvent::NewMessages).await;
        a.append(&body("y\r\n"), &[], None).await.unwrap();
        expect_event(&mut idle, MailboxEvent::NewMessages).await;
        assert_eq!(uids(&b.sync().await.unwrap().messages), [1, 2]);
        let updated = a.store_flags(&[1], FlagOp::Add, &[Flag::Deleted], None).await.unwrap().updated;
        let (modseq, known) = (updated[0].2, Some(updated.into()));
        expect_event(&mut idle, MailboxEvent::FlagsChanged { uids: vec![1], modseq, known }).await;
        assert_eq!(b.sync().await.unwrap().messages[0].flags, [Flag::Deleted]);
        // \Recent goes to one session only.
        assert_eq!(a.take_recent(3).await, 1..3);
        assert!(b.take_recent(3).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn folders_are_created_listed_renamed_and_deleted() {
    for_each_backend(|store| async move {
        let names = |v: Vec<FolderInfo>| v.into_iter().map(|f| f.name).collect::<Vec<_>>();
        let list = store.list_folders(&alice()).await.unwrap();
        assert_eq!(names(list.clone()), ["INBOX", "Drafts", "Junk", "Sent", "Trash"]);
        let sent = list.iter().find(|f| f.name == "Sent").unwrap();
        assert_eq!((sent.special_use, sent.subscribed), (Some(SpecialUse::Sent), true));

        store.create_folder(&alice(), "Ärger/2024", Some(SpecialUse::Archive)).await.unwrap();
        assert!(matches!(store.create_folder(&alice(), "Ärger", None).await, Err(StoreError::FolderExists(_))));
        let list = store.list_folders(&alice()).await.unwrap();
        assert!(list.iter().find(|f| f.name == "Ärger").unwrap().has_children);
        assert_eq!(list.iter().find(|f| f.name == "Ärger/2024").unwrap().special_use, Some(SpecialUse::Archive));

        // Rename keeps UIDs and UIDVALIDITY and takes the children along.
        let mb = store.open_mailbox(&alice(), "Ärger/2024").await.unwrap();
        mb.append(&body("x\r\n"), &[], None).await.unwrap();
        let validity = mb.uid_validity();
        drop(mb);
        store.rename_folder(&alice(), "Ärger", "Archive").await.unwrap();
        let list = names(store.list_folders(&alice()).await.unwrap());
        assert!(list.contains(&"Archive/2024".to_string()) && !list.contains(&"Ärger".to_string()));
        let mb = store.open_mailbox(&alice(), "Archive/2024").await.unwrap();
        assert_eq!(mb.uid_validity(), validity);
        assert_eq!(uids(&mb.sync().await.unwrap().messages), [1]);
        drop(mb);

        assert!(matches!(store.delete_folder(&alice(), "Archive").await, Err(StoreError::HasChildren(_))));
        store.delete_folder(&alice(), "Archive/2024").await.unwrap();
        store.delete_folder(&alice(), "Archive").await.unwrap();
        assert!(matches!(store.delete_folder(&alice(), "INBOX").await, Err(StoreError::NotPermitted(_))));
        assert!(matches!(store.open_mailbox(&alice(), "Archive").await, Err(StoreError::NoSuchFolder(_))));
        assert!(matches!(store.open_mailbox(&alice(), "a//b").await, Err(StoreError::InvalidFolderName(_))));
        // A folder created again gets a new UIDVALIDITY and no old UIDs.
        store.create_folder(&alice(), "Archive/2024", None).await.unwrap();
        let mb = store.open_mailbox(&alice(), "Archive/2024").await.unwrap();
        assert!(mb.sync().await.unwrap().messages.is_empty());
        assert_ne!(mb.uid_validity(), validity);

        // Renaming INBOX moves its messages and leaves an empty INBOX (RFC 3501 6.3.5).
        deliver_to(&store, &alice(), "a\r\n").await;
        store.rename_folder(&alice(), "INBOX", "Old mail").await.unwrap();
        let old = store.open_mailbox(&alice(), "Old mail").await.unwrap();
        assert_eq!(uids(&old.sync().await.unwrap().messages), [1]);
        assert!(store.open_mailbox(&alice(), "INBOX").await.unwrap().sync().await.unwrap().messages.is_empty());
    })
    .await;
}

#[tokio::test]
async fn subscriptions_need_no_folder_and_survive_unsubscribing_others() {
    for_each_backend(|store| async move {
        store.ensure_account(&alice()).await.unwrap();
        let subs = store.subscriptions(&alice()).await.unwrap();
        for name in ["Drafts", "Junk", "Sent", "Trash"] {
            assert!(subs.contains(&name.to_string()), "{name} in {subs:?}");
        }
        store.set_subscribed(&alice(), "Lists/rust", true).await.unwrap();
        store.set_subscribed(&alice(), "Junk", false).await.unwrap();
        store.set_subscribed(&alice(), "Junk", false).await.unwrap();
        let subs = store.subscriptions(&alice()).await.unwrap();
        assert!(subs.contains(&"Lists/rust".to_string()) && !subs.contains(&"Junk".to_string()), "{subs:?}");
        let list = store.list_folders(&alice()).await.unwrap();
        assert!(!list.iter().any(|f| f.name == "Lists/rust"), "subscribing creates nothing");
        assert!(!list.iter().find(|f| f.name == "Junk").unwrap().subscribed);
        assert!(list.iter().find(|f| f.name == "Sent").unwrap().subscribed);
    })
    .await;
}

#[tokio::test]
async fn sieve_scripts_are_put_listed_activated_renamed_and_deleted() {
    for_each_backend(|store| async move {
        let a = alice();
        assert!(store.sieve_list(&a).await.unwrap().is_empty());
        assert_eq!(store.sieve_active(&a).await.unwrap(), None);
        store.sieve_put(&a, "main", b"keep;\r\n").await.unwrap();
        store.sieve_put(&a, "vacation", b"discard;").await.unwrap();
        store.sieve_put(&a, "main", b"stop;").await.unwrap();
        assert_eq!(store.sieve_get(&a, "main").await.unwrap().as_deref(), Some(&b"stop;"[..]));
        assert_eq!(store.sieve_get(&a, "nope").await.unwrap(), None);
        assert!(store.sieve_list(&bob()).await.unwrap().is_empty(), "scripts belong to one account");

        assert!(matches!(store.sieve_set_active(&a, Some("nope")).await, Err(StoreError::NoSuchScript(_))));
        store.sieve_set_active(&a, Some("main")).await.unwrap();
        store.sieve_set_active(&a, Some("vacation")).await.unwrap();
        let list = store.sieve_list(&a).await.unwrap();
        assert_eq!(
            list,
            vec![
                SieveScriptInfo { name: "main".into(), size: 5, active: false },
                SieveScriptInfo { name: "vacation".into(), size: 8, active: true },
            ]
        );
        assert_eq!(store.sieve_active(&a).await.unwrap(), Some(("vacation".into(), bytes::Bytes::from("discard;"))));

        assert!(matches!(store.sieve_delete(&a, "vacation").await, Err(StoreError::ScriptActive(_))));
        assert!(matches!(store.sieve_delete(&a, "nope").await, Err(StoreError::NoSuchScript(_))));
        assert!(matches!(store.sieve_rename(&a, "main", "vacation").await, Err(StoreError::ScriptExists(_))));
        assert!(matches!(store.sieve_rename(&a, "nope", "other").await, Err(StoreError::NoSuchScript(_))));
        assert!(matches!(store.sieve_rename(&a, "main", "main").await, Err(StoreError::ScriptExists(_))));
        store.sieve_rename(&a, "vacation", "away").await.unwrap();
        assert_eq!(store.sieve_active(&a).await.unwrap().map(|(n, _)| n).as_deref(), Some("away"), "stays active");

        store.sieve_set_active(&a, None).await.unwrap();
        assert_eq!(store.sieve_active(&a).await.unwrap(), None);
        store.sieve_delete(&a, "away").await.unwrap();
        let names: Vec<String> = store.sieve_list(&a).await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["main"]);
        assert!(matches!(store.sieve_put(&a, "a/b", b"keep;").await, Err(StoreError::InvalidScriptName(_))));
    })
    .await;
}

#[tokio::test]
async fn sieve_memory_remembers_a_key_until_it_expires() {
    for_each_backend(|store| async move {
        let a = alice();
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert!(!store.sieve_remember(&a, "vacation:bob@example.net", later).await.unwrap());
        assert!(store.sieve_remember(&a, "vacation:bob@example.net", later).await.unwrap());
        assert!(!store.sieve_remember(&bob(), "vacation:bob@example.net", later).await.unwrap(), "per account");
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(!store.sieve_remember(&a, "dup:<id@x>", past).await.unwrap());
        assert!(!store.sieve_remember(&a, "dup:<id@x>", later).await.unwrap(), "an expired key is forgotten");
        assert!(store.sieve_remember(&a, "dup:<id@x>", later).await.unwrap());
    })
    .await;
}

fn credential_record(app: &str) -> CredentialRecord {
    CredentialRecord {
        password_override: Some(PasswordOverride {
            hash: "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$aGFzaA".to_string(),
            env_fingerprint: "ab".repeat(32),
            changed: 1_700_000_000,
        }),
        app_passwords: vec![AppPasswordEntry {
            id: app.to_string(),
            name: "phone ☎".to_string(),
            hash: "cd".repeat(32),
            created: 1_700_000_001,
            last_used: None,
        }],
        require_app_passwords: true,
    }
}

#[tokio::test]
async fn credentials_round_trip_with_a_growing_version() {
    for_each_backend(|store| async move {
        let none = store.credentials_get(&alice()).await.unwrap();
        assert_eq!(none, VersionedCredentials::default(), "an account without a record");
        let first = credential_record("a1");
        assert_eq!(store.credentials_put(&alice(), 0, &first).await.unwrap(), CredentialsPut::Written(1));
        let read = store.credentials_get(&alice()).await.unwrap();
        assert_eq!((read.record, read.version), (first.clone(), 1));
        let mut second = credential_record("a2");
        second.password_override = None;
        second.app_passwords[0].last_used = Some(1_700_000_100);
        assert_eq!(store.credentials_put(&alice(), 1, &second).await.unwrap(), CredentialsPut::Written(2));
        let read = store.credentials_get(&alice()).await.unwrap();
        assert_eq!((read.record, read.version), (second, 2));
        assert_eq!(store.credentials_get(&bob()).await.unwrap().version, 0, "accounts are apart");
    })
    .await;
}

#[tokio::test]
async fn credentials_writes_at_a_stale_version_lose() {
    for_each_backend(|store| async move {
        // Two writers that both read "no record": exactly one wins.
        let (owner, first, second) = (alice(), credential_record("first"), credential_record("second"));
        let (a, b) = tokio::join!(store.credentials_put(&owner, 0, &first), store.credentials_put(&owner, 0, &second));
        let outcomes = [a.unwrap(), b.unwrap()];
        assert!(outcomes.contains(&CredentialsPut::Written(1)), "{outcomes:?}");
        assert!(outcomes.contains(&CredentialsPut::Conflict), "{outcomes:?}");
        assert_eq!(
            store.credentials_put(&alice(), 0, &credential_record("late")).await.unwrap(),
            CredentialsPut::Conflict
        );
        assert_eq!(
            store.credentials_put(&alice(), 5, &credential_record("future")).await.unwrap(),
            CredentialsPut::Conflict
        );

        // Many writers each adding an app password with read-change-write-again: none is lost.
        let writers = (0..8).map(|i| {
            let store = store.clone();
            async move {
                loop {
                    let state = store.credentials_get(&alice()).await.unwrap();
                    let mut record = state.record.clone();
                    record.app_passwords.push(credential_record(&format!("w{i}")).app_passwords[0].clone());
                    if let CredentialsPut::Written(_) =
                        store.credentials_put(&alice(), state.version, &record).await.unwrap()
                    {
                        break;
                    }
                }
            }
        });
        futures_util::future::join_all(writers).await;
        let state = store.credentials_get(&alice()).await.unwrap();
        assert_eq!(state.version, 9);
        let mut ids: Vec<String> = state.record.app_passwords.iter().map(|p| p.id.clone()).skip(1).collect();
        ids.sort();
        assert_eq!(ids, (0..8).map(|i| format!("w{i}")).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test]
async fn fetch_records_replay_every_event_and_keep_sources_apart() {
    for_each_backend(|store| async move {
        assert_eq!(store.fetch_state_load("a1").await.unwrap(), FetchState::default(), "never fetched");
        let pending = |id: &str, uid_next| FetchEvent::Pending(FetchPending { id: id.into(), uid_next });
        let done = |id: &str| FetchEvent::Done { id: id.into(), imap_uid: None };
        let events = [
            pending("u1", 5),
            done("u1"),
            pending("u2", 6),
            FetchEvent::Abandoned,
            pending("u2", 6),
            done("u2"),
            done("u3"),
            FetchEvent::Forget(vec!["u1".into(), "gone".into()]),
            pending("u4 with space", 9),
        ];
        let mut expected = FetchState::default();
        for event in &events {
            store.fetch_record("a1", event).await.unwrap();
            expected.apply(event);
        }
        let pop3 = store.fetch_state_load("a1").await.unwrap();
        assert_eq!(pop3, expected);
        assert_eq!(pop3.seen.iter().map(String::as_str).collect::<Vec<_>>(), vec!["u2", "u3"]);
        assert_eq!(pop3.pending, Some(FetchPending { id: "u4 with space".into(), uid_next: 9 }));

        // IMAP: the highest UID done, started over with a new UIDVALIDITY only.
        let imap = [
            FetchEvent::UidValidity(7),
            FetchEvent::Done { id: "3".into(), imap_uid: Some(3) },
            FetchEvent::Done { id: "2".into(), imap_uid: Some(2) },
            FetchEvent::UidValidity(7),
        ];
        for event in &imap {
            store.fetch_record("b2", event).await.unwrap();
        }
        let got = store.fetch_state_load("b2").await.unwrap();
        assert_eq!((got.uid_validity, got.last_uid, got.pending.clone()), (Some(7), 3, None));
        assert!(got.done("3", Some(3)) && !got.done("4", Some(4)));
        store.fetch_record("b2", &FetchEvent::UidValidity(8)).await.unwrap();
        assert_eq!(store.fetch_state_load("b2").await.unwrap().last_uid, 0);
        assert_eq!(store.fetch_state_load("a1").await.unwrap(), expected, "sources are apart");

        // Replacing (an imported record) is whole and idempotent.
        let mut imported = FetchState { uid_validity: None, last_uid: 0, ..FetchState::default() };
        imported.seen.extend(["x".to_string(), "y".to_string()]);
        for _ in 0..2 {
            store.fetch_state_replace("a1", &imported).await.unwrap();
            assert_eq!(store.fetch_state_load("a1").await.unwrap(), imported);
        }

        // Keys and ids that cannot be written as given are refused, not mangled.
        assert!(matches!(store.fetch_state_load("../x").await, Err(StoreError::Limit(_))));
        assert!(matches!(store.fetch_record("a1", &done("a\nb")).await, Err(StoreError::Limit(_))));
        assert!(matches!(store.fetch_record("a1", &done("")).await, Err(StoreError::Limit(_))));
    })
    .await;
}
