//! POP3 server (RFC 1939 with CAPA, UIDL, TOP, RESP-CODES, AUTH-RESP-CODE, PIPELINING, STLS,
//! SASL PLAIN): lets download-and-delete clients (old Outlook/Foxmail set-ups, fetchmail,
//! getmail) read the same Maildir INBOX that IMAP serves.
//!
//! Layout, one idea per file:
//! - `command.rs`  pure parser for client lines (commands and SASL continuations);
//! - `reply.rs`    `+OK`/`-ERR` replies with response codes, rendered to wire bytes;
//! - `session.rs`  the AUTHORIZATION / TRANSACTION / UPDATE state machine, sans I/O;
//! - `maildrop.rs` the per-session snapshot, deletion marks, sizes and the UIDL format
//!   (Maildir base name — see that module for the Dovecot `pop3_uidl_format = %f` note);
//! - `dotstuff.rs` byte-exact streaming of RETR/TOP with dot-stuffing, never buffering a
//!   whole message;
//! - `line.rs`     bounded line reading (pipelining-safe);
//! - `backend.rs`  the narrow trait through which sessions reach accounts and the store;
//! - `server.rs`   one connection's I/O loop: greeting, STLS/implicit TLS, timeouts;
//! - `context.rs`  `Pop3Context` and `serve_connection`: the backend over `accounts/` and
//!   `store/` that `app.rs` wires to the 110 and 995 listeners.
//!
//! This module never decides who may log in (that is `accounts/`) nor how mail is stored
//! (`store/`): it speaks the protocol and maps their answers to POP3 replies.

pub mod backend;
pub mod command;
pub mod context;
pub mod dotstuff;
pub mod line;
pub mod maildrop;
pub mod reply;
pub mod server;
pub mod session;

pub use backend::{BackendError, Pop3Backend};
pub use command::{Command, CommandError, SaslResponse, parse_command, parse_sasl_response};
pub use context::{BUSY_REPLY, Pop3Context, serve_connection};
pub use maildrop::{Maildrop, MaildropEntry, uidl_for};
pub use reply::{Reply, RespCode};
pub use server::{Endpoint, Pop3Limits, serve_with};
pub use session::{Session, SessionConfig, Step};

#[cfg(test)]
mod tests;
