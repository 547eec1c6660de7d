//! Folder names: modified UTF-7 (RFC 3501 section 5.1.3) and the API name <-> Maildir++
//! directory mapping.
//!
//! Owns: the only place that turns a UTF-8 folder name such as `"Ärger/2024"` into the
//! on-disk directory `.&AMQ-rger.2024`, exactly as Dovecot's default Maildir++ layout does,
//! and back. IMAP reuses [`encode_mutf7`] / [`decode_mutf7`] for clients that do not enable
//! UTF8=ACCEPT. Pure functions, no I/O; never panics on any input.

use base64::Engine as _;

/// Why a modified UTF-7 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mutf7Error {
    /// A `&` shift sequence without its closing `-`.
    #[error("unterminated base64 sequence")]
    Unterminated,
    /// The base64 inside `&...-` is malformed or not valid UTF-16.
    #[error("invalid base64 sequence")]
    BadBase64,
    /// A byte outside printable US-ASCII appeared outside a shift sequence.
    #[error("raw non-ASCII or control character")]
    RawNonAscii,
}

/// RFC 3501: base64 with `,` instead of `/` and no padding.
const MUTF7_B64: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::IMAP_MUTF7, base64::engine::general_purpose::NO_PAD);

/// Encode UTF-8 into modified UTF-7: printable ASCII stays as is (`&` becomes `&-`),
/// everything else becomes `&<base64 of UTF-16BE>-`.
pub fn encode_mutf7(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&MUTF7_B64.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decode modified UTF-7 into UTF-8. Lenient where RFC 3501 says "MUST NOT be generated"
/// (adjacent shift sequences) but strict on anything that cannot be decoded.
pub fn decode_mutf7(s: &str) -> Result<String, Mutf7Error> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        let (plain, tail) = rest.split_at(pos);
        push_plain(plain, &mut out)?;
        let tail = &tail[1..];
        let end = tail.find('-').ok_or(Mutf7Error::Unterminated)?;
        let b64 = &tail[..end];
        if b64.is_empty() {
            out.push('&');
        } else {
            let bytes = MUTF7_B64.decode(b64).map_err(|_| Mutf7Error::BadBase64)?;
            if bytes.len() % 2 != 0 {
                return Err(Mutf7Error::BadBase64);
            }
            let units: Vec<u16> = bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
            let decoded = String::from_utf16(&units).map_err(|_| Mutf7Error::BadBase64)?;
            out.push_str(&decoded);
        }
        rest = &tail[end + 1..];
    }
    push_plain(rest, &mut out)?;
    Ok(out)
}

fn push_plain(plain: &str, out: &mut String) -> Result<(), Mutf7Error> {
    if plain.bytes().any(|b| !(0x20..=0x7e).contains(&b)) {
        return Err(Mutf7Error::RawNonAscii);
    }
    out.push_str(plain);
    Ok(())
}

/// Hierarchy separator in the API (what IMAP LIST shows).
pub const API_SEPARATOR: char = '/';
/// Hierarchy separator on disk (Maildir++).
pub const DISK_SEPARATOR: char = '.';
/// The first component of INBOX's children, `INBOX/x` -> `.INBOX.x` (as Dovecot does).
const INBOX_COMPONENT: &str = "INBOX";
const INBOX_DISK: &str = ".INBOX";
/// Longest on-disk directory name we create (file system NAME_MAX is 255).
const MAX_DISK_NAME: usize = 200;

/// Where a folder lives: the Maildir root (INBOX) or a `.Name` directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FolderPath {
    /// The account's Maildir root.
    Inbox,
    /// A Maildir++ folder; the string is the directory name including the leading dot.
    Folder(String),
}

