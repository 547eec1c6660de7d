//! The storage boundary: what a mail store backend must provide.
//!
//! Owns: the two traits every backend implements. [`MailStore`] is the account level
//! (deliveries, accounts, quota, folders, subscriptions), [`MailboxOps`] one open folder
//! (its identity, sync and change tracking, events, RFC 2180 view retention, writes and
//! reads). Consumers (IMAP, POP3, SMTP, app) never name a backend or these traits: they use
//! the enums `store::Store` and `store::Mailbox`, which hold one variant per backend and
//! delegate through these traits. So adding a backend is a variant plus an implementation,
//! and the protocol code does not change.
//!
//! Why traits with `impl Future + Send` and enums, not `dyn` objects: async methods cannot be
//! called through `dyn` without boxing every future, and the sessions spawn their work on a
//! multi-threaded runtime, so every future must be `Send`. An `async fn` in a public trait
//! would not promise that; spelling out `+ Send` here makes each backend prove it.
//!
//! Rules a backend keeps (the contract tests in `contract_tests.rs` check them): UIDs are
//! ascending in commit order and never reused within a UIDVALIDITY; every change raises the
//! mailbox's highest modseq; nothing is acknowledged (a returned `Ok`) before it is durable;
//! `MailboxEvent`s are hints (a session that lags resyncs with `changes_since`); and errors
//! are [`StoreError`]s, with [`StoreError::Unavailable`] for "try again later".

use std::future::Future;
use std::ops::Range;
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::credentials::{CredentialRecord, CredentialsPut, VersionedCredentials};
use super::error::StoreError;
use super::fetch_state::{FetchEvent, FetchState};
use super::reader::MessageReader;
use super::reports::{ReportCount, ReportKind};
use super::types::{
    DeliveredMessage, Flag, FlagOp, FolderInfo, LocalDelivery, MailboxChanges, MailboxEvent, MailboxId, MailboxOwner,
    MailboxSnapshot, MailboxStatus, MessageBody, SieveScriptInfo, SpecialUse, StoreFlagsOutcome,
};

