//! The IMAP command syntax tree: what a client asked for, after parsing and before any
//! mailbox is touched. It owns no behaviour; `parser/` builds it and `session`/`cmd/` act on
//! it. Names follow RFC 9051 section 6 (and the extension RFCs cited per variant) so a reader
//! can map each field to its grammar rule.

use super::sequence::SequenceSet;

/// One complete client command: the tag echoes back in the tagged reply (RFC 9051 2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// A message flag as the client spelled it. `\Recent` may appear in SEARCH/FETCH answers
/// only, so the parser rejects it in STORE/APPEND flag lists (RFC 9051 2.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// A keyword (atom) or a backslash flag we do not know (kept verbatim, e.g. `\Foo`).
    Keyword(String),
}

impl Flag {
    /// The wire spelling (`\Seen`, `$Forwarded`).
    pub fn as_str(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Keyword(k) => k,
        }
    }
}

/// `+FLAGS`, `-FLAGS`, `FLAGS` in STORE (RFC 9051 6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Add,
    Remove,
    Replace,
}

/// Everything a client can ask for, one variant per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    // any state (RFC 9051 6.1)
    Capability,
    Noop,
    Logout,
    /// RFC 2971.
    Id(Option<Vec<(String, Option<String>)>>),
    // not authenticated (6.2)
    StartTls,
    /// SASL; `initial` is the decoded SASL-IR initial response (RFC 4959); `Some(vec![])`
    /// is the explicit empty response `=`.
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        username: String,
        password: String,
    },
    // authenticated (6.3)
    /// RFC 5161.
    Enable(Vec<String>),
    Select {
        mailbox: String,
        params: SelectParams,
    },
    Examine {
        mailbox: String,
        params: SelectParams,
    },
    /// RFC 6154 CREATE-SPECIAL-USE: `USE (\Sent)`.
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete {
        mailbox: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Subscribe {
        mailbox: String,
    },
    Unsubscribe {
        mailbox: String,
    },
    /// RFC 5258 LIST-EXTENDED + RFC 5819 LIST-STATUS + RFC 6154 SPECIAL-USE.
    List(ListCommand),
    Lsub {
        reference: String,
        pattern: String,
    },
    /// RFC 2342.
    Namespace,
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    /// RFC 3502 MULTIAPPEND: one or more messages to one mailbox.
    Append {
        mailbox: String,
        messages: Vec<AppendMessage>,
    },
    /// RFC 2177.
    Idle,
    /// RFC 9208.
    GetQuota {
        root: String,
    },
    GetQuotaRoot {
        mailbox: String,
    },
    SetQuota {
        root: String,
    },
    // selected (6.4)
    Check,
    Close,
    /// RFC 3691.
    Unselect,
    /// `uids` is set for UID EXPUNGE (RFC 4315).
    Expunge {
        uids: Option<SequenceSet>,
    },
    Search(SearchCommand),
    /// RFC 5256.
    Sort(SortCommand),
    /// RFC 5256.
    Thread(ThreadCommand),
    Fetch(FetchCommand),
    Store(StoreCommand),
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    /// RFC 6851.
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
}

impl CommandBody {
    /// Upper-case command name for logs and replies ("FETCH", "UID FETCH").
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Capability => "CAPABILITY",
            CommandBody::Noop => "NOOP",
            CommandBody::Logout => "LOGOUT",
            CommandBody::Id(_) => "ID",
            CommandBody::StartTls => "STARTTLS",
            CommandBody::Authenticate { .. } => "AUTHENTICATE",
            CommandBody::Login { .. } => "LOGIN",
            CommandBody::Enable(_) => "ENABLE",
            CommandBody::Select { .. } => "SELECT",
            CommandBody::Examine { .. } => "EXAMINE",
            CommandBody::Create { .. } => "CREATE",
            CommandBody::Delete { .. } => "DELETE",
            CommandBody::Rename { .. } => "RENAME",
            CommandBody::Subscribe { .. } => "SUBSCRIBE",
            CommandBody::Unsubscribe { .. } => "UNSUBSCRIBE",
            CommandBody::List(_) => "LIST",
            CommandBody::Lsub { .. } => "LSUB",
            CommandBody::Namespace => "NAMESPACE",
            CommandBody::Status { .. } => "STATUS",
            CommandBody::Append { .. } => "APPEND",
            CommandBody::Idle => "IDLE",
            CommandBody::GetQuota { .. } => "GETQUOTA",
            CommandBody::GetQuotaRoot { .. } => "GETQUOTAROOT",
            CommandBody::SetQuota { .. } => "SETQUOTA",
            CommandBody::Check => "CHECK",
            CommandBody::Close => "CLOSE",
            CommandBody::Unselect => "UNSELECT",
            CommandBody::Expunge { uids: None } => "EXPUNGE",
            CommandBody::Expunge { uids: Some(_) } => "UID EXPUNGE",
            CommandBody::Search(s) if s.uid => "UID SEARCH",
            CommandBody::Search(_) => "SEARCH",
            CommandBody::Sort(s) if s.uid => "UID SORT",
            CommandBody::Sort(_) => "SORT",
            CommandBody::Thread(t) if t.uid => "UID THREAD",
            CommandBody::Thread(_) => "THREAD",
            CommandBody::Fetch(f) if f.uid => "UID FETCH",
            CommandBody::Fetch(_) => "FETCH",
            CommandBody::Store(s) if s.uid => "UID STORE",
            CommandBody::Store(_) => "STORE",
            CommandBody::Copy { uid: true, .. } => "UID COPY",
            CommandBody::Copy { .. } => "COPY",
            CommandBody::Move { uid: true, .. } => "UID MOVE",
            CommandBody::Move { .. } => "MOVE",
        }
    }
}

