//! [`OutboundRoute`]: over which address family, and from which source address, the
//! client connects to MX hosts.
//!
//! `MAILROOM_OUTBOUND_IPV6_MODE=off` never uses IPv6 for an MX, `on` uses it first as
//! before, and `auto` (the default) uses it only while the IPv6 source address has
//! forward-confirmed reverse DNS in the hostname's domain ([`crate::dns::reverse`]):
//! Gmail and others refuse IPv6 mail without it (`550-5.7.25`), while the same message
//! over IPv4 gets through. The verdict is one shared value, worked out at start and
//! every [`RECHECK_INTERVAL`], never per delivery. The smarthost is the operator's own
//! server and is reached over any family; the pinned source addresses apply to it too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_resolver::TokioResolver;

use crate::config::{OutboundConfig, OutboundIpv6};
use crate::dns::reverse::{self, Reverse, SendingAddress};
use crate::metrics::metrics;

/// How often `auto` and the reverse DNS warnings are re-evaluated: a PTR the provider
/// fixes is used within the hour.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The family decision and the pinned source addresses, shared by every delivery.
#[derive(Debug)]
pub struct OutboundRoute {
    mode: OutboundIpv6,
    source_v4: Option<Ipv4Addr>,
    source_v6: Option<Ipv6Addr>,
    /// `auto` only: the last reverse DNS verdict on the IPv6 source.
    ipv6_confirmed: AtomicBool,
}

impl OutboundRoute {
    /// Until the first check, `auto` keeps to IPv4.
    pub fn new(config: &OutboundConfig) -> OutboundRoute {
        OutboundRoute {
            mode: config.ipv6_mode,
            source_v4: config.ipv4,
            source_v6: config.ipv6,
            ipv6_confirmed: AtomicBool::new(false),
        }
    }

    /// IPv6 as before, kernel-chosen sources: what a bare [`ClientSettings`] uses.
    ///
    /// [`ClientSettings`]: super::ClientSettings
    pub fn any_family() -> OutboundRoute {
        OutboundRoute::new(&OutboundConfig { ipv6_mode: OutboundIpv6::On, ipv4: None, ipv6: None })
    }

    /// May MX hosts be reached over IPv6 now?
    pub fn ipv6_allowed(&self) -> bool {
        match self.mode {
            OutboundIpv6::On => true,
            OutboundIpv6::Off => false,
            OutboundIpv6::Auto => self.ipv6_confirmed.load(Ordering::Relaxed),
        }
    }

    /// The addresses of an MX host this route may connect to, in order.
    pub fn mx_addresses(&self, mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
        if !self.ipv6_allowed() {
            ips.retain(IpAddr::is_ipv4);
        }
        ips
    }

    /// Why an MX host with addresses has none left, for the diagnostic.
    pub fn ipv6_refusal(&self) -> &'static str {
        match self.mode {
            OutboundIpv6::Off => "IPv6 is off (MAILROOM_OUTBOUND_IPV6_MODE=off)",
            _ => {
                "IPv6 is not used until its source address has forward-confirmed reverse DNS (MAILROOM_OUTBOUND_IPV6_MODE=auto)"
            }
        }
    }

    /// The pinned source address for a connection to `peer`.
    pub fn source_for(&self, peer: &IpAddr) -> Option<IpAddr> {
        match peer {
            IpAddr::V4(_) => self.source_v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.source_v6.map(IpAddr::V6),
        }
    }

    fn config(&self) -> OutboundConfig {
        OutboundConfig { ipv6_mode: self.mode, ipv4: self.source_v4, ipv6: self.source_v6 }
    }

    /// Check the reverse DNS of the sending addresses, set the gauge, decide `auto`, and
    /// return one problem line per address that fails (empty when all is well).
    pub async fn evaluate(&self, resolver: &TokioResolver, hostname: &str, configured: &[IpAddr]) -> Vec<String> {
        let config = self.config();
        let detected = crate::dns::interfaces::public_addresses();
        let mut addresses = reverse::sending_addresses(&config, configured, &detected);
        // `auto` is decided on the pinned or kernel-chosen IPv6 source only: a published
        // address is not necessarily the one connections leave from.
        let v6_source = reverse::ipv6_source(&config);
        if self.mode == OutboundIpv6::Off || v6_source.is_some() {
            addresses.retain(|a| a.ip.is_ipv4());
        }
        if self.mode != OutboundIpv6::Off {
            addresses.extend(v6_source);
        }
        let mut problems = Vec::new();
        let mut v6_ok = false;
        for address in addresses {
            let verdict = reverse::check(resolver, &address.ip, hostname).await;
            metrics().dns_reverse_ok.with_label_values(&[reverse::family(&address.ip)]).set(i64::from(verdict.is_ok()));
            if Some(address) == v6_source {
                // A failed lookup proves nothing: keep the last verdict.
                v6_ok = match verdict {
                    Reverse::Failed(_) => self.ipv6_confirmed.load(Ordering::Relaxed),
                    _ => verdict.is_ok(),
                };
            }
            if let Some(advice) = verdict.advice(&address.ip, hostname) {
                problems.push(advice);
            }
        }
        let was = self.ipv6_confirmed.swap(v6_ok, Ordering::Relaxed);
        if self.mode == OutboundIpv6::Auto && was != v6_ok {
            match v6_source.filter(|_| v6_ok) {
                Some(SendingAddress { ip, .. }) => {
                    tracing::info!(source = %ip, "outbound IPv6: reverse DNS confirmed, MX hosts are reached over IPv6 too")
                }
                None => {
                    tracing::info!("outbound IPv6: not used (no confirmed reverse DNS); MX hosts are reached over IPv4")
                }
            }
        }
        problems
    }
}

