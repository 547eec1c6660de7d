//! [`SenderDomainCheck`] over hickory-resolver: does a sender domain exist in DNS?
//!
//! Postfix's `reject_unknown_sender_domain` semantics: a domain that can receive replies
//! has an MX record (a null MX, RFC 7505, still proves the domain exists) or, failing
//! that, an A/AAAA record (RFC 5321 §5.1 implicit MX). NXDOMAIN or no such records ->
//! [`DomainStatus::NotFound`] (550 5.1.8); timeouts, SERVFAIL, REFUSED ->
//! [`DomainStatus::LookupFailed`] (450 4.1.8), because a resolver hiccup must never
//! bounce real mail. The resolver itself (servers, timeouts, cache) is built by `dns/`;
//! this file only interprets answers.

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;

use super::policy::{DomainFuture, DomainStatus, SenderDomainCheck};

/// The hickory-backed check; cheap to share (the resolver caches answers).
#[derive(Clone)]
pub struct DnsSenderDomains {
    resolver: TokioResolver,
}

impl DnsSenderDomains {
    pub fn new(resolver: TokioResolver) -> DnsSenderDomains {
        DnsSenderDomains { resolver }
    }

    async fn status(&self, domain: &str) -> DomainStatus {
        // Fully qualified: no search-list expansion (one query, no surprises).
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(mx) if !mx.answers().is_empty() => return DomainStatus::Exists,
            Ok(_) => {}
            Err(e) if e.is_nx_domain() => return DomainStatus::NotFound,
            Err(e) if e.is_no_records_found() => {}
            Err(e) => return lookup_failed(domain, &e),
        }
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(ips) if ips.iter().next().is_some() => DomainStatus::Exists,
            Ok(_) => DomainStatus::NotFound,
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => DomainStatus::NotFound,
            Err(e) => lookup_failed(domain, &e),
        }
    }
}

fn lookup_failed(domain: &str, e: &NetError) -> DomainStatus {
    tracing::info!(domain, error = %e, "sender domain lookup failed");
    DomainStatus::LookupFailed
}

impl SenderDomainCheck for DnsSenderDomains {
    fn check<'a>(&'a self, domain: &'a str) -> DomainFuture<'a> {
        Box::pin(self.status(domain))
    }
}

#[cfg(test)]
mod tests {
    //! Against dnsmasq (Debian package) on a loopback port; skipped when it is missing
    //! unless `CI=true`.

    use std::net::{IpAddr, Ipv4Addr};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    use super::*;

    struct Dnsmasq(Child);

    impl Drop for Dnsmasq {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn resolver(port: u16) -> TokioResolver {
        let mut udp = ConnectionConfig::udp();
        udp.port = port;
        let server = NameServerConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), true, vec![udp]);
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![server]),
            TokioRuntimeProvider::default(),
        );
        builder.options_mut().timeout = Duration::from_millis(500);
        builder.options_mut().attempts = 1;
        builder.build().unwrap_or_else(|e| panic!("resolver: {e}"))
    }

    /// A port for dnsmasq (or for nobody): from the test allocator, below the ephemeral
    /// range that every query's source port is drawn from.
    fn free_udp_port() -> u16 {
        crate::test_ports::free_port()
    }

    #[tokio::test]
    async fn mx_a_nxdomain_and_failures() {
        if Command::new("dnsmasq").arg("--version").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "dnsmasq is required in CI");
            eprintln!("skipping: dnsmasq not installed");
            return;
        }
        let port = free_udp_port();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file=",
                &format!("--port={port}"),
                "--mx-host=with-mx.example,mail.with-mx.example,10",
                "--address=/only-a.example/192.0.2.1",
                // Authoritative for it, so MX gets an empty answer (NODATA), not REFUSED.
                "--local=/only-a.example/",
                "--address=/nx.example/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("dnsmasq: {e}"));
        let _guard = Dnsmasq(child);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let check = DnsSenderDomains::new(resolver(port));
        assert_eq!(check.check("with-mx.example").await, DomainStatus::Exists);
        assert_eq!(check.check("only-a.example").await, DomainStatus::Exists);
        assert_eq!(check.check("nx.example").await, DomainStatus::NotFound);
        // dnsmasq has no upstream for other names: REFUSED, which is not "does not exist".
        assert_eq!(check.check("unknown.example").await, DomainStatus::LookupFailed);
        // Nobody answering at all: a timeout is a temporary failure too.
        let silent = DnsSenderDomains::new(resolver(free_udp_port()));
        assert_eq!(silent.check("with-mx.example").await, DomainStatus::LookupFailed);
    }
}
