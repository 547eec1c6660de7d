//! Read-only summaries of an open mailbox and small per-session aids.
//!
//! Owns: what IMAP STATUS / LIST-STATUS, QRESYNC and `\Recent` need without building a full
//! snapshot, and the exclusive claim POP3 takes for its TRANSACTION state (RFC 1939 section
//! 8: one maildrop, one session; `-ERR [IN-USE]` otherwise). The claim is in-process: a
//! second mailroom process is not a supported deployment.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::error::StoreError;
use super::index::Record;
use super::mailbox::{MaildirMailbox, Shared};
use super::types::MailboxStatus;

/// Exclusive use of a mailbox (POP3). Released on drop, also when the session dies.
#[derive(Debug)]
pub struct ExclusiveClaim {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("owner", &self.owner).field("folder", &self.folder).finish()
    }
}

impl Drop for ExclusiveClaim {
    fn drop(&mut self) {
        self.shared.exclusive.store(false, Ordering::Release);
    }
}

impl MaildirMailbox {
    /// Counts for STATUS (after a sync): MESSAGES, UNSEEN, UIDNEXT, UIDVALIDITY, SIZE,
    /// HIGHESTMODSEQ, DELETED.
    pub async fn status(&self) -> Result<MailboxStatus, StoreError> {
        let mut st = self.lock().await;
        self.sync_locked(&mut st, false).await?;
        let mut status = MailboxStatus {
            messages: st.index.messages.len() as u32,
            unseen: 0,
            deleted: 0,
            recent: st.index.messages.range(st.first_recent_uid..).count() as u32,
            uid_next: st.index.uid_next,
            uid_validity: st.index.uid_validity,
            highest_modseq: st.index.highest_modseq,
            size: 0,
        };
        for e in st.index.messages.values() {
            status.size += e.size;
            if !e.flags.is_seen() {
                status.unseen += 1;
            }
            if e.flags.is_deleted() {
                status.deleted += 1;
            }
        }
        Ok(status)
    }

    /// Claim the `\Recent` messages: returns the uid range no session has been told about
    /// yet and marks it told (RFC 3501 2.3.2: \Recent is reported to one session only).
    /// Only UIDs below `until` (the UIDNEXT of the caller's snapshot): a message that arrives
    /// after it is left for whoever sees it first. The claim is written to the index log so a restart does not make
    /// the messages recent again; it is not fsynced (losing it in a crash only shows them
    /// as recent once more, which RFC 3501 2.3.2 tolerates).
    pub async fn take_recent(&self, until: u32) -> std::ops::Range<u32> {
        let mut st = self.lock().await;
        let range = st.first_recent_uid..until.min(st.index.uid_next);
        if range.is_empty() {
            return range;
        }
        st.first_recent_uid = range.end;
        let rec = Record::Recent { first_uid: range.end };
        st.index.apply(&rec);
        if let Err(e) = st.log.append(&[rec]) {
            tracing::warn!(error = %e, "could not record the \\Recent claim");
        }
        range
    }

    /// UIDs expunged with a modseq above `modseq`, from the tombstones (QRESYNC
    /// `VANISHED (EARLIER)`), sorted. Covers the last 10,000 expunges; use
    /// [`MaildirMailbox::tombstones_cover`] to know whether the answer is complete.
    pub async fn vanished_since(&self, modseq: u64) -> Vec<u32> {
        let st = self.lock().await;
        let mut v: Vec<u32> = st.index.tombstones.iter().filter(|(_, m)| *m > modseq).map(|(u, _)| *u).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// True when every expunge after `modseq` is still in the tombstone list (else QRESYNC
    /// must fall back to a full resync, RFC 7162 3.2.5.2).
    pub async fn tombstones_cover(&self, modseq: u64) -> bool {
        let st = self.lock().await;
        st.index.tombstones.len() < super::index::MAX_TOMBSTONES
            || st.index.tombstones.front().is_some_and(|(_, m)| *m <= modseq + 1)
    }

    /// Take exclusive use of the mailbox (POP3). `None` when another session holds it.
    pub fn try_claim_exclusive(&self) -> Option<ExclusiveClaim> {
        self.shared
            .exclusive
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| ExclusiveClaim { shared: self.shared.clone() })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::*;

    /// RFC 3501 2.3.2 with Dovecot's "first recent UID": a claim survives a restart, and
    /// what arrived after it is recent for the next claimer.
    #[tokio::test]
    async fn recent_claim_survives_a_restart() {
        let data = tempfile::tempdir().unwrap();
        let alice = MailboxOwner::new("alice", "example.org");
        let body = MessageBody::Memory(bytes::Bytes::from_static(b"abc\r\n"));
        let d = LocalDelivery {
            owner: alice.clone(),
            folder: "INBOX".into(),
            header_prefix: Vec::new(),
            flags: Vec::new(),
        };
        {
            let store = MaildirStore::open(data.path(), "mx").unwrap();
            store.deliver(&body, std::slice::from_ref(&d)).await;
            let mb = store.open_mailbox(&alice, "INBOX").await.unwrap();
            mb.sync().await.unwrap();
            assert_eq!(mb.take_recent(u32::MAX).await, 1..2);
        }
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        store.deliver(&body, std::slice::from_ref(&d)).await;
        let mb = store.open_mailbox(&alice, "INBOX").await.unwrap();
        assert_eq!(mb.status().await.unwrap().recent, 1);
        assert_eq!(mb.take_recent(2).await, 2..2);
        assert_eq!(mb.take_recent(3).await, 2..3);
    }

    #[tokio::test]
    async fn status_recent_and_exclusive_claims() {
        let data = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(data.path(), "mx").unwrap();
        let alice = MailboxOwner::new("alice", "example.org");
        let body = MessageBody::Memory(bytes::Bytes::from_static(b"abc\r\n"));
        let d = LocalDelivery {
            owner: alice.clone(),
            folder: "INBOX".into(),
            header_prefix: Vec::new(),
            flags: Vec::new(),
        };
        store.deliver(&body, &[d.clone(), d]).await;
        let mb = store.open_mailbox(&alice, "INBOX").await.unwrap();
        let st = mb.status().await.unwrap();
        assert_eq!((st.messages, st.unseen, st.recent, st.size), (2, 2, 2, 10));
        mb.store_flags(&[1], FlagOp::Add, &[Flag::Seen, Flag::Deleted], None).await.unwrap();
        let st = mb.status().await.unwrap();
        assert_eq!((st.unseen, st.deleted, st.uid_next), (1, 1, 3));
        assert_eq!(mb.take_recent(u32::MAX).await, 1..3);
        assert_eq!(mb.take_recent(u32::MAX).await, 3..3);
        assert!(mb.tombstones_cover(0).await);

        let claim = mb.try_claim_exclusive().unwrap();
        let other = store.open_mailbox(&alice, "inbox").await.unwrap();
        assert!(other.try_claim_exclusive().is_none(), "-ERR [IN-USE]");
        drop(claim);
        assert!(other.try_claim_exclusive().is_some());
    }
}
