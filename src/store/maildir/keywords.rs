//! Keyword letters in Maildir file names, the Dovecot way.
//!
//! Owns: the per-folder `dovecot-keywords` file (`<n> <keyword>` per line; keyword `n` is
//! the letter `a + n` after `:2,`). Storing keywords in the file name too — not only in our
//! index — lets Dovecot and mbsync see them and lets a rebuilt index recover them. Only 26
//! letters exist; further keywords live in the index alone. Letters we cannot map (a file
//! from a Maildir whose keyword file is gone) are kept verbatim on rename.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use super::error::StoreError;
use super::filename::{FlagSet, cur_name, other_letters};

/// Dovecot's file name for the table.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";
const MAX_LETTERS: usize = 26;

/// Distinct keywords one mailbox may hold. Without a bound one client set 8,000 keywords on
/// a message, and 1,000 on each of 3,000 messages took the server to 1.6 GB; Dovecot too
/// refuses new keywords past a per-mailbox maximum.
pub const MAX_KEYWORDS: usize = 256;
/// Longest keyword, in bytes (`$Forwarded`, `$MDNSent`, `NonJunk`, labels: all far shorter).
pub const MAX_KEYWORD_LEN: usize = 100;

/// The keywords in use in one mailbox, for [`MAX_KEYWORDS`]: counted from the index on first
/// need, grown by every admitted keyword, and counted again only when the limit would be
/// passed (so keywords no message carries any more free their places).
#[derive(Debug, Default)]
pub struct KeywordsInUse {
    names: Option<HashSet<Arc<str>>>,
}

impl KeywordsInUse {
    /// Admit the keywords of `sets` (new flags of messages about to change or arrive), or
    /// refuse them all. `count` lists the keywords the mailbox's messages carry now.
    pub fn admit<I>(&mut self, sets: &[&FlagSet], count: impl Fn() -> I) -> Result<(), StoreError>
    where
        I: Iterator<Item = Arc<str>>,
    {
        let wanted = || sets.iter().flat_map(|s| s.keywords().iter());
        if wanted().any(|k| k.len() > MAX_KEYWORD_LEN) {
            return Err(StoreError::Limit("Keyword too long"));
        }
        let names = self.names.get_or_insert_with(|| count().collect());
        let mut new: HashSet<&Arc<str>> = wanted().filter(|k| !names.contains(*k)).collect();
        if new.is_empty() {
            return Ok(());
        }
        if names.len() + new.len() > MAX_KEYWORDS {
            *names = count().collect();
            new.retain(|k| !names.contains(*k));
            if names.len() + new.len() > MAX_KEYWORDS {
                return Err(StoreError::Limit("Too many keywords in this mailbox"));
            }
        }
        names.extend(new.into_iter().cloned());
        Ok(())
    }
}

/// Every keyword string the store holds, once: flag sets, index entries and the snapshots of
/// every session share it (a keyword on 3,000 messages is one allocation, not 3,000).
/// Entries nobody else holds any more are dropped whenever the set has doubled since the
/// last sweep, so it holds about the keywords some message or session still uses.
static INTERNED: LazyLock<Mutex<Interned>> =
    LazyLock::new(|| Mutex::new(Interned { set: HashSet::new(), sweep_at: INTERN_SWEEP_MIN }));
const INTERN_SWEEP_MIN: usize = 1024;

struct Interned {
    set: HashSet<Arc<str>>,
    sweep_at: usize,
}

/// The shared copy of keyword `k`.
pub fn intern(k: &str) -> Arc<str> {
    let mut g = INTERNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(a) = g.set.get(k) {
        return a.clone();
    }
    if g.set.len() >= g.sweep_at {
        g.set.retain(|a| Arc::strong_count(a) > 1);
        g.sweep_at = (g.set.len() * 2).max(INTERN_SWEEP_MIN);
    }
    let a: Arc<str> = Arc::from(k);
    g.set.insert(a.clone());
    a
}

/// keyword index -> name, as in `dovecot-keywords`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeywordTable {
    names: Vec<Option<String>>,
}

