//! The outbound queue with the real SMTP client, on loopback: a test DNS server
//! (dnsmasq) publishes `MX remote.test -> mx.remote.test -> 127.0.0.1`, and the "remote MX"
//! is Postfix's `smtp-sink` or the small SMTP server of tests/support/outbound.rs. TLS
//! policies (MTA-STS, REQUIRETLS, DANE): tests/it/outbound_tls.rs. Tests that need dnsmasq or
//! smtp-sink skip when they are missing, unless `CI=true`.

use crate::common;
use crate::outbound;

use common::free_port;
use outbound::*;

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use mailroom::config::{RelayHost, RelayMode};

#[tokio::test]
async fn delivers_to_postfix_smtp_sink_found_through_dns() {
    if !have("dnsmasq") || !have("smtp-sink") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let dump = tempfile::tempdir().unwrap();
    let port = free_port();
    let _sink = Proc(
        Command::new("smtp-sink")
            .args(["-u", "root", "-d", &format!("{}/%M.", dump.path().display()), &format!("127.0.0.1:{port}"), "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<t1@here.test>").await.unwrap();
    wait_empty(&queue, 20).await;
    // smtp-sink dumps each transaction (envelope and content) to a file.
    let mut found = String::new();
    for _ in 0..40 {
        for entry in std::fs::read_dir(dump.path()).unwrap() {
            found.push_str(&String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()));
        }
        if found.contains("Subject: outbound test") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found.contains("Subject: outbound test"), "{found}");
    assert!(found.contains("bob@remote.test"), "{found}");
}

#[tokio::test]
async fn greylisted_then_delivered_and_connections_reused() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("greylist@remote.test")], MSG, "<t1@here.test>").await.unwrap();
    for i in 0..3 {
        queue.enqueue(Some(&a("alice@here.test")), &[a(&format!("r{i}@remote.test"))], MSG, "<t>").await.unwrap();
    }
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 4, "{received:#?}");
    let grey = received.iter().find(|r| r.rcpts == ["greylist@remote.test"]).unwrap();
    assert_eq!(grey.mail_from, "<alice@here.test>");
    let text = String::from_utf8_lossy(&grey.data);
    assert!(text.contains("\r\n.leading dot\r\n"), "dot-stuffing undone by the server: {text}");
    // One domain, one worker at a time: later messages reuse the open connection.
    let connections = mx.connections.load(Ordering::SeqCst);
    assert!(connections < 4, "{connections} connections for 4 messages");
}

#[tokio::test]
async fn rejected_recipient_bounces_with_rfc3464_dsn() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue
        .enqueue(Some(&a("alice@here.test")), &[a("unknown@remote.test"), a("bob@remote.test")], MSG, "<t1@here.test>")
        .await
        .unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[0].rcpts, ["bob@remote.test"]);
    let dsn = &received[1];
    assert_eq!(dsn.mail_from, "<>");
    assert_eq!(dsn.rcpts, ["alice@here.test"]);
    let parsed = mail_parser::MessageParser::default().parse(&dsn.data).unwrap();
    assert_eq!(parsed.subject(), Some("Undelivered Mail Returned to Sender"));
    let status = String::from_utf8_lossy(parsed.parts[2].contents()).into_owned();
    assert!(status.contains("Final-Recipient: rfc822; unknown@remote.test"), "{status}");
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 5.1.1"), "{status}");
    assert!(status.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"), "{status}");
    assert!(!status.contains("bob@remote.test"), "{status}");
}

#[tokio::test]
async fn expired_message_bounces() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(1)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("down@remote.test")], MSG, "<t1@here.test>").await.unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:#?}");
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains("Status: 5.4.7"), "{text}");
    assert!(text.contains("450 4.2.0 mailbox busy"), "{text}");
}

