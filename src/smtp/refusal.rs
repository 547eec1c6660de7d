//! Why the server refused a message once its content had arrived: the `reason` label of
//! `mailroom_smtp_messages_refused_total`. The check that refuses names its reason as a
//! value beside the reply it builds, so the metric never reads reply text back.

use super::status::{Enhanced, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over the size limit (the client ignored or did not use SIZE).
    Size,
    /// The author domain's DMARC policy rejects it, or DMARC could not be checked.
    Dmarc,
    /// Our header rules: forged authors inbound, sender headers on submission.
    Policy,
    Virus,
    Spam,
    /// A content scanner could not be reached and the configuration says to defer.
    Scanner,
    /// A submission account over its hourly message limit.
    RateLimit,
    /// Submission without authentication.
    Auth,
    /// A mailbox over its quota at delivery.
    Quota,
    /// The mailbox no longer exists at delivery.
    UnknownUser,
    /// Our own trouble: spool, queue or store.
    Local,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Size => "size",
            Refusal::Dmarc => "dmarc",
            Refusal::Policy => "policy",
            Refusal::Virus => "virus",
            Refusal::Spam => "spam",
            Refusal::Scanner => "scanner",
            Refusal::RateLimit => "rate_limit",
            Refusal::Auth => "auth",
            Refusal::Quota => "quota",
            Refusal::UnknownUser => "unknown_user",
            Refusal::Local => "local",
        }
    }

    /// The reason of a refusal by local delivery, which no check named: what its
    /// enhanced status code says (RFC 3463: X.2.2 mailbox full, X.1.1 no such mailbox,
    /// X.7.x security or policy).
    pub fn of_delivery(status: &Status) -> Refusal {
        match status.enhanced {
            Some(Enhanced(_, 2, 2)) => Refusal::Quota,
            Some(Enhanced(_, 1, 1)) => Refusal::UnknownUser,
            Some(Enhanced(_, 7, _)) => Refusal::Policy,
            _ => Refusal::Local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_refusals_are_named_by_their_enhanced_code() {
        let status = |e: (u8, u16, u16)| Status::new(450, e, "x");
        assert_eq!(Refusal::of_delivery(&status((4, 2, 2))), Refusal::Quota);
        assert_eq!(Refusal::of_delivery(&status((5, 2, 2))), Refusal::Quota);
        assert_eq!(Refusal::of_delivery(&status((5, 1, 1))), Refusal::UnknownUser);
        assert_eq!(Refusal::of_delivery(&status((5, 7, 1))), Refusal::Policy);
        assert_eq!(Refusal::of_delivery(&status((4, 3, 0))), Refusal::Local);
    }
}
