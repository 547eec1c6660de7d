//! RFC 8689 on the sending side: what a message tagged REQUIRETLS demands of its next
//! hop, and the `TLS-Required: No` header field that asks for the opposite.
//!
//! A REQUIRETLS message leaves only to an MX host whose name is validated (by a
//! DNSSEC-secure MX answer, `dane.rs`, or by the domain's MTA-STS policy: a domain with
//! neither cannot receive it), over STARTTLS with a certificate valid for that name (or
//! matching its TLSA records), to a server
//! that advertises REQUIRETLS itself, with REQUIRETLS on MAIL FROM so the next hop keeps
//! the rule. A smarthost counts as validated (the operator named it) but must offer TLS
//! and REQUIRETLS the same way. What cannot be met fails for good with 5.7.30 and the
//! sender gets a DSN of the header section only (RFC 8689 section 5), itself REQUIRETLS.

use super::mta_sts::{Mode, Policy};
use crate::smtp::status::Status;

/// How many bytes of the header section are searched for `TLS-Required`.
const HEADER_SCAN: usize = 64 * 1024;

/// 5.7.30: REQUIRETLS support required (RFC 8689 section 6).
pub(super) fn refused(why: impl Into<String>) -> Status {
    Status::local((5, 7, 30), format!("REQUIRETLS: {}", why.into()))
}

/// Without a DNSSEC-secure MX answer, the MX names a REQUIRETLS message may go to are
/// the ones a policy lists; `Err` when the domain has no policy that validates them.
pub(super) fn validating_policy<'p>(policy: Option<&'p Policy>, domain: &str) -> Result<&'p Policy, Status> {
    match policy {
        Some(p) if matches!(p.mode, Mode::Enforce | Mode::Testing) => Ok(p),
        _ => Err(refused(format!(
            "the MX hosts of {domain} cannot be validated: no MTA-STS policy and no DNSSEC-secure MX answer"
        ))),
    }
}

/// Whether the message's header section says `TLS-Required: No` (RFC 8689 section 5):
/// the sender prefers delivery to the recipient's TLS policy (MTA-STS), so that policy
/// is not enforced for it. Only the first field counts; case does not matter.
pub(super) fn tls_optional(message: &[u8]) -> bool {
    let head = &message[..message.len().min(HEADER_SCAN)];
    let mut lines = head.split(|&b| b == b'\n');
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if line[..colon].trim_ascii().eq_ignore_ascii_case(b"TLS-Required") {
            return line[colon + 1..].trim_ascii().eq_ignore_ascii_case(b"No");
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_field_is_read_from_the_header_section_only() {
        assert!(tls_optional(b"Subject: x\r\nTLS-Required: No\r\n\r\nbody"));
        assert!(tls_optional(b"tls-required:   no  \n\nbody"));
        assert!(!tls_optional(b"TLS-Required: Yes\r\n\r\n"));
        assert!(!tls_optional(b"Subject: x\r\n\r\nTLS-Required: No\r\n"));
        assert!(!tls_optional(b""));
    }

    #[test]
    fn only_a_testing_or_enforcing_policy_validates_the_mx() {
        let policy = |mode| Policy { mode, mx: vec!["mx.example.com".into()], max_age: 86400, id: "1".into() };
        assert!(validating_policy(Some(&policy(Mode::Enforce)), "example.com").is_ok());
        assert!(validating_policy(Some(&policy(Mode::Testing)), "example.com").is_ok());
        let err = validating_policy(Some(&policy(Mode::None)), "example.com").unwrap_err();
        assert_eq!(err.enhanced, Some(crate::smtp::status::Enhanced(5, 7, 30)));
        assert!(validating_policy(None, "example.com").is_err());
    }
}
