//! The admin page: the server's state ([`ServerStatus`], gathered by `status/`) as one
//! page, and the forms that act on it (queue retry/hold/release/delete, a new DNS check).
//!
//! Rendering is a pure function of a snapshot, so it is tested without a server. The
//! snapshot never waits for DNS (the checklist is cached by `status/`), so the page
//! renders in milliseconds. A value to publish sits in a `<code>` that selects whole on
//! one click (CSS `user-select: all`); the page's one script (`copy.js`, from our origin,
//! never inline) adds a Copy button beside each, so without JavaScript nothing is lost.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::html::esc;
use super::pages::Notice;
use crate::status::{
    CertificateView, DnsRow, DnsView, FetchView, OutboundResult, QueueAction, QueueActionError, QueueView, RecentEvent,
    RowState, ServerStatus, StatusSources,
};

/// What the admin page reads and does. The server plugs in [`StatusSources`].
#[async_trait]
pub trait AdminSource: Send + Sync {
    async fn snapshot(&self) -> ServerStatus;
    async fn queue_action(&self, id: &str, action: QueueAction) -> Result<(), QueueActionError>;
    /// Ask for a new DNS check (it runs in the background; the page shows the last one).
    fn refresh_dns(&self);
}

#[async_trait]
impl AdminSource for StatusSources {
    async fn snapshot(&self) -> ServerStatus {
        StatusSources::snapshot(self).await
    }
    async fn queue_action(&self, id: &str, action: QueueAction) -> Result<(), QueueActionError> {
        StatusSources::queue_action(self, id, action).await
    }
    fn refresh_dns(&self) {
        StatusSources::refresh_dns(self)
    }
}

/// A queue form's fields, checked: the action word and the item id.
pub fn queue_form(action: Option<&str>, id: Option<&str>) -> Result<(QueueAction, String), String> {
    let action = action.and_then(QueueAction::parse).ok_or("Choose retry, hold, release or delete.")?;
    let id = id.map(str::trim).filter(|i| !i.is_empty()).ok_or("No queue item was named.")?;
    Ok((action, id.to_string()))
}

/// What a queue action came to, for the notice above the page.
pub fn queue_notice(action: QueueAction, id: &str, result: &Result<(), QueueActionError>) -> Notice {
    match result {
        Ok(()) => Notice::Ok(format!("{} {id}: done.", action_label(action))),
        Err(e) => Notice::Error(format!("{} {id}: {e}", action_label(action))),
    }
}

fn action_label(action: QueueAction) -> &'static str {
    match action {
        QueueAction::Retry => "Retry",
        QueueAction::Hold => "Hold",
        QueueAction::Release => "Release",
        QueueAction::Delete => "Delete",
    }
}

/// The whole admin page body.
pub fn render(s: &ServerStatus, csrf: &str, notice: &Notice) -> String {
    let mut out = notice.html();
    let _ = write!(
        out,
        "<p>{} · mailroom {} · up {}</p>",
        esc(&s.hostname),
        esc(s.version),
        ago(s.started, s.now).trim_end_matches(" ago")
    );
    headline(&mut out, s);
    dns(&mut out, &s.dns, csrf, s.now);
    certificates(&mut out, &s.certificates, s.now);
    queue(&mut out, s.queue.as_ref(), s.queue_error.as_deref(), csrf, s.now);
    recent(&mut out, &s.recent, s.now);
    reports(&mut out, s);
    fetch(&mut out, &s.fetch, s.now);
    accounts(&mut out, s);
    out.push_str(&super::html::copy_script_tag());
    out
}

fn headline(out: &mut String, s: &ServerStatus) {
    let h = &s.headline;
    out.push_str("<h2>Since the start</h2><dl class=\"numbers\">");
    for (label, n) in [
        ("Messages received", h.messages_received),
        ("Messages refused", h.messages_refused),
        ("Recipients delivered", h.recipients_delivered),
        ("Recipients deferred", h.recipients_deferred),
        ("Recipients bounced", h.recipients_bounced),
        ("In the queue now", h.queue_items),
        ("SMTP sessions now", h.smtp_sessions_active),
    ] {
        let _ = write!(out, "<div><dt>{label}</dt><dd>{n}</dd></div>");
    }
    out.push_str("</dl>");
}

fn state_badge(state: RowState) -> &'static str {
    match state {
        RowState::Ok => "<span class=\"badge good\">ok</span>",
        RowState::Missing => "<span class=\"badge bad\">missing</span>",
        RowState::Wrong => "<span class=\"badge bad\">wrong</span>",
        RowState::Error => "<span class=\"badge bad\">lookup failed</span>",
    }
}

