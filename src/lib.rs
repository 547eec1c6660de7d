//! mailroom: a complete mail server in one binary. See `docs` in the README and
//! architecture.md for the map; each module below owns one concern.

pub mod accounts;
pub mod app;
pub mod config;
pub mod datadir;
pub mod dns;
pub mod http;
pub mod mailauth;
pub mod metrics;
pub mod net;
pub mod scan;
pub mod tls;
pub mod units;
