//! Sieve (RFC 5228) filtering: compiling scripts, and running them at delivery.

pub mod compile;
