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

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use super::status::Status;

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

    /// The `mechanism` label of `mailroom_auth_attempts_total`.
    pub fn metric(self) -> crate::net::AuthMechanism {
        match self {
            Mechanism::Plain => crate::net::AuthMechanism::Plain,
            Mechanism::Login => crate::net::AuthMechanism::Login,
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
    pub fn reply(&self) -> Status {
        match self {
            SaslError::Cancelled => Status::new(501, (5, 0, 0), "Authentication cancelled"),
            SaslError::BadEncoding => Status::new(501, (5, 5, 2), "Error: cannot decode response"),
            SaslError::Malformed => Status::new(501, (5, 5, 2), "Error: malformed authentication response"),
            SaslError::AuthzDenied => Status::new(535, (5, 7, 8), "Error: authentication credentials invalid"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::status::Code;

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
        assert_eq!(SaslError::Cancelled.reply().code, Code::Reply(501));
        assert_eq!(SaslError::AuthzDenied.reply().code, Code::Reply(535));
        assert_eq!(Mechanism::parse("login"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len).map(|_| (crate::testing::xorshift(&mut seed) & 0xff) as u8).collect();
            let _ = decode_response(&bytes);
            let _ = decode_plain(&bytes);
            let _ = decode_login_field(&bytes);
            if let Ok(d) = decode_response(&b64(&bytes)) {
                let _ = decode_plain(&d);
            }
        }
    }
}
