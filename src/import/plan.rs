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

/// Whether the server keeps every folder under INBOX (Courier and Cyrus: `INBOX.Sent`,
/// a personal namespace prefixed `INBOX.`). Then the prefix is dropped here, where
/// folders sit beside INBOX; a server with just some folders under INBOX keeps them there.
pub fn inbox_prefixed(folders: &[RemoteFolder]) -> bool {
    let mut others = folders.iter().map(remote_path).filter(|p| p != "INBOX").peekable();
    others.peek().is_some() && others.all(|p| p.len() > 6 && p[..6].eq_ignore_ascii_case("INBOX/"))
}

/// Where a remote folder lands: INBOX in INBOX, a special-use folder (by attribute, or
/// by a well-known name when the server gives none) in ours of that use, any other at the
/// same path (without the `INBOX/` of an [`inbox_prefixed`] server).
pub fn local_name(folder: &RemoteFolder, ours: &[(SpecialUse, String)], inbox_prefix: bool) -> String {
    let mut path = remote_path(folder);
    if inbox_prefix && path.len() > 6 && path[..6].eq_ignore_ascii_case("INBOX/") {
        path.drain(..6);
    }
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
pub fn missing<'a>(
    remote: Vec<RemoteMessage>,
    local: impl IntoIterator<Item = &'a MessageMeta>,
) -> (Vec<RemoteMessage>, u64) {
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
        let name = |name, delimiter, special_use| local_name(&folder(name, delimiter, special_use), &ours(), false);
        assert_eq!(name("inbox", Some('.'), None), "INBOX");
        assert_eq!(name("Gesendet", Some('/'), Some(SpecialUse::Sent)), "Sent");
        assert_eq!(name("Sent Items", Some('/'), None), "Sent");
        assert_eq!(name("Deleted Items", None, None), "Trash");
        // No local folder of that use: the remote path.
        assert_eq!(name("Spam", Some('.'), None), "Spam");
        assert_eq!(name("Work.2024.Q1", Some('.'), None), "Work/2024/Q1");
        assert_eq!(name("a/b.c", Some('.'), None), "a_b/c");
        assert_eq!(name("Caf&AOk-", Some('/'), None), "Café");
        assert_eq!(name("INBOX.Sent", Some('.'), None), "INBOX/Sent");
    }

    #[test]
    fn a_server_keeping_everything_under_inbox_loses_the_prefix() {
        let courier = [
            folder("INBOX", Some('.'), None),
            folder("INBOX.Sent", Some('.'), None),
            folder("INBOX.Work.x", Some('.'), None),
        ];
        assert!(inbox_prefixed(&courier));
        assert_eq!(local_name(&courier[1], &ours(), true), "Sent");
        assert_eq!(local_name(&courier[2], &ours(), true), "Work/x");
        assert_eq!(local_name(&courier[0], &ours(), true), "INBOX");
        let mixed =
            [folder("INBOX", Some('.'), None), folder("INBOX.a", Some('.'), None), folder("Work", Some('.'), None)];
        assert!(!inbox_prefixed(&mixed));
        assert!(!inbox_prefixed(&[folder("INBOX", None, None)]));
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
            uidl: "".into(),
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
