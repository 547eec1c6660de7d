//! DKIM keys: generated once per domain, kept as PEM in `dkim/<domain>/` (0600), and
//! rotated without a DNS API.
//!
//! Each generation is a pair — Ed25519 (RFC 8463, small and fast) and RSA-2048 (what
//! every verifier understands) — sharing a selector base such as `mr202611`, published
//! as `mr202611e._domainkey` and `mr202611r._domainkey`. A per-domain `state` file
//! says which generation signs (`active`), which waits for its DNS records
//! (`pending`, made by `mailroom dkim rotate`), and which were retired and when (so
//! the operator can be told when the old records are safe to delete).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::dkim::generate::DkimKeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

use crate::datadir::PRIVATE_FILE_MODE;
use crate::durable::write_atomic;

/// A retired selector's records should stay published this long, so mail signed just
/// before the switch still verifies when it is read or forwarded.
pub const RETIRED_RECORD_GRACE: Duration = Duration::from_secs(7 * 86400);

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("DKIM key directory {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("DKIM key {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot generate a DKIM key: {0}")]
    Generate(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Ed25519,
    Rsa,
}

impl DkimAlgorithm {
    pub const BOTH: [DkimAlgorithm; 2] = [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa];

    /// Letter appended to the selector base.
    fn selector_suffix(self) -> char {
        match self {
            DkimAlgorithm::Ed25519 => 'e',
            DkimAlgorithm::Rsa => 'r',
        }
    }

    fn file_suffix(self) -> &'static str {
        match self {
            DkimAlgorithm::Ed25519 => "ed25519",
            DkimAlgorithm::Rsa => "rsa",
        }
    }

    /// The `k=` tag of the DNS record.
    pub fn dns_key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::Ed25519 => "ed25519",
            DkimAlgorithm::Rsa => "rsa",
        }
    }
}

/// One private key with what is needed to sign and to publish it.
#[derive(Clone)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// PKCS#8 DER (Ed25519) or PKCS#1 DER (RSA).
    pub private_der: Vec<u8>,
    /// Raw public key (Ed25519) or PKCS#1 DER public key (RSA), as published in `p=`.
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DkimKey({}._domainkey.{} {:?})", self.selector, self.domain, self.algorithm)
    }
}

impl DkimKey {
    /// The TXT record value (unsplit): `v=DKIM1; k=ed25519; p=…`.
    pub fn dns_value(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm.dns_key_type(), B64.encode(&self.public_key))
    }

    /// The record name: `<selector>._domainkey.<domain>`.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }
}

/// One generation: the Ed25519 and RSA keys sharing a selector base.
#[derive(Clone, Debug)]
pub struct KeyGeneration {
    pub base: String,
    pub keys: Vec<DkimKey>,
}

/// A domain's keys and rotation state.
#[derive(Clone, Debug)]
pub struct DomainKeys {
    pub domain: String,
    pub active: KeyGeneration,
    pub pending: Option<KeyGeneration>,
    /// `(selector base, retired at)`.
    pub retired: Vec<(String, SystemTime)>,
}

/// Every domain's keys.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    pub domains: Vec<DomainKeys>,
}

impl KeyRing {
    /// Load each domain's keys, generating the first generation where none exist.
    /// `prefix` is `MAILROOM_DKIM_SELECTOR` (default `mr`); selectors are
    /// `<prefix><YYYYMM><e|r>`.
    pub fn load_or_generate(dkim_dir: &Path, domains: &[String], prefix: Option<&str>) -> Result<KeyRing, KeyError> {
        let mut out = Vec::new();
        for domain in domains {
            out.push(load_domain(dkim_dir, domain, prefix, true)?);
        }
        Ok(KeyRing { domains: out })
    }

    /// The keys that sign for `domain` (exact match, or the closest parent domain of ours).
    pub fn signing_keys(&self, domain: &str) -> Option<&DomainKeys> {
        let domain = domain.to_ascii_lowercase();
        self.domains.iter().find(|d| d.domain == domain || domain.ends_with(&format!(".{}", d.domain)))
    }
}

fn domain_dir(dkim_dir: &Path, domain: &str) -> PathBuf {
    dkim_dir.join(domain)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.display().to_string(), source }
}

