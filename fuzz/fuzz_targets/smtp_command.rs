//! SMTP command lines and addresses on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mailroom::smtp::parse_command(data);
});
