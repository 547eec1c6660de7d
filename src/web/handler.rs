//! One request in, one response out: find the route, read the session, refuse
//! cross-site POSTs, read the form, call the backend, render. Time is an argument so
//! tests can move it.

use std::net::{IpAddr, Ipv6Addr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::backend::{BackendError, NewAppPassword, Vacation};
use super::csrf::{self, CrossSite};
use super::form::{self, Form, Invalid};
use super::html::{self, Frame};
use super::pages::{self, Notice};
use super::routes::{self, Route};
use super::session::{self, Session};
use super::{WebApp, admin, setup};
use crate::http::autoconfig::MailEndpoints;
use crate::http::web::WebRequest;
use crate::net::LoginOutcome;

type Resp = Response<Full<Bytes>>;

/// Answer a request for a web page (`routes::is_web_path`) at unix time `now`.
pub async fn handle(app: &WebApp, req: &WebRequest, now: u64) -> Resp {
    let started = std::time::Instant::now();
    let resp = dispatch(app, req, now).await;
    let page = routes::route(&req.method, &req.path).label();
    let elapsed = started.elapsed();
    crate::metrics::metrics().web_render_seconds.with_label_values(&[page]).observe(elapsed.as_secs_f64());
    tracing::debug!(page, status = resp.status().as_u16(), micros = elapsed.as_micros() as u64, "web page served");
    html::secure(resp, app.hsts())
}

async fn dispatch(app: &WebApp, req: &WebRequest, now: u64) -> Resp {
    let route = routes::route(&req.method, &req.path);
    match route {
        Route::NotFound => return html::error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page."),
        Route::MethodNotAllowed => {
            return html::error_page(StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "This page does not take that.");
        }
        Route::Stylesheet => return html::stylesheet(),
        Route::CopyScript => return html::copy_script(),
        _ => {}
    }
    let session = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
        .and_then(|c| app.sessions.verify(c, now).ok());
    let session = match session {
        Some(s) if s.account.is_some() => match password_unchanged(app, &s).await {
            Ok(true) => Some(s),
            // The password changed since this session began (here or on another replica):
            // it is over, like a logged-out one.
            Ok(false) => None,
            Err(()) => {
                return html::error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again",
                    "Your session cannot be checked right now. Try again in a minute.",
                );
            }
        },
        other => other,
    };
    let form = if route.is_post() {
        let form = Form::parse(&req.body);
        if let Err(why) = check_post(app, req, session.as_ref(), &form) {
            tracing::warn!(path = %req.path, ?why, "web form refused as cross-site");
            return html::error_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "This form was not sent from this site, or your session changed. Go back, reload the page and try again.",
            );
        }
        form
    } else {
        Form::default()
    };
    match route {
        Route::LoginForm => login_form(app, session, now),
        Route::LoginSubmit => login_submit(app, req, session, &form, now).await,
        _ => {
            let Some(session) = session.filter(|s| s.account.is_some()) else {
                // GETs go to the login page; a POST without a session failed the token above.
                return html::see_other("/account/login");
            };
            let mut session = Session { seen: now, ..session };
            let mut resp = logged_in(app, req, route, &session, &form, now).await;
            if route == Route::PasswordSubmit && resp.status() == StatusCode::OK {
                // The change ended every session of the account but this one, which moves
                // to the new epoch and stays logged in.
                if let Some(epoch) = epoch_now(app, session.account.as_deref().unwrap_or_default()).await {
                    session.epoch = epoch;
                }
            }
            if route != Route::Logout {
                set_cookie(&mut resp, &app.sessions.encode(&session), remaining(&session, now));
            }
            resp
        }
    }
}

/// Whether a logged-in session was issued under the account's current password;
/// `Err` when that cannot be known now (the store failed).
async fn password_unchanged(app: &WebApp, session: &Session) -> Result<bool, ()> {
    match app.backend.password_state(session.account.as_deref().unwrap_or_default()).await {
        Ok(state) => Ok(app.sessions.epoch_current(session, &state)),
        Err(BackendError::Failed) => Err(()),
        // The account is gone (or the backend refuses it): no session.
        Err(_) => Ok(false),
    }
}

