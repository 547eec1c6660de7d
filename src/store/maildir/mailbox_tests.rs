//! Transcript-style tests of open mailboxes: sync, flags, expunge, append, copy/move,
//! folders, quota and events, on real temp directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn alice() -> MailboxOwner {
    MailboxOwner::new("alice", "example.org")
}

fn root(data: &Path) -> PathBuf {
    data.join("mail/example.org/alice")
}

async fn deliver(store: &MaildirStore, text: &str) {
    let body = MessageBody::Memory(bytes::Bytes::from(text.to_string()));
    let d = LocalDelivery { owner: alice(), folder: "INBOX".into(), header_prefix: Vec::new(), flags: Vec::new() };
    for r in store.deliver(&body, &[d]).await {
        r.unwrap();
    }
}

fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn uids(s: &MailboxSnapshot) -> Vec<u32> {
    s.messages.iter().map(|m| m.uid).collect()
}

#[tokio::test]
async fn uids_and_uidvalidity_survive_restart() {
    let data = tempfile::tempdir().unwrap();
    let (validity, bases) = {
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        for i in 0..3 {
            deliver(&store, &format!("Subject: {i}\r\n\r\nx\r\n")).await;
        }
        let mb = store.open_mailbox(&alice(), "inbox").await.unwrap();
        let snap = mb.sync().await.unwrap();
        assert_eq!(uids(&snap), [1, 2, 3]);
        assert_eq!(snap.uid_next, 4);
        assert_eq!(snap.uid_validity, mb.uid_validity());
        // Delivered files moved to cur/ with an empty info part, new/ is empty.
        assert!(ls(&root(data.path()).join("new")).is_empty());
        assert!(ls(&root(data.path()).join("cur")).iter().all(|n| n.ends_with(":2,")));
        let bases: Vec<Arc<str>> = snap.messages.iter().map(|m| m.uidl.clone()).collect();
        (snap.uid_validity, bases)
    };
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let snap = mb.sync().await.unwrap();
    assert_eq!(snap.uid_validity, validity);
    assert_eq!(uids(&snap), [1, 2, 3]);
    let again: Vec<Arc<str>> = snap.messages.iter().map(|m| m.uidl.clone()).collect();
    assert_eq!(again, bases);
    deliver(&store, "Subject: 4\r\n\r\nx\r\n").await;
    assert_eq!(uids(&mb.sync().await.unwrap()), [1, 2, 3, 4]);
}

#[tokio::test]
async fn corrupt_index_is_rebuilt_with_a_new_uidvalidity() {
    let data = tempfile::tempdir().unwrap();
    let idx = data.path().join("state/index/example.org/alice/INBOX.idx");
    let old = {
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        deliver(&store, "a\r\n").await;
        deliver(&store, "b\r\n").await;
        let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
        mb.sync().await.unwrap().uid_validity
    };
    let mut bytes = std::fs::read(&idx).unwrap();
    let second_line = bytes.iter().position(|b| *b == b'\n').unwrap() + 3;
    bytes[second_line] ^= 0x55;
    std::fs::write(&idx, &bytes).unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let snap = mb.sync().await.unwrap();
    assert!(snap.uid_validity > old, "{} > {old}", snap.uid_validity);
    assert_eq!(uids(&snap), [1, 2]);
    // A missing index is rebuilt too.
    drop(mb);
    drop(store);
    std::fs::remove_file(&idx).unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let snap = store.open_mailbox(&alice(), "INBOX").await.unwrap().sync().await.unwrap();
    assert_eq!(snap.messages.len(), 2);
}

