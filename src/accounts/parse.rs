//! The text formats of `MAILROOM_ACCOUNTS` and `MAILROOM_ALIASES` (interface.md).
//!
//! Pure: `config.rs` reads the variables and hands us the strings. Every problem in every
//! entry is collected (an operator fixing a list wants all the mistakes at once) and each
//! message names the entry by number and address, never by the hash: these strings end up
//! in logs and CI output.
//!
//! Entries are separated by newlines (the Kubernetes-secret and `_FILE` style) or by commas
//! (the one-line `docker run -e` style). A comma is only a separator when what follows it
//! looks like the start of a new entry (`local@domain:` or, for aliases, `@domain:`),
//! because PHC hashes contain commas (`$argon2id$v=19$m=19456,t=2,p=1$…`). Lines starting
//! with `#` are comments. Each entry is trimmed, so a `{PLAIN}` password cannot start or
//! end with white space (use a real hash for such passwords).

use std::collections::HashMap;

use super::address::{Address, find_outside_quotes, normalise_domain};
use super::password::PasswordHash;
use crate::units::parse_size;

/// One account as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEntry {
    pub address: Address,
    pub hash: PasswordHash,
    /// Mailbox quota in bytes; `None` = unlimited.
    pub quota: Option<u64>,
}

/// One alias rule as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasRule {
    /// `alias@d:target[ target…]` (targets separated by spaces or commas; each a full
    /// address, local or remote).
    Alias { from: Address, to: Vec<Address> },
    /// `@d:target…`: catch-all for a domain.
    CatchAll { domain: String, to: Vec<Address> },
    /// `@a.example:@b.example`: alias domain, `x@a.example` is treated as `x@b.example`.
    DomainAlias { from: String, to: String },
}

