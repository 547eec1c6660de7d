//! ManageSieve server (RFC 5804): lets mail clients (Thunderbird's sieve add-on, Roundcube,
//! sieve-connect, sievelib) upload, check, list, activate, rename and delete the account's
//! Sieve scripts, which the store keeps (`store/`, `sieve_*` methods).
//!
//! Layout, one idea per file:
//! - `command.rs` the pure parser: commands, quoted strings, literals, with bounds;
//! - `reply.rs`   `OK`/`NO`/`BYE` responses and strings on the wire;
//! - `session.rs` the state machine, sans I/O: capabilities, TLS and login rules, quotas,
//!   compile checks, store errors mapped to response codes;
//! - `server.rs`  one connection's I/O loop: reads, timeouts, STARTTLS, the login check,
//!   running the session's store operations.
//!
//! This module never decides who may log in (`net::verify_login`, `accounts/`), how
//! scripts are stored (`store/`) nor whether a script compiles (`sieve::compile`).

pub mod command;
pub mod reply;
pub mod server;
pub mod session;

pub use command::{Command, ParseLimits, Parsed, parse_command, parse_sasl_response};
pub use server::{BUSY_REPLY, ManageSieveContext, ManageSieveLimits, serve_connection};
pub use session::{SIEVE_EXTENSIONS, Session, SessionConfig, Step, StoreAnswer, StoreOp};

#[cfg(test)]
mod session_tests;
