//! Password hashes from `MAILROOM_ACCOUNTS`: recognising the scheme, verifying a login,
//! and making new argon2id hashes for `mailroom hash-password`.
//!
//! Schemes are the ones operators bring from other servers: argon2 PHC strings (what we
//! generate), `$6$` SHA512-CRYPT (Dovecot's and `mkpasswd`'s usual choice), bcrypt
//! (`htpasswd -B`, `$2b$`/`$2y$`/`$2a$`) and `{PLAIN}` (Dovecot's spelling, for tests and
//! first steps; the server warns about it at start).
//!
//! Secrets never leave this file in text: `Debug` prints only the scheme, and errors name
//! the problem, not the string.

use std::fmt;
use std::str::FromStr;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Longest password we will hash. SHA-crypt's cost grows with the password length times
/// the rounds, so an unbounded password is a CPU denial of service (the same bug as
/// Django's CVE-2013-1443); 1 KiB is far beyond any real passphrase.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A stored password hash; the string is the full hash as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$argon2id$…`, `$argon2i$…`, `$argon2d$…` (PHC string format).
    Argon2(String),
    /// `$6$[rounds=N$]salt$hash` (SHA512-CRYPT).
    ShaCrypt512(String),
    /// `$2b$`, `$2y$`, `$2a$` bcrypt.
    Bcrypt(String),
    /// `{PLAIN}secret`: holds the secret itself (without the prefix).
    Plain(String),
}

/// Why a new hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password is longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

impl PasswordHash {
    /// Recognise and syntax-check a configured hash, so that a typo fails at start-up
    /// instead of at the first login. The error never contains the input.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        if let Some(secret) = s.strip_prefix("{PLAIN}") {
            if secret.is_empty() {
                return Err("{PLAIN} password is empty".to_string());
            }
            return Ok(PasswordHash::Plain(secret.to_string()));
        }
        if ["$argon2id$", "$argon2i$", "$argon2d$"].iter().any(|p| s.starts_with(p)) {
            return match argon2::PasswordHash::new(s) {
                Ok(phc) if phc.salt.is_some() && phc.hash.is_some() => Ok(PasswordHash::Argon2(s.to_string())),
                _ => Err("argon2 hash is malformed".to_string()),
            };
        }
        if s.starts_with("$6$") {
            return if is_sha512_crypt(s) && sha_crypt::PasswordHashRef::new(s).is_ok() {
                Ok(PasswordHash::ShaCrypt512(s.to_string()))
            } else {
                Err("SHA512-CRYPT hash is malformed".to_string())
            };
        }
        if ["$2b$", "$2y$", "$2a$"].iter().any(|p| s.starts_with(p)) {
            return match bcrypt::HashParts::from_str(s) {
                Ok(_) => Ok(PasswordHash::Bcrypt(s.to_string())),
                Err(_) => Err("bcrypt hash is malformed".to_string()),
            };
        }
        Err("hash scheme not recognised (expected $argon2id$…, $6$…, $2b$… or {PLAIN}…)".to_string())
    }

    /// Check a login password. Slow on purpose for the real schemes (that is their point):
    /// call it off the async executor (`spawn_blocking`).
    pub fn verify(&self, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match self {
            PasswordHash::Argon2(h) => Argon2::default().verify_password(password.as_bytes(), h.as_str()).is_ok(),
            PasswordHash::ShaCrypt512(h) => {
                sha_crypt::ShaCrypt::default().verify_password(password.as_bytes(), h.as_str()).is_ok()
            }
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Plain(secret) => constant_time_eq(secret.as_bytes(), password.as_bytes()),
        }
    }

    /// A fingerprint of the configured string (SHA-256, hex): what a user's password
    /// override remembers of the `MAILROOM_ACCOUNTS` entry it replaced, to notice when the
    /// operator changes that entry. A real hash gives away nothing new; for `{PLAIN}` it is
    /// an unsalted digest of the password, one more reason `{PLAIN}` is for tests only.
    pub fn fingerprint(&self) -> String {
        let configured = match self {
            PasswordHash::Argon2(h) | PasswordHash::ShaCrypt512(h) | PasswordHash::Bcrypt(h) => h.clone(),
            PasswordHash::Plain(secret) => format!("{{PLAIN}}{secret}"),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, configured.as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `{PLAIN}` hashes are accepted but warned about at start.
    pub fn is_plain(&self) -> bool {
        matches!(self, PasswordHash::Plain(_))
    }

    /// Scheme name for logs and `check-config` (never the hash itself).
    pub fn scheme(&self) -> &'static str {
        match self {
            PasswordHash::Argon2(_) => "argon2",
            PasswordHash::ShaCrypt512(_) => "sha512-crypt",
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::Plain(_) => "plain",
        }
    }
}

