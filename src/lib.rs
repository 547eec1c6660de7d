//! mailroom: a complete mail server in one binary. See `docs` in the README and
//! architecture.md for the map; each module below owns one concern.

pub mod accounts;
pub mod acme;
pub mod app;
pub mod backup;
pub mod config;
pub mod credentials;
pub mod datadir;
pub mod disk;
pub mod dmarc;
pub mod dns;
pub mod durable;
pub mod fetch;
pub mod header_address;
pub mod http;
pub mod imap;
pub mod import;
pub mod logsummary;
pub mod mailauth;
pub mod maillog;
pub mod managesieve;
pub mod metrics;
pub mod net;
pub mod pop3;
pub mod queue;
pub mod readiness;
pub mod reports;
pub mod scan;
pub mod sieve;
pub mod smtp;
pub mod status;
pub mod store;
#[cfg(test)]
pub mod test_pg;
#[cfg(test)]
pub mod test_ports;
#[cfg(test)]
pub mod test_s3;
#[cfg(test)]
pub mod test_tools;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod tlsrpt;
pub mod units;
pub mod web;
pub mod xml;
