//! Submission and remote copies over real sockets: the SASL exchange (challenges,
//! cancel, bad base64), the `From:` check at end of DATA, added headers, and port 25
//! handing relayed and forwarded copies to the queue (with a transport that never
//! delivers, so the item stays inspectable).

use std::sync::Arc;
use std::time::Duration;

use super::tests::{Options, queued, start, upgrade};
use super::*;
use crate::queue::{
    BatchOutcome, BoxFuture, DeliveryBatch, Queue, QueueSettings, RecipientOutcome, RemoteBounces, Transport,
};

/// A transport whose remote end is always busy.
struct Busy;

impl Transport for Busy {
    fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, BatchOutcome> {
        let n = batch.recipients.len();
        Box::pin(async move { vec![RecipientOutcome::Temporary(Status::new(421, (4, 3, 2), "busy")); n].into() })
    }
}

fn queue(dir: &std::path::Path) -> Queue {
    let settings = QueueSettings {
        hostname: "mx.ours.example".into(),
        lifetime: Duration::from_secs(3600),
        retry_min: Duration::from_secs(600),
        retry_max: Duration::from_secs(600),
        delay_warning: None,
        max_concurrency: 1,
        per_domain_concurrency: 1,
    };
    Queue::open(&dir.join("queue"), settings, Arc::new(Busy), Arc::new(RemoteBounces))
        .unwrap_or_else(|e| panic!("queue: {e}"))
}

#[tokio::test]
async fn auth_exchanges_and_from_header_check() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let q = queue(tmp.path());
    let h = start(Options { mode: SmtpMode::Submission, queue: Some(q.clone()), ..Options::default() }).await;
    let mut c = h.connect().await;
    let ehlo = c.cmd("EHLO laptop").await;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
    c.expect("AUTH LOGIN", "538 5.7.11 Error: must issue a STARTTLS command first").await;
    let mut c = upgrade(&h, c).await;
    let ehlo = c.cmd("EHLO laptop").await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\n250-AUTH=PLAIN LOGIN"), "{ehlo}");
    // LOGIN: the client cancels at the password prompt.
    c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    c.expect("YWxpY2U=", "334 UGFzc3dvcmQ6").await;
    c.expect("*", "501 5.0.0 Authentication cancelled").await;
    // PLAIN without an initial response: an empty challenge, then garbage.
    c.expect("AUTH PLAIN", "334 ").await;
    c.expect("not base64!", "501 5.5.2 Error: cannot decode response").await;
    // LOGIN with the user name as initial response, then the right password.
    c.expect("AUTH LOGIN YWxpY2U=", "334 UGFzc3dvcmQ6").await;
    c.expect("cHc=", "235 2.7.0 Authentication successful").await;
    c.expect("AUTH PLAIN AGFsaWNlAHB3", "503 5.5.1 Error: already authenticated").await;
    // A foreign From: header is refused after the content.
    c.expect("MAIL FROM:<alice@ours.example>", "250 2.1.0 Ok").await;
    c.expect("RCPT TO:<bob@ours.example>", "250 2.1.5 Ok").await;
    c.expect("DATA", "354 End data with <CR><LF>.<CR><LF>").await;
    c.send(b"From: ceo@bank.example\r\nSubject: pay\r\n\r\nnow\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("553 5.7.1 <ceo@bank.example>"), "{r}");
    // The team alias delivers to alice: she may send as it. A remote copy is queued.
    c.expect("MAIL FROM:<team@ours.example>", "250 2.1.0 Ok").await;
    c.expect("RCPT TO:<bob@ours.example>", "250 2.1.5 Ok").await;
    c.expect("RCPT TO:<friend@remote.example>", "250 2.1.5 Ok").await;
    c.expect("DATA", "354 End data with <CR><LF>.<CR><LF>").await;
    c.send(b"From: Team <team@ours.example>\r\nSubject: hello\r\n\r\nhi\r\n.\r\n").await;
    assert!(queued(&c.reply().await));
    let m = &h.messages("bob")[0];
    assert!(m.contains("with ESMTPSA id"), "{m}");
    assert!(m.contains("\r\nMessage-ID: <") && m.contains("@mx.ours.example>\r\n"), "{m}");
    assert!(m.contains("\r\nDate: "), "{m}");
    let items = q.list().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].recipients, 1, "only the remote recipient is queued");
}

#[tokio::test]
async fn port_25_queues_relay_for_trusted_and_remote_alias_targets() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let q = queue(tmp.path());
    let trusted = vec!["127.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))];
    let h = start(Options { trusted, queue: Some(q.clone()), ..Options::default() }).await;
    let mut c = h.connect().await;
    c.cmd("EHLO app").await;
    c.expect("AUTH PLAIN AGFsaWNlAHB3", "503 5.5.1 Error: authentication not enabled").await;
    c.expect("MAIL FROM:<app@remote.example>", "250 2.1.0 Ok").await;
    c.expect("RCPT TO:<someone@elsewhere.example>", "250 2.1.5 Ok").await;
    c.expect("RCPT TO:<fwd@ours.example>", "250 2.1.5 Ok").await;
    c.expect("DATA", "354 End data with <CR><LF>.<CR><LF>").await;
    c.send(b"Subject: report\r\n\r\nok\r\n.\r\n").await;
    assert!(queued(&c.reply().await));
    let items = q.list().await;
    assert_eq!(items.len(), 1, "one item for every remote copy");
    assert_eq!(items[0].recipients, 2);
    let detail = q.show(&items[0].id).await.unwrap_or_else(|| panic!("item"));
    assert_eq!(detail.envelope.sender.map(|a| a.to_string()), Some("app@remote.example".into()));
}

#[tokio::test]
async fn untrusted_port_25_clients_still_cannot_relay() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let h = start(Options { queue: Some(queue(tmp.path())), ..Options::default() }).await;
    let mut c = h.connect().await;
    c.cmd("EHLO spammer").await;
    c.expect("MAIL FROM:<x@remote.example>", "250 2.1.0 Ok").await;
    c.expect("RCPT TO:<victim@elsewhere.example>", "554 5.7.1 <victim@elsewhere.example>: Relay access denied").await;
}
