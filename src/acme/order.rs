//! One ACME order, start to finish (RFC 8555 §7.4): new order for the names, answer
//! each pending authorization with the configured challenge, wait for the CA, then
//! finalize with a fresh key and download the chain.
//!
//! The certificate key is new for every order (rcgen, ECDSA P-256): a renewal never
//! reuses a key that may have leaked with an old backup. The exception is DANE
//! (`MAILROOM_DANE=on`): the published TLSA record is a hash of the key, so the order
//! is given the key in service and signs its CSR with it.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy};

use super::AcmeError;
use super::challenge::{ChallengeGuard, Http01Tokens, tls_alpn_certificate};
use crate::config::AcmeChallenge;
use crate::tls::CertStore;

/// The issued chain and its private key, both PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// How long the CA may take to validate and to sign.
const POLL: RetryPolicy =
    RetryPolicy::new().initial_delay(Duration::from_millis(500)).backoff(1.5).timeout(Duration::from_secs(120));

/// Run one order for `names` on `account`, certifying `key`, else a new one.
pub async fn run_order(
    account: &Account,
    names: &[String],
    challenge: AcmeChallenge,
    key: Option<rcgen::KeyPair>,
    certs: &Arc<CertStore>,
    tokens: &Arc<Http01Tokens>,
) -> Result<Issued, AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut guard = ChallengeGuard::new(certs.clone(), tokens.clone());
    let kind = match challenge {
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        AcmeChallenge::Http01 => ChallengeType::Http01,
    };

    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Still valid from an earlier order (CAs cache authorizations for weeks).
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError::Rejected(format!("authorization is {other:?}"))),
        }
        let mut handle = authz
            .challenge(kind.clone())
            .ok_or_else(|| AcmeError::Rejected(format!("the CA offers no {kind:?} challenge")))?;
        let name = handle.identifier().to_string();
        let key_authorization = handle.key_authorization();
        match challenge {
            AcmeChallenge::TlsAlpn01 => {
                let cert = tls_alpn_certificate(&name, key_authorization.digest().as_ref())?;
                guard.add_tls_alpn(&name, cert);
            }
            AcmeChallenge::Http01 => guard.add_http(&handle.token, key_authorization.as_str()),
        }
        tracing::debug!(name, challenge = ?kind, "challenge answer in place; telling the CA");
        handle.set_ready().await?;
    }

    let status = order.poll_ready(&POLL).await?;
    drop(guard);
    if status != OrderStatus::Ready {
        return Err(AcmeError::Rejected(format!("order is {status:?} after validation")));
    }
    let key_pem = match key {
        None => order.finalize().await?,
        Some(key) => {
            let mut params = rcgen::CertificateParams::new(names.to_vec())?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            let csr = params.serialize_request(&key)?;
            order.finalize_csr(csr.der()).await?;
            key.serialize_pem()
        }
    };
    let chain_pem = order.poll_certificate(&POLL).await?;
    Ok(Issued { chain_pem, key_pem })
}
