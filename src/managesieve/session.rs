//! The ManageSieve session as a state machine (RFC 5804): not authenticated, then
//! authenticated after AUTHENTICATE, back with UNAUTHENTICATE, closed after LOGOUT.
//!
//! Sans-I/O: the server hands it complete commands (and SASL response lines) and gets a
//! [`Step`] back: bytes to send, or an effect to perform (start TLS, check a password,
//! read or change the account's scripts), whose outcome it reports through
//! [`Session::tls_started`], [`Session::login_done`] or [`Session::store_done`]. Every
//! protocol decision is here, so a test is a transcript without sockets.
//!
//! Rules held here:
//! - no AUTHENTICATE before TLS (`NO (ENCRYPT-NEEDED)`), and `SASL` is advertised only
//!   inside TLS, as POP3 and IMAP do;
//! - a script is stored only if it compiles (RFC 5804 2.6; the compiler's message names
//!   the line) and fits the quotas (`QUOTA/MAXSIZE`, `QUOTA/MAXSCRIPTS`);
//! - store failures map to responses in one place ([`store_error`]);
//! - after `max_errors` bad commands in a row, or `max_bad_logins` failed logins, BYE.

use bytes::Bytes;

use super::command::{Command, ParseLimits, Parsed, Unframeable, parse_command, parse_sasl_response};
use super::reply::{Response, Status, push_literal, push_string};
use crate::net::{Blocked, LoginOutcome};
use crate::sieve::vacation_settings::VACATION_SCRIPT;
use crate::store::{SieveScriptInfo, StoreError, check_script_name};

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// STARTTLS is possible (an acceptor exists and the connection is plaintext).
    pub tls_available: bool,
    /// The connection is encrypted already.
    pub tls_active: bool,
    /// Largest script accepted (`QUOTA/MAXSIZE`).
    pub max_script_size: u64,
    /// Most scripts per account (`QUOTA/MAXSCRIPTS`).
    pub max_scripts: usize,
    /// Redirects one script run may make (the `MAXREDIRECTS` capability).
    pub max_redirects: u32,
    /// Bad commands in a row before BYE.
    pub max_errors: u32,
    /// Failed logins before BYE.
    pub max_bad_logins: u32,
}

/// Longest command line between literals (script names are at most 1024 octets quoted).
pub const MAX_LINE: usize = 8 * 1024;
/// Literal bytes accepted beyond the script size limit, so a script a little too big
/// gets `NO (QUOTA/MAXSIZE)` instead of a closed connection.
pub const LITERAL_SLACK: u64 = 64 * 1024;

pub use crate::sieve::EXTENSIONS as SIEVE_EXTENSIONS;

/// The store work a command needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    List,
    Get(String),
    Put { name: String, content: Vec<u8> },
    Delete(String),
    Rename { old: String, new: String },
    SetActive(Option<String>),
}

/// What the store answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAnswer {
    List(Vec<SieveScriptInfo>),
    Script(Option<Bytes>),
    Done,
}

/// What the server does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and read on.
    Send(Vec<u8>),
    /// Send these bytes and close.
    Close(Vec<u8>),
    /// Send these bytes (`OK`), drop buffered input, do the TLS handshake, then call
    /// [`Session::tls_started`].
    StartTls(Vec<u8>),
    /// Check the credentials, then call [`Session::login_done`].
    Login { username: String, password: String },
    /// Run this against the account's scripts, then call [`Session::store_done`].
    Store(StoreOp),
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    NotAuthenticated,
    /// AUTHENTICATE "PLAIN" sent without an initial response: the next line is one.
    SaslPending,
    Authenticated,
}

