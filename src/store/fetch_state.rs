//! What each periodic-fetch source (`fetch/`) has fetched, kept by the store, and
//! [`Store`]'s delegation of those methods of [`MailStore`].
//!
//! Why in the store: with PostgreSQL many replicas share the mail, and a source's record
//! must be shared too, or each replica would fetch the same remote messages again. And a
//! record is changed by small events (a message in flight, a message done), so a backend
//! writes one event durably (an appended line, one committed transaction) rather than
//! the whole record: a POP3 `keep` source with many thousand UIDLs stays linear.
//!
//! The record: for POP3 the UIDLs delivered (forgotten once gone from the server), for
//! IMAP the folder's UIDVALIDITY and the highest UID delivered; and the one message in
//! flight with the local folder's UIDNEXT before its delivery (see `fetch/run.rs` for
//! how a crash is told apart from a delivery).

use std::collections::BTreeSet;

use super::api::MailStore;
use super::{Store, StoreError};

/// Longest remote id (a UIDL is at most 70 characters, RFC 1939 section 7).
pub const MAX_FETCH_ID_LEN: usize = 255;

/// The message whose local copy may or may not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPending {
    /// The remote id: the UIDL, or the IMAP UID in decimal.
    pub id: String,
    /// The local folder's UIDNEXT before the delivery: a copy, if made, has a UID at or
    /// above it.
    pub uid_next: u32,
}

/// One source's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchState {
    /// IMAP: the folder's UIDVALIDITY the UIDs below belong to.
    pub uid_validity: Option<u32>,
    /// IMAP: every UID up to this one is delivered.
    pub last_uid: u32,
    /// POP3: the UIDLs delivered and still on the server.
    pub seen: BTreeSet<String>,
    pub pending: Option<FetchPending>,
}

/// One change to a source's record: what a backend writes durably, at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchEvent {
    /// A message is about to be downloaded and delivered.
    Pending(FetchPending),
    /// The message in flight had no local copy: it is fetched again.
    Abandoned,
    /// A message is delivered (POP3: by UIDL; IMAP: by UID); clears the one in flight.
    Done { id: String, imap_uid: Option<u32> },
    /// The IMAP folder has this UIDVALIDITY: with a new one, its UIDs start over.
    UidValidity(u32),
    /// POP3 ids no longer on the server: their record goes.
    Forget(Vec<String>),
}

impl FetchState {
    /// Is this remote message delivered already?
    pub fn done(&self, id: &str, imap_uid: Option<u32>) -> bool {
        match imap_uid {
            Some(uid) => uid <= self.last_uid,
            None => self.seen.contains(id),
        }
    }

    /// The record after `event`: how a backend replays a log, and what every backend's
    /// load must answer after it recorded the event.
    pub fn apply(&mut self, event: &FetchEvent) {
        match event {
            FetchEvent::Pending(p) => self.pending = Some(p.clone()),
            FetchEvent::Abandoned => self.pending = None,
            FetchEvent::Done { id, imap_uid } => {
                match imap_uid {
                    Some(uid) => self.last_uid = self.last_uid.max(*uid),
                    None => {
                        self.seen.insert(id.clone());
                    }
                }
                self.pending = None;
            }
            FetchEvent::UidValidity(v) => {
                if self.uid_validity != Some(*v) {
                    self.uid_validity = Some(*v);
                    self.last_uid = 0;
                }
            }
            FetchEvent::Forget(ids) => {
                for id in ids {
                    self.seen.remove(id);
                }
            }
        }
    }

    /// The remote ids it holds, each checked by [`check_id`].
    fn ids(&self) -> impl Iterator<Item = &str> {
        self.seen.iter().map(String::as_str).chain(self.pending.iter().map(|p| p.id.as_str()))
    }
}

impl FetchEvent {
    fn ids(&self) -> Vec<&str> {
        match self {
            FetchEvent::Pending(p) => vec![&p.id],
            FetchEvent::Done { id, .. } => vec![id],
            FetchEvent::Forget(ids) => ids.iter().map(String::as_str).collect(),
            FetchEvent::Abandoned | FetchEvent::UidValidity(_) => Vec::new(),
        }
    }
}

/// A source key names a file on Maildir: a short digest, letters and digits only.
fn check_source(source: &str) -> Result<(), StoreError> {
    if source.is_empty() || source.len() > 64 || !source.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StoreError::Limit("fetch source key"));
    }
    Ok(())
}

/// A remote id is one line of printable characters (a UIDL is 0x21-0x7E), bounded.
fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_FETCH_ID_LEN || id.chars().any(char::is_control) {
        return Err(StoreError::Limit("fetch remote id"));
    }
    Ok(())
}

impl Store {
    /// See [`MailStore::fetch_state_load`].
    pub async fn fetch_state_load(&self, source: &str) -> Result<FetchState, StoreError> {
        check_source(source)?;
        match self {
            Store::Maildir(s) => MailStore::fetch_state_load(s, source).await,
            Store::Pg(s) => MailStore::fetch_state_load(s, source).await,
        }
    }

    /// See [`MailStore::fetch_record`].
    pub async fn fetch_record(&self, source: &str, event: &FetchEvent) -> Result<(), StoreError> {
        check_source(source)?;
        event.ids().into_iter().try_for_each(check_id)?;
        match self {
            Store::Maildir(s) => MailStore::fetch_record(s, source, event).await,
            Store::Pg(s) => MailStore::fetch_record(s, source, event).await,
        }
    }

    /// See [`MailStore::fetch_state_replace`].
    pub async fn fetch_state_replace(&self, source: &str, state: &FetchState) -> Result<(), StoreError> {
        check_source(source)?;
        state.ids().try_for_each(check_id)?;
        match self {
            Store::Maildir(s) => MailStore::fetch_state_replace(s, source, state).await,
            Store::Pg(s) => MailStore::fetch_state_replace(s, source, state).await,
        }
    }
}
