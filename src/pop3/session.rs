//! The POP3 session as an explicit state machine (RFC 1939 §3): AUTHORIZATION, then
//! TRANSACTION after a successful login, then UPDATE when the client says QUIT.
//!
//! Sans-I/O: the server feeds it one client line at a time and gets back a [`Step`] — a
//! reply to send, or an effect to perform (check a password, start TLS, stream a message,
//! expunge) after which it reports the outcome through one of the `*_done`-style methods.
//! That keeps every protocol decision here, testable as a transcript without sockets, and
//! keeps `server.rs` a thin loop.
//!
//! Security rules held here:
//! - no USER/PASS/AUTH until TLS is active (RFC 2595 §2; CAPA only advertises them then);
//! - after `max_bad_logins` failed logins the connection is closed (slows guessing);
//! - after `max_errors` consecutive bad commands the connection is closed (no free CPU for
//!   garbage senders);
//! - USER never reveals whether an account exists: the answer comes only after PASS.

use crate::net::AuthMechanism;
use crate::pop3::command::{
    Command, CommandError, MAX_COMMAND_LINE, MAX_SASL_LINE, SaslResponse, parse_command, parse_sasl_response,
};
use crate::pop3::maildrop::{Lookup, Maildrop};
use crate::pop3::reply::{Reply, RespCode};

/// Per-connection settings the state machine needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// STLS is possible (a TLS acceptor exists and the connection is still plaintext).
    pub tls_available: bool,
    /// The connection is already encrypted (995, or after STLS).
    pub tls_active: bool,
    /// Failed logins before the connection is closed.
    pub max_bad_logins: u32,
    /// Consecutive invalid commands before the connection is closed.
    pub max_errors: u32,
}

/// What the server must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this and read the next line.
    Reply(Reply),
    /// Send this, then close the connection.
    Close(Reply),
    /// Send this `+OK`, drop any input already buffered (RFC 2595 §4: pipelined plaintext
    /// after STLS must not be executed inside TLS), do the handshake, then call
    /// [`Session::tls_started`].
    StartTls(Reply),
    /// Check the credentials, lock the maildrop and take its snapshot, then report with
    /// [`Session::logged_in`], [`Session::login_failed`], [`Session::maildrop_in_use`] or
    /// [`Session::maildrop_unavailable`].
    Authenticate { username: String, password: String, mechanism: AuthMechanism },
    /// Send `first_line`, then the message `uid` dot-stuffed (TOP: `top` body lines).
    SendMessage { first_line: Reply, uid: u32, top: Option<u64> },
    /// UPDATE state: expunge `uids` durably, then call [`Session::update_done`].
    Update { uids: Vec<u32> },
}

#[derive(Debug)]
enum State {
    Authorization {
        /// Name from USER, waiting for PASS.
        user: Option<String>,
        /// An AUTH PLAIN exchange is waiting for the client's continuation line.
        sasl_pending: bool,
    },
    Transaction(Maildrop),
    Update,
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    bad_logins: u32,
    errors_in_a_row: u32,
    /// Keyword of the command being answered, for metrics and logs.
    last_command: &'static str,
}