#[tokio::test]
async fn foreign_files_are_picked_up_with_crlf_wire_size() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    store.ensure_account(&alice()).await.unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    assert!(mb.sync().await.unwrap().messages.is_empty());
    // Postfix local(8) style: LF endings, no S=/W=, dropped into new/ by hand.
    let lf = b"Subject: by hand\n\nline one\nline two\n";
    std::fs::write(root(data.path()).join("new/1700000000.V801I2M3.other"), lf).unwrap();
    // mutt style: already seen, in cur/.
    std::fs::write(root(data.path()).join("cur/1700000001.x.other:2,S"), b"a\r\n").unwrap();
    let snap = mb.sync().await.unwrap();
    assert_eq!(snap.messages.len(), 2);
    let m = &snap.messages[0];
    assert_eq!(&*m.uidl, "1700000000.V801I2M3.other");
    assert_eq!(m.size, lf.len() as u64 + 4);
    assert_eq!(snap.messages[1].flags, [Flag::Seen]);
    let bytes = mb.read_message(m.uid, 1 << 20).await.unwrap();
    assert_eq!(&bytes[..], b"Subject: by hand\r\n\r\nline one\r\nline two\r\n");
    let reader = mb.open_message(m.uid).await.unwrap();
    assert_eq!(reader.size(), bytes.len() as u64);
    assert_eq!(&mb.read_message(m.uid, 7).await.unwrap()[..], b"Subject");
    assert!(matches!(mb.open_message(99).await, Err(StoreError::NoSuchMessage(99))));
}

#[tokio::test]
async fn store_flags_renames_the_file_and_survives_restart() {
    let data = tempfile::tempdir().unwrap();
    {
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        deliver(&store, "a\r\n").await;
        deliver(&store, "b\r\n").await;
        let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
        let snap = mb.sync().await.unwrap();
        let m0 = snap.highest_modseq;
        let out = mb
            .store_flags(
                &[1, 2, 7],
                FlagOp::Add,
                &[Flag::Seen, Flag::Flagged, Flag::Keyword("$Forwarded".into()), Flag::Keyword("work".into())],
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.updated.len(), 2);
        assert!(out.updated.iter().all(|(_, _, m)| *m > m0));
        let names = ls(&root(data.path()).join("cur"));
        // Keywords get Dovecot letters: `work` is `a` in dovecot-keywords.
        assert!(names.iter().all(|n| n.ends_with(":2,FPSa")), "{names:?}");
        let table = std::fs::read_to_string(root(data.path()).join("dovecot-keywords")).unwrap();
        assert_eq!(table, "0 work\n");
        // CONDSTORE: uid 1 changed after m0, so UNCHANGEDSINCE m0 fails for it.
        let out = mb.store_flags(&[1], FlagOp::Remove, &[Flag::Seen], Some(m0)).await.unwrap();
        assert_eq!(out.failed, [1]);
        let out =
            mb.store_flags(&[2], FlagOp::Replace, &[Flag::Answered, Flag::Keyword("work".into())], None).await.unwrap();
        assert_eq!(out.updated[0].1, [Flag::Answered, Flag::Keyword("work".into())]);
        let out = mb.store_flags(&[2], FlagOp::Add, &[Flag::Answered], None).await.unwrap();
        assert_eq!(out.unchanged.len(), 1);
    }
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let snap = mb.sync().await.unwrap();
    assert_eq!(
        snap.messages[0].flags,
        [Flag::Seen, Flag::Flagged, Flag::Keyword("$Forwarded".into()), Flag::Keyword("work".into())]
    );
    assert_eq!(snap.messages[1].flags, [Flag::Answered, Flag::Keyword("work".into())]);
}

#[tokio::test]
async fn flags_changed_by_another_program_are_adopted() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    deliver(&store, "a\r\n").await;
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let before = mb.sync().await.unwrap();
    let mut events = mb.subscribe();
    let cur = root(data.path()).join("cur");
    let name = ls(&cur).remove(0);
    std::fs::rename(cur.join(&name), cur.join(name.replace(":2,", ":2,RS"))).unwrap();
    let snap = mb.sync().await.unwrap();
    assert_eq!(snap.messages[0].flags, [Flag::Seen, Flag::Answered]);
    assert!(snap.highest_modseq > before.highest_modseq);
    assert_eq!(
        events.recv().await.unwrap(),
        MailboxEvent::FlagsChanged { uids: vec![1], modseq: snap.highest_modseq, known: None }
    );
}

