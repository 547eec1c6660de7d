//! Slowloris transcripts over real sockets: a client that trickles one byte at a time
//! cannot keep a command line or a message transfer open past its deadline; it gets
//! `421 4.4.2` and the connection closes. Timeouts are shortened to one second so every
//! test ends in a few; the trickle (a byte every 100-200 ms) is far faster than the idle
//! timeout, so only the overall deadline can end it.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::tests::{Options, start};
use super::*;

const TIMEOUT_REPLY: &str = "421 4.4.2 mx.ours.example Error: timeout exceeded";

fn short_limits() -> SmtpLimits {
    SmtpLimits {
        command_timeout: Duration::from_secs(1),
        data_timeout: Duration::from_secs(30),
        min_data_rate: 1024,
        ..SmtpLimits::default()
    }
}

/// Connect, send `setup` whole (each line answered) and `head` whole, then trickle
/// `trickle` one byte every `gap` from a task of its own; returns the reply the server
/// sends next, and whether it then closed.
async fn trickle_after(setup: &[&str], head: &[u8], trickle: &'static [u8], gap: Duration) -> (String, bool) {
    let h = start(Options { limits: short_limits(), tls: false, ..Options::default() }).await;
    let s = TcpStream::connect(h.addr).await.unwrap_or_else(|e| panic!("{e}"));
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    assert_eq!(reply(&mut r).await, "220 mx.ours.example ESMTP");
    for line in setup {
        w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
        let reply = reply(&mut r).await;
        assert!(reply.starts_with('2') || reply.starts_with('3'), "{line}: {reply}");
    }
    w.write_all(head).await.unwrap_or_else(|e| panic!("{e}"));
    let writer = tokio::spawn(async move {
        for b in trickle {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    });
    // The trickle would go on for 20 s: only the deadline makes this reply come.
    let answer = reply(&mut r).await;
    let closed = reply(&mut r).await.is_empty();
    writer.abort();
    (answer, closed)
}

/// One reply, lines joined with `\n` ("" at EOF); panics after 10 s of silence.
async fn reply<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> String {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no reply within 10 s; so far {lines:?}"));
        if !matches!(read, Ok(n) if n > 0) {
            return lines.join("\n");
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let done = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if done {
            return lines.join("\n");
        }
    }
}

const SLOW: &[u8] = &[b'x'; 200];

#[tokio::test]
async fn an_unfinished_command_line_is_cut_at_its_deadline() {
    let (reply, closed) = trickle_after(
        &[],
        b"",
        b"EHLO slowloris.example.and.it.never.ends.....................",
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(reply, TIMEOUT_REPLY);
    assert!(closed);
}

#[tokio::test]
async fn a_data_trickle_is_cut_at_its_deadline() {
    let setup = ["EHLO c.example", "MAIL FROM:<bob@remote.example>", "RCPT TO:<alice@ours.example>", "DATA"];
    let (reply, closed) = trickle_after(&setup, b"", SLOW, Duration::from_millis(100)).await;
    assert_eq!(reply, TIMEOUT_REPLY);
    assert!(closed);
}

#[tokio::test]
async fn a_bdat_trickle_is_cut_at_its_deadline() {
    let (reply, closed) = async {
        let h = start(Options { limits: short_limits(), tls: false, ..Options::default() }).await;
        let mut c = h.connect().await;
        c.cmd("EHLO c.example").await;
        c.expect("MAIL FROM:<bob@remote.example>", "250 2.1.0 Ok").await;
        c.expect("RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
        // Empty chunks make no progress: the message's deadline still runs.
        let mut last = String::new();
        for _ in 0..40 {
            last = c.cmd("BDAT 0").await;
            if last != "250 2.0.0 0 octets received" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (last, c.closed().await)
    }
    .await;
    assert_eq!(reply, TIMEOUT_REPLY);
    assert!(closed);
    let setup = ["EHLO c.example", "MAIL FROM:<bob@remote.example>", "RCPT TO:<alice@ours.example>"];
    let (reply, closed) = trickle_after(&setup, b"BDAT 100000 LAST\r\n", SLOW, Duration::from_millis(100)).await;
    assert_eq!(reply, TIMEOUT_REPLY);
    assert!(closed);
}

/// A client that pauses between commands is not cut: the clock of a line starts at
/// its first byte (1.2 s idle plus a line spread over 2 s exceed the 3 s limit together,
/// neither alone), and a whole message sent at once is delivered. The margins are wide
/// so that a loaded machine cannot make the test fail.
#[tokio::test]
async fn idle_time_between_commands_does_not_count() {
    let limits = SmtpLimits { command_timeout: Duration::from_secs(3), ..short_limits() };
    let h = start(Options { limits, tls: false, ..Options::default() }).await;
    let mut c = h.connect().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.send(b"EHLO c.exa").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(c.cmd("mple").await.starts_with("250-mx.ours.example"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.expect("MAIL FROM:<bob@remote.example>", "250 2.1.0 Ok").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.expect("RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    c.expect("DATA", "354 End data with <CR><LF>.<CR><LF>").await;
    let reply = c.cmd("From: bob@remote.example\r\n\r\nhi\r\n.").await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
}
