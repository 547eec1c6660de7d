//! The integration tests: each module starts the real `mailroom` binary on ephemeral
//! loopback ports and talks to it with real clients, or runs the real servers it works with.
//!
//! One test binary rather than one per file: each binary links the whole crate and its
//! dependencies again, and `cargo test` runs binaries one after the other, so a binary's
//! slowest test held the next one back. Most of these tests wait on processes and sockets,
//! not on the CPU, and in one binary they overlap. Run one file's tests with
//! `cargo test --test it FILE::` (e.g. `cargo test --test it web::`).

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/dmarc_schema.rs"]
mod dmarc_schema;
#[path = "../support/dovecot.rs"]
mod dovecot;
#[path = "../support/outbound.rs"]
mod outbound;
#[path = "../support/reports.rs"]
mod reports;
#[path = "../support/signed_zone.rs"]
mod signed_zone;

mod accounts_reload;
mod acme;
mod auth_limits;
mod backup;
mod crash_imap;
mod crash_imap_pg;
mod crash_lmtp;
mod crash_pop3;
mod credentials;
mod deploy;
mod disk_full;
mod dmarc_reports;
mod dns;
mod dualstack;
mod e2e;
mod fetch;
mod foundation;
mod imap_consistency;
mod imap_limits;
mod imap_mailbox_names;
mod import;
mod inbound;
mod log_summary;
mod managesieve;
mod memory;
mod monitoring;
mod offlineimap;
mod outbound_family;
mod outbound_tls;
mod proxy;
mod queue;
mod replicas;
mod sieve;
mod sieve_e2e;
mod slow_clients;
mod smarthost;
mod status;
mod submission;
mod tls_reports;
mod vacation;
mod web;