/// One backend's store: the account-level operations.
pub trait MailStore: Clone + Send + Sync + 'static {
    /// This backend's open folder.
    type Mailbox: MailboxOps;

    /// Open a folder (`"INBOX"` case-insensitive, `"Archive/2024"`). All handles to one folder
    /// share its state, so sessions see each other's changes.
    fn open_mailbox(
        &self,
        account: &MailboxOwner,
        folder: &str,
    ) -> impl Future<Output = Result<Self::Mailbox, StoreError>> + Send;

    /// Deliver one message to several mailboxes (each copy is `header_prefix + body`), one
    /// result per delivery in order, each durable when it is `Ok`. Open mailboxes are told.
    fn deliver(
        &self,
        body: &MessageBody,
        deliveries: &[LocalDelivery],
    ) -> impl Future<Output = Vec<Result<DeliveredMessage, StoreError>>> + Send;

    /// Create the account with INBOX and the default folders, subscribed (idempotent).
    fn ensure_account(&self, account: &MailboxOwner) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`MailStore::ensure_account`] for every account at start-up.
    fn ensure_accounts(
        &self,
        accounts: impl Iterator<Item = MailboxOwner> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Bytes the account's messages use, in all folders (quota checks on RCPT, APPEND,
    /// COPY and GETQUOTA).
    fn quota_usage(&self, account: &MailboxOwner) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every folder of the account with its attributes (IMAP LIST).
    fn list_folders(&self, account: &MailboxOwner) -> impl Future<Output = Result<Vec<FolderInfo>, StoreError>> + Send;

    /// Create a folder (and missing parents), optionally with a special-use attribute.
    fn create_folder(
        &self,
        account: &MailboxOwner,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Delete a folder with its messages (never INBOX, never one with children).
    fn delete_folder(&self, account: &MailboxOwner, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Rename a folder and its children (never INBOX: `Store::rename_folder` moves its
    /// messages instead, RFC 3501 6.3.5, the same way on every backend).
    fn rename_folder(
        &self,
        account: &MailboxOwner,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Subscribe or unsubscribe a folder name (which need not exist).
    fn set_subscribed(
        &self,
        account: &MailboxOwner,
        name: &str,
        on: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The subscribed folder names.
    fn subscriptions(&self, account: &MailboxOwner) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The account's Sieve scripts, sorted by name (ManageSieve LISTSCRIPTS).
    fn sieve_list(
        &self,
        account: &MailboxOwner,
    ) -> impl Future<Output = Result<Vec<SieveScriptInfo>, StoreError>> + Send;

    /// One script's bytes, `None` when there is none of that name.
    fn sieve_get(
        &self,
        account: &MailboxOwner,
        name: &str,
    ) -> impl Future<Output = Result<Option<bytes::Bytes>, StoreError>> + Send;

    /// Create or replace a script, durable before it returns. The caller has compiled it
    /// and checked the quotas; an active script stays active with its new content.
    fn sieve_put(
        &self,
        account: &MailboxOwner,
        name: &str,
        content: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Delete a script: [`StoreError::ScriptActive`] for the active one,
    /// [`StoreError::NoSuchScript`] for a missing one.
    fn sieve_delete(&self, account: &MailboxOwner, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Rename a script (an active one stays active): [`StoreError::ScriptExists`] when
    /// `new` is taken, [`StoreError::NoSuchScript`] when `old` is missing.
    fn sieve_rename(
        &self,
        account: &MailboxOwner,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Make `name` the one active script, or with `None` deactivate every script.
    fn sieve_set_active(
        &self,
        account: &MailboxOwner,
        name: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The active script's name and bytes: what delivery runs.
    fn sieve_active(
        &self,
        account: &MailboxOwner,
    ) -> impl Future<Output = Result<Option<(String, bytes::Bytes)>, StoreError>> + Send;

    /// Check-and-record for vacation and duplicate memory (RFC 5230, RFC 7352): true when
    /// `key` is recorded and not expired; otherwise record it until `until` (durable before
    /// returning) and answer false. Expired keys are pruned, and at most
    /// `store::MAX_REMEMBERED_KEYS` are kept per account (the oldest go first).
    fn sieve_remember(
        &self,
        account: &MailboxOwner,
        key: &str,
        until: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Add report counts of one `kind` (same domain, day and row: the counts add up),
    /// durable when it returns. A domain and day already holding
    /// `store::MAX_REPORT_ROWS_PER_DAY` rows, or a kind holding `store::MAX_REPORT_ROWS`,
    /// takes no new row; returns how many events were dropped that way.
    fn report_add(
        &self,
        kind: ReportKind,
        counts: &[ReportCount],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every report count of `kind` of the days up to `until_day` (inclusive).
    fn report_counts(
        &self,
        kind: ReportKind,
        until_day: i64,
    ) -> impl Future<Output = Result<Vec<ReportCount>, StoreError>> + Send;

    /// Take reported counts away (a row reaching zero goes): what was added meanwhile by
    /// another replica stays for the next report.
    fn report_subtract(
        &self,
        kind: ReportKind,
        counts: &[ReportCount],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The record of one periodic-fetch source (`source`: a short key of letters and
    /// digits), empty when it was never fetched.
    fn fetch_state_load(&self, source: &str) -> impl Future<Output = Result<FetchState, StoreError>> + Send;

    /// Record one change of a source's record, durable when it returns; a load after it
    /// answers what [`FetchState::apply`] makes of it. One small write, whatever the
    /// record's size.
    fn fetch_record(&self, source: &str, event: &FetchEvent) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replace a source's record whole, durable when it returns (importing an older
    /// record; idempotent).
    fn fetch_state_replace(
        &self,
        source: &str,
        state: &FetchState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The account's credentials record and its version (version 0 and an empty record
    /// when it never had one). Logins read it every time, so it is one small read.
    fn credentials_get(
        &self,
        account: &MailboxOwner,
    ) -> impl Future<Output = Result<VersionedCredentials, StoreError>> + Send;

    /// Replace the record if it is still at `expected_version` (0: there is none yet),
    /// durable when it returns [`CredentialsPut::Written`]; otherwise write nothing and
    /// answer [`CredentialsPut::Conflict`].
    fn credentials_put(
        &self,
        account: &MailboxOwner,
        expected_version: u64,
        record: &CredentialRecord,
    ) -> impl Future<Output = Result<CredentialsPut, StoreError>> + Send;
}

/// A session's registration as a viewer of a mailbox (SELECT/EXAMINE): messages expunged
/// while it is held stay readable until released (RFC 2180 4.1.1). A backend that keeps
/// expunged messages readable anyway (tombstones) may make it a no-op.
pub trait ViewRetention: Send + Sync + 'static {
    /// The session has told its client these UIDs are gone: they need not stay readable.
    fn release(&self, uids: &[u32]);
    /// Release every retained UID the session no longer shows.
    fn release_absent(&self, in_view: impl Fn(u32) -> bool);
}

/// One backend's open folder.
pub trait MailboxOps: Clone + Send + Sync + 'static {
    /// This backend's view ticket.
    type ViewTicket: ViewRetention;

    /// Which mailbox this is, comparable across handles.
    fn id(&self) -> MailboxId;
    /// IMAP UIDVALIDITY.
    fn uid_validity(&self) -> u32;
    /// The account owning this mailbox.
    fn owner(&self) -> &MailboxOwner;
    /// The folder's API name (`"INBOX"`, `"Archive/2024"`).
    fn folder_name(&self) -> String;

    /// Register a session's view (see [`ViewRetention`]).
    fn register_view(&self) -> Self::ViewTicket;
    /// Change hints (new mail, flags, expunges) from any session, delivery or replica.
    fn subscribe(&self) -> broadcast::Receiver<MailboxEvent>;

    /// Bring the mailbox up to date (foreign changes included) and return all of it.
    fn sync(&self) -> impl Future<Output = Result<MailboxSnapshot, StoreError>> + Send;
    /// What changed after `modseq` (CONDSTORE/QRESYNC), or `None` when the caller must
    /// resync from a full snapshot (other UIDVALIDITY, expunges no longer remembered).
    fn changes_since(
        &self,
        uid_validity: u32,
        modseq: u64,
    ) -> impl Future<Output = Result<Option<MailboxChanges>, StoreError>> + Send;
    /// UIDs expunged after `modseq`, ascending (QRESYNC VANISHED).
    fn vanished_since(&self, modseq: u64) -> impl Future<Output = Vec<u32>> + Send;
    /// Claim `\Recent` for UIDs below `until` not claimed by another session yet.
    fn take_recent(&self, until: u32) -> impl Future<Output = Range<u32>> + Send;
    /// Counters for IMAP STATUS.
    fn status(&self) -> impl Future<Output = Result<MailboxStatus, StoreError>> + Send;

    /// Change flags (IMAP STORE), with CONDSTORE's UNCHANGEDSINCE.
    fn store_flags(
        &self,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> impl Future<Output = Result<StoreFlagsOutcome, StoreError>> + Send;
    /// Remove messages; returns the UIDs actually expunged.
    fn expunge(&self, uids: &[u32]) -> impl Future<Output = Result<Vec<u32>, StoreError>> + Send;
    /// Store a new message (IMAP APPEND); returns its UID.
    fn append(
        &self,
        body: &MessageBody,
        flags: &[Flag],
        internal_date: Option<SystemTime>,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;
    /// Copy messages into `dest` (same backend); returns (source UID, new UID) pairs.
    fn copy_to(&self, uids: &[u32], dest: &Self) -> impl Future<Output = Result<Vec<(u32, u32)>, StoreError>> + Send;
    /// Move messages into `dest`; the UIDL stays with the message.
    fn move_to(&self, uids: &[u32], dest: &Self) -> impl Future<Output = Result<Vec<(u32, u32)>, StoreError>> + Send;

    /// A message's CRLF bytes as a stream.
    fn open_message(&self, uid: u32) -> impl Future<Output = Result<MessageReader, StoreError>> + Send;
    /// At most `max` bytes of a message.
    fn read_message(&self, uid: u32, max: usize) -> impl Future<Output = Result<bytes::Bytes, StoreError>> + Send;
    /// Header blocks of many messages at once, `None` where the caller must ask
    /// [`MailboxOps::read_header_block`] (not cached, or expunged).
    fn read_headers(&self, uids: &[u32]) -> impl Future<Output = Result<Vec<Option<bytes::Bytes>>, StoreError>> + Send;
    /// One message's header block (through the blank line).
    fn read_header_block(&self, uid: u32) -> impl Future<Output = Result<bytes::Bytes, StoreError>> + Send;
    /// A message stream plus the length of its header block, to stream a big header.
    fn header_block_reader(&self, uid: u32) -> impl Future<Output = Result<(MessageReader, u64), StoreError>> + Send;
}
