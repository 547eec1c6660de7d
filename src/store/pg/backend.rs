//! The PostgreSQL backend behind the store traits. The work is in `folders.rs`,
//! `mailbox.rs` and `write.rs`; this file is the checked list of what `store::Store` /
//! `store::Mailbox` may call.

use std::ops::Range;
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::{PgMailbox, PgStore};
use crate::store::api::{MailStore, MailboxOps, ViewRetention};
use crate::store::{
    DeliveredMessage, Flag, FlagOp, FolderInfo, FolderPath, LocalDelivery, MailboxChanges, MailboxEvent, MailboxId,
    MailboxOwner, MailboxSnapshot, MailboxStatus, MessageBody, MessageReader, SieveScriptInfo, SpecialUse, StoreError,
    StoreFlagsOutcome,
};

/// Expunged messages stay readable as tombstones for every session on every replica
/// (`TOMBSTONE_RETENTION`), so a view needs no registration.
pub struct PgViewTicket;

impl ViewRetention for PgViewTicket {
    fn release(&self, _uids: &[u32]) {}
    fn release_absent(&self, _in_view: impl Fn(u32) -> bool) {}
}

impl MailStore for PgStore {
    type Mailbox = PgMailbox;

    async fn open_mailbox(&self, account: &MailboxOwner, folder: &str) -> Result<PgMailbox, StoreError> {
        self.open_path(account, &FolderPath::from_api(folder)?).await
    }

    async fn deliver(
        &self,
        body: &MessageBody,
        deliveries: &[LocalDelivery],
    ) -> Vec<Result<DeliveredMessage, StoreError>> {
        self.deliver_impl(body, deliveries).await
    }

    async fn ensure_account(&self, account: &MailboxOwner) -> Result<(), StoreError> {
        self.account_id(account).await.map(drop)
    }

    async fn ensure_accounts(&self, accounts: impl Iterator<Item = MailboxOwner> + Send) -> Result<(), StoreError> {
        // One query learns every existing account (a restart with 500 accounts is one
        // round trip, not 500); only new ones are created.
        self.load_account_ids().await?;
        for account in accounts {
            self.account_id(&account).await?;
        }
        Ok(())
    }

    async fn quota_usage(&self, account: &MailboxOwner) -> Result<u64, StoreError> {
        self.quota_usage_impl(account).await
    }

    async fn list_folders(&self, account: &MailboxOwner) -> Result<Vec<FolderInfo>, StoreError> {
        self.list_folders_impl(account).await
    }

    async fn create_folder(
        &self,
        account: &MailboxOwner,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), StoreError> {
        self.create_folder_impl(account, name, special_use).await
    }

    async fn delete_folder(&self, account: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        self.delete_folder_impl(account, name).await
    }

    async fn rename_folder(&self, account: &MailboxOwner, from: &str, to: &str) -> Result<(), StoreError> {
        self.rename_folder_impl(account, from, to).await
    }

    async fn set_subscribed(&self, account: &MailboxOwner, name: &str, on: bool) -> Result<(), StoreError> {
        self.set_subscribed_impl(account, name, on).await
    }

    async fn subscriptions(&self, account: &MailboxOwner) -> Result<Vec<String>, StoreError> {
        self.subscriptions_impl(account).await
    }

    async fn sieve_list(&self, account: &MailboxOwner) -> Result<Vec<SieveScriptInfo>, StoreError> {
        self.sieve_list_impl(account).await
    }

    async fn sieve_get(&self, account: &MailboxOwner, name: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        self.sieve_get_impl(account, name).await
    }

    async fn sieve_put(&self, account: &MailboxOwner, name: &str, content: &[u8]) -> Result<(), StoreError> {
        self.sieve_put_impl(account, name, content).await
    }

    async fn sieve_delete(&self, account: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        self.sieve_delete_impl(account, name).await
    }

    async fn sieve_rename(&self, account: &MailboxOwner, old: &str, new: &str) -> Result<(), StoreError> {
        self.sieve_rename_impl(account, old, new).await
    }

    async fn sieve_set_active(&self, account: &MailboxOwner, name: Option<&str>) -> Result<(), StoreError> {
        self.sieve_set_active_impl(account, name).await
    }

    async fn sieve_active(&self, account: &MailboxOwner) -> Result<Option<(String, bytes::Bytes)>, StoreError> {
        self.sieve_active_impl(account).await
    }

    async fn sieve_remember(&self, account: &MailboxOwner, key: &str, until: SystemTime) -> Result<bool, StoreError> {
        self.sieve_remember_impl(account, key, until).await
    }

