//! Mailbox management: LIST (RFC 9051 6.3.9 with LIST-EXTENDED RFC 5258, LIST-STATUS RFC
//! 5819, SPECIAL-USE RFC 6154, CHILDREN RFC 3348), LSUB, CREATE (with USE), DELETE, RENAME,
//! SUBSCRIBE/UNSUBSCRIBE, STATUS, and QUOTA (RFC 9208) from the account's configured quota.
//! The hierarchy delimiter is `/`; there is one personal namespace with an empty prefix.

use super::{Tagged, store_error};
use crate::imap::command::{ListCommand, StatusItem};
use crate::imap::render::astring;
use crate::imap::session::Session;
use crate::store::{FolderInfo, SpecialUse, StoreError};

/// RFC 9051 6.3.9 wildcard match: `*` matches anything, `%` anything but the delimiter.
pub fn list_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // dp[j]: pattern prefix matches name prefix of length j
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                for j in 0..=n.len() {
                    next[j] = dp[j] || (j > 0 && next[j - 1] && (pc == '*' || n[j - 1] != '/'));
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = dp[j - 1] && n[j - 1] == c;
                }
            }
        }
        dp = next;
    }
    dp[n.len()]
}

/// The names LSUB returns, each with whether it is `\Noselect`: the subscribed names that
/// match (`\Noselect` when the mailbox does not exist), and, RFC 3501 6.3.9, an unsubscribed
/// parent that matches when its subscribed child does not ("foo/bar" subscribed, "foo" not:
/// `LSUB "" %` returns foo flagged `\Noselect`). Each name once, in subscription order.
fn lsub_lines(subs: &[String], pattern: &str, exists: impl Fn(&str) -> bool) -> Vec<(String, bool)> {
    let mut lines: Vec<(String, bool)> = Vec::new();
    let mut push = |name: &str, noselect: bool| {
        if !lines.iter().any(|(n, _)| n == name) {
            lines.push((name.to_string(), noselect));
        }
    };
    for name in subs {
        if list_match(pattern, name) {
            push(name, !exists(name));
            continue;
        }
        let mut parent = name.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            if !subs.iter().any(|s| s == p) && list_match(pattern, p) {
                push(p, true);
            }
        }
    }
    lines
}

/// INBOX is case-insensitive, also as the first level of a pattern.
fn normalise_inbox(pattern: &str) -> String {
    if pattern.len() >= 5
        && pattern[..5].eq_ignore_ascii_case("INBOX")
        && (pattern.len() == 5 || pattern[5..].starts_with('/'))
    {
        format!("INBOX{}", &pattern[5..])
    } else {
        pattern.to_string()
    }
}

impl Session {
    fn owner(&self) -> Option<crate::store::MailboxOwner> {
        self.user().map(|u| u.owner.clone())
    }

    /// Turn reference + pattern into one store-side pattern.
    fn full_pattern(&self, reference: &str, pattern: &str) -> String {
        let joined = if reference.is_empty() || pattern.starts_with('/') {
            pattern.to_string()
        } else if reference.ends_with('/') {
            format!("{reference}{pattern}")
        } else {
            format!("{reference}/{pattern}")
        };
        let decoded = if self.enabled.utf8_names() || !joined.is_ascii() {
            joined
        } else {
            crate::store::decode_mutf7(&joined).unwrap_or(joined)
        };
        normalise_inbox(&decoded)
    }

    fn write_name(&self, out: &mut Vec<u8>, name: &str) {
        astring(out, self.mailbox_to_client(name).as_bytes());
    }

