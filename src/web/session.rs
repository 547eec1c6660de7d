//! Web sessions: a signed cookie, never a server-side table, so every replica that
//! shares the signing key accepts a session another one issued.
//!
//! The cookie is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, the
//! payload `v2|id|account|issued|seen|epoch` (unix seconds). `account` and `epoch` are
//! empty for the pre-login session the login page hands out (it carries the login
//! form's CSRF token); logging in always mints a new id, so a cookie planted before
//! login is never promoted (session fixation). A session ends 12 hours after login or
//! 2 hours after its last request, whichever is first; logout revokes its id on this
//! replica.
//!
//! The epoch ends every session of an account when its password changes, on every
//! replica, with nothing to share but the credentials record: it is
//! `HMAC(key, "epoch" password-state)` cut to 96 bits, where the password state is an
//! opaque string from the backend that changes with the password (a fingerprint of the
//! current hash). The handler compares it with the state read at each request
//! ([`Sessions::epoch_current`]). Keyed, so the cookie, which the browser can read, says
//! nothing about the password hash, even a `{PLAIN}` one.
//!
//! The CSRF token of a session is `HMAC(key, "csrf" id)`: bound to the session,
//! nothing to store, checked in constant time by `ring::hmac::verify`.
//!
//! The key is 32 random bytes in `<data>/state/web-session.key` (0600), made at first
//! start and mirrored to every replica by the PostgreSQL backend.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::RngCore;
use ring::hmac;

/// The cookie's name. `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub const COOKIE_NAME: &str = "__Host-mailroom";
/// The key file, relative to the data dir (the shared-files mirror names it too).
pub const KEY_FILE: &str = "state/web-session.key";
/// A session's whole life.
pub const ABSOLUTE_LIFETIME: u64 = 12 * 3600;
/// How long a session survives without a request.
pub const IDLE_LIFETIME: u64 = 2 * 3600;
/// The pre-login session: enough to fill in the login form.
pub const LOGIN_FORM_LIFETIME: u64 = 3600;

/// One session as the cookie carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// 128 random bits, hex.
    pub id: String,
    /// The canonical account address; `None` before login.
    pub account: Option<String>,
    pub issued: u64,
    pub seen: u64,
    /// [`Sessions::epoch`] of the account's password state at login; empty before login.
    pub epoch: String,
}

/// Why a cookie is not a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("malformed session cookie")]
    Malformed,
    #[error("session cookie signature does not verify")]
    BadSignature,
    #[error("session expired")]
    Expired,
    #[error("session logged out")]
    Revoked,
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}: expected 32 bytes, base64 (delete the file to make a new key; every session ends)")]
    Bad(String),
}

/// Issues, checks and revokes sessions.
pub struct Sessions {
    key: hmac::Key,
    /// Logged-out ids until their absolute expiry: id -> when it would have expired.
    revoked: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(<key>)")
    }
}

impl Sessions {
    pub fn new(secret: &[u8]) -> Sessions {
        Sessions { key: hmac::Key::new(hmac::HMAC_SHA256, secret), revoked: Mutex::new(HashMap::new()) }
    }

    /// Read `<data>/state/web-session.key`, creating it (32 random bytes, base64, 0600,
    /// durably) on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Sessions, KeyError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .ok()
                    .filter(|r| r.len() == 32)
                    .ok_or_else(|| KeyError::Bad(path.display().to_string()))?;
                Ok(Sessions::new(&raw))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let mut raw = [0u8; 32];
                rand::rng().fill_bytes(&mut raw);
                let text = format!("{}\n", base64::engine::general_purpose::STANDARD.encode(raw));
                crate::durable::write_atomic(&path, text.as_bytes(), crate::datadir::PRIVATE_FILE_MODE)
                    .map_err(|e| io(e.into()))?;
                Ok(Sessions::new(&raw))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A fresh session with a new random id: at the login page (`account` = None) and at
    /// each successful login.
    pub fn issue(&self, account: Option<&str>, now: u64) -> Session {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let id = raw.iter().map(|b| format!("{b:02x}")).collect();
        Session { id, account: account.map(str::to_string), issued: now, seen: now, epoch: String::new() }
    }