#[tokio::test]
async fn expunge_removes_files_and_leaves_tombstones() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    for t in ["a\r\n", "bb\r\n", "ccc\r\n"] {
        deliver(&store, t).await;
    }
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let snap = mb.sync().await.unwrap();
    let used = store.quota_usage(&alice()).await.unwrap();
    assert_eq!(used, 3 + 4 + 5);
    let mut events = mb.subscribe();
    assert_eq!(mb.expunge(&[3, 1, 42]).await.unwrap(), [1, 3]);
    assert_eq!(events.recv().await.unwrap(), MailboxEvent::Expunged { uids: vec![1, 3] });
    assert_eq!(ls(&root(data.path()).join("cur")).len(), 1);
    let after = mb.sync().await.unwrap();
    assert_eq!(uids(&after), [2]);
    assert_eq!(after.uid_next, 4);
    assert_eq!(mb.vanished_since(snap.highest_modseq).await, [1, 3]);
    assert_eq!(store.quota_usage(&alice()).await.unwrap(), 4);
    // A file deleted behind our back becomes an expunge at the next sync.
    let cur = root(data.path()).join("cur");
    std::fs::remove_file(cur.join(ls(&cur).remove(0))).unwrap();
    assert!(mb.sync().await.unwrap().messages.is_empty());
}

#[tokio::test]
async fn append_copy_and_move_between_folders() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    store.ensure_account(&alice()).await.unwrap();
    let inbox = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let sent = store.open_mailbox(&alice(), "Sent").await.unwrap();
    let date = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let body = MessageBody::Memory(bytes::Bytes::from_static(b"Subject: s\r\n\r\nhi\r\n"));
    let uid = sent.append(&body, &[Flag::Seen], Some(date)).await.unwrap();
    assert_eq!(uid, 1);
    let snap = sent.sync().await.unwrap();
    assert_eq!(snap.messages[0].internal_date, date);
    assert_eq!(snap.messages[0].flags, [Flag::Seen]);
    assert_eq!(store.quota_usage(&alice()).await.unwrap(), body.len());

    let pairs = sent.copy_to(&[1], &inbox).await.unwrap();
    assert_eq!(pairs, [(1, 1)]);
    let pairs = sent.copy_to(&[1], &sent).await.unwrap();
    assert_eq!(pairs, [(1, 2)]);
    let ib = inbox.sync().await.unwrap();
    assert_eq!(ib.messages[0].flags, [Flag::Seen]);
    assert_eq!(ib.messages[0].internal_date, date);
    assert_eq!(&inbox.read_message(1, 1000).await.unwrap()[..], b"Subject: s\r\n\r\nhi\r\n");
    assert_eq!(store.quota_usage(&alice()).await.unwrap(), 3 * body.len());

    let trash = store.open_mailbox(&alice(), "Trash").await.unwrap();
    let pairs = inbox.move_to(&[1], &trash).await.unwrap();
    assert_eq!(pairs, [(1, 1)]);
    assert!(inbox.sync().await.unwrap().messages.is_empty());
    let t = trash.sync().await.unwrap();
    assert_eq!(t.messages[0].uidl, ib.messages[0].uidl, "MOVE keeps the base name");
    assert_eq!(ls(&root(data.path()).join(".Trash/cur")).len(), 1);
    assert_eq!(store.quota_usage(&alice()).await.unwrap(), 3 * body.len());
    // Move within the same mailbox = copy + expunge.
    let pairs = sent.move_to(&[2], &sent).await.unwrap();
    assert_eq!(pairs, [(2, 3)]);
    assert_eq!(uids(&sent.sync().await.unwrap()), [1, 3]);
}

