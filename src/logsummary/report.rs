//! The summary as pflogsumm lays it out (grand totals, per-hour traffic, top domains,
//! deferral and bounce reasons), or as one JSON object with the same numbers.

use std::fmt::Write;

use serde_json::{Value, json};

use super::tally::{Capped, Count, Tally, Traffic};
use super::{Day, Options};

/// `part` of `whole` in percent, 0 when there is no whole.
fn percent(part: u64, whole: u64) -> u64 {
    (part * 100 + whole / 2).checked_div(whole).unwrap_or(0)
}

/// Bytes the way pflogsumm shows them: `512`, `12k`, `3m`, `2g`.
fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")];
    for (size, unit) in UNITS {
        if n >= size * 10 {
            return format!("{}{unit}", (n + size / 2) / size);
        }
    }
    n.to_string()
}

/// The percentages of the grand totals: rejected of everything offered (received plus
/// rejected), deferred and bounced of every delivery outcome.
struct Shares {
    rejected: u64,
    deferred: u64,
    bounced: u64,
}

fn shares(t: &Tally) -> Shares {
    let outcomes = t.delivered.count + t.deferred + t.bounced;
    Shares {
        rejected: percent(t.rejected, t.received.count + t.rejected),
        deferred: percent(t.deferred, outcomes),
        bounced: percent(t.bounced, outcomes),
    }
}

pub fn text(t: &Tally, options: &Options) -> String {
    let mut o = String::new();
    let title = match &options.day {
        Day::All => "mailroom log summary".to_string(),
        Day::On(d) => format!("mailroom log summary for {d}"),
    };
    let s = shares(t);
    let _ = writeln!(o, "{title}\n\nGrand Totals\n------------\nmessages\n");
    let _ = writeln!(o, "{:>8}   received", t.received.count);
    let _ = writeln!(o, "{:>8}   delivered", t.delivered.count);
    let _ = writeln!(o, "{:>8}   forwarded (queued for remote delivery)", t.queued.count);
    let _ = writeln!(o, "{:>8}   deferred  ({}%)", t.deferred, s.deferred);
    let _ = writeln!(o, "{:>8}   bounced   ({}%)", t.bounced, s.bounced);
    let _ = writeln!(o, "{:>8}   rejected  ({}%)", t.rejected, s.rejected);
    let _ = writeln!(o, "{:>8}   DSNs sent\n", t.dsns);
    let _ = writeln!(o, "{:>8}   bytes received", bytes(t.received.bytes));
    let _ = writeln!(o, "{:>8}   bytes delivered", bytes(t.delivered.bytes));
    let _ = writeln!(o, "{:>8}   bytes forwarded", bytes(t.queued.bytes));
    table(&mut o, "Refusals by reason", &t.refusal_reasons, options.top, false);
    let _ = writeln!(o, "\nPer-Hour Traffic Summary\n------------------------");
    traffic_header(&mut o, "time");
    for (h, traffic) in t.hours.iter().enumerate() {
        traffic_row(&mut o, &format!("{h:02}00-{:02}00", h + 1), traffic);
    }
    let days = t.per_day();
    if days.len() > 1 {
        let _ = writeln!(o, "\nPer-Day Traffic Summary\n-----------------------");
        traffic_header(&mut o, "date");
        for (day, traffic) in &days {
            traffic_row(&mut o, day, traffic);
        }
    }
    table(&mut o, "Sending domains by message count", &t.sender_domains, options.top, true);
    table(&mut o, "Recipient domains by message count", &t.recipient_domains, options.top, true);
    table(&mut o, "Deferral reasons", &t.deferral_reasons, options.top, false);
    table(&mut o, "Bounce reasons", &t.bounce_reasons, options.top, false);
    if !t.dmarc.is_empty() {
        table(&mut o, "SPF results (port 25)", &t.spf, options.top, false);
        table(&mut o, "DKIM results (port 25)", &t.dkim, options.top, false);
        table(&mut o, "DMARC results (port 25)", &t.dmarc, options.top, false);
    }
    o
}

fn traffic_header(o: &mut String, first: &str) {
    let _ = writeln!(
        o,
        "{first:<12}{:>10}{:>11}{:>10}{:>9}{:>10}",
        "received", "delivered", "deferred", "bounced", "rejected"
    );
}

fn traffic_row(o: &mut String, label: &str, t: &Traffic) {
    let _ = writeln!(
        o,
        "{label:<12}{:>10}{:>11}{:>10}{:>9}{:>10}",
        t.received, t.delivered, t.deferred, t.bounced, t.rejected
    );
}

/// A top-`n` table; `with_bytes` adds the bytes column.
fn table(o: &mut String, title: &str, counts: &Capped, n: usize, with_bytes: bool) {
    let _ = writeln!(o, "\n{title}\n{}", "-".repeat(title.len()));
    let rows = counts.top(n);
    if rows.is_empty() {
        let _ = writeln!(o, "none");
        return;
    }
    for (key, c) in rows {
        let key = if key.is_empty() { "(none)" } else { key.as_str() };
        match with_bytes {
            true => {
                let _ = writeln!(o, "{:>8} {:>8}   {key}", c.count, bytes(c.bytes));
            }
            false => {
                let _ = writeln!(o, "{:>8}   {key}", c.count);
            }
        }
    }
}

fn top_json(counts: &Capped, n: usize) -> Value {
    Value::Array(
        counts
            .top(n)
            .into_iter()
            .map(|(key, Count { count, bytes })| json!({"key": key, "count": count, "bytes": bytes}))
            .collect(),
    )
}

pub fn json(t: &Tally, n: usize) -> Value {
    let s = shares(t);
    let days: Vec<Value> = t
        .per_day()
        .into_iter()
        .map(|(day, traffic)| {
            let mut v = json!(traffic);
            v["day"] = json!(day);
            v
        })
        .collect();
    json!({
        "received": t.received,
        "delivered": t.delivered,
        "forwarded": t.queued,
        "deferred": t.deferred,
        "bounced": t.bounced,
        "rejected": t.rejected,
        "dsns": t.dsns,
        "percent": {"deferred": s.deferred, "bounced": s.bounced, "rejected": s.rejected},
        "refusal_reasons": top_json(&t.refusal_reasons, n),
        "hours": t.hours.to_vec(),
        "days": days,
        "sender_domains": top_json(&t.sender_domains, n),
        "recipient_domains": top_json(&t.recipient_domains, n),
        "deferral_reasons": top_json(&t.deferral_reasons, n),
        "bounce_reasons": top_json(&t.bounce_reasons, n),
        "spf": top_json(&t.spf, n),
        "dkim": top_json(&t.dkim, n),
        "dmarc": top_json(&t.dmarc, n),
    })
}