impl FolderPath {
    /// Parse an API name (`"INBOX"` case-insensitive, `"a/b"`) into its on-disk location.
    ///
    /// Refuses empty components (`"a//b"`, `"/a"`), `.` inside a component (it is the
    /// Maildir++ separator and Dovecot refuses it too), control characters and names too
    /// long for a directory.
    pub fn from_api(name: &str) -> Result<FolderPath, crate::store::StoreError> {
        let bad = || crate::store::StoreError::InvalidFolderName(name.to_string());
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok(FolderPath::Inbox);
        }
        let mut disk = String::with_capacity(name.len() + 1);
        for (i, comp) in name.split(API_SEPARATOR).enumerate() {
            if comp.is_empty() || comp.contains(DISK_SEPARATOR) || comp.chars().any(|c| c.is_control()) {
                return Err(bad());
            }
            disk.push(DISK_SEPARATOR);
            // `INBOX/x`: the INBOX part is case-insensitive (RFC 3501 5.1); keep it canonical.
            if i == 0 && comp.eq_ignore_ascii_case("INBOX") {
                disk.push_str(INBOX_COMPONENT);
            } else {
                disk.push_str(&encode_mutf7(comp));
            }
        }
        if disk.len() > MAX_DISK_NAME {
            return Err(bad());
        }
        Ok(FolderPath::Folder(disk))
    }

    /// Parse an on-disk directory name (`.Sent`, `.&AMQ-rger.2024`). `None` for names that
    /// are not folders (`.`, `..`, bad encoding, empty components, our own temp names), and
    /// for `.INBOX`: INBOX is the Maildir root, and a `.INBOX` directory (the parent an
    /// `INBOX/child` used to get) would make LIST show INBOX twice.
    pub fn from_disk(dir_name: &str) -> Option<FolderPath> {
        let body = dir_name.strip_prefix(DISK_SEPARATOR)?;
        if body.is_empty() || body.starts_with(DISK_SEPARATOR) || body == INBOX_COMPONENT {
            return None;
        }
        for comp in body.split(DISK_SEPARATOR) {
            let decoded = decode_mutf7(comp).ok()?;
            if decoded.is_empty() || decoded.contains(API_SEPARATOR) {
                return None;
            }
        }
        Some(FolderPath::Folder(dir_name.to_string()))
    }

    /// The UTF-8 API name.
    pub fn api_name(&self) -> String {
        match self {
            FolderPath::Inbox => "INBOX".to_string(),
            FolderPath::Folder(disk) => disk
                .trim_start_matches(DISK_SEPARATOR)
                .split(DISK_SEPARATOR)
                .map(|c| decode_mutf7(c).unwrap_or_else(|_| c.to_string()))
                .collect::<Vec<_>>()
                .join("/"),
        }
    }

    /// The on-disk directory name (`"INBOX"` for the root, used for index file names).
    pub fn disk_name(&self) -> &str {
        match self {
            FolderPath::Inbox => "INBOX",
            FolderPath::Folder(d) => d,
        }
    }

    /// The source and target of a RENAME, refused as every backend refuses them: a target
    /// of INBOX exists already; renaming a folder to itself or below itself is invalid
    /// (INBOX may be renamed below itself: only its messages move, RFC 3501 6.3.5).
    pub fn for_rename(from: &str, to: &str) -> Result<(FolderPath, FolderPath), crate::store::StoreError> {
        let src = FolderPath::from_api(from)?;
        let dst = FolderPath::from_api(to)?;
        if dst.is_inbox() {
            return Err(crate::store::StoreError::FolderExists(to.to_string()));
        }
        if src == dst || (!src.is_inbox() && src.is_ancestor_of(&dst)) {
            return Err(crate::store::StoreError::InvalidFolderName(to.to_string()));
        }
        Ok((src, dst))
    }

    /// True for INBOX.
    pub fn is_inbox(&self) -> bool {
        matches!(self, FolderPath::Inbox)
    }

    /// The parent folder (`.a.b` -> `.a`, `.INBOX.a` -> INBOX), `None` at the top level.
    pub fn parent(&self) -> Option<FolderPath> {
        match self {
            FolderPath::Inbox => None,
            FolderPath::Folder(d) => {
                let idx = d.rfind(DISK_SEPARATOR)?;
                if idx == 0 {
                    return None;
                }
                let parent = &d[..idx];
                Some(match parent.strip_prefix(DISK_SEPARATOR) {
                    Some(INBOX_COMPONENT) => FolderPath::Inbox,
                    _ => FolderPath::Folder(parent.to_string()),
                })
            }
        }
    }

    /// True when `other` is below `self` (`.a` contains `.a.b` but not `.ab`; INBOX, the
    /// Maildir root, contains `.INBOX.x`: RFC 3501 5.1 lets INBOX have children).
    pub fn is_ancestor_of(&self, other: &FolderPath) -> bool {
        let a = match self {
            FolderPath::Inbox => INBOX_DISK,
            FolderPath::Folder(a) => a.as_str(),
        };
        match other {
            FolderPath::Folder(b) => b.len() > a.len() && b.starts_with(a) && b.as_bytes().get(a.len()) == Some(&b'.'),
            FolderPath::Inbox => false,
        }
    }

    /// The subscriptions-file form: mUTF-7 components separated by TAB (Dovecot's
    /// `subscriptions` version 2 format).
    pub fn subscription_name(&self) -> String {
        match self {
            FolderPath::Inbox => "INBOX".to_string(),
            FolderPath::Folder(d) => d.trim_start_matches(DISK_SEPARATOR).replace(DISK_SEPARATOR, "\t"),
        }
    }

    /// Parse one line of a subscriptions file (version 2 TAB form, or version 1 with `.`).
    pub fn from_subscription_name(line: &str) -> Option<FolderPath> {
        if line.eq_ignore_ascii_case("INBOX") {
            return Some(FolderPath::Inbox);
        }
        let disk = format!(".{}", line.replace('\t', "."));
        FolderPath::from_disk(&disk)
    }
}

