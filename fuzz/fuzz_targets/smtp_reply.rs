//! SMTP replies from a remote server on arbitrary bytes, parsed the way the outbound
//! client reads them: one reply after another from a buffer, then EHLO capabilities from
//! each. Checked: never a panic; a complete reply consumes at least one byte and never
//! more than given; the same bytes followed by more parse to the same reply (a decision
//! does not depend on what arrives after it); "read more" is never answered once the
//! buffer holds more than the longest reply the parser accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::smtp::client::reply::{Capabilities, MAX_LINE, MAX_LINES, parse_reply};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((status, used))) = parse_reply(rest) {
        assert!(used > 0 && used <= rest.len());
        let mut longer = rest[..used].to_vec();
        longer.extend_from_slice(b"250 more\r\n");
        match parse_reply(&longer) {
            Ok(Some((again, again_used))) => {
                assert_eq!(again, status);
                assert_eq!(again_used, used);
            }
            other => panic!("{other:?} after {status:?}"),
        }
        let _ = Capabilities::from_ehlo(&status);
        let _ = status.to_string();
        rest = &rest[used..];
    }
    if let Ok(None) = parse_reply(rest) {
        assert!(rest.len() <= (MAX_LINE + 2) * MAX_LINES, "still asking for more after {} bytes", rest.len());
    }
});
