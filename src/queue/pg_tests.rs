//! The shared queue with two replicas: two `PgStore` connections (two pools) on one
//! database, each with its own `Queue`, as two server processes would have. Skipped
//! where PostgreSQL is not installed (never under CI, see `test_pg`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::queue::backend::Backend;
use crate::queue::control;
use crate::queue::envelope::RecipientStatus;
use crate::queue::{
    BatchOutcome, BoxFuture, DeliveryBatch, Queue, QueueError, QueueSettings, RecipientOutcome, RemoteBounces,
    Transport,
};
use crate::smtp::status::Status;
use crate::store::PgStore;

/// Delivers everything after `delay`, counting deliveries per queue item.
#[derive(Default)]
struct Counting {
    delay: Duration,
    seen: Mutex<Vec<DeliveryBatch>>,
}

impl Counting {
    fn slow(delay: Duration) -> Arc<Counting> {
        Arc::new(Counting { delay, seen: Mutex::default() })
    }
    fn count(&self, id: &QueueId) -> usize {
        self.seen.lock().unwrap().iter().filter(|b| &b.queue_id == id).count()
    }
    fn total(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Transport for Counting {
    fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, BatchOutcome> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            let n = batch.recipients.len();
            self.seen.lock().unwrap().push(batch);
            vec![RecipientOutcome::Delivered(Status::new(250, (2, 0, 0), "ok")); n].into()
        })
    }
}

fn settings() -> QueueSettings {
    QueueSettings {
        hostname: "mx.here.test".into(),
        lifetime: Duration::from_secs(3600),
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        delay_warning: None,
        max_concurrency: 8,
        per_domain_concurrency: 2,
    }
}

fn options(name: &str, lease: Duration, poll: Duration) -> PgQueueOptions {
    PgQueueOptions { replica: name.to_string(), lease, poll }
}

fn a(s: &str) -> Address {
    Address::parse(s).unwrap()
}

const MSG: &[u8] = b"From: alice@here.test\r\nSubject: hi\r\nMessage-ID: <m1@here.test>\r\n\r\nhello\r\n";

/// One replica: its own pool, its own queue.
struct Replica {
    store: PgStore,
    queue: Queue,
    transport: Arc<Counting>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Replica {
    async fn open(url: &str, opts: PgQueueOptions, transport: Arc<Counting>) -> Replica {
        let store = PgStore::connect(url, None).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let queue = Queue::open_pg(&store, opts, settings(), transport.clone(), Arc::new(RemoteBounces)).await.unwrap();
        let (stop, _) = tokio::sync::watch::channel(false);
        Replica { store, queue, transport, stop }
    }

    fn run_workers(&self) -> tokio::task::JoinHandle<()> {
        self.queue.spawn_workers(self.stop.subscribe())
    }

    fn pg(&self) -> &PgBackend {
        match &self.queue.inner.backend {
            Backend::Pg(p) => p,
            Backend::Files(_) => unreachable!("a PostgreSQL replica"),
        }
    }

    async fn scalar(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.store.pool()).await.unwrap()
    }

    async fn enqueue(&self, rcpt: &str) -> QueueId {
        self.queue.enqueue(Some(&a("alice@here.test")), &[a(rcpt)], MSG, "<m1@here.test>").await.unwrap()
    }
}