fn dns(out: &mut String, view: &DnsView, csrf: &str, now: SystemTime) {
    out.push_str("<h2 id=\"dns\">DNS</h2>");
    match view.checked_at {
        None => out.push_str("<p class=\"muted\">Not checked yet (the first check runs a minute after the start).</p>"),
        Some(at) => {
            let verdict =
                if view.all_required_ok { "every required record is right" } else { "records need attention" };
            let _ = write!(out, "<p>Checked {}: {verdict}.</p>", ago(at, now));
        }
    }
    if let Some(e) = &view.error {
        out.push_str(&super::html::message(e, false));
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/admin/dns\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Check DNS again</button></form>",
        esc(csrf)
    );
    for row in &view.rows {
        dns_row(out, row);
    }
}

fn dns_row(out: &mut String, row: &DnsRow) {
    let class = if row.state == RowState::Ok { "check good" } else { "check bad" };
    let required = if row.required { "" } else { " <span class=\"muted\">(optional)</span>" };
    let _ = write!(
        out,
        "<div class=\"{class}\"><p>{} <strong>{}</strong> {}{required}</p>",
        state_badge(row.state),
        esc(&row.name),
        esc(&row.rtype)
    );
    if row.state != RowState::Ok && !row.expected.is_empty() {
        let _ = write!(
            out,
            "<p>Publish:</p><code class=\"copy\" data-name=\"{} {}\">{}</code>",
            esc(&row.name),
            esc(&row.rtype),
            esc(&row.expected)
        );
        if !row.found.is_empty() {
            let _ = write!(out, "<p class=\"muted\">Found: {}</p>", esc(&row.found.join(" | ")));
        }
    }
    if !row.comment.is_empty() {
        let _ = write!(out, "<p class=\"muted\">{}</p>", esc(&row.comment));
    }
    out.push_str("</div>");
}

fn certificates(out: &mut String, certs: &[CertificateView], now: SystemTime) {
    out.push_str("<h2>Certificates</h2>");
    if certs.is_empty() {
        out.push_str("<p class=\"muted\">No certificate is loaded.</p>");
    }
    for c in certs {
        let expiry = c.not_after.map(|t| until(t, now)).unwrap_or_else(|| "unknown".into());
        let _ = write!(
            out,
            "<div class=\"check {}\"><p><strong>{}</strong></p><p>{} · issued by {}{} · expires {}</p>",
            if c.last_acme_error.is_some() { "bad" } else { "good" },
            esc(&c.names.join(", ")),
            esc(c.source),
            esc(&c.issuer),
            if c.self_signed { " (self-signed)" } else { "" },
            esc(&expiry)
        );
        if let Some(next) = c.next_renewal {
            let _ = write!(out, "<p>Next renewal {}</p>", esc(&until(next, now)));
        }
        if let Some(e) = &c.last_acme_error {
            out.push_str(&super::html::message(&format!("Last ACME error: {e}"), false));
        }
        out.push_str("</div>");
    }
}

fn queue(out: &mut String, view: Option<&QueueView>, error: Option<&str>, csrf: &str, now: SystemTime) {
    out.push_str("<h2 id=\"queue\">Queue</h2>");
    if let Some(e) = error {
        out.push_str(&super::html::message(&format!("The queue cannot be read: {e}"), false));
    }
    let Some(view) = view else { return };
    if view.items.is_empty() {
        out.push_str("<p>The queue is empty.</p>");
        return;
    }
    if view.total > view.items.len() {
        let _ = write!(out, "<p>The first {} of {} items.</p>", view.items.len(), view.total);
    }
    for item in &view.items {
        let _ = write!(
            out,
            "<div class=\"check\"><p><strong>{}</strong> · {} · from {} · {} bytes · {} attempt(s) · next {}</p><ul>",
            esc(&item.id),
            esc(item.state),
            esc(if item.sender.is_empty() { "<>" } else { &item.sender }),
            item.size,
            item.attempts,
            esc(&until(item.next_attempt, now))
        );
        for r in &item.recipients {
            let reply = r
                .last_status
                .as_ref()
                .map(|s| s.to_string())
                .or_else(|| r.last_reply.clone())
                .unwrap_or_else(|| "no attempt yet".into());
            let _ = write!(out, "<li>{} · {} · {}</li>", esc(&r.address), esc(r.status), esc(&reply));
        }
        out.push_str("</ul><div class=\"actions\">");
        for action in ["retry", "hold", "release", "delete"] {
            let class = if action == "delete" { " class=\"danger\"" } else { "" };
            let _ = write!(
                out,
                "<form class=\"inline\" method=\"post\" action=\"/admin/queue\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"id\" value=\"{id}\">\
                 <input type=\"hidden\" name=\"action\" value=\"{action}\">\
                 <button{class} type=\"submit\" aria-label=\"{label} {id}\">{label}</button></form> ",
                csrf = esc(csrf),
                id = esc(&item.id),
                label = action_label(QueueAction::parse(action).unwrap_or(QueueAction::Retry)),
            );
        }
        out.push_str("</div></div>");
    }
}

