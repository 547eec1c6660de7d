//! PROXY protocol v1/v2 headers on arbitrary bytes: never panic, never consume more
//! than was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::net::proxy::{ProxyParse, parse_proxy_header};

fuzz_target!(|data: &[u8]| {
    if let ProxyParse::Done { consumed, .. } = parse_proxy_header(data) {
        assert!(consumed <= data.len());
    }
});
