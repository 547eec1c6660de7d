//! IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) server: framing, the pure command parser,
//! response rendering from raw message bytes, search evaluation, and the per-connection
//! session state machine working on `store/` and `accounts/`.
//!
//! Layering: `framing` (is a command buffered?) -> `parser` (bytes -> `command::Command`)
//! -> session/cmd (act on the store) -> `render` (values -> well-formed response bytes).
//! None of them does socket I/O, the session included: `driver` owns the `connection`,
//! feeds the session complete commands, sends its output and performs the effects it asks
//! for (STARTTLS, continuation lines, IDLE waits, flushing a long response).

pub mod cmd;
pub mod command;
mod connection;
pub mod context;
mod driver;
pub mod framing;
pub mod output;
pub mod parser;
pub mod render;
pub mod response;
pub mod search;
pub mod selected;
pub mod sequence;
pub mod session;
pub mod sort;
pub mod thread;
pub mod user_limit;

pub use context::{ImapContext, ImapLimits};
pub use driver::serve_connection;
pub use user_limit::UserConnections;

#[cfg(test)]
mod address_tests;
#[cfg(test)]
mod big_header_tests;
#[cfg(test)]
mod binary_tests;
#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod envelope_cache_tests;
#[cfg(test)]
mod expunge_tests;
#[cfg(test)]
mod imaplib_tests;
#[cfg(test)]
mod keyword_tests;
#[cfg(test)]
mod literal_tests;
#[cfg(test)]
mod mailbox_name_tests;
#[cfg(test)]
mod mbsync_tests;
#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod recent_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod slow_reader_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