/// `$6$[rounds=N$]salt$hash` with a 1..=16 character salt and an 86-character crypt-base64
/// hash (64 bytes). The crate only finds a truncated hash at the first login; we want it
/// at start-up.
fn is_sha512_crypt(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("$6$") else {
        return false;
    };
    let fields: Vec<&str> = rest.split('$').collect();
    let (salt, hash) = match fields.as_slice() {
        [rounds, salt, hash] => {
            let ok_rounds =
                rounds.strip_prefix("rounds=").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok_rounds {
                return false;
            }
            (salt, hash)
        }
        [salt, hash] => (salt, hash),
        _ => return false,
    };
    let crypt64 = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'/';
    (1..=16).contains(&salt.len()) && !salt.contains([':', '\n', '\r']) && hash.len() == 86 && hash.bytes().all(crypt64)
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({}, <redacted>)", self.scheme())
    }
}

/// Compare without an early exit, so response timing does not reveal how many leading
/// bytes of a `{PLAIN}` secret a guess got right. Both sides are first reduced to SHA-256
/// digests so that the length of the secret does not leak either.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a);
    let db = ring::digest::digest(&ring::digest::SHA256, b);
    let diff = da.as_ref().iter().zip(db.as_ref()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0
}

/// A new argon2id PHC hash with the crate's default parameters (m=19456 KiB, t=2, p=1,
/// the OWASP recommendation) and a random 16-byte salt.
pub fn try_hash_password(password: &str) -> Result<String, HashError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(HashError::TooLong);
    }
    let salt: [u8; 16] = rand::random();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// [`try_hash_password`] for callers that have already bounded the password: the only