    /// The epoch a session of an account whose password state is `state` carries: keyed,
    /// so it reveals nothing about the state, and short, as it rides in every request.
    pub fn epoch(&self, state: &str) -> String {
        let tag = hmac::sign(&self.key, format!("epoch|{state}").as_bytes());
        B64.encode(&tag.as_ref()[..12])
    }

    /// Whether `session` was issued under the password state `state` (the password has
    /// not changed since). Always false for a session without an epoch.
    pub fn epoch_current(&self, session: &Session, state: &str) -> bool {
        !session.epoch.is_empty() && session.epoch == self.epoch(state)
    }

    /// The cookie value of `session`.
    pub fn encode(&self, session: &Session) -> String {
        let payload = format!(
            "v2|{}|{}|{}|{}|{}",
            session.id,
            session.account.as_deref().unwrap_or(""),
            session.issued,
            session.seen,
            session.epoch
        );
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{}.{}", B64.encode(payload.as_bytes()), B64.encode(tag.as_ref()))
    }

    /// The session a cookie value stands for, if it is ours, current and not logged out.
    pub fn verify(&self, cookie: &str, now: u64) -> Result<Session, SessionError> {
        let (payload, tag) = cookie.split_once('.').ok_or(SessionError::Malformed)?;
        let payload = B64.decode(payload).map_err(|_| SessionError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| SessionError::Malformed)?;
        hmac::verify(&self.key, &payload, &tag).map_err(|_| SessionError::BadSignature)?;
        let text = String::from_utf8(payload).map_err(|_| SessionError::Malformed)?;
        let parts: Vec<&str> = text.split('|').collect();
        // A `v1` cookie (before epochs) is refused: it would outlive a password change.
        let [version, id, account, issued, seen, epoch] = parts.as_slice() else {
            return Err(SessionError::Malformed);
        };
        if *version != "v2" {
            return Err(SessionError::Malformed);
        }
        let issued: u64 = issued.parse().map_err(|_| SessionError::Malformed)?;
        let seen: u64 = seen.parse().map_err(|_| SessionError::Malformed)?;
        let account = (!account.is_empty()).then(|| account.to_string());
        let lifetime = if account.is_some() { ABSOLUTE_LIFETIME } else { LOGIN_FORM_LIFETIME };
        let idle = if account.is_some() { IDLE_LIFETIME } else { LOGIN_FORM_LIFETIME };
        if now >= issued.saturating_add(lifetime) || now >= seen.saturating_add(idle) || seen < issued {
            return Err(SessionError::Expired);
        }
        if self.lock().contains_key(*id) {
            return Err(SessionError::Revoked);
        }
        Ok(Session { id: id.to_string(), account, issued, seen, epoch: epoch.to_string() })
    }

    /// Logout: this id is refused from now on (until it would have expired anyway).
    pub fn revoke(&self, session: &Session, now: u64) {
        let mut revoked = self.lock();
        revoked.retain(|_, until| *until > now);
        revoked.insert(session.id.clone(), session.issued.saturating_add(ABSOLUTE_LIFETIME));
    }

    /// The CSRF token every form of `session` carries.
    pub fn csrf_token(&self, session: &Session) -> String {
        B64.encode(hmac::sign(&self.key, format!("csrf|{}", session.id).as_bytes()).as_ref())
    }

    /// Whether `token` is `session`'s CSRF token (constant time).
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        let Ok(tag) = B64.decode(token.trim()) else { return false };
        hmac::verify(&self.key, format!("csrf|{}", session.id).as_bytes(), &tag).is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.revoked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `Set-Cookie` value carrying `value` (the session) for `max_age` seconds; 0 clears it.
pub fn set_cookie(value: &str, max_age: u64) -> String {
    format!("{COOKIE_NAME}={value}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

/// Our cookie's value in a `Cookie` request header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|pair| pair.strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}