async fn database() -> Option<String> {
    tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap()
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

const SHORT: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_item_exactly_once() {
    let Some(url) = database().await else { return };
    let ra = Replica::open(&url, options("a", Duration::from_secs(60), SHORT), Counting::slow(SHORT / 4)).await;
    let rb = Replica::open(&url, options("b", Duration::from_secs(60), SHORT), Counting::slow(SHORT / 4)).await;
    let (_wa, _wb) = (ra.run_workers(), rb.run_workers());
    let mut ids = Vec::new();
    for i in 0..30 {
        let from = if i % 3 == 0 { &rb } else { &ra };
        ids.push(from.enqueue(&format!("r{i}@remote{}.test", i % 4)).await);
    }
    wait_until("an empty queue", async || ra.queue.list().await.is_empty()).await;
    // Attempts that lost a race would show up late: give them the time to.
    tokio::time::sleep(SHORT).await;
    for id in &ids {
        assert_eq!(ra.transport.count(id) + rb.transport.count(id), 1, "{id}");
    }
    assert_eq!(ra.transport.total() + rb.transport.total(), ids.len());
    eprintln!("delivered by A: {}, by B: {}", ra.transport.total(), rb.transport.total());
    assert_eq!(ra.scalar("SELECT count(*) FROM queue_items").await, 0);
    assert_eq!(ra.scalar("SELECT count(*) FROM blobs").await, 0, "the last reference deletes the bytes");
}

/// REQUIRETLS lives in the shared envelope: another replica delivers the item with it.
#[tokio::test]
async fn requiretls_is_kept_for_another_replica() {
    let Some(url) = database().await else { return };
    let ra = Replica::open(&url, options("a", Duration::from_secs(60), SHORT), Counting::slow(Duration::ZERO)).await;
    let rb = Replica::open(&url, options("b", Duration::from_secs(60), SHORT), Counting::slow(Duration::ZERO)).await;
    let parts = vec![Bytes::from_static(MSG)];
    let options = super::ItemOptions { require_tls: true };
    let id = ra.queue.enqueue_with(None, &[a("bob@remote.test")], parts, "<rt@here.test>", options).await.unwrap();
    assert!(rb.queue.show(&id).await.unwrap().envelope.require_tls);
    let _w = rb.run_workers();
    wait_until("the delivery", async || rb.transport.total() == 1).await;
    assert!(rb.transport.seen.lock().unwrap()[0].require_tls);
}

#[tokio::test]
async fn a_large_message_is_stored_in_chunks_and_read_back_whole() {
    let Some(url) = database().await else { return };
    let ra = Replica::open(&url, options("a", Duration::from_secs(60), SHORT), Counting::slow(Duration::ZERO)).await;
    let body: Vec<u8> = (0..(5 << 19) + 17).map(|i| (i % 251) as u8).collect();
    let parts = vec![Bytes::from_static(b"Received: by mx.here.test\r\n"), Bytes::from(body.clone())];
    let whole = [parts[0].as_ref(), parts[1].as_ref()].concat();
    let id = ra.queue.enqueue_parts(None, &[a("bob@remote.test")], parts, "<big@here.test>").await.unwrap();
    assert_eq!(ra.scalar("SELECT count(*) FROM blob_chunks").await, 3, "1 MiB chunks across the part boundary");
    assert_eq!(ra.scalar("SELECT refcount FROM blobs").await, 1, "the queue row counts as a reference");
    assert_eq!(ra.queue.show(&id).await.unwrap().size, whole.len() as u64);
    let _w = ra.run_workers();
    wait_until("the delivery", async || ra.transport.total() == 1).await;
    assert!(ra.transport.seen.lock().unwrap()[0].message.as_slice() == whole.as_slice());
    wait_until("an empty queue", async || ra.queue.list().await.is_empty()).await;
    assert_eq!(ra.scalar("SELECT count(*) FROM blobs").await, 0);
}

/// A replica that claimed an item and died (never renewed, never wrote back): nobody
/// touches the item until its lease runs out, then another replica delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_item_is_retried_after_its_lease() {
    let Some(url) = database().await else { return };
    let lease = Duration::from_millis(1500);
    let ra = Replica::open(&url, options("a", lease, SHORT), Counting::slow(Duration::ZERO)).await;
    let rb = Replica::open(&url, options("b", lease, SHORT), Counting::slow(Duration::ZERO)).await;
    let id = ra.enqueue("bob@remote.test").await;
    // Taken before the claim: the lease runs from the database's clock at the claim, which
    // is no earlier than this.
    let claimed_at = Instant::now();
    let (claimed, _) = ra.pg().claim_due(SystemTime::now(), 10).await;
    assert_eq!(claimed.len(), 1);
    drop(claimed); // A dies here.
    let _wb = rb.run_workers();
    tokio::time::sleep(lease / 2).await;
    assert_eq!(rb.transport.total(), 0, "B must not try an item A still holds");
    let detail = rb.queue.show(&id).await.unwrap();
    assert!(detail.in_flight, "{detail:?}");
    assert!(control::execute(&rb.queue, "list").await.contains("sending"));
    wait_until("B's delivery", async || rb.transport.count(&id) == 1).await;
    assert!(claimed_at.elapsed() >= lease);
    wait_until("an empty queue", async || rb.queue.list().await.is_empty()).await;
    assert_eq!(ra.transport.total(), 0);
}