impl KeywordTable {
    /// Parse the file content; bad lines are ignored (never panics).
    pub fn parse(text: &str) -> KeywordTable {
        let mut names: Vec<Option<String>> = Vec::new();
        for line in text.lines() {
            let Some((n, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<usize>() else { continue };
            if n >= MAX_LETTERS || name.is_empty() || name.contains(char::is_whitespace) {
                continue;
            }
            if names.len() <= n {
                names.resize(n + 1, None);
            }
            names[n] = Some(name.to_string());
        }
        KeywordTable { names }
    }

    /// Read `dir/dovecot-keywords` (empty table when missing). Blocking.
    pub fn load(dir: &Path) -> KeywordTable {
        std::fs::read_to_string(dir.join(KEYWORDS_FILE)).map(|t| KeywordTable::parse(&t)).unwrap_or_default()
    }

    /// Write the table atomically and durably. Blocking.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let mut text = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(n) = n {
                text.push_str(&format!("{i} {n}\n"));
            }
        }
        let tmp = dir.join("tmp").join(super::filename::new_base_name(KEYWORDS_FILE, 0));
        let target = dir.join(KEYWORDS_FILE);
        Ok(crate::durable::write_atomic_via(&tmp, &target, text.as_bytes(), super::durable::FILE_MODE)?)
    }

    fn letter_of(&self, keyword: &str) -> Option<char> {
        self.names.iter().position(|n| n.as_deref() == Some(keyword)).map(|i| (b'a' + i as u8) as char)
    }

    fn keyword_of(&self, letter: char) -> Option<&str> {
        let i = (letter as u32).checked_sub('a' as u32)? as usize;
        self.names.get(i)?.as_deref()
    }

    /// Give letters to keywords that have none (while letters remain). True if changed.
    pub fn assign(&mut self, flags: &FlagSet) -> bool {
        let mut changed = false;
        for k in flags.keywords() {
            if self.letter_of(k).is_some() || k.contains(char::is_whitespace) {
                continue;
            }
            if let Some(free) = self.names.iter().position(Option::is_none) {
                self.names[free] = Some(k.to_string());
            } else if self.names.len() < MAX_LETTERS {
                self.names.push(Some(k.to_string()));
            } else {
                continue;
            }
            changed = true;
        }
        changed
    }

    /// Flags as a file name says them: the six letters plus mapped keyword letters; keywords
    /// without a letter are kept from `current` (they live only in the index).
    pub fn adopt(&self, current: &FlagSet, info_flags: &str) -> FlagSet {
        let from_letters = info_flags.chars().filter_map(|c| self.keyword_of(c));
        let index_only = current.keywords().iter().filter(|k| self.letter_of(k).is_none()).cloned();
        FlagSet::from_parts(info_flags, from_letters.map(intern).chain(index_only))
    }

    /// The `cur/` name for `flags`, keeping letters of the old info part we cannot map.
    pub fn file_name(&self, base: &str, flags: &FlagSet, old_info: Option<&str>) -> String {
        let mut extra: String = other_letters(old_info)
            .chars()
            .filter(|c| c.is_ascii_lowercase() && self.keyword_of(*c).is_none())
            .collect();
        extra.extend(flags.keywords().iter().filter_map(|k| self.letter_of(k)));
        // Dovecot keeps $Forwarded as a keyword letter, not as `P`: write both.
        if flags.forwarded() {
            extra.extend(self.letter_of(super::filename::FORWARDED));
        }
        cur_name(base, flags, &extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Flag;

    #[test]
    fn dovecot_keywords_file_round_trip() {
        // As written by doveadm 2.3.19 after `flags add '$Forwarded junkish'`.
        let mut t = KeywordTable::parse("0 $Forwarded\n1 junkish\n");
        let flags = t.adopt(&FlagSet::default(), "Sab");
        assert_eq!(flags.to_flags(), [Flag::Seen, Flag::Keyword("$Forwarded".into()), Flag::Keyword("junkish".into())]);
        let mut set = FlagSet::from_flags(&[Flag::Keyword("work".into()), Flag::Seen]);
        assert!(t.assign(&set));
        assert!(!t.assign(&set));
        assert_eq!(t.file_name("b", &set, Some("Sz")), "b:2,Scz");
        // Keyword removed in the name by another program: adopted.
        assert_eq!(t.adopt(&set, "S").to_flags(), [Flag::Seen]);
        // Unmapped index-only keywords survive adoption.
        let full = KeywordTable { names: (0..26).map(|i| Some(format!("k{i}"))).collect() };
        set.insert(&Flag::Keyword("extra".into()));
        let mut t2 = full.clone();
        assert!(!t2.assign(&set));
        assert!(full.adopt(&set, "S").keywords().contains(&"extra".into()));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        t.save(dir.path()).unwrap();
        assert_eq!(KeywordTable::load(dir.path()), t);
    }

    #[test]
    fn garbage_in() {
        for text in ["", "x", "99 a\n", "0 \n", "-1 a", "0 a b\n", "25 z\n0\n"] {
            let t = KeywordTable::parse(text);
            let _ = t.adopt(&FlagSet::default(), "abcdefghijklmnopqrstuvwxyz{}~");
        }
    }
}
