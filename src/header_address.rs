//! The ONE parser for the addresses in message header fields (`From`, `Sender`,
//! `Resent-*`, `To`, `Cc`, ...): RFC 5322 §3.4 `address-list` with comments and folding
//! whitespace (CFWS), quoted strings, group syntax, domain literals and the obsolete forms
//! of §4.4 (routes, CFWS around dots, empty list elements), UTF-8 per RFC 6532.
//!
//! Why one parser: a forger wins whenever two readers of the same `From:` disagree. Port
//! 25 judges DMARC by the author domains found here (`mailauth::verify`), submission checks
//! ownership of `From`/`Sender`/`Resent-*` with it (`smtp::submit`), and the IMAP ENVELOPE
//! that mail clients display is rendered from it (`imap::render::envelope`) — so the domain
//! a policy was checked for is the domain the reader sees. Domains are lower-cased and lose
//! a trailing dot (`Rejecter.Example.` is `rejecter.example`); comments vanish
//! (`ceo@(x)rejecter.example` is `ceo@rejecter.example`).
//!
//! Parsing is total: hostile input yields what could be read plus `well_formed = false`,
//! never a panic. Display uses what was read; judgements ([`authors`], [`owned_addresses`])
//! refuse anything that is not well-formed.

use crate::imap::render::mime::header_fields;

/// One mailbox as written: `name <local@domain>` or `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name (quoted strings unquoted, words joined by one space, RFC 2047
    /// encoded words left as they are for the reader to decode).
    pub name: Option<String>,
    /// The local part, unquoted; case kept.
    pub local: String,
    /// Lower-cased, without a trailing dot; `None` when the address had no `@domain`.
    pub domain: Option<String>,
    /// The obsolete source route of `<@a.example,@b.example:local@domain>` (RFC 5322
    /// §4.4 obs-route) as `@a.example,@b.example`. Only the IMAP ENVELOPE shows it (its
    /// `adl` field, RFC 3501 §7.4.2); the address judged for DMARC and ownership is
    /// `local@domain`, wherever the route points.
    pub route: Option<String>,
}

impl Mailbox {
    /// `local@domain` (or just `local` without a domain).
    pub fn address(&self) -> String {
        match &self.domain {
            Some(d) => format!("{}@{d}", self.local),
            None => self.local.clone(),
        }
    }
}

/// One element of an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Mailbox(Mailbox),
    /// `name: member, member;` (RFC 5322 §3.4; RFC 6854 allows it in `From` too).
    Group {
        name: String,
        members: Vec<Mailbox>,
    },
}

/// The parsed value of an address field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressList {
    pub entries: Vec<Entry>,
    /// Every byte was valid (obsolete) RFC 5322 syntax and every mailbox has a domain.
    pub well_formed: bool,
}

impl AddressList {
    /// All mailboxes, group members included, in order.
    pub fn mailboxes(&self) -> impl Iterator<Item = &Mailbox> {
        self.entries.iter().flat_map(|e| match e {
            Entry::Mailbox(m) => std::slice::from_ref(m),
            Entry::Group { members, .. } => members.as_slice(),
        })
    }
}

/// Most distinct author domains a message may have: each costs DMARC lookups.
pub const MAX_AUTHOR_DOMAINS: usize = 5;

/// Why a message's authors cannot be determined (port 25 refuses it, RFC 7489 §6.6.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorError {
    #[error("the message has no From: header (RFC 5322 section 3.6 requires exactly one)")]
    NoFrom,
    #[error("the message has {0} From: headers (RFC 5322 section 3.6 allows exactly one)")]
    SeveralFrom(usize),
    #[error("the From: header cannot be parsed as RFC 5322 addresses")]
    Unparseable,
    #[error("the From: header holds no address with a valid domain")]
    NoAddress,
    #[error("the From: header names more than {MAX_AUTHOR_DOMAINS} domains")]
    TooManyDomains,
}

