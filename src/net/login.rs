//! The one login check every protocol calls (SMTP AUTH, IMAP LOGIN/AUTHENTICATE, POP3
//! USER/PASS and AUTH, ManageSieve, and the web pages through [`verify_web_login`]):
//! reserve an attempt in the shared [`Limiter`], read the account's credentials record
//! (a password the user changed, app passwords: `credentials/`), verify the password
//! off the async workers, report the result, count it in
//! `mailroom_auth_attempts_total{protocol, mechanism, result}` and log it. The sessions only turn
//! the [`LoginOutcome`] into their own reply.
//!
//! Keeping the dance in one place is what makes the limiter's guarantees hold: a call
//! site that verified first and counted afterwards would reopen the race the
//! reservation closes.

use std::net::IpAddr;
use std::sync::Arc;

use crate::accounts::{Address, Directory};
use crate::credentials::{Credentials, Purpose, Verified};
use crate::metrics::metrics;
use crate::store::Store;

use super::ratelimit::{Blocked, Limiter};

/// How the client handed over its password: the `mechanism` label of
/// `mailroom_auth_attempts_total`. Only what some protocol offers, so the label is bounded;
/// a mechanism we do not offer is refused before any password check and not counted here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanism {
    /// SASL PLAIN (SMTP AUTH, IMAP AUTHENTICATE, POP3 AUTH, ManageSieve AUTHENTICATE).
    Plain,
    /// SASL LOGIN (SMTP AUTH only).
    Login,
    /// The protocol's own cleartext command or form: IMAP LOGIN, POP3 USER/PASS, the web
    /// login form.
    Password,
}

impl AuthMechanism {
    fn label(self) -> &'static str {
        match self {
            AuthMechanism::Plain => "plain",
            AuthMechanism::Login => "login",
            AuthMechanism::Password => "password",
        }
    }
}

/// Where a login comes from, for the metrics and the log: the protocol (`submission`,
/// `smtp`, `imap`, `pop3`, `managesieve`, `web`) and the mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginVia {
    pub protocol: &'static str,
    pub mechanism: AuthMechanism,
}

impl LoginVia {
    pub fn new(protocol: &'static str, mechanism: AuthMechanism) -> LoginVia {
        LoginVia { protocol, mechanism }
    }
}

/// What a login came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginOutcome<A = Address> {
    /// The password is right: the canonical account address.
    LoggedIn(A),
    /// Wrong password or unknown user (the same answer for both).
    Failed,
    /// Refused by the limiter without verifying: a temporary failure.
    Refused(Blocked),
    /// The account's credentials could not be read (the store is down): a temporary
    /// failure, not counted as a guess.
    Unavailable,
}

impl<A> LoginOutcome<A> {
    /// The result label of `mailroom_auth_attempts_total`.
    fn label(&self) -> &'static str {
        match self {
            LoginOutcome::LoggedIn(_) => "success",
            LoginOutcome::Failed => "failure",
            LoginOutcome::Refused(_) => "refused",
            LoginOutcome::Unavailable => "unavailable",
        }
    }

    /// Same outcome, another account type (test backends use plain strings).
    pub fn map<B>(self, f: impl FnOnce(A) -> B) -> LoginOutcome<B> {
        match self {
            LoginOutcome::LoggedIn(a) => LoginOutcome::LoggedIn(f(a)),
            LoginOutcome::Failed => LoginOutcome::Failed,
            LoginOutcome::Refused(b) => LoginOutcome::Refused(b),
            LoginOutcome::Unavailable => LoginOutcome::Unavailable,
        }
    }
}

/// Check `username`/`password` from `ip` for a mail protocol: the main password unless
/// the account requires app passwords, and any of its app passwords.
pub async fn verify_login(
    limiter: &Limiter,
    directory: &Arc<Directory>,
    store: &Store,
    via: LoginVia,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> LoginOutcome {
    let credentials = Credentials::new(store.clone(), directory.clone());
    verify(limiter, &credentials, Purpose::Mail, via, ip, username, password).await
}

/// Check a login to the web pages (metrics labels `web`, `password`): the main password only, never
/// an app password (the pages change passwords and make app passwords).
pub async fn verify_web_login(
    limiter: &Limiter,
    credentials: &Credentials,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> LoginOutcome {
    let via = LoginVia::new("web", AuthMechanism::Password);
    verify(limiter, credentials, Purpose::Web, via, ip, username, password).await
}

async fn verify(
    limiter: &Limiter,
    credentials: &Credentials,
    purpose: Purpose,
    via: LoginVia,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> LoginOutcome {
    let outcome = check(limiter, credentials, purpose, ip, username, password).await;
    metrics().auth_attempts_total.with_label_values(&[via.protocol, via.mechanism.label(), outcome.label()]).inc();
    let protocol = via.protocol;
    match &outcome {
        LoginOutcome::LoggedIn(account) => tracing::info!(protocol, client = %ip, user = %account, "login"),
        LoginOutcome::Failed => tracing::warn!(protocol, client = %ip, user = %username, "login failed"),
        LoginOutcome::Refused(blocked) => {
            tracing::warn!(protocol, client = %ip, user = %username, %blocked, "login refused without a password check")
        }
        LoginOutcome::Unavailable => {
            tracing::warn!(protocol, client = %ip, user = %username, "login not checked: credentials unavailable")
        }
    }
    outcome
}

async fn check(
    limiter: &Limiter,
    credentials: &Credentials,
    purpose: Purpose,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> LoginOutcome {
    let mut attempt = match limiter.attempt(ip, username).await {
        Ok(a) => a,
        Err(blocked) => return LoginOutcome::Refused(blocked),
    };
    // Read before `checking()`: a store that is down abandons the attempt, which then
    // counts as neither a right nor a wrong guess.
    let login = match credentials.prepare_login(username).await {
        Ok(l) => Arc::new(l),
        Err(e) => {
            tracing::warn!(user = %username, error = %e, "cannot read the account's credentials");
            return LoginOutcome::Unavailable;
        }
    };
    let pass = password.to_string();
    let permit = limiter.verification_permit().await;
    attempt.checking();
    // argon2 costs tens of milliseconds of CPU on purpose: a blocking thread, not a worker.
    let check = login.clone();
    let found = tokio::task::spawn_blocking(move || check.verify(&pass, purpose)).await.ok().flatten();
    drop(permit);
    match found {
        Some(verified) => {
            attempt.succeeded();
            if let Verified::App(account, id) = &verified {
                let (credentials, account, id) = (credentials.clone(), account.clone(), id.clone());
                // Off the login's path: the client need not wait for a record write.
                tokio::spawn(async move { credentials.note_app_password_use(&account, login.state(), &id).await });
            }
            let (Verified::Main(account) | Verified::App(account, _)) = verified;
            LoginOutcome::LoggedIn(account)
        }
        None => {
            attempt.failed();
            let pause = limiter.penalty(ip);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            LoginOutcome::Failed
        }
    }
}