/// An attempt longer than the lease keeps its claim: the lease is renewed while it runs,
/// so no other replica tries the item meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_outlives_a_long_attempt() {
    let Some(url) = database().await else { return };
    let lease = Duration::from_secs(1);
    let ra = Replica::open(&url, options("a", lease, SHORT), Counting::slow(lease * 5 / 2)).await;
    let rb = Replica::open(&url, options("b", lease, SHORT), Counting::slow(Duration::ZERO)).await;
    let _wa = ra.run_workers();
    let id = ra.enqueue("bob@remote.test").await;
    wait_until("A's attempt", async || rb.queue.show(&id).await.is_some_and(|d| d.in_flight)).await;
    let _wb = rb.run_workers();
    wait_until("an empty queue", async || rb.queue.list().await.is_empty()).await;
    assert_eq!((ra.transport.count(&id), rb.transport.count(&id)), (1, 0));
}

/// The late write-back of a replica whose lease ran out (and was taken over) changes
/// nothing: neither an update nor a removal, nor a renewal.
#[tokio::test]
async fn a_stale_write_back_is_fenced_out() {
    let Some(url) = database().await else { return };
    let lease = Duration::from_millis(300);
    let ra = Replica::open(&url, options("a", lease, SHORT), Counting::slow(Duration::ZERO)).await;
    let rb = Replica::open(&url, options("b", Duration::from_secs(60), SHORT), Counting::slow(Duration::ZERO)).await;
    let id = ra.enqueue("bob@remote.test").await;
    let (mut old, _) = ra.pg().claim_due(SystemTime::now(), 10).await;
    let old = old.pop().unwrap();
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let (mut new, _) = rb.pg().claim_due(SystemTime::now(), 10).await;
    let new = new.pop().expect("B takes the item over once A's lease ran out");
    let (Lease::Pg(old_lease), Lease::Pg(new_lease)) = (&old.lease, &new.lease) else { unreachable!() };
    assert_eq!(new_lease.token, old_lease.token + 1);

    // A, late: a renewal, an update and a removal, all with the old token.
    assert!(!renew(ra.store.pool(), &ra.pg().options, &id, old_lease.token).await.unwrap());
    let mut stale = old.envelope.clone();
    stale.attempts = 99;
    stale.next_attempt = SystemTime::now() + Duration::from_secs(7200);
    assert_eq!(ra.queue.inner.backend.finish(&old, stale.clone()).await.unwrap(), Finished::Gone);
    for r in &mut stale.recipients {
        r.status = RecipientStatus::Delivered;
    }
    assert_eq!(ra.queue.inner.backend.finish(&old, stale).await.unwrap(), Finished::Gone);
    let detail = rb.queue.show(&id).await.expect("A's removal was fenced out");
    assert_eq!(detail.envelope.attempts, 0);
    assert!(detail.in_flight, "B's lease stands");
    let owner: Option<String> =
        sqlx::query_scalar("SELECT lease_owner FROM queue_items").fetch_one(rb.store.pool()).await.unwrap();
    assert_eq!(owner.as_deref(), Some("b"));

    // B, current: its write-back counts and ends the lease.
    let mut fresh = new.envelope.clone();
    fresh.attempts = 1;
    fresh.state = ItemState::Deferred;
    assert_eq!(rb.queue.inner.backend.finish(&new, fresh).await.unwrap(), Finished::Updated);
    let detail = ra.queue.show(&id).await.unwrap();
    assert_eq!((detail.envelope.attempts, detail.envelope.state, detail.in_flight), (1, ItemState::Deferred, false));
}

