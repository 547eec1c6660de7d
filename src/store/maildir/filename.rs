//! Maildir file names and the flag letters in them.
//!
//! Owns: generating unique names (`<secs>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<size>`, the
//! form Dovecot writes, so `S=` lets quota and Dovecot skip a `stat`), parsing names written
//! by anyone (Dovecot, Postfix `local`, mutt, mbsync), and the `:2,<letters>` info part with
//! letters sorted as the Maildir spec requires (D F P R S T). Pure, never panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::types::Flag;

const DRAFT: u8 = 1;
const FLAGGED: u8 = 2;
const PASSED: u8 = 4;
const REPLIED: u8 = 8;
const SEEN: u8 = 16;
const TRASHED: u8 = 32;

/// Maildir letters in the sorted order the spec requires, with their bits.
const LETTERS: [(char, u8); 6] =
    [('D', DRAFT), ('F', FLAGGED), ('P', PASSED), ('R', REPLIED), ('S', SEEN), ('T', TRASHED)];

/// The keyword that maps to the Maildir `P` ("passed") letter, as Dovecot maps it.
pub const FORWARDED: &str = "$Forwarded";

/// Flags of one message: the six Maildir letters as bits plus other keywords (sorted,
/// deduplicated; `$Forwarded` is the `P` bit, never in `keywords`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagSet {
    bits: u8,
    /// Interned (`keywords::intern`): a keyword on thousands of messages is one string.
    keywords: Vec<Arc<str>>,
}

impl FlagSet {
    /// Build from API flags.
    pub fn from_flags(flags: &[Flag]) -> FlagSet {
        let mut set = FlagSet::default();
        for f in flags {
            set.insert(f);
        }
        set
    }

    fn bit_of(flag: &Flag) -> Option<u8> {
        Some(match flag {
            Flag::Seen => SEEN,
            Flag::Answered => REPLIED,
            Flag::Flagged => FLAGGED,
            Flag::Deleted => TRASHED,
            Flag::Draft => DRAFT,
            Flag::Keyword(k) if k.eq_ignore_ascii_case(FORWARDED) => PASSED,
            Flag::Keyword(_) => return None,
        })
    }

    /// Add one flag.
    pub fn insert(&mut self, flag: &Flag) {
        match (Self::bit_of(flag), flag) {
            (Some(b), _) => self.bits |= b,
            // An IMAP atom never holds whitespace or controls (RFC 3501 9); such a keyword
            // could not be stored in the index or dovecot-keywords, so it is ignored.
            (None, Flag::Keyword(k)) if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) => {}
            (None, Flag::Keyword(k)) => {
                if let Err(pos) = self.keywords.binary_search(k) {
                    self.keywords.insert(pos, super::keywords::intern(k));
                }
            }
            (None, _) => {}
        }
    }

    /// Remove one flag.
    pub fn remove(&mut self, flag: &Flag) {
        match (Self::bit_of(flag), flag) {
            (Some(b), _) => self.bits &= !b,
            (None, Flag::Keyword(k)) => self.keywords.retain(|x| x != k),
            (None, _) => {}
        }
    }

    /// API flags, sorted.
    pub fn to_flags(&self) -> Vec<Flag> {
        let mut out = Vec::with_capacity(6 + self.keywords.len());
        for (bit, flag) in [
            (SEEN, Flag::Seen),
            (REPLIED, Flag::Answered),
            (FLAGGED, Flag::Flagged),
            (TRASHED, Flag::Deleted),
            (DRAFT, Flag::Draft),
        ] {
            if self.bits & bit != 0 {
                out.push(flag);
            }
        }
        if self.bits & PASSED != 0 {
            out.push(Flag::Keyword(super::keywords::intern(FORWARDED)));
        }
        out.extend(self.keywords.iter().cloned().map(Flag::Keyword));
        out.sort();
        out
    }

    /// The sorted Maildir letters (`"FS"`).
    pub fn letters(&self) -> String {
        LETTERS.iter().filter(|(_, b)| self.bits & b != 0).map(|(c, _)| *c).collect()
    }

    /// \Seen is set.
    pub fn is_seen(&self) -> bool {
        self.bits & SEEN != 0
    }

    /// \Deleted is set.
    pub fn is_deleted(&self) -> bool {
        self.bits & TRASHED != 0
    }

    /// The `P` letter (`$Forwarded`) is set.
    pub fn forwarded(&self) -> bool {
        self.bits & PASSED != 0
    }

    /// Keywords (without `$Forwarded`).
    pub fn keywords(&self) -> &[Arc<str>] {
        &self.keywords
    }

    /// Rebuild from index fields; keywords are re-sorted and filtered.
    pub fn from_parts<S: AsRef<str>>(letters: &str, keywords: impl IntoIterator<Item = S>) -> FlagSet {
        let mut set = FlagSet { bits: bits_from_letters(letters), keywords: Vec::new() };
        for k in keywords {
            set.insert(&Flag::Keyword(super::keywords::intern(k.as_ref())));
        }
        set
    }
}

fn bits_from_letters(info_flags: &str) -> u8 {
    info_flags.chars().filter_map(|c| LETTERS.iter().find(|(l, _)| *l == c).map(|(_, b)| *b)).fold(0, |acc, b| acc | b)
}

/// A parsed Maildir file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName<'a> {
    /// Everything before the first `:` (stable across flag changes).
    pub base: &'a str,
    /// The letters after `:2,`, if the name has an info part.
    pub flags: Option<&'a str>,
    /// `S=` physical size, if present in the base.
    pub size: Option<u64>,
    /// `W=` wire (CRLF) size, if present in the base.
    pub wire_size: Option<u64>,
}

