//! The MTA-STS policy (RFC 8461) served at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
//!
//! Sending MTAs that find our `_mta-sts` TXT record fetch this file and then refuse
//! to deliver to us without a valid certificate for an `mx:` host. So `enforce` is
//! only announced while a real (ACME or operator-supplied) certificate serves; with
//! the self-signed fallback we say `testing`, which makes senders report instead of
//! refuse. The `id` in the TXT record must change whenever the policy text does
//! (§3.1), hence [`policy_id`] hashes the text.

use crate::tls::{CertSource, CertStore};

/// One week, in seconds: long enough to protect against a downgrade between
/// fetches, short enough to recover from a mistake (RFC 8461 §3.2 suggests weeks).
pub const MAX_AGE_SECS: u64 = 604_800;

/// The policy mode (RFC 8461 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StsMode {
    Enforce,
    Testing,
}

impl StsMode {
    pub fn name(self) -> &'static str {
        match self {
            StsMode::Enforce => "enforce",
            StsMode::Testing => "testing",
        }
    }

    /// `enforce` only while a certificate senders will accept is being served.
    pub fn for_store(certs: &CertStore) -> StsMode {
        match certs.default_cert().map(|c| c.source) {
            Some(CertSource::Acme) | Some(CertSource::Files) => StsMode::Enforce,
            _ => StsMode::Testing,
        }
    }
}

/// The policy text: CRLF-separated `key: value` lines (RFC 8461 §3.2), one `mx`
/// line per MX host (ours is the hostname).
pub fn policy_text(mx_hosts: &[&str], mode: StsMode) -> String {
    let mut text = format!("version: STSv1\r\nmode: {}\r\n", mode.name());
    for mx in mx_hosts {
        text.push_str(&format!("mx: {mx}\r\n"));
    }
    text.push_str(&format!("max_age: {MAX_AGE_SECS}\r\n"));
    text
}

/// The policy id for the `_mta-sts` TXT record (`v=STSv1; id=<this>`): 16 hex
/// digits of the text's SHA-256, so it changes exactly when the text changes
/// (RFC 8461 §3.1 allows 1-32 alphanumerics).
pub fn policy_id(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_reads_as_rfc_8461_section_3_2() {
        let text = policy_text(&["mx.example.com"], StsMode::Enforce);
        assert_eq!(text, "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 604800\r\n");
    }

    #[test]
    fn id_changes_with_the_mode_and_fits_the_txt_grammar() {
        let enforce = policy_id(&policy_text(&["mx.example.com"], StsMode::Enforce));
        let testing = policy_id(&policy_text(&["mx.example.com"], StsMode::Testing));
        assert_ne!(enforce, testing);
        assert_eq!(enforce.len(), 16);
        assert!(enforce.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(enforce, policy_id(&policy_text(&["mx.example.com"], StsMode::Enforce)));
    }

    #[test]
    fn self_signed_means_testing() {
        let certs = CertStore::new();
        assert_eq!(StsMode::for_store(&certs), StsMode::Testing);
        let dir = tempfile::tempdir().unwrap();
        certs.set_default(crate::tls::load_or_create_self_signed(dir.path(), "mx.example.com").unwrap());
        assert_eq!(StsMode::for_store(&certs), StsMode::Testing);
    }
}