    async fn report_add(
        &self,
        kind: crate::store::ReportKind,
        counts: &[crate::store::ReportCount],
    ) -> Result<u64, StoreError> {
        self.report_add_impl(kind, counts).await
    }

    async fn report_counts(
        &self,
        kind: crate::store::ReportKind,
        until_day: i64,
    ) -> Result<Vec<crate::store::ReportCount>, StoreError> {
        self.report_counts_impl(kind, until_day).await
    }

    async fn report_subtract(
        &self,
        kind: crate::store::ReportKind,
        counts: &[crate::store::ReportCount],
    ) -> Result<(), StoreError> {
        self.report_subtract_impl(kind, counts).await
    }

    async fn credentials_get(&self, account: &MailboxOwner) -> Result<crate::store::VersionedCredentials, StoreError> {
        self.credentials_get_impl(account).await
    }

    async fn fetch_state_load(&self, source: &str) -> Result<crate::store::FetchState, StoreError> {
        self.fetch_state_load_impl(source).await
    }

    async fn fetch_record(&self, source: &str, event: &crate::store::FetchEvent) -> Result<(), StoreError> {
        self.fetch_record_impl(source, event).await
    }

    async fn fetch_state_replace(&self, source: &str, state: &crate::store::FetchState) -> Result<(), StoreError> {
        self.fetch_state_replace_impl(source, state).await
    }

    async fn credentials_put(
        &self,
        account: &MailboxOwner,
        expected_version: u64,
        record: &crate::store::CredentialRecord,
    ) -> Result<crate::store::CredentialsPut, StoreError> {
        self.credentials_put_impl(account, expected_version, record).await
    }
}

impl MailboxOps for PgMailbox {
    type ViewTicket = PgViewTicket;

    fn id(&self) -> MailboxId {
        self.id_impl()
    }

    fn uid_validity(&self) -> u32 {
        self.uid_validity_impl()
    }

    fn owner(&self) -> &MailboxOwner {
        self.owner_impl()
    }

    fn folder_name(&self) -> String {
        self.folder_name_impl()
    }

    fn register_view(&self) -> PgViewTicket {
        PgViewTicket
    }

    fn subscribe(&self) -> broadcast::Receiver<MailboxEvent> {
        self.subscribe_impl()
    }

    async fn sync(&self) -> Result<MailboxSnapshot, StoreError> {
        self.sync_impl().await
    }

    async fn changes_since(&self, uid_validity: u32, modseq: u64) -> Result<Option<MailboxChanges>, StoreError> {
        self.changes_since_impl(uid_validity, modseq).await
    }

    async fn vanished_since(&self, modseq: u64) -> Vec<u32> {
        self.vanished_since_impl(modseq).await
    }

    async fn take_recent(&self, until: u32) -> Range<u32> {
        self.take_recent_impl(until).await
    }

    async fn status(&self) -> Result<MailboxStatus, StoreError> {
        self.status_impl().await
    }

    async fn store_flags(
        &self,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        self.store_flags_impl(uids, op, flags, unchanged_since).await
    }

    async fn expunge(&self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        self.expunge_impl(uids).await
    }

    async fn append(
        &self,
        body: &MessageBody,
        flags: &[Flag],
        internal_date: Option<SystemTime>,
    ) -> Result<u32, StoreError> {
        self.append_impl(body, flags, internal_date).await
    }

    async fn copy_to(&self, uids: &[u32], dest: &Self) -> Result<Vec<(u32, u32)>, StoreError> {
        self.copy_impl(uids, dest).await
    }

    async fn move_to(&self, uids: &[u32], dest: &Self) -> Result<Vec<(u32, u32)>, StoreError> {
        self.move_impl(uids, dest).await
    }

    async fn open_message(&self, uid: u32) -> Result<MessageReader, StoreError> {
        self.open_message_impl(uid).await
    }

    async fn read_message(&self, uid: u32, max: usize) -> Result<bytes::Bytes, StoreError> {
        self.read_message_impl(uid, max).await
    }

    async fn read_headers(&self, uids: &[u32]) -> Result<Vec<Option<bytes::Bytes>>, StoreError> {
        self.read_headers_impl(uids).await
    }

    async fn read_header_block(&self, uid: u32) -> Result<bytes::Bytes, StoreError> {
        self.read_header_block_impl(uid).await
    }

    async fn header_block_reader(&self, uid: u32) -> Result<(MessageReader, u64), StoreError> {
        self.header_block_reader_impl(uid).await
    }
}
