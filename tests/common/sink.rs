//! A remote MX for the tests that send mail out: a blocking SMTP server on a loopback
//! port that accepts everything except recipients whose local part starts with `reject`
//! (550 5.1.1), and keeps each transaction it took (sender, recipients, the exact
//! dot-unstuffed bytes, and the client's address).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One transaction the sink accepted.
#[derive(Clone, Debug)]
pub struct Got {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    /// Where the connection came from (which address family the client used).
    pub peer: IpAddr,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// What the sink took so far, shared with its threads.
pub type Received = Arc<Mutex<Vec<Got>>>;

/// A sink on 127.0.0.1: a free port, or `port` when given.
pub fn start_sink(port: Option<u16>) -> (Received, u16) {
    let listener = TcpListener::bind(("127.0.0.1", port.unwrap_or(0))).expect("bind the sink");
    let port = listener.local_addr().unwrap().port();
    let got = Received::default();
    serve(listener, got.clone());
    (got, port)
}

/// A sink on 127.0.0.1 and ::1, one port for both.
pub fn start_dual_sink() -> (Received, u16) {
    for _ in 0..50 {
        let v6 = TcpListener::bind("[::1]:0").expect("bind ::1");
        let port = v6.local_addr().unwrap().port();
        let Ok(v4) = TcpListener::bind(("127.0.0.1", port)) else { continue };
        let got = Received::default();
        serve(v4, got.clone());
        serve(v6, got.clone());
        return (got, port);
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

fn serve(listener: TcpListener, got: Received) {
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let got = got.clone();
            std::thread::spawn(move || {
                let _ = session(stream, &got);
            });
        }
    });
}

fn session(stream: TcpStream, store: &Mutex<Vec<Got>>) -> std::io::Result<()> {
    let peer = stream.peer_addr()?.ip();
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 mx.remote.test ESMTP sink\r\n")?;
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let addr = || line.split(['<', '>']).nth(1).unwrap_or("").to_string();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-mx.remote.test\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL") {
            (from, rcpts) = (addr(), Vec::new());
            w.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("RCPT") {
            let to = addr();
            if to.starts_with("reject") {
                w.write_all(b"550 5.1.1 no such user here\r\n")?;
            } else {
                rcpts.push(to);
                w.write_all(b"250 2.1.5 ok\r\n")?;
            }
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go\r\n")?;
            let Some(data) = super::read_smtp_data(&mut r)? else { return Ok(()) };
            let got = Got { from: from.clone(), rcpts: std::mem::take(&mut rcpts), data, peer };
            store.lock().unwrap().push(got);
            w.write_all(b"250 2.0.0 accepted\r\n")?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            if upper.starts_with("RSET") {
                rcpts.clear();
            }
            w.write_all(b"250 ok\r\n")?;
        }
    }
}
