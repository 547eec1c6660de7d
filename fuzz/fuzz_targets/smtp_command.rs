//! SMTP command lines on arbitrary bytes: the line framer (at a small and at the default
//! line limit) cuts the input into lines the way the server does, and every line goes
//! through the command parser, whose result is then used like the session uses it.
//! Checked: never a panic; the framer only hands out whole lines within the limit and
//! never asks to wait for more once the limit is reached.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::smtp::framing::{Frame, LineFramer};
use mailroom::smtp::parse_command;

fuzz_target!(|data: &[u8]| {
    exercise(data);
    for max in [64, 2048] {
        let mut framer = LineFramer::new(max);
        let mut rest = data;
        loop {
            match framer.check(rest) {
                Frame::Line(n) => {
                    assert!(n > 0 && n <= rest.len() && n <= max);
                    assert_eq!(rest[n - 1], b'\n');
                    exercise(&rest[..n]);
                    rest = &rest[n..];
                }
                Frame::Discard(n) | Frame::TooLong(n) => {
                    assert!(n > 0 && n <= rest.len());
                    rest = &rest[n..];
                }
                Frame::Incomplete => {
                    assert!(rest.len() < max);
                    break;
                }
            }
        }
    }
});

fn exercise(line: &[u8]) {
    match parse_command(line) {
        Ok(command) => {
            let _ = command.verb();
        }
        Err(error) => {
            let _ = error.reply();
        }
    }
}
