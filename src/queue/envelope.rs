//! The envelope of a queued message: who sent it, to whom, and where each recipient
//! stands, as pretty-printed JSON an operator can read with `cat` (like chasquid's
//! queue items: inspectable, not a database).
//!
//! This file owns the on-disk format and nothing else: reading it back is pure
//! (`from_json`), and a file that does not parse is reported, never a panic. Times are
//! RFC 3339 UTC strings so that `cat` shows when the next attempt is due.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::smtp::status::{Code, Status};

use crate::accounts::Address;

/// A queue item id: 24 lowercase hex digits (creation time in microseconds plus 32
/// random bits; the spool also refuses to overwrite an existing id). Only `[0-9a-f]` so it is always a safe file name, even when it arrives
/// over the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

impl QueueId {
    /// A fresh id; ids sort by creation time.
    pub fn generate() -> QueueId {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let random: u32 = rand::random();
        QueueId(format!("{micros:016x}{random:08x}"))
    }

    /// Accept only what [`generate`](Self::generate) makes (no `/`, no `..`).
    pub fn parse(s: &str) -> Option<QueueId> {
        let ok = (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| QueueId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for QueueId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        QueueId::parse(&s).ok_or_else(|| format!("invalid queue id {s:?}"))
    }
}

impl From<QueueId> for String {
    fn from(id: QueueId) -> String {
        id.0
    }
}

/// Where the item as a whole stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    /// Due now or being delivered.
    Active,
    /// Waiting for its next attempt after a temporary failure.
    Deferred,
    /// Kept back by the operator until `release`.
    Hold,
}

impl ItemState {
    pub fn name(self) -> &'static str {
        match self {
            ItemState::Active => "active",
            ItemState::Deferred => "deferred",
            ItemState::Hold => "hold",
        }
    }
}

/// Where one recipient stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    Pending,
    Delivered,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecipient {
    #[serde(with = "address_text")]
    pub address: Address,
    pub status: RecipientStatus,
    /// The last reply (or local diagnostic) for this recipient, one line: what the
    /// operator reads in `queue show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// The same, typed: a delay warning reports its enhanced code and origin without
    /// reading them back out of `last_reply`. Absent in items spooled before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<Status>,
}

impl EnvelopeRecipient {
    /// Remember `status` as this recipient's last reply, in both forms.
    pub fn record(&mut self, status: &Status) {
        self.last_reply = Some(status.one_line());
        self.last_status = Some(status.clone());
    }

    /// The last status, for a DSN; an item from an older spool has only the text.
    pub fn last(&self) -> Status {
        match (&self.last_status, &self.last_reply) {
            (Some(status), _) => status.clone(),
            (None, text) => Status { code: Code::Local, enhanced: None, text: vec![text.clone().unwrap_or_default()] },
        }
    }
}

/// Everything about one queued message except its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: QueueId,
    /// The Message-ID header value, for `grep` across logs.
    pub message_id: String,
    /// `None` is the null sender `<>` (bounces: never bounced themselves).
    #[serde(with = "opt_address_text")]
    pub sender: Option<Address>,
    pub recipients: Vec<EnvelopeRecipient>,
    pub state: ItemState,
    pub attempts: u32,
    #[serde(with = "rfc3339")]
    pub created: SystemTime,
    #[serde(with = "rfc3339")]
    pub next_attempt: SystemTime,
    /// The delay warning DSN was sent (it is sent once).
    #[serde(default)]
    pub delay_warned: bool,
    /// RFC 8689 REQUIRETLS: deliver only over TLS with a validated certificate to a host
    /// that takes REQUIRETLS too, else bounce.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_tls: bool,
}

/// What a message asks of its delivery besides its envelope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemOptions {
    /// RFC 8689 REQUIRETLS (see [`Envelope::require_tls`]).
    pub require_tls: bool,
}

impl Envelope {
    pub fn new(id: QueueId, sender: Option<Address>, recipients: &[Address], message_id: &str) -> Envelope {
        let now = SystemTime::now();
        Envelope {
            id,
            message_id: message_id.to_string(),
            sender,
            recipients: recipients
                .iter()
                .map(|a| EnvelopeRecipient {
                    address: a.clone(),
                    status: RecipientStatus::Pending,
                    last_reply: None,
                    last_status: None,
                })
                .collect(),
            state: ItemState::Active,
            attempts: 0,
            created: now,
            next_attempt: now,
            delay_warned: false,
            require_tls: false,
        }
    }

    pub fn with_options(mut self, options: ItemOptions) -> Envelope {
        self.require_tls = options.require_tls;
        self
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data to a Vec cannot fail; fall back to an empty object so
        // that even an impossible error does not panic.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }

    pub fn from_json(bytes: &[u8]) -> Result<Envelope, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn pending(&self) -> impl Iterator<Item = &EnvelopeRecipient> {
        self.recipients.iter().filter(|r| r.status == RecipientStatus::Pending)
    }

    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.created).unwrap_or_default()
    }
}

