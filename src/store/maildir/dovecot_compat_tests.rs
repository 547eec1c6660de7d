//! Format compatibility with Dovecot: Dovecot reads the Maildir we write, and we read the
//! Maildir Dovecot writes (flags, folders, LF-stored messages with `W=`). Uses the real
//! `doveadm` (Debian `dovecot-core`); skipped when it is not installed unless `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

struct Dovecot {
    conf: PathBuf,
    home: PathBuf,
}

impl Dovecot {
    /// A throw-away doveadm configuration pointing at `mail_root`, or `None` to skip.
    fn setup(tmp: &Path, mail_root: &Path) -> Option<Dovecot> {
        let found = Command::new("doveadm").arg("help").output().is_ok();
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "doveadm is required in CI (apt-get install dovecot-core)"
            );
            eprintln!("doveadm not installed: skipping the Dovecot compatibility test");
            return None;
        }
        // Dovecot refuses to access mail as root: run it as nobody and hand it the files.
        let root_user = unsafe { libc::geteuid() } == 0;
        let (uid, gid) = if root_user { (65534, 65534) } else { unsafe { (libc::geteuid(), libc::getegid()) } };
        let home = tmp.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let conf = tmp.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                "mail_location = maildir:{}:INDEX={}/dvindex\n\
                 mail_home = {home}\nmail_uid = {uid}\nmail_gid = {gid}\n\
                 first_valid_uid = 0\nfirst_valid_gid = 0\n\
                 log_path = {t}/dovecot.log\nbase_dir = {t}/run\nssl = no\n",
                mail_root.display(),
                tmp.display(),
                home = home.display(),
                t = tmp.display()
            ),
        )
        .unwrap();
        if root_user {
            chown_tree(tmp, uid, gid);
        }
        Some(Dovecot { conf, home })
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut cmd = Command::new("doveadm");
        cmd.arg("-c").arg(&self.conf).args(args);
        cmd.env("USER", "alice").env("HOME", &self.home);
        cmd.stdin(std::process::Stdio::piped());
        cmd.stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.unwrap_or(b"")).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "doveadm {args:?} failed: {}{text}", String::from_utf8_lossy(&out.stderr));
        text
    }
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_reads_our_maildir_and_we_read_dovecots() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = MailboxOwner::new("alice", "example.org");
    let store = MaildirStore::open(&tmp.path().join("data"), "mx.example.org").unwrap();
    let body = MessageBody::Memory(bytes::Bytes::from_static(b"Subject: from mailroom\r\n\r\nhello dovecot\r\n"));
    let to = |folder: &str| LocalDelivery {
        owner: alice.clone(),
        folder: folder.into(),
        header_prefix: b"Delivered-To: alice@example.org\r\n".to_vec(),
        flags: Vec::new(),
    };
    for r in store.deliver(&body, &[to("INBOX"), to("Junk")]).await {
        r.unwrap();
    }
    let inbox = store.open_mailbox(&alice, "INBOX").await.unwrap();
    inbox.sync().await.unwrap();
    inbox
        .store_flags(&[1], FlagOp::Add, &[Flag::Seen, Flag::Flagged, Flag::Keyword("work".into())], None)
        .await
        .unwrap();
    store.create_folder(&alice, "Ärger/Sub", None).await.unwrap();
    let sub = store.open_mailbox(&alice, "Ärger/Sub").await.unwrap();
    sub.append(&body, &[Flag::Answered], None).await.unwrap();

    let mail_root = tmp.path().join("data/mail/example.org/alice");
    let Some(dove) = Dovecot::setup(tmp.path(), &mail_root) else {
        return;
    };
    let list = dove.run(&["mailbox", "list"], None);
    for name in ["INBOX", "Sent", "Drafts", "Junk", "Trash", "Ärger.Sub"] {
        assert!(list.lines().any(|l| l == name), "{name} in {list}");
    }
    let fetched = dove.run(&["fetch", "flags text", "mailbox", "INBOX", "ALL"], None);
    let flags_line = fetched.lines().find(|l| l.starts_with("flags:")).unwrap_or("");
    assert!(flags_line.contains("\\Seen") && flags_line.contains("\\Flagged"), "{fetched}");
    assert!(flags_line.contains("work"), "{fetched}");
    assert!(fetched.contains("Subject: from mailroom"), "{fetched}");
    let junk = dove.run(&["fetch", "text", "mailbox", "Junk", "ALL"], None);
    assert!(junk.contains("hello dovecot"), "{junk}");
    let sub_flags = dove.run(&["fetch", "flags", "mailbox", "Ärger.Sub", "ALL"], None);
    assert!(sub_flags.contains("\\Answered"), "{sub_flags}");

    // Now Dovecot writes (LF line endings, S= and W= in the name) and sets flags.
    dove.run(&["save", "-m", "Sent"], Some(b"Subject: from dovecot\r\n\r\nline\r\n"));
    dove.run(&["flags", "add", "\\Seen \\Answered $Label1", "mailbox", "Sent", "ALL"], None);
    let sent = store.open_mailbox(&alice, "Sent").await.unwrap();
    let snap = sent.sync().await.unwrap();
    assert_eq!(snap.messages.len(), 1);
    let m = &snap.messages[0];
    assert_eq!(m.flags, [Flag::Seen, Flag::Answered, Flag::Keyword("$Label1".into())]);
    let bytes = sent.read_message(m.uid, 1 << 20).await.unwrap();
    assert_eq!(&bytes[..], b"Subject: from dovecot\r\n\r\nline\r\n");
    assert_eq!(m.size, bytes.len() as u64);
    // A folder Dovecot managed keeps Dovecot's UIDVALIDITY and UIDs when we take over.
    dove.run(&["mailbox", "create", "Archive"], None);
    for i in 0..3 {
        let msg = format!("Subject: old {i}\r\n\r\nx\r\n");
        dove.run(&["save", "-m", "Archive"], Some(msg.as_bytes()));
    }
    dove.run(&["expunge", "mailbox", "Archive", "uid", "1"], None);
    let status = dove.run(&["mailbox", "status", "uidvalidity", "Archive"], None);
    // "Archive uidvalidity=1795737743"
    let dovecot_validity: u32 = status
        .split("uidvalidity=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("uidvalidity in {status:?}"));
    let archive = store.open_mailbox(&alice, "Archive").await.unwrap();
    let snap = archive.sync().await.unwrap();
    assert_eq!(snap.uid_validity, dovecot_validity);
    assert_eq!(snap.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), [2, 3]);

    // Dovecot's flag change on our INBOX message is seen too.
    dove.run(&["flags", "remove", "\\Flagged", "mailbox", "INBOX", "ALL"], None);
    let snap = inbox.sync().await.unwrap();
    assert_eq!(snap.messages[0].flags, [Flag::Seen, Flag::Keyword("work".into())]);
}

