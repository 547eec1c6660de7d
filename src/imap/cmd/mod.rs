//! Command handlers, one file per family (mini-redis `cmd/`): `auth` (CAPABILITY, LOGIN,
//! AUTHENTICATE, ENABLE, ID, NAMESPACE), `folders` (LIST, LSUB, CREATE, DELETE, RENAME,
//! SUBSCRIBE, STATUS, QUOTA), `select` (SELECT/EXAMINE, CLOSE, UNSELECT, EXPUNGE, IDLE;
//! the view itself is `imap::selected`), `fetch`, `store`, `search`, `append`
//! (APPEND, COPY, MOVE), `sort` (SORT, THREAD). Each is an `impl Session` block returning
//! the tagged reply; untagged responses go into the session's in-memory `Output`. No handler
//! reaches the connection: one that needs the transport before it can finish (STARTTLS,
//! AUTHENTICATE without an initial response, IDLE, a FETCH whose output is due to be sent)
//! returns `Step::Wait` with what it waits for, the session keeps it suspended, and the
//! driver performs the effect and calls back (`session::Next`).
//!
//! This file holds what they share: the header batch size and mailbox-name conversion; the
//! reply types, store-error mapping and flag conversion live in `response` (re-exported
//! here) so the layers below the session can use them without importing the handlers.

pub mod append;
pub mod auth;
pub mod fetch;
pub mod folders;
pub mod search;
pub mod select;
pub mod sort;
pub mod store;

pub use super::response::{
    Enabled, Status, Tagged, from_store_flag, store_error, to_store_flag, write_flags, write_flags_recent,
};
use super::session::Session;
use crate::store::{self as st, decode_mutf7, encode_mutf7};

/// Header blocks FETCH and SEARCH ask the store for per call (`Mailbox::read_headers`):
/// one blocking hop per batch, bounded memory on `FETCH 1:* ENVELOPE`.
pub(crate) const HEADER_BATCH: usize = 256;

impl Session {
    /// A mailbox name from the client -> the store's UTF-8 name. Modified UTF-7 is decoded
    /// for clients that did not enable UTF-8 names; an 8-bit name is taken as UTF-8 anyway
    /// (it cannot be modified UTF-7). `INBOX` is case-insensitive (RFC 9051 5.1). A name the
    /// store would refuse, or that does not decode, is `NO [CANNOT]`: the command itself is
    /// well-formed (any astring is a `mailbox`), so BAD would be wrong (RFC 3501 6.3.1, 7.1)
    /// and would count towards the limit of invalid commands that ends the connection.
    pub(crate) fn mailbox_from_client(&self, raw: &str) -> Result<String, Tagged> {
        let mut name = if self.enabled.utf8_names() || !raw.is_ascii() {
            raw.to_string()
        } else {
            decode_mutf7(raw).map_err(|_| Tagged::no("Mailbox name is not valid modified UTF-7").code("CANNOT"))?
        };
        while name.len() > 1 && name.ends_with('/') {
            name.pop();
        }
        if name.eq_ignore_ascii_case("INBOX") {
            name = "INBOX".into();
        } else if name.len() > 6 && name[..6].eq_ignore_ascii_case("INBOX/") {
            name = format!("INBOX/{}", &name[6..]);
        }
        if name.is_empty() {
            return Err(Tagged::no("Empty mailbox name").code("CANNOT"));
        }
        // The store's rules (no `..`, no `.`, no empty components, bounded length) checked
        // here once for every command that names a mailbox, so they all answer alike.
        if let Err(e) = st::FolderPath::from_api(&name) {
            return Err(store_error(&e, &self.peer));
        }
        Ok(name)
    }

    /// A store name -> what we send to this client.
    pub(crate) fn mailbox_to_client(&self, name: &str) -> String {
        if self.enabled.utf8_names() { name.to_string() } else { encode_mutf7(name) }
    }
}
