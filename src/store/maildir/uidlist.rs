//! Importing Dovecot's `dovecot-uidlist` when we first index a Maildir.
//!
//! Owns: migration from Dovecot. A user moving from Dovecot keeps UIDVALIDITY and every
//! message's UID, so IMAP clients (Thunderbird, mbsync, K-9) do not download the whole
//! mailbox again. Read only, once, when our index does not exist yet; Dovecot's file is
//! never written. Format (version 3, as Dovecot 2.x writes it, checked against 2.3.19):
//! `3 V<uidvalidity> N<nextuid> G<guid>` then `<uid> [<ext>...] :<base file name>` lines.
//! Pure parser, never panics; anything unexpected means "no import".

use std::collections::HashMap;
use std::path::Path;

/// Dovecot's file name.
pub const UIDLIST_FILE: &str = "dovecot-uidlist";

/// What a `dovecot-uidlist` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotUidList {
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// Next UID (at least one above every listed UID; Dovecot updates `N` lazily).
    pub uid_next: u32,
    /// base name -> UID.
    pub uids: HashMap<String, u32>,
}

/// Parse the file content.
pub fn parse(text: &str) -> Option<DovecotUidList> {
    let mut lines = text.lines();
    let header = lines.next()?;
    let mut fields = header.split(' ');
    if fields.next()? != "3" {
        return None;
    }
    let mut uid_validity = None;
    let mut uid_next = 1u32;
    for f in fields {
        if let Some(v) = f.strip_prefix('V') {
            uid_validity = v.parse::<u32>().ok().filter(|v| *v != 0);
        } else if let Some(n) = f.strip_prefix('N') {
            uid_next = n.parse().ok()?;
        }
    }
    let mut uids = HashMap::new();
    for line in lines {
        let Some((uid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        let Some((_, base)) = rest.split_once(':') else {
            continue;
        };
        if uid == 0 || base.is_empty() {
            continue;
        }
        uid_next = uid_next.max(uid.saturating_add(1));
        uids.insert(base.to_string(), uid);
    }
    Some(DovecotUidList { uid_validity: uid_validity?, uid_next, uids })
}

/// Read `dir/dovecot-uidlist` if there is a usable one. Blocking.
pub fn load(dir: &Path) -> Option<DovecotUidList> {
    parse(&std::fs::read_to_string(dir.join(UIDLIST_FILE)).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_dovecot_writes() {
        // Dovecot 2.3.19 output; note the stale N1 next to existing UIDs.
        let text = "3 V1795737743 N1 Gb160d80a8dc8086b2e49000083ecc375\n\
                    1 :1795738448.M771210P31754.vm,S=18,W=21\n\
                    2 W12 :1700000000.V1I2.foreign\n";
        let l = parse(text).unwrap();
        assert_eq!((l.uid_validity, l.uid_next), (1_795_737_743, 3));
        assert_eq!(l.uids.get("1700000000.V1I2.foreign"), Some(&2));
        assert_eq!(l.uids.len(), 2);
    }

    #[test]
    fn garbage_in() {
        for text in
            ["", "3", "3 N5", "1 V1 N1\n", "3 V0 N1\n", "3 Vx N1\n", "3 V1 N1\n\nx\n1\n1 x\n0 :a\n4294967295 :b\n"]
        {
            let _ = parse(text);
        }
        assert_eq!(parse("3 V1 N1\n4294967295 :b\n").unwrap().uid_next, u32::MAX);
    }
}
