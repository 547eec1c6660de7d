//! Public value types of the store API.
//!
//! Owns: the plain data that SMTP delivery, IMAP and POP3 exchange with `store/` — who owns a
//! mailbox, what a message body is, flags, snapshots and change events. No I/O here.

use std::path::PathBuf;
use std::time::SystemTime;

/// The owner of a mailbox tree: one account. Both parts are already normalised by
/// `accounts/` (lower-cased domain, canonical local part); the store only checks that they
/// are safe as directory names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxOwner {
    /// Local part (`alice` in `alice@example.org`).
    pub local: String,
    /// Domain (`example.org`).
    pub domain: String,
}

impl MailboxOwner {
    /// Convenience constructor.
    pub fn new(local: impl Into<String>, domain: impl Into<String>) -> MailboxOwner {
        MailboxOwner { local: local.into(), domain: domain.into() }
    }

    /// Refuse names no backend stores: empty, over 255 bytes, a leading dot, `/`, `\`,
    /// NUL or control characters (Maildir uses both parts as directory names, and every
    /// backend refuses the same names so an account means the same on each).
    pub fn check(&self) -> Result<(), crate::store::StoreError> {
        for s in [&self.domain, &self.local] {
            let ok = !s.is_empty()
                && s.len() <= 255
                && !s.starts_with('.')
                && !s.contains(['/', '\\', '\0'])
                && !s.chars().any(|c| c.is_control());
            if !ok {
                return Err(crate::store::StoreError::InvalidAccount(s.to_string()));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for MailboxOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// A message in its CRLF wire form, either in memory or spooled to a file (large DATA).
#[derive(Clone, Debug)]
pub enum MessageBody {
    /// The whole message in memory.
    Memory(bytes::Bytes),
    /// The message is the first `len` bytes of the file at `path` (a spool file the caller
    /// keeps until `deliver`/`append` returns).
    File {
        /// Spool file.
        path: PathBuf,
        /// Number of bytes to take from it.
        len: u64,
    },
}

impl MessageBody {
    /// Size in bytes of the body.
    pub fn len(&self) -> u64 {
        match self {
            MessageBody::Memory(b) => b.len() as u64,
            MessageBody::File { len, .. } => *len,
        }
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One local copy to write: who gets it, into which folder, with which per-recipient
/// headers (Return-Path, Delivered-To, Received; CRLF-terminated) in front of the body.
#[derive(Clone, Debug)]
pub struct LocalDelivery {
    /// Recipient account.
    pub owner: MailboxOwner,
    /// Target folder, API name: `"INBOX"` or e.g. `"Junk"`.
    pub folder: String,
    /// Bytes written before the body.
    pub header_prefix: Vec<u8>,
    /// Flags the copy arrives with (Sieve imap4flags); usually none. Maildir keeps the
    /// system flags in the file name; keywords need the folder's keyword table, which
    /// only an open mailbox owns, so Maildir stores them on PostgreSQL only.
    pub flags: Vec<Flag>,
}

/// Which mailbox a handle refers to, comparable across handles: `location` is the
/// backend's key for the folder, `uid_validity` tells a folder apart from an earlier one
/// of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MailboxId {
    /// Backend-specific key of the folder (`maildir:<directory>`).
    pub location: String,
    /// The folder's IMAP UIDVALIDITY.
    pub uid_validity: u32,
}

/// A durable delivered copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveredMessage {
    /// Where the copy landed, for log lines only (a Maildir backend gives the file in
    /// `new/`; another backend its own key). Nothing may parse it or open it.
    pub location: String,
    /// Wire size (header prefix + body).
    pub size: u64,
}

/// RFC 6154 special-use attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    /// `\Drafts`
    Drafts,
    /// `\Sent`
    Sent,
    /// `\Junk`
    Junk,
    /// `\Trash`
    Trash,
    /// `\Archive`
    Archive,
    /// `\All`
    All,
    /// `\Flagged`
    Flagged,
}

impl SpecialUse {
    /// The IMAP attribute, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::All => "\\All",
            SpecialUse::Flagged => "\\Flagged",
        }
    }

    /// Parse an IMAP attribute (case-insensitive, with or without the backslash).
    pub fn from_attribute(s: &str) -> Option<SpecialUse> {
        let s = s.strip_prefix('\\').unwrap_or(s);
        [
            SpecialUse::Drafts,
            SpecialUse::Sent,
            SpecialUse::Junk,
            SpecialUse::Trash,
            SpecialUse::Archive,
            SpecialUse::All,
            SpecialUse::Flagged,
        ]
        .into_iter()
        .find(|u| u.attribute()[1..].eq_ignore_ascii_case(s))
    }
}

/// Information about one folder for LIST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    /// UTF-8 name, `/`-separated hierarchy (`"INBOX"`, `"Archive/2024"`).
    pub name: String,
    /// RFC 6154 attribute, if any.
    pub special_use: Option<SpecialUse>,
    /// Some other folder lives below this one (`\HasChildren`).
    pub has_children: bool,
    /// Listed in the subscriptions file (LSUB, `\Subscribed`).
    pub subscribed: bool,
}

/// A message flag. `\Recent` is session state and is not stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// `\Seen`
    Seen,
    /// `\Answered`
    Answered,
    /// `\Flagged`
    Flagged,
    /// `\Deleted`
    Deleted,
    /// `\Draft`
    Draft,
    /// A keyword such as `$Forwarded` or `$Junk` (stored verbatim). Shared: the store keeps
    /// each keyword string once (`keywords::intern`), and snapshots copy only the pointer.
    Keyword(std::sync::Arc<str>),
}

