//! The web pages as pure functions: routing, sessions (tampering, expiry, fixation),
//! the CSRF checks and every form, through the handler with an in-memory backend.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};

use super::backend::*;
use super::routes::{Route, is_web_path, route};
use super::session::{self, Session, SessionError, Sessions};
use super::*;
use crate::config::{Config, EnvSource};
use crate::http::web::WebRequest;
use crate::net::LoginOutcome;

const T0: u64 = 1_800_000_000;
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "correct horse battery";

/// Accepts alice and bob with [`PASSWORD`]; refuses everything after `refuse_after` failures.
struct FakeLogin {
    failures: Mutex<u32>,
}

#[async_trait]
impl Authenticator for FakeLogin {
    async fn login(&self, _ip: IpAddr, address: &str, password: &str) -> LoginOutcome<String> {
        let mut failures = self.failures.lock().unwrap();
        if *failures >= 3 {
            return LoginOutcome::Refused(crate::net::Blocked {
                scope: crate::net::BlockScope::Address,
                retry_after: std::time::Duration::from_secs(60),
            });
        }
        if (address == ALICE || address == BOB) && password == PASSWORD {
            LoginOutcome::LoggedIn(address.to_string())
        } else {
            *failures += 1;
            LoginOutcome::Failed
        }
    }
}

/// App passwords and vacations per account, in memory.
#[derive(Default)]
struct FakeBackend {
    passwords: Mutex<HashMap<String, String>>,
    apps: Mutex<HashMap<String, AppPasswords>>,
    vacations: Mutex<HashMap<String, Vacation>>,
}

#[async_trait]
impl AccountBackend for FakeBackend {
    async fn change_password(
        &self,
        _: std::net::IpAddr,
        account: &str,
        current: &str,
        new: &str,
    ) -> Result<(), BackendError> {
        let mut p = self.passwords.lock().unwrap();
        let now = p.entry(account.to_string()).or_insert_with(|| PASSWORD.to_string());
        if now != current {
            return Err(BackendError::WrongPassword);
        }
        *now = new.to_string();
        Ok(())
    }
    async fn app_passwords(&self, account: &str) -> Result<AppPasswords, BackendError> {
        Ok(self.apps.lock().unwrap().get(account).cloned().unwrap_or_default())
    }
    async fn create_app_password(&self, account: &str, name: &str) -> Result<NewAppPassword, BackendError> {
        let mut apps = self.apps.lock().unwrap();
        let list = apps.entry(account.to_string()).or_default();
        let id = format!("ap{}", list.passwords.len() + 1);
        list.passwords.push(AppPasswordView {
            id,
            name: name.to_string(),
            created: "2026-12-07".into(),
            last_used: None,
        });
        Ok(NewAppPassword { name: name.to_string(), secret: "abcd-efgh-ijkl-mnop".into() })
    }
    async fn revoke_app_password(&self, account: &str, id: &str) -> Result<(), BackendError> {
        let mut apps = self.apps.lock().unwrap();
        let list = apps.entry(account.to_string()).or_default();
        let before = list.passwords.len();
        list.passwords.retain(|p| p.id != id);
        if list.passwords.len() == before { Err(BackendError::NoSuchAppPassword) } else { Ok(()) }
    }
    async fn set_require_app_passwords(&self, account: &str, required: bool) -> Result<(), BackendError> {
        self.apps.lock().unwrap().entry(account.to_string()).or_default().required = required;
        Ok(())
    }
    async fn vacation(&self, account: &str) -> Result<Vacation, BackendError> {
        Ok(self.vacations.lock().unwrap().get(account).cloned().unwrap_or_default())
    }
    async fn set_vacation(&self, account: &str, vacation: &Vacation) -> Result<(), BackendError> {
        self.vacations.lock().unwrap().insert(account.to_string(), vacation.clone());
        Ok(())
    }
    async fn password_state(&self, account: &str) -> Result<String, BackendError> {
        Ok(self.passwords.lock().unwrap().get(account).cloned().unwrap_or_else(|| PASSWORD.to_string()))
    }
}