impl PartialOrd for FolderPath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FolderPath {
    /// INBOX first, then by on-disk name (parents before children).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (FolderPath::Inbox, FolderPath::Inbox) => std::cmp::Ordering::Equal,
            (FolderPath::Inbox, _) => std::cmp::Ordering::Less,
            (_, FolderPath::Inbox) => std::cmp::Ordering::Greater,
            (FolderPath::Folder(a), FolderPath::Folder(b)) => a.cmp(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_vectors() {
        // RFC 3501 section 5.1.3 example.
        assert_eq!(decode_mutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(), "~peter/mail/台北/日本語");
        assert_eq!(encode_mutf7("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode_mutf7("&Jjo-!").unwrap(), "☺!");
        assert_eq!(encode_mutf7("☺!"), "&Jjo-!");
        assert_eq!(encode_mutf7("a&b"), "a&-b");
        assert_eq!(decode_mutf7("a&-b").unwrap(), "a&b");
        // Dovecot's own encoding, checked with doveadm 2.3.19.
        assert_eq!(encode_mutf7("Ärger"), "&AMQ-rger");
        // Astral plane: surrogate pair.
        assert_eq!(decode_mutf7(&encode_mutf7("📬 Post")).unwrap(), "📬 Post");
    }

    #[test]
    fn bad_mutf7_is_an_error_not_a_panic() {
        assert_eq!(decode_mutf7("&Jjo"), Err(Mutf7Error::Unterminated));
        assert_eq!(decode_mutf7("&J-"), Err(Mutf7Error::BadBase64));
        assert_eq!(decode_mutf7("é"), Err(Mutf7Error::RawNonAscii));
        assert!(decode_mutf7("&2D0-").is_err()); // lone surrogate
    }

    #[test]
    fn garbage_in() {
        let mut seed = 0x1234_5678u32;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    b"&-AZaz09+,/.\t\x7f\xc3\xa4~"[(seed >> 16) as usize % 17]
                })
                .collect();
            let s = String::from_utf8_lossy(&bytes);
            let _ = decode_mutf7(&s);
            let _ = FolderPath::from_disk(&s);
            let _ = FolderPath::from_api(&s);
            let _ = FolderPath::from_subscription_name(&s);
            assert_eq!(decode_mutf7(&encode_mutf7(&s)).unwrap(), s);
        }
    }

    #[test]
    fn api_to_disk_and_back() {
        assert_eq!(FolderPath::from_api("inbox").unwrap(), FolderPath::Inbox);
        let p = FolderPath::from_api("Ärger/Über").unwrap();
        assert_eq!(p.disk_name(), ".&AMQ-rger.&ANw-ber");
        assert_eq!(p.api_name(), "Ärger/Über");
        assert_eq!(p.subscription_name(), "&AMQ-rger\t&ANw-ber");
        assert_eq!(FolderPath::from_subscription_name("&AMQ-rger\t&ANw-ber"), Some(p.clone()));
        assert_eq!(p.parent(), Some(FolderPath::from_api("Ärger").unwrap()));
        assert!(FolderPath::from_api("Ärger").unwrap().is_ancestor_of(&p));
        assert!(!FolderPath::from_api("Ä").unwrap().is_ancestor_of(&p));
        assert_eq!(FolderPath::from_api("inbox/x").unwrap().disk_name(), ".INBOX.x");
        for bad in ["", "/", "a//b", "/a", "a/", "a.b", "a\nb", "a\0b"] {
            assert!(FolderPath::from_api(bad).is_err(), "{bad:?}");
        }
        assert_eq!(FolderPath::from_disk("."), None);
        assert_eq!(FolderPath::from_disk(".."), None);
        assert_eq!(FolderPath::from_disk("cur"), None);
        assert_eq!(FolderPath::from_disk(".a..b"), None);
        assert_eq!(FolderPath::from_disk(".&Jjo"), None);
    }

    /// RFC 3501 5.1: INBOX may have children; they hang off the Maildir root, which is
    /// INBOX itself, so there is never a second, `.INBOX` folder.
    #[test]
    fn inbox_children_belong_to_the_root() {
        let child = FolderPath::from_api("INBOX/child").unwrap();
        assert_eq!(child.parent(), Some(FolderPath::Inbox));
        assert!(FolderPath::Inbox.is_ancestor_of(&child));
        assert!(!FolderPath::Inbox.is_ancestor_of(&FolderPath::from_api("INBOXes").unwrap()));
        assert_eq!(FolderPath::from_disk(".INBOX"), None);
        assert_eq!(FolderPath::from_disk(".INBOX.child"), Some(child));
        assert_eq!(FolderPath::from_api("INBOX/a/b").unwrap().parent(), Some(FolderPath::from_api("inbox/a").unwrap()));
    }
}
