//! Transcript tests of the IMAP session without a socket: the session runs over an
//! in-memory pipe, the test writes command bytes and compares the exact response bytes.

mod harness;
mod transcript;
