//! Pure decisions of an import: which local folder a remote one lands in, which remote
//! folders the operator asked for, and which remote messages are already here.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::fetch::{RemoteFolder, RemoteMessage};
use crate::store::{MessageMeta, SpecialUse};

/// Well-known folder names of servers that do not announce special-use attributes
/// (Outlook, Apple Mail and Thunderbird habits), compared case-insensitively.
const WELL_KNOWN: [(&str, SpecialUse); 12] = [
    ("Sent", SpecialUse::Sent),
    ("Sent Items", SpecialUse::Sent),
    ("Sent Messages", SpecialUse::Sent),
    ("Sent Mail", SpecialUse::Sent),
    ("Drafts", SpecialUse::Drafts),
    ("Trash", SpecialUse::Trash),
    ("Deleted Items", SpecialUse::Trash),
    ("Deleted Messages", SpecialUse::Trash),
    ("Junk", SpecialUse::Junk),
    ("Spam", SpecialUse::Junk),
    ("Junk E-mail", SpecialUse::Junk),
    ("Archive", SpecialUse::Archive),
];

/// The remote folder's path with our `/` hierarchy: modified UTF-7 decoded, split at the
/// server's delimiter. A `/` inside a remote name part (possible where the delimiter is
/// `.`) would make a level that is not there: it becomes `_`.
pub fn remote_path(folder: &RemoteFolder) -> String {
    let name = crate::store::decode_mutf7(&folder.name).unwrap_or_else(|_| folder.name.clone());
    let parts: Vec<String> = match folder.delimiter {
        Some(d) => name.split(d).map(|p| p.replace('/', "_")).collect(),
        None => vec![name.replace('/', "_")],
    };
    if parts.len() == 1 && parts[0].eq_ignore_ascii_case("INBOX") {
        return "INBOX".into();
    }
    parts.join("/")
}

/// Where a remote folder lands: INBOX in INBOX, a special-use folder (by attribute, or
/// by a well-known name when the server gives none) in ours of that use, any other at the
/// same path.
pub fn local_name(folder: &RemoteFolder, ours: &[(SpecialUse, String)]) -> String {
    let path = remote_path(folder);
    let special = folder
        .special_use
        .or_else(|| WELL_KNOWN.iter().find(|(name, _)| name.eq_ignore_ascii_case(&path)).map(|(_, use_)| *use_));
    special.and_then(|u| ours.iter().find(|(o, _)| *o == u).map(|(_, name)| name.clone())).unwrap_or(path)
}

/// Whether `--folders` selects this folder: no list selects all; a name selects the
/// folder and its children (written with `/` or with the server's delimiter).
pub fn selected(folder: &RemoteFolder, wanted: &[String]) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let path = remote_path(folder);
    wanted.iter().any(|w| {
        let w = match folder.delimiter {
            Some(d) => w.replace(d, "/"),
            None => w.clone(),
        };
        let w = w.trim_end_matches('/');
        path.eq_ignore_ascii_case(w)
            || (path.len() > w.len() && path[..w.len()].eq_ignore_ascii_case(w) && path[w.len()..].starts_with('/'))
    })
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The remote messages not yet in the local folder (see the module doc of `import`:
/// internal date and size, as a multiset), in UID order, and how many were there.
pub fn missing(remote: Vec<RemoteMessage>, local: &[MessageMeta]) -> (Vec<RemoteMessage>, u64) {
    let mut here: HashMap<(u64, u64), u64> = HashMap::new();
    for m in local {
        *here.entry((seconds(m.internal_date), m.size)).or_default() += 1;
    }
    let mut skipped = 0;
    let todo = remote
        .into_iter()
        .filter(|m| match here.get_mut(&(seconds(m.internal_date), m.size)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                skipped += 1;
                false
            }
            _ => true,
        })
        .collect();
    (todo, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn folder(name: &str, delimiter: Option<char>, special_use: Option<SpecialUse>) -> RemoteFolder {
        RemoteFolder { name: name.into(), delimiter, special_use, selectable: true }
    }

    fn ours() -> Vec<(SpecialUse, String)> {
        vec![(SpecialUse::Sent, "Sent".into()), (SpecialUse::Trash, "Trash".into())]
    }

    #[test]
    fn folders_map_to_our_names() {
        assert_eq!(local_name(&folder("inbox", Some('.'), None), &ours()), "INBOX");
        assert_eq!(local_name(&folder("Gesendet", Some('/'), Some(SpecialUse::Sent)), &ours()), "Sent");
        assert_eq!(local_name(&folder("Sent Items", Some('/'), None), &ours()), "Sent");
        assert_eq!(local_name(&folder("Deleted Items", None, None), &ours()), "Trash");
        // No local folder of that use: the remote path.
        assert_eq!(local_name(&folder("Spam", Some('.'), None), &ours()), "Spam");
        assert_eq!(local_name(&folder("Work.2024.Q1", Some('.'), None), &ours()), "Work/2024/Q1");
        assert_eq!(local_name(&folder("a/b.c", Some('.'), None), &ours()), "a_b/c");
        assert_eq!(local_name(&folder("Caf&AOk-", Some('/'), None), &ours()), "Café");
    }

    #[test]
    fn folders_option_selects_subtrees() {
        let f = folder("Work.2024", Some('.'), None);
        assert!(selected(&f, &[]));
        assert!(selected(&f, &["Work".into()]));
        assert!(selected(&f, &["work.2024".into()]));
        assert!(selected(&f, &["Work/2024/".into()]));
        assert!(!selected(&f, &["Wor".into()]));
        assert!(!selected(&f, &["Work/2024/Q1".into()]));
    }

    fn remote(uid: u32, secs: u64, size: u64) -> RemoteMessage {
        RemoteMessage { uid, flags: vec![], internal_date: UNIX_EPOCH + Duration::from_secs(secs), size }
    }

    fn local(uid: u32, secs: u64, size: u64) -> MessageMeta {
        MessageMeta {
            uid,
            flags: vec![],
            modseq: 1,
            size,
            internal_date: UNIX_EPOCH + Duration::from_secs(secs),
            uidl: String::new(),
        }
    }

    #[test]
    fn only_missing_messages_are_copied_counting_twins() {
        let r = vec![remote(1, 100, 10), remote(2, 100, 10), remote(3, 200, 10), remote(4, 300, 30)];
        let (todo, skipped) = missing(r, &[local(1, 100, 10), local(2, 300, 30)]);
        assert_eq!(todo.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(skipped, 2);
    }
}
