//! The one login check every protocol calls (SMTP AUTH, IMAP LOGIN/AUTHENTICATE, POP3
//! USER/PASS and AUTH; ManageSieve later): reserve an attempt in the shared [`Limiter`],
//! verify the password off the async workers, report the result, count it in
//! `mailroom_auth_attempts_total{protocol, result}` and log it. The sessions only turn
//! the [`LoginOutcome`] into their own reply.
//!
//! Keeping the dance in one place is what makes the limiter's guarantees hold: a call
//! site that verified first and counted afterwards would reopen the race the
//! reservation closes.

use std::net::IpAddr;
use std::sync::Arc;

use crate::accounts::{Address, Directory};
use crate::metrics::metrics;

use super::ratelimit::{Blocked, Limiter};

/// What a login came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginOutcome<A = Address> {
    /// The password is right: the canonical account address.
    LoggedIn(A),
    /// Wrong password or unknown user (the same answer for both).
    Failed,
    /// Refused by the limiter without verifying: a temporary failure.
    Refused(Blocked),
}

impl<A> LoginOutcome<A> {
    /// The result label of `mailroom_auth_attempts_total`.
    fn label(&self) -> &'static str {
        match self {
            LoginOutcome::LoggedIn(_) => "success",
            LoginOutcome::Failed => "failure",
            LoginOutcome::Refused(_) => "refused",
        }
    }

    /// Same outcome, another account type (test backends use plain strings).
    pub fn map<B>(self, f: impl FnOnce(A) -> B) -> LoginOutcome<B> {
        match self {
            LoginOutcome::LoggedIn(a) => LoginOutcome::LoggedIn(f(a)),
            LoginOutcome::Failed => LoginOutcome::Failed,
            LoginOutcome::Refused(b) => LoginOutcome::Refused(b),
        }
    }
}

/// Check `username`/`password` from `ip` for `protocol` (the metrics label: `submission`,
/// `smtp`, `imap`, `pop3`).
pub async fn verify_login(
    limiter: &Limiter,
    directory: &Arc<Directory>,
    protocol: &'static str,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> LoginOutcome {
    let outcome = check(limiter, directory, ip, username, password).await;
    metrics().auth_attempts_total.with_label_values(&[protocol, outcome.label()]).inc();
    match &outcome {
        LoginOutcome::LoggedIn(account) => tracing::info!(protocol, client = %ip, user = %account, "login"),
        LoginOutcome::Failed => tracing::warn!(protocol, client = %ip, user = %username, "login failed"),
        LoginOutcome::Refused(blocked) => {
            tracing::warn!(protocol, client = %ip, user = %username, %blocked, "login refused without a password check")
        }
    }
    outcome
}

async fn check(
    limiter: &Limiter,
    directory: &Arc<Directory>,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> LoginOutcome {
    let mut attempt = match limiter.attempt(ip, username).await {
        Ok(a) => a,
        Err(blocked) => return LoginOutcome::Refused(blocked),
    };
    let directory = directory.clone();
    let (user, pass) = (username.to_string(), password.to_string());
    let permit = limiter.verification_permit().await;
    attempt.checking();
    // argon2 costs tens of milliseconds of CPU on purpose: a blocking thread, not a worker.
    let found = tokio::task::spawn_blocking(move || directory.authenticate(&user, &pass)).await.ok().flatten();
    drop(permit);
    match found {
        Some(account) => {
            attempt.succeeded();
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
