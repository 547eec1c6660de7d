//! Per-account quota usage, kept incrementally.
//!
//! Owns: the bytes each account uses. SMTP asks at every RCPT (452 4.2.2 when over), so the
//! answer must be cheap: one directory walk per account at first use after start (file
//! sizes come from the `S=`/`W=` name fields, no `stat` for our own files), then deliveries,
//! appends, copies and expunges adjust it in memory. The value is also written lazily to
//! `state/quota/<domain>/<local>` for operators; the walk, not that file, is the truth at
//! start. Changes made behind our back (a user deleting files by hand) are seen at the next
//! start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::filename::parse_file_name;
use super::layout::Layout;
use super::types::MailboxOwner;

/// How often the lazily persisted value is rewritten at most.
const PERSIST_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Usage {
    bytes: Option<u64>,
    persisted_at: Option<Instant>,
}

/// Quota usage of every account seen since start.
#[derive(Default)]
pub struct QuotaTracker {
    accounts: Mutex<HashMap<MailboxOwner, Arc<Mutex<Usage>>>>,
}

impl QuotaTracker {
    fn entry(&self, owner: &MailboxOwner) -> Option<Arc<Mutex<Usage>>> {
        let mut map = self.accounts.lock().ok()?;
        Some(map.entry(owner.clone()).or_default().clone())
    }

    /// The usage if it is already known (no walk needed).
    pub fn cached(&self, owner: &MailboxOwner) -> Option<u64> {
        let entry = self.entry(owner)?;
        let usage = entry.lock().ok()?;
        usage.bytes
    }

    /// Current usage in bytes; walks the account's Maildir on first use (blocking: call it
    /// on the blocking pool).
    pub fn usage(&self, layout: &Layout, owner: &MailboxOwner) -> u64 {
        let Some(entry) = self.entry(owner) else {
            return 0;
        };
        let Ok(mut usage) = entry.lock() else {
            return 0;
        };
        if let Some(b) = usage.bytes {
            return b;
        }
        let bytes = match layout.account_dir(owner) {
            Ok(dir) => walk_account(&dir),
            Err(_) => 0,
        };
        usage.bytes = Some(bytes);
        bytes
    }

    /// Adjust usage after a change (positive: stored, negative: expunged). A no-op before
    /// the first walk: the walk will see the files.
    pub fn adjust(&self, layout: &Layout, owner: &MailboxOwner, delta: i64) {
        let Some(entry) = self.entry(owner) else {
            return;
        };
        let Ok(mut usage) = entry.lock() else {
            return;
        };
        let Some(bytes) = usage.bytes else {
            return;
        };
        let new = bytes.saturating_add_signed(delta);
        usage.bytes = Some(new);
        let due = usage.persisted_at.is_none_or(|t| t.elapsed() >= PERSIST_EVERY);
        if due {
            usage.persisted_at = Some(Instant::now());
            let path = quota_file(layout, owner);
            if let (Some(path), Ok(handle)) = (path, tokio::runtime::Handle::try_current()) {
                handle.spawn_blocking(move || persist(&path, new));
            }
        }
    }
}

fn quota_file(layout: &Layout, owner: &MailboxOwner) -> Option<PathBuf> {
    layout.account_dir(owner).ok()?;
    Some(layout.state_root().join("quota").join(&owner.domain).join(&owner.local))
}

/// Write-then-rename so a reader never sees a torn value. Best effort: it is informational.
fn persist(path: &Path, bytes: u64) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, format!("{bytes}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Sum of message sizes in every folder of the account (cur/ and new/).
pub fn walk_account(root: &Path) -> u64 {
    let mut total = walk_maildir(root);
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name != "." && name != ".." && e.path().join("cur").is_dir() {
                total += walk_maildir(&e.path());
            }
        }
    }
    total
}

fn walk_maildir(dir: &Path) -> u64 {
    let mut total = 0;
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Some(parsed) = parse_file_name(&name) else {
                continue;
            };
            total += match parsed.wire_size.or(parsed.size) {
                Some(s) => s,
                None => e.metadata().map(|m| m.len()).unwrap_or(0),
            };
        }
    }
    total
}
