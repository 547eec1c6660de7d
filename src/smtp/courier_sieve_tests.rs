//! Sieve through the real courier and a Maildir store: what lands where, and what the
//! outbound side is asked to send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use crate::accounts::{Address, Directory};
use crate::queue::BoxFuture;
use crate::sieve::{
    AdminScripts, Engine, NoStoredScripts, Outbound, OutboundKind, REDIRECT_HEADER, ScanVerdict, ScriptSource,
    SieveDelivery,
};
use crate::smtp::command::{Mailbox, ReversePath};
use crate::smtp::courier::{Disposition, LocalCourier, Replies};
use crate::smtp::deliver::TraceInfo;
use crate::smtp::session::{AcceptedRecipient, ClientInfo, Envelope};
use crate::store::{MailboxOwner, MessageBody, Store, StoreError};

/// Active scripts by local part, and the default reply memory.
struct Scripts {
    by_user: HashMap<String, String>,
    memory: NoStoredScripts,
}

impl ScriptSource for Scripts {
    fn active<'a>(&'a self, a: &'a MailboxOwner) -> BoxFuture<'a, Result<Option<(String, Bytes)>, StoreError>> {
        Box::pin(async move { Ok(self.by_user.get(&a.local).map(|s| ("main".to_string(), Bytes::from(s.clone())))) })
    }
    fn get<'a>(&'a self, _: &'a MailboxOwner, _: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
    fn remember<'a>(
        &'a self,
        a: &'a MailboxOwner,
        key: &'a str,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.memory.remember(a, key, until)
    }
}

/// One message that would leave: kind, envelope sender, recipient, bytes.
type Message = (OutboundKind, Option<String>, String, Vec<u8>);

/// Records what would leave.
#[derive(Default)]
struct Sent(Mutex<Vec<Message>>);

impl Outbound for Sent {
    fn send<'a>(
        &'a self,
        kind: OutboundKind,
        sender: Option<&'a Address>,
        to: &'a Address,
        parts: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.0.lock().unwrap().push((kind, sender.map(|s| s.to_string()), to.to_string(), parts.concat()));
        Box::pin(async { Ok(()) })
    }
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    courier: LocalCourier,
    sent: Arc<Sent>,
}

fn setup(scripts: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "mx.ours.example").unwrap();
    let directory = Arc::new(Directory::new(vec!["ours.example".into()], Vec::new(), Vec::new()).unwrap());
    let sent = Arc::new(Sent::default());
    let source = Scripts {
        by_user: scripts.iter().map(|(u, s)| (u.to_string(), s.to_string())).collect(),
        memory: NoStoredScripts::default(),
    };
    let sieve = SieveDelivery {
        engine: Arc::new(Engine::new("mx.ours.example", AdminScripts::default())),
        source: Arc::new(source),
        folders: Arc::new(store.clone()),
        outbound: sent.clone(),
        memory: crate::net::MessageMemory::default(),
    };
    let courier = LocalCourier::new(directory, store).with_sieve(sieve);
    let root = dir.path().join("mail/ours.example");
    Setup { _dir: dir, root, courier, sent }
}

fn envelope(users: &[&str]) -> Envelope {
    Envelope {
        id: "ABCDEFGHJK23".into(),
        sender: ReversePath::Mailbox(Mailbox { address: addr("bob@remote.example"), raw: "bob@remote.example".into() }),
        recipients: users
            .iter()
            .map(|u| {
                let a = addr(&format!("{u}@ours.example"));
                AcceptedRecipient { address: a.clone(), mailboxes: vec![a], forwards: vec![] }
            })
            .collect(),
        body: None,
        smtputf8: false,
        require_tls: false,
    }
}

const MESSAGE: &[u8] = b"From: Bob <bob@remote.example>\r\nTo: alice@ours.example\r\nSubject: lunch?\r\nMessage-ID: <m1@remote.example>\r\n\r\nSee you at noon.\r\n";

/// Delivery as SMTP makes it: one reply for the whole transaction.
async fn deliver(
    s: &Setup,
    users: &[&str],
    message: &[u8],
    folder: &str,
) -> Vec<Result<(), crate::smtp::status::Status>> {
    deliver_with(s, users, message, folder, Replies::One).await
}

