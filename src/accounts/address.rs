//! Mail addresses in the one normal form the rest of mailroom compares.
//!
//! This file owns what an address *is* for us: a local part (lower-cased, because like
//! Postfix we match local parts case-insensitively and no user wants `Alice@` and `alice@`
//! to be two mailboxes) and a domain (lower-cased, IDN converted to punycode, so that
//! `bücher.example` and `xn--bcher-kva.example` are the same domain). It is pure and never
//! panics: SMTP hands it whatever a client wrote in `RCPT TO:<…>`.
//!
//! Deliberately refused, with a reason each:
//! - source routes `@a:b@c` (RFC 5321 §4.1.2 says to accept and ignore them, but nobody
//!   legitimate sends them any more and they were the classic open-relay trick);
//! - quoted local parts that unquote to something with `@` (`"a@b"@c`), spaces or control
//!   characters, because the unquoted form is what we store, log and use as a Maildir
//!   folder name: it must not be ambiguous when printed as `local@domain`;
//! - address literals `user@[192.0.2.1]`: we only serve named domains;
//! - local parts over 64 octets and domains over 255 (RFC 5321 §4.5.3.1).
//!
//! `%` is not special (the old `user%host@relay` hack is just a character here), and UTF-8
//! local parts are accepted (RFC 6531, SMTPUTF8).

use std::fmt;
use std::str::FromStr;

/// Longest input we even look at: 64 + 1 + 255 plus room for quoting. Anything longer is
/// refused before IDNA processing, which is not free.
const MAX_INPUT: usize = 512;
/// RFC 5321 §4.5.3.1.1.
const MAX_LOCAL: usize = 64;
/// RFC 5321 §4.5.3.1.2.
const MAX_DOMAIN: usize = 255;

/// A normalised address. `Display` prints `local@domain`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// Lower-cased local part, unquoted.
    pub local: String,
    /// Lower-cased ASCII (punycode) domain.
    pub domain: String,
}

/// Why a string is not an address we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is longer than {MAX_INPUT} octets")]
    TooLong,
    #[error("address has no @domain")]
    MissingAt,
    #[error("source routes (@host:…) are not accepted")]
    SourceRoute,
    #[error("local part is empty")]
    EmptyLocal,
    #[error("local part is longer than {MAX_LOCAL} octets")]
    LocalTooLong,
    #[error("local part contains {0:?}, which is not allowed")]
    BadLocalChar(char),
    #[error("local part starts or ends with a dot or has two dots in a row")]
    BadDot,
    #[error("quoted local part is not terminated")]
    UnterminatedQuote,
    #[error("quoted local part contains @")]
    QuotedAt,
    #[error("domain is empty")]
    EmptyDomain,
    #[error("domain is longer than {MAX_DOMAIN} octets")]
    DomainTooLong,
    #[error("domain is not a valid host name")]
    BadDomain,
    #[error("address literals like [192.0.2.1] are not supported")]
    AddressLiteral,
}

impl Address {
    /// Parse and normalise `local@domain` (see the module doc for what is refused).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > MAX_INPUT {
            return Err(AddressError::TooLong);
        }
        if let Some(rest) = s.strip_prefix('@') {
            return Err(if rest.contains(':') { AddressError::SourceRoute } else { AddressError::EmptyLocal });
        }
        let (raw_local, domain) = if let Some(quoted) = s.strip_prefix('"') {
            let (local, after) = unquote(quoted)?;
            let domain = after.strip_prefix('@').ok_or(match after.chars().next() {
                None => AddressError::MissingAt,
                Some(c) => AddressError::BadLocalChar(c),
            })?;
            if local.contains('@') {
                return Err(AddressError::QuotedAt);
            }
            (local, domain)
        } else {
            let (local, domain) = s.split_once('@').ok_or(AddressError::MissingAt)?;
            (local.to_string(), domain)
        };
        let local = normalise_local(&raw_local)?;
        let domain = normalise_domain(domain)?;
        Ok(Address { local, domain })
    }

    /// `user+tag@d` -> `user@d` (subaddressing, RFC 5233 style with `+` as the separator).
    /// `None` when there is no tag or nothing before the `+`.
    pub fn without_subaddress(&self) -> Option<Address> {
        let (base, _tag) = self.local.split_once('+')?;
        if base.is_empty() {
            return None;
        }
        Some(Address { local: base.to_string(), domain: self.domain.clone() })
    }

    /// The same local part in another domain (alias domains rewrite this way).
    pub fn with_domain(&self, domain: &str) -> Address {
        Address { local: self.local.clone(), domain: domain.to_string() }
    }
}

