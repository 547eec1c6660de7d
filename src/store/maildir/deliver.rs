//! Durable delivery of one message to many local mailboxes (SMTP DATA, LMTP).
//!
//! Owns: writing each copy so that no reader ever sees half of it — a file without a name
//! (`O_TMPFILE`) in `new/` (`cur/` when it arrives with flags), written, fsynced and
//! linked in under a unique name; or, where the system cannot do that, as Maildir
//! prescribes, `tmp/<unique>` created with O_EXCL, written, fsynced, renamed into `new/`
//! — then that directory fsynced through the shared
//! [`GroupSync`](crate::durable::GroupSync) so fifty concurrent sessions pay for a handful
//! of directory fsyncs, not fifty. `deliver` returns only when every copy is durable: SMTP
//! sends its 250 after that (architecture.md, "durable before acknowledged"). A copy with
//! keywords (Sieve imap4flags) goes through the folder's open-mailbox state instead, as an
//! APPEND does, so its keyword letters come from the one `dovecot-keywords` table under the
//! mailbox lock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::MaildirStore;
use super::durable::{write_new_file, write_unnamed};
use super::error::{StoreError, blocking};
use super::filename::{FlagSet, cur_name, new_base_name};
use super::folder_name::FolderPath;
use super::layout::create_maildir;
use super::types::{DeliveredMessage, Flag, LocalDelivery, MessageBody};

/// How often a name collision (another process with our pid and clock) is retried.
const NAME_ATTEMPTS: usize = 3;

/// Whether this system can create files without a name and link them in (`O_TMPFILE`
/// and /proc): cleared at the first `Unsupported`, after which deliveries take `tmp/`.
static UNNAMED: AtomicBool = AtomicBool::new(true);

