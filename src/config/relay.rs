//! `MAILROOM_RELAY_HOST`: the smarthost and how its connection is protected.
//!
//! The scheme says how: `smtps://` is TLS from the first byte (RFC 8314 implicit TLS,
//! port 465), `smtp://` is STARTTLS that must succeed with a certificate valid for the
//! host (port 587), and `smtp+insecure://` is plain TCP for a relay inside a private
//! network (port 25), where STARTTLS is used if offered but not required. A bare
//! `host:port` is `smtp://` (what the variable meant before it took URLs). The insecure
//! mode must be asked for by name: a relay that silently lost its TLS would otherwise
//! carry mail in clear, and credentials are never sent without TLS (`config.rs` refuses
//! them together; the client refuses AUTH on a clear connection too).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::parse::domain_name;

/// How the connection to the smarthost is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayMode {
    /// `smtps://`: implicit TLS on connect, certificate verified for the host.
    Smtps,
    /// `smtp://` (and bare `host:port`): STARTTLS required, certificate verified.
    StartTls,
    /// `smtp+insecure://`: plain TCP; STARTTLS if offered, without checking the
    /// certificate; never AUTH.
    Insecure,
}

impl RelayMode {
    pub fn scheme(self) -> &'static str {
        match self {
            RelayMode::Smtps => "smtps",
            RelayMode::StartTls => "smtp",
            RelayMode::Insecure => "smtp+insecure",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            RelayMode::Smtps => 465,
            RelayMode::StartTls => 587,
            RelayMode::Insecure => 25,
        }
    }
}

/// The smarthost for all outbound mail.
#[derive(Clone, Debug)]
pub struct RelayHost {
    pub mode: RelayMode,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The accepted forms, for the error that names the variable.
pub const RELAY_FORMS: &str = "`smtps://host[:465]` (implicit TLS), `smtp://host[:587]` (STARTTLS required), \
     `smtp+insecure://host[:25]` (private network: TLS not required, no credentials), or `host:port` \
     (same as smtp://)";

impl RelayHost {
    /// Parse the variable's value (credentials come from their own variables).
    pub fn parse(raw: &str) -> Result<RelayHost, String> {
        let raw = raw.trim();
        let (mode, authority, bare) = match raw.split_once("://") {
            Some((scheme, rest)) => {
                let mode = match scheme.to_ascii_lowercase().as_str() {
                    "smtps" => RelayMode::Smtps,
                    "smtp" => RelayMode::StartTls,
                    "smtp+insecure" => RelayMode::Insecure,
                    _ => return Err(RELAY_FORMS.into()),
                };
                (mode, rest.strip_suffix('/').unwrap_or(rest), false)
            }
            None => (RelayMode::StartTls, raw, true),
        };
        let (host, port) = split_authority(authority).ok_or_else(|| RELAY_FORMS.to_string())?;
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(RELAY_FORMS.into()),
            },
            // A bare host without a port was never accepted; only URLs have defaults.
            None if bare => return Err(RELAY_FORMS.into()),
            None => mode.default_port(),
        };
        Ok(RelayHost { mode, host, port, username: None, password: None })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` — the host checked and normalised; no
/// user info, path or query (the credentials have their own variables).
fn split_authority(authority: &str) -> Option<(String, Option<&str>)> {
    if authority.is_empty() || authority.contains(['@', '/', '?', '#', ' ']) {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        return Some((v6.to_string(), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host = if host.parse::<Ipv4Addr>().is_ok() { host.to_string() } else { domain_name(host).ok()? };
    Some((host, port))
}

/// The URL form, as logs, diagnostics and `check-config` show it.
impl fmt::Display for RelayHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.mode.scheme(), self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.mode.scheme(), self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> (RelayMode, String, u16) {
        let r = RelayHost::parse(raw).unwrap();
        (r.mode, r.host, r.port)
    }

    #[test]
    fn schemes_and_default_ports() {
        assert_eq!(parsed("smtps://Relay.Example"), (RelayMode::Smtps, "relay.example".into(), 465));
        assert_eq!(parsed("smtp://relay.example"), (RelayMode::StartTls, "relay.example".into(), 587));
        assert_eq!(parsed("smtp+insecure://10.0.0.5"), (RelayMode::Insecure, "10.0.0.5".into(), 25));
        assert_eq!(parsed("SMTPS://relay.example:2465/"), (RelayMode::Smtps, "relay.example".into(), 2465));
        assert_eq!(parsed("smtp://[2001:db8::1]:2587"), (RelayMode::StartTls, "2001:db8::1".into(), 2587));
        assert_eq!(parsed("smtps://[2001:db8::1]"), (RelayMode::Smtps, "2001:db8::1".into(), 465));
    }

    #[test]
    fn bare_host_port_means_starttls() {
        assert_eq!(parsed("smtp.example.net:587"), (RelayMode::StartTls, "smtp.example.net".into(), 587));
        assert_eq!(parsed("[2001:db8::1]:25"), (RelayMode::StartTls, "2001:db8::1".into(), 25));
    }

    #[test]
    fn bad_values_name_the_accepted_forms() {
        for bad in [
            "smarthost",
            "lmtp://relay.example",
            "smtps://",
            "smtps://:465",
            "smtp://relay.example:0",
            "smtp://relay.example:99999",
            "smtp://relay.example:x",
            "smtp://user:pw@relay.example",
            "smtp://relay.example/path",
            "smtp://[not-v6]:25",
            "smtp://bad_host!:25",
        ] {
            let e = RelayHost::parse(bad).err().unwrap_or_else(|| panic!("{bad} should fail"));
            assert!(e.contains("smtps://host[:465]") && e.contains("host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn shown_as_a_url() {
        assert_eq!(RelayHost::parse("smtp.example.net:587").unwrap().to_string(), "smtp://smtp.example.net:587");
        assert_eq!(RelayHost::parse("smtps://[::1]").unwrap().to_string(), "smtps://[::1]:465");
        assert_eq!(RelayHost::parse("smtp+insecure://r.lan").unwrap().to_string(), "smtp+insecure://r.lan:25");
    }
}
