//! IMAP input bounds with the real binary: what an unauthenticated client may make the
//! server hold, and what big uploads cost once logged in. Memory is read from the
//! server's own /proc/<pid>/status (VmHWM, the peak resident size).

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Peak resident memory of a process in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// Connect to the cleartext IMAP port and read the greeting.
fn connect(port: u16) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    (r, s)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    let _ = r.read_line(&mut l);
    l.trim_end().to_string()
}

/// RFC 9051 7.5: the server may answer a synchronizing literal with a tagged BAD instead
/// of `+`; RFC 7888 4: a non-synchronizing one it will not take ends the connection.
/// Sixty sockets announcing 26 MB before login used to pin 1.5 GB until the autologout.
#[test]
fn unauthenticated_literals_are_refused_unread() {
    let m = start_smtp_imap();
    let pid = m.server.child.id();
    let mut held = Vec::new();
    for i in 0..60 {
        let (mut r, mut w) = connect(m.imap);
        let cmd = ["LOGIN", "ID", "AUTHENTICATE", "XYZZY"][i % 4];
        write!(w, "a{i} {cmd} {{26000000}}\r\n").unwrap();
        assert_eq!(line(&mut r), format!("a{i} BAD Literal too big"), "no '+ Ready' before login");
        held.push((r, w));
    }
    for (i, (r, w)) in held.iter_mut().enumerate() {
        // C: b LOGIN {26000000+}   S: * BYE Literal too big, and the socket closes (no data
        // follows here: unread data would make the close a reset that can eat the BYE)
        write!(w, "b{i} LOGIN {{26000000+}}\r\n").unwrap();
        assert_eq!(line(r), "* BYE Literal too big");
        assert_eq!(line(r), "", "closed after BYE");
    }
    let peak = peak_rss_mib(pid);
    assert!(peak < 100, "server peaked at {peak} MiB");
}

/// The same bounds on the implicit TLS port (993).
#[test]
fn unauthenticated_literals_are_refused_over_implicit_tls() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut env = env_listening(&data, &["IMAPS"]);
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}wonderland".into()));
    let mut server = Server::start_ready(&env, &data, Duration::from_secs(30));
    let imaps = server.port("imaps");
    run_client("imap_preauth_literal.py", &[imaps.to_string()], &server);
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
}

/// Ten imaplib clients each APPEND a 20 MiB message at the same time: the literals go to
/// spool files as they arrive, so the server's peak memory stays far below the 200 MiB
/// the messages themselves add up to.
#[test]
fn parallel_big_appends_stream_to_disk() {
    if !have_tool("python3") {
        return;
    }
    let mut m = start_smtp_imap();
    let pid = m.server.child.id();
    let args = [m.imap.to_string(), "alice@example.com".into(), "wonderland".into(), "10".into(), "20".into()];
    run_client("imap_parallel_append.py", &args, &m.server);
    let peak = peak_rss_mib(pid);
    println!("server peak RSS with 10 parallel 20 MiB APPENDs: {peak} MiB");
    assert!(peak < 120, "server peaked at {peak} MiB");
    let spool = m.data.join("state/spool");
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "spool files left in {spool:?}");
    assert!(m.server.terminate(Duration::from_secs(10)).unwrap().success());
}

/// Keywords cost the server one string each however many messages carry them: 256 keywords
/// of 100 bytes (the most a mailbox admits) on 500 messages, seen by five sessions, used to
/// be a private copy per message and session (+139 MiB; shared: +42 to +56 MiB, part of it
/// transient, such as the index log records the STORE writes); one keyword more is
/// NO [LIMIT].
#[test]
fn keywords_are_bounded_and_shared() {
    if !have_tool("python3") {
        return;
    }
    let mut m = start_smtp_imap();
    let pid = m.server.child.id();
    let run = |args: &[&str]| {
        let mut all = vec![m.imap.to_string(), "alice@example.com".into(), "wonderland".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        run_client("imap_keyword_flood.py", &all, &m.server);
    };
    run(&["fill", "500"]);
    let before = peak_rss_mib(pid);
    run(&["flood", "500", "256", "100", "4"]);
    let after = peak_rss_mib(pid);
    println!("server peak RSS {before} MiB -> {after} MiB with 256 keywords on 500 messages in 5 sessions");
    assert!(after - before < 100, "keywords took the server from {before} to {after} MiB");
    assert!(m.server.terminate(Duration::from_secs(10)).unwrap().success());
}