/// The implementation name in CAPA (RFC 2449 §6.9).
const IMPLEMENTATION: &str = "mailroom";

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config,
            state: State::Authorization { user: None, sasl_pending: false },
            bad_logins: 0,
            errors_in_a_row: 0,
            last_command: "none",
        }
    }

    /// The first line the server sends.
    pub fn greeting(hostname: &str) -> Reply {
        Reply::ok(format!("{hostname} POP3 ready"))
    }

    /// Longest line the reader should accept now: SASL responses may be longer than
    /// commands.
    pub fn line_limit(&self) -> usize {
        match self.state {
            State::Authorization { sasl_pending: true, .. } => MAX_SASL_LINE,
            _ => MAX_COMMAND_LINE,
        }
    }

    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// The reader met a line longer than [`Session::line_limit`] (already discarded).
    pub fn line_too_long(&mut self) -> Step {
        self.last_command = "invalid";
        if let State::Authorization { sasl_pending, .. } = &mut self.state {
            *sasl_pending = false;
        }
        self.error(Reply::err("Line too long"))
    }

    /// The `state` label of `mailroom_sessions{service="pop3"}` (RFC 1939 3).
    pub fn state_label(&self) -> &'static str {
        match self.state {
            State::Authorization { .. } => "authorization",
            State::Transaction(_) => "transaction",
            State::Update => "update",
        }
    }

    /// Keyword of the command last received (`AUTH` for SASL continuation lines,
    /// `invalid` for lines that did not parse): a bounded set, fit for metric labels.
    pub fn last_command(&self) -> &'static str {
        self.last_command
    }

    /// Handle one client line (terminator included or not).
    pub fn on_line(&mut self, line: &[u8]) -> Step {
        if let State::Authorization { sasl_pending: true, .. } = self.state {
            self.last_command = "AUTH";
            return self.on_sasl_line(line);
        }
        self.last_command = "invalid";
        match parse_command(line) {
            Ok(cmd) => {
                self.last_command = cmd.keyword();
                self.on_command(cmd)
            }
            Err(CommandError::LineTooLong) => self.line_too_long(),
            Err(CommandError::Empty | CommandError::Unknown) => self.error(Reply::err("Unknown command")),
            Err(e) => self.error(Reply::err(format!("Syntax error: {e}"))),
        }
    }

    fn on_command(&mut self, cmd: Command) -> Step {
        match cmd {
            Command::Capa => self.ok(self.capa()),
            Command::Quit => self.quit(),
            Command::Apop => self.error(Reply::err("APOP is not supported")),
            _ if matches!(self.state, State::Transaction(_)) => self.transaction_command(cmd),
            _ if matches!(self.state, State::Authorization { .. }) => self.authorization_command(cmd),
            _ => self.error(Reply::err("Command not valid in this state")),
        }
    }

    fn authorization_command(&mut self, cmd: Command) -> Step {
        match cmd {
            Command::Stls => {
                if self.config.tls_active {
                    self.error(Reply::err("Command not permitted when TLS active"))
                } else if !self.config.tls_available {
                    self.error(Reply::err("TLS not available"))
                } else {
                    self.errors_in_a_row = 0;
                    Step::StartTls(Reply::ok("Begin TLS negotiation"))
                }
            }
            // RFC 6856: we never down-convert, and USER/PASS/AUTH already take UTF-8, so
            // UTF8 mode changes nothing but must be acknowledged.
            Command::Utf8 => self.ok(Reply::ok("UTF8 enabled")),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } if !self.config.tls_active => {
                self.error(Reply::err_code(RespCode::Auth, "Authentication requires TLS: use STLS or port 995"))
            }
            Command::User(name) => {
                self.set_user(Some(name));
                self.ok(Reply::ok("Send PASS"))
            }
            Command::Pass(password) => match self.take_user() {
                Some(username) => Step::Authenticate { username, password, mechanism: AuthMechanism::Password },
                None => self.error(Reply::err("USER first")),
            },
            Command::Auth { mechanism: None, .. } => {
                self.ok(Reply::multiline("Supported mechanisms follow", vec!["PLAIN".into()]))
            }
            Command::Auth { mechanism: Some(mech), initial_response } => {
                self.set_user(None);
                if mech != "PLAIN" {
                    return self.error(Reply::err("Unsupported authentication mechanism"));
                }
                match initial_response {
                    Some(response) => self.sasl_plain(response),
                    None => {
                        if let State::Authorization { sasl_pending, .. } = &mut self.state {
                            *sasl_pending = true;
                        }
                        Step::Reply(Reply::challenge())
                    }
                }
            }
            _ => self.error(Reply::err("Command not valid before login")),
        }
    }

    fn on_sasl_line(&mut self, line: &[u8]) -> Step {
        if let State::Authorization { sasl_pending, .. } = &mut self.state {
            *sasl_pending = false;
        }
        match parse_sasl_response(line) {
            Ok(response) => self.sasl_plain(response),
            Err(CommandError::LineTooLong) => self.line_too_long(),
            Err(_) => self.error(Reply::err("Invalid base64 in authentication response")),
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`. Acting as someone else (an authzid
    /// different from the authcid) is not offered.
    fn sasl_plain(&mut self, response: SaslResponse) -> Step {
        let data = match response {
            SaslResponse::Cancel => return self.error(Reply::err("Authentication cancelled")),
            SaslResponse::Data(d) => d,
        };
        let mut parts = data.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(passwd), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error(Reply::err("Malformed PLAIN response"));
        };
        let (Ok(authzid), Ok(authcid), Ok(passwd)) =
            (std::str::from_utf8(authzid), std::str::from_utf8(authcid), std::str::from_utf8(passwd))
        else {
            return self.error(Reply::err("Malformed PLAIN response"));
        };
        if authcid.is_empty() || (!authzid.is_empty() && !authzid.eq_ignore_ascii_case(authcid)) {
            return self.login_failed();
        }
        Step::Authenticate {
            username: authcid.to_string(),
            password: passwd.to_string(),
            mechanism: AuthMechanism::Plain,
        }
    }

    fn transaction_command(&mut self, cmd: Command) -> Step {
        let State::Transaction(drop) = &mut self.state else {
            return self.error(Reply::err("Command not valid in this state"));
        };
        let reply = match cmd {
            Command::Stat => {
                let (n, size) = drop.stat();
                Reply::ok(format!("{n} {size}"))
            }
            Command::List(None) => {
                let (n, size) = drop.stat();
                let lines = drop.live().map(|(i, e)| format!("{i} {}", e.size)).collect();
                Reply::multiline(format!("{n} messages ({size} octets)"), lines)
            }
            Command::List(Some(msg)) => match drop.get(msg) {
                Ok(e) => Reply::ok(format!("{msg} {}", e.size)),
                Err(why) => return self.error(no_message(why)),
            },
            Command::Uidl(None) => {
                let lines = drop.live().map(|(i, e)| format!("{i} {}", e.uidl)).collect();
                Reply::multiline("", lines)
            }
            Command::Uidl(Some(msg)) => match drop.get(msg) {
                Ok(e) => Reply::ok(format!("{msg} {}", e.uidl)),
                Err(why) => return self.error(no_message(why)),
            },
            Command::Retr(msg) => match drop.get(msg) {
                Ok(e) => {
                    self.errors_in_a_row = 0;
                    return Step::SendMessage {
                        first_line: Reply::ok(format!("{} octets", e.size)),
                        uid: e.uid,
                        top: None,
                    };
                }
                Err(why) => return self.error(no_message(why)),
            },
            Command::Top { msg, lines } => match drop.get(msg) {
                Ok(e) => {
                    self.errors_in_a_row = 0;
                    return Step::SendMessage {
                        first_line: Reply::ok("Top of message follows"),
                        uid: e.uid,
                        top: Some(lines),
                    };
                }
                Err(why) => return self.error(no_message(why)),
            },
            Command::Dele(msg) => match drop.mark_deleted(msg) {
                Ok(()) => Reply::ok(format!("Message {msg} deleted")),
                Err(why) => return self.error(no_message(why)),
            },
            Command::Rset => {
                drop.unmark_all();
                let (n, size) = drop.stat();
                Reply::ok(format!("Maildrop has {n} messages ({size} octets)"))
            }
            Command::Noop => Reply::ok(""),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } => {
                return self.error(Reply::err("Already logged in"));
            }
            Command::Stls => return self.error(Reply::err("STLS not valid after login")),
            _ => return self.error(Reply::err("Command not valid in this state")),
        };
        self.ok(reply)
    }

    /// QUIT: in AUTHORIZATION just close; in TRANSACTION enter UPDATE (RFC 1939 §6).
    fn quit(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Update) {
            State::Transaction(drop) => Step::Update { uids: drop.marked_uids() },
            _ => Step::Close(Reply::ok("Bye")),
        }
    }

    /// Capabilities for the current state (RFC 2449 §5): before TLS on a plaintext port only
    /// STLS is useful, so USER and SASL are left out — a client then knows to upgrade.
    fn capa(&self) -> Reply {
        let mut lines: Vec<String> =
            ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"].iter().map(|s| s.to_string()).collect();
        if let State::Authorization { .. } = self.state {
            if self.config.tls_active {
                lines.push("USER".into());
                lines.push("SASL PLAIN".into());
                lines.push("UTF8 USER".into());
            } else if self.config.tls_available {
                lines.push("STLS".into());
            }
        }
        lines.push(format!("IMPLEMENTATION {IMPLEMENTATION}"));
        Reply::multiline("Capability list follows", lines)
    }

    /// The handshake after STLS succeeded: the client must start over (RFC 2595 §4), so
    /// any USER given before is forgotten.
    pub fn tls_started(&mut self) {
        self.config.tls_active = true;
        self.config.tls_available = false;
        self.set_user(None);
    }

    /// Authentication and maildrop lock succeeded.
    pub fn logged_in(&mut self, maildrop: Maildrop) -> Reply {
        let (n, size) = maildrop.stat();
        self.state = State::Transaction(maildrop);
        self.errors_in_a_row = 0;
        Reply::ok(format!("Logged in, {n} messages ({size} octets)"))
    }

    /// Wrong credentials: `-ERR [AUTH]`, and the connection closes after too many.
    pub fn login_failed(&mut self) -> Step {
        self.bad_logins += 1;
        self.set_user(None);
        let reply = Reply::err_code(RespCode::Auth, "Authentication failed");
        if self.bad_logins >= self.config.max_bad_logins {
            Step::Close(Reply::err_code(RespCode::Auth, "Authentication failed, too many attempts"))
        } else {
            Step::Reply(reply)
        }
    }

    /// The shared login limiter refused without checking the password: a temporary
    /// failure (RFC 2449 §8.1.2 SYS/TEMP), not counted as a bad login here.
    pub fn login_refused(&mut self, why: &impl std::fmt::Display) -> Reply {
        self.set_user(None);
        Reply::err_code(RespCode::SysTemp, why.to_string())
    }

    /// Credentials were good but another session holds the maildrop (RFC 2449 §8.1.1).
    /// Not counted as a failed login.
    pub fn maildrop_in_use(&mut self) -> Reply {
        self.set_user(None);
        Reply::err_code(RespCode::InUse, "Mailbox is in use by another POP3 session")
    }

    /// Credentials were good but the maildrop could not be opened (disk, index).
    pub fn maildrop_unavailable(&mut self) -> Reply {
        self.set_user(None);
        Reply::err_code(RespCode::SysTemp, "Mailbox unavailable, try again later")
    }

    /// End of UPDATE: `Ok(n)` when the n marked messages are durably gone. Either way the
    /// connection closes (RFC 1939 §6).
    pub fn update_done(&mut self, result: Result<usize, ()>) -> Step {
        match result {
            Ok(0) => Step::Close(Reply::ok("Bye")),
            Ok(n) => Step::Close(Reply::ok(format!("Bye, {n} messages deleted"))),
            Err(()) => Step::Close(Reply::err_code(RespCode::SysTemp, "Some deleted messages not removed")),
        }
    }

    fn set_user(&mut self, name: Option<String>) {
        if let State::Authorization { user, .. } = &mut self.state {
            *user = name;
        }
    }

    fn take_user(&mut self) -> Option<String> {
        match &mut self.state {
            State::Authorization { user, .. } => user.take(),
            _ => None,
        }
    }

    fn ok(&mut self, reply: Reply) -> Step {
        self.errors_in_a_row = 0;
        Step::Reply(reply)
    }

    fn error(&mut self, reply: Reply) -> Step {
        self.errors_in_a_row += 1;
        if self.errors_in_a_row >= self.config.max_errors {
            Step::Close(Reply::err("Too many invalid commands, closing"))
        } else {
            Step::Reply(reply)
        }
    }
}

fn no_message(why: Lookup) -> Reply {
    match why {
        Lookup::NoSuchMessage => Reply::err("No such message"),
        Lookup::Deleted => Reply::err("Message already deleted"),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
