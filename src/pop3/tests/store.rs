//! POP3 over the real Maildir store and account directory: sizes and UIDLs as on disk,
//! byte-exact RETR from files, durable UPDATE seen by IMAP-side mailbox holders, UIDLs that
//! survive restarts and index rebuilds, delivery during a session, fetchmail end to end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::fetchmail::{MESSAGES, delivered, fetchmail};
use super::harness::{RawClient, TestServer, assert_transcript, poplib, start, test_limits, tool_available};
use crate::accounts::{Directory, parse_accounts};
use crate::pop3::context::Pop3Context;
use crate::store::{LocalDelivery, MailboxEvent, MailboxOwner, MessageBody, Store};

const ALICE: &str = "alice@example.com";

fn alice() -> MailboxOwner {
    MailboxOwner::new("alice", "example.com")
}

fn context(data: &Path) -> Arc<Pop3Context> {
    let accounts = parse_accounts("alice@example.com:{PLAIN}pw\nbob@example.com:{PLAIN}pw").expect("accounts");
    let directory = Directory::new(vec!["example.com".into()], accounts, vec![]).expect("directory");
    Arc::new(Pop3Context {
        hostname: "pop.test.example".into(),
        directory: Arc::new(directory),
        store: crate::testing::test_store(data, "pop.test.example"),
        tls: None,
        limits: test_limits(),
        limiter: Arc::new(crate::net::Limiter::new(crate::net::LimiterConfig::default(), Vec::new())),
    })
}