/// Load one domain; with `generate`, create the first generation if there is none.
pub fn load_domain(
    dkim_dir: &Path,
    domain: &str,
    prefix: Option<&str>,
    generate: bool,
) -> Result<DomainKeys, KeyError> {
    let dir = domain_dir(dkim_dir, domain);
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io_err(&dir))?;
    let state_path = dir.join("state");
    let state = match fs::read_to_string(&state_path) {
        Ok(text) => RotationState::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RotationState::default(),
        Err(e) => return Err(io_err(&state_path)(e)),
    };
    let Some(active_base) = state.active.clone() else {
        if !generate {
            return Err(KeyError::Invalid { path: state_path.display().to_string(), reason: "no keys yet".into() });
        }
        let base = next_base(&dir, prefix.unwrap_or("mr"));
        let generation = generate_generation(&dir, domain, &base)?;
        let state = RotationState { active: Some(base), ..RotationState::default() };
        state.save(&state_path)?;
        tracing::info!(domain, selector = %generation.base, "generated DKIM keys (Ed25519 + RSA-2048)");
        return Ok(DomainKeys { domain: domain.to_string(), active: generation, pending: None, retired: vec![] });
    };
    let active = load_generation(&dir, domain, &active_base)?;
    let pending = match &state.pending {
        Some(b) => Some(load_generation(&dir, domain, b)?),
        None => None,
    };
    Ok(DomainKeys { domain: domain.to_string(), active, pending, retired: state.retired })
}

/// `mailroom dkim rotate`: create the next generation as pending (signing continues
/// with the active one until the new records are seen in DNS).
pub fn rotate(dkim_dir: &Path, domain: &str, prefix: Option<&str>) -> Result<DomainKeys, KeyError> {
    let dir = domain_dir(dkim_dir, domain);
    let mut keys = load_domain(dkim_dir, domain, prefix, true)?;
    let state_path = dir.join("state");
    let mut state = RotationState::parse(&fs::read_to_string(&state_path).unwrap_or_default());
    let base = next_base(&dir, prefix.unwrap_or("mr"));
    let generation = generate_generation(&dir, domain, &base)?;
    state.pending = Some(base);
    state.save(&state_path)?;
    keys.pending = Some(generation);
    Ok(keys)
}

/// Make the pending generation active (its records were found in DNS); the old one is
/// retired now. Returns true when something changed.
pub fn promote_pending(dkim_dir: &Path, domain: &str) -> Result<bool, KeyError> {
    let state_path = domain_dir(dkim_dir, domain).join("state");
    let mut state = RotationState::parse(&fs::read_to_string(&state_path).map_err(io_err(&state_path))?);
    let Some(pending) = state.pending.take() else { return Ok(false) };
    if let Some(old) = state.active.replace(pending) {
        state.retired.push((old, SystemTime::now()));
    }
    state.save(&state_path)?;
    Ok(true)
}

/// The next unused selector base: `<prefix><YYYYMM>`, then `<prefix><YYYYMM>b`, `c`, …
fn next_base(dir: &Path, prefix: &str) -> String {
    let month = chrono::Utc::now().format("%Y%m").to_string();
    let mut base = format!("{prefix}{month}");
    for extra in 'b'..='z' {
        if !key_path(dir, &base, DkimAlgorithm::Ed25519).exists() {
            break;
        }
        base = format!("{prefix}{month}{extra}");
    }
    base
}

fn key_path(dir: &Path, base: &str, alg: DkimAlgorithm) -> PathBuf {
    dir.join(format!("{base}{}.{}.pem", alg.selector_suffix(), alg.file_suffix()))
}

fn generate_generation(dir: &Path, domain: &str, base: &str) -> Result<KeyGeneration, KeyError> {
    let ed = DkimKeyPair::generate_ed25519().map_err(|e| KeyError::Generate(e.to_string()))?;
    let rsa = DkimKeyPair::generate_rsa(2048).map_err(|e| KeyError::Generate(e.to_string()))?;
    let ed_pem = pem("PRIVATE KEY", ed.private_key());
    let rsa_pem = pem("RSA PRIVATE KEY", rsa.private_key());
    for (alg, text) in [(DkimAlgorithm::Ed25519, ed_pem), (DkimAlgorithm::Rsa, rsa_pem)] {
        let path = key_path(dir, base, alg);
        write_atomic(&path, text.as_bytes(), PRIVATE_FILE_MODE).map_err(|e| io_err(&path)(e.into()))?;
    }
    load_generation(dir, domain, base)
}

fn load_generation(dir: &Path, domain: &str, base: &str) -> Result<KeyGeneration, KeyError> {
    let mut keys = Vec::new();
    for alg in DkimAlgorithm::BOTH {
        let path = key_path(dir, base, alg);
        let text = fs::read(&path).map_err(io_err(&path))?;
        let invalid = |reason: String| KeyError::Invalid { path: path.display().to_string(), reason };
        let (private_der, public_key) = match alg {
            DkimAlgorithm::Ed25519 => {
                let der = PrivatePkcs8KeyDer::from_pem_slice(&text).map_err(|e| invalid(e.to_string()))?;
                let der = der.secret_pkcs8_der().to_vec();
                let key =
                    mail_auth::common::crypto::Ed25519Key::from_pkcs8_der(&der).map_err(|e| invalid(e.to_string()))?;
                (der, key.public_key())
            }
            DkimAlgorithm::Rsa => {
                let der = PrivatePkcs1KeyDer::from_pem_slice(&text).map_err(|e| invalid(e.to_string()))?;
                let der = der.secret_pkcs1_der().to_vec();
                let public = rsa_public_from_private(&der).ok_or_else(|| invalid("not an RSA private key".into()))?;
                (der, public)
            }
        };
        keys.push(DkimKey {
            domain: domain.to_string(),
            selector: format!("{base}{}", alg.selector_suffix()),
            algorithm: alg,
            private_der,
            public_key,
        });
    }
    Ok(KeyGeneration { base: base.to_string(), keys })
}

