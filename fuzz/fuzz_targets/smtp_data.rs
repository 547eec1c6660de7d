//! The DATA decoder (dot-unstuffing, CRLF.CRLF, bare LF/CR normalisation) fed in two
//! arbitrary pieces: it must never panic, never emit a bare LF, and never end early.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::smtp::data::DataDecoder;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map(|b| *b as usize % (data.len() + 1)).unwrap_or(0);
    let mut decoder = DataDecoder::new(1 << 20);
    let mut out = Vec::new();
    let first = decoder.feed(&data[..split], &mut out);
    if !first.done {
        let _ = decoder.feed(&data[first.consumed..], &mut out);
    }
    for (i, b) in out.iter().enumerate() {
        if *b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF in decoded body");
        }
    }
});
