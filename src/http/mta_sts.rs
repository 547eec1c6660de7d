//! The MTA-STS policy (RFC 8461) served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! and identified in the `_mta-sts` TXT record by a short hash of its text, so the id
//! changes exactly when the policy does.

use crate::config::Config;

/// The policy text. `enforce` only makes sense with a publicly trusted certificate;
/// until one is configured the policy stays in `testing`.
pub fn policy_text(config: &Config) -> String {
    let mode =
        if config.tls_files.is_some() || config.acme != crate::config::AcmeMode::Off { "enforce" } else { "testing" };
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {}\r\nmax_age: 604800\r\n", config.hostname)
}

/// The `id=` of the `_mta-sts` record: 16 hex digits of the policy's SHA-256.
pub fn policy_id(config: &Config) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, policy_text(config).as_bytes());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