/// How long the start waits for the first verdict when the resolver does not answer
/// (`auto` keeps to IPv4 meanwhile).
const FIRST_VERDICT_WAIT: Duration = Duration::from_secs(15);

/// Evaluate now, then every [`RECHECK_INTERVAL`]; return once the first evaluation is
/// done (or after [`FIRST_VERDICT_WAIT`]), so that deliveries start from a verdict.
/// Problems are warned about at start and whenever they change.
pub async fn start_reverse_watch(
    route: Arc<OutboundRoute>,
    resolver: TokioResolver,
    hostname: String,
    configured: Vec<IpAddr>,
) -> tokio::task::JoinHandle<()> {
    let (task, first) = spawn_reverse_watch(route, resolver, hostname, configured);
    let _ = tokio::time::timeout(FIRST_VERDICT_WAIT, first).await;
    task
}

fn spawn_reverse_watch(
    route: Arc<OutboundRoute>,
    resolver: TokioResolver,
    hostname: String,
    configured: Vec<IpAddr>,
) -> (tokio::task::JoinHandle<()>, tokio::sync::oneshot::Receiver<()>) {
    let (done, first) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut done = Some(done);
        let mut last: Option<Vec<String>> = None;
        loop {
            let problems = route.evaluate(&resolver, &hostname, &configured).await;
            if last.as_ref() != Some(&problems) {
                for p in &problems {
                    tracing::warn!("reverse DNS: {p}; large providers refuse mail from an address without it");
                }
                if problems.is_empty() && last.is_some() {
                    tracing::info!("reverse DNS: every sending address is forward-confirmed");
                }
                last = Some(problems);
            }
            if let Some(done) = done.take() {
                let _ = done.send(());
            }
            tokio::time::sleep(RECHECK_INTERVAL).await;
        }
    });
    (task, first)
}

/// Connect from `source` when one is pinned, else as the kernel chooses.
pub async fn connect_from(peer: SocketAddr, source: Option<IpAddr>) -> std::io::Result<tokio::net::TcpStream> {
    let Some(source) = source else {
        return tokio::net::TcpStream::connect(peer).await;
    };
    let socket = if peer.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(peer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(mode: OutboundIpv6) -> OutboundRoute {
        OutboundRoute::new(&OutboundConfig { ipv6_mode: mode, ipv4: Some(Ipv4Addr::LOCALHOST), ipv6: None })
    }

    /// `auto` follows the verdict on the pinned IPv6 source, through real DNS.
    #[tokio::test]
    async fn auto_follows_the_reverse_dns_of_the_ipv6_source() {
        use crate::dns::testdns::TestDns;
        let ptr = |ip: &str| {
            format!("--ptr-record={},mail.example.com", crate::dns::records::reverse_name(&ip.parse().unwrap()))
        };
        let extra = [
            ptr("2001:db8::25"),
            ptr("192.0.2.25"),
            "--address=/mail.example.com/2001:db8::25".to_string(),
            "--address=/mail.example.com/192.0.2.25".to_string(),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let Some(dns) = TestDns::start_with(&["com", "arpa"], &[], &[], &extra) else { return };
        let resolver = crate::dns::resolver::build(&[dns.addr]).unwrap();
        let route = OutboundRoute::new(&OutboundConfig {
            ipv6_mode: OutboundIpv6::Auto,
            ipv4: Some("192.0.2.25".parse().unwrap()),
            ipv6: Some("2001:db8::25".parse().unwrap()),
        });
        assert!(!route.ipv6_allowed(), "no verdict yet");
        assert_eq!(route.evaluate(&resolver, "mail.example.com", &[]).await, Vec::<String>::new());
        assert!(route.ipv6_allowed());
        let problems = route.evaluate(&resolver, "mx.example.net", &[]).await;
        assert!(!route.ipv6_allowed(), "{problems:?}");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].starts_with("ask your hosting provider to set the PTR of 2001:db8::25 to mx.example.net (it is now: mail.example.com"), "{problems:?}");
    }

    #[test]
    fn the_mode_filters_mx_addresses() {
        let ips: Vec<IpAddr> = vec!["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let v4_only: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        assert_eq!(route(OutboundIpv6::On).mx_addresses(ips.clone()), ips);
        assert_eq!(route(OutboundIpv6::Off).mx_addresses(ips.clone()), v4_only);
        let auto = route(OutboundIpv6::Auto);
        assert_eq!(auto.mx_addresses(ips.clone()), v4_only, "auto starts with IPv4 only");
        auto.ipv6_confirmed.store(true, Ordering::Relaxed);
        assert_eq!(auto.mx_addresses(ips.clone()), ips);
        assert_eq!(auto.source_for(&"192.0.2.1".parse().unwrap()), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(auto.source_for(&"2001:db8::1".parse().unwrap()), None);
    }
}