/// The authors of the message whose header section starts `message`: exactly one `From`
/// field (name compared case-insensitively, found exactly as the IMAP ENVELOPE finds it),
/// well-formed, every mailbox with a host-name domain, at most [`MAX_AUTHOR_DOMAINS`]
/// distinct domains.
pub fn authors(message: &[u8]) -> Result<Vec<Mailbox>, AuthorError> {
    let values = field_values(message, "From");
    let value = match values.as_slice() {
        [] => return Err(AuthorError::NoFrom),
        [one] => *one,
        many => return Err(AuthorError::SeveralFrom(many.len())),
    };
    let list = parse_address_list(value);
    if !list.well_formed {
        return Err(AuthorError::Unparseable);
    }
    let mailboxes: Vec<Mailbox> = list.mailboxes().cloned().collect();
    if mailboxes.is_empty() || mailboxes.iter().any(|m| !m.domain.as_deref().is_some_and(is_host_name)) {
        return Err(AuthorError::NoAddress);
    }
    if author_domains(&mailboxes).len() > MAX_AUTHOR_DOMAINS {
        return Err(AuthorError::TooManyDomains);
    }
    Ok(mailboxes)
}

/// The distinct domains of `authors`, in order of appearance.
pub fn author_domains(authors: &[Mailbox]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for d in authors.iter().filter_map(|m| m.domain.as_deref()) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// A field that must hold addresses does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {0}: header cannot be parsed as RFC 5322 addresses")]
pub struct Unparseable(pub &'static str);

/// Every mailbox of every `name` field (there may be several `Resent-From` blocks);
/// an error when one of them is not well-formed.
pub fn field_mailboxes(message: &[u8], name: &'static str) -> Result<Vec<Mailbox>, Unparseable> {
    let mut out = Vec::new();
    for value in field_values(message, name) {
        let list = parse_address_list(value);
        if !list.well_formed {
            return Err(Unparseable(name));
        }
        out.extend(list.mailboxes().cloned());
    }
    Ok(out)
}

/// The raw values of every field called `name` in the header section of `message`.
pub fn field_values<'a>(message: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    header_fields(message).filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).map(|f| f.value).collect()
}

/// A domain DMARC can look up: dot-separated LDH labels (UTF-8 allowed for IDNs).
fn is_host_name(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

/// A lexical token of a structured header value (RFC 5322 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom, dots included (dot-atom and obs-phrase alike); `quoted` for a
    /// quoted-string, whose content is unescaped.
    Word { text: String, quoted: bool },
    /// `[...]` (a domain literal), brackets kept.
    Literal(String),
    /// One of `< > : ; @ ,` or a stray special that makes the value ill-formed.
    Special(u8),
}

/// `atext` (RFC 5322 §3.2.3) plus the dot, plus UTF-8 (RFC 6532).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b) || b >= 0x80
}

/// Split `value` into tokens, dropping whitespace and (nested) comments. `false` when
/// something was unterminated or stray.
fn tokenize(value: &[u8]) -> (Vec<Token>, bool) {
    let mut tokens = Vec::new();
    let mut ok = true;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let mut depth = 0usize;
                while i < value.len() {
                    match value[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if i >= value.len() {
                    ok = false;
                }
                i += 1;
            }
            b'"' => {
                let mut text = Vec::new();
                i += 1;
                let mut closed = false;
                while i < value.len() {
                    match value[i] {
                        b'\\' if i + 1 < value.len() => {
                            text.push(value[i + 1]);
                            i += 2;
                        }
                        b'"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        b'\r' | b'\n' => i += 1,
                        c => {
                            text.push(c);
                            i += 1;
                        }
                    }
                }
                ok &= closed;
                tokens.push(Token::Word { text: String::from_utf8_lossy(&text).into_owned(), quoted: true });
            }
            b'[' => {
                let end = value[i..].iter().position(|c| *c == b']').map(|p| i + p + 1);
                ok &= end.is_some();
                let end = end.unwrap_or(value.len());
                let text: Vec<u8> =
                    value[i..end].iter().copied().filter(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n')).collect();
                tokens.push(Token::Literal(String::from_utf8_lossy(&text).into_owned()));
                i = end;
            }
            b'<' | b'>' | b':' | b';' | b'@' | b',' => {
                tokens.push(Token::Special(b));
                i += 1;
            }
            _ if is_word_byte(b) => {
                let end = value[i..].iter().position(|c| !is_word_byte(*c)).map_or(value.len(), |p| i + p);
                tokens.push(Token::Word { text: String::from_utf8_lossy(&value[i..end]).into_owned(), quoted: false });
                i = end;
            }
            _ => {
                // `)`, `]`, `\` or a control byte outside any construct.
                tokens.push(Token::Special(b));
                i += 1;
            }
        }
    }
    (tokens, ok)
}