/// Parse `MAILROOM_ACCOUNTS`: `address:hash` or `address:hash:quota` per entry.
///
/// The quota is the part after the *last* colon when the hash part has one; none of the
/// real hash schemes contains a colon. A `{PLAIN}` password that itself contains a colon
/// therefore needs an explicit (possibly empty) quota: `a@x:{PLAIN}pa:ss:` .
pub fn parse_accounts(raw: &str) -> Result<Vec<AccountEntry>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<Address, usize> = HashMap::new();
    for (n, entry) in split_entries(raw, false).into_iter().enumerate() {
        let n = n + 1;
        match parse_account(entry) {
            Ok(acc) => {
                if let Some(first) = seen.get(&acc.address) {
                    errors.push(format!("entry {n} ({}): duplicate account (already entry {first})", acc.address));
                } else {
                    seen.insert(acc.address.clone(), n);
                    out.push(acc);
                }
            }
            Err(problem) => errors.push(format!("entry {n} {problem}")),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// One account entry; the error starts with the entry's name in parentheses.
fn parse_account(entry: &str) -> Result<AccountEntry, String> {
    let Some((key, rest)) = split_key(entry) else {
        return Err(format!("({}): expected address:hash[:quota]", safe_name(entry)));
    };
    let address = Address::parse(key.trim()).map_err(|e| format!("({}): {e}", safe_name(key)))?;
    let (hash_text, quota) = match rest.rsplit_once(':') {
        Some((hash, quota)) => (hash, parse_quota(quota).map_err(|e| format!("({address}): {e}"))?),
        None => (rest, None),
    };
    let hash = PasswordHash::parse(hash_text.trim()).map_err(|e| format!("({address}): {e}"))?;
    Ok(AccountEntry { address, hash, quota })
}

fn parse_quota(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match parse_size(s) {
        Ok(0) => Err("quota 0 would refuse all mail; leave it out for no quota".to_string()),
        Ok(n) => Ok(Some(n)),
        Err(e) => Err(format!("bad quota: {e}")),
    }
}

/// Parse `MAILROOM_ALIASES` (see [`AliasRule`] for the three forms).
pub fn parse_aliases(raw: &str) -> Result<Vec<AliasRule>, Vec<String>> {
    let mut out: Vec<AliasRule> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (n, entry) in split_entries(raw, true).into_iter().enumerate() {
        let n = n + 1;
        match parse_alias(entry) {
            Ok(rule) => {
                let key = match &rule {
                    AliasRule::Alias { from, .. } => from.to_string(),
                    AliasRule::CatchAll { domain, .. } | AliasRule::DomainAlias { from: domain, .. } => {
                        format!("@{domain}")
                    }
                };
                if let Some(first) = seen.get(&key) {
                    errors.push(format!(
                        "entry {n} ({key}): defined twice (already entry {first}); \
                         list all targets in one entry"
                    ));
                } else {
                    seen.insert(key, n);
                    out.push(rule);
                }
            }
            Err(problem) => errors.push(format!("entry {n} {problem}")),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn parse_alias(entry: &str) -> Result<AliasRule, String> {
    let Some((key, rest)) = split_key(entry) else {
        return Err(format!("({entry}): expected alias@domain:target or @domain:target"));
    };
    let key = key.trim();
    let rest = rest.trim();
    if let Some(domain) = key.strip_prefix('@') {
        let domain = normalise_domain(domain).map_err(|e| format!("({key}): {e}"))?;
        if let Some(target) = rest.strip_prefix('@') {
            let to = normalise_domain(target).map_err(|e| format!("(@{domain}): target domain: {e}"))?;
            if to == domain {
                return Err(format!("(@{domain}): alias domain points at itself"));
            }
            return Ok(AliasRule::DomainAlias { from: domain, to });
        }
        let to = parse_targets(rest).map_err(|e| format!("(@{domain}): {e}"))?;
        return Ok(AliasRule::CatchAll { domain, to });
    }
    let from = Address::parse(key).map_err(|e| format!("({key}): {e}"))?;
    let to = parse_targets(rest).map_err(|e| format!("({from}): {e}"))?;
    Ok(AliasRule::Alias { from, to })
}

/// Targets are separated by spaces or commas (Postfix writes commas, the brief spaces).
fn parse_targets(s: &str) -> Result<Vec<Address>, String> {
    let mut to: Vec<Address> = Vec::new();
    for word in s.split(|c: char| c == ',' || c.is_whitespace()) {
        if word.is_empty() {
            continue;
        }
        if word.starts_with('@') {
            return Err(format!("target {word:?}: a domain target only works alone (@a.example:@b.example)"));
        }
        let addr = Address::parse(word).map_err(|e| format!("target {word:?}: {e}"))?;
        if !to.contains(&addr) {
            to.push(addr);
        }
    }
    if to.is_empty() {
        return Err("no targets".to_string());
    }
    Ok(to)
}

/// Split the raw variable into trimmed, non-empty, non-comment entries.
fn split_entries(raw: &str, domain_keys: bool) -> Vec<&str> {
    let mut out = Vec::new();
    for line in raw.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut start = 0;
        for (i, _) in line.match_indices(',') {
            let next = &line[i + 1..];
            if looks_like_entry_start(next, domain_keys) {
                out.push(line[start..i].trim());
                start = i + 1;
            }
        }
        out.push(line[start..].trim());
    }
    out.retain(|e| !e.is_empty());
    out
}

/// Does `s` start with `local@domain:` (or `@domain:` when `domain_keys`)?
fn looks_like_entry_start(s: &str, domain_keys: bool) -> bool {
    let Some((key, _)) = split_key(s.trim_start()) else {
        return false;
    };
    if domain_keys && let Some(d) = key.strip_prefix('@') {
        return normalise_domain(d).is_ok();
    }
    Address::parse(key).is_ok()
}

/// Split `key:rest` at the first colon outside a quoted local part.
fn split_key(s: &str) -> Option<(&str, &str)> {
    find_outside_quotes(s, ':').map(|i| (&s[..i], &s[i + 1..]))
}

/// A name for an entry we could not parse, safe to print: the text before the first colon
/// if it looks like an address attempt, else nothing (it might be a bare secret).
fn safe_name(key: &str) -> String {
    let key = key.trim();
    if key.contains('@') && !key.starts_with(['$', '{']) && key.len() <= 128 {
        key.to_string()
    } else {
        "unnamed".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGON: &str =
        "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$/W8LPvoaai7U3XREtgKuI78eDZLHrsDSFj5hpFvetZc";
    const SHA: &str =
        "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";
    const BCRYPT: &str = "$2b$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm";

    fn summary(raw: &str) -> Vec<String> {
        match parse_accounts(raw) {
            Ok(list) => list.iter().map(|a| format!("{} {} {:?}", a.address, a.hash.scheme(), a.quota)).collect(),
            Err(errs) => errs.iter().map(|e| format!("ERR {e}")).collect(),
        }
    }

    #[test]
    fn accounts_one_per_line() {
        let raw = format!(
            "# our users\nalice@example.com:{ARGON}\n\n  Bob@Example.com:{SHA}:2G  \ncarol@example.com:{BCRYPT}:500M\ndave@example.com:{{PLAIN}}pw:1024K\n"
        );
        assert_eq!(
            summary(&raw),
            vec![
                "alice@example.com argon2 None",
                "bob@example.com sha512-crypt Some(2147483648)",
                "carol@example.com bcrypt Some(524288000)",
                "dave@example.com plain Some(1048576)",
            ]
        );
    }

    #[test]
    fn accounts_comma_separated_with_commas_inside_hashes() {
        let raw = format!("alice@example.com:{ARGON},bob@example.com:{ARGON}:1G, carol@example.com:{SHA}");
        assert_eq!(
            summary(&raw),
            vec![
                "alice@example.com argon2 None",
                "bob@example.com argon2 Some(1073741824)",
                "carol@example.com sha512-crypt None",
            ]
        );
        // The hash survives intact, commas and all.
        let parsed = parse_accounts(&raw).unwrap_or_default();
        assert_eq!(parsed.first().map(|a| a.hash.clone()), PasswordHash::parse(ARGON).ok());
    }

    #[test]
    fn plain_passwords_with_commas_and_colons() {
        let parsed = parse_accounts("a@x.example:{PLAIN}p,w\nb@x.example:{PLAIN}pa:ss:\nc@x.example:{PLAIN}q:ss:1M")
            .unwrap_or_default();
        let got: Vec<(String, bool, Option<u64>)> = parsed
            .iter()
            .map(|a| {
                (
                    a.address.to_string(),
                    a.hash.verify(match a.address.local.as_str() {
                        "a" => "p,w",
                        "b" => "pa:ss",
                        _ => "q:ss",
                    }),
                    a.quota,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a@x.example".to_string(), true, None),
                ("b@x.example".to_string(), true, None),
                ("c@x.example".to_string(), true, Some(1024 * 1024)),
            ]
        );
    }

    #[test]
    fn account_errors_name_the_entry_not_the_secret() {
        let raw = format!(
            "alice@example.com:{SHA}\n\
             bob@example.com:$1$md5$secretstuff\n\
             carol@example.com:{ARGON}:lots\n\
             Alice@Example.com:{BCRYPT}\n\
             not-an-address:{SHA}\n\
             {{PLAIN}}hunter2\n\
             dave@example.com:{SHA}:0\n"
        );
        let errs = parse_accounts(&raw).err().unwrap_or_default();
        assert_eq!(
            errs,
            vec![
                "entry 2 (bob@example.com): hash scheme not recognised (expected $argon2id$…, $6$…, $2b$… or {PLAIN}…)",
                "entry 3 (carol@example.com): bad quota: size \"lots\" must start with a non-negative whole number",
                "entry 4 (alice@example.com): duplicate account (already entry 1)",
                "entry 5 (unnamed): address has no @domain",
                "entry 6 (unnamed): expected address:hash[:quota]",
                "entry 7 (dave@example.com): quota 0 would refuse all mail; leave it out for no quota",
            ]
        );
        for e in &errs {
            assert!(!e.contains("secretstuff") && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn empty_input_is_no_accounts() {
        assert_eq!(parse_accounts(""), Ok(vec![]));
        assert_eq!(parse_accounts(" \n# nothing\n"), Ok(vec![]));
        assert_eq!(parse_aliases(""), Ok(vec![]));
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn alias_forms() {
        let raw = "info@example.com:alice@example.com bob@example.com\n\
                   sales@example.com:carol@example.com,dave@remote.example, \
                   @example.com:alice@example.com,\
                   @Bücher.example:@example.com";
        assert_eq!(
            parse_aliases(raw),
            Ok(vec![
                AliasRule::Alias {
                    from: addr("info@example.com"),
                    to: vec![addr("alice@example.com"), addr("bob@example.com")],
                },
                AliasRule::Alias {
                    from: addr("sales@example.com"),
                    to: vec![addr("carol@example.com"), addr("dave@remote.example")],
                },
                AliasRule::CatchAll { domain: "example.com".to_string(), to: vec![addr("alice@example.com")] },
                AliasRule::DomainAlias { from: "xn--bcher-kva.example".to_string(), to: "example.com".to_string() },
            ])
        );
    }

    #[test]
    fn alias_errors() {
        let raw = "info@example.com:\nx@example.com:not-an-address\n@a.example:@a.example\n\
                   info@example.com:a@example.com\ninfo@example.com:b@example.com\n\
                   @a.example:@b.example x@y.example\nnonsense";
        let errs = parse_aliases(raw).err().unwrap_or_default();
        assert_eq!(
            errs,
            vec![
                "entry 1 (info@example.com): no targets",
                "entry 2 (x@example.com): target \"not-an-address\": address has no @domain",
                "entry 3 (@a.example): alias domain points at itself",
                "entry 5 (info@example.com): defined twice (already entry 4); list all targets in one entry",
                "entry 6 (@a.example): target domain: domain is not a valid host name",
                "entry 7 (nonsense): expected alias@domain:target or @domain:target",
            ]
        );
    }

    #[test]
    fn quoted_local_parts_with_colons_in_keys() {
        let parsed = parse_aliases("\"john\"@example.com:alice@example.com").unwrap_or_default();
        assert_eq!(
            parsed,
            vec![AliasRule::Alias { from: addr("john@example.com"), to: vec![addr("alice@example.com")] }]
        );
        assert_eq!(split_key("\"a:b\"@x:rest"), Some(("\"a:b\"@x", "rest")));
        assert_eq!(split_key("\"a\\\":b\"@x:rest"), Some(("\"a\\\":b\"@x", "rest")));
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0x1234_5678_9ABC_DEF1;
        let alphabet: Vec<char> = "a@x.:,\n $6{PLAIN}\"\\#@bü:1GMK,".chars().collect();
        let sample = format!("alice@example.com:{ARGON}:2G,@b.example:@example.com\n");
        for round in 0..5_000 {
            let len = (crate::testing::xorshift(&mut seed) % 60) as usize;
            let s: String =
                (0..len).map(|i| alphabet[(seed.rotate_left(i as u32 * 5) % alphabet.len() as u64) as usize]).collect();
            let _ = parse_accounts(&s);
            let _ = parse_aliases(&s);
            let cut = round % (sample.chars().count() + 1);
            let truncated: String = sample.chars().take(cut).collect();
            let _ = parse_accounts(&truncated);
            let _ = parse_aliases(&truncated);
        }
    }
}
