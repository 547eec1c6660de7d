//! Tests of the IMAP session without a socket. `transcript`: the session and its driver
//! run over an in-memory pipe, the test writes command bytes and compares the exact
//! response bytes. `sans_io`: the session alone, with no stream at all; the test plays the
//! driver (frames in, `Output` bytes out, effects answered by hand).

mod harness;
mod sans_io;
mod transcript;