/// Parse an address field's value (the bytes after the colon, folded or not).
pub fn parse_address_list(value: &[u8]) -> AddressList {
    let (tokens, lexed) = tokenize(value);
    let mut p = Parser { tokens: &tokens, pos: 0, ok: lexed };
    let mut entries = Vec::new();
    loop {
        // obs-addr-list: empty elements between commas are allowed.
        while p.eat(b',') {}
        if p.pos >= tokens.len() {
            break;
        }
        let before = p.pos;
        if let Some(e) = p.entry() {
            entries.push(e);
        }
        if p.pos == before {
            // Nothing usable here: skip one token so parsing always ends.
            p.ok = false;
            p.pos += 1;
        }
        if p.pos < tokens.len() && !p.is(b',') {
            // Two entries without a comma between them (`<a@x> b@y`): ill-formed.
            p.ok = false;
        }
    }
    AddressList { entries, well_formed: p.ok }
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    ok: bool,
}

impl<'t> Parser<'t> {
    fn is(&self, special: u8) -> bool {
        self.tokens.get(self.pos) == Some(&Token::Special(special))
    }

    fn eat(&mut self, special: u8) -> bool {
        let found = self.is(special);
        if found {
            self.pos += 1;
        }
        found
    }

    /// Consecutive words (a phrase or the start of a local part).
    fn words(&mut self) -> Vec<(&'t str, bool)> {
        let tokens: &'t [Token] = self.tokens;
        let mut out = Vec::new();
        while let Some(Token::Word { text, quoted }) = tokens.get(self.pos) {
            out.push((text.as_str(), *quoted));
            self.pos += 1;
        }
        out
    }

    /// `mailbox / group` at the current position.
    fn entry(&mut self) -> Option<Entry> {
        let start = self.pos;
        let phrase = self.words();
        if self.is(b':') {
            self.pos += 1;
            let name = display(&phrase).unwrap_or_default();
            if phrase.is_empty() {
                self.ok = false;
            }
            let mut members = Vec::new();
            loop {
                while self.eat(b',') {}
                if self.eat(b';') {
                    break;
                }
                if self.pos >= self.tokens.len() {
                    self.ok = false;
                    break;
                }
                let before = self.pos;
                if let Some(m) = self.mailbox() {
                    members.push(m);
                }
                if self.pos == before {
                    self.ok = false;
                    self.pos += 1;
                } else if !self.is(b',') && !self.is(b';') {
                    self.ok = false;
                }
            }
            return Some(Entry::Group { name, members });
        }
        self.pos = start;
        self.mailbox().map(Entry::Mailbox)
    }

    /// `name-addr / addr-spec` at the current position.
    fn mailbox(&mut self) -> Option<Mailbox> {
        let phrase = self.words();
        if self.eat(b'<') {
            let mut m = self.angle_addr();
            m.name = display(&phrase);
            return Some(m);
        }
        if phrase.is_empty() {
            return None;
        }
        let local = self.local_part(&phrase);
        if self.eat(b'@') {
            let domain = self.domain();
            return Some(Mailbox { name: None, local, domain, route: None });
        }
        // A bare word is not an address (Dovecot shows it without a domain).
        self.ok = false;
        Some(Mailbox { name: None, local, domain: None, route: None })
    }

