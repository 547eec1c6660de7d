//! Accounts: domains, users, aliases, catch-alls, subaddressing and password hashes.
//!
//! This is the only place in mailroom that knows what an address is, how alias rules
//! resolve, and how passwords are checked (architecture.md: "alias resolution only in
//! `accounts/`"). SMTP asks [`Directory::resolve`] who receives mail and
//! [`Directory::may_send_as`] whether a sender is allowed; IMAP, POP3 and submission call
//! [`Directory::authenticate`]. Everything here is pure and synchronous except the small
//! auth cache; it never reads the environment (config.rs reads `MAILROOM_ACCOUNTS` and
//! `MAILROOM_ALIASES` and calls [`parse_accounts`] / [`parse_aliases`]).
//!
//! Files: `address.rs` (normal form of addresses), `password.rs` (hash schemes),
//! `parse.rs` (the two variable formats), `directory.rs` (resolution and validation),
//! `auth_cache.rs` (remembering successful logins for a minute).

mod address;
mod auth_cache;
mod directory;
mod parse;
mod password;

pub use address::{Address, AddressError, find_outside_quotes, normalise_domain};
pub use auth_cache::AUTH_CACHE_TTL;
pub use directory::{Account, Directory, MAX_ALIAS_DEPTH, Recipient};
pub use parse::{AccountEntry, AliasRule, parse_accounts, parse_aliases};
pub(crate) use password::constant_time_eq;
pub use password::{HashError, MAX_PASSWORD_LEN, PasswordHash, hash_password, try_hash_password};

mod generated;
mod reload;
pub use generated::{NewPostmaster, generated_accounts_file, load_generated, reset_generated_password};
pub use reload::{AccountSources, Loaded};