#[tokio::test]
async fn index_log_is_compacted_and_still_replays() {
    let data = tempfile::tempdir().unwrap();
    let idx = data.path().join("state/index/example.org/alice/INBOX.idx");
    {
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        deliver(&store, "a\r\n").await;
        let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
        mb.sync().await.unwrap();
        for i in 0..1200 {
            let op = if i % 2 == 0 { FlagOp::Add } else { FlagOp::Remove };
            mb.store_flags(&[1], op, &[Flag::Flagged], None).await.unwrap();
        }
        let lines = std::fs::read_to_string(&idx).unwrap().lines().count();
        assert!(lines < 1000, "compacted: {lines} lines");
    }
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let snap = store.open_mailbox(&alice(), "INBOX").await.unwrap().sync().await.unwrap();
    assert_eq!(snap.messages[0].flags, []);
    assert!(snap.highest_modseq > 1200);
}

#[tokio::test]
async fn folders_and_subscriptions_on_disk() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let r = root(data.path());
    // What folders look like on disk; what they do through the API (default folders,
    // special use, children, rename, delete) is store::contract_tests.
    store.create_folder(&alice(), "Ärger/2024", Some(SpecialUse::Archive)).await.unwrap();
    assert!(r.join(".&AMQ-rger.2024/cur").is_dir());
    assert!(r.join(".&AMQ-rger/maildirfolder").is_file(), "parent created too");

    store.set_subscribed(&alice(), "Ärger/2024", true).await.unwrap();
    let subs = std::fs::read_to_string(r.join("subscriptions")).unwrap();
    assert!(subs.starts_with("V\t2\n\n"));
    assert!(subs.contains("&AMQ-rger\t2024\n"), "{subs:?}");
}

