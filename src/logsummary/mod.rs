//! `mailroom log-summary`: the daily report an admin of Postfix got from pflogsumm,
//! built from the mail log (`maillog.rs`, target `mailroom::mail`) in either log
//! format. Every other line is skipped, so the whole server log (or `docker logs`) can
//! be piped in.
//!
//! It streams: lines are read one at a time (a line longer than [`MAX_LINE`] is
//! skipped), and what it keeps is bounded by the number of distinct domains, reasons
//! and days (`tally.rs` caps each map), never by the number of lines.
//!
//! `parse.rs` reads a line, `tally.rs` counts, `report.rs` renders text or JSON.

mod parse;
mod report;
mod tally;

#[cfg(test)]
mod tests;

use std::io::{self, BufRead, Write};

pub use parse::{Event, parse_line};
pub use tally::Tally;

/// Longest line read; a longer one is not a mail log line and is skipped.
pub const MAX_LINE: usize = 64 * 1024;

/// Which day's lines count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Day {
    All,
    /// `YYYY-MM-DD` (UTC).
    On(String),
}

impl Day {
    /// `today`, `yesterday` (UTC) or `YYYY-MM-DD`.
    pub fn parse(text: &str, today: chrono::NaiveDate) -> Result<Day, String> {
        let date = match text {
            "today" => today,
            "yesterday" => today.pred_opt().ok_or("no day before today")?,
            other => chrono::NaiveDate::parse_from_str(other, "%Y-%m-%d")
                .map_err(|_| format!("--day {other:?}: expected today, yesterday or YYYY-MM-DD"))?,
        };
        Ok(Day::On(date.format("%Y-%m-%d").to_string()))
    }

    fn includes(&self, day: &str) -> bool {
        match self {
            Day::All => true,
            Day::On(d) => d == day,
        }
    }
}

/// What the command was asked.
#[derive(Clone, Debug)]
pub struct Options {
    pub day: Day,
    /// Rows in each top-N table.
    pub top: usize,
    pub json: bool,
}

/// Count the mail log lines of `input` that fall on `day`.
pub fn tally(input: &mut impl BufRead, day: &Day, into: &mut Tally) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        match read_bounded_line(input, &mut buf)? {
            None => return Ok(()),
            Some(false) => continue,
            Some(true) => {}
        }
        let Ok(line) = std::str::from_utf8(&buf) else { continue };
        if let Some(event) = parse_line(line)
            && day.includes(&event.day)
        {
            into.add(&event);
        }
    }
}

/// Read one line into `buf` (at most [`MAX_LINE`] bytes kept). `None` at the end of
/// the input, `Some(false)` for a line too long (its bytes are consumed, not kept).
fn read_bounded_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    let mut fits = true;
    let mut any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(fits));
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if fits && buf.len() + chunk.len() <= MAX_LINE {
            buf.extend_from_slice(chunk);
        } else {
            fits = false;
            buf.clear();
        }
        let used = done.unwrap_or(chunk.len());
        input.consume(used);
        if done.is_some() {
            return Ok(Some(fits));
        }
    }
}

/// Write the report of `tally` as `options` ask.
pub fn write_report(tally: &Tally, options: &Options, out: &mut impl Write) -> io::Result<()> {
    if options.json {
        let value = report::json(tally, options.top);
        writeln!(out, "{}", serde_json::to_string_pretty(&value).unwrap_or_default())
    } else {
        out.write_all(report::text(tally, options).as_bytes())
    }
}