/// `SystemTime` as an RFC 3339 UTC string.
pub fn format_time(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_time(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|dt| dt.with_timezone(&chrono::Utc).into())
}

mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_time(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        parse_time(&s).ok_or_else(|| D::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

mod address_text {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(a: &Address, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).map_err(|e| D::Error::custom(format!("{s:?}: {e}")))
    }
}

/// The null sender is written as `""` (what `<>` holds).
mod opt_address_text {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(a: &Option<Address>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.as_ref().map(|a| a.to_string()).unwrap_or_default())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        Address::parse(&s).map(Some).map_err(|e| D::Error::custom(format!("{s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_readable_json() {
        let id = QueueId::generate();
        let rcpts = [Address::parse("Bob@Remote.Test").unwrap(), Address::parse("carol@remote.test").unwrap()];
        let mut env = Envelope::new(id.clone(), Some(Address::parse("alice@here.test").unwrap()), &rcpts, "<m1@here>");
        env.recipients[1].status = RecipientStatus::Failed;
        env.recipients[1].last_reply = Some("550 5.1.1 unknown".into());
        env.state = ItemState::Deferred;
        env.attempts = 3;
        // Times are stored to the second.
        env.created = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        env.next_attempt = env.created + Duration::from_secs(300);
        let json = env.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"sender\": \"alice@here.test\""), "{text}");
        assert!(text.contains("\"address\": \"bob@remote.test\""), "{text}");
        assert!(text.contains("\"state\": \"deferred\""), "{text}");
        assert!(text.contains("\"next_attempt\": \"2027-01-15T08:05:00Z\""), "{text}");
        assert_eq!(Envelope::from_json(&json).unwrap(), env);
    }

    /// An item spooled by an earlier version, byte for byte: `"code": 0` is a local
    /// diagnostic, and items from before `last_status` existed have only the text.
    #[test]
    fn items_spooled_before_still_load() {
        let old = br#"{
  "id": "0123456789abcdef0123456789abcdef",
  "message_id": "<m1@here>",
  "sender": "alice@here.test",
  "recipients": [
    {
      "address": "bob@remote.test",
      "status": "pending",
      "last_reply": "4.4.1 connection refused",
      "last_status": {
        "code": 0,
        "enhanced": [
          4,
          4,
          1
        ],
        "text": [
          "connection refused"
        ]
      }
    },
    {
      "address": "carol@remote.test",
      "status": "failed",
      "last_reply": "550 5.1.1 unknown",
      "last_status": {
        "code": 550,
        "enhanced": [
          5,
          1,
          1
        ],
        "text": [
          "unknown"
        ]
      }
    },
    {
      "address": "dave@remote.test",
      "status": "pending",
      "last_reply": "451 greylisted"
    }
  ],
  "state": "deferred",
  "attempts": 3,
  "created": "2027-01-15T08:00:00Z",
  "next_attempt": "2027-01-15T08:05:00Z"
}
"#;
        let env = Envelope::from_json(old).unwrap();
        assert_eq!(env.recipients[0].last(), Status::local((4, 4, 1), "connection refused"));
        assert_eq!(env.recipients[1].last(), Status::new(550, (5, 1, 1), "unknown"));
        let text_only = env.recipients[2].last();
        assert_eq!(text_only.code, Code::Local);
        assert_eq!(text_only.one_line(), "451 greylisted");
        let json = String::from_utf8(env.to_json()).unwrap();
        assert!(json.contains("\"code\": 0,"), "{json}");
        assert!(json.contains("\"code\": 550,"), "{json}");
        assert_eq!(Envelope::from_json(json.as_bytes()).unwrap(), env);
    }

    #[test]
    fn null_sender_is_empty_string() {
        let env = Envelope::new(QueueId::generate(), None, &[Address::parse("x@y.test").unwrap()], "");
        let text = String::from_utf8(env.to_json()).unwrap();
        assert!(text.contains("\"sender\": \"\""));
        assert_eq!(Envelope::from_json(text.as_bytes()).unwrap().sender, None);
    }

    #[test]
    fn ids_are_safe_file_names() {
        let id = QueueId::generate();
        assert_eq!(QueueId::parse(id.as_str()), Some(id));
        for bad in ["", "../etc", "ABC", "a/b", "0123456789abcdef0123456789abcdef0"] {
            assert_eq!(QueueId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn garbage_in_never_panics() {
        let good = Envelope::new(QueueId::generate(), None, &[Address::parse("x@y.test").unwrap()], "<m>").to_json();
        for cut in 0..good.len() {
            let _ = Envelope::from_json(&good[..cut]);
            let mut flipped = good.clone();
            flipped[cut] ^= 0x5a;
            let _ = Envelope::from_json(&flipped);
        }
        assert!(Envelope::from_json(b"{\"id\": \"../x\"}").is_err());
    }
}
