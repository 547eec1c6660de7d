//! ManageSieve client input on arbitrary bytes: the parser alone, fed every prefix the
//! server could have buffered, and the session driven the way the server drives it.
//! Checked: never a panic; a complete command never claims more bytes than it was given
//! nor zero; `Incomplete` only while within the bounds (a buffer past them is answered);
//! the session's store effects get plausible answers and everything it sends ends in
//! CRLF.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::managesieve::command::{ParseLimits, Parsed, parse_command};
use mailroom::managesieve::session::{Session, SessionConfig, Step, StoreAnswer};
use mailroom::net::LoginOutcome;

const LIMITS: ParseLimits = ParseLimits { max_line: 256, max_literal: 1024 };

fuzz_target!(|data: &[u8]| {
    for cut in [data.len() / 3, data.len() / 2, data.len()] {
        let prefix = &data[..cut];
        match parse_command(prefix, LIMITS) {
            Parsed::Complete(_, n) | Parsed::Bad { consumed: n, .. } => assert!(n > 0 && n <= prefix.len()),
            Parsed::Incomplete => assert!(prefix.len() <= 4 * (LIMITS.max_line + 2) + 4 * 1024 + 64),
            Parsed::Fatal(_) => {}
        }
    }

    let mut session = Session::new(SessionConfig {
        tls_available: true,
        tls_active: data.first().is_some_and(|b| b & 1 == 1),
        max_script_size: 512,
        max_scripts: 3,
        max_redirects: 4,
        max_errors: 10,
        max_bad_logins: 3,
    });
    let mut buf = data;
    let mut logins = 0u32;
    while let Some((used, mut step)) = session.on_input(buf) {
        assert!(used > 0 && used <= buf.len(), "used {used} of {}", buf.len());
        buf = &buf[used..];
        loop {
            step = match step {
                Step::Send(bytes) | Step::StartTls(bytes) => {
                    assert!(bytes.ends_with(b"\r\n"), "{bytes:?}");
                    break;
                }
                Step::Close(bytes) => {
                    assert!(bytes.ends_with(b"\r\n"), "{bytes:?}");
                    return;
                }
                Step::Login { .. } => {
                    logins += 1;
                    if logins % 2 == 1 { session.login_done(&LoginOutcome::LoggedIn(())) } else { session.login_done(&LoginOutcome::<()>::Failed) }
                }
                Step::Store(_) => session.store_done(Ok(StoreAnswer::Done)),
            };
        }
    }
});