fn recent(out: &mut String, events: &[RecentEvent], now: SystemTime) {
    out.push_str("<h2>Recent deliveries and refusals</h2>");
    if events.is_empty() {
        out.push_str("<p class=\"muted\">Nothing since the start.</p>");
        return;
    }
    out.push_str("<table><thead><tr><th>When</th><th>What</th><th>Reply</th></tr></thead><tbody>");
    for e in events {
        let (at, what, status, ok) = match e {
            RecentEvent::Inbound(i) => (
                i.at,
                format!(
                    "{} from {} ({}) to {}{}",
                    if i.accepted { "accepted" } else { "refused" },
                    if i.sender.is_empty() { "<>" } else { &i.sender },
                    i.client,
                    i.first_recipient,
                    if i.recipients > 1 { format!(" and {} more", i.recipients - 1) } else { String::new() }
                ),
                &i.status,
                i.accepted,
            ),
            RecentEvent::Outbound(o) => (
                o.at,
                format!("{} {} to {}", outbound_word(o.result), o.queue_id, o.recipient_domain),
                &o.status,
                o.result == OutboundResult::Delivered,
            ),
        };
        let _ = write!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            if ok { "good" } else { "bad" },
            esc(&ago(at, now)),
            esc(&what),
            esc(&status.to_string())
        );
    }
    out.push_str("</tbody></table>");
}

fn outbound_word(result: OutboundResult) -> &'static str {
    match result {
        OutboundResult::Delivered => "delivered",
        OutboundResult::Deferred => "deferred",
        OutboundResult::Bounced => "bounced",
    }
}

fn reports(out: &mut String, s: &ServerStatus) {
    if s.reports_today.is_empty() && s.report_runs.is_empty() {
        return;
    }
    out.push_str("<h2>DMARC and TLS reports</h2>");
    if !s.reports_today.is_empty() {
        out.push_str("<table><thead><tr><th>Kind</th><th>Domain</th><th>Rows today</th></tr></thead><tbody>");
        for r in &s.reports_today {
            let _ = write!(out, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(r.kind), esc(&r.domain), r.count);
        }
        out.push_str("</tbody></table>");
    }
    for run in &s.report_runs {
        let _ = write!(
            out,
            "<p>Last {} run {}: {} — {}</p>",
            esc(run.kind),
            esc(&ago(run.at, s.now)),
            if run.ok { "ok" } else { "failed" },
            esc(&run.summary)
        );
    }
}

/// The `MAILROOM_FETCH` sources, each with its last error (when it happened, and when
/// the back-off lets the next run start), so a source that stopped is seen, not guessed.
fn fetch(out: &mut String, sources: &[FetchView], now: SystemTime) {
    if sources.is_empty() {
        return;
    }
    out.push_str("<h2>Fetched accounts</h2>");
    for f in sources {
        let badge = match (f.failing(), f.last_success) {
            (true, _) => "<span class=\"badge bad\">failing</span>",
            (false, Some(_)) => "<span class=\"badge good\">ok</span>",
            (false, None) => "<span class=\"badge\">not run yet</span>",
        };
        let _ = write!(out, "<div class=\"check\"><p>{badge} <strong>{}</strong>", esc(&f.name));
        if let Some(at) = f.last_success {
            let _ = write!(out, " · last fetched {}", esc(&ago(at, now)));
        }
        let _ = write!(out, " · {} messages since the start", f.messages);
        if let Some(next) = f.next_try {
            let _ = write!(out, " · next run {}", esc(&until(next, now)));
        }
        out.push_str("</p>");
        if let Some(e) = &f.last_error {
            let streak = if f.failing() { format!(" ({} failed runs in a row)", f.failures) } else { String::new() };
            let _ = write!(out, "<p>Last error {}{streak}: {}</p>", esc(&ago(e.at, now)), esc(&e.message));
        }
        out.push_str("</div>");
    }
}

fn accounts(out: &mut String, s: &ServerStatus) {
    out.push_str("<h2>Accounts</h2><table><thead><tr><th>Address</th><th>Used</th><th>Quota</th></tr></thead><tbody>");
    for a in &s.accounts {
        let used = a.quota_used.map(bytes).unwrap_or_else(|| "?".into());
        let limit = a.quota_limit.map(bytes).unwrap_or_else(|| "none".into());
        let _ = write!(out, "<tr><td>{}</td><td>{used}</td><td>{limit}</td></tr>", esc(&a.address));
    }
    out.push_str("</tbody></table><p class=\"muted\">Accounts come from <code>MAILROOM_ACCOUNTS</code>.</p>");
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} bytes") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// "3 min ago", coarse on purpose: the page is for people.
fn ago(at: SystemTime, now: SystemTime) -> String {
    match now.duration_since(at) {
        Ok(d) => format!("{} ago", span(d)),
        Err(_) => "just now".into(),
    }
}

/// "in 3 h" or, for a time past, "3 h ago".
fn until(at: SystemTime, now: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(d) => format!("in {}", span(d)),
        Err(_) => ago(at, now),
    }
}

fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