    pub(crate) async fn cmd_list(&mut self, list: &ListCommand) -> Tagged {
        let Some(owner) = self.owner() else {
            return Tagged::bad("Log in first");
        };
        if list.patterns.len() == 1 && list.patterns[0].is_empty() {
            // RFC 9051 6.3.9: the delimiter and root of the reference.
            self.out.extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
            return Tagged::ok("LIST completed");
        }
        let folders = match self.ctx.store.list_folders(&owner).await {
            Ok(f) => f,
            Err(e) => return store_error(&e, &self.peer),
        };
        let subscriptions = if list.select.subscribed {
            self.ctx.store.subscriptions(&owner).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        let patterns: Vec<String> = list.patterns.iter().map(|p| self.full_pattern(&list.reference, p)).collect();
        let matched = |name: &str| patterns.iter().any(|p| list_match(p, name));
        let mut lines: Vec<(String, Vec<&'static str>, bool, Option<&'static str>)> = Vec::new();
        for f in &folders {
            let selected_by_options =
                (!list.select.subscribed || f.subscribed) && (!list.select.special_use || f.special_use.is_some());
            let mut child_info = None;
            if !selected_by_options {
                // RFC 5258 3.5 RECURSIVEMATCH: a parent that matches the pattern but not the
                // selection (not subscribed) is listed with CHILDINFO when a subscribed
                // descendant is not listed itself (its name does not match the pattern); a
                // descendant that is listed speaks for itself.
                let prefix = format!("{}/", f.name);
                let has_sub_child = list.select.recursive_match
                    && list.select.subscribed
                    && subscriptions.iter().any(|c| c.starts_with(&prefix) && !matched(c));
                if !(has_sub_child && matched(&f.name)) {
                    continue;
                }
                child_info = Some("SUBSCRIBED");
            } else if !matched(&f.name) {
                continue;
            }
            let mut attrs = Vec::new();
            attrs.push(if f.has_children { "\\HasChildren" } else { "\\HasNoChildren" });
            if let Some(su) = f.special_use {
                attrs.push(su.attribute());
            }
            if (list.ret.subscribed || list.select.subscribed) && f.subscribed {
                attrs.push("\\Subscribed");
            }
            lines.push((f.name.clone(), attrs, true, child_info));
        }
        if list.select.subscribed {
            // Subscribed names without a folder (RFC 5258 \NonExistent).
            for s in &subscriptions {
                if !folders.iter().any(|f| &f.name == s) && matched(s) {
                    lines.push((s.clone(), vec!["\\NonExistent", "\\Subscribed"], false, None));
                }
            }
        }
        for (name, attrs, selectable, child_info) in lines {
            let mut out = format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
            self.write_name(&mut out, &name);
            if let Some(ci) = child_info {
                out.extend_from_slice(format!(" (\"CHILDINFO\" (\"{ci}\"))").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&out);
            if selectable && !list.ret.status.is_empty() {
                match self.status_line(&owner, &name, &list.ret.status).await {
                    Ok(line) => self.out.extend_from_slice(&line),
                    Err(e) => tracing::debug!(error = %e, "LIST-STATUS skipped a folder"),
                }
            }
        }
        Tagged::ok("LIST completed")
    }

    pub(crate) async fn cmd_lsub(&mut self, reference: &str, pattern: &str) -> Tagged {
        let Some(owner) = self.owner() else {
            return Tagged::bad("Log in first");
        };
        let folders: Vec<FolderInfo> = match self.ctx.store.list_folders(&owner).await {
            Ok(f) => f,
            Err(e) => return store_error(&e, &self.peer),
        };
        let subs = self.ctx.store.subscriptions(&owner).await.unwrap_or_default();
        let pattern = self.full_pattern(reference, pattern);
        for (name, noselect) in lsub_lines(&subs, &pattern, |n| folders.iter().any(|f| f.name == n)) {
            let attrs = if noselect { "\\Noselect" } else { "" };
            let mut out = format!("* LSUB ({attrs}) \"/\" ").into_bytes();
            self.write_name(&mut out, &name);
            out.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&out);
        }
        Tagged::ok("LSUB completed")
    }

    /// `* STATUS name (...)` for one folder.
    async fn status_line(
        &mut self,
        owner: &crate::store::MailboxOwner,
        name: &str,
        items: &[StatusItem],
    ) -> Result<Vec<u8>, StoreError> {
        let mailbox = self.ctx.store.open_mailbox(owner, name).await?;
        // Counts straight from the index: no snapshot copy for a STATUS poll.
        let st = mailbox.status().await?;
        let mut parts = Vec::new();
        for item in items {
            parts.push(match item {
                StatusItem::Messages => format!("MESSAGES {}", st.messages),
                StatusItem::Recent => format!("RECENT {}", st.recent),
                StatusItem::UidNext => format!("UIDNEXT {}", st.uid_next),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", st.uid_validity),
                StatusItem::Unseen => format!("UNSEEN {}", st.unseen),
                StatusItem::Deleted => format!("DELETED {}", st.deleted),
                StatusItem::Size => format!("SIZE {}", st.size),
                StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", st.highest_modseq),
                StatusItem::AppendLimit => format!("APPENDLIMIT {}", self.ctx.limits.max_literal),
            });
        }
        let mut out = b"* STATUS ".to_vec();
        self.write_name(&mut out, name);
        out.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        Ok(out)
    }

    pub(crate) async fn cmd_status(&mut self, raw_name: &str, items: &[StatusItem]) -> Tagged {
        let Some(owner) = self.owner() else {
            return Tagged::bad("Log in first");
        };
        if items.contains(&StatusItem::HighestModSeq) {
            self.enabled.condstore = true;
        }
        let name = match self.mailbox_from_client(raw_name) {
            Ok(n) => n,
            Err(t) => return t,
        };
        match self.status_line(&owner, &name, items).await {
            Ok(line) => {
                self.out.extend_from_slice(&line);
                Tagged::ok("STATUS completed")
            }
            Err(e) => store_error(&e, &self.peer),
        }
    }

    pub(crate) async fn cmd_create(&mut self, raw_name: &str, special_use: &[String]) -> Tagged {
        let Some(owner) = self.owner() else {
            return Tagged::bad("Log in first");
        };
        let name = match self.mailbox_from_client(raw_name) {
            Ok(n) => n,
            Err(t) => return t,
        };
        if name == "INBOX" {
            return Tagged::no("INBOX always exists").code("ALREADYEXISTS");
        }
        let use_attr = match special_use {
            [] => None,
            [one] => match SpecialUse::from_attribute(one) {
                Some(u) => Some(u),
                None => return Tagged::no("Unsupported special-use attribute").code("USEATTR"),
            },
            _ => return Tagged::no("Only one special-use attribute per mailbox").code("USEATTR"),
        };
        match self.ctx.store.create_folder(&owner, &name, use_attr).await {
            Ok(()) => Tagged::ok("CREATE completed"),
            Err(e) => store_error(&e, &self.peer),
        }
    }

    pub(crate) async fn cmd_delete(&mut self, raw_name: &str) -> Tagged {
        let Some(owner) = self.owner() else {
            return Tagged::bad("Log in first");
        };
        let name = match self.mailbox_from_client(raw_name) {
            Ok(n) => n,
            Err(t) => return t,
        };
        if name == "INBOX" {
            return Tagged::no("INBOX cannot be deleted").code("CANNOT");
        }
        match self.ctx.store.delete_folder(&owner, &name).await {
            Ok(()) => Tagged::ok("DELETE completed"),
            Err(e) => store_error(&e, &self.peer),
        }
    }

    pub(crate) async fn cmd_rename(&mut self, from: &str, to: &str) -> Tagged {
        let Some(owner) = self.owner() else {
            return Tagged::bad("Log in first");
        };
        let (from, to) = match (self.mailbox_from_client(from), self.mailbox_from_client(to)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(t), _) | (_, Err(t)) => return t,
        };
        if to == "INBOX" {
            return Tagged::no("INBOX already exists").code("ALREADYEXISTS");
        }
        match self.ctx.store.rename_folder(&owner, &from, &to).await {
            Ok(()) => Tagged::ok("RENAME completed"),
            Err(e) => store_error(&e, &self.peer),
        }
    }

