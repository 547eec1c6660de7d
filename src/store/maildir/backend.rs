//! The Maildir backend behind the store traits: each method is the inherent method of the
//! same name, so the Maildir code keeps its own (older) shape and the traits stay a thin,
//! checked list of what `store::Store` / `store::Mailbox` may rely on.

use std::ops::Range;
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::retained::ViewTicket;
use super::{MaildirMailbox, MaildirStore};
use crate::store::api::{MailStore, MailboxOps, ViewRetention};
use crate::store::{
    DeliveredMessage, Flag, FlagOp, FolderInfo, LocalDelivery, MailboxChanges, MailboxEvent, MailboxId, MailboxOwner,
    MailboxSnapshot, MailboxStatus, MessageBody, MessageReader, SieveScriptInfo, SpecialUse, StoreError,
    StoreFlagsOutcome,
};

impl MailStore for MaildirStore {
    type Mailbox = MaildirMailbox;

    async fn open_mailbox(&self, account: &MailboxOwner, folder: &str) -> Result<MaildirMailbox, StoreError> {
        MaildirStore::open_mailbox(self, account, folder).await
    }

    async fn deliver(
        &self,
        body: &MessageBody,
        deliveries: &[LocalDelivery],
    ) -> Vec<Result<DeliveredMessage, StoreError>> {
        MaildirStore::deliver(self, body, deliveries).await
    }

    async fn ensure_account(&self, account: &MailboxOwner) -> Result<(), StoreError> {
        MaildirStore::ensure_account(self, account).await
    }

    async fn ensure_accounts(&self, accounts: impl Iterator<Item = MailboxOwner> + Send) -> Result<(), StoreError> {
        MaildirStore::ensure_accounts(self, accounts).await
    }

    async fn quota_usage(&self, account: &MailboxOwner) -> Result<u64, StoreError> {
        MaildirStore::quota_usage(self, account).await
    }

    async fn list_folders(&self, account: &MailboxOwner) -> Result<Vec<FolderInfo>, StoreError> {
        MaildirStore::list_folders(self, account).await
    }

    async fn create_folder(
        &self,
        account: &MailboxOwner,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), StoreError> {
        MaildirStore::create_folder(self, account, name, special_use).await
    }

    async fn delete_folder(&self, account: &MailboxOwner, name: &str) -> Result<(), StoreError> {
        MaildirStore::delete_folder(self, account, name).await
    }

    async fn rename_folder(&self, account: &MailboxOwner, from: &str, to: &str) -> Result<(), StoreError> {
        MaildirStore::rename_folder(self, account, from, to).await
    }

    async fn set_subscribed(&self, account: &MailboxOwner, name: &str, on: bool) -> Result<(), StoreError> {
        MaildirStore::set_subscribed(self, account, name, on).await
    }

    async fn subscriptions(&self, account: &MailboxOwner) -> Result<Vec<String>, StoreError> {
        MaildirStore::subscriptions(self, account).await
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

impl ViewRetention for ViewTicket {
    fn release(&self, uids: &[u32]) {
        ViewTicket::release(self, uids);
    }

    fn release_absent(&self, in_view: impl Fn(u32) -> bool) {
        ViewTicket::release_absent(self, in_view);
    }
}

impl MailboxOps for MaildirMailbox {
    type ViewTicket = ViewTicket;

    fn id(&self) -> MailboxId {
        MaildirMailbox::id(self)
    }

    fn uid_validity(&self) -> u32 {
        MaildirMailbox::uid_validity(self)
    }

    fn owner(&self) -> &MailboxOwner {
        MaildirMailbox::owner(self)
    }

    fn folder_name(&self) -> String {
        MaildirMailbox::folder_name(self)
    }

    fn register_view(&self) -> ViewTicket {
        MaildirMailbox::register_view(self)
    }

    fn subscribe(&self) -> broadcast::Receiver<MailboxEvent> {
        MaildirMailbox::subscribe(self)
    }

    async fn sync(&self) -> Result<MailboxSnapshot, StoreError> {
        MaildirMailbox::sync(self).await
    }

    async fn changes_since(&self, uid_validity: u32, modseq: u64) -> Result<Option<MailboxChanges>, StoreError> {
        MaildirMailbox::changes_since(self, uid_validity, modseq).await
    }

    async fn vanished_since(&self, modseq: u64) -> Vec<u32> {
        MaildirMailbox::vanished_since(self, modseq).await
    }

    async fn take_recent(&self, until: u32) -> Range<u32> {
        MaildirMailbox::take_recent(self, until).await
    }

    async fn status(&self) -> Result<MailboxStatus, StoreError> {
        MaildirMailbox::status(self).await
    }

    async fn store_flags(
        &self,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        MaildirMailbox::store_flags(self, uids, op, flags, unchanged_since).await
    }

    async fn expunge(&self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        MaildirMailbox::expunge(self, uids).await
    }

    async fn append(
        &self,
        body: &MessageBody,
        flags: &[Flag],
        internal_date: Option<SystemTime>,
    ) -> Result<u32, StoreError> {
        MaildirMailbox::append(self, body, flags, internal_date).await
    }

    async fn copy_to(&self, uids: &[u32], dest: &MaildirMailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        MaildirMailbox::copy_to(self, uids, dest).await
    }

    async fn move_to(&self, uids: &[u32], dest: &MaildirMailbox) -> Result<Vec<(u32, u32)>, StoreError> {
        MaildirMailbox::move_to(self, uids, dest).await
    }

    async fn open_message(&self, uid: u32) -> Result<MessageReader, StoreError> {
        MaildirMailbox::open_message(self, uid).await
    }

    async fn read_message(&self, uid: u32, max: usize) -> Result<bytes::Bytes, StoreError> {
        MaildirMailbox::read_message(self, uid, max).await
    }

    async fn read_headers(&self, uids: &[u32]) -> Result<Vec<Option<bytes::Bytes>>, StoreError> {
        MaildirMailbox::read_headers(self, uids).await
    }

    async fn read_header_block(&self, uid: u32) -> Result<bytes::Bytes, StoreError> {
        MaildirMailbox::read_header_block(self, uid).await
    }

    async fn header_block_reader(&self, uid: u32) -> Result<(MessageReader, u64), StoreError> {
        MaildirMailbox::header_block_reader(self, uid).await
    }
}