/// The public key of an RSA private key as a SubjectPublicKeyInfo, the form RFC 6376
/// section 3.6.1 and `opendkim-genkey` publish in `p=` (`MIIBIjAN…`).
fn rsa_public_from_private(pkcs1_der: &[u8]) -> Option<Vec<u8>> {
    use rustls_pki_types::PrivateKeyDer;
    let der = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(pkcs1_der.to_vec()));
    let key = mail_auth::common::crypto::RsaKey::<mail_auth::common::crypto::Sha256>::from_key_der(der).ok()?;
    Some(spki_from_pkcs1(&key.public_key()))
}

/// `SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { RSAPublicKey } }`.
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    const ALGORITHM: [u8; 15] =
        [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(pkcs1);
    let mut body = ALGORITHM.to_vec();
    body.push(0x03);
    der_length(&mut body, bit_string.len());
    body.extend_from_slice(&bit_string);
    let mut out = vec![0x30];
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// The per-domain `state` file: `active <base>`, `pending <base>`, `retired <base> <unix>`.
#[derive(Debug, Default, Clone)]
struct RotationState {
    active: Option<String>,
    pending: Option<String>,
    retired: Vec<(String, SystemTime)>,
}

impl RotationState {
    fn parse(text: &str) -> RotationState {
        let mut s = RotationState::default();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("active"), Some(b), _) => s.active = Some(b.to_string()),
                (Some("pending"), Some(b), _) => s.pending = Some(b.to_string()),
                (Some("retired"), Some(b), Some(t)) => {
                    if let Ok(secs) = t.parse::<u64>() {
                        s.retired.push((b.to_string(), SystemTime::UNIX_EPOCH + Duration::from_secs(secs)));
                    }
                }
                _ => {}
            }
        }
        s
    }

    fn save(&self, path: &Path) -> Result<(), KeyError> {
        let mut text = String::from("# DKIM key rotation state (mailroom); see `mailroom dkim rotate`\n");
        if let Some(a) = &self.active {
            let _ = writeln!(text, "active {a}");
        }
        if let Some(p) = &self.pending {
            let _ = writeln!(text, "pending {p}");
        }
        for (b, t) in &self.retired {
            let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let _ = writeln!(text, "retired {b} {secs}");
        }
        write_atomic(path, text.as_bytes(), PRIVATE_FILE_MODE).map_err(|e| io_err(path)(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let domains = vec!["example.com".to_string()];
        let first = KeyRing::load_or_generate(dir.path(), &domains, None).unwrap();
        let again = KeyRing::load_or_generate(dir.path(), &domains, None).unwrap();
        let (a, b) = (&first.domains[0].active, &again.domains[0].active);
        assert_eq!(a.base, b.base);
        assert!(a.base.starts_with("mr20"), "{}", a.base);
        assert_eq!(a.keys[0].public_key, b.keys[0].public_key);
        assert_eq!(a.keys[0].selector, format!("{}e", a.base));
        assert_eq!(a.keys[1].selector, format!("{}r", a.base));
        assert!(a.keys[0].dns_value().starts_with("v=DKIM1; k=ed25519; p="));
        assert!(
            a.keys[1].dns_value().starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
            "{}",
            a.keys[1].dns_value()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(key_path(&dir.path().join("example.com"), &a.base, DkimAlgorithm::Rsa))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotation_is_pending_until_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_domain(dir.path(), "example.com", Some("sel"), true).unwrap();
        let rotated = rotate(dir.path(), "example.com", Some("sel")).unwrap();
        let pending = rotated.pending.clone().unwrap();
        assert_ne!(pending.base, first.active.base);
        assert_eq!(rotated.active.base, first.active.base, "still signing with the old keys");
        assert!(promote_pending(dir.path(), "example.com").unwrap());
        let now = load_domain(dir.path(), "example.com", Some("sel"), false).unwrap();
        assert_eq!(now.active.base, pending.base);
        assert_eq!(now.retired[0].0, first.active.base);
        assert!(!promote_pending(dir.path(), "example.com").unwrap());
    }
}
