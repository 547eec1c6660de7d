//! POP3 client lines on arbitrary bytes, driven through the session state machine the way
//! the server drives it: lines cut at LF within the session's current limit (longer ones
//! are reported as too long), `Authenticate` answered alternately with a login into a
//! small maildrop and a failure, `Update` completed. Checked: never a panic; once the
//! session says Close, nothing more is fed; a message to send always names a message of
//! the maildrop; every reply's status line is one CRLF-terminated line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::pop3::maildrop::{Maildrop, MaildropEntry};
use mailroom::pop3::session::{Session, SessionConfig, Step};

const UIDS: [u32; 3] = [3, 7, 8];

fuzz_target!(|data: &[u8]| {
    let config = SessionConfig {
        tls_available: data.first().is_some_and(|b| b & 1 == 1),
        tls_active: false,
        max_bad_logins: 3,
        max_errors: 10,
    };
    let mut session = Session::new(config);
    let mut logins = 0u32;
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => rest.split_at(i + 1),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let mut step = if line.len() > session.line_limit() { session.line_too_long() } else { session.on_line(line) };
        loop {
            step = match step {
                Step::Reply(reply) | Step::StartTls(reply) => {
                    check(&reply.to_bytes());
                    break;
                }
                Step::Close(reply) => {
                    check(&reply.to_bytes());
                    return;
                }
                Step::Authenticate { .. } => {
                    logins += 1;
                    if logins % 2 == 1 {
                        let entries = UIDS
                            .iter()
                            .map(|&uid| MaildropEntry::new(uid, 100 * u64::from(uid), &format!("m{uid}")))
                            .collect();
                        let reply = session.logged_in(Maildrop::new(entries));
                        check(&reply.to_bytes());
                        break;
                    }
                    session.login_failed()
                }
                Step::SendMessage { first_line, uid, .. } => {
                    check(&first_line.to_bytes());
                    assert!(UIDS.contains(&uid), "asked to send unknown message {uid}");
                    break;
                }
                Step::Update { uids } => {
                    assert!(uids.iter().all(|u| UIDS.contains(u)), "expunging unknown messages {uids:?}");
                    session.update_done(Ok(uids.len()))
                }
            };
        }
    }
});

/// One status line, whatever the client sent: no CR or LF from the input may split it
/// (a multi-line answer's further lines come after the first CRLF).
fn check(rendered: &[u8]) {
    assert!(
        rendered.starts_with(b"+OK") || rendered.starts_with(b"-ERR") || rendered.starts_with(b"+ "),
        "{rendered:?}"
    );
    assert!(rendered.ends_with(b"\r\n"));
    let first_line_end = rendered.iter().position(|&b| b == b'\n').unwrap_or(rendered.len());
    assert_eq!(rendered[first_line_end - 1], b'\r', "{rendered:?}");
    assert!(!rendered[..first_line_end - 1].contains(&b'\r'), "{rendered:?}");
}