    /// After `<`: `[obs-route] addr-spec >`.
    fn angle_addr(&mut self) -> Mailbox {
        let route = self.obs_route();
        let words = self.words();
        let local = self.local_part(&words);
        let domain = if self.eat(b'@') {
            self.domain()
        } else {
            self.ok = false;
            None
        };
        if !self.eat(b'>') {
            self.ok = false;
            // Resynchronise at the closing bracket if there is one before the next entry.
            while self.pos < self.tokens.len() && !self.is(b',') && !self.eat(b'>') {
                self.pos += 1;
            }
        }
        Mailbox { name: None, local, domain, route }
    }

    /// obs-route (RFC 5322 §4.4): `@a.example,@b.example:` before the addr-spec, kept as
    /// `@a.example,@b.example` (CFWS dropped, empty list elements skipped).
    fn obs_route(&mut self) -> Option<String> {
        let has_route = (self.is(b'@') || self.is(b','))
            && self.tokens[self.pos..]
                .iter()
                .take_while(|t| **t != Token::Special(b'>'))
                .any(|t| *t == Token::Special(b':'));
        if !has_route {
            return None;
        }
        let mut hops: Vec<String> = Vec::new();
        while self.pos < self.tokens.len() && !self.eat(b':') {
            match &self.tokens[self.pos] {
                Token::Special(b'@') => hops.push("@".into()),
                Token::Word { text, .. } | Token::Literal(text) => match hops.last_mut() {
                    Some(hop) => hop.push_str(text),
                    None => self.ok = false,
                },
                Token::Special(b',') => {}
                Token::Special(_) => self.ok = false,
            }
            self.pos += 1;
        }
        hops.retain(|h| h.len() > 1);
        if hops.is_empty() { None } else { Some(hops.join(",")) }
    }

    /// Words of a local part: joined only across dots (`john . doe` is `john.doe`).
    fn local_part(&mut self, words: &[(&str, bool)]) -> String {
        match dot_join(words) {
            Some(s) if !s.is_empty() => s,
            other => {
                self.ok = false;
                other.unwrap_or_else(|| words.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(" "))
            }
        }
    }

    /// After `@`: a dot-atom (CFWS allowed around dots) or a domain literal; lower-cased,
    /// trailing dot removed.
    fn domain(&mut self) -> Option<String> {
        if let Some(Token::Literal(l)) = self.tokens.get(self.pos) {
            self.pos += 1;
            return Some(l.to_lowercase());
        }
        let mut text = String::new();
        while let Some(Token::Word { text: w, quoted: false }) = self.tokens.get(self.pos) {
            // `a.example x@b.example`: the second word is not part of this domain.
            if !text.is_empty() && !text.ends_with('.') && !w.starts_with('.') {
                break;
            }
            text.push_str(w);
            self.pos += 1;
        }
        let domain = text.strip_suffix('.').unwrap_or(&text).to_lowercase();
        if domain.is_empty() || domain.starts_with('.') || domain.contains("..") {
            self.ok = false;
        }
        if domain.is_empty() { None } else { Some(domain) }
    }
}

/// Words joined across dots (`a`, `.`, `b` or `a.` `b`): `None` when two words meet
/// without a dot between them.
fn dot_join(words: &[(&str, bool)]) -> Option<String> {
    let mut out = String::new();
    let mut last_dot = true;
    for (i, (w, quoted)) in words.iter().enumerate() {
        let starts_dot = !quoted && w.starts_with('.');
        if i > 0 && !last_dot && !starts_dot {
            return None;
        }
        out.push_str(w);
        last_dot = !quoted && w.ends_with('.');
    }
    if out.starts_with('.') || out.ends_with('.') || out.contains("..") {
        // Leading, trailing or double dots only in quoted text.
        if words.iter().all(|(_, q)| !q) {
            return None;
        }
    }
    Some(out)
}

/// A phrase as a display name: words joined by one space.
fn display(phrase: &[(&str, bool)]) -> Option<String> {
    let name = phrase.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(" ");
    if name.is_empty() { None } else { Some(name) }
}

#[cfg(test)]
#[path = "header_address_tests.rs"]
mod tests;