/// SELECT/EXAMINE parameters: CONDSTORE (RFC 7162 3.1.8) and QRESYNC (RFC 7162 3.2.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<QresyncParams>,
}

/// `QRESYNC (uidvalidity modseq [known-uids [(seq-match-data)]])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QresyncParams {
    pub uid_validity: u32,
    pub mod_seq: u64,
    pub known_uids: Option<SequenceSet>,
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// LIST with every RFC 5258 form; the basic `LIST ref pat` has empty options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCommand {
    pub reference: String,
    pub patterns: Vec<String>,
    pub select: ListSelect,
    pub ret: ListReturn,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSelect {
    pub subscribed: bool,
    pub remote: bool,
    pub recursive_match: bool,
    pub special_use: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListReturn {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    /// RFC 5819 `RETURN (STATUS (...))`.
    pub status: Vec<StatusItem>,
}

/// STATUS data items (RFC 9051 6.3.11, RFC 7162 MODSEQ = HIGHESTMODSEQ, RFC 9208 DELETED/SIZE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
    AppendLimit,
}

/// One message of an APPEND (RFC 3502 allows several per command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    /// date-time as seconds since the epoch (already converted from its zone).
    pub internal_date: Option<i64>,
    pub data: Vec<u8>,
    /// Sent as `~{n}` literal8 (RFC 3516): may contain NUL; must not be rejected as binary.
    pub binary: bool,
    /// Number of the literal within the command (0-based) that carried the message: a big
    /// one was streamed to a spool file and `data` is empty (see `session::SpooledLiteral`).
    pub literal: usize,
}

/// SEARCH / UID SEARCH with optional ESEARCH `RETURN (...)` (RFC 4731/9051).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCommand {
    pub uid: bool,
    pub charset: Option<String>,
    /// `None`: classic `* SEARCH` answer; `Some(v)`: ESEARCH answer (empty v means ALL).
    pub ret: Option<Vec<SearchReturn>>,
    pub key: SearchKey,
}

/// SORT / UID SORT (RFC 5256 3): criteria in priority order, then a search like SEARCH's
/// (the charset is mandatory in SORT's grammar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortCommand {
    pub uid: bool,
    pub criteria: Vec<SortCriterion>,
    pub charset: String,
    pub key: SearchKey,
}

/// THREAD / UID THREAD (RFC 5256 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCommand {
    pub uid: bool,
    pub algorithm: ThreadAlgorithm,
    pub charset: String,
    pub key: SearchKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

/// RFC 5256 sort keys plus DISPLAYFROM/DISPLAYTO (RFC 5957).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    /// RFC 5182 SEARCHRES.
    Save,
}

/// A search key (RFC 9051 6.4.4) plus MODSEQ (RFC 7162). A list of keys is an AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    SequenceSet(SequenceSet),
    Uid(SequenceSet),
    Flag(Flag),
    NotFlag(Flag),
    /// RFC 3501 only; kept so rev1 clients get an answer (we have no \Recent: never matches).
    Recent,
    New,
    Old,
    Header(String, String),
    Bcc(String),
    Cc(String),
    From(String),
    To(String),
    Subject(String),
    Body(String),
    Text(String),
    /// Dates are days since 1970-01-01 (no time, no zone: RFC 9051 says "disregarding time").
    Before(i64),
    On(i64),
    Since(i64),
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    Larger(u64),
    Smaller(u64),
    ModSeq(u64),
}

/// FETCH / UID FETCH with CONDSTORE/QRESYNC modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchCommand {
    pub uid: bool,
    pub set: SequenceSet,
    pub items: Vec<FetchItem>,
    /// RFC 7162 3.1.4.
    pub changed_since: Option<u64>,
    /// RFC 7162 3.2.6 (UID FETCH only).
    pub vanished: bool,
}

/// FETCH data items (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ). The macros
/// ALL/FAST/FULL are expanded by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Envelope,
    Flags,
    InternalDate,
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    /// `BODY` without section: the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    Uid,
    ModSeq,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    BinarySize {
        part: Vec<u32>,
    },
}

/// `section` of BODY[...]: part path (1.2.3) and an optional text specifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names, upper-cased as given order is kept for the response echo.
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// STORE / UID STORE (RFC 9051 6.4.6, RFC 7162 UNCHANGEDSINCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCommand {
    pub uid: bool,
    pub set: SequenceSet,
    pub unchanged_since: Option<u64>,
    pub op: StoreOp,
    pub silent: bool,
    pub flags: Vec<Flag>,
}
