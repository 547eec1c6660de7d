//! End-to-end tests of the POP3 server on loopback: real TCP, real TLS, real clients
//! (Python poplib, fetchmail) and our own raw client for the corner cases clients avoid.

mod fetchmail;
mod harness;
mod poplib;
mod raw;
mod slow;
mod store;