fn app_with(backend: Arc<dyn AccountBackend>) -> WebApp {
    let pairs =
        [("MAILROOM_HOSTNAME", "mx.example.com"), ("MAILROOM_DOMAINS", "example.com"), ("MAILROOM_ACME", "off")];
    let config =
        Config::load(&EnvSource::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))).unwrap().0;
    WebApp {
        hostname: config.hostname,
        listen: config.listen,
        certs: crate::tls::CertStore::new(),
        sessions: Sessions::new(&[7u8; 32]),
        admins: vec![ALICE.to_string()],
        login: Arc::new(FakeLogin { failures: Mutex::new(0) }),
        backend,
        admin: None,
    }
}

fn app() -> WebApp {
    app_with(Arc::new(FakeBackend::default()))
}

struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

impl Answer {
    /// The session cookie value this answer sets, if any.
    fn cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next()?.strip_prefix("__Host-mailroom=").map(str::to_string))
    }

    /// The CSRF token in the page's forms.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a token") + 19;
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

async fn call(app: &WebApp, method: Method, path: &str, cookie: Option<&str>, body: &str, now: u64) -> Answer {
    let mut req = WebRequest::get(path);
    req.method = method;
    req.body = Bytes::from(body.to_string());
    req.headers.insert(header::HOST, HeaderValue::from_static("mx.example.com"));
    if let Some(c) = cookie {
        req.headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; __Host-mailroom={c}")).unwrap());
    }
    let resp = handle(app, &req, now).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

async fn get(app: &WebApp, path: &str, cookie: Option<&str>) -> Answer {
    call(app, Method::GET, path, cookie, "", T0 + 10).await
}

async fn post(app: &WebApp, path: &str, cookie: Option<&str>, body: &str) -> Answer {
    call(app, Method::POST, path, cookie, body, T0 + 10).await
}

/// Log `who` in; the logged-in cookie and a page's CSRF token.
async fn login(app: &WebApp, who: &str) -> (String, String) {
    let page = call(app, Method::GET, "/account/login", None, "", T0).await;
    let pre = page.cookie().unwrap();
    let body = format!("csrf={}&address={}&password={}", enc(&page.csrf()), enc(who), enc(PASSWORD));
    let done = call(app, Method::POST, "/account/login", Some(&pre), &body, T0).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let cookie = done.cookie().unwrap();
    let home = get(app, "/account", Some(&cookie)).await;
    assert_eq!(home.status, StatusCode::OK);
    (cookie, home.csrf())
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[test]
fn routes_map_methods_and_paths() {
    assert_eq!(route(&Method::GET, "/account"), Route::Home);
    assert_eq!(route(&Method::GET, "/account/"), Route::Home);
    assert_eq!(route(&Method::HEAD, "/account/login"), Route::LoginForm);
    assert_eq!(route(&Method::POST, "/account/login"), Route::LoginSubmit);
    assert_eq!(route(&Method::GET, "/account/logout"), Route::MethodNotAllowed);
    assert_eq!(route(&Method::POST, "/account/logout"), Route::Logout);
    assert_eq!(route(&Method::POST, "/account/app-passwords/revoke"), Route::AppPasswordRevoke);
    assert_eq!(route(&Method::GET, "/account/setup/mailroom.mobileconfig"), Route::MobileConfig);
    assert_eq!(route(&Method::POST, "/admin"), Route::MethodNotAllowed);
    assert_eq!(route(&Method::GET, "/admin"), Route::Admin);
    assert_eq!(route(&Method::POST, "/admin/queue"), Route::AdminQueue);
    assert_eq!(route(&Method::POST, "/admin/dns"), Route::AdminDnsCheck);
    assert_eq!(route(&Method::GET, "/admin/queue"), Route::MethodNotAllowed);
    assert!(Route::AdminQueue.is_post() && Route::AdminDnsCheck.is_post());
    assert_eq!(route(&Method::DELETE, "/account"), Route::MethodNotAllowed);
    assert_eq!(route(&Method::GET, "/account/nope"), Route::NotFound);
    assert_eq!(route(&Method::GET, html::CSS_PATH.as_str()), Route::Stylesheet);
    assert_eq!(route(&Method::GET, "/account/static/style-0000.css"), Route::NotFound);
    assert!(is_web_path("/account") && is_web_path("/account/x") && is_web_path("/admin"));
    assert!(!is_web_path("/accounts") && !is_web_path("/administrator") && !is_web_path("/.well-known/mta-sts.txt"));
}

#[test]
fn sessions_round_trip_and_refuse_tampering() {
    let s = Sessions::new(&[1u8; 32]);
    let session = s.issue(Some(ALICE), T0);
    let cookie = s.encode(&session);
    assert_eq!(s.verify(&cookie, T0 + 1), Ok(session.clone()));
    // Another key, a changed payload, a changed tag, garbage.
    assert_eq!(Sessions::new(&[2u8; 32]).verify(&cookie, T0 + 1), Err(SessionError::BadSignature));
    let (payload, tag) = cookie.split_once('.').unwrap();
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        format!("v1|{}|{}|{}|{}", session.id, BOB, T0, T0),
    );
    assert_eq!(s.verify(&format!("{forged}.{tag}"), T0 + 1), Err(SessionError::BadSignature));
    assert_eq!(s.verify(&format!("{payload}.AAAA"), T0 + 1), Err(SessionError::BadSignature));
    assert_eq!(s.verify("nonsense", T0), Err(SessionError::Malformed));
    // A fresh id each time.
    assert_ne!(s.issue(Some(ALICE), T0).id, session.id);
}

#[test]
fn sessions_expire_when_idle_and_absolutely_and_when_revoked() {
    let s = Sessions::new(&[1u8; 32]);
    let session = s.issue(Some(ALICE), T0);
    let cookie = s.encode(&session);
    assert!(s.verify(&cookie, T0 + session::IDLE_LIFETIME - 1).is_ok());
    assert_eq!(s.verify(&cookie, T0 + session::IDLE_LIFETIME), Err(SessionError::Expired));
    // Kept alive by use, still over after 12 hours.
    let touched = Session { seen: T0 + session::ABSOLUTE_LIFETIME - 60, ..session.clone() };
    assert!(s.verify(&s.encode(&touched), T0 + session::ABSOLUTE_LIFETIME - 1).is_ok());
    assert_eq!(s.verify(&s.encode(&touched), T0 + session::ABSOLUTE_LIFETIME), Err(SessionError::Expired));
    s.revoke(&session, T0 + 5);
    assert_eq!(s.verify(&cookie, T0 + 6), Err(SessionError::Revoked));
}

#[test]
fn session_epochs_follow_the_password_state_and_are_keyed() {
    let s = Sessions::new(&[1u8; 32]);
    let session = Session { epoch: s.epoch("hash-1"), ..s.issue(Some(ALICE), T0) };
    assert!(s.epoch_current(&session, "hash-1"));
    assert!(!s.epoch_current(&session, "hash-2"), "a new password ends it");
    // Carried by the cookie, covered by its signature.
    let back = s.verify(&s.encode(&session), T0 + 1).unwrap();
    assert!(s.epoch_current(&back, "hash-1"));
    // Keyed: another server's key gives another epoch; none is never current.
    assert_ne!(Sessions::new(&[2u8; 32]).epoch("hash-1"), s.epoch("hash-1"));
    assert!(!s.epoch_current(&s.issue(Some(ALICE), T0), ""));
    assert!(!session.epoch.contains("hash"));
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_keeps_this_one() {
    let app = app();
    let (mine, csrf) = login(&app, ALICE).await;
    let (other, other_csrf) = login(&app, ALICE).await;
    let (bob, _) = login(&app, BOB).await;
    let new = "a brand new password";
    let body = format!("csrf={}&current={}&new={}&confirm={}", enc(&csrf), enc(PASSWORD), enc(new), enc(new));
    let changed = post(&app, "/account/password", Some(&mine), &body).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let fresh = changed.cookie().expect("a new cookie for this session");
    assert_ne!(fresh, mine);
    assert_eq!(get(&app, "/account", Some(&fresh)).await.status, StatusCode::OK, "still logged in");
    for stale in [&mine, &other] {
        let page = get(&app, "/account", Some(stale)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.headers[header::LOCATION], "/account/login");
    }
    // A form from the ended session is refused; another account's session goes on.
    let out = post(&app, "/account/logout", Some(&other), &format!("csrf={}", enc(&other_csrf))).await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/account", Some(&bob)).await.status, StatusCode::OK);
}

#[test]
fn csrf_tokens_are_bound_to_their_session() {
    let s = Sessions::new(&[1u8; 32]);
    let (a, b) = (s.issue(Some(ALICE), T0), s.issue(Some(ALICE), T0));
    let token = s.csrf_token(&a);
    assert!(s.csrf_ok(&a, &token));
    assert!(!s.csrf_ok(&b, &token));
    assert!(!s.csrf_ok(&a, ""));
    assert!(!s.csrf_ok(&a, "not base64 !"));
}

#[test]
fn the_key_file_is_made_once_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let a = Sessions::load_or_create(dir.path()).unwrap();
    let path = dir.path().join(session::KEY_FILE);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let b = Sessions::load_or_create(dir.path()).unwrap();
    let session = a.issue(Some(ALICE), T0);
    assert!(b.verify(&a.encode(&session), T0).is_ok(), "a restart (or another replica) accepts the session");
    std::fs::write(&path, "short\n").unwrap();
    assert!(Sessions::load_or_create(dir.path()).unwrap_err().to_string().contains("32 bytes"));
}

#[test]
fn cross_site_headers_are_refused() {
    use super::csrf::{CrossSite, same_origin};
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut h = hyper::HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("mx.example.com:8443"));
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    };
    assert_eq!(same_origin(&headers(&[])), Ok(()));
    assert_eq!(
        same_origin(&headers(&[("sec-fetch-site", "same-origin"), ("origin", "https://mx.example.com:8443")])),
        Ok(())
    );
    assert_eq!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])), Err(CrossSite::FetchSite));
    assert_eq!(same_origin(&headers(&[("sec-fetch-site", "same-site")])), Err(CrossSite::FetchSite));
    assert_eq!(same_origin(&headers(&[("origin", "https://evil.example")])), Err(CrossSite::Origin));
    assert_eq!(same_origin(&headers(&[("origin", "http://mx.example.com:8443")])), Err(CrossSite::Origin));
    assert_eq!(same_origin(&headers(&[("origin", "null")])), Err(CrossSite::Origin));
}