async fn deliver(store: &Store, body: &[u8]) {
    let results = store
        .deliver(
            &MessageBody::Memory(bytes::Bytes::copy_from_slice(body)),
            &[LocalDelivery { owner: alice(), folder: "INBOX".into(), header_prefix: Vec::new(), flags: Vec::new() }],
        )
        .await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

/// INBOX file names on disk (cur/ and new/), base names only, sorted.
fn base_names_on_disk(data: &Path) -> Vec<String> {
    let inbox = data.join("mail/example.com/alice");
    let mut names: Vec<String> = ["cur", "new"]
        .iter()
        .flat_map(|d| std::fs::read_dir(inbox.join(d)).into_iter().flatten())
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().split(":2,").next().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

/// The UIDL listing of a fresh session.
async fn uidl_listing(server: &TestServer<Pop3Context>) -> Vec<String> {
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.send("UIDL").await;
    assert_eq!(c.line().await, "+OK");
    let lines = c.body().await;
    c.expect("QUIT", "+OK Bye").await;
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retr_dele_quit_against_the_maildir() {
    if !crate::testing::on_maildir() {
        return; // checks the Maildir files
    }
    if !tool_available("python3") {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let ctx = context(data.path());
    deliver(&ctx.store, MESSAGES[0]).await;
    deliver(&ctx.store, MESSAGES[1]).await;
    let server = start(ctx.clone(), test_limits()).await;
    // An IMAP-like holder of the same mailbox, listening for changes.
    let imap_side = ctx.store.open_mailbox(&alice(), "INBOX").await.expect("open");
    let mut events = imap_side.subscribe();

    let saved: PathBuf = server.dir.path().join("msg1.eml");
    let steps = json!([["user", ALICE], ["pass_", "pw"], ["stat"], ["save", 1, saved], ["dele", 2], ["quit"]]);
    let got = poplib(server.tls.port(), "implicit", &server.ca_file, steps).await;
    let (a, b) = (MESSAGES[0].len(), MESSAGES[1].len());
    assert_transcript(
        &got,
        &format!(
            "S: +OK pop.test.example POP3 ready
            C: user {ALICE}
            S: +OK Send PASS
            C: pass_ pw
            S: +OK Logged in, 2 messages ({total} octets)
            C: stat
            S: 2 {total}
            C: save 1 {saved}
            S: +OK {a} octets
            S= {a}
            C: dele 2
            S: +OK Message 2 deleted
            C: quit
            S: +OK Bye, 1 messages deleted",
            total = a + b,
            saved = saved.display(),
        ),
    );
    assert!(std::fs::read(&saved).unwrap_or_default() == MESSAGES[0]);
    // Durable: gone from disk, and the other holder of the mailbox was told.
    assert_eq!(base_names_on_disk(data.path()).len(), 1);
    let mut told = false;
    while let Ok(ev) = events.try_recv() {
        told |= matches!(ev, MailboxEvent::Expunged { uids } if uids == vec![2]);
    }
    assert!(told, "IMAP side was not told of the POP3 expunge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidls_are_base_names_and_survive_restart_and_index_rebuild() {
    if !crate::testing::on_maildir() {
        return; // checks Maildir base names and index files
    }
    let data = tempfile::tempdir().expect("tempdir");
    let ctx = context(data.path());
    for m in MESSAGES {
        deliver(&ctx.store, m).await;
    }
    let server = start(ctx, test_limits()).await;
    let first = uidl_listing(&server).await;
    let mut expected: Vec<String> = base_names_on_disk(data.path());
    expected.sort();
    let mut listed: Vec<String> = first.iter().filter_map(|l| l.split(' ').nth(1)).map(String::from).collect();
    listed.sort();
    assert_eq!(listed, expected);
    assert_eq!(uidl_listing(&server).await, first, "same on every connection");
    drop(server);

    // A restart: new Store over the same data dir.
    let server = start(context(data.path()), test_limits()).await;
    assert_eq!(uidl_listing(&server).await, first, "same after restart");
    drop(server);

    // Index lost: rebuilt with a new UIDVALIDITY, but the UIDLs do not move.
    std::fs::remove_dir_all(data.path().join("state")).expect("remove state");
    let server = start(context(data.path()), test_limits()).await;
    assert_eq!(uidl_listing(&server).await, first, "same after index rebuild");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_during_a_session_appears_in_the_next_one() {
    let data = tempfile::tempdir().expect("tempdir");
    let ctx = context(data.path());
    deliver(&ctx.store, MESSAGES[1]).await;
    let server = start(ctx.clone(), test_limits()).await;
    let size = MESSAGES[1].len();
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("STAT", &format!("+OK 1 {size}")).await;
    // Ten concurrent deliveries while the session is open.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = ctx.store.clone();
        tasks.push(tokio::spawn(async move { deliver(&store, MESSAGES[2]).await }));
    }
    for t in tasks {
        t.await.expect("delivery task");
    }
    c.expect("STAT", &format!("+OK 1 {size}")).await;
    c.expect("LIST 2", "-ERR No such message").await;
    c.expect("DELE 1", "+OK Message 1 deleted").await;
    c.expect("QUIT", "+OK Bye, 1 messages deleted").await;
    if crate::testing::on_maildir() {
        assert_eq!(base_names_on_disk(data.path()).len(), 10);
    }

    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("STAT", &format!("+OK 10 {}", 10 * MESSAGES[2].len())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_leaves_the_maildir_alone() {
    if !crate::testing::on_maildir() {
        return; // checks the Maildir files
    }
    let data = tempfile::tempdir().expect("tempdir");
    let ctx = context(data.path());
    deliver(&ctx.store, MESSAGES[0]).await;
    let server = start(ctx, test_limits()).await;
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("DELE 1", "+OK Message 1 deleted").await;
    drop(c);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(base_names_on_disk(data.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_mib_file_streams_byte_exact() {
    if !tool_available("python3") {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let ctx = context(data.path());
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while big.len() < 20 * 1024 * 1024 {
        if i.is_multiple_of(5) {
            big.push(b'.');
        }
        big.extend_from_slice(format!("{i:08} the quick brown fox jumps over the lazy dog\r\n").as_bytes());
        i += 1;
    }
    deliver(&ctx.store, &big).await;
    let server = start(ctx, test_limits()).await;
    let saved = server.dir.path().join("big.eml");
    let steps = json!([["user", ALICE], ["pass_", "pw"], ["list", 1], ["save", 1, saved], ["quit"]]);
    let got = poplib(server.tls.port(), "implicit", &server.ca_file, steps).await;
    assert!(got.contains(&format!("S: +OK 1 {}", big.len())), "{got}");
    assert!(std::fs::read(&saved).unwrap_or_default() == big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_pulls_exact_bytes_from_the_maildir() {
    if !tool_available("fetchmail") {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let ctx = context(data.path());
    for m in MESSAGES {
        deliver(&ctx.store, m).await;
    }
    let server = start(ctx, test_limits()).await;
    let home = server.dir.path().join("home");
    let out = server.dir.path().join("out");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::create_dir_all(&out).expect("out");
    assert_eq!(fetchmail(&server, &home, &out, "", "fetchall").await, 0);
    let got = delivered(&out);
    assert_eq!(got.len(), 3);
    for (got, want) in got.iter().zip(MESSAGES) {
        assert!(got == want, "{:?}", String::from_utf8_lossy(got));
    }
    assert!(base_names_on_disk(data.path()).is_empty());
}

/// The production entry point, as `app.rs` calls it: one context shared by a 110-style and
/// a 995-style listener, TLS from the context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_connection_with_stls_and_implicit_tls() {
    use crate::pop3::context::serve_connection;
    let data = tempfile::tempdir().expect("tempdir");
    let pki = super::harness::make_pki(data.path());
    let base = context(data.path());
    let ctx = Arc::new(Pop3Context {
        hostname: base.hostname.clone(),
        directory: base.directory.clone(),
        store: base.store.clone(),
        tls: Some(pki.acceptor),
        limits: test_limits(),
        limiter: Arc::new(crate::net::Limiter::new(crate::net::LimiterConfig::default(), Vec::new())),
    });
    deliver(&ctx.store, MESSAGES[1]).await;
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let mut addrs = Vec::new();
    for implicit in [false, true] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.push(listener.local_addr().expect("addr"));
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(serve_connection(ctx.clone(), stream, peer, implicit, shutdown.clone()));
            }
        });
    }
    let size = MESSAGES[1].len();

    let mut plain = RawClient::plain(addrs[0]).await;
    plain.expect("USER alice@example.com", "-ERR [AUTH] Authentication requires TLS: use STLS or port 995").await;
    plain.expect("STLS", "+OK Begin TLS negotiation").await;
    let mut c = RawClient::new(super::harness::tls_client_stream(plain.into_stream(), &pki.ca_file).await);
    c.expect("USER alice@example.com", "+OK Send PASS").await;
    c.expect("PASS pw", &format!("+OK Logged in, 1 messages ({size} octets)")).await;

    let mut other = RawClient::tls(addrs[1], &pki.ca_file).await;
    other.expect("USER alice@example.com", "+OK Send PASS").await;
    other.expect("PASS pw", "-ERR [IN-USE] Mailbox is in use by another POP3 session").await;
    other.expect("USER alice@example.com", "+OK Send PASS").await;
    other.expect("PASS wrong", "-ERR [AUTH] Authentication failed").await;
    c.expect("QUIT", "+OK Bye").await;
}

/// A file another program wrote with bare LF line ends: LIST reports, and RETR sends,
/// the CRLF form — the same number of octets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_lf_file_is_listed_and_sent_in_crlf_form() {
    if !crate::testing::on_maildir() {
        return; // checks a Maildir file written by another program
    }
    let data = tempfile::tempdir().expect("tempdir");
    let ctx = context(data.path());
    ctx.store.ensure_account(&alice()).await.expect("account");
    let lf = b"Subject: written by procmail\n\n.dot\nbody\n";
    let crlf = b"Subject: written by procmail\r\n\r\n.dot\r\nbody\r\n";
    let new = data.path().join("mail/example.com/alice/new/1700000000.M1P1.other.host");
    std::fs::write(new, lf).expect("drop file");
    let server = start(ctx, test_limits()).await;
    let mut c = RawClient::login(server.tls, &server.ca_file, ALICE, "pw").await;
    c.expect("LIST 1", &format!("+OK 1 {}", crlf.len())).await;
    c.expect("UIDL 1", "+OK 1 1700000000.M1P1.other.host").await;
    c.expect("RETR 1", &format!("+OK {} octets", crlf.len())).await;
    assert_eq!(c.body().await, vec!["Subject: written by procmail", "", "..dot", "body"]);
}
