//! Test fixture: a dnsmasq on a loopback port serving the records a test needs, so
//! SPF/DKIM/DMARC and DNSBL lookups go through real DNS. Test-only.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dnsmasq; killed on drop.
pub struct TestDns {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use crate::test_ports::free_port;
pub use crate::test_tools::tool_available;

impl TestDns {
    /// Start dnsmasq authoritative (`--local`) for `zones`, with `txt` records
    /// (`name`, `value`) and `a` records (`name`, `ip`). `None` when dnsmasq is
    /// missing (and CI is not set).
    pub fn start(zones: &[&str], txt: &[(&str, &str)], a: &[(&str, &str)]) -> Option<TestDns> {
        TestDns::start_with(zones, txt, a, &[])
    }

    /// [`start`](Self::start) with more dnsmasq options (`--ptr-record=…`,
    /// `--address=/name/ip`: records that, unlike `--host-record`, add no PTR).
    pub fn start_with(zones: &[&str], txt: &[(&str, &str)], a: &[(&str, &str)], extra: &[&str]) -> Option<TestDns> {
        if !tool_available("dnsmasq") {
            return None;
        }
        let port = free_port();
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            format!("--port={port}"),
            "--listen-address=127.0.0.1".into(),
            "--bind-interfaces".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--no-daemon".into(),
            "--user=root".into(),
            "--pid-file=".into(),
            "--cache-size=0".into(),
        ]);
        for z in zones {
            cmd.arg(format!("--local=/{z}/"));
        }
        for (name, value) in txt {
            // dnsmasq splits TXT values at commas into character-strings; values
            // longer than 255 bytes must be given as several strings.
            let chunks: Vec<String> =
                value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            cmd.arg(format!("--txt-record={name},{}", chunks.join(",")));
        }
        for (name, ip) in a {
            cmd.arg(format!("--host-record={name},{ip}"));
        }
        cmd.args(extra);
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn dnsmasq");
        let dns = TestDns { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        // Wait until it answers TCP (it binds UDP and TCP together).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(dns.addr).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(dns)
    }
}
