//! Binding listen addresses. `:port` means every address, IPv4 and IPv6: one
//! dual-stack `[::]` socket where the kernel allows it, `0.0.0.0` where IPv6 is off.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use thiserror::Error;
use tokio::net::TcpListener;

use crate::config::{ListenAddr, Protocol};

#[derive(Debug, Error)]
#[error("cannot listen on {addr} for {protocol} (MAILROOM_{var}_LISTEN): {reason}")]
pub struct BindError {
    pub protocol: &'static str,
    pub var: String,
    pub addr: String,
    pub reason: String,
}

/// A bound socket waiting for its service.
#[derive(Debug)]
pub struct BoundListener {
    pub protocol: Protocol,
    /// The address actually bound (the real port when `:0` was asked for).
    pub local_addr: SocketAddr,
    pub listener: TcpListener,
}

/// Bind every address of `protocol`. Must run inside a tokio runtime.
pub fn bind(protocol: Protocol, addrs: &[ListenAddr]) -> Result<Vec<BoundListener>, BindError> {
    let mut out = Vec::new();
    for addr in addrs {
        let fail = |e: std::io::Error| BindError {
            protocol: protocol.name(),
            var: protocol.name().to_ascii_uppercase(),
            addr: addr.to_string(),
            reason: describe_bind_error(&e, addr.port()),
        };
        let socket = match addr {
            ListenAddr::Socket(sa) => match bind_one(*sa, false) {
                Ok(s) => s,
                Err(e) if skippable_ipv6_loopback(*sa, addrs.len(), &e) => {
                    tracing::warn!(
                        listener = protocol.name(),
                        addr = %sa,
                        error = %e,
                        "IPv6 is not available on this host; not listening on [::1] (the other addresses are)"
                    );
                    continue;
                }
                Err(e) => return Err(fail(e)),
            },
            ListenAddr::AllInterfaces(port) => bind_all_interfaces(protocol, *port, bind_one).map_err(fail)?,
        };
        let std_listener: std::net::TcpListener = socket.into();
        let listener = TcpListener::from_std(std_listener).map_err(fail)?;
        let local_addr = listener.local_addr().map_err(fail)?;
        out.push(BoundListener { protocol, local_addr, listener });
    }
    Ok(out)
}

/// `:port`: one dual-stack `[::]` socket (IPv4 clients arrive as `::ffff:a.b.c.d`,
/// which `net::canonical_peer` turns back into IPv4), or `0.0.0.0` when this host has
/// no IPv6 at all, so that `:25` works everywhere instead of failing to start.
/// `bind` is [`bind_one`], a parameter so tests can play a kernel without IPv6.
fn bind_all_interfaces(
    protocol: Protocol,
    port: u16,
    bind: impl Fn(SocketAddr, bool) -> std::io::Result<Socket>,
) -> std::io::Result<Socket> {
    match bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port), true) {
        Ok(s) => Ok(s),
        Err(e) if ipv6_unavailable(&e) => {
            tracing::warn!(
                listener = protocol.name(),
                port,
                error = %e,
                "IPv6 is not available on this host; listening on 0.0.0.0 (IPv4 only)"
            );
            bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), false)
        }
        Err(e) => Err(e),
    }
}

/// Errors of creating or binding an IPv6 socket that mean "this host has no IPv6",
/// as opposed to a problem with the port (in use, privileged) that IPv4 would share:
/// - `EAFNOSUPPORT`: the kernel booted with `ipv6.disable=1` or built without IPv6
///   (`socket(AF_INET6)` itself fails);
/// - `EPROTONOSUPPORT`: socket(2)'s "protocol not supported within this domain", the
///   same absence said another way;
/// - `EADDRNOTAVAIL`: no IPv6 address at all to bind to.
///
/// `net.ipv6.conf.all.disable_ipv6=1` (a common container setting) is not among them:
/// binding `[::]` still works there and serves IPv4 through the dual-stack socket.
fn ipv6_unavailable(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EADDRNOTAVAIL))
}