/// Write the copy as a file without a name in its landing directory, fdatasync it, and
/// link it in under a name from `name` (another one on a collision). Compared with
/// `tmp/` and a rename, concurrent deliveries into one folder no longer wait for each
/// other while the file system allocates their inodes under `tmp/`'s lock, and a crash
/// leaves nothing in `tmp/`. Blocking.
fn deliver_unnamed(
    landing: &Path,
    prefix: &[u8],
    body: &MessageBody,
    mut name: impl FnMut() -> PathBuf,
) -> Result<PathBuf, StoreError> {
    let file = write_unnamed(landing, prefix, body)?;
    let mut last_err = None;
    for _ in 0..NAME_ATTEMPTS {
        let path = name();
        match file.link_unnamed(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e.into()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_err.unwrap_or_else(|| StoreError::Background("no unique name".into())))
}

impl MaildirStore {
    /// Deliver one message to one or more mailboxes. Each copy is `header_prefix + body`.
    /// Returns when every copy is durable (file + directory fsync, group-committed), one
    /// result per delivery in the same order. Open mailboxes are notified (IDLE) and quota
    /// usage is updated.
    pub async fn deliver(
        &self,
        body: &MessageBody,
        deliveries: &[LocalDelivery],
    ) -> Vec<Result<DeliveredMessage, StoreError>> {
        let handles: Vec<_> = deliveries
            .iter()
            .map(|d| {
                let store = self.clone();
                let body = body.clone();
                let d = d.clone();
                tokio::spawn(async move { store.deliver_one(&body, &d).await })
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(match h.await {
                Ok(r) => r,
                Err(e) => Err(StoreError::Background(e.to_string())),
            });
        }
        out
    }

    async fn deliver_one(&self, body: &MessageBody, d: &LocalDelivery) -> Result<DeliveredMessage, StoreError> {
        let folder = FolderPath::from_api(&d.folder)?;
        self.ensure_account_cached(&d.owner).await?;
        let dir = self.inner.layout.folder_dir(&d.owner, &folder)?;
        if !folder.is_inbox() && !dir.join("new").is_dir() {
            // A filing rule pointing at a folder the user deleted: recreate it rather than
            // bounce (what Dovecot LDA does with lda_mailbox_autocreate).
            let dir = dir.clone();
            blocking(move || create_maildir(&dir, true)).await?;
        }
        let size = d.header_prefix.len() as u64 + body.len();
        if d.flags.iter().any(|f| matches!(f, Flag::Keyword(_))) {
            // Keywords need letters from the folder's `dovecot-keywords`, which belongs to
            // the open mailbox state: deliver through it, under the lock STORE takes, so
            // the table is never written by two parties and open sessions see the keyword.
            let mailbox = self.open_path(&d.owner, &folder).await?;
            let path = mailbox.deliver_copy(&d.header_prefix, body, &d.flags).await?;
            return Ok(DeliveredMessage { location: path.display().to_string(), size });
        }
        let host = self.inner.host.clone();
        let prefix = d.header_prefix.clone();
        let system: Vec<Flag> = d.flags.iter().filter(|f| !matches!(f, Flag::Keyword(_))).cloned().collect();
        let info = (!system.is_empty()).then(|| FlagSet::from_flags(&system));
        let landing = if info.is_some() { "cur" } else { "new" };
        let body = body.clone();
        let dir2 = dir.clone();
        let new_path: PathBuf = blocking(move || {
            // Where the file lands: `new/`, or `cur/` with its info part when flags are
            // given at delivery (Sieve imap4flags), as if a client had set them.
            let name = |base: &str| match &info {
                None => dir2.join("new").join(base),
                Some(flags) => dir2.join("cur").join(cur_name(base, flags, "")),
            };
            if UNNAMED.load(Ordering::Relaxed) {
                match deliver_unnamed(&dir2.join(landing), &prefix, &body, || name(&new_base_name(&host, size))) {
                    Err(e) if e.is_unsupported() => UNNAMED.store(false, Ordering::Relaxed),
                    done => return done,
                }
            }
            let mut last_err = None;
            for _ in 0..NAME_ATTEMPTS {
                let base = new_base_name(&host, size);
                let tmp = dir2.join("tmp").join(&base);
                match write_new_file(&tmp, &prefix, &body) {
                    Ok(_) => {
                        let new = name(&base);
                        if let Err(e) = std::fs::rename(&tmp, &new) {
                            let _ = std::fs::remove_file(&tmp);
                            return Err(StoreError::io(&new, e));
                        }
                        return Ok(new);
                    }
                    Err(StoreError::Io { source, path }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                        last_err = Some(StoreError::Io { source, path });
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(last_err.unwrap_or_else(|| StoreError::Background("no unique name".into())))
        })
        .await?;
        self.inner.sync.sync_dir(&dir.join(landing)).await?;
        self.inner.quota.adjust(&self.inner.layout, &d.owner, size as i64);
        self.notify_new(&d.owner, &folder);
        Ok(DeliveredMessage { location: new_path.display().to_string(), size })
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use std::collections::HashSet;

    fn owner(l: &str) -> MailboxOwner {
        MailboxOwner::new(l, "example.org")
    }

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn flags_given_at_delivery_land_in_cur_and_show_in_the_mailbox() {
        let data = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(data.path(), "mx.example.org").unwrap();
        let body = MessageBody::Memory(bytes::Bytes::from_static(b"Subject: hi\r\n\r\nhello\r\n"));
        let d = LocalDelivery {
            owner: owner("alice"),
            folder: "Lists".into(),
            header_prefix: Vec::new(),
            flags: vec![Flag::Seen, Flag::Flagged],
        };
        let msg = store.deliver(&body, &[d]).await.into_iter().next().unwrap().unwrap();
        let path = std::path::PathBuf::from(&msg.location);
        assert!(path.starts_with(data.path().join("mail/example.org/alice/.Lists/cur")), "{path:?}");
        assert!(msg.location.ends_with(":2,FS"), "{}", msg.location);
        let mailbox = store.open_mailbox(&owner("alice"), "Lists").await.unwrap();
        let snapshot = mailbox.sync().await.unwrap();
        let flags = &snapshot.messages[0].flags;
        assert!(flags.contains(&Flag::Seen) && flags.contains(&Flag::Flagged), "{flags:?}");
    }

    #[tokio::test]
    async fn keywords_given_at_delivery_reach_an_open_session_and_dovecot_keywords() {
        let data = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(data.path(), "mx.example.org").unwrap();
        store.ensure_account(&owner("alice")).await.unwrap();
        let kw = |k: &str| Flag::Keyword(k.into());
        // A session has INBOX open and synced, with a keyword of its own already set.
        let session = store.open_mailbox(&owner("alice"), "INBOX").await.unwrap();
        session.append(&MessageBody::Memory("Subject: a\r\n\r\n".into()), &[kw("Mine")], None).await.unwrap();
        assert_eq!(session.sync().await.unwrap().messages.len(), 1);
        let mut events = session.subscribe();
        let body = MessageBody::Memory(bytes::Bytes::from_static(b"Subject: hi\r\n\r\nhello\r\n"));
        let d = LocalDelivery {
            owner: owner("alice"),
            folder: "INBOX".into(),
            header_prefix: Vec::new(),
            flags: vec![Flag::Seen, kw("$Work"), kw(&"x".repeat(keywords::MAX_KEYWORD_LEN + 1))],
        };
        let msg = store.deliver(&body, &[d]).await.into_iter().next().unwrap().unwrap();
        assert!(matches!(events.try_recv(), Ok(MailboxEvent::NewMessages)));
        let snap = session.sync().await.unwrap();
        assert_eq!(snap.messages.len(), 2);
        // The too-long keyword was dropped, the delivery did not fail for it.
        assert_eq!(snap.messages[1].flags, [Flag::Seen, kw("$Work")]);
        let root = data.path().join("mail/example.org/alice");
        let table = std::fs::read_to_string(root.join(keywords::KEYWORDS_FILE)).unwrap();
        assert_eq!(table, "0 Mine\n1 $Work\n");
        let path = std::path::PathBuf::from(&msg.location);
        assert!(path.starts_with(root.join("cur")), "{path:?}");
        assert!(msg.location.ends_with(":2,Sb"), "{}", msg.location);
        assert!(files(&root.join("tmp")).is_empty());
        // A store opened afresh (restart) has it too.
        drop(session);
        let again = MaildirStore::open(data.path(), "mx.example.org").unwrap();
        let snap = again.open_mailbox(&owner("alice"), "INBOX").await.unwrap().sync().await.unwrap();
        assert!(snap.messages.iter().any(|m| m.flags == [Flag::Seen, kw("$Work")]), "{:?}", snap.messages);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_keyword_deliveries_and_store_share_one_keyword_table() {
        let data = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        store.ensure_account(&owner("bob")).await.unwrap();
        let kw = |k: String| Flag::Keyword(k.into());
        let session = store.open_mailbox(&owner("bob"), "INBOX").await.unwrap();
        session.append(&MessageBody::Memory("Subject: a\r\n\r\n".into()), &[], None).await.unwrap();
        session.sync().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let d = LocalDelivery {
                    owner: owner("bob"),
                    folder: "INBOX".into(),
                    header_prefix: Vec::new(),
                    flags: vec![kw(format!("d{}", i % 10))],
                };
                let body = MessageBody::Memory(format!("Subject: {i}\r\n\r\nx\r\n").into());
                store.deliver(&body, &[d]).await.into_iter().next().unwrap().unwrap();
            }));
        }
        for i in 0..10 {
            session.store_flags(&[1], FlagOp::Add, &[kw(format!("s{i}"))], None).await.unwrap();
        }
        for t in tasks {
            t.await.unwrap();
        }
        let snap = session.sync().await.unwrap();
        assert_eq!(snap.messages.len(), 21);
        let table = keywords::KeywordTable::load(&data.path().join("mail/example.org/bob"));
        let text = std::fs::read_to_string(data.path().join("mail/example.org/bob/dovecot-keywords")).unwrap();
        let names: HashSet<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(names.len(), 20, "{text}");
        assert_eq!(text.lines().count(), 20, "{text}");
        for m in snap.messages.skip(1).iter() {
            assert_eq!(m.flags.len(), 1, "{:?}", m.flags);
        }
        // Every message's letters map back to its keywords through the table on disk.
        let cur = files(&data.path().join("mail/example.org/bob/cur"));
        for name in cur {
            let info = name.rsplit_once(":2,").unwrap().1;
            let adopted = table.adopt(&filename::FlagSet::default(), info);
            assert_eq!(adopted.keywords().len(), info.len(), "{name}");
        }
    }

    #[tokio::test]
    async fn a_keyword_past_the_mailbox_limit_is_dropped_at_delivery() {
        let data = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        store.ensure_account(&owner("carol")).await.unwrap();
        let mb = store.open_mailbox(&owner("carol"), "INBOX").await.unwrap();
        let full: Vec<Flag> = (0..keywords::MAX_KEYWORDS).map(|i| Flag::Keyword(format!("k{i}").into())).collect();
        mb.append(&MessageBody::Memory("a\r\n".into()), &full, None).await.unwrap();
        let d = LocalDelivery {
            owner: owner("carol"),
            folder: "INBOX".into(),
            header_prefix: Vec::new(),
            flags: vec![Flag::Flagged, Flag::Keyword("k1".into()), Flag::Keyword("brand-new".into())],
        };
        let body = MessageBody::Memory(bytes::Bytes::from_static(b"b\r\n"));
        store.deliver(&body, &[d]).await.into_iter().next().unwrap().unwrap();
        let snap = mb.sync().await.unwrap();
        assert_eq!(snap.messages[1].flags, [Flag::Flagged, Flag::Keyword("k1".into())]);
    }

    #[tokio::test]
    async fn deliver_writes_prefix_and_body_into_new() {
        let data = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(data.path(), "mx.example.org").unwrap();
        let body = MessageBody::Memory(bytes::Bytes::from_static(b"Subject: hi\r\n\r\nhello\r\n"));
        let res = store
            .deliver(
                &body,
                &[LocalDelivery {
                    owner: owner("alice"),
                    folder: "INBOX".into(),
                    header_prefix: b"Delivered-To: alice@example.org\r\n".to_vec(),
                    flags: Vec::new(),
                }],
            )
            .await;
        let msg = res.into_iter().next().unwrap().unwrap();
        let root = data.path().join("mail/example.org/alice");
        let path = std::path::PathBuf::from(&msg.location);
        assert!(path.starts_with(root.join("new")));
        let content = std::fs::read(&path).unwrap();
        assert_eq!(content, b"Delivered-To: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n");
        assert_eq!(msg.size, content.len() as u64);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(&format!(".mx.example.org,S={0},W={0}", content.len())));
        assert!(files(&root.join("tmp")).is_empty());
        // ensure_account ran: default folders exist, Dovecot-style.
        for f in [".Drafts", ".Sent", ".Junk", ".Trash"] {
            assert!(root.join(f).join("cur").is_dir());
            assert!(root.join(f).join("maildirfolder").is_file());
        }
        assert_eq!(store.quota_usage(&owner("alice")).await.unwrap(), content.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_hundred_concurrent_deliveries_of_three_copies() {
        let data = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let body = MessageBody::Memory(format!("Subject: {i}\r\n\r\nbody\r\n").into());
                let ds: Vec<LocalDelivery> = ["a", "b", "c"]
                    .iter()
                    .map(|l| LocalDelivery {
                        owner: owner(l),
                        folder: if *l == "c" { "Junk".into() } else { "INBOX".into() },
                        header_prefix: Vec::new(),
                        flags: Vec::new(),
                    })
                    .collect();
                store.deliver(&body, &ds).await
            }));
        }
        for t in tasks {
            for r in t.await.unwrap() {
                r.unwrap();
            }
        }
        for (l, sub) in [("a", ""), ("b", ""), ("c", ".Junk")] {
            let dir = data.path().join("mail/example.org").join(l).join(sub);
            let new = files(&dir.join("new"));
            assert_eq!(new.len(), 200);
            assert!(files(&dir.join("tmp")).is_empty());
            let subjects: HashSet<Vec<u8>> =
                new.iter().map(|f| std::fs::read(dir.join("new").join(f)).unwrap()).collect();
            assert_eq!(subjects.len(), 200, "no duplicates");
        }
    }

    #[tokio::test]
    async fn bad_account_or_folder_fails_only_that_copy() {
        let data = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        let body = MessageBody::Memory(bytes::Bytes::from_static(b"x\r\n"));
        let mk = |l: &str, f: &str| LocalDelivery {
            owner: owner(l),
            folder: f.into(),
            header_prefix: Vec::new(),
            flags: Vec::new(),
        };
        let res = store.deliver(&body, &[mk("..", "INBOX"), mk("ok", "a//b"), mk("ok", "Lists/rust")]).await;
        assert!(matches!(res[0], Err(StoreError::InvalidAccount(_))));
        assert!(matches!(res[1], Err(StoreError::InvalidFolderName(_))));
        let p = res[2].as_ref().unwrap();
        assert!(p.location.contains("/ok/.Lists.rust/new/"));
    }
}

/// Throughput probe: `cargo test --lib delivery_throughput -- --ignored --nocapture`.
#[cfg(test)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn delivery_throughput() {
    use super::*;
    let data = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(data.path(), "mx").unwrap();
    let body = MessageBody::Memory(bytes::Bytes::from(vec![b'x'; 4096]));
    let owner = MailboxOwner::new("bench", "example.org");
    store.ensure_account(&owner).await.unwrap();
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (store, body, owner) = (store.clone(), body.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                let d = LocalDelivery {
                    owner: owner.clone(),
                    folder: "INBOX".into(),
                    header_prefix: b"Delivered-To: bench@example.org\r\n".to_vec(),
                    flags: Vec::new(),
                };
                for r in store.deliver(&body, &[d]).await {
                    r.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "2000 durable 4 KiB deliveries over 50 tasks: {secs:.2}s = {:.0}/s; {:?}",
        2000.0 / secs,
        store.fsync_stats()
    );
}
