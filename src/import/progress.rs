//! What the command prints while an import runs (pure text; the command decides where and
//! when): a one-line bar redrawn on a terminal, plain lines otherwise, the summary.

use std::time::Duration;

use super::Summary;
use crate::units::format_size;

/// Where the copy stands: done and total, messages and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub messages: u64,
    pub bytes: u64,
    pub total_messages: u64,
    pub total_bytes: u64,
}

/// `1h02m`, `3m05s`, `42s`.
fn clock(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

impl Counts {
    /// Bytes per second so far, `None` before there is anything to measure.
    fn rate(&self, elapsed: Duration) -> Option<u64> {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        (ms > 0 && self.bytes > 0).then(|| self.bytes.saturating_mul(1000) / ms)
    }

    /// `rate/s, ETA t` (bytes decide the ETA: messages differ in size), or `-`.
    fn speed(&self, elapsed: Duration) -> String {
        match self.rate(elapsed) {
            Some(rate) if rate > 0 => {
                let eta = self.total_bytes.saturating_sub(self.bytes) / rate;
                format!("{}/s, ETA {}", format_size(rate), clock(eta))
            }
            _ => "-, ETA -".into(),
        }
    }

    /// The terminal bar, `width` cells of `#`/`-` for the bytes done.
    pub fn bar(&self, elapsed: Duration, width: usize) -> String {
        let filled = if self.total_bytes == 0 {
            width
        } else {
            usize::try_from(u128::from(self.bytes.min(self.total_bytes)) * width as u128 / u128::from(self.total_bytes))
                .unwrap_or(width)
        };
        format!(
            "[{}{}] {}/{} messages, {}/{}, {}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.messages,
            self.total_messages,
            format_size(self.bytes),
            format_size(self.total_bytes),
            self.speed(elapsed)
        )
    }

    /// A plain progress line for logs and pipes.
    pub fn line(&self, elapsed: Duration) -> String {
        format!(
            "import: {}/{} messages, {} of {} bytes, {}",
            self.messages,
            self.total_messages,
            self.bytes,
            self.total_bytes,
            self.speed(elapsed)
        )
    }
}

/// The last line of a completed import.
pub fn summary_line(s: &Summary, elapsed: Duration) -> String {
    format!(
        "imported {} folder(s): {} message(s) copied ({} bytes), {} already here, {} error(s), in {}",
        s.folders,
        s.messages,
        s.bytes,
        s.skipped,
        s.errors,
        clock(elapsed.as_secs())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_and_lines() {
        let c = Counts { messages: 5, bytes: 512 * 1024, total_messages: 10, total_bytes: 1024 * 1024 };
        assert_eq!(c.bar(Duration::from_secs(2), 10), "[#####-----] 5/10 messages, 512K/1M, 256K/s, ETA 2s");
        assert_eq!(c.line(Duration::from_secs(2)), "import: 5/10 messages, 524288 of 1048576 bytes, 256K/s, ETA 2s");
        let empty = Counts::default();
        assert_eq!(empty.bar(Duration::ZERO, 4), "[####] 0/0 messages, 0/0, -, ETA -");
        assert_eq!(clock(3725), "1h02m");
        assert_eq!(clock(185), "3m05s");
        let s = Summary { folders: 3, messages: 7, bytes: 900, skipped: 2, errors: 1 };
        assert_eq!(
            summary_line(&s, Duration::from_secs(61)),
            "imported 3 folder(s): 7 message(s) copied (900 bytes), 2 already here, 1 error(s), in 1m01s"
        );
    }
}
