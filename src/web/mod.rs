//! The web pages on the HTTPS port: account self-service under `/account` and the
//! admin page under `/admin` (for `MAILROOM_ADMINS`). Server-rendered HTML, one
//! embedded stylesheet; everything works without JavaScript (the admin page's one
//! script, `copy.js`, only adds Copy buttons). Everything else on port 443 (ACME,
//! MTA-STS, autoconfig) stays in `http::web`, which hands these paths here.
//!
//! One concern per file: `routes.rs` maps a request to a page (pure), `session.rs`
//! the signed session cookie (with the password epoch that ends it at a password
//! change) and the CSRF token, `csrf.rs` the cross-site header
//! checks, `form.rs` the forms (pure), `pages.rs`/`setup.rs` the HTML (pure),
//! `html.rs` the frame and headers, `backend.rs` what the pages ask of the server,
//! `handler.rs` the one async function that ties them together.
//!
//! It never stores passwords or scripts itself: logins go through the shared
//! `net::verify_login` (its limiter, the protocol label `web`), changes through
//! [`AccountBackend`].

pub mod admin;
pub mod backend;
pub mod csrf;
pub mod form;
mod handler;
pub mod html;
pub mod pages;
pub mod routes;
pub mod session;
pub mod setup;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;

pub use admin::AdminSource;
pub use backend::{AccountBackend, AppPasswordView, AppPasswords, BackendError, NewAppPassword, NotWired, Vacation};
pub use handler::handle;
pub use session::Sessions;

use crate::config::ListenConfig;
use crate::credentials::Credentials;
use crate::net::{Limiter, LoginOutcome};
use crate::tls::{CertSource, CertStore};

/// The password check the login form uses.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The canonical account address, or why not.
    async fn login(&self, ip: IpAddr, address: &str, password: &str) -> LoginOutcome<String>;
}

/// The server's check: the shared limiter and the account's credentials, the main
/// password only (an app password must not open the page that manages app passwords),
/// counted as protocol `web`.
pub struct CredentialsLogin {
    pub limiter: Arc<Limiter>,
    pub credentials: Credentials,
}

#[async_trait]
impl Authenticator for CredentialsLogin {
    async fn login(&self, ip: IpAddr, address: &str, password: &str) -> LoginOutcome<String> {
        crate::net::verify_web_login(&self.limiter, &self.credentials, ip, address, password)
            .await
            .map(|a| a.to_string())
    }
}

/// Everything the pages need.
pub struct WebApp {
    /// Our name: what the setup page and the profile point mail apps at.
    pub hostname: String,
    /// The ports the setup page lists.
    pub listen: ListenConfig,
    /// Whether the served certificate is trusted (HSTS only then).
    pub certs: Arc<CertStore>,
    pub sessions: Sessions,
    /// Canonical addresses of `MAILROOM_ADMINS`.
    pub admins: Vec<String>,
    pub login: Arc<dyn Authenticator>,
    pub backend: Arc<dyn AccountBackend>,
    /// The admin page's state and actions; `None` where there is no server behind it.
    pub admin: Option<Arc<dyn AdminSource>>,
}

impl WebApp {
    /// HSTS would make a self-signed certificate's warning impossible to click through,
    /// locking users out: only for a certificate from ACME or the operator's files.
    pub fn hsts(&self) -> bool {
        matches!(self.certs.default_cert().map(|c| c.source), Some(CertSource::Acme | CertSource::Files))
    }

    pub fn is_admin(&self, account: &str) -> bool {
        self.admins.iter().any(|a| a.eq_ignore_ascii_case(account))
    }
}

#[cfg(test)]
mod tests;