/// Byte index of the first `target` outside a quoted string (`"…"`, with `\\` escapes
/// inside quotes), as in RFC 5321 quoted local parts: `"a:b>c"@d` hides its `:` and `>`.
pub fn find_outside_quotes(s: &str, target: char) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            c if c == target && !in_quote => return Some(i),
            _ => {}
        }
    }
    None
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{self}>")
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

/// Normalise a bare domain (`MAILROOM_DOMAINS`, `@domain` alias rules, the part after `@`):
/// lower-case, IDN to punycode, STD3 host-name rules, at most 255 octets.
pub fn normalise_domain(domain: &str) -> Result<String, AddressError> {
    if domain.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if domain.starts_with('[') {
        return Err(AddressError::AddressLiteral);
    }
    if domain.len() > MAX_INPUT || (domain.is_ascii() && domain.len() > MAX_DOMAIN) {
        return Err(AddressError::DomainTooLong);
    }
    if domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AddressError::BadDomain);
    }
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| AddressError::BadDomain)?;
    if ascii.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if ascii.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong);
    }
    // An all-numeric last label is an IPv4 address written without brackets (RFC 1123
    // §2.1: top-level names are alphabetic); we do not serve address literals.
    if ascii.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(AddressError::BadDomain);
    }
    // strict mode already lower-cases ASCII; keep the invariant explicit and cheap.
    Ok(ascii.to_ascii_lowercase())
}

/// Read a quoted local part after its opening `"`: returns the unescaped content and the
/// rest of the input after the closing quote. RFC 5321 §4.1.2 `Quoted-string`.
fn unquote(s: &str) -> Result<(String, &str), AddressError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + c.len_utf8()..])),
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => return Err(AddressError::UnterminatedQuote),
            },
            _ => out.push(c),
        }
    }
    Err(AddressError::UnterminatedQuote)
}

