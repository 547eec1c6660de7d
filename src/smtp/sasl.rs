//! SASL for submission (RFC 4954): the PLAIN (RFC 4616) and LOGIN mechanisms, as pure
//! decoders from the client's base64 lines to credentials, plus the [`LoginThrottle`]
//! that slows password guessing.
//!
//! The exchange itself (sending `334` challenges, reading the answers) is the server's
//! job (`server.rs`), because it needs more lines from the socket; everything that can
//! be decided from bytes alone lives here so it is tested without sockets.
//!
//! Why LOGIN: it is not a standard, but Outlook and many phones only speak it; Postfix
//! keeps it for the same reason (`broken_sasl_auth_clients`).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use super::reply::Reply;

/// The mechanisms we offer, in the order advertised.
pub const MECHANISMS: &str = "PLAIN LOGIN";

/// `334 VXNlcm5hbWU6` ("Username:") and `334 UGFzc3dvcmQ6` ("Password:"): the texts every
/// LOGIN client expects byte for byte.
pub const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
pub const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

/// Which mechanism the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// `AUTH <name>`: case-insensitive (the parser upper-cases it already).
    pub fn parse(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// A user name and password from the client (never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Why an exchange ended without credentials to check.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SaslError {
    /// The client answered `*` (RFC 4954 §4): 501.
    #[error("authentication cancelled")]
    Cancelled,
    /// Not base64, or not UTF-8 inside: 501 5.5.2.
    #[error("cannot decode the response")]
    BadEncoding,
    /// PLAIN without the two NULs, or an empty user name.
    #[error("malformed response")]
    Malformed,
    /// PLAIN with an authorization identity other than the user (we do not proxy).
    #[error("authorization identity differs from the user")]
    AuthzDenied,
}

impl SaslError {
    /// The reply for this failure (RFC 4954 §4 and §6).
    pub fn reply(&self) -> Reply {
        match self {
            SaslError::Cancelled => Reply::new(501, (5, 0, 0), "Authentication cancelled"),
            SaslError::BadEncoding => Reply::new(501, (5, 5, 2), "Error: cannot decode response"),
            SaslError::Malformed => Reply::new(501, (5, 5, 2), "Error: malformed authentication response"),
            SaslError::AuthzDenied => Reply::new(535, (5, 7, 8), "Error: authentication credentials invalid"),
        }
    }
}

/// Decode one client response line (without CRLF). `=` is the empty response (RFC 4954 §4).
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    let line = trim_crlf(line);
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    if line == b"=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::BadEncoding)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
pub fn decode_plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = decoded.split(|b| *b == 0);
    let (Some(authz), Some(user), Some(pass), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::BadEncoding);
    let (authz, username, password) = (text(authz)?, text(user)?, text(pass)?);
    if username.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(&username) {
        return Err(SaslError::AuthzDenied);
    }
    Ok(Credentials { username, password })
}

/// A decoded LOGIN answer (user name or password) as text.
pub fn decode_login_field(decoded: &[u8]) -> Result<String, SaslError> {
    String::from_utf8(decoded.to_vec()).map_err(|_| SaslError::BadEncoding)
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}

