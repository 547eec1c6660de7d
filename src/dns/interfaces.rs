//! Addresses of this host, read from the network interfaces (getifaddrs, no NSS): the
//! public ones for the A/AAAA/SPF records when `MAILROOM_PUBLIC_IPV4/6` are not set, all
//! of them to check that a pinned outbound source address (`MAILROOM_OUTBOUND_IPV4/6`)
//! is really ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Globally routable unicast addresses on this host's interfaces.
pub fn public_addresses() -> Vec<IpAddr> {
    let mut out = local_addresses();
    out.retain(is_public);
    out
}

/// Every address on this host's interfaces (loopback included).
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list we only read and then free exactly once.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out.dedup();
    out
}

/// Not loopback, private, link-local, shared (CGNAT), documentation, or unique-local.
pub fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xe000) == 0x2000 && !(s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        for (ip, public) in [
            ("203.0.113.7", false),
            ("8.8.8.8", true),
            ("10.1.2.3", false),
            ("100.64.0.1", false),
            ("127.0.0.1", false),
            ("2a01:4f8::1", true),
            ("2001:db8::1", false),
            ("fe80::1", false),
            ("fd00::1", false),
        ] {
            assert_eq!(is_public(&ip.parse().unwrap()), public, "{ip}");
        }
    }
}
