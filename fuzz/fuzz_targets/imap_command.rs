//! IMAP: framing (literals, line bounds) then command parsing, on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::imap::framing::{FrameLimits, next_frame};

fuzz_target!(|data: &[u8]| {
    let _ = next_frame(data, FrameLimits::default());
    let _ = mailroom::imap::parser::parse_command(data);
});