async fn deliver_with(
    s: &Setup,
    users: &[&str],
    message: &[u8],
    folder: &str,
    replies: Replies,
) -> Vec<Result<(), crate::smtp::status::Status>> {
    let client = ClientInfo { ip: std::net::IpAddr::from([192, 0, 2, 7]), helo: None, tls: None, authenticated: None };
    let trace = TraceInfo { hostname: "mx.ours.example", client: &client, protocol: "ESMTP".into(), date: "x".into() };
    let body = MessageBody::Memory(Bytes::copy_from_slice(message));
    s.courier
        .deliver(&envelope(users), b"", &body, &trace, Disposition { folder, verdict: ScanVerdict::default(), replies })
        .await
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[tokio::test]
async fn fileinto_with_flags_and_users_without_scripts_keep_junk() {
    let s = setup(&[(
        "alice",
        "require [\"fileinto\", \"imap4flags\", \"mailbox\"];\r\nfileinto :create :flags \"\\\\Seen\" \"Lists\";\r\n",
    )]);
    assert_eq!(deliver(&s, &["alice", "bob"], MESSAGE, "Junk").await, vec![Ok(()), Ok(())]);
    let lists = files(&s.root.join("alice/.Lists/cur"));
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert!(lists[0].ends_with(":2,S"), "{lists:?}");
    assert!(files(&s.root.join("alice/.Junk/new")).is_empty());
    // bob has no script: Junk as before.
    assert_eq!(files(&s.root.join("bob/.Junk/new")).len(), 1);
    assert!(s.sent.0.lock().unwrap().is_empty());
}

fn refusal(reason: &str) -> crate::smtp::status::Status {
    crate::smtp::status::Status::new(550, (5, 7, 1), format!("Message rejected by the recipient's filter: {reason}"))
}

/// RFC 5429 section 2.1: refuse in the reply when it can say so for exactly the
/// recipients that rejected; LMTP answers each recipient, SMTP only the whole message.
#[tokio::test]
async fn reject_refuses_in_the_reply_when_the_reply_can_carry_it() {
    let s = setup(&[("alice", "require \"ereject\";\r\nereject text:\r\nNo lunch,\r\n\tthanks.\r\n.\r\n;\r\n")]);
    // SMTP, alice alone: 550 5.7.1 with the reason on one line.
    assert_eq!(deliver(&s, &["alice"], MESSAGE, "INBOX").await, vec![Err(refusal("No lunch, thanks."))]);
    // LMTP: alice refused, bob delivered.
    assert_eq!(
        deliver_with(&s, &["alice", "bob"], MESSAGE, "INBOX", Replies::PerRecipient).await,
        vec![Err(refusal("No lunch, thanks.")), Ok(())]
    );
    assert!(files(&s.root.join("alice/new")).is_empty());
    assert_eq!(files(&s.root.join("bob/new")).len(), 1);
    assert!(s.sent.0.lock().unwrap().is_empty(), "no DSN when the reply refuses");
}

/// With one reply for alice and bob, a 550 would tell the sender bob failed too: the
/// message is accepted and alice's rejection goes back as a DSN.
#[tokio::test]
async fn reject_sends_a_dsn_to_the_sender_and_stores_nothing() {
    let s = setup(&[("alice", "require \"reject\";\r\nreject \"I do not want lunch\";\r\n")]);
    assert_eq!(deliver(&s, &["alice", "bob"], MESSAGE, "INBOX").await, vec![Ok(()), Ok(())]);
    assert!(files(&s.root.join("alice/new")).is_empty());
    assert_eq!(files(&s.root.join("bob/new")).len(), 1);
    let sent = s.sent.0.lock().unwrap();
    assert_eq!(sent.len(), 1);
    let (kind, sender, to, dsn) = &sent[0];
    assert_eq!((kind, sender.as_deref(), to.as_str()), (&OutboundKind::Rejection, None, "bob@remote.example"));
    let dsn = String::from_utf8_lossy(dsn);
    for needle in
        ["Status: 5.7.1", "Final-Recipient: rfc822; alice@ours.example", "I do not want lunch", "Subject: lunch?"]
    {
        assert!(dsn.contains(needle), "{needle} missing in {dsn}");
    }
}

#[tokio::test]
async fn redirect_is_queued_with_the_mark_and_a_loop_is_kept() {
    let s = setup(&[("alice", "redirect \"carol@else.example\";\r\n")]);
    assert_eq!(deliver(&s, &["alice"], MESSAGE, "INBOX").await, vec![Ok(())]);
    assert!(files(&s.root.join("alice/new")).is_empty());
    {
        let sent = s.sent.0.lock().unwrap();
        assert_eq!(sent.len(), 1);
        let (kind, sender, to, message) = &sent[0];
        assert_eq!(
            (kind, sender.as_deref(), to.as_str()),
            (&OutboundKind::Redirect, Some("bob@remote.example"), "carol@else.example")
        );
        let text = String::from_utf8_lossy(message);
        assert!(text.starts_with(&format!("{REDIRECT_HEADER}: alice@ours.example\r\n")), "{text}");
        assert!(!text.contains("Return-Path:"), "{text}");
        assert!(text.ends_with("See you at noon.\r\n"), "{text}");
    }
    // The message comes back: alice redirected it before, so she keeps it.
    let looped = [format!("{REDIRECT_HEADER}: alice@ours.example\r\n").as_bytes(), MESSAGE].concat();
    assert_eq!(deliver(&s, &["alice"], &looped, "INBOX").await, vec![Ok(())]);
    assert_eq!(files(&s.root.join("alice/new")).len(), 1);
    assert_eq!(s.sent.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn vacation_is_sent_once() {
    let s = setup(&[("alice", "require \"vacation\";\r\nvacation :days 1 \"Away until Monday.\";\r\n")]);
    for _ in 0..2 {
        assert_eq!(deliver(&s, &["alice"], MESSAGE, "INBOX").await, vec![Ok(())]);
    }
    assert_eq!(files(&s.root.join("alice/new")).len(), 2);
    let sent = s.sent.0.lock().unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (kind, sender, to, reply) = &sent[0];
    assert!(
        matches!(kind, OutboundKind::Reply { sign_domain, account } if sign_domain == "ours.example" && account.to_string() == "alice@ours.example"),
        "{kind:?}"
    );
    assert_eq!((sender.as_deref(), to.as_str()), (None, "bob@remote.example"));
    let text = String::from_utf8_lossy(reply);
    assert!(text.contains("Auto-Submitted: auto-replied") && text.contains("Away until Monday."), "{text}");
    assert!(text.contains("In-Reply-To: <m1@remote.example>"), "{text}");
}