#[test]
fn forms_decode_and_validate() {
    let f = form::Form::parse(b"a=x+y%21&b=&c&a=second&d=%zz");
    assert_eq!(f.get("a"), Some("x y!"));
    assert_eq!(f.get("b"), Some(""));
    assert_eq!(f.get("c"), Some(""));
    assert_eq!(f.get("d"), Some("%zz"));
    let p = |s: &str| form::PasswordForm::from_form(&form::Form::parse(s.as_bytes()));
    assert!(p("current=old&new=short&confirm=short").unwrap_err().0.contains("at least 10"));
    assert!(p("current=old&new=longenough1&confirm=longenough2").unwrap_err().0.contains("differ"));
    assert!(p("current=longenough1&new=longenough1&confirm=longenough1").unwrap_err().0.contains("same"));
    assert!(p("new=longenough1&confirm=longenough1").is_err());
    assert_eq!(p("current=old&new=longenough1&confirm=longenough1").unwrap().new, "longenough1");
    let name = |s: &str| form::app_password_name(&form::Form::parse(s.as_bytes()));
    assert_eq!(name("name=+My+phone+").unwrap(), "My phone");
    assert!(name("name=").is_err() && name(&format!("name={}", "x".repeat(65))).is_err());
    assert!(name("name=a%0Ab").is_err());
    let v = |s: &str| form::vacation(&form::Form::parse(s.as_bytes()));
    let ok = v("enabled=on&subject=Away&text=Back+soon%0D%0Abye&start=2026-12-20&end=2027-01-02").unwrap();
    assert!(ok.enabled);
    assert_eq!(ok.text, "Back soon\nbye");
    assert_eq!(ok.end.unwrap().to_string(), "2027-01-02");
    assert!(v("enabled=on&text=x&start=2027-01-02&end=2026-12-20").unwrap_err().0.contains("before"));
    assert!(v("enabled=on&text=x&start=20.12.2026").unwrap_err().0.contains("first"));
    assert!(v("enabled=on&text=+").unwrap_err().0.contains("Write"));
    assert!(!v("text=").unwrap().enabled, "off needs no text");
    assert!(v("subject=a%0Ab&text=x").is_err(), "one-line subject");
}