/// How `store_flags` combines the given flags with the current ones (IMAP `+FLAGS`,
/// `-FLAGS`, `FLAGS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    /// Add the given flags.
    Add,
    /// Remove the given flags.
    Remove,
    /// Replace all flags with the given ones.
    Replace,
}

/// Result of `Mailbox::store_flags`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreFlagsOutcome {
    /// Messages whose flags changed: uid, new flags, new modseq.
    pub updated: Vec<FlagChange>,
    /// Messages matched but already carrying the requested flags: uid, flags, modseq (IMAP
    /// still sends their FETCH FLAGS for a non-silent STORE).
    pub unchanged: Vec<(u32, Vec<Flag>, u64)>,
    /// UIDs refused because their modseq is above UNCHANGEDSINCE (RFC 7162 `[MODIFIED]`).
    pub failed: Vec<u32>,
}

/// Metadata of one message, as kept in the index (no file read needed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    /// IMAP UID.
    pub uid: u32,
    /// Flags and keywords, sorted.
    pub flags: Vec<Flag>,
    /// CONDSTORE modseq of the last change.
    pub modseq: u64,
    /// Wire size (CRLF), what RETR/FETCH RFC822.SIZE report.
    pub size: u64,
    /// IMAP INTERNALDATE (file mtime at delivery).
    pub internal_date: SystemTime,
    /// The POP3 UIDL: stable for the message's life, kept by MOVE, restarts and index
    /// rebuilds. The Maildir backend uses the base name (before `:2,`), as Dovecot's
    /// `%f`-style setups expose it, so clients switching servers do not download twice.
    /// Shared: every snapshot and session view points at the store's one copy.
    pub uidl: std::sync::Arc<str>,
}

/// The messages of a mailbox sorted by uid, as snapshots and IMAP views hold them: a
/// persistent vector, so a clone is O(1) and shares all storage, and a change copies only
/// the O(log n) chunks on its path. Twenty sessions that SELECT a 100,000-message INBOX
/// share one list instead of holding twenty copies, and each can still change its own view
/// (flags, expunges, arrivals) without anyone else seeing it early.
pub type MessageList = imbl::Vector<MessageMeta>;

/// Where `uid` is in a list sorted by uid: `Ok(index)`, or `Err(index)` where it would go.
pub fn uid_position(list: &MessageList, uid: u32) -> Result<usize, usize> {
    list.binary_search_by(|m| m.uid.cmp(&uid))
}

/// A consistent view of a mailbox after `sync`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxSnapshot {
    /// IMAP UIDVALIDITY.
    pub uid_validity: u32,
    /// IMAP UIDNEXT.
    pub uid_next: u32,
    /// CONDSTORE HIGHESTMODSEQ.
    pub highest_modseq: u64,
    /// Messages sorted by uid; a clone shares them (see [`MessageList`]).
    pub messages: MessageList,
}

/// What changed in a mailbox after a modseq (`Mailbox::changes_since`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxChanges {
    /// IMAP UIDNEXT now.
    pub uid_next: u32,
    /// HIGHESTMODSEQ now.
    pub highest_modseq: u64,
    /// Messages added or whose flags changed, sorted by uid.
    pub changed: Vec<MessageMeta>,
    /// UIDs expunged, sorted.
    pub expunged: Vec<u32>,
}

/// Counts of a mailbox (IMAP STATUS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    /// MESSAGES
    pub messages: u32,
    /// UNSEEN (messages without \Seen)
    pub unseen: u32,
    /// Messages with \Deleted (STATUS DELETED, RFC 9051)
    pub deleted: u32,
    /// RECENT (not yet claimed by any session)
    pub recent: u32,
    /// UIDNEXT
    pub uid_next: u32,
    /// UIDVALIDITY
    pub uid_validity: u32,
    /// HIGHESTMODSEQ (RFC 7162)
    pub highest_modseq: u64,
    /// SIZE (RFC 8438): sum of wire sizes
    pub size: u64,
}

/// One message's flags after a change: uid, flags, modseq.
pub type FlagChange = (u32, Vec<Flag>, u64);

/// A change notification. Events are hints that something changed: call `Mailbox::sync`
/// for the truth (a lagging receiver may miss events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxEvent {
    /// New messages were delivered or appended.
    NewMessages,
    /// Flags of these uids changed.
    FlagsChanged {
        /// Affected uids.
        uids: Vec<u32>,
        /// The modseq the change was given (the highest, when it was given several). A
        /// session that made the change itself knows it by this number and need not ask the
        /// store again (`imap::selected`).
        modseq: u64,
        /// Each message's new flags and modseq, when the sender knew them (a change made in
        /// this process): sessions apply them without asking the store. `None` for changes
        /// heard from other replicas or found on disk.
        known: Option<std::sync::Arc<[FlagChange]>>,
    },
    /// These uids were expunged.
    Expunged {
        /// Affected uids.
        uids: Vec<u32>,
    },
}

/// One stored Sieve script as ManageSieve LISTSCRIPTS shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SieveScriptInfo {
    /// The script's name (RFC 5804 rules, `store::check_script_name`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether delivery runs it (at most one script per account is active).
    pub active: bool,
}
