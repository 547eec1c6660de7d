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
            ListenAddr::Socket(sa) => bind_one(*sa, false).map_err(fail)?,
            ListenAddr::AllInterfaces(port) => {
                match bind_one(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), *port), true) {
                    Ok(s) => s,
                    // No IPv6 in this kernel or container: fall back to IPv4 only.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)) => {
                        bind_one(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port), false).map_err(fail)?
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
        };
        let std_listener: std::net::TcpListener = socket.into();
        let listener = TcpListener::from_std(std_listener).map_err(fail)?;
        let local_addr = listener.local_addr().map_err(fail)?;
        out.push(BoundListener { protocol, local_addr, listener });
    }
    Ok(out)
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

    #[tokio::test]
    async fn all_interfaces_accepts_ipv4() {
        let bound = bind(Protocol::Metrics, &[ListenAddr::AllInterfaces(0)]).unwrap();
        let port = bound[0].local_addr.port();
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    }
}
