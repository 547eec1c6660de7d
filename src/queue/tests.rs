//! Queue behaviour with a scripted transport: retries, bounces, expiry, restart, and the
//! operator's commands, without sockets or DNS.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// Answers per recipient from a script (default: delivered) and records every batch.
#[derive(Default)]
struct ScriptedTransport {
    script: Mutex<HashMap<String, VecDeque<RecipientOutcome>>>,
    seen: Mutex<Vec<DeliveryBatch>>,
}

impl ScriptedTransport {
    fn answer(&self, rcpt: &str, outcomes: &[RecipientOutcome]) {
        self.script.lock().unwrap().entry(rcpt.to_string()).or_default().extend(outcomes.iter().cloned());
    }
    fn batches(&self) -> Vec<DeliveryBatch> {
        self.seen.lock().unwrap().clone()
    }
    fn to(&self, rcpt: &str) -> Vec<DeliveryBatch> {
        self.batches().into_iter().filter(|b| b.recipients.iter().any(|r| r.to_string() == rcpt)).collect()
    }
}

impl Transport for ScriptedTransport {
    fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, BatchOutcome> {
        Box::pin(async move {
            let out = batch
                .recipients
                .iter()
                .map(|r| {
                    self.script
                        .lock()
                        .unwrap()
                        .get_mut(&r.to_string())
                        .and_then(VecDeque::pop_front)
                        .unwrap_or_else(|| RecipientOutcome::Delivered(Status::new(250, (2, 0, 0), "ok")))
                })
                .collect::<Vec<_>>();
            self.seen.lock().unwrap().push(batch);
            out.into()
        })
    }
}

fn settings() -> QueueSettings {
    QueueSettings {
        hostname: "mx.here.test".into(),
        lifetime: Duration::from_secs(30),
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        delay_warning: None,
        max_concurrency: 8,
        per_domain_concurrency: 2,
    }
}

fn a(s: &str) -> Address {
    Address::parse(s).unwrap()
}

const MSG: &[u8] = b"From: alice@here.test\r\nSubject: hi\r\nMessage-ID: <m1@here.test>\r\n\r\nhello\r\n";

struct Harness {
    _dir: tempfile::TempDir,
    queue: Queue,
    transport: Arc<ScriptedTransport>,
    stop: tokio::sync::watch::Sender<bool>,
    workers: tokio::task::JoinHandle<()>,
}

fn start(settings: QueueSettings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let transport = Arc::new(ScriptedTransport::default());
    let queue = Queue::open(dir.path(), settings, transport.clone(), Arc::new(RemoteBounces)).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let workers = queue.spawn_workers(rx);
    Harness { _dir: dir, queue, transport, stop, workers }
}

async fn wait_until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn delivered_item_is_removed_from_disk() {
    let h = start(settings());
    let id =
        h.queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<m1@here.test>").await.unwrap();
    wait_until("empty queue", async || h.queue.list().await.is_empty()).await;
    assert_eq!(h.transport.to("bob@remote.test").len(), 1);
    assert_eq!(h.transport.batches()[0].message.as_slice(), MSG);
    assert!(!h._dir.path().join(format!("{id}.env")).exists());
    assert!(!h._dir.path().join(format!("{id}.msg")).exists());
    let metrics = String::from_utf8(crate::metrics::metrics().render()).unwrap();
    assert!(metrics.contains("mailroom_queue_deliveries_total{result=\"delivered\"}"), "{metrics}");
    assert!(metrics.contains("mailroom_queue_items{state=\"deferred\"}"), "{metrics}");
    assert!(metrics.contains("mailroom_queue_oldest_item_age_seconds"), "{metrics}");
}

/// REQUIRETLS is kept with the item, reaches the transport, and a bounce of such a
/// message is REQUIRETLS too (RFC 8689 section 5); other items are not.
#[tokio::test]
async fn requiretls_travels_with_the_item_and_its_dsn() {
    let h = start(settings());
    let why = Status::local((5, 7, 30), "REQUIRETLS: no way there");
    h.transport.answer("bob@remote.test", &[RecipientOutcome::Permanent(why)]);
    let parts = vec![bytes::Bytes::from_static(MSG)];
    let options = ItemOptions { require_tls: true };
    h.queue.enqueue_with(Some(&a("alice@remote.test")), &[a("bob@remote.test")], parts, "<m1>", options).await.unwrap();
    h.queue.enqueue(Some(&a("alice@remote.test")), &[a("carol@remote.test")], MSG, "<m2>").await.unwrap();
    wait_until("the DSN sent", async || !h.transport.to("alice@remote.test").is_empty()).await;
    assert!(h.transport.to("bob@remote.test")[0].require_tls);
    assert!(!h.transport.to("carol@remote.test")[0].require_tls);
    let dsn = &h.transport.to("alice@remote.test")[0];
    assert!(dsn.require_tls && dsn.sender.is_none());
    assert!(String::from_utf8_lossy(&dsn.message).contains("5.7.30"));
}

