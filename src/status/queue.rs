//! The outbound queue as the admin page shows it: each item with its recipients, state,
//! last reply and next attempt (what `mailroom queue list`/`show` print), and the
//! operator's actions on one item by its id, with a typed error for an id that does not
//! name an item.

use std::time::SystemTime;

use serde::Serialize;

use crate::queue::{Queue, QueueError, QueueId, RecipientStatus};
use crate::smtp::status::Status;

/// Items listed at most: a page render must stay cheap however long the queue is (the
/// count says how many there are).
pub const MAX_ITEMS: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueView {
    /// Every item in the queue, even those not listed.
    pub total: usize,
    /// The first [`MAX_ITEMS`] items, in id order.
    pub items: Vec<QueueItemView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueItemView {
    pub id: String,
    /// `active`, `deferred`, `hold`, or `sending` while an attempt runs.
    pub state: &'static str,
    /// Empty for the null sender.
    pub sender: String,
    pub size: u64,
    pub attempts: u32,
    #[serde(serialize_with = "super::unix_secs")]
    pub created: SystemTime,
    #[serde(serialize_with = "super::unix_secs")]
    pub next_attempt: SystemTime,
    pub recipients: Vec<QueueRecipientView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueRecipientView {
    pub address: String,
    /// `pending`, `delivered`, `failed`.
    pub status: &'static str,
    /// The last reply or local diagnostic, typed when the item recorded it so.
    pub last_status: Option<Status>,
    /// The same as one line (items spooled before the typed status was kept have only this).
    pub last_reply: Option<String>,
}

/// What the operator may do to one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueAction {
    /// Make it due now.
    Retry,
    /// Keep it back until released.
    Hold,
    /// Release a held item, due now.
    Release,
    /// Remove it without a bounce.
    Delete,
}

impl QueueAction {
    /// `retry`, `hold`, `release`, `delete` (the words of `mailroom queue`).
    pub fn parse(word: &str) -> Option<QueueAction> {
        match word.to_ascii_lowercase().as_str() {
            "retry" => Some(QueueAction::Retry),
            "hold" => Some(QueueAction::Hold),
            "release" => Some(QueueAction::Release),
            "delete" => Some(QueueAction::Delete),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueActionError {
    /// Not of the form of a queue id (never reaches the file system).
    #[error("{0:?} is not a queue id")]
    BadId(String),
    /// A well-formed id that names no item (delivered, deleted, or never there).
    #[error("no queue item {0}")]
    UnknownId(String),
    #[error(transparent)]
    Queue(QueueError),
}

/// The queue's items, with their recipients (at most [`MAX_ITEMS`]).
pub async fn view(queue: &Queue) -> Result<QueueView, QueueError> {
    let mut items = Vec::new();
    let mut total = 0usize;
    queue
        .visit_items(&mut |summary, envelope| {
            total += 1;
            if items.len() >= MAX_ITEMS {
                return;
            }
            let recipients = envelope
                .recipients
                .iter()
                .map(|r| QueueRecipientView {
                    address: r.address.to_string(),
                    status: match r.status {
                        RecipientStatus::Pending => "pending",
                        RecipientStatus::Delivered => "delivered",
                        RecipientStatus::Failed => "failed",
                    },
                    last_status: r.last_status.clone(),
                    last_reply: r.last_reply.clone(),
                })
                .collect();
            items.push(QueueItemView {
                id: summary.id.to_string(),
                state: if summary.in_flight { "sending" } else { summary.state.name() },
                sender: summary.sender.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                size: summary.size,
                attempts: summary.attempts,
                created: summary.created,
                next_attempt: summary.next_attempt,
                recipients,
            });
        })
        .await?;
    Ok(QueueView { total, items })
}

/// Carry out `action` on the item `id`.
pub async fn act(queue: &Queue, id: &str, action: QueueAction) -> Result<(), QueueActionError> {
    let id = QueueId::parse(id).ok_or_else(|| QueueActionError::BadId(id.to_string()))?;
    let result = match action {
        QueueAction::Retry => queue.retry(Some(&id)).await.map(|_| ()),
        QueueAction::Hold => queue.hold(&id).await,
        QueueAction::Release => queue.release(&id).await,
        QueueAction::Delete => queue.delete(&id).await,
    };
    result.map_err(|e| match e {
        QueueError::NotFound(id) => QueueActionError::UnknownId(id),
        other => QueueActionError::Queue(other),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::accounts::Address;
    use crate::queue::{
        BatchOutcome, BoxFuture, DeliveryBatch, QueueSettings, RecipientOutcome, RemoteBounces, Transport,
    };

    struct Unused;
    impl Transport for Unused {
        fn deliver(&self, batch: DeliveryBatch) -> BoxFuture<'_, BatchOutcome> {
            let n = batch.recipients.len();
            Box::pin(async move { vec![RecipientOutcome::Temporary(Status::local((4, 0, 0), "unused")); n].into() })
        }
    }

    fn settings() -> QueueSettings {
        QueueSettings {
            hostname: "mx.example.org".into(),
            lifetime: std::time::Duration::from_secs(3600),
            retry_min: std::time::Duration::from_secs(60),
            retry_max: std::time::Duration::from_secs(600),
            delay_warning: None,
            max_concurrency: 1,
            per_domain_concurrency: 1,
        }
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    /// No workers run: the items stay as enqueued, and the actions change what the view shows.
    #[tokio::test]
    async fn the_view_lists_items_and_the_actions_steer_them() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), settings(), Arc::new(Unused), Arc::new(RemoteBounces)).unwrap();
        let sender = addr("alice@example.org");
        let id = queue
            .enqueue(
                Some(&sender),
                &[addr("bob@remote.test"), addr("carol@other.test")],
                b"Subject: x\r\n\r\nhi\r\n",
                "<m@x>",
            )
            .await
            .unwrap();
        let view = view(&queue).await.unwrap();
        assert_eq!(view.total, 1);
        let item = &view.items[0];
        assert_eq!(
            (item.id.as_str(), item.state, item.sender.as_str()),
            (id.to_string().as_str(), "active", "alice@example.org")
        );
        let rcpts: Vec<(&str, &str)> = item.recipients.iter().map(|r| (r.address.as_str(), r.status)).collect();
        assert_eq!(rcpts, [("bob@remote.test", "pending"), ("carol@other.test", "pending")]);

        act(&queue, &id.to_string(), QueueAction::Hold).await.unwrap();
        assert_eq!(super::view(&queue).await.unwrap().items[0].state, "hold");
        act(&queue, &id.to_string(), QueueAction::Release).await.unwrap();
        assert_eq!(super::view(&queue).await.unwrap().items[0].state, "active");
        act(&queue, &id.to_string(), QueueAction::Retry).await.unwrap();
        act(&queue, &id.to_string(), QueueAction::Delete).await.unwrap();
        assert_eq!(super::view(&queue).await.unwrap(), QueueView { total: 0, items: vec![] });

        for action in [QueueAction::Retry, QueueAction::Hold, QueueAction::Release, QueueAction::Delete] {
            let err = act(&queue, &id.to_string(), action).await.unwrap_err();
            assert!(matches!(err, QueueActionError::UnknownId(ref i) if *i == id.to_string()), "{action:?}: {err:?}");
        }
        let err = act(&queue, "../../etc/passwd", QueueAction::Delete).await.unwrap_err();
        assert!(matches!(err, QueueActionError::BadId(_)), "{err:?}");
        assert_eq!(QueueAction::parse("HOLD"), Some(QueueAction::Hold));
        assert_eq!(QueueAction::parse("bounce"), None);
    }
}