/// `127.0.0.1:p,[::1]:p` (dev.env's "loopback only") must also start on a host or
/// container without IPv6, where `[::1]` does not exist: that one address is skipped
/// when the same variable names others. A lone `[::1]`, or any other address, still fails.
fn skippable_ipv6_loopback(addr: SocketAddr, addresses_in_variable: usize, e: &std::io::Error) -> bool {
    addresses_in_variable > 1 && addr.ip() == std::net::IpAddr::from(Ipv6Addr::LOCALHOST) && ipv6_unavailable(e)
}

fn bind_one(addr: SocketAddr, dual_stack: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(SockProtocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    // Restarting must not wait for TIME_WAIT sockets of the previous process.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

fn describe_bind_error(e: &std::io::Error, port: u16) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => format!("port {port} is already in use by another process"),
        Some(libc::EACCES) if port < 1024 => format!(
            "permission denied for port {port} (< 1024 needs root, CAP_NET_BIND_SERVICE, or net.ipv4.ip_unprivileged_port_start=0; or choose a port >= 1024)"
        ),
        Some(libc::EADDRNOTAVAIL) => "this address is not assigned to any interface of this host".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_ephemeral_and_reports_port_in_use() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let bound = bind(Protocol::Smtp, &[ListenAddr::Socket(addr)]).unwrap();
        let port = bound[0].local_addr.port();
        assert_ne!(port, 0);
        let again: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let err = bind(Protocol::Imap, &[ListenAddr::Socket(again)]).unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err}");
        assert!(err.to_string().contains("MAILROOM_IMAP_LISTEN"), "{err}");
    }

    #[test]
    fn only_ipv6_loopback_beside_other_addresses_may_be_skipped() {
        let missing = std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        let in_use = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
        let v6_lo: SocketAddr = "[::1]:2525".parse().unwrap();
        assert!(skippable_ipv6_loopback(v6_lo, 2, &missing));
        assert!(!skippable_ipv6_loopback(v6_lo, 1, &missing), "a lone [::1] must bind");
        assert!(!skippable_ipv6_loopback(v6_lo, 2, &in_use), "a port in use is a real error");
        assert!(!skippable_ipv6_loopback("[2001:db8::1]:25".parse().unwrap(), 2, &missing));
        assert!(!skippable_ipv6_loopback("127.0.0.1:25".parse().unwrap(), 2, &missing));
    }

    #[test]
    fn only_a_missing_ipv6_falls_back_to_ipv4() {
        let os = std::io::Error::from_raw_os_error;
        for errno in [libc::EAFNOSUPPORT, libc::EPROTONOSUPPORT, libc::EADDRNOTAVAIL] {
            assert!(ipv6_unavailable(&os(errno)), "{}", os(errno));
        }
        for errno in [libc::EADDRINUSE, libc::EACCES, libc::EMFILE, libc::EPERM] {
            assert!(!ipv6_unavailable(&os(errno)), "{}", os(errno));
        }
    }

    /// A kernel booted with `ipv6.disable=1` refuses `socket(AF_INET6)`: `:port` binds
    /// `0.0.0.0` instead of failing; a port in use still fails.
    #[tokio::test]
    async fn all_interfaces_without_ipv6_binds_ipv4() {
        let no_ipv6 = |addr: SocketAddr, dual: bool| match addr {
            SocketAddr::V6(_) => Err(std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
            SocketAddr::V4(_) => bind_one(addr, dual),
        };
        let socket = bind_all_interfaces(Protocol::Smtp, 0, no_ipv6).unwrap();
        let local = socket.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(local.ip(), std::net::IpAddr::from(Ipv4Addr::UNSPECIFIED));
        let listener = TcpListener::from_std(socket.into()).unwrap();
        tokio::net::TcpStream::connect(("127.0.0.1", local.port())).await.unwrap();
        listener.accept().await.unwrap();

        let in_use = |_: SocketAddr, _: bool| Err(std::io::Error::from_raw_os_error(libc::EADDRINUSE));
        let err = bind_all_interfaces(Protocol::Smtp, 25, in_use).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
    }

    #[tokio::test]
    async fn all_interfaces_accepts_ipv4() {
        let bound = bind(Protocol::Metrics, &[ListenAddr::AllInterfaces(0)]).unwrap();
        let port = bound[0].local_addr.port();
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    }
}