/// Parse a file name from `cur/` or `new/`. `None` for names that are not messages
/// (hidden files, empty, names with TAB/CR/LF which our index cannot store).
pub fn parse_file_name(name: &str) -> Option<ParsedName<'_>> {
    if name.is_empty() || name.starts_with('.') || name.contains(['\t', '\n', '\r']) {
        return None;
    }
    let (base, info) = match name.find(':') {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    if base.is_empty() {
        return None;
    }
    let flags = info.and_then(|i| i.strip_prefix("2,"));
    Some(ParsedName { base, flags, size: extra_field(base, "S="), wire_size: extra_field(base, "W=") })
}

/// Value of a `,X=<digits>` field in the base name.
fn extra_field(base: &str, key: &str) -> Option<u64> {
    base.split(',').skip(1).find_map(|f| f.strip_prefix(key)).and_then(|v| v.parse().ok())
}

/// The name a message has in `cur/`: `<base>:2,<letters><other>` where `other` keeps
/// letters we do not interpret (Dovecot keyword letters a-z) so we never drop them.
pub fn cur_name(base: &str, flags: &FlagSet, other_letters: &str) -> String {
    let mut letters: Vec<char> = flags.letters().chars().collect();
    letters.extend(other_letters.chars().filter(|c| !c.is_ascii_uppercase()));
    letters.sort_unstable();
    letters.dedup();
    let mut s = String::with_capacity(base.len() + 3 + letters.len());
    s.push_str(base);
    s.push_str(":2,");
    s.extend(letters);
    s
}

/// Letters in an info string that are not one of our six (kept verbatim on rename).
pub fn other_letters(info_flags: Option<&str>) -> String {
    info_flags.unwrap_or("").chars().filter(|c| !LETTERS.iter().any(|(l, _)| l == c)).collect()
}

static DELIVERY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Escape the host part as Dovecot does (`/` -> `\057`, `:` -> `\072`), plus `,` which would
/// confuse `S=` parsing.
pub fn escape_host(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    for c in host.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            ',' => out.push_str("\\054"),
            c if c.is_control() || c == '\t' => {}
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

/// A fresh unique base name for a message of `size` bytes stored in CRLF form (so `S=`
/// and `W=` are equal). Unique within the process by the counter `Q<n>`, across processes
/// by the pid and microsecond clock (and the caller creates the file with O_EXCL).
pub fn new_base_name(escaped_host: &str, size: u64) -> String {
    new_base_name_sizes(escaped_host, size, size)
}

/// As [`new_base_name`] for a file whose physical size (`S=`) differs from its wire size
/// (`W=`): a copied LF-only foreign file.
pub fn new_base_name_sizes(escaped_host: &str, physical: u64, wire: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let q = DELIVERY_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{},S={},W={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        q,
        escaped_host,
        physical,
        wire
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_letters() {
        let flags = vec![
            Flag::Seen,
            Flag::Keyword("$Forwarded".into()),
            Flag::Draft,
            Flag::Keyword("$Junk".into()),
            Flag::Flagged,
            Flag::Answered,
            Flag::Deleted,
        ];
        let set = FlagSet::from_flags(&flags);
        assert_eq!(set.letters(), "DFPRST");
        assert_eq!(set.keywords(), [std::sync::Arc::<str>::from("$Junk")]);
        let back = FlagSet::from_parts(&set.letters(), set.keywords().to_vec());
        assert_eq!(back, set);
        let mut sorted = flags.clone();
        sorted.sort();
        assert_eq!(set.to_flags(), sorted);
        assert_eq!(FlagSet::from_flags(&[Flag::Seen]).letters(), "S");
        let odd = FlagSet::from_flags(&[Flag::Keyword("a b".into()), Flag::Keyword("".into())]);
        assert_eq!(odd, FlagSet::default());
    }

    #[test]
    fn parse_our_names_and_foreign_ones() {
        let base = new_base_name(&escape_host("mx/1:a,b"), 1234);
        assert!(base.contains(".mx\\0571\\072a\\054b,S=1234,W=1234"));
        let name = cur_name(&base, &FlagSet::from_flags(&[Flag::Seen, Flag::Flagged]), "");
        let p = parse_file_name(&name).unwrap();
        assert_eq!(p.base, base);
        assert_eq!(p.flags, Some("FS"));
        assert_eq!((p.size, p.wire_size), (Some(1234), Some(1234)));

        // Postfix local(8): no sizes, no info.
        let p = parse_file_name("1700000000.V801I2dM12345.host").unwrap();
        assert_eq!((p.flags, p.size, p.wire_size), (None, None, None));
        // Dovecot with keyword letters.
        let p = parse_file_name("1.M2P3.h,S=10,W=12:2,Sab").unwrap();
        assert_eq!((p.size, p.wire_size, p.flags), (Some(10), Some(12), Some("Sab")));
        assert_eq!(other_letters(p.flags), "ab");
        let renamed = cur_name(p.base, &FlagSet::from_flags(&[Flag::Flagged]), "ab");
        assert_eq!(renamed, "1.M2P3.h,S=10,W=12:2,Fab");
        for skip in ["", ".hidden", ":2,S", "a\tb", "a\nb"] {
            assert_eq!(parse_file_name(skip), None, "{skip:?}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(new_base_name("h", 1)));
        }
    }

    #[test]
    fn garbage_in() {
        let mut seed = 7u32;
        for len in 0..300 {
            let s: String = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    ":,2SW=0123456789.aZ\u{e4}".chars().nth((seed >> 16) as usize % 20).unwrap_or('x')
                })
                .collect();
            if let Some(p) = parse_file_name(&s) {
                let _ = FlagSet::from_parts(p.flags.unwrap_or(""), Vec::<String>::new());
            }
        }
    }
}