/// RFC 5322 `atext` plus UTF-8 (RFC 6531), as a dot-atom: no leading, trailing or doubled
/// dots. Applied to quoted local parts *after* unquoting, so `"john"@x` is fine and
/// `"john doe"@x` is not.
fn normalise_local(local: &str) -> Result<String, AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocal);
    }
    for c in local.chars() {
        let ok = if c.is_ascii() {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        } else {
            !c.is_control() && !c.is_whitespace()
        };
        if !ok {
            return Err(AddressError::BadLocalChar(c));
        }
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::BadDot);
    }
    let lower = local.to_lowercase();
    if lower.len() > MAX_LOCAL || local.len() > MAX_LOCAL {
        return Err(AddressError::LocalTooLong);
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        match Address::parse(s) {
            Ok(a) => a.to_string(),
            Err(e) => format!("ERR {e}"),
        }
    }

    #[test]
    fn normalisation_table() {
        let table: &[(&str, &str)] = &[
            ("alice@example.com", "alice@example.com"),
            ("Alice@Example.COM", "alice@example.com"),
            ("ALICE.Smith@example.com", "alice.smith@example.com"),
            ("user+tag@example.com", "user+tag@example.com"),
            ("a%b@example.com", "a%b@example.com"),
            ("o'brien@example.com", "o'brien@example.com"),
            ("info@bücher.example", "info@xn--bcher-kva.example"),
            ("info@BÜCHER.example", "info@xn--bcher-kva.example"),
            ("info@xn--bcher-kva.example", "info@xn--bcher-kva.example"),
            ("Jörg@example.com", "jörg@example.com"),
            ("\"john\"@example.com", "john@example.com"),
            ("\"John.Smith\"@example.com", "john.smith@example.com"),
            ("\"j\\ohn\"@example.com", "john@example.com"),
            ("root@localhost", "root@localhost"),
        ];
        for (input, want) in table {
            assert_eq!(ok(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn rejection_table() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.example", "b".repeat(64));
        let long_domain = format!("a@{}example", "abcdefghi.".repeat(26));
        let huge = "a".repeat(10_000);
        let table: Vec<(&str, AddressError)> = vec![
            ("", AddressError::Empty),
            ("alice", AddressError::MissingAt),
            ("alice@", AddressError::EmptyDomain),
            ("@example.com", AddressError::EmptyLocal),
            ("@a.example:b@c.example", AddressError::SourceRoute),
            ("@a,@b:user@c.example", AddressError::SourceRoute),
            ("a b@example.com", AddressError::BadLocalChar(' ')),
            ("a\tb@example.com", AddressError::BadLocalChar('\t')),
            ("a\r\n@example.com", AddressError::BadLocalChar('\r')),
            ("a@b@example.com", AddressError::BadDomain),
            ("a:b@example.com", AddressError::BadLocalChar(':')),
            (".alice@example.com", AddressError::BadDot),
            ("alice.@example.com", AddressError::BadDot),
            ("al..ice@example.com", AddressError::BadDot),
            ("\"a@b\"@example.com", AddressError::QuotedAt),
            ("\"john doe\"@example.com", AddressError::BadLocalChar(' ')),
            ("\"john@example.com", AddressError::UnterminatedQuote),
            ("\"john\\", AddressError::UnterminatedQuote),
            ("\"john\"x@example.com", AddressError::BadLocalChar('x')),
            ("\"john\"", AddressError::MissingAt),
            ("\"\"@example.com", AddressError::EmptyLocal),
            ("a@[192.0.2.1]", AddressError::AddressLiteral),
            ("a@exa mple.com", AddressError::BadDomain),
            ("a@example..com", AddressError::BadDomain),
            ("a@exam_ple.com", AddressError::BadDomain),
            ("a@192.0.2.1", AddressError::BadDomain),
            ("a@example.com.", AddressError::BadDomain),
            ("a@-example.com", AddressError::BadDomain),
            (long_local.as_str(), AddressError::LocalTooLong),
            (long_label.as_str(), AddressError::BadDomain),
            (long_domain.as_str(), AddressError::DomainTooLong),
            (huge.as_str(), AddressError::TooLong),
        ];
        for (input, want) in table {
            assert_eq!(Address::parse(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let local64 = format!("{}@example.com", "a".repeat(64));
        assert!(Address::parse(&local64).is_ok());
    }

    #[test]
    fn subaddress_and_domain_rewrite() {
        let a = Address::parse("Bob+Lists@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.without_subaddress().map(|b| b.to_string()), Some("bob@example.com".to_string()));
        let plain = Address::parse("bob@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.without_subaddress(), None);
        let leading = Address::parse("+tag@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(leading.without_subaddress(), None);
        assert_eq!(plain.with_domain("b.example").to_string(), "bob@b.example");
    }

    #[test]
    fn display_and_debug() {
        let a: Address = "X@Y.example".parse().unwrap_or_else(|e: AddressError| panic!("{e}"));
        assert_eq!(format!("{a}"), "x@y.example");
        assert_eq!(format!("{a:?}"), "<x@y.example>");
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let alphabet: Vec<char> = "aZ9.@\"\\:[]% +-\t\r\n\0üß.xn--é😀,;<>()".chars().collect();
        let sample = "\"quoted\\\"x\"@bücher.example";
        for round in 0..20_000 {
            let len = (crate::testing::xorshift(&mut seed) % 40) as usize;
            let s: String = (0..len)
                .map(|i| {
                    let k = (seed.rotate_left(i as u32 * 7) % alphabet.len() as u64) as usize;
                    alphabet[k]
                })
                .collect();
            let _ = Address::parse(&s);
            // truncations of a valid, tricky address at every char boundary
            let cut = round % (sample.chars().count() + 1);
            let truncated: String = sample.chars().take(cut).collect();
            let _ = Address::parse(&truncated);
        }
    }
}
