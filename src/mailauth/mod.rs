//! Mail authentication, both directions:
//! - outgoing: DKIM keys (`keys.rs`, generated here and only here; `dns/` reads them
//!   to print and check the records) and signing (`sign.rs`, [`Signers::sign`]);
//! - incoming: SPF/DKIM/ARC/DMARC verification and the one Authentication-Results
//!   header (`verify.rs`, [`InboundAuthenticator::verify`], called at end of DATA);
//! - forwarding to outside addresses: SRS rewriting of the envelope sender
//!   (`srs.rs`, [`Srs`]) and ARC sealing (`arc.rs`, [`InboundAuthenticator::arc_seal`]).
//!
//! Content scanning (spam, viruses, DNSBLs) is not authentication: it lives in `scan/`.

pub mod arc;
pub mod keys;
pub mod sign;
pub mod srs;
mod txt_cache;
pub mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use arc::{ArcSealKey, SealError};
pub use keys::{DkimAlgorithm, DkimKey, DomainKeys, KeyError, KeyRing};
pub use sign::{DomainSigner, SignError};
pub use srs::{Srs, SrsError};
pub use verify::{AuthDeferral, AuthRefusal, AuthVerdict, Disposition, InboundAuthenticator, strip_our_auth_results};

/// The signers of every domain, swapped as a whole when a rotation is promoted.
pub struct Signers {
    dkim_dir: PathBuf,
    domains: Vec<String>,
    prefix: Option<String>,
    current: RwLock<Arc<HashMap<String, DomainSigner>>>,
}

impl Signers {
    /// Load (or generate) every domain's keys and build their signers.
    pub fn load(dkim_dir: &Path, domains: &[String], prefix: Option<&str>) -> Result<Signers, KeyError> {
        let ring = KeyRing::load_or_generate(dkim_dir, domains, prefix)?;
        Ok(Signers::from_ring(dkim_dir, domains, prefix, &ring))
    }

    /// Signers for a ring the caller has loaded (the server loads it once, for the
    /// signers, the ARC key and the records it logs); `reload` re-reads `dkim_dir`.
    pub fn from_ring(dkim_dir: &Path, domains: &[String], prefix: Option<&str>, ring: &KeyRing) -> Signers {
        let signers = Signers {
            dkim_dir: dkim_dir.to_path_buf(),
            domains: domains.to_vec(),
            prefix: prefix.map(str::to_string),
            current: RwLock::new(Arc::new(HashMap::new())),
        };
        signers.install(ring);
        signers
    }

    /// Re-read the key ring (after `dkim rotate` + a DNS check promoted new keys).
    pub fn reload(&self) -> Result<(), KeyError> {
        let ring = KeyRing::load_or_generate(&self.dkim_dir, &self.domains, self.prefix.as_deref())?;
        self.install(&ring);
        Ok(())
    }

    fn install(&self, ring: &KeyRing) {
        let mut map = HashMap::new();
        for keys in &ring.domains {
            match DomainSigner::new(keys) {
                Ok(s) => {
                    map.insert(keys.domain.clone(), s);
                }
                Err(e) => tracing::error!(domain = %keys.domain, error = %e, "DKIM signing disabled for this domain"),
            }
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
    }

    /// The DKIM-Signature headers for a message whose From domain is `domain`, or
    /// `None` when the domain is not ours (we never sign for others).
    pub fn sign(&self, domain: &str, parts: &[&[u8]]) -> Option<Result<String, SignError>> {
        let map = self.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        let domain = domain.to_ascii_lowercase();
        let signer = map
            .get(&domain)
            .or_else(|| map.iter().find(|(d, _)| domain.ends_with(&format!(".{d}"))).map(|(_, s)| s))?;
        Some(signer.sign(parts))
    }
}