    pub(crate) async fn cmd_subscribe(&mut self, raw_name: &str, on: bool) -> Tagged {
        let Some(owner) = self.owner() else {
            return Tagged::bad("Log in first");
        };
        let name = match self.mailbox_from_client(raw_name) {
            Ok(n) => n,
            Err(t) => return t,
        };
        match self.ctx.store.set_subscribed(&owner, &name, on).await {
            Ok(()) => Tagged::ok(""),
            Err(e) => store_error(&e, &self.peer),
        }
    }

    /// `* QUOTA "" (STORAGE used limit)` in KiB (RFC 9208 5.1), or nothing without a quota.
    async fn write_quota(&mut self) -> Result<bool, StoreError> {
        let (Some(limit), Some(user)) = (self.quota_limit(), self.user()) else {
            return Ok(false);
        };
        let used = self.ctx.store.quota_usage(&user.owner).await?;
        self.out.extend_from_slice(
            format!("* QUOTA \"\" (STORAGE {} {})\r\n", used.div_ceil(1024), limit / 1024).as_bytes(),
        );
        Ok(true)
    }

    /// GETQUOTAROOT (RFC 9208 4.3) names a mailbox: it is checked like in STATUS (valid
    /// name, existing folder) before the answer echoes it back.
    pub(crate) async fn cmd_getquotaroot(&mut self, raw_name: &str) -> Tagged {
        let Some(owner) = self.owner() else {
            return Tagged::bad("Log in first");
        };
        let name = match self.mailbox_from_client(raw_name) {
            Ok(n) => n,
            Err(t) => return t,
        };
        if let Err(e) = self.ctx.store.open_mailbox(&owner, &name).await {
            return store_error(&e, &self.peer);
        }
        let mut out = b"* QUOTAROOT ".to_vec();
        self.write_name(&mut out, &name);
        if self.quota_limit().is_some() {
            out.extend_from_slice(b" \"\"");
        }
        out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&out);
        if let Err(e) = self.write_quota().await {
            return store_error(&e, &self.peer);
        }
        Tagged::ok("GETQUOTAROOT completed")
    }

    pub(crate) async fn cmd_getquota(&mut self, root: &str) -> Tagged {
        if !root.is_empty() {
            return Tagged::no("No such quota root").code("NONEXISTENT");
        }
        match self.write_quota().await {
            Ok(true) => Tagged::ok("GETQUOTA completed"),
            Ok(false) => Tagged::no("No such quota root").code("NONEXISTENT"),
            Err(e) => store_error(&e, &self.peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(list_match("*", "INBOX"));
        assert!(list_match("*", "a/b/c"));
        assert!(list_match("%", "Sent"));
        assert!(!list_match("%", "a/b"));
        assert!(list_match("a/%", "a/b"));
        assert!(!list_match("a/%", "a/b/c"));
        assert!(list_match("a*c", "a/b/c"));
        assert!(list_match("INBOX", "INBOX"));
        assert!(!list_match("INBOX", "INBOX/x"));
        assert!(list_match("", ""));
        assert_eq!(normalise_inbox("inbox/%"), "INBOX/%");
        assert_eq!(normalise_inbox("inboxes"), "inboxes");
    }
}