#[tokio::test]
async fn temporary_failure_is_retried_then_delivered() {
    let h = start(settings());
    h.transport.answer("bob@remote.test", &[RecipientOutcome::Temporary(Status::new(451, (4, 7, 1), "greylisted"))]);
    let id = h.queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<m1>").await.unwrap();
    wait_until("a deferred state", async || {
        h.queue.show(&id).await.is_some_and(|d| d.envelope.state == ItemState::Deferred)
    })
    .await;
    let detail = h.queue.show(&id).await.unwrap();
    assert_eq!(detail.envelope.attempts, 1);
    assert_eq!(detail.envelope.recipients[0].last_reply.as_deref(), Some("451 4.7.1 greylisted"));
    wait_until("empty queue", async || h.queue.list().await.is_empty()).await;
    assert_eq!(h.transport.to("bob@remote.test").len(), 2);
    // No DSN for a delivered message.
    assert!(h.transport.to("alice@here.test").is_empty());
}

#[tokio::test]
async fn permanent_failure_bounces_once_with_null_sender() {
    let h = start(settings());
    h.transport
        .answer("nobody@remote.test", &[RecipientOutcome::Permanent(Status::new(550, (5, 1, 1), "no such user"))]);
    h.queue
        .enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test"), a("nobody@remote.test")], MSG, "<m1>")
        .await
        .unwrap();
    wait_until("the DSN", async || !h.transport.to("alice@here.test").is_empty()).await;
    wait_until("empty queue", async || h.queue.list().await.is_empty()).await;
    let first = &h.transport.to("bob@remote.test")[0];
    assert_eq!(first.recipients.len(), 2, "one batch per domain");
    let dsns = h.transport.to("alice@here.test");
    assert_eq!(dsns.len(), 1);
    assert_eq!(dsns[0].sender, None, "DSNs use the null sender");
    let text = String::from_utf8_lossy(&dsns[0].message).into_owned();
    assert!(text.contains("Final-Recipient: rfc822; nobody@remote.test"), "{text}");
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(!text.contains("Final-Recipient: rfc822; bob@remote.test"), "{text}");
}

#[tokio::test]
async fn null_sender_is_never_bounced() {
    let h = start(settings());
    h.transport
        .answer("nobody@remote.test", &[RecipientOutcome::Permanent(Status::new(550, (5, 1, 1), "no such user"))]);
    h.queue.enqueue(None, &[a("nobody@remote.test")], MSG, "<m1>").await.unwrap();
    wait_until("empty queue", async || h.queue.list().await.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.transport.batches().len(), 1);
}

#[tokio::test]
async fn expiry_bounces_with_the_last_error() {
    let mut s = settings();
    s.lifetime = Duration::from_millis(300);
    let h = start(s);
    let fail = RecipientOutcome::Temporary(Status::new(421, (4, 4, 2), "try later"));
    h.transport.answer("bob@remote.test", &vec![fail; 100]);
    h.queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<m1>").await.unwrap();
    wait_until("the DSN", async || !h.transport.to("alice@here.test").is_empty()).await;
    wait_until("empty queue", async || h.queue.list().await.is_empty()).await;
    let text = String::from_utf8_lossy(&h.transport.to("alice@here.test")[0].message).into_owned();
    assert!(text.contains("Status: 5.4.7"), "{text}");
    assert!(text.contains("421 4.4.2 try later"), "{text}");
    assert!(h.transport.to("bob@remote.test").len() >= 2);
}

#[tokio::test]
async fn delay_warning_is_sent_once() {
    let mut s = settings();
    s.delay_warning = Some(Duration::from_millis(100));
    let h = start(s);
    let fail = RecipientOutcome::Temporary(Status::new(451, (4, 3, 0), "later"));
    h.transport.answer("bob@remote.test", &vec![fail; 8]);
    h.queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<m1>").await.unwrap();
    wait_until("empty queue", async || h.queue.list().await.is_empty()).await;
    let warnings = h.transport.to("alice@here.test");
    assert_eq!(warnings.len(), 1, "exactly one delay warning");
    assert!(String::from_utf8_lossy(&warnings[0].message).contains("Action: delayed"));
}

#[tokio::test]
async fn restart_with_a_full_queue_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let transport = Arc::new(ScriptedTransport::default());
    {
        let queue = Queue::open(dir.path(), settings(), transport.clone(), Arc::new(RemoteBounces)).unwrap();
        for i in 0..5 {
            queue.enqueue(Some(&a("alice@here.test")), &[a(&format!("r{i}@remote.test"))], MSG, "<m>").await.unwrap();
        }
        // Dropped without ever running workers: a crash before any delivery.
    }
    assert!(transport.batches().is_empty());
    let queue = Queue::open(dir.path(), settings(), transport.clone(), Arc::new(RemoteBounces)).unwrap();
    assert_eq!(queue.list().await.len(), 5);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _workers = queue.spawn_workers(rx);
    wait_until("empty queue", async || queue.list().await.is_empty()).await;
    assert_eq!(transport.batches().len(), 5);
}