/// Why a store operation was started, when its answer needs a second step.
#[derive(Debug)]
enum Pending {
    None,
    /// The list is for PUTSCRIPT's script-count quota.
    PutQuota {
        name: String,
        content: Vec<u8>,
    },
    /// The list is for HAVESPACE's script-count quota.
    HaveSpace {
        name: String,
    },
    /// The answer is for this command.
    Plain(&'static str),
}

pub struct Session {
    config: SessionConfig,
    state: State,
    pending: Pending,
    errors_in_a_row: u32,
    bad_logins: u32,
    last_command: &'static str,
    last_status: Option<Status>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config,
            state: State::NotAuthenticated,
            pending: Pending::None,
            errors_in_a_row: 0,
            bad_logins: 0,
            last_command: "none",
            last_status: None,
        }
    }

    /// The greeting: the capability list and `OK` (RFC 5804 1.7).
    pub fn greeting(&self) -> Vec<u8> {
        let mut out = self.capabilities();
        out.extend(Response::ok("mailroom ManageSieve ready").to_bytes());
        out
    }

    /// The parser's bounds now.
    pub fn limits(&self) -> ParseLimits {
        ParseLimits { max_line: MAX_LINE, max_literal: self.config.max_script_size + LITERAL_SLACK }
    }

    /// The command last answered, for metric labels (a bounded set).
    pub fn last_command(&self) -> &'static str {
        self.last_command
    }

    /// How the command just answered ended, once (`None` when no final response went
    /// out since the last call), for metrics.
    pub fn take_status(&mut self) -> Option<Status> {
        self.last_status.take()
    }

    pub fn is_authenticated(&self) -> bool {
        self.state == State::Authenticated
    }

    fn capabilities(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let mut cap = |name: &str, value: Option<&str>| {
            push_string(&mut out, name.as_bytes());
            if let Some(v) = value {
                out.push(b' ');
                push_string(&mut out, v.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        };
        cap("IMPLEMENTATION", Some("mailroom"));
        cap("SIEVE", Some(SIEVE_EXTENSIONS));
        if self.config.tls_active {
            cap("SASL", Some("PLAIN"));
        } else {
            cap("SASL", Some(""));
            if self.config.tls_available {
                cap("STARTTLS", None);
            }
        }
        cap("MAXREDIRECTS", Some(&self.config.max_redirects.to_string()));
        cap("VERSION", Some("1.0"));
        cap("UNAUTHENTICATE", None);
        out
    }

    /// Parse what is buffered and act on it: `None` while the command is incomplete,
    /// else the bytes the command took and the step.
    pub fn on_input(&mut self, buf: &[u8]) -> Option<(usize, Step)> {
        let limits = self.limits();
        if self.state == State::SaslPending {
            self.last_command = "AUTHENTICATE";
            return match parse_sasl_response(buf, limits) {
                Parsed::Incomplete => None,
                Parsed::Complete(None, n) => {
                    self.state = State::NotAuthenticated;
                    Some((n, self.send(Response::no("Authentication cancelled"))))
                }
                Parsed::Complete(Some(response), n) => Some((n, self.sasl_plain(&response))),
                Parsed::Bad { reason, consumed } => {
                    self.state = State::NotAuthenticated;
                    Some((consumed, self.error(reason)))
                }
                Parsed::Fatal(reason) => Some((buf.len(), Step::Close(self.reply(Response::bye(reason.to_string()))))),
            };
        }
        self.last_command = "invalid";
        match parse_command(buf, limits) {
            Parsed::Incomplete => None,
            Parsed::Complete(cmd, n) => {
                self.last_command = cmd.keyword();
                Some((n, self.on_command(cmd)))
            }
            Parsed::Bad { reason, consumed } => Some((consumed, self.error(reason))),
            Parsed::Fatal(reason) => {
                let bye = Response::bye(reason.to_string());
                let bye =
                    if matches!(reason, Unframeable::LiteralTooLarge(_)) { bye.code("QUOTA/MAXSIZE") } else { bye };
                Some((buf.len(), Step::Close(self.reply(bye))))
            }
        }
    }

    fn send(&mut self, response: Response) -> Step {
        Step::Send(self.reply(response))
    }

    /// A final response's bytes; its status is kept for [`Session::take_status`].
    fn reply(&mut self, response: Response) -> Vec<u8> {
        self.last_status = Some(response.status);
        response.to_bytes()
    }

    /// A bad command: `NO`, or BYE once too many came in a row.
    fn error(&mut self, reason: impl Into<String>) -> Step {
        self.errors_in_a_row += 1;
        if self.errors_in_a_row >= self.config.max_errors {
            return Step::Close(self.reply(Response::bye("Too many bad commands")));
        }
        self.send(Response::no(reason))
    }

    fn on_command(&mut self, cmd: Command) -> Step {
        self.errors_in_a_row = 0;
        let authenticated = self.state == State::Authenticated;
        match cmd {
            Command::Capability => {
                let mut out = self.capabilities();
                out.extend(self.reply(Response::ok("Capability completed")));
                Step::Send(out)
            }
            // RFC 5804 2.13: the tag comes back in a TAG response code, which must stay on
            // the response line: a tag that would need a literal is left out.
            Command::Noop { tag: Some(tag) }
                if tag.len() <= 256 && !tag.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) =>
            {
                let mut code = b"TAG ".to_vec();
                push_string(&mut code, &tag);
                self.send(Response::ok("Done").code(String::from_utf8_lossy(&code)))
            }
            Command::Noop { .. } => self.send(Response::ok("Done")),
            Command::Logout => Step::Close(self.reply(Response::ok("Logout completed"))),
            Command::StartTls if authenticated => self.send(Response::no("STARTTLS only before AUTHENTICATE")),
            Command::StartTls if self.config.tls_active => self.send(Response::no("TLS is already active")),
            Command::StartTls if !self.config.tls_available => self.send(Response::no("TLS is not available")),
            Command::StartTls => Step::StartTls(self.reply(Response::ok("Begin TLS negotiation now"))),
            Command::Authenticate { .. } if authenticated => self.send(Response::no("Already authenticated")),
            Command::Authenticate { .. } if !self.config.tls_active => {
                self.send(Response::no("Use STARTTLS first").code("ENCRYPT-NEEDED"))
            }
            Command::Authenticate { mechanism, .. } if mechanism != "PLAIN" => {
                self.send(Response::no("Only the PLAIN mechanism is supported"))
            }
            Command::Authenticate { initial: Some(response), .. } => self.sasl_plain(&response),
            Command::Authenticate { initial: None, .. } => {
                self.state = State::SaslPending;
                Step::Send(b"\"\"\r\n".to_vec())
            }
            // RFC 5804 2.14.1: back to the not-authenticated state, keeping TLS.
            Command::Unauthenticate if authenticated => {
                self.state = State::NotAuthenticated;
                self.send(Response::ok("Unauthenticated"))
            }
            Command::Unauthenticate => self.send(Response::no("Not authenticated")),
            _ if !authenticated => self.send(Response::no("Authenticate first")),
            // The account pages' vacation script is theirs alone: ManageSieve may read it
            // (GETSCRIPT, for a script that includes it) but never change or activate it.
            Command::HaveSpace { name, .. }
            | Command::PutScript { name, .. }
            | Command::DeleteScript { name }
            | Command::SetActive { name }
                if name == VACATION_SCRIPT =>
            {
                self.reserved_name()
            }
            Command::RenameScript { old, new } if old == VACATION_SCRIPT || new == VACATION_SCRIPT => {
                self.reserved_name()
            }
            Command::HaveSpace { name, size } => {
                if let Err(e) = check_script_name(&name) {
                    return self.store_refusal(&e);
                }
                if size > self.config.max_script_size {
                    return self.too_big();
                }
                self.pending = Pending::HaveSpace { name };
                Step::Store(StoreOp::List)
            }
            Command::PutScript { name, content } => {
                if let Err(e) = check_script_name(&name) {
                    return self.store_refusal(&e);
                }
                if let Err(step) = self.check(&content) {
                    return step;
                }
                self.pending = Pending::PutQuota { name, content };
                Step::Store(StoreOp::List)
            }
            Command::CheckScript { content } => match self.check(&content) {
                Ok(()) => self.send(Response::ok("Script is valid")),
                Err(step) => step,
            },
            Command::ListScripts => self.plain_op("LISTSCRIPTS", StoreOp::List),
            Command::GetScript { name } => self.plain_op("GETSCRIPT", StoreOp::Get(name)),
            Command::DeleteScript { name } => self.plain_op("DELETESCRIPT", StoreOp::Delete(name)),
            Command::RenameScript { old, new } => self.plain_op("RENAMESCRIPT", StoreOp::Rename { old, new }),
            Command::SetActive { name } => {
                let name = if name.is_empty() { None } else { Some(name) };
                self.plain_op("SETACTIVE", StoreOp::SetActive(name))
            }
        }
    }

    fn reserved_name(&mut self) -> Step {
        self.send(Response::no(format!(
            "The name {VACATION_SCRIPT} is reserved for the vacation reply of the account pages; change it there"
        )))
    }

    fn plain_op(&mut self, command: &'static str, op: StoreOp) -> Step {
        self.pending = Pending::Plain(command);
        Step::Store(op)
    }

    fn too_big(&mut self) -> Step {
        let max = self.config.max_script_size;
        self.send(Response::no(format!("Scripts are limited to {max} octets")).code("QUOTA/MAXSIZE"))
    }

    /// Size and compile checks of PUTSCRIPT and CHECKSCRIPT.
    fn check(&mut self, content: &[u8]) -> Result<(), Step> {
        if content.len() as u64 > self.config.max_script_size {
            return Err(self.too_big());
        }
        crate::sieve::compile::check_script(content).map_err(|message| self.send(Response::no(message)))
    }

    /// SASL PLAIN's response (base64 of `authzid NUL authcid NUL password`).
    fn sasl_plain(&mut self, response: &[u8]) -> Step {
        self.state = State::NotAuthenticated;
        let decoded = crate::smtp::sasl::decode_response(response);
        match decoded.and_then(|d| crate::smtp::sasl::decode_plain(&d)) {
            Ok(c) => Step::Login { username: c.username, password: c.password },
            Err(_) => self.send(Response::no("Malformed PLAIN response")),
        }
    }

    /// The TLS handshake finished: the capabilities again, then `OK` (RFC 5804 2.2).
    pub fn tls_started(&mut self) -> Vec<u8> {
        self.config.tls_active = true;
        self.config.tls_available = false;
        let mut out = self.capabilities();
        out.extend(self.reply(Response::ok("TLS negotiation successful")));
        out
    }

    /// The login check's outcome.
    pub fn login_done<A>(&mut self, outcome: &LoginOutcome<A>) -> Step {
        match outcome {
            LoginOutcome::LoggedIn(_) => {
                self.state = State::Authenticated;
                self.send(Response::ok("Logged in"))
            }
            LoginOutcome::Failed => {
                self.bad_logins += 1;
                if self.bad_logins >= self.config.max_bad_logins {
                    return Step::Close(self.reply(Response::bye("Too many failed logins")));
                }
                self.send(Response::no("Authentication failed"))
            }
            LoginOutcome::Refused(blocked) => self.refused(blocked),
            LoginOutcome::Unavailable => self.send(Response::no("Temporary authentication failure").code("TRYLATER")),
        }
    }

    fn refused(&mut self, blocked: &Blocked) -> Step {
        self.send(Response::no(blocked.to_string()).code("TRYLATER"))
    }

    /// The store's answer to the last [`Step::Store`].
    pub fn store_done(&mut self, result: Result<StoreAnswer, StoreError>) -> Step {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        let answer = match result {
            Ok(a) => a,
            Err(e) => return self.store_refusal(&e),
        };
        match (pending, answer) {
            (Pending::PutQuota { name, content }, StoreAnswer::List(list)) => {
                if let Err(step) = self.count_quota(&list, &name) {
                    return step;
                }
                self.pending = Pending::Plain("PUTSCRIPT");
                Step::Store(StoreOp::Put { name, content })
            }
            (Pending::HaveSpace { name }, StoreAnswer::List(list)) => match self.count_quota(&list, &name) {
                Ok(()) => self.send(Response::ok("Putscript would succeed")),
                Err(step) => step,
            },
            (Pending::Plain("LISTSCRIPTS"), StoreAnswer::List(list)) => {
                let mut out = Vec::new();
                for s in list {
                    push_string(&mut out, s.name.as_bytes());
                    if s.active {
                        out.extend_from_slice(b" ACTIVE");
                    }
                    out.extend_from_slice(b"\r\n");
                }
                out.extend(self.reply(Response::ok("Listscripts completed")));
                Step::Send(out)
            }
            (Pending::Plain(_), StoreAnswer::Script(Some(script))) => {
                let mut out = Vec::with_capacity(script.len() + 32);
                push_literal(&mut out, &script);
                out.extend_from_slice(b"\r\n");
                out.extend(self.reply(Response::ok("Getscript completed")));
                Step::Send(out)
            }
            (Pending::Plain(_), StoreAnswer::Script(None)) => {
                self.send(Response::no("There is no script by that name").code("NONEXISTENT"))
            }
            (Pending::Plain(command), StoreAnswer::Done) => {
                self.send(Response::ok(format!("{} completed", capitalised(command))))
            }
            (pending, answer) => {
                tracing::warn!(?pending, ?answer, "managesieve: store answer does not match the request");
                self.send(Response::no("Internal error").code("TRYLATER"))
            }
        }
    }

    /// `QUOTA/MAXSCRIPTS` when `name` would be one script too many.
    fn count_quota(&mut self, list: &[SieveScriptInfo], name: &str) -> Result<(), Step> {
        let replaces = list.iter().any(|s| s.name == name);
        if !replaces && list.len() >= self.config.max_scripts {
            let max = self.config.max_scripts;
            return Err(self.send(Response::no(format!("At most {max} scripts per account")).code("QUOTA/MAXSCRIPTS")));
        }
        Ok(())
    }

    /// The one mapping of store failures to ManageSieve responses.
    fn store_refusal(&mut self, e: &StoreError) -> Step {
        self.send(store_error(e))
    }
}

/// A store failure as a ManageSieve response (RFC 5804 1.3 response codes).
pub fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::NoSuchScript(_) => Response::no("There is no script by that name").code("NONEXISTENT"),
        StoreError::ScriptExists(_) => Response::no("A script by that name exists already").code("ALREADYEXISTS"),
        StoreError::ScriptActive(_) => Response::no("The script is active; deactivate it first").code("ACTIVE"),
        StoreError::InvalidScriptName(_) => Response::no("Invalid script name"),
        e if e.is_temporary() => {
            tracing::warn!(error = %e, "managesieve: store failure");
            Response::no("Temporary failure, try again later").code("TRYLATER")
        }
        e => {
            tracing::warn!(error = %e, "managesieve: store refused");
            Response::no("The operation failed")
        }
    }
}

fn capitalised(command: &str) -> String {
    let lower = command.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}