/// failure left is a password over [`MAX_PASSWORD_LEN`], which yields an empty string
/// (which [`PasswordHash::parse`] rejects, so it can never become a valid login).
pub fn hash_password(password: &str) -> String {
    try_hash_password(password).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors made outside Rust: argon2 by Python's argon2-cffi (reference C
    /// implementation, low cost so debug builds stay fast), SHA512-CRYPT and bcrypt by
    /// glibc/libxcrypt `crypt(3)` via Python, `$6$` also matching `openssl passwd -6`.
    const VECTORS: &[(&str, &str, &str)] = &[
        (
            "argon2",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$/W8LPvoaai7U3XREtgKuI78eDZLHrsDSFj5hpFvetZc",
            "hunter2",
        ),
        (
            "argon2",
            "$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$y4l6c3cziOX5WjL6GsBr1XgbFR3fBN0LUZc6rHCYQ6M",
            "hunter2",
        ),
        (
            "argon2",
            "$argon2d$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$luAdFQN/ShIHl+N716sE0Qsgb53KzTD2EH+88JubCz0",
            "hunter2",
        ),
        (
            "argon2",
            "$argon2id$v=19$m=256,t=2,p=2$bWFpbHJvb21zYWx0MTIzNA$DZeVpJmn4FpSs5AE5c8SMTJqso0v6xKuXCPyvJmJqjM",
            "correct horse",
        ),
        (
            "sha512-crypt",
            "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.",
            "hunter2",
        ),
        (
            "sha512-crypt",
            "$6$rounds=5000$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.",
            "hunter2",
        ),
        (
            "sha512-crypt",
            "$6$xyz$D5ixV9s/CA7oxoVsr7Rf11zE2gWqjUEyof1rLo3pnAx/SR6FlNMNXGtf9t4IKNAhZFzWM/1jRymOlyZ2daD71/",
            "p,a:ss",
        ),
        ("bcrypt", "$2b$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm", "hunter2"),
        ("bcrypt", "$2y$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm", "hunter2"),
        ("bcrypt", "$2a$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm", "hunter2"),
        ("plain", "{PLAIN}hunter2", "hunter2"),
        ("plain", "{PLAIN}with:colon,and$dollar", "with:colon,and$dollar"),
    ];

    #[test]
    fn known_answers_verify_and_wrong_passwords_do_not() {
        for (scheme, hash, password) in VECTORS {
            let parsed = PasswordHash::parse(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
            assert_eq!(parsed.scheme(), *scheme, "{hash}");
            assert!(parsed.verify(password), "{hash} should accept {password:?}");
            assert!(!parsed.verify("hunter3"), "{hash} accepted a wrong password");
            assert!(!parsed.verify(""), "{hash} accepted the empty password");
        }
    }

    #[test]
    fn unknown_or_broken_hashes_are_refused_without_echoing_them() {
        for bad in [
            "hunter2",
            "",
            "$1$md5crypt$abc",
            "$5$sha256$abc",
            "{SSHA}abc",
            "{PLAIN}",
            "$argon2id$v=19$m=64,t=1,p=1",
            "$argon2id$garbage",
            "$6$",
            "$6$salt$",
            "$6$rounds=5000$saltsalt",
            "$6$saltsalt$short",
            "$6$a$b$c",
            "$6$rounds=x$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.",
            "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj",
            "$2b$04$tooshort",
            "$2x$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm",
        ] {
            match PasswordHash::parse(bad) {
                Ok(h) => panic!("{bad:?} parsed as {h:?}"),
                Err(msg) => {
                    if !bad.is_empty() && bad.len() > 8 {
                        assert!(!msg.contains(bad), "error {msg:?} echoes the hash");
                    }
                }
            }
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let h = PasswordHash::parse("{PLAIN}topsecret").unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{h:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert_eq!(shown, "PasswordHash(plain, <redacted>)");
        assert!(h.is_plain());
    }

    #[test]
    fn overlong_passwords_are_refused_before_hashing() {
        let h = PasswordHash::parse("{PLAIN}x").unwrap_or_else(|e| panic!("{e}"));
        assert!(!h.verify(&"x".repeat(MAX_PASSWORD_LEN + 1)));
        assert!(try_hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        assert_eq!(hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)), "");
    }

    #[test]
    fn new_hashes_are_argon2id_default_params_and_round_trip() {
        let a = hash_password("s3cret");
        let b = hash_password("s3cret");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salt must be random");
        let parsed = PasswordHash::parse(&a).unwrap_or_else(|e| panic!("{e}"));
        assert!(parsed.verify("s3cret"));
        assert!(!parsed.verify("s3creT"));
    }

    #[test]
    fn plain_compare_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn garbage_in_never_panics() {
        let mut seed: u64 = 0xDEAD_BEEF_CAFE_F00D;
        let alphabet: Vec<char> = "$26abyi{}PLAIN=,m.t/p+0123456789argon2idvxyz".chars().collect();
        let prefixes = ["$argon2id$", "$6$", "$2b$04$", "{PLAIN}", "$6$rounds=", ""];
        for _ in 0..5_000 {
            let len = (crate::testing::xorshift(&mut seed) % 70) as usize;
            let tail: String =
                (0..len).map(|i| alphabet[(seed.rotate_left(i as u32 * 3) % alphabet.len() as u64) as usize]).collect();
            let s = format!("{}{tail}", prefixes[(seed % prefixes.len() as u64) as usize]);
            if let Ok(h) = PasswordHash::parse(&s) {
                // Only verify cheap schemes: random argon2/bcrypt/sha-crypt params may ask
                // for absurd costs, which is the operator's choice, not an input attack.
                if h.is_plain() {
                    let _ = h.verify("x");
                }
            }
        }
    }
}
