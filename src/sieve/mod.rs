//! Sieve (RFC 5228) at local delivery: which scripts run for a mailbox, what they decide,
//! and the values the courier turns into copies, redirects, rejections and vacation
//! replies.
//!
//! It owns the evaluation only. Scripts come from a [`ScriptSource`] (the store, once it
//! keeps them; an in-memory one in tests); what a script decides comes back as an
//! [`Outcome`], a plain value, and `smtp::courier` carries it out (store copies, queue
//! items). It never writes a message anywhere itself, and it never loses one: any error
//! (compiling, running, the instruction budget) ends in the implicit keep in the folder
//! delivery would have used without Sieve.
//!
//! The message a script sees is a bounded prefix (headers and the first
//! [`EVAL_PREFIX`] bytes): a large message is never read whole for filtering, the full
//! body is stored from the spool as before. Its `size` test still sees the whole
//! message's size (`sized.rs`).
//!
//! Files: `engine.rs` (one run: the event loop of `sieve-rs`), `cache.rs` (compiled
//! scripts), `actions.rs` (flags, folder names, redirect loop checks), `vacation.rs`
//! (RFC 3834 rules and the reply's final form), `vacation_settings.rs` (the account
//! pages' vacation settings, kept as a script of a reserved name), `sized.rs` (the size `size` tests), `compile.rs` (the check ManageSieve runs
//! before it stores a script), `tests.rs`.

mod actions;
mod cache;
pub mod compile;
mod engine;
mod sized;
mod vacation;
pub mod vacation_settings;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vacation_settings_tests;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::queue::BoxFuture;
use crate::store::{Flag, MailboxOwner, StoreError};

pub use actions::{REDIRECT_HEADER, redirect_allowed};
pub use cache::ScriptCache;
pub use engine::{AccountScripts, AdminScripts, Engine, RunInput, compile_admin_script};
pub use vacation::{may_answer, reply_with_headers};

/// The Sieve extensions scripts may `require`, as the `SIEVE` capability lists them.
/// One constant, so ManageSieve and the interpreter agree; the runtime refuses the
/// others ([`Engine::new`]).
pub const EXTENSIONS: &str = "fileinto mailbox envelope body imap4flags copy variables include relational \
     subaddress date index regex reject ereject vacation vacation-seconds spamtest virustest duplicate \
     encoded-character comparator-i;ascii-numeric";

/// Most bytes of a message a script evaluates (header section included): tests on the
/// body see its beginning only.
pub const EVAL_PREFIX: usize = 1024 * 1024;

/// Most redirects one message may take through Sieve, counted over every hop that
/// marked it ([`REDIRECT_HEADER`]) plus this run's own.
pub const MAX_REDIRECTS: usize = 4;

/// Where an account's scripts live, and the memory of vacation and duplicate.
pub trait ScriptSource: Send + Sync {
    /// The account's active script (name, bytes), if any.
    fn active<'a>(&'a self, account: &'a MailboxOwner) -> BoxFuture<'a, Result<Option<(String, Bytes)>, StoreError>>;
    /// A named script of the account (for `include :personal`).
    fn get<'a>(&'a self, account: &'a MailboxOwner, name: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;
    /// Check-and-record for vacation/duplicate: true if `key` was recorded and not expired;
    /// otherwise records it until `until` (durably) and returns false.
    fn remember<'a>(
        &'a self,
        account: &'a MailboxOwner,
        key: &'a str,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// Whether a folder exists (for `fileinto` without `:create` and `mailboxexists`).
pub trait FolderCheck: Send + Sync {
    fn exists<'a>(&'a self, account: &'a MailboxOwner, folder: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// What the port-25 checks concluded, for `spamtest` and `virustest`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScanVerdict {
    /// The message was judged at all (port 25 from an untrusted client).
    pub checked: bool,
    /// The checks sent it to Junk.
    pub junk: bool,
    /// A virus scanner looked at it (a virus is refused before delivery, so a scanned
    /// message that arrives here is clean).
    pub virus_scanned: bool,
}

/// The envelope as a script sees it.
#[derive(Clone, Debug, Default)]
pub struct SieveEnvelope {
    /// `MAIL FROM`, empty for the null sender.
    pub from: String,
    /// The recipient address that led to this mailbox.
    pub to: String,
}

/// One copy to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filing {
    /// API folder name (`INBOX`, `Lists/rust`).
    pub folder: String,
    pub flags: Vec<Flag>,
    /// `fileinto :create`, or the implicit keep's folder: create it when missing.
    pub create: bool,
}

/// A message a script wants sent (a vacation reply), before DKIM and the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The envelope recipient: the original envelope sender.
    pub to: String,
    /// The complete message.
    pub message: Vec<u8>,
}