#[tokio::test]
async fn renaming_inbox_moves_its_messages() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    deliver(&store, "a\r\n").await;
    deliver(&store, "b\r\n").await;
    let inbox = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    inbox.sync().await.unwrap();
    inbox.store_flags(&[2], FlagOp::Add, &[Flag::Keyword("kept".into())], None).await.unwrap();
    crate::store::Store::Maildir(store.clone()).rename_folder(&alice(), "INBOX", "Old mail").await.unwrap();
    assert!(inbox.sync().await.unwrap().messages.is_empty());
    let old = store.open_mailbox(&alice(), "Old mail").await.unwrap();
    let snap = old.sync().await.unwrap();
    assert_eq!(uids(&snap), [1, 2]);
    assert_eq!(snap.messages[1].flags, [Flag::Keyword("kept".into())]);
    assert!(root(data.path()).join(".Old mail/cur").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_and_deliveries_get_distinct_uids() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    store.ensure_account(&alice()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            deliver(&store, &format!("{i}\r\n")).await;
            let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
            mb.sync().await.unwrap();
            let body = MessageBody::Memory(format!("appended {i}\r\n").into());
            mb.append(&body, &[Flag::Seen], None).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let snap = mb.sync().await.unwrap();
    assert_eq!(snap.messages.len(), 100);
    assert_eq!(snap.uid_next, 101);
    drop(mb);
    drop(store);
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let again = store.open_mailbox(&alice(), "INBOX").await.unwrap().sync().await.unwrap();
    assert_eq!(again, snap);
}

/// A store whose INBOX has `n` tiny files in `new/`, not indexed yet (sizes in the names:
/// no file is read to index them).
async fn store_with_new_files(n: usize) -> (tempfile::TempDir, MaildirStore) {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    store.ensure_account(&alice()).await.unwrap();
    let new = root(data.path()).join("new");
    for i in 0..n {
        std::fs::write(new.join(format!("{i}.M1P1Q{i}.mx,S=3,W=3")), b"x\r\n").unwrap();
    }
    (data, store)
}

/// Timing probe for large mailboxes: `cargo test --lib large_mailbox -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn large_mailbox_timings() {
    let (data, store) = store_with_new_files(50_000).await;
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let t = std::time::Instant::now();
    let snap = mb.sync().await.unwrap();
    eprintln!("first sync of {}: {:?}", snap.messages.len(), t.elapsed());
    let t = std::time::Instant::now();
    mb.sync().await.unwrap();
    eprintln!("second sync: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    mb.sync().await.unwrap();
    eprintln!("third sync: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let names = super::maildir_scan::list_cur(&root(data.path())).unwrap();
    eprintln!("list_cur of {}: {:?}", names.len(), t.elapsed());
    let t = std::time::Instant::now();
    mb.store_flags(&[7], FlagOp::Add, &[Flag::Seen], None).await.unwrap();
    eprintln!("store: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    mb.sync().await.unwrap();
    eprintln!("sync after store: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    mb.store_flags(&[8], FlagOp::Add, &[Flag::Seen], None).await.unwrap();
    let c = mb.changes_since(snap.uid_validity, snap.highest_modseq).await.unwrap().unwrap();
    eprintln!("store + changes_since ({} changed): {:?}", c.changed.len(), t.elapsed());
    let t = std::time::Instant::now();
    let uids: Vec<u32> = snap.messages.iter().map(|m| m.uid).collect();
    mb.read_headers(&uids).await.unwrap();
    eprintln!("read_headers of 50,000 (cold): {:?}", t.elapsed());
    let t = std::time::Instant::now();
    mb.read_headers(&uids).await.unwrap();
    eprintln!("read_headers of 50,000 (cached): {:?}", t.elapsed());
    drop(mb);
    drop(store);
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let t = std::time::Instant::now();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    eprintln!("reopen: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    mb.sync().await.unwrap();
    eprintln!("sync after reopen: {:?}", t.elapsed());
}

#[tokio::test]
async fn a_torn_index_append_keeps_uidvalidity() {
    let data = tempfile::tempdir().unwrap();
    let idx = data.path().join("state/index/example.org/alice/INBOX.idx");
    let validity = {
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        deliver(&store, "a\r\n").await;
        let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
        mb.sync().await.unwrap().uid_validity
    };
    // A crash in the middle of an append (never acknowledged) leaves half a line.
    let mut f = std::fs::OpenOptions::new().append(true).open(&idx).unwrap();
    std::io::Write::write_all(&mut f, b"0badc0de\tA\t2\t9").unwrap();
    drop(f);
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let snap = mb.sync().await.unwrap();
    assert_eq!((snap.uid_validity, uids(&snap)), (validity, vec![1]));
    deliver(&store, "b\r\n").await;
    assert_eq!(uids(&mb.sync().await.unwrap()), [1, 2]);
    drop(mb);
    drop(store);
    // The torn bytes were cut, so the next append did not bury them mid-log.
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    assert_eq!(mb.uid_validity(), validity);
    assert_eq!(uids(&mb.sync().await.unwrap()), [1, 2]);
}

#[tokio::test]
async fn reading_a_message_renamed_behind_our_back_rescans() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    deliver(&store, "Subject: x\r\n\r\nbody\r\n").await;
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    mb.sync().await.unwrap();
    let cur = root(data.path()).join("cur");
    let name = ls(&cur).remove(0);
    std::fs::rename(cur.join(&name), cur.join(format!("{name}S"))).unwrap();
    let bytes = mb.read_message(1, 100).await.unwrap();
    assert_eq!(&bytes[..], b"Subject: x\r\n\r\nbody\r\n");
    assert_eq!(mb.sync().await.unwrap().messages[0].flags, [Flag::Seen]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_flags_expunges_and_moves_race_without_loss() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    store.ensure_account(&alice()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..25 {
                deliver(&store, &format!("m {i} {j}\r\n")).await;
            }
        }));
    }
    for k in 0..3 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let inbox = store.open_mailbox(&alice(), "INBOX").await.unwrap();
            let trash = store.open_mailbox(&alice(), "Trash").await.unwrap();
            for _ in 0..20 {
                let snap = inbox.sync().await.unwrap();
                let Some(first) = snap.messages.front() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                match k {
                    0 => {
                        inbox.store_flags(&[first.uid], FlagOp::Add, &[Flag::Seen], None).await.unwrap();
                    }
                    1 => {
                        inbox.move_to(&[first.uid], &trash).await.unwrap();
                    }
                    _ => {
                        trash.move_to(&[1, 2, 3], &inbox).await.unwrap();
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let inbox = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let trash = store.open_mailbox(&alice(), "Trash").await.unwrap();
    let (a, b) = (inbox.sync().await.unwrap(), trash.sync().await.unwrap());
    let mut bodies = Vec::new();
    for (mb, snap) in [(&inbox, &a), (&trash, &b)] {
        for m in &snap.messages {
            bodies.push(mb.read_message(m.uid, 100).await.unwrap());
        }
    }
    bodies.sort();
    let before = bodies.len();
    bodies.dedup();
    assert_eq!((before, bodies.len()), (100, 100), "no loss, no duplicates");
    drop((inbox, trash));
    drop(store);
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let again = store.open_mailbox(&alice(), "INBOX").await.unwrap().sync().await.unwrap();
    assert_eq!(again, a);
}

#[tokio::test]
async fn a_dovecot_maildir_keeps_its_uids_and_uidvalidity() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    store.ensure_account(&alice()).await.unwrap();
    let r = root(data.path());
    for (name, body) in [
        ("100.M1P1.old,S=3,W=3:2,S", "a\r\n"),
        ("200.M1P1.old,S=3,W=3:2,", "b\r\n"),
        ("300.M1P1.old,S=3,W=3:2,F", "c\r\n"),
    ] {
        std::fs::write(r.join("cur").join(name), body).unwrap();
    }
    // Delivered after Dovecot's last sync: no UID yet anywhere.
    std::fs::write(r.join("new/400.M1P1.new,S=3,W=3"), "d\r\n").unwrap();
    std::fs::write(
        r.join("dovecot-uidlist"),
        "3 V42 N10 Gabc\n5 :100.M1P1.old,S=3,W=3\n7 :200.M1P1.old,S=3,W=3\n\
         9 W3 :300.M1P1.old,S=3,W=3\n8 :gone.M1P1.old\n",
    )
    .unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let snap = mb.sync().await.unwrap();
    assert_eq!(snap.uid_validity, 42);
    assert_eq!(uids(&snap), [5, 7, 9, 10]);
    assert_eq!(snap.uid_next, 11);
    assert_eq!(snap.messages[0].flags, [Flag::Seen]);
    drop(mb);
    drop(store);
    // Our index is the truth from now on, even if Dovecot's file changes.
    std::fs::write(r.join("dovecot-uidlist"), "3 V7 N2\n1 :x\n").unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    assert_eq!(mb.sync().await.unwrap(), snap);
    drop(mb);
    drop(store);
    // If our index is lost, a uidlist that does not know every file in cur/ is stale
    // (here: 400.M1P1.new got UID 10 from us) and is not trusted.
    std::fs::write(
        r.join("dovecot-uidlist"),
        "3 V42 N10\n5 :100.M1P1.old,S=3,W=3\n7 :200.M1P1.old,S=3,W=3\n9 :300.M1P1.old,S=3,W=3\n",
    )
    .unwrap();
    std::fs::remove_file(data.path().join("state/index/example.org/alice/INBOX.idx")).unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    let rebuilt = mb.sync().await.unwrap();
    assert_ne!(rebuilt.uid_validity, 42);
    assert_eq!(uids(&rebuilt), [1, 2, 3, 4]);
}

#[tokio::test]
async fn header_blocks_come_from_the_cache_and_never_outlive_a_uidvalidity() {
    let data = tempfile::tempdir().unwrap();
    let hdr = data.path().join("state/index/example.org/alice/INBOX.hdr");
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    deliver(&store, "Subject: one\r\nFrom: a@b\r\n\r\nbody 1\r\n").await;
    deliver(&store, "Subject: two\r\n").await;
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    mb.sync().await.unwrap();
    // Bare LF (written by another program): the caller takes the converting slow path.
    std::fs::write(root(data.path()).join("cur/1700000000.x.other:2,"), b"Subject: lf\n\nx\n").unwrap();
    let snap = mb.sync().await.unwrap();
    assert_eq!(uids(&snap), [1, 2, 3]);
    let got = mb.read_headers(&[2, 1, 3, 99]).await.unwrap();
    assert_eq!(got[0].as_deref(), Some(&b"Subject: two\r\n"[..]));
    assert_eq!(got[1].as_deref(), Some(&b"Subject: one\r\nFrom: a@b\r\n\r\n"[..]));
    assert_eq!(got[2], None);
    assert_eq!(got[3], None);
    assert!(std::fs::metadata(&hdr).unwrap().len() > 40);
    // Served from the cache now: even with the message files gone behind our back.
    let cur = root(data.path()).join("cur");
    for name in ls(&cur) {
        std::fs::remove_file(cur.join(name)).unwrap();
    }
    assert_eq!(mb.read_headers(&[1]).await.unwrap()[0].as_deref(), Some(&b"Subject: one\r\nFrom: a@b\r\n\r\n"[..]));
    // A rebuilt index (new UIDVALIDITY) must not see the old UIDs' headers.
    drop(mb);
    drop(store);
    std::fs::remove_file(data.path().join("state/index/example.org/alice/INBOX.idx")).unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    deliver(&store, "Subject: new\r\n\r\nx\r\n").await;
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    assert_eq!(uids(&mb.sync().await.unwrap()), [1]);
    assert_eq!(mb.read_headers(&[1]).await.unwrap()[0].as_deref(), Some(&b"Subject: new\r\n\r\n"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_accounts_are_created_at_once() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let owners: Vec<MailboxOwner> = (0..70).map(|i| MailboxOwner::new(format!("u{i}"), "example.org")).collect();
    store.ensure_accounts(owners.clone().into_iter()).await.unwrap();
    for o in &owners {
        let dir = data.path().join("mail/example.org").join(&o.local);
        assert!(dir.join("cur").is_dir() && dir.join(".Trash/new").is_dir(), "{o}");
    }
    // Idempotent, and a bad name is reported.
    store.ensure_accounts(owners.into_iter()).await.unwrap();
    assert!(store.ensure_accounts([MailboxOwner::new("..", "example.org")].into_iter()).await.is_err());
}

/// The header scan that serves headers the cache does not keep finds the empty line
/// wherever it falls: across the 64 KiB read chunks, first in the message (no header), or
/// nowhere (the whole message is header).
#[tokio::test]
async fn header_block_found_across_read_chunks() {
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let mut texts = Vec::new();
    use super::mailbox::HEADER_READ_CHUNK;
    for blank_at in [HEADER_READ_CHUNK - 3, HEADER_READ_CHUNK - 2, HEADER_READ_CHUNK - 1, HEADER_READ_CHUNK] {
        let mut t = String::from("Subject: s\r\n");
        while t.len() < blank_at - 2 {
            t.push('x');
        }
        t.truncate(blank_at - 2);
        t.push_str("\r\n\r\nbody\r\n");
        assert_eq!(&t[blank_at..blank_at + 2], "\r\n");
        texts.push((t, blank_at + 2));
    }
    texts.push(("\r\nno header\r\n".into(), 2));
    texts.push(("Subject: only a header\r\n".into(), 24));
    for (t, _) in &texts {
        deliver(&store, t).await;
    }
    let mb = store.open_mailbox(&alice(), "INBOX").await.unwrap();
    mb.sync().await.unwrap();
    for (uid, (t, len)) in (1u32..).zip(&texts) {
        let block = mb.read_header_block(uid).await.unwrap();
        assert_eq!(block.len(), *len, "uid {uid}");
        assert_eq!(&block[..], &t.as_bytes()[..*len]);
        let (mut r, streamed_len) = mb.header_block_reader(uid).await.unwrap();
        assert_eq!(streamed_len, *len as u64);
        let mut first = vec![0u8; *len];
        tokio::io::AsyncReadExt::read_exact(&mut r, &mut first).await.unwrap();
        assert_eq!(first, block);
    }
}