/// `mailroom queue …` on one replica steers items another replica enqueued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_work_from_any_replica() {
    let Some(url) = database().await else { return };
    let ra = Replica::open(&url, options("a", Duration::from_secs(60), SHORT), Counting::slow(Duration::ZERO)).await;
    let rb = Replica::open(&url, options("b", Duration::from_secs(60), SHORT), Counting::slow(Duration::ZERO)).await;
    let id = ra.enqueue("bob@remote.test").await;
    rb.queue.hold(&id).await.unwrap();
    let workers = rb.run_workers();
    assert_eq!(rb.queue.retry(Some(&id)).await.unwrap(), 0, "a held item is not retried");
    let list = control::execute(&rb.queue, "list").await;
    assert!(list.contains(id.as_str()) && list.contains("hold") && list.contains("1 item(s)"), "{list}");
    let show = control::execute(&rb.queue, &format!("show {id}")).await;
    assert!(show.contains("state: hold") && show.contains("recipient: bob@remote.test pending"), "{show}");
    tokio::time::sleep(SHORT * 2).await;
    assert_eq!(rb.transport.total(), 0, "held items are not delivered");
    assert_eq!(ra.queue.show(&id).await.unwrap().envelope.state, ItemState::Hold);

    assert_eq!(control::execute(&rb.queue, &format!("release {id}")).await, format!("{id} released"));
    wait_until("the delivery", async || rb.transport.count(&id) == 1).await;
    wait_until("an empty queue", async || ra.queue.list().await.is_empty()).await;

    // Retry: an item deferred for an hour is due at once.
    rb.stop.send_replace(true);
    workers.await.unwrap();
    let later = ra.enqueue("carol@remote.test").await;
    sqlx::query("UPDATE queue_items SET next_attempt = now() + interval '1 hour'")
        .execute(ra.store.pool())
        .await
        .unwrap();
    rb.stop.send_replace(false);
    let workers = rb.run_workers();
    tokio::time::sleep(SHORT * 2).await;
    assert_eq!(rb.transport.count(&later), 0);
    assert_eq!(rb.queue.retry(None).await.unwrap(), 1);
    wait_until("the retried delivery", async || rb.transport.count(&later) == 1).await;

    // Delete: gone everywhere, bytes too, never delivered.
    rb.stop.send_replace(true);
    workers.await.unwrap();
    let gone = ra.enqueue("dave@remote.test").await;
    assert_eq!(control::execute(&rb.queue, &format!("delete {gone}")).await, format!("{gone} deleted"));
    assert!(ra.queue.show(&gone).await.is_none());
    assert!(matches!(rb.queue.delete(&gone).await, Err(QueueError::NotFound(_))));
    assert!(matches!(rb.queue.hold(&gone).await, Err(QueueError::NotFound(_))));
    assert!(matches!(rb.queue.release(&gone).await, Err(QueueError::NotFound(_))));
    assert!(matches!(rb.queue.retry(Some(&gone)).await, Err(QueueError::NotFound(_))));
    assert!(control::execute(&rb.queue, &format!("show {gone}")).await.starts_with("error: no queue item"));
    wait_until("an empty queue", async || ra.queue.list().await.is_empty()).await;
    assert_eq!(ra.scalar("SELECT count(*) FROM blobs").await, 0);
    assert_eq!(rb.transport.count(&gone), 0);
}

