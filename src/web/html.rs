//! The page frame every web page shares, the embedded stylesheet and copy script, and the responses
//! with the headers every page carries (a strict CSP, no framing, no sniffing, no
//! caching; HSTS once a real certificate serves).
//!
//! All text reaching HTML goes through [`esc`] (the one XML escaper, which also
//! covers HTML) — never format user data into markup any other way.

use std::sync::LazyLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// The stylesheet, embedded so the scratch image stays one file.
const CSS: &str = include_str!("style.css");

/// Its URL: the content hash in the name lets browsers keep it for a year.
pub static CSS_PATH: LazyLock<String> = LazyLock::new(|| format!("/account/static/style-{}.css", short_hash(CSS)));

/// The first 64 bits of the SHA-256 of a static file, hex: its name's cache buster.
fn short_hash(content: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, content.as_bytes());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The admin page's copy buttons: the one script, served from our origin (the CSP of the
/// page that loads it allows `'self'` scripts; never inline ones).
const COPY_JS: &str = include_str!("copy.js");

/// Its URL, content-hashed like the stylesheet's.
pub static COPY_JS_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/account/static/copy-{}.js", short_hash(COPY_JS)));

pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";
/// [`CSP`] plus scripts from our own origin: only for the page that loads [`COPY_JS_PATH`].
pub const CSP_WITH_SCRIPT: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Two years, the preload list's minimum.
const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    crate::xml::escape(s)
}

/// Escape text for a `<textarea>`, keeping its line breaks (the escaper drops control
/// characters, newlines among them).
pub fn esc_lines(s: &str) -> String {
    s.split('\n').map(esc).collect::<Vec<_>>().join("\n")
}

/// What the frame around a page shows.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The logged-in account: the navigation and the logout button.
    pub account: Option<&'a str>,
    /// The session's CSRF token (for the logout form).
    pub csrf: Option<&'a str>,
    /// Whether to link the admin page.
    pub admin: bool,
}

/// A whole HTML document around `body`.
pub fn document(frame: &Frame<'_>, body: &str) -> String {
    let mut nav = String::new();
    if let (Some(account), Some(csrf)) = (frame.account, frame.csrf) {
        nav.push_str("<nav aria-label=\"Account\"><ul>");
        for (href, label) in [
            ("/account", "Account"),
            ("/account/password", "Password"),
            ("/account/app-passwords", "App passwords"),
            ("/account/vacation", "Vacation"),
            ("/account/setup", "Mail apps"),
        ] {
            nav.push_str(&format!("<li><a href=\"{href}\">{label}</a></li>"));
        }
        if frame.admin {
            nav.push_str("<li><a href=\"/admin\">Admin</a></li>");
        }
        nav.push_str(&format!(
            "<li><form class=\"inline\" method=\"post\" action=\"/account/logout\">{}\
             <button class=\"link\" type=\"submit\">Log out {}</button></form></li></ul></nav>",
            csrf_field(csrf),
            esc(account)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{title} · mailroom</title><link rel=\"stylesheet\" href=\"{css}\"></head>\
         <body><header><a class=\"brand\" href=\"/account\">mailroom</a>{nav}</header>\
         <main id=\"main\"><h1>{title}</h1>\n{body}</main></body></html>\n",
        title = esc(frame.title),
        css = CSS_PATH.as_str(),
    )
}

/// The hidden field every form carries.
pub fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(token))
}

/// A notice above a form: an error (`role=alert`, read out at once) or a success.
pub fn message(text: &str, ok: bool) -> String {
    if ok {
        format!("<p class=\"message ok\" role=\"status\">{}</p>", esc(text))
    } else {
        format!("<p class=\"message error\" role=\"alert\">{}</p>", esc(text))
    }
}

/// The headers every web response carries; `hsts` when the served certificate is
/// trusted (HSTS with a self-signed one would lock users out of the warning page).
pub fn secure(mut resp: Response<Full<Bytes>>, hsts: bool) -> Response<Full<Bytes>> {
    let h = resp.headers_mut();
    // A page that loads our script set its own, wider policy ([`with_script`]).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    resp
}

/// An HTML page.
pub fn page(status: StatusCode, html: String) -> Response<Full<Bytes>> {
    crate::http::response(status, "text/html; charset=utf-8", html.into_bytes())
}

/// A 303 to `location` (after a POST, so a reload does not post again).
pub fn see_other(location: &str) -> Response<Full<Bytes>> {
    let mut resp = crate::http::response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", Vec::new());
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The stylesheet, cacheable for a year (its name changes with its content).
pub fn stylesheet() -> Response<Full<Bytes>> {
    let mut resp = crate::http::response(StatusCode::OK, "text/css; charset=utf-8", CSS.as_bytes().to_vec());
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    resp
}

/// The copy-button script, cached like the stylesheet.
pub fn copy_script() -> Response<Full<Bytes>> {
    let mut resp = crate::http::response(StatusCode::OK, "text/javascript; charset=utf-8", COPY_JS.as_bytes().to_vec());
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    resp
}

/// The `<script>` element a page body ends with to get copy buttons; such a page goes
/// out through [`with_script`].
pub fn copy_script_tag() -> String {
    format!("<script src=\"{}\" defer></script>", COPY_JS_PATH.as_str())
}

/// Allow our own scripts on this one response (see [`CSP_WITH_SCRIPT`]).
pub fn with_script(mut resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP_WITH_SCRIPT));
    resp
}

/// A short page for a refusal or an error.
pub fn error_page(status: StatusCode, title: &str, text: &str) -> Response<Full<Bytes>> {
    let frame = Frame { title, account: None, csrf: None, admin: false };
    let body = format!("<p>{}</p><p><a href=\"/account\">Back to your account</a></p>", esc(text));
    page(status, document(&frame, &body))
}

#[cfg(test)]
#[path = "style_tests.rs"]
mod style_tests;
