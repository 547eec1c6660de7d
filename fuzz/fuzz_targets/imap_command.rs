//! IMAP commands on arbitrary bytes: the framer (literals, line and literal bounds, at the
//! default limits and at small ones) and then the parser on each complete frame, as the
//! session does, plus the parser on the raw bytes. Checked: never a panic; a complete
//! frame is complete on its own and not one byte earlier; the framer never asks for more
//! bytes than the line bound plus the literal bound (big APPEND literals are handed over
//! to be streamed instead).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::imap::framing::{Frame, FrameLimits, next_frame};
use mailroom::imap::parser::parse_command;

fuzz_target!(|data: &[u8]| {
    let _ = parse_command(data);
    let small = FrameLimits { max_line: 64, max_literal: 32, max_append: 48, stream_above: Some(16) };
    for limits in [FrameLimits::default(), small] {
        match next_frame(data, limits) {
            Frame::Complete { len } => {
                assert!(len > 0 && len <= data.len());
                assert_eq!(next_frame(&data[..len], limits), Frame::Complete { len });
                assert!(!matches!(next_frame(&data[..len - 1], limits), Frame::Complete { .. }));
                let _ = parse_command(&data[..len]);
            }
            Frame::Incomplete | Frame::AwaitingLiteral { .. } => {
                let bound = limits.max_line as u64 + limits.max_literal.max(limits.stream_above.unwrap_or(limits.max_append));
                assert!(data.len() as u64 <= bound, "the framer buffers past its bounds");
            }
            Frame::LiteralTooBig { discard, .. } => assert!(discard <= data.len()),
            Frame::StreamLiteral { head_len, size, .. } => {
                assert!(head_len <= data.len() && size <= limits.max_append && limits.stream_above.is_some());
            }
            Frame::LineTooLong => {}
        }
    }
});
