//! The bodies of the account pages: pure functions from what the page shows (and the
//! session's CSRF token) to HTML. Every form posts to its own page and carries the
//! token; every label is tied to its field for screen readers.

use super::backend::{AppPasswords, NewAppPassword, Vacation};
use super::html::{csrf_field, esc, esc_lines, message};

/// A notice to show above a page's form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    None,
    Ok(String),
    Error(String),
}

impl Notice {
    pub(super) fn html(&self) -> String {
        match self {
            Notice::None => String::new(),
            Notice::Ok(t) => message(t, true),
            Notice::Error(t) => message(t, false),
        }
    }
}

pub fn login(csrf: &str, address: &str, notice: &Notice) -> String {
    format!(
        "{notice}<form method=\"post\" action=\"/account/login\">{csrf}\
         <label for=\"address\">Mail address</label>\
         <input id=\"address\" name=\"address\" type=\"email\" autocomplete=\"username\" required value=\"{address}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>",
        notice = notice.html(),
        csrf = csrf_field(csrf),
        address = esc(address),
    )
}

pub fn home(account: &str, admin: bool) -> String {
    let mut body = format!(
        "<p>You are logged in as <strong>{}</strong>.</p><ul>\
         <li><a href=\"/account/password\">Change your password</a></li>\
         <li><a href=\"/account/app-passwords\">App passwords</a> for mail programs and phones</li>\
         <li><a href=\"/account/vacation\">Vacation reply</a> while you are away</li>\
         <li><a href=\"/account/setup\">Set up a mail app</a>: server settings and an Apple profile</li>",
        esc(account)
    );
    if admin {
        body.push_str("<li><a href=\"/admin\">Server administration</a></li>");
    }
    body.push_str("</ul>");
    body
}

pub fn password(csrf: &str, notice: &Notice) -> String {
    format!(
        "{notice}<form method=\"post\" action=\"/account/password\">{csrf}\
         <label for=\"current\">Current password</label>\
         <input id=\"current\" name=\"current\" type=\"password\" autocomplete=\"current-password\" required>\
         <label for=\"new\">New password (at least {min} characters)</label>\
         <input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" minlength=\"{min}\" required>\
         <label for=\"confirm\">New password again</label>\
         <input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" minlength=\"{min}\" required>\
         <button type=\"submit\">Change password</button></form>",
        notice = notice.html(),
        csrf = csrf_field(csrf),
        min = super::form::MIN_PASSWORD,
    )
}

/// The app-passwords page; `created` is the one just made, shown this once.
pub fn app_passwords(csrf: &str, list: &AppPasswords, created: Option<&NewAppPassword>, notice: &Notice) -> String {
    let mut body = notice.html();
    if let Some(new) = created {
        body.push_str(&format!(
            "<div class=\"message ok\" role=\"status\"><p>The app password <strong>{}</strong> is:</p>\
             <p class=\"secret\">{}</p><p>Copy it into the mail app now: it is not shown again.</p></div>",
            esc(&new.name),
            esc(&new.secret)
        ));
    }
    body.push_str("<h2>Your app passwords</h2>");
    if list.passwords.is_empty() {
        body.push_str("<p class=\"muted\">None yet.</p>");
    } else {
        body.push_str(
            "<table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Created</th>\
             <th scope=\"col\">Last used</th><th scope=\"col\"><span class=\"muted\">Action</span></th></tr></thead><tbody>",
        );
        for p in &list.passwords {
            body.push_str(&format!(
                "<tr><td>{name}</td><td>{created}</td><td>{used}</td><td>\
                 <form class=\"inline\" method=\"post\" action=\"/account/app-passwords/revoke\">{csrf}\
                 <input type=\"hidden\" name=\"id\" value=\"{id}\">\
                 <button class=\"danger\" type=\"submit\" aria-label=\"Revoke {name}\">Revoke</button></form></td></tr>",
                name = esc(&p.name),
                created = esc(&p.created),
                used = p.last_used.as_deref().map(esc).unwrap_or_else(|| "never".to_string()),
                csrf = csrf_field(csrf),
                id = esc(&p.id),
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&format!(
        "<h2>New app password</h2><form method=\"post\" action=\"/account/app-passwords\">{csrf}\
         <label for=\"name\">Name (the device or program it is for)</label>\
         <input id=\"name\" name=\"name\" type=\"text\" maxlength=\"{max}\" required>\
         <button type=\"submit\">Create</button></form>\
         <h2>Mail apps</h2><form method=\"post\" action=\"/account/app-passwords/require\">{csrf}\
         <label class=\"check\" for=\"required\"><input id=\"required\" name=\"required\" type=\"checkbox\"{checked}>\
         Mail apps (IMAP, POP3, SMTP) must use an app password, not my main password</label>\
         <button type=\"submit\">Save</button></form>",
        csrf = csrf_field(csrf),
        max = super::form::MAX_APP_PASSWORD_NAME,
        checked = if list.required { " checked" } else { "" },
    ));
    body
}

pub fn vacation(csrf: &str, v: &Vacation, notice: &Notice) -> String {
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default();
    format!(
        "{notice}<form method=\"post\" action=\"/account/vacation\">{csrf}\
         <label class=\"check\" for=\"enabled\"><input id=\"enabled\" name=\"enabled\" type=\"checkbox\"{checked}>\
         Reply automatically to mail while I am away</label>\
         <label for=\"subject\">Subject</label>\
         <input id=\"subject\" name=\"subject\" type=\"text\" maxlength=\"{max_subject}\" value=\"{subject}\">\
         <label for=\"text\">Message</label>\
         <textarea id=\"text\" name=\"text\" maxlength=\"{max_text}\">{text}</textarea>\
         <label for=\"start\">First day (optional)</label>\
         <input id=\"start\" name=\"start\" type=\"date\" value=\"{start}\">\
         <label for=\"end\">Last day (optional)</label>\
         <input id=\"end\" name=\"end\" type=\"date\" value=\"{end}\">\
         <button type=\"submit\">Save</button></form>",
        notice = notice.html(),
        csrf = csrf_field(csrf),
        checked = if v.enabled { " checked" } else { "" },
        max_subject = super::form::MAX_VACATION_SUBJECT,
        subject = esc(&v.subject),
        max_text = super::form::MAX_VACATION_TEXT,
        text = esc_lines(&v.text),
        start = date(v.start),
        end = date(v.end),
    )
}

/// The admin page: for now only the shell that says what it is.
pub fn admin(account: &str) -> String {
    format!(
        "<p>This is the administration page of this server. You see it because <strong>{}</strong> \
         is listed in <code>MAILROOM_ADMINS</code>.</p>\
         <p class=\"muted\">The DNS checklist, certificates, queue and accounts will appear here.</p>",
        esc(account)
    )
}

/// A page whose backend is not there (yet): say so instead of a broken form.
pub fn unavailable(text: &str) -> String {
    message(text, false)
}
