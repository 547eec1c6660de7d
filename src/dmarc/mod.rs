//! DMARC aggregate reports (RFC 7489 section 7.2), sent and received.
//!
//! Owns: what each port-25 message's DMARC evaluation adds to a domain's report
//! (`record.rs`: the row, counted in the shared counters of `reports/`), the report as
//! XML in a gzip attachment (`report.rs`), and the daily sending run (`send.rs`). The
//! counters are flushed through the store boundary about once a minute
//! (`reports::Outbox::flush`), so PostgreSQL replicas share them. A crash loses at most the last minute of
//! statistics; mail is never delayed, refused or lost because of reports.
//!
//! It must never: do I/O on the SMTP reply path (recording is a map update), or mail a
//! third party a domain did not authorise (`send.rs`).

pub mod receive;
pub mod record;
pub mod report;
pub mod send;

#[cfg(test)]
mod tests;

pub use crate::reports::RunSummary;
pub use record::{Destination, DkimAuth, Observation, PolicyPublished, Recorder, SpfAuth};
pub use report::AggregateReport;
pub use send::Reporter;
