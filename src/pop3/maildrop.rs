//! The maildrop as one POP3 session sees it: a numbered snapshot of INBOX taken at login,
//! with deletion marks (RFC 1939 §5).
//!
//! Message numbers are 1-based positions in the snapshot and never change during the
//! session; DELE only marks, RSET unmarks, and only the UPDATE state (QUIT) turns marks into
//! an expunge. Mail that arrives during the session is not in the snapshot: it appears in
//! the next session, as RFC 1939 expects.
//!
//! # Sizes
//! A message's size is the octet count of what RETR sends *before* dot-stuffing and without
//! the terminating dot: the CRLF wire size the store records (the same number Dovecot
//! reports), so a client that compares LIST with what it received sees equality.
//!
//! # UIDL format
//! The unique-id of a message is its Maildir base name: the file name without the `:2,flags`
//! info suffix, e.g. `1732665600.M123456P4242Q1.mail.example.com,S=1234,W=1260`. It is fixed
//! when the message is delivered and never changes afterwards (flag changes only touch the
//! suffix), so it is stable across sessions, server restarts and index rebuilds, and equal
//! on every connection. It is Dovecot's `pop3_uidl_format = %f` and what qmail-pop3d has
//! always sent, so users of those set-ups migrate without re-downloading. Dovecot's default
//! (`%08Xu%08Xv`, UID + UIDVALIDITY) cannot be reproduced from a Maildir alone — and would
//! not survive an index rebuild — so clients of a default Dovecot that leave mail on the
//! server fetch it once more after the switch; download-and-delete clients see no change.
//!
//! RFC 1939 §7 limits a unique-id to 1..70 printable characters (0x21..0x7E). A base name
//! outside that (a very long host name in it) is replaced by a deterministic digest of the
//! base name (`h` + 32 hex digits, FNV-1a), which is just as stable.

/// One message of the snapshot, as the store described it at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildropEntry {
    /// Store UID, used to open and expunge the message.
    pub uid: u32,
    /// Wire size (CRLF) = octets RETR sends before stuffing.
    pub size: u64,
    /// RFC 1939 unique-id, see the module doc.
    pub uidl: String,
}

impl MaildropEntry {
    pub fn new(uid: u32, size: u64, base_name: &str) -> MaildropEntry {
        MaildropEntry { uid, size, uidl: uidl_for(base_name) }
    }
}

/// The RFC 1939 unique-id for a Maildir base name (see the module doc).
pub fn uidl_for(base_name: &str) -> String {
    let valid = (1..=70).contains(&base_name.len()) && base_name.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid {
        return base_name.to_string();
    }
    // Two FNV-1a 64 passes with different offsets: stable across releases and platforms
    // (std's hasher is not), and 128 bits make a collision inside one maildrop implausible.
    let fnv =
        |offset: u64| base_name.bytes().fold(offset, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("h{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

/// The snapshot plus deletion marks.
#[derive(Debug, Clone, Default)]
pub struct Maildrop {
    entries: Vec<MaildropEntry>,
    deleted: Vec<bool>,
}

/// Why a message number does not name a message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    NoSuchMessage,
    Deleted,
}

impl Maildrop {
    pub fn new(entries: Vec<MaildropEntry>) -> Maildrop {
        let deleted = vec![false; entries.len()];
        Maildrop { entries, deleted }
    }

    /// The live (not marked) message with this 1-based number.
    pub fn get(&self, msg: u32) -> Result<&MaildropEntry, Lookup> {
        let i = (msg as usize).checked_sub(1).ok_or(Lookup::NoSuchMessage)?;
        match (self.entries.get(i), self.deleted.get(i)) {
            (Some(_), Some(true)) => Err(Lookup::Deleted),
            (Some(e), _) => Ok(e),
            (None, _) => Err(Lookup::NoSuchMessage),
        }
    }

    /// Mark for deletion at QUIT.
    pub fn mark_deleted(&mut self, msg: u32) -> Result<(), Lookup> {
        self.get(msg)?;
        if let Some(flag) = (msg as usize).checked_sub(1).and_then(|i| self.deleted.get_mut(i)) {
            *flag = true;
        }
        Ok(())
    }

    pub fn unmark_all(&mut self) {
        self.deleted.iter_mut().for_each(|d| *d = false);
    }

    /// (count, octets) of messages not marked deleted (STAT, RFC 1939 §5).
    pub fn stat(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(n, size), (_, e)| (n + 1, size + e.size))
    }

    /// Numbered live messages, in order.
    pub fn live(&self) -> impl Iterator<Item = (u32, &MaildropEntry)> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|(_, (_, d))| !**d)
            .map(|(i, (e, _))| (i as u32 + 1, e))
    }

    /// Store UIDs of the marked messages, to expunge in the UPDATE state.
    pub fn marked_uids(&self) -> Vec<u32> {
        self.entries.iter().zip(&self.deleted).filter(|(_, d)| **d).map(|(e, _)| e.uid).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop3() -> Maildrop {
        Maildrop::new(vec![
            MaildropEntry::new(10, 100, "1.M1P1Q1.host,S=100,W=100"),
            MaildropEntry::new(11, 200, "2.M1P1Q2.host,S=200,W=200"),
            MaildropEntry::new(15, 300, "3.M1P1Q3.host,S=300,W=300"),
        ])
    }

    #[test]
    fn numbering_marks_and_reset() {
        let mut m = drop3();
        assert_eq!(m.stat(), (3, 600));
        assert_eq!(m.get(2).map(|e| e.uid), Ok(11));
        assert_eq!(m.get(0), Err(Lookup::NoSuchMessage));
        assert_eq!(m.get(4), Err(Lookup::NoSuchMessage));
        assert_eq!(m.mark_deleted(2), Ok(()));
        assert_eq!(m.mark_deleted(2), Err(Lookup::Deleted));
        assert_eq!(m.get(2), Err(Lookup::Deleted));
        assert_eq!(m.stat(), (2, 400));
        // Numbers do not shift after a DELE.
        assert_eq!(m.live().map(|(n, e)| (n, e.uid)).collect::<Vec<_>>(), vec![(1, 10), (3, 15)]);
        assert_eq!(m.marked_uids(), vec![11]);
        m.unmark_all();
        assert_eq!(m.stat(), (3, 600));
        assert!(m.marked_uids().is_empty());
    }

    #[test]
    fn uidl_is_the_base_name_when_rfc_valid() {
        assert_eq!(
            uidl_for("1732665600.M123456P4242Q1.mail.example.com,S=1234,W=1260"),
            "1732665600.M123456P4242Q1.mail.example.com,S=1234,W=1260"
        );
    }

    #[test]
    fn uidl_falls_back_to_a_stable_digest() {
        let long = format!("1732665600.M1P1Q1.{},S=1,W=1", "h".repeat(80));
        let a = uidl_for(&long);
        assert_eq!(a, uidl_for(&long));
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('h'));
        assert_ne!(a, uidl_for(&format!("{long}x")));
        assert_ne!(uidl_for("with space"), "with space");
        assert_eq!(uidl_for("").len(), 33);
        // Fixed vector: the digest must never change between releases.
        assert_eq!(uidl_for(""), "hcbf29ce4842223256c62272e07bb0142");
    }
}
