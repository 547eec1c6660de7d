//! SMTP TLS reports (RFC 8460), sent and received.
//!
//! Owns: what each outbound TLS session adds to a recipient domain's report
//! (`record.rs`: the row the client's `TlsOutcome` becomes, counted in the shared
//! bounded counters of `reports/`), the report as JSON in a gzip attachment
//! (`report.rs`), the daily sending run (`send.rs`) and reading the reports others send
//! us (`receive.rs`). Flushing, the lease, signing and queueing are the shared
//! `reports::Outbox`, as for DMARC reports.
//!
//! It must never: do I/O on the delivery path (recording is a map update), or report on
//! the delivery of TLS reports themselves (the client leaves those out, RFC 8460
//! section 3).

pub mod receive;
pub mod record;
pub mod report;
pub mod send;

#[cfg(test)]
mod tests;

pub use record::{Recorder, TlsRow};
pub use send::Reporter;