/// An enqueue on one replica wakes the others at once (NOTIFY), not at their next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_wakes_the_other_replicas() {
    let Some(url) = database().await else { return };
    let slow_poll = Duration::from_secs(60);
    let ra =
        Replica::open(&url, options("a", Duration::from_secs(60), slow_poll), Counting::slow(Duration::ZERO)).await;
    let rb =
        Replica::open(&url, options("b", Duration::from_secs(60), slow_poll), Counting::slow(Duration::ZERO)).await;
    let _wb = rb.run_workers();
    // B's listener connects in the background: wait until its LISTEN ran.
    wait_until("B's LISTEN", async || {
        ra.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%mailroom_queue%'")
            .await
            == 1
    })
    .await;
    let started = Instant::now();
    let id = ra.enqueue("bob@remote.test").await;
    wait_until("B's delivery", async || rb.transport.count(&id) == 1).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_database_without_the_queue_schema_is_refused() {
    let Some(url) = database().await else { return };
    let store = PgStore::connect_only(&url, None).await.unwrap();
    let opened = Queue::open_pg(
        &store,
        PgQueueOptions::new(),
        settings(),
        Counting::slow(Duration::ZERO),
        Arc::new(RemoteBounces),
    )
    .await;
    assert!(matches!(opened, Err(QueueError::Database(_))));
}

/// Defers one recipient with a fixed reply, delivers the others.
struct Deferring(&'static str);

impl Transport for Deferring {
    fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, BatchOutcome> {
        Box::pin(async move {
            let refused = Status::new(451, (4, 4, 1), "connection refused");
            let ok = Status::new(250, (2, 0, 0), "ok");
            let outcome = |r: &Address| {
                if r.to_string() == self.0 {
                    RecipientOutcome::Temporary(refused.clone())
                } else {
                    RecipientOutcome::Delivered(ok.clone())
                }
            };
            batch.recipients.iter().map(outcome).collect::<Vec<_>>().into()
        })
    }
}

/// `queue list` on the shared queue shows each pending recipient with its last reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_pending_recipients_with_their_last_reply() {
    let Some(url) = database().await else { return };
    let store = PgStore::connect(&url, None).await.unwrap();
    let mut s = settings();
    (s.retry_min, s.retry_max) = (Duration::from_secs(3600), Duration::from_secs(3600));
    let transport = Arc::new(Deferring("bob@remote.test"));
    let queue =
        Queue::open_pg(&store, options("a", Duration::from_secs(60), SHORT), s, transport, Arc::new(RemoteBounces))
            .await
            .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let workers = queue.spawn_workers(rx);
    let rcpts = [a("bob@remote.test"), a("carol@remote.test")];
    let id = queue.enqueue(Some(&a("alice@here.test")), &rcpts, MSG, "<m1>").await.unwrap();
    let other = queue.enqueue(Some(&a("alice@here.test")), &[a("bob@remote.test")], MSG, "<m2>").await.unwrap();
    wait_until("both deferred", async || {
        let mut deferred = 0;
        for i in [&id, &other] {
            if queue.show(i).await.is_some_and(|d| d.envelope.attempts > 0 && !d.in_flight) {
                deferred += 1;
            }
        }
        deferred == 2
    })
    .await;
    let list = control::execute(&queue, "list").await;
    let lines: Vec<&str> = list.lines().collect();
    let (first, second) = if id < other { (&id, &other) } else { (&other, &id) };
    assert_eq!(lines.len(), 6, "{list}");
    assert!(lines[1].starts_with(first.as_str()), "{list}");
    assert_eq!(lines[2], "    bob@remote.test (451 4.4.1 connection refused)");
    assert!(lines[3].starts_with(second.as_str()), "{list}");
    assert_eq!(lines[4], "    bob@remote.test (451 4.4.1 connection refused)");
    assert_eq!(lines[5], "2 item(s)");
    assert!(list.contains(&format!("{id}")) && list.contains(" 1/2 "), "{list}");
    stop.send_replace(true);
    workers.await.unwrap();
}
