//! PROXY protocol v1/v2 headers on arbitrary bytes. Beyond "never panic": a header never
//! claims more bytes than were given, it parses the same on its own as with the protocol
//! bytes after it, one byte less of it is still `Incomplete`, a decision once made does
//! not change when more bytes arrive, and "read more" is never answered once the caller's
//! buffer bound (`MAX_HEADER_LEN`; 107 bytes for v1) is reached.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::net::proxy::{MAX_HEADER_LEN, ProxyParse, V1_MAX_LEN, parse_proxy_header};

fuzz_target!(|data: &[u8]| {
    let whole = parse_proxy_header(data);
    match whole {
        ProxyParse::Done { consumed, .. } => {
            assert!(consumed > 0 && consumed <= data.len());
            assert_eq!(parse_proxy_header(&data[..consumed]), whole);
            assert_eq!(parse_proxy_header(&data[..consumed - 1]), ProxyParse::Incomplete);
        }
        ProxyParse::Incomplete => {
            assert!(data.len() < MAX_HEADER_LEN);
            if data.first() == Some(&b'P') {
                assert!(data.len() < V1_MAX_LEN);
            }
        }
        ProxyParse::Invalid(_) => {}
    }
    if let Some((_, shorter)) = data.split_last() {
        let before = parse_proxy_header(shorter);
        if before != ProxyParse::Incomplete {
            assert_eq!(before, whole, "one more byte changed a decision already made");
        }
    }
});