/// The epoch for a new session of `account`, `None` when the store cannot say.
async fn epoch_now(app: &WebApp, account: &str) -> Option<String> {
    app.backend.password_state(account).await.ok().map(|state| app.sessions.epoch(&state))
}

/// The browser's own cross-site headers, then the session's token.
fn check_post(app: &WebApp, req: &WebRequest, session: Option<&Session>, form: &Form) -> Result<(), CrossSite> {
    csrf::same_origin(&req.headers)?;
    match (session, form.get("csrf")) {
        (Some(s), Some(token)) if app.sessions.csrf_ok(s, token) => Ok(()),
        _ => Err(CrossSite::Token),
    }
}

fn remaining(s: &Session, now: u64) -> u64 {
    s.issued.saturating_add(session::ABSOLUTE_LIFETIME).saturating_sub(now)
}

fn set_cookie(resp: &mut Resp, value: &str, max_age: u64) {
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(value, max_age)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn frame<'a>(app: &WebApp, title: &'a str, session: &'a Session, csrf: &'a str) -> Frame<'a> {
    let account = session.account.as_deref();
    Frame { title, account, csrf: Some(csrf), admin: account.is_some_and(|a| app.is_admin(a)) }
}

/// The login page: a logged-in visitor goes home; anybody else gets a pre-login
/// session (kept if still valid) whose token the form carries.
fn login_form(app: &WebApp, session: Option<Session>, now: u64) -> Resp {
    if session.as_ref().is_some_and(|s| s.account.is_some()) {
        return html::see_other("/account");
    }
    let pre = session.unwrap_or_else(|| app.sessions.issue(None, now));
    login_page(app, &pre, "", &Notice::None, StatusCode::OK, now)
}

fn login_page(app: &WebApp, pre: &Session, address: &str, notice: &Notice, status: StatusCode, now: u64) -> Resp {
    let csrf = app.sessions.csrf_token(pre);
    let body = pages::login(&csrf, address, notice);
    let frame = Frame { title: "Log in", account: None, csrf: None, admin: false };
    let mut resp = html::page(status, html::document(&frame, &body));
    let max_age = pre.issued.saturating_add(session::LOGIN_FORM_LIFETIME).saturating_sub(now);
    set_cookie(&mut resp, &app.sessions.encode(pre), max_age);
    resp
}

async fn login_submit(app: &WebApp, req: &WebRequest, pre: Option<Session>, form: &Form, now: u64) -> Resp {
    // check_post made sure there is a session with a good token.
    let pre = pre.unwrap_or_else(|| app.sessions.issue(None, now));
    let address = form.get("address").unwrap_or("").trim().to_string();
    let login = match form::LoginForm::from_form(form) {
        Ok(l) => l,
        Err(Invalid(m)) => return login_page(app, &pre, &address, &Notice::Error(m), StatusCode::BAD_REQUEST, now),
    };
    match app.login.login(client_ip(req), &login.address, &login.password).await {
        LoginOutcome::LoggedIn(account) => {
            // Never promote the pre-login id: a planted cookie stays anonymous.
            let Some(epoch) = epoch_now(app, &account).await else {
                let notice = Notice::Error("Passwords cannot be checked right now. Try again in a minute.".into());
                return login_page(app, &pre, &address, &notice, StatusCode::SERVICE_UNAVAILABLE, now);
            };
            app.sessions.revoke(&pre, now);
            let fresh = Session { epoch, ..app.sessions.issue(Some(&account), now) };
            let mut resp = html::see_other("/account");
            set_cookie(&mut resp, &app.sessions.encode(&fresh), session::ABSOLUTE_LIFETIME);
            resp
        }
        LoginOutcome::Failed => {
            let notice = Notice::Error("Wrong mail address or password.".into());
            login_page(app, &pre, &address, &notice, StatusCode::UNAUTHORIZED, now)
        }
        LoginOutcome::Refused(_) => {
            let notice = Notice::Error("Too many attempts. Wait a while and try again.".into());
            login_page(app, &pre, &address, &notice, StatusCode::TOO_MANY_REQUESTS, now)
        }
        LoginOutcome::Unavailable => {
            let notice = Notice::Error("Passwords cannot be checked right now. Try again in a minute.".into());
            login_page(app, &pre, &address, &notice, StatusCode::SERVICE_UNAVAILABLE, now)
        }
    }
}