/// An expunge while a session still reads the message (RFC 2180 4.1.1) keeps the file in
/// `tmp/`, where Dovecot never looks: for Dovecot it is expunged at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_does_not_see_retained_expunged_files() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = MailboxOwner::new("alice", "example.org");
    let store = MaildirStore::open(&tmp.path().join("data"), "mx.example.org").unwrap();
    let deliver = |subject: &'static str| {
        let body = MessageBody::Memory(bytes::Bytes::from(format!("Subject: {subject}\r\n\r\nx\r\n")));
        let to = LocalDelivery {
            owner: alice.clone(),
            folder: "INBOX".into(),
            header_prefix: Vec::new(),
            flags: Vec::new(),
        };
        let store = store.clone();
        async move { store.deliver(&body, &[to]).await.into_iter().for_each(|r| r.map(|_| ()).unwrap()) }
    };
    deliver("gone").await;
    deliver("kept").await;
    let inbox = store.open_mailbox(&alice, "INBOX").await.unwrap();
    let view = inbox.register_view();
    inbox.sync().await.unwrap();
    assert_eq!(inbox.expunge(&[1]).await.unwrap(), [1]);
    // Still readable here ...
    assert!(inbox.read_message(1, 1 << 20).await.unwrap().starts_with(b"Subject: gone"));
    let mail_root = tmp.path().join("data/mail/example.org/alice");
    let Some(dove) = Dovecot::setup(tmp.path(), &mail_root) else {
        return;
    };
    // ... but not for Dovecot.
    let status = dove.run(&["mailbox", "status", "messages", "INBOX"], None);
    assert!(status.contains("messages=1"), "{status}");
    let text = dove.run(&["fetch", "text", "mailbox", "INBOX", "ALL"], None);
    assert!(text.contains("Subject: kept") && !text.contains("Subject: gone"), "{text}");
    view.release(&[1]);
    assert!(matches!(inbox.read_message(1, 1 << 20).await, Err(StoreError::NoSuchMessage(1))));
}
