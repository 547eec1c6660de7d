//! ARC sealing (RFC 8617) of mail we forward to outside addresses: our seal records
//! what we saw when the message reached us (SPF, DKIM, DMARC, and any earlier ARC
//! chain), so the final receiver can still trust a message whose SPF broke by the
//! forward (SRS fixes the envelope, not DMARC alignment) or whose DKIM broke.
//!
//! We seal with the domain's active RSA key (the selector already published for
//! DKIM): Ed25519 ARC is not understood by the big receivers yet. An incoming chain
//! that does not validate is sealed with `cv=fail`, and one whose last seal already
//! says `cv=fail` is not sealed at all (RFC 8617 section 5.1.2).

use std::net::IpAddr;

use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, Done};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

use super::keys::{DkimAlgorithm, DomainKeys};
use super::sign::SIGNED_HEADERS;
use super::verify::InboundAuthenticator;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no usable RSA key for ARC sealing as {0}: {1}")]
    Key(String, String),
    #[error("the message has no header section to seal")]
    Unparseable,
    #[error("the incoming ARC chain already ends in cv=fail; the message must not be sealed again")]
    ChainFailed,
    #[error("ARC sealing failed: {0}")]
    Seal(String),
}

/// A parsed sealing key for one of our domains.
pub struct ArcSealKey {
    domain: String,
    sealer: ArcSealer<RsaKey<Sha256>, Done>,
}

impl std::fmt::Debug for ArcSealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArcSealKey({})", self.domain)
    }
}

impl ArcSealKey {
    /// The sealer for `keys.domain`, from its active RSA key.
    pub fn new(keys: &DomainKeys) -> Result<ArcSealKey, SealError> {
        let key_err = |e: String| SealError::Key(keys.domain.clone(), e);
        let rsa = keys
            .active
            .keys
            .iter()
            .find(|k| k.algorithm == DkimAlgorithm::Rsa)
            .ok_or_else(|| key_err("the active generation has no RSA key".into()))?;
        let der = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(rsa.private_der.clone()));
        let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| key_err(e.to_string()))?;
        let sealer = ArcSealer::from_key(key)
            .domain(&keys.domain)
            .selector(&rsa.selector)
            .headers(SIGNED_HEADERS.iter().copied().chain(["DKIM-Signature"]))
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(ArcSealKey { domain: keys.domain.clone(), sealer })
    }
}

impl InboundAuthenticator {
    /// The three ARC header fields (`ARC-Seal`, `ARC-Message-Signature`,
    /// `ARC-Authentication-Results`, CRLF-terminated) to prepend to `msg`, which is
    /// the message exactly as it will be forwarded. The results recorded are those
    /// of the original hop (`client_ip`, `helo`, `mail_from` as received), looked
    /// up again here (the resolver caches them).
    pub async fn arc_seal(
        &self,
        key: &ArcSealKey,
        msg: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
        our_hostname: &str,
    ) -> Result<String, SealError> {
        let message = AuthenticatedMessage::parse(msg).ok_or(SealError::Unparseable)?;
        let mail_from = mail_from.filter(|m| !m.is_empty());
        let spf = match mail_from {
            Some(sender) => {
                let params = SpfParameters::verify_mail_from(client_ip, helo, our_hostname, sender);
                self.auth.verify_spf(self.cached(params)).await
            }
            None => self.auth.verify_spf(self.cached(SpfParameters::verify_ehlo(client_ip, helo, our_hostname))).await,
        };
        let mail_from_domain = mail_from.and_then(|m| m.rsplit_once('@')).map_or(helo, |(_, d)| d);
        let dkim = self.auth.verify_dkim(self.cached(&message)).await;
        let arc = self.auth.verify_arc(self.cached(&message)).await;
        if !arc.can_be_sealed() {
            return Err(SealError::ChainFailed);
        }
        let params = DmarcParameters::new(&message, &dkim, mail_from_domain, &spf);
        let dmarc = self.auth.verify_dmarc(self.cached(params)).await;
        let header_from = message.from.first().map(String::as_str).unwrap_or("");
        let results = AuthenticationResults::new(our_hostname)
            .with_dkim_results(&dkim, header_from)
            .with_spf_mailfrom_result(&spf, client_ip, mail_from.unwrap_or(""), helo)
            .with_arc_result(&arc, client_ip)
            .with_dmarc_result(&dmarc);
        let set = key.sealer.seal(&message, &results, &arc).map_err(|e| SealError::Seal(e.to_string()))?;
        Ok(set.to_header())
    }
}

#[cfg(test)]
#[path = "arc_tests.rs"]
mod tests;
