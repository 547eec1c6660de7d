//! The data dir's free space: a cheap periodic `statvfs` that feeds two gauges, `/readyz`
//! and the SMTP transaction start, and the one test for "this write failed because the
//! disk (or the file system quota) is full".
//!
//! Why a watch and not only error handling: a write that fails with ENOSPC in the middle
//! of DATA has already cost the client the whole upload, and every layer must then clean
//! up after itself. Refusing new transactions with `452 4.3.1` (RFC 3463: mail system
//! full) while free space is below `MAILROOM_DISK_MIN_FREE` keeps the server from getting
//! there in the common case, and tells a load balancer (through `/readyz`) before the disk
//! is full. The error mapping still covers the rest: a single big message, another process
//! filling the disk between two samples. The watch never refuses reads, logins or
//! deletions: they are how a user frees space.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::metrics;
use crate::readiness::Readiness;
use crate::units::format_size;

/// How often the data dir is sampled: one `statvfs` system call, so it may be frequent,
/// and a filling disk is noticed within this time.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// The readiness blocker's key.
const BLOCKER: &str = "disk";

/// True when an I/O error says the file system (ENOSPC) or the user's file system quota
/// (EDQUOT) is full: a temporary condition the client should retry later, never a reason
/// to refuse the message for good, and distinct from other faults in the replies
/// (SMTP `452 4.3.1`, IMAP `[OVERQUOTA]`).
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Free and total bytes of the file system holding `path` (`statvfs`): free counts the
/// blocks an unprivileged process may use (`f_bavail`), as `df` shows.
// The statvfs field types are u64 on 64-bit Linux and u32 elsewhere.
#[allow(clippy::useless_conversion)]
pub fn sample(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `st` points to writable memory
    // of the right type; statvfs fills it on success and we read it only then.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    let frsize = u64::from(st.f_frsize);
    Ok((u64::from(st.f_bavail).saturating_mul(frsize), u64::from(st.f_blocks).saturating_mul(frsize)))
}

/// The last sample of the data dir and the threshold it is judged by.
#[derive(Debug)]
pub struct DiskWatch {
    path: PathBuf,
    min_free: u64,
    free: AtomicU64,
    low: AtomicBool,
}

impl DiskWatch {
    /// A watch of the file system holding `path`; `min_free` 0 never reports it low.
    /// Samples once now, so the first transaction is already judged.
    pub fn new(path: &Path, min_free: u64) -> Arc<DiskWatch> {
        let watch = Arc::new(DiskWatch {
            path: path.to_path_buf(),
            min_free,
            free: AtomicU64::new(0),
            low: AtomicBool::new(false),
        });
        watch.update();
        watch
    }

    /// Sample again and publish the result to the gauges. Returns the new "low" state. A
    /// failing `statvfs` (the directory vanished) keeps the previous state: it says nothing
    /// about free space.
    fn update(&self) -> bool {
        match sample(&self.path) {
            Ok((free, total)) => {
                self.free.store(free, Ordering::Relaxed);
                metrics().disk_free_bytes.set(i64::try_from(free).unwrap_or(i64::MAX));
                metrics().disk_size_bytes.set(i64::try_from(total).unwrap_or(i64::MAX));
                let low = free < self.min_free;
                self.low.store(low, Ordering::Relaxed);
                low
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the data dir's free space");
                self.low.load(Ordering::Relaxed)
            }
        }
    }

    /// Free space is below the threshold: new mail is refused with `452 4.3.1`.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Why `/readyz` fails while the space is low.
    fn reason(&self) -> String {
        format!(
            "the data dir has {} free, below MAILROOM_DISK_MIN_FREE ({})",
            format_size(self.free.load(Ordering::Relaxed)),
            format_size(self.min_free)
        )
    }

    /// Sample every [`SAMPLE_INTERVAL`], set or clear the readiness blocker and log each
    /// change of state once.
    pub fn spawn(self: Arc<Self>, readiness: Arc<Readiness>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut was_low = false;
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            loop {
                tick.tick().await;
                let watch = self.clone();
                let Ok(low) = tokio::task::spawn_blocking(move || watch.update()).await else {
                    continue;
                };
                if low {
                    readiness.set_blocker(BLOCKER, Some(self.reason()));
                } else if was_low {
                    readiness.set_blocker(BLOCKER, None);
                }
                if low != was_low {
                    if low {
                        tracing::warn!(reason = %self.reason(), "disk nearly full: refusing new mail");
                    } else {
                        tracing::info!("disk space is back: accepting mail again");
                    }
                    was_low = low;
                }
            }
        })
    }
}

/// What a protocol session consults at the start of a transaction: the watch, or none
/// (tests and tools that run without one are never low).
#[derive(Debug, Clone, Default)]
pub struct DiskSpace(Option<Arc<DiskWatch>>);

impl DiskSpace {
    pub fn new(watch: Arc<DiskWatch>) -> DiskSpace {
        DiskSpace(Some(watch))
    }

    pub fn is_low(&self) -> bool {
        self.0.as_ref().is_some_and(|w| w.is_low())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_and_quota_errors_are_recognised_by_kind() {
        assert!(is_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_full(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_full(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(!is_full(&io::Error::other("no space left on device")));
    }

    #[test]
    fn a_threshold_above_the_free_space_is_low_and_zero_never_is() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = sample(dir.path()).unwrap();
        assert!(total >= free && total > 0);
        assert!(DiskWatch::new(dir.path(), u64::MAX).is_low());
        assert!(!DiskWatch::new(dir.path(), 0).is_low());
        assert!(!DiskSpace::default().is_low());
    }
}