/// What the scripts decided for one mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Copies to store; empty with no `reject` and no redirect means discard.
    pub filings: Vec<Filing>,
    /// Addresses to redirect the message to.
    pub redirects: Vec<String>,
    /// `reject`/`ereject` with its reason: the sender gets a DSN, nothing is stored.
    pub reject: Option<String>,
    pub replies: Vec<Reply>,
    /// The error that made the run fall back to the implicit keep (already logged).
    pub error: Option<String>,
    /// Any script ran.
    pub ran: bool,
}

impl Outcome {
    /// The fallback: the implicit keep in `folder`, nothing else.
    pub fn keep(folder: &str) -> Outcome {
        Outcome {
            filings: vec![Filing { folder: folder.to_string(), flags: Vec::new(), create: true }],
            ..Outcome::default()
        }
    }
}

/// What leaves through the queue on a script's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundKind {
    /// `redirect`: the message, envelope sender kept (SRS applies for a remote one).
    Redirect,
    /// A vacation reply, DKIM-signed for the account's domain, from the null sender; its
    /// `From:` (a script's `:from`) must be an address `account` may send as.
    Reply { sign_domain: String, account: crate::accounts::Address },
    /// The DSN of a `reject`, from the null sender.
    Rejection,
}

/// The way out for redirects, replies and rejections (the queue in production, a
/// recorder in tests).
pub trait Outbound: Send + Sync {
    /// Send `parts` (concatenated: the message) to `to`; `sender` `None` is the null sender.
    fn send<'a>(
        &'a self,
        kind: OutboundKind,
        sender: Option<&'a crate::accounts::Address>,
        to: &'a crate::accounts::Address,
        parts: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Everything the courier needs for Sieve: the engine and where scripts come from.
#[derive(Clone)]
pub struct SieveDelivery {
    pub engine: Arc<Engine>,
    pub source: Arc<dyn ScriptSource>,
    pub folders: Arc<dyn FolderCheck>,
    pub outbound: Arc<dyn Outbound>,
    /// The server's budget for messages held whole: a redirect reads the message whole
    /// (the queue takes it as one buffer) under it.
    pub memory: crate::net::MessageMemory,
}

/// A script source for tests of admin scripts: no account has a script, and vacation and
/// duplicate remember in memory (bounded).
#[cfg(test)]
#[derive(Default)]
pub struct NoStoredScripts {
    seen: std::sync::Mutex<std::collections::HashMap<String, SystemTime>>,
}

/// Entries [`NoStoredScripts`] keeps before it forgets the expired ones (then, if still
/// full, all of them: a repeated vacation reply is better than unbounded memory).
#[cfg(test)]
const MEMORY_REMEMBER_CAP: usize = 100_000;

#[cfg(test)]
impl NoStoredScripts {
    fn remember_now(&self, account: &MailboxOwner, key: &str, until: SystemTime) -> bool {
        let now = SystemTime::now();
        let key = format!("{}@{}\0{key}", account.local, account.domain);
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.get(&key).is_some_and(|t| *t > now) {
            return true;
        }
        if seen.len() >= MEMORY_REMEMBER_CAP {
            seen.retain(|_, t| *t > now);
            if seen.len() >= MEMORY_REMEMBER_CAP {
                seen.clear();
            }
        }
        seen.insert(key, until);
        false
    }
}

#[cfg(test)]
impl ScriptSource for NoStoredScripts {
    fn active<'a>(&'a self, _: &'a MailboxOwner) -> BoxFuture<'a, Result<Option<(String, Bytes)>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
    fn get<'a>(&'a self, _: &'a MailboxOwner, _: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
    fn remember<'a>(
        &'a self,
        account: &'a MailboxOwner,
        key: &'a str,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.remember_now(account, key, until)) })
    }
}

/// The accounts' scripts and the vacation/duplicate memory, as the store keeps them
/// (ManageSieve writes them; both backends).
impl ScriptSource for crate::store::Store {
    fn active<'a>(&'a self, account: &'a MailboxOwner) -> BoxFuture<'a, Result<Option<(String, Bytes)>, StoreError>> {
        Box::pin(self.sieve_active(account))
    }
    fn get<'a>(&'a self, account: &'a MailboxOwner, name: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(self.sieve_get(account, name))
    }
    fn remember<'a>(
        &'a self,
        account: &'a MailboxOwner,
        key: &'a str,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.sieve_remember(account, key, until))
    }
}

/// Folder existence from the store's folder list.
impl FolderCheck for crate::store::Store {
    fn exists<'a>(&'a self, account: &'a MailboxOwner, folder: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if folder.eq_ignore_ascii_case("INBOX") {
                return Ok(true);
            }
            Ok(self.list_folders(account).await?.iter().any(|f| f.name == folder))
        })
    }
}