#[tokio::test]
async fn operator_commands_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let transport = Arc::new(ScriptedTransport::default());
    let queue = Queue::open(&dir.path().join("queue"), settings(), transport.clone(), Arc::new(RemoteBounces)).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = spawn_control_server(queue.clone(), Default::default(), dir.path(), rx.clone()).unwrap();
    let sock = dir.path().join(CONTROL_SOCKET);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);

    let id = queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<m1>").await.unwrap();
    let list = control_request(dir.path(), "list").await.unwrap();
    assert!(list.contains(id.as_str()) && list.contains("1 item(s)"), "{list}");
    assert_eq!(control_request(dir.path(), &format!("hold {id}")).await.unwrap(), format!("{id} held\n"));
    let show = control_request(dir.path(), &format!("show {id}")).await.unwrap();
    assert!(show.contains("state: hold") && show.contains("recipient: bob@remote.test pending"), "{show}");

    // Held items are not delivered even when workers run and retry is asked.
    let _workers = queue.spawn_workers(rx);
    control_request(dir.path(), "retry").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(transport.batches().is_empty());
    // The state is on disk too.
    let env = std::fs::read_to_string(dir.path().join("queue").join(format!("{id}.env"))).unwrap();
    assert!(env.contains("\"state\": \"hold\""), "{env}");

    control_request(dir.path(), &format!("release {id}")).await.unwrap();
    wait_until("empty queue", async || queue.list().await.is_empty()).await;

    let err = control_request(dir.path(), "show ../../etc/passwd").await.unwrap_err();
    assert!(err.to_string().contains("is not a queue id"), "{err}");
    let err = control_request(dir.path(), "delete 0123").await.unwrap_err();
    assert!(err.to_string().contains("no queue item"), "{err}");
    let err = control_request(dir.path(), "frobnicate").await.unwrap_err();
    assert!(err.to_string().contains("unknown command"), "{err}");

    stop.send(true).unwrap();
    server.await.unwrap();
    assert!(!sock.exists());
}

#[tokio::test]
async fn delete_removes_without_bounce() {
    let h = start(settings());
    let id = {
        h.queue.hold(&QueueId::generate()).await.unwrap_err();
        let id = h.queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<m1>").await.unwrap();
        h.queue.hold(&id).await.unwrap_or(());
        id
    };
    h.queue.delete(&id).await.unwrap();
    wait_until("empty queue", async || h.queue.list().await.is_empty()).await;
    assert!(h.transport.to("alice@here.test").is_empty());
    h.stop.send(true).unwrap();
    h.workers.await.unwrap();
}

#[tokio::test]
async fn empty_recipient_list_is_refused() {
    let h = start(settings());
    assert!(matches!(h.queue.enqueue(None, &[], MSG, "").await, Err(QueueError::NoRecipients)));
}

/// `queue list` shows, like Postfix's mailq, each pending recipient under its item with
/// its last reply; delivered ones are not listed.
#[tokio::test]
async fn list_shows_pending_recipients_with_their_last_reply() {
    let mut s = settings();
    (s.lifetime, s.retry_min, s.retry_max) =
        (Duration::from_secs(7200), Duration::from_secs(3600), Duration::from_secs(3600));
    let h = start(s);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = spawn_control_server(h.queue.clone(), Default::default(), h._dir.path(), rx).unwrap();
    h.transport
        .answer("bob@remote.test", &[RecipientOutcome::Temporary(Status::new(451, (4, 4, 1), "connection refused"))]);
    let rcpts = [a("bob@remote.test"), a("carol@remote.test"), a("dave@other.test")];
    let id = h.queue.enqueue(Some(&a("alice@here.test")), &rcpts, MSG, "<m1>").await.unwrap();
    wait_until("a deferred state", async || {
        h.queue.show(&id).await.is_some_and(|d| d.envelope.state == ItemState::Deferred)
    })
    .await;
    let list = control_request(h._dir.path(), "list").await.unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(lines[1].starts_with(id.as_str()) && lines[1].contains(" 1/3 "), "{list}");
    assert_eq!(lines[2], "    bob@remote.test (451 4.4.1 connection refused)");
    assert_eq!(lines[3], "1 item(s)");
    stop.send(true).unwrap();
    server.await.unwrap();
}

/// `import`: the request and the password line reach the command, its lines stream back
/// and the reply ends with `.`.
#[tokio::test]
async fn import_requests_stream_their_lines() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(
        &dir.path().join("queue"),
        settings(),
        Arc::new(ScriptedTransport::default()),
        Arc::new(RemoteBounces),
    )
    .unwrap();
    let import: ImportCommand = Arc::new(|request: &str, password: String| {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let first = format!("request {request}");
        tokio::spawn(async move {
            for line in [first, format!("password {password}"), "last".to_string()] {
                tx.send(line).await.unwrap();
            }
        });
        rx
    });
    let commands = ControlCommands { import: Some(import), ..Default::default() };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = spawn_control_server(queue, commands, dir.path(), rx).unwrap();
    let stream = control_connect(dir.path(), "import {\"a\": 1}\n s3cret \r\n").await.unwrap();
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let mut got = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        got.push(line);
    }
    assert_eq!(got, ["request {\"a\": 1}", "password  s3cret ", "last", "."]);
    stop.send(true).unwrap();
    server.await.unwrap();
}