/// A boxed future, so a throttle can be a trait object.
pub type ThrottleFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Slows password guessing: `before` waits (longer after each failure of this IP or this
/// account), `failed`/`succeeded` report the outcome. The lead binds it to the shared
/// limiter (issue 9); [`MemoryThrottle`] is the simple stand-alone version.
pub trait LoginThrottle: Send + Sync {
    fn before<'a>(&'a self, ip: IpAddr, user: &'a str) -> ThrottleFuture<'a>;
    fn failed(&self, ip: IpAddr, user: &str);
    fn succeeded(&self, ip: IpAddr, user: &str);
}

/// In-memory throttle: the delay before a check is `base * 2^(failures-1)` for the worse
/// of the IP's and the account's recent failures, capped at `max`. Failures are forgotten
/// after `window` without a new one, and a success clears the account and the IP.
pub struct MemoryThrottle {
    base: Duration,
    max: Duration,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Entries kept at most; the oldest are dropped past this (a spray of IPs must not
/// grow memory without bound).
const THROTTLE_MAX_ENTRIES: usize = 100_000;

impl MemoryThrottle {
    pub fn new(base: Duration, max: Duration, window: Duration) -> MemoryThrottle {
        MemoryThrottle { base, max, window, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(ip: IpAddr, user: &str) -> [String; 2] {
        [format!("ip:{ip}"), format!("user:{}", user.trim().to_ascii_lowercase())]
    }

    /// The wait before the next check for this IP and user.
    pub fn delay(&self, ip: IpAddr, user: &str) -> Duration {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let worst = Self::keys(ip, user)
            .iter()
            .filter_map(|k| map.get(k))
            .filter(|(_, at)| now.duration_since(*at) < self.window)
            .map(|(n, _)| *n)
            .max()
            .unwrap_or(0);
        if worst == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(worst.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

impl Default for MemoryThrottle {
    /// 1 s after the first failure, doubling up to 30 s, forgotten after 15 minutes.
    fn default() -> Self {
        MemoryThrottle::new(Duration::from_secs(1), Duration::from_secs(30), Duration::from_secs(900))
    }
}

impl LoginThrottle for MemoryThrottle {
    fn before<'a>(&'a self, ip: IpAddr, user: &'a str) -> ThrottleFuture<'a> {
        let delay = self.delay(ip, user);
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        })
    }

    fn failed(&self, ip: IpAddr, user: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= THROTTLE_MAX_ENTRIES {
            let window = self.window;
            map.retain(|_, (_, at)| now.duration_since(*at) < window);
        }
        for k in Self::keys(ip, user) {
            let e = map.entry(k).or_insert((0, now));
            if now.duration_since(e.1) >= self.window {
                e.0 = 0;
            }
            *e = (e.0.saturating_add(1), now);
        }
    }

    fn succeeded(&self, ip: IpAddr, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in Self::keys(ip, user) {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> Vec<u8> {
        STANDARD.encode(s).into_bytes()
    }

    #[test]
    fn plain_transcripts() {
        let d = decode_response(&b64(b"\0alice@ours.example\0secret")).unwrap_or_default();
        let c = decode_plain(&d);
        assert_eq!(
            c,
            Ok(Credentials { username: "alice@ours.example".into(), password: "secret".into() }),
            "no authzid"
        );
        let d = decode_response(&b64(b"alice@ours.example\0alice@ours.example\0pw")).unwrap_or_default();
        assert!(decode_plain(&d).is_ok(), "authzid equal to the user");
        let d = decode_response(&b64(b"bob@ours.example\0alice@ours.example\0pw")).unwrap_or_default();
        assert_eq!(decode_plain(&d), Err(SaslError::AuthzDenied));
        assert_eq!(decode_plain(b"alice\0pw"), Err(SaslError::Malformed));
        assert_eq!(decode_plain(b"\0\0pw"), Err(SaslError::Malformed));
        assert_eq!(decode_plain(b"\0a\0b\0c"), Err(SaslError::Malformed));
    }

    #[test]
    fn responses() {
        assert_eq!(decode_response(b"*\r\n"), Err(SaslError::Cancelled));
        assert_eq!(decode_response(b"="), Ok(Vec::new()));
        assert_eq!(decode_response(b"!!!"), Err(SaslError::BadEncoding));
        assert_eq!(decode_response(b"YWxpY2U=\r\n"), Ok(b"alice".to_vec()));
        assert_eq!(decode_login_field(&[0xff]), Err(SaslError::BadEncoding));
        assert_eq!(SaslError::Cancelled.reply().code, 501);
        assert_eq!(SaslError::AuthzDenied.reply().code, 535);
        assert_eq!(Mechanism::parse("login"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed & 0xff) as u8
                })
                .collect();
            let _ = decode_response(&bytes);
            let _ = decode_plain(&bytes);
            let _ = decode_login_field(&bytes);
            if let Ok(d) = decode_response(&b64(&bytes)) {
                let _ = decode_plain(&d);
            }
        }
    }

    #[test]
    fn throttle_grows_per_ip_and_per_account_and_resets() {
        let t = MemoryThrottle::new(Duration::from_millis(100), Duration::from_millis(350), Duration::from_secs(60));
        let ip: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        assert_eq!(t.delay(ip, "alice"), Duration::ZERO);
        t.failed(ip, "alice");
        assert_eq!(t.delay(ip, "alice"), Duration::from_millis(100));
        t.failed(ip, "alice");
        assert_eq!(t.delay(ip, "bob"), Duration::from_millis(200), "per IP");
        assert_eq!(t.delay(other, "ALICE"), Duration::from_millis(200), "per account");
        t.failed(ip, "alice");
        t.failed(ip, "alice");
        assert_eq!(t.delay(ip, "alice"), Duration::from_millis(350), "capped");
        t.succeeded(ip, "alice");
        assert_eq!(t.delay(ip, "alice"), Duration::ZERO);
        assert_eq!(t.delay(other, "carol"), Duration::ZERO);
    }
}
