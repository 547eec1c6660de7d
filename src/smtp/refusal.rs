//! Why the server refused a transaction, at MAIL, at RCPT or once the content had
//! arrived: the `reason` label of `mailroom_smtp_transactions_total` and
//! `mailroom_smtp_messages_refused_total`. The check that refuses names its reason as a
//! value beside the reply it builds, so the metrics never read reply text back.

use super::session::{RecipientVerdict, SenderVerdict};
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
    /// Our own trouble: spool, queue or store (a full disk at MAIL too).
    Local,
    /// RCPT to a domain we do not serve, from a client that may not relay.
    Relay,
    /// MAIL's sender domain does not exist, or its lookup failed.
    Sender,
    /// A parameter the session cannot take: non-ASCII addresses without SMTPUTF8,
    /// BODY=BINARYMIME.
    Syntax,
    /// REQUIRETLS on a session without TLS.
    TlsRequired,
    /// More recipients than `MAILROOM_SMTP_MAX_RECIPIENTS` in one transaction.
    TooManyRecipients,
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
            Refusal::Relay => "relay",
            Refusal::Sender => "sender",
            Refusal::Syntax => "syntax",
            Refusal::TlsRequired => "tls_required",
            Refusal::TooManyRecipients => "too_many_recipients",
        }
    }

    /// Why a MAIL with this sender verdict is refused (unused for `Accept`).
    pub fn of_sender(verdict: &SenderVerdict) -> Refusal {
        match verdict {
            SenderVerdict::NotOwned => Refusal::Policy,
            SenderVerdict::Accept | SenderVerdict::UnknownDomain | SenderVerdict::TempFail => Refusal::Sender,
        }
    }

    /// Why a RCPT with this recipient verdict is refused (unused for `Accept`).
    pub fn of_recipient(verdict: &RecipientVerdict) -> Refusal {
        match verdict {
            RecipientVerdict::Unknown => Refusal::UnknownUser,
            RecipientVerdict::RelayDenied => Refusal::Relay,
            RecipientVerdict::OverQuota => Refusal::Quota,
            RecipientVerdict::HourlyLimit => Refusal::RateLimit,
            RecipientVerdict::Accept { .. } | RecipientVerdict::TempFail(_) => Refusal::Local,
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