#[tokio::test]
async fn login_issues_a_new_session_and_never_promotes_the_planted_one() {
    let app = app();
    let page = get(&app, "/account/login", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let pre = page.cookie().expect("a pre-login cookie");
    let set = page.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    // The pre-login cookie is no account.
    assert_eq!(get(&app, "/account", Some(&pre)).await.headers[header::LOCATION], "/account/login");
    let body = format!("csrf={}&address={}&password={}", enc(&page.csrf()), enc(ALICE), enc(PASSWORD));
    let done = post(&app, "/account/login", Some(&pre), &body).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let cookie = done.cookie().unwrap();
    let (old, new) = (app.sessions.verify(&pre, T0 + 10), app.sessions.verify(&cookie, T0 + 10).unwrap());
    assert_eq!(old, Err(SessionError::Revoked), "the planted id is dead");
    assert_eq!(new.account.as_deref(), Some(ALICE));
    assert_eq!(get(&app, "/account", Some(&pre)).await.status, StatusCode::SEE_OTHER);
    let home = get(&app, "/account", Some(&cookie)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains(ALICE));
    assert!(home.cookie().is_some(), "the idle clock restarts");
    // Logged in: the login page goes home.
    assert_eq!(get(&app, "/account/login", Some(&cookie)).await.headers[header::LOCATION], "/account");
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_limited() {
    let app = app();
    let page = get(&app, "/account/login", None).await;
    let pre = page.cookie().unwrap();
    let body = format!("csrf={}&address={}&password=wrong", enc(&page.csrf()), enc(ALICE));
    for _ in 0..3 {
        let a = post(&app, "/account/login", Some(&pre), &body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.body.contains("Wrong mail address or password") && a.cookie().is_none_or(|c| c == pre));
    }
    let limited = post(&app, "/account/login", Some(&pre), &body).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.body.contains("Too many attempts"));
    let empty = post(&app, "/account/login", Some(&pre), &format!("csrf={}", enc(&page.csrf()))).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn posts_without_the_right_token_or_from_another_site_are_403() {
    let app = app();
    let (cookie, csrf) = login(&app, ALICE).await;
    let (_, bob_csrf) = login(&app, BOB).await;
    let change = "current=x&new=longenough1&confirm=longenough1";
    assert_eq!(post(&app, "/account/password", Some(&cookie), change).await.status, StatusCode::FORBIDDEN);
    let with_bobs = format!("csrf={}&{change}", enc(&bob_csrf));
    assert_eq!(post(&app, "/account/password", Some(&cookie), &with_bobs).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        post(&app, "/account/logout", None, &format!("csrf={}", enc(&csrf))).await.status,
        StatusCode::FORBIDDEN
    );
    // The login form needs its token too (login CSRF).
    let blind = format!("address={}&password={}", enc(ALICE), enc(PASSWORD));
    assert_eq!(post(&app, "/account/login", None, &blind).await.status, StatusCode::FORBIDDEN);
    // The right token, but the browser says another site sent it.
    let mut req = WebRequest::get("/account/password");
    req.method = Method::POST;
    req.body = Bytes::from(format!("csrf={}&{change}", enc(&csrf)));
    req.headers.insert(header::HOST, HeaderValue::from_static("mx.example.com"));
    req.headers.insert(header::COOKIE, HeaderValue::from_str(&format!("__Host-mailroom={cookie}")).unwrap());
    req.headers.insert("origin", HeaderValue::from_static("https://evil.example"));
    assert_eq!(handle(&app, &req, T0 + 10).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = app();
    let (cookie, _) = login(&app, ALICE).await;
    for path in ["/account", "/account/login", "/account/password", "/account/setup", "/admin", "/account/nope"] {
        let a = get(&app, path, Some(&cookie)).await;
        assert_eq!(a.headers[header::CONTENT_SECURITY_POLICY], html::CSP, "{path}");
        assert_eq!(a.headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(a.headers[header::REFERRER_POLICY], "same-origin");
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
        assert!(a.headers.get(header::STRICT_TRANSPORT_SECURITY).is_none(), "no certificate, no HSTS");
    }
    let css = get(&app, html::CSS_PATH.as_str(), None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
    assert!(css.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
    // A trusted certificate brings HSTS; a self-signed one does not.
    let dir = tempfile::tempdir().unwrap();
    let mut cert = crate::tls::load_or_create_self_signed(dir.path(), "mx.example.com").unwrap();
    app.certs.set_default(cert.clone());
    assert!(get(&app, "/account", Some(&cookie)).await.headers.get(header::STRICT_TRANSPORT_SECURITY).is_none());
    cert.source = crate::tls::CertSource::Acme;
    app.certs.set_default(cert);
    assert!(get(&app, "/account", Some(&cookie)).await.headers.get(header::STRICT_TRANSPORT_SECURITY).is_some());
}

#[tokio::test]
async fn admin_is_for_admins_only() {
    let app = app();
    assert_eq!(get(&app, "/admin", None).await.headers[header::LOCATION], "/account/login");
    let (bob, bob_csrf) = login(&app, BOB).await;
    assert_eq!(get(&app, "/admin", Some(&bob)).await.status, StatusCode::FORBIDDEN);
    // With a good token of his own, the admin forms are still not his.
    for path in ["/admin/queue", "/admin/dns"] {
        let body = format!("csrf={}&id=Q1&action=delete", enc(&bob_csrf));
        assert_eq!(post(&app, path, Some(&bob), &body).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(!get(&app, "/account", Some(&bob)).await.body.contains("href=\"/admin\""));
    let (alice, _) = login(&app, ALICE).await;
    let page = get(&app, "/admin", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("administration page"));
}

#[tokio::test]
async fn logout_revokes_the_session() {
    let app = app();
    let (cookie, csrf) = login(&app, ALICE).await;
    let out = post(&app, "/account/logout", Some(&cookie), &format!("csrf={}", enc(&csrf))).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.cookie().as_deref(), Some(""), "cleared");
    assert!(out.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(get(&app, "/account", Some(&cookie)).await.headers[header::LOCATION], "/account/login");
}

#[tokio::test]
async fn password_form_reports_each_outcome() {
    let app = app();
    let (cookie, csrf) = login(&app, ALICE).await;
    let send = |body: String| {
        let app = &app;
        let cookie = cookie.clone();
        async move { post(app, "/account/password", Some(&cookie), &body).await }
    };
    let t = enc(&csrf);
    let short = send(format!("csrf={t}&current=x&new=short&confirm=short")).await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.body.contains("at least 10"));
    let wrong = send(format!("csrf={t}&current=nope&new=longenough1&confirm=longenough1")).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("current password is wrong"));
    let ok = send(format!("csrf={t}&current={}&new=longenough1&confirm=longenough1", enc(PASSWORD))).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body.contains("Your password is changed"));
}

#[tokio::test]
async fn app_passwords_are_shown_once_listed_and_revoked_per_account() {
    let app = app();
    let (cookie, csrf) = login(&app, ALICE).await;
    let t = enc(&csrf);
    let made = post(&app, "/account/app-passwords", Some(&cookie), &format!("csrf={t}&name=%3Cb%3Ephone")).await;
    assert_eq!(made.status, StatusCode::OK);
    assert!(made.body.contains("abcd-efgh-ijkl-mnop"));
    assert!(made.body.contains("&lt;b&gt;phone") && !made.body.contains("<b>phone"), "escaped");
    let list = get(&app, "/account/app-passwords", Some(&cookie)).await;
    assert!(!list.body.contains("abcd-efgh-ijkl-mnop"), "shown once");
    assert!(list.body.contains("never"));
    let (bob, bob_csrf) = login(&app, BOB).await;
    assert!(!get(&app, "/account/app-passwords", Some(&bob)).await.body.contains("phone"), "bob sees only his");
    let bob_revoke =
        post(&app, "/account/app-passwords/revoke", Some(&bob), &format!("csrf={}&id=ap1", enc(&bob_csrf))).await;
    assert_eq!(bob_revoke.status, StatusCode::NOT_FOUND, "the form cannot name another account");
    let on = post(&app, "/account/app-passwords/require", Some(&cookie), &format!("csrf={t}&required=on")).await;
    assert!(on.body.contains("now need an app password") && on.body.contains(" checked"));
    let gone = post(&app, "/account/app-passwords/revoke", Some(&cookie), &format!("csrf={t}&id=ap1")).await;
    assert_eq!(gone.status, StatusCode::OK);
    assert!(gone.body.contains("revoked") && gone.body.contains("None yet"));
}

#[tokio::test]
async fn vacation_form_round_trips_and_keeps_a_refused_form() {
    let app = app();
    let (cookie, csrf) = login(&app, ALICE).await;
    let t = enc(&csrf);
    let body =
        format!("csrf={t}&enabled=on&subject=Away+%3Cnow%3E&text=line1%0D%0Aline2&start=2026-12-20&end=2027-01-02");
    let saved = post(&app, "/account/vacation", Some(&cookie), &body).await;
    assert_eq!(saved.status, StatusCode::OK);
    let page = get(&app, "/account/vacation", Some(&cookie)).await;
    assert!(page.body.contains("value=\"Away &lt;now&gt;\""));
    assert!(page.body.contains(">line1\nline2</textarea>"));
    assert!(page.body.contains("value=\"2027-01-02\"") && page.body.contains(" checked"));
    let bad = post(
        &app,
        "/account/vacation",
        Some(&cookie),
        &format!("csrf={t}&enabled=on&subject=Kept&text=x&start=2027-01-02&end=2026-01-01"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("before the first day") && bad.body.contains("value=\"Kept\""));
}

#[tokio::test]
async fn pages_without_their_backend_say_so() {
    let app = app_with(Arc::new(NotWired));
    let (cookie, _) = login(&app, ALICE).await;
    let page = get(&app, "/account/vacation", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::NOT_IMPLEMENTED);
    assert!(page.body.contains("not available"));
}

#[tokio::test]
async fn setup_page_and_profile_name_our_ports() {
    let app = app();
    let (cookie, _) = login(&app, ALICE).await;
    let page = get(&app, "/account/setup", Some(&cookie)).await;
    assert!(page.body.contains("<td>IMAP</td><td>mx.example.com</td><td>993</td>"), "{}", page.body);
    assert!(page.body.contains("<td>465</td>") && page.body.contains("<td>4190</td>"));
    assert!(page.body.contains("emailaddress=alice%40example.com"));
    let profile = get(&app, "/account/setup/mailroom.mobileconfig", Some(&cookie)).await;
    assert_eq!(profile.headers[header::CONTENT_TYPE], "application/x-apple-aspen-config");
    assert!(profile.headers[header::CONTENT_DISPOSITION].to_str().unwrap().contains("attachment"));
    assert!(profile.body.contains("<string>com.apple.mail.managed</string>"));
    assert!(profile.body.contains("<key>IncomingMailServerPortNumber</key><integer>993</integer>"));
    assert!(profile.body.contains("<key>OutgoingMailServerPortNumber</key><integer>465</integer>"));
    // Stable: installing it again replaces the account.
    assert_eq!(profile.body, get(&app, "/account/setup/mailroom.mobileconfig", Some(&cookie)).await.body);
    // A well-formed XML document.
    let mut reader = quick_xml::Reader::from_str(&profile.body);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn pages_render_fast() {
    let app = app();
    let (cookie, _) = login(&app, ALICE).await;
    let started = std::time::Instant::now();
    for _ in 0..20 {
        get(&app, "/account/setup", Some(&cookie)).await;
    }
    assert!(started.elapsed() < std::time::Duration::from_millis(20 * 20), "{:?}", started.elapsed());
}
