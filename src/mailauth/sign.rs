//! DKIM signing of outgoing mail: every message from one of our domains gets two
//! signatures, Ed25519 and RSA-SHA256 (RFC 8463 recommends both during the long
//! transition), relaxed/relaxed canonicalisation, over the headers that identify and
//! describe a message. `From` is listed twice (oversigned) so nobody can add a second
//! `From` after signing without breaking the signature (RFC 6376 section 8.15).

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

use super::keys::{DkimAlgorithm, DomainKeys};

/// Headers covered by our signatures. Absent ones are skipped by the signer.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Sender",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Ready-to-use signers for one domain's active key generation (parsed once).
pub struct DomainSigner {
    pub domain: String,
    ed25519: DkimSigner<Ed25519Key, Done>,
    rsa: DkimSigner<RsaKey<Sha256>, Done>,
}

impl std::fmt::Debug for DomainSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DomainSigner({})", self.domain)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("DKIM key for {0} cannot be used: {1}")]
    Key(String, String),
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

impl DomainSigner {
    pub fn new(keys: &DomainKeys) -> Result<DomainSigner, SignError> {
        let key_err = |e: mail_auth::Error| SignError::Key(keys.domain.clone(), e.to_string());
        let mut ed = None;
        let mut rsa = None;
        for key in &keys.active.keys {
            match key.algorithm {
                DkimAlgorithm::Ed25519 => {
                    let k = Ed25519Key::from_pkcs8_der(&key.private_der).map_err(key_err)?;
                    ed = Some(configure(DkimSigner::from_key(k).domain(&keys.domain).selector(&key.selector)));
                }
                DkimAlgorithm::Rsa => {
                    let der = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(key.private_der.clone()));
                    let k = RsaKey::<Sha256>::from_key_der(der).map_err(key_err)?;
                    rsa = Some(configure(DkimSigner::from_key(k).domain(&keys.domain).selector(&key.selector)));
                }
            }
        }
        match (ed, rsa) {
            (Some(ed25519), Some(rsa)) => Ok(DomainSigner { domain: keys.domain.clone(), ed25519, rsa }),
            _ => Err(SignError::Key(keys.domain.clone(), "the active generation lacks a key".into())),
        }
    }

    /// The two `DKIM-Signature:` header fields (CRLF-terminated) to prepend to the
    /// message made of `parts` in order (e.g. added headers, then the message as
    /// received), signed without joining them into one buffer.
    pub fn sign(&self, parts: &[&[u8]]) -> Result<String, SignError> {
        let ed = self.ed25519.sign_chained(parts.iter().copied()).map_err(|e| SignError::Sign(e.to_string()))?;
        let rsa = self.rsa.sign_chained(parts.iter().copied()).map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(format!("{}{}", unfold_before_last_semicolon(ed.to_header()), unfold_before_last_semicolon(rsa.to_header())))
    }
}

/// mail-auth 0.13 may fold the header between the `b=` value and its final `;`
/// (`b=…==\r\n\t;`), but it signed the unfolded `b=;`. Under relaxed canonicalisation
/// a verifier then sees `b= ;` and the signature fails (python `dkim` and others).
/// Keep the `;` on the value's line, which is what was signed.
fn unfold_before_last_semicolon(header: String) -> String {
    match header.strip_suffix("\r\n\t;\r\n") {
        Some(head) => format!("{head};\r\n"),
        None => header,
    }
}

fn configure<T: mail_auth::common::crypto::SigningKey>(
    signer: DkimSigner<T, mail_auth::dkim::NeedHeaders>,
) -> DkimSigner<T, Done> {
    signer
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailauth::keys::KeyRing;

    #[test]
    fn signs_with_both_algorithms() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_generate(dir.path(), &["example.com".to_string()], None).unwrap();
        let signer = DomainSigner::new(&ring.domains[0]).unwrap();
        let msg = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
        let headers = signer.sign(&[msg]).unwrap();
        assert_eq!(headers.matches("DKIM-Signature:").count(), 2, "{headers}");
        assert!(headers.contains("a=ed25519-sha256"), "{headers}");
        assert!(headers.contains("a=rsa-sha256"), "{headers}");
        assert!(headers.contains("c=relaxed/relaxed"), "{headers}");
        assert!(headers.contains("d=example.com"), "{headers}");
        assert!(headers.ends_with("\r\n"));
        assert!(!headers.contains("\t;"), "{headers}");
    }
}