/// The browser's address for the login limiter (unspecified only in tests without a peer).
fn client_ip(req: &WebRequest) -> IpAddr {
    req.peer.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

/// The pages behind login; `session` has an account.
async fn logged_in(app: &WebApp, req: &WebRequest, route: Route, session: &Session, form: &Form, now: u64) -> Resp {
    let account = session.account.as_deref().unwrap_or_default();
    let csrf = app.sessions.csrf_token(session);
    let show = |title: &str, status: StatusCode, body: String| {
        html::page(status, html::document(&frame(app, title, session, &csrf), &body))
    };
    let backend = &app.backend;
    match route {
        Route::Logout => {
            app.sessions.revoke(session, now);
            let mut resp = html::see_other("/account/login");
            set_cookie(&mut resp, "", 0);
            resp
        }
        Route::Home => show("Your account", StatusCode::OK, pages::home(account, app.is_admin(account))),
        Route::PasswordForm => show("Change password", StatusCode::OK, pages::password(&csrf, &Notice::None)),
        Route::PasswordSubmit => {
            let (status, notice) = match form::PasswordForm::from_form(form) {
                Err(Invalid(m)) => (StatusCode::BAD_REQUEST, Notice::Error(m)),
                Ok(p) => match backend.change_password(client_ip(req), account, &p.current, &p.new).await {
                    Ok(()) => (StatusCode::OK, Notice::Ok("Your password is changed.".into())),
                    Err(e) => (failure_status(&e), Notice::Error(e.to_string())),
                },
            };
            show("Change password", status, pages::password(&csrf, &notice))
        }
        Route::AppPasswords | Route::AppPasswordCreate | Route::AppPasswordRevoke | Route::AppPasswordRequire => {
            let (status, notice, created) = match route {
                Route::AppPasswordCreate => match form::app_password_name(form) {
                    Err(Invalid(m)) => (StatusCode::BAD_REQUEST, Notice::Error(m), None),
                    Ok(name) => match backend.create_app_password(account, &name).await {
                        Ok(new) => (StatusCode::OK, Notice::None, Some(new)),
                        Err(e) => (failure_status(&e), Notice::Error(e.to_string()), None),
                    },
                },
                Route::AppPasswordRevoke => match form::app_password_id(form) {
                    Err(Invalid(m)) => (StatusCode::BAD_REQUEST, Notice::Error(m), None),
                    Ok(id) => outcome(backend.revoke_app_password(account, &id).await, "The app password is revoked."),
                },
                Route::AppPasswordRequire => {
                    let on = form::required_switch(form);
                    let done =
                        if on { "Mail apps now need an app password." } else { "Mail apps may use your password." };
                    outcome(backend.set_require_app_passwords(account, on).await, done)
                }
                _ => (StatusCode::OK, Notice::None, None),
            };
            match backend.app_passwords(account).await {
                Ok(list) => {
                    show("App passwords", status, pages::app_passwords(&csrf, &list, created.as_ref(), &notice))
                }
                Err(e) => unavailable(&show, "App passwords", &e),
            }
        }
        Route::VacationForm => match backend.vacation(account).await {
            Ok(v) => show("Vacation reply", StatusCode::OK, pages::vacation(&csrf, &v, &Notice::None)),
            Err(e) => unavailable(&show, "Vacation reply", &e),
        },
        Route::VacationSubmit => {
            let (status, notice, shown) = match form::vacation(form) {
                Err(Invalid(m)) => (StatusCode::BAD_REQUEST, Notice::Error(m), vacation_as_sent(form)),
                Ok(v) => match backend.set_vacation(account, &v).await {
                    Ok(()) => (StatusCode::OK, Notice::Ok("Saved.".into()), v),
                    Err(e) => (failure_status(&e), Notice::Error(e.to_string()), v),
                },
            };
            show("Vacation reply", status, pages::vacation(&csrf, &shown, &notice))
        }
        Route::Setup => {
            let body = setup::page(&app.hostname, account, &MailEndpoints::from_listen(&app.listen));
            show("Set up a mail app", StatusCode::OK, body)
        }
        Route::MobileConfig => {
            match setup::mobileconfig(&app.hostname, account, &MailEndpoints::from_listen(&app.listen)) {
                Some(profile) => {
                    let mut resp =
                        crate::http::response(StatusCode::OK, "application/x-apple-aspen-config", profile.into_bytes());
                    resp.headers_mut().insert(
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_static("attachment; filename=\"mailroom.mobileconfig\""),
                    );
                    resp
                }
                None => html::error_page(
                    StatusCode::NOT_FOUND,
                    "No profile",
                    "This server has no IMAP or no submission port for a profile to point at.",
                ),
            }
        }
        Route::Admin | Route::AdminQueue | Route::AdminDnsCheck => {
            if !app.is_admin(account) {
                return html::error_page(
                    StatusCode::FORBIDDEN,
                    "Not allowed",
                    "This page is for the server's administrators.",
                );
            }
            let Some(source) = &app.admin else {
                return show("Administration", StatusCode::OK, pages::admin(account));
            };
            let (status, notice) = match route {
                Route::AdminQueue => match admin::queue_form(form.get("action"), form.get("id")) {
                    Ok((action, id)) => {
                        let result = source.queue_action(&id, action).await;
                        let status = if result.is_ok() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
                        (status, admin::queue_notice(action, &id, &result))
                    }
                    Err(m) => (StatusCode::BAD_REQUEST, Notice::Error(m)),
                },
                Route::AdminDnsCheck => {
                    source.refresh_dns();
                    (
                        StatusCode::OK,
                        Notice::Ok("A new DNS check has started; reload this page in a few seconds.".into()),
                    )
                }
                _ => (StatusCode::OK, Notice::None),
            };
            let snapshot = source.snapshot().await;
            html::with_script(show("Administration", status, admin::render(&snapshot, &csrf, &notice)))
        }
        Route::Stylesheet
        | Route::CopyScript
        | Route::LoginForm
        | Route::LoginSubmit
        | Route::MethodNotAllowed
        | Route::NotFound => html::error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page."),
    }
}

fn outcome(r: Result<(), BackendError>, done: &str) -> (StatusCode, Notice, Option<NewAppPassword>) {
    match r {
        Ok(()) => (StatusCode::OK, Notice::Ok(done.into()), None),
        Err(e) => (failure_status(&e), Notice::Error(e.to_string()), None),
    }
}

fn failure_status(e: &BackendError) -> StatusCode {
    match e {
        BackendError::WrongPassword | BackendError::Refused(_) => StatusCode::BAD_REQUEST,
        BackendError::NoSuchAppPassword => StatusCode::NOT_FOUND,
        BackendError::Unavailable => StatusCode::NOT_IMPLEMENTED,
        BackendError::Failed => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn unavailable(show: &impl Fn(&str, StatusCode, String) -> Resp, title: &str, e: &BackendError) -> Resp {
    show(title, failure_status(e), pages::unavailable(&e.to_string()))
}

/// A refused vacation form shown again as typed (dates that did not parse are dropped).
fn vacation_as_sent(form: &Form) -> Vacation {
    let date = |n: &str| chrono::NaiveDate::parse_from_str(form.get(n).unwrap_or(""), "%Y-%m-%d").ok();
    Vacation {
        enabled: form.get("enabled") == Some("on"),
        subject: form.get("subject").unwrap_or("").to_string(),
        text: form.get("text").unwrap_or("").to_string(),
        start: date("start"),
        end: date("end"),
    }
}
