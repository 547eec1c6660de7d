//! The AUTH command (RFC 4954) after the session accepted it: the SASL exchange as a
//! sans-IO state machine ([`Exchange`]: which `334` challenge to send next, what an
//! answer means) and the password check through the shared `net::verify_login`.
//!
//! The connection (`server.rs`) only sends the challenges and reads the answer lines;
//! the decoding of each line is `sasl.rs`'s, so the whole exchange is tested without a
//! socket.

use std::net::IpAddr;

use std::sync::Arc;

use crate::accounts::{Address, Directory};
use crate::net::{Limiter, LoginOutcome, LoginVia, verify_login};

use super::sasl::{self, Credentials, LOGIN_PASSWORD, LOGIN_USERNAME, Mechanism, SaslError};
use super::status::Status;

/// What the connection does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <text>` and feed the client's answer to [`Exchange::answer`].
    Challenge(&'static str),
    /// The exchange is over: the credentials, or why there are none.
    Done(Result<Credentials, SaslError>),
}

/// One AUTH exchange for PLAIN or LOGIN.
#[derive(Debug)]
pub struct Exchange {
    state: State,
}

#[derive(Debug)]
enum State {
    PlainResponse,
    LoginUsername,
    LoginPassword { username: String },
    Over,
}

impl Exchange {
    /// Start with the mechanism and the initial response given on the AUTH line (already
    /// base64-decoded, or the decoding error).
    pub fn start(mechanism: Mechanism, initial: Option<Result<Vec<u8>, SaslError>>) -> (Exchange, Step) {
        let mut exchange = Exchange { state: State::Over };
        let step = match (mechanism, initial) {
            (Mechanism::Plain, Some(response)) => Step::Done(response.and_then(|r| sasl::decode_plain(&r))),
            (Mechanism::Plain, None) => {
                exchange.state = State::PlainResponse;
                Step::Challenge("")
            }
            // Some clients send the user name as an initial response (RFC 4954 style).
            (Mechanism::Login, Some(user)) => exchange.login_username(user),
            (Mechanism::Login, None) => {
                exchange.state = State::LoginUsername;
                Step::Challenge(LOGIN_USERNAME)
            }
        };
        (exchange, step)
    }

    /// The client's answer to the last challenge, base64-decoded (an over-long line is
    /// `Err(SaslError::Malformed)`).
    pub fn answer(&mut self, answer: Result<Vec<u8>, SaslError>) -> Step {
        match std::mem::replace(&mut self.state, State::Over) {
            State::PlainResponse => Step::Done(answer.and_then(|r| sasl::decode_plain(&r))),
            State::LoginUsername => self.login_username(answer),
            State::LoginPassword { username } => Step::Done(
                answer.and_then(|p| sasl::decode_login_field(&p)).map(|password| Credentials { username, password }),
            ),
            State::Over => Step::Done(Err(SaslError::Malformed)),
        }
    }

    fn login_username(&mut self, user: Result<Vec<u8>, SaslError>) -> Step {
        match user.and_then(|u| sasl::decode_login_field(&u)) {
            Err(e) => Step::Done(Err(e)),
            Ok(username) => {
                self.state = State::LoginPassword { username };
                Step::Challenge(LOGIN_PASSWORD)
            }
        }
    }
}

/// The shared login check (limiter, verification, metrics); only the reply is SMTP's.
pub async fn check_password(
    limiter: &Limiter,
    directory: &Arc<Directory>,
    store: &crate::store::Store,
    via: LoginVia,
    ip: IpAddr,
    c: Credentials,
) -> Result<Address, Status> {
    match verify_login(limiter, directory, store, via, ip, &c.username, &c.password).await {
        LoginOutcome::LoggedIn(account) => Ok(account),
        LoginOutcome::Failed => Err(Status::new(535, (5, 7, 8), "Error: authentication credentials invalid")),
        LoginOutcome::Refused(blocked) => Err(Status::new(454, (4, 7, 0), format!("Error: {blocked}"))),
        LoginOutcome::Unavailable => Err(Status::new(454, (4, 7, 0), "Error: temporary authentication failure")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Result<Vec<u8>, SaslError> {
        Ok(s.as_bytes().to_vec())
    }

    fn done(step: Step) -> Credentials {
        match step {
            Step::Done(Ok(c)) => c,
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let (_, step) = Exchange::start(Mechanism::Plain, Some(b("\0alice\0secret")));
        assert_eq!(done(step).username, "alice");
        let (mut ex, step) = Exchange::start(Mechanism::Plain, None);
        assert_eq!(step, Step::Challenge(""));
        let c = done(ex.answer(b("\0alice\0secret")));
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "secret"));
    }

    #[test]
    fn login_asks_username_then_password() {
        let (mut ex, step) = Exchange::start(Mechanism::Login, None);
        assert_eq!(step, Step::Challenge(LOGIN_USERNAME));
        assert_eq!(ex.answer(b("alice")), Step::Challenge(LOGIN_PASSWORD));
        let c = done(ex.answer(b("secret")));
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "secret"));
        // The user name as an initial response skips the first challenge.
        let (mut ex, step) = Exchange::start(Mechanism::Login, Some(b("bob")));
        assert_eq!(step, Step::Challenge(LOGIN_PASSWORD));
        assert_eq!(done(ex.answer(b("pw"))).username, "bob");
    }

    #[test]
    fn bad_answers_end_the_exchange() {
        let (mut ex, _) = Exchange::start(Mechanism::Login, None);
        assert!(matches!(ex.answer(Err(SaslError::Malformed)), Step::Done(Err(_))));
        // Nothing more is asked after the end.
        assert!(matches!(ex.answer(b("x")), Step::Done(Err(_))));
        let (_, step) = Exchange::start(Mechanism::Plain, Some(b("no separators")));
        assert!(matches!(step, Step::Done(Err(_))));
    }
}
