//! Spool, trace headers and delivery into a real store in a temporary directory.

use super::*;
use crate::smtp::command::Mailbox;
use crate::smtp::session::{AcceptedRecipient, TlsInfo};

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn client(tls: bool) -> ClientInfo {
    ClientInfo {
        ip: std::net::IpAddr::from([192, 0, 2, 7]),
        helo: Some("client.example".into()),
        tls: tls.then(|| TlsInfo { version: "TLSv1.3".into(), cipher: "TLS13_AES_256_GCM_SHA384".into() }),
        authenticated: None,
    }
}

fn envelope(recipients: &[(&str, &[&str])]) -> Envelope {
    Envelope {
        id: "ABCDEFGHJK23".into(),
        sender: ReversePath::Mailbox(Mailbox { address: addr("bob@remote.example"), raw: "Bob@Remote.example".into() }),
        recipients: recipients
            .iter()
            .map(|(a, mbs)| AcceptedRecipient {
                address: addr(a),
                mailboxes: mbs.iter().map(|m| addr(m)).collect(),
                forwards: vec![],
            })
            .collect(),
        body: None,
        smtputf8: false,
        require_tls: false,
    }
}

#[test]
fn protocol_keywords() {
    assert_eq!(protocol_keyword(false, true, false, true, false), "ESMTPS");
    assert_eq!(protocol_keyword(false, true, false, false, false), "ESMTP");
    assert_eq!(protocol_keyword(false, false, false, true, false), "SMTP");
    assert_eq!(protocol_keyword(false, true, true, true, true), "UTF8SMTPSA");
    assert_eq!(protocol_keyword(true, true, false, false, false), "LMTP");
}

#[test]
fn trace_headers() {
    let env = envelope(&[("alice@ours.example", &["alice@ours.example"])]);
    let c = client(true);
    let trace = TraceInfo {
        hostname: "mx.ours.example",
        client: &c,
        protocol: "ESMTPS".into(),
        date: "Fri, 27 Nov 2026 00:00:00 +0000".into(),
    };
    let h = String::from_utf8(header_prefix(&env, &addr("alice@ours.example"), &trace)).unwrap_or_default();
    assert_eq!(
        h,
        "Return-Path: <Bob@Remote.example>\r\n\
         Delivered-To: alice@ours.example\r\n\
         Received: from client.example ([192.0.2.7])\r\n\
         \tby mx.ours.example (mailroom) with ESMTPS id ABCDEFGHJK23\r\n\
         \t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\
         \tfor <alice@ours.example>; Fri, 27 Nov 2026 00:00:00 +0000\r\n"
    );
    let mut env = env;
    env.sender = ReversePath::Null;
    let mut c = client(false);
    c.ip = "2001:db8::1".parse().unwrap_or(c.ip);
    c.helo = Some("evil(host);x".into());
    let trace = TraceInfo { client: &c, ..trace };
    let h = String::from_utf8(header_prefix(&env, &addr("alice@ours.example"), &trace)).unwrap_or_default();
    assert!(h.starts_with("Return-Path: <>\r\n"), "{h}");
    assert!(h.contains("from evil_host__x ([IPv6:2001:db8::1])"), "{h}");
    assert!(!h.contains("using"));
}

#[tokio::test]
async fn small_spool_stays_in_memory() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut s = Spool::new(dir.path(), "ID");
    s.write(b"hello\r\n").await;
    assert_eq!(s.len(), 7);
    let m = s.finish().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(m.body, MessageBody::Memory(ref b) if &b[..] == b"hello\r\n"));
}

#[tokio::test]
async fn large_spool_goes_to_a_file_that_is_removed_after_use() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut s = Spool::new(&dir.path().join("spool"), "ID");
    let block = vec![b'x'; 300 * 1024];
    for _ in 0..4 {
        s.write(&block).await;
    }
    let m = s.finish().await.unwrap_or_else(|e| panic!("{e}"));
    let MessageBody::File { path, len } = &m.body else { panic!("expected a file") };
    assert_eq!(*len, 1200 * 1024);
    assert_eq!(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0), 1200 * 1024);
    let path = path.clone();
    drop(m);
    assert!(!path.exists());
}

#[tokio::test]
async fn delivers_each_mailbox_once_with_its_headers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = crate::store::Store::open(dir.path(), "mx.ours.example").unwrap_or_else(|e| panic!("{e}"));
    // Two recipients lead to alice (an alias and herself), one to bob.
    let env = envelope(&[
        ("alice@ours.example", &["alice@ours.example"]),
        ("team@ours.example", &["alice@ours.example", "bob@ours.example"]),
    ]);
    let c = client(false);
    let trace = TraceInfo {
        hostname: "mx.ours.example",
        client: &c,
        protocol: "ESMTP".into(),
        date: "Fri, 27 Nov 2026 00:00:00 +0000".into(),
    };
    let body = MessageBody::Memory(bytes::Bytes::from_static(b"Subject: t\r\n\r\nhi\r\n"));
    let directory = std::sync::Arc::new(
        crate::accounts::Directory::new(vec!["ours.example".into()], Vec::new(), Vec::new())
            .unwrap_or_else(|e| panic!("{e:?}")),
    );
    let courier = crate::smtp::courier::LocalCourier::new(directory, store);
    let outcomes = courier
        .deliver(
            &env,
            b"",
            &body,
            &trace,
            crate::smtp::courier::Disposition {
                folder: "INBOX",
                verdict: crate::sieve::ScanVerdict::default(),
                replies: crate::smtp::courier::Replies::One,
            },
        )
        .await;
    assert_eq!(outcomes, vec![Ok(()), Ok(())]);
    for (user, count) in [("alice", 1), ("bob", 1)] {
        let new = dir.path().join("mail/ours.example").join(user).join("new");
        let files: Vec<_> =
            std::fs::read_dir(&new).unwrap_or_else(|e| panic!("{}: {e}", new.display())).flatten().collect();
        assert_eq!(files.len(), count, "{user}");
        let content = std::fs::read_to_string(files[0].path()).unwrap_or_default();
        assert!(content.starts_with("Return-Path: <Bob@Remote.example>\r\n"));
        assert!(content.contains(&format!("Delivered-To: {user}@ours.example\r\n")));
        assert!(content.ends_with("\r\n\r\nhi\r\n"));
    }
}

/// A backend that cannot be reached is "try again later" (451 4.3.0), like a full disk:
/// the sender keeps the message queued.
#[test]
fn an_unreachable_store_is_451_4_3_0() {
    let s = store_error_reply(&StoreError::Unavailable("database down".into()));
    assert_eq!(s, Status::new(451, (4, 3, 0), "Error: local delivery failed, try again later"));
    let s = store_error_reply(&StoreError::NoSuchFolder("x".into()));
    assert_eq!(s, Status::new(550, (5, 2, 0), "Error: mailbox unavailable"));
}