#[tokio::test]
async fn restart_with_a_full_queue_delivers_everything() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let queue =
            open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
        for i in 0..6 {
            queue.enqueue(Some(&a("alice@here.test")), &[a(&format!("r{i}@remote.test"))], MSG, "<t>").await.unwrap();
        }
        assert_eq!(queue.list().await.len(), 6);
        // Dropped before any worker ran, as after a crash.
    }
    assert!(mx.received.lock().unwrap().is_empty());
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    wait_empty(&queue, 20).await;
    let mut got: Vec<String> = mx.received.lock().unwrap().iter().flat_map(|r| r.rcpts.clone()).collect();
    got.sort();
    assert_eq!(got, (0..6).map(|i| format!("r{i}@remote.test")).collect::<Vec<_>>());
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
#[tokio::test]
async fn smarthost_requires_tls_and_authenticates() {
    let (acceptor, ca) = test_tls();
    let options = ServerOptions {
        tls: Some(acceptor),
        require_auth: Some(("relayuser".into(), "s3cret pass".into())),
        old_fashioned: false,
    };
    let (mx, port) = start_mx(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(None, 1);
    client.mta_sts = false;
    client.extra_roots = vec![ca];
    client.relay = Some(RelayHost {
        mode: RelayMode::StartTls,
        host: "127.0.0.1".into(),
        port,
        username: Some("relayuser".into()),
        password: Some("s3cret pass".into()),
    });
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue
        .enqueue(Some(&a("alice@here.test")), &[a("bob@anywhere.example"), a("carol@elsewhere.example")], MSG, "<t1>")
        .await
        .unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    let mut rcpts: Vec<String> = received.iter().flat_map(|r| r.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["bob@anywhere.example", "carol@elsewhere.example"]);
    for r in &received {
        assert!(r.tls, "relay traffic must be encrypted");
        assert_eq!(r.auth.as_deref(), Some("relayuser"));
    }
}

#[tokio::test]
async fn smarthost_with_untrusted_certificate_is_deferred_not_sent() {
    let (acceptor, _ca) = test_tls();
    let options =
        ServerOptions { tls: Some(acceptor), require_auth: Some(("u".into(), "p".into())), old_fashioned: false };
    let (mx, port) = start_mx(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(None, 1);
    client.mta_sts = false;
    client.relay = Some(RelayHost {
        mode: RelayMode::StartTls,
        host: "127.0.0.1".into(),
        port,
        username: Some("u".into()),
        password: Some("p".into()),
    });
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    let id = queue.enqueue(Some(&a("alice@here.test")), &[a("bob@anywhere.example")], MSG, "<t1>").await.unwrap();
    for _ in 0..100 {
        if queue.show(&id).await.is_some_and(|d| d.envelope.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let detail = queue.show(&id).await.unwrap();
    let reply = detail.envelope.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(reply.starts_with("4.7.5"), "{reply}");
    assert!(mx.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn opportunistic_starttls_accepts_any_certificate() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    // A certificate from a CA the client has never heard of, for the wrong name.
    let (acceptor, _unknown_ca) = test_tls_for(&["wrong.example"]);
    let (mx, port) = start_mx(ServerOptions { tls: Some(acceptor), require_auth: None, old_fashioned: false }).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<t1>").await.unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls, "STARTTLS offered, so it must be used");
}

#[tokio::test]
async fn smarthost_without_pipelining_using_auth_login() {
    let (acceptor, ca) = test_tls();
    let options =
        ServerOptions { tls: Some(acceptor), require_auth: Some(("old".into(), "timer".into())), old_fashioned: true };
    let (mx, port) = start_mx(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(None, 1);
    client.mta_sts = false;
    client.extra_roots = vec![ca];
    client.relay = Some(RelayHost {
        mode: RelayMode::StartTls,
        host: "127.0.0.1".into(),
        port,
        username: Some("old".into()),
        password: Some("timer".into()),
    });
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue
        .enqueue(
            Some(&a("alice@here.test")),
            &[a("bob@remote.test"), a("unknown@remote.test"), a("carol@remote.test")],
            MSG,
            "<t1>",
        )
        .await
        .unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    // The message itself, then the DSN for unknown@ (also through the relay).
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[0].rcpts, ["bob@remote.test", "carol@remote.test"]);
    assert_eq!(received[0].auth.as_deref(), Some("old"));
    assert_eq!(received[1].mail_from, "<>");
    assert!(String::from_utf8_lossy(&received[1].data).contains("unknown@remote.test"));
}

#[tokio::test]
async fn unreachable_first_mx_falls_back_to_the_next_over_ipv6() {
    if !have("dnsmasq") {
        return;
    }
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        assert!(!in_ci(), "IPv6 loopback is required under CI=true");
        eprintln!("skipping: no IPv6 loopback");
        return;
    }
    let (_dns, dns_addr) = start_dns_with(&[
        "--mx-host=fallback.test,dead.fallback.test,5",
        "--mx-host=fallback.test,v6.fallback.test,10",
        "--address=/dead.fallback.test/127.0.0.2",
        "--address=/v6.fallback.test/::1",
    ]);
    // Nothing listens on 127.0.0.2 at this port: the preferred MX refuses connections.
    let (mx, port) = start_mx_on("[::1]:0", ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("dave@fallback.test")], MSG, "<t1>").await.unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpts, ["dave@fallback.test"]);
}

#[tokio::test]
async fn null_mx_bounces_at_once() {
    if !have("dnsmasq") {
        return;
    }
    let (_dns, dns_addr) = start_dns();
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client_settings(Some(dns_addr), port));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    queue.enqueue(Some(&a("alice@here.test")), &[a("eve@nomail.test")], MSG, "<t1>").await.unwrap();
    wait_empty(&queue, 20).await;
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "only the DSN reaches a server: {received:#?}");
    assert_eq!(received[0].rcpts, ["alice@here.test"]);
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains("Final-Recipient: rfc822; eve@nomail.test"), "{text}");
    assert!(text.contains("Status: 5.1.10"), "{text}");
}
