//! One count per SMTP transaction in `mailroom_smtp_transactions_total{service, outcome,
//! reason}`, whichever command ended it: a MAIL refused at once, recipients all refused
//! and the client giving up, the content refused or accepted, or a transaction the client
//! reset or dropped. The session's typed [`Refusal`]s name the reason; the connection
//! reports each step here and this sans-IO meter decides when a transaction is over.

use super::refusal::Refusal;
use crate::metrics::metrics;

/// How a transaction ended (the `outcome` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The content was accepted for at least one recipient.
    Accepted,
    /// Refused at MAIL, at every RCPT, or once the content arrived.
    Refused(Refusal),
    /// Reset, quit or dropped by the client after at least one recipient was accepted
    /// (or before any RCPT), without content.
    Abandoned,
}

impl Outcome {
    fn labels(self) -> [&'static str; 2] {
        match self {
            Outcome::Accepted => ["accepted", "none"],
            Outcome::Refused(reason) => ["refused", reason.label()],
            Outcome::Abandoned => ["abandoned", "none"],
        }
    }
}

/// The transaction of one connection, as far as the metric needs it.
#[derive(Debug)]
pub struct TransactionMeter {
    service: &'static str,
    open: Option<Open>,
}

#[derive(Debug, Default)]
struct Open {
    any_recipient: bool,
    /// The last RCPT refusal, the transaction's reason if no recipient is accepted.
    refused_recipient: Option<Refusal>,
}

impl TransactionMeter {
    pub fn new(service: &'static str) -> TransactionMeter {
        TransactionMeter { service, open: None }
    }

    /// MAIL was answered: accepted opens a transaction; refused with a reason is a whole
    /// transaction refused. A refusal without reason (a MAIL out of sequence) is a protocol
    /// error, not a transaction.
    pub fn mail(&mut self, accepted: bool, refusal: Option<Refusal>) {
        if accepted {
            self.end_of_transaction();
            self.open = Some(Open::default());
        } else if let (Some(reason), None) = (refusal, &self.open) {
            self.count(Outcome::Refused(reason));
        }
    }

    /// RCPT was answered.
    pub fn rcpt(&mut self, accepted: bool, refusal: Option<Refusal>) {
        if let Some(open) = &mut self.open {
            open.any_recipient |= accepted;
            if !accepted && refusal.is_some() {
                open.refused_recipient = refusal;
            }
        }
    }

    /// The final reply to the content (DATA, or the last BDAT) was sent.
    pub fn message(&mut self, outcome: Result<(), Refusal>) {
        if self.open.take().is_some() {
            self.count(outcome.map_or_else(Outcome::Refused, |()| Outcome::Accepted));
        }
    }

    /// After every command: `false` once the session has no transaction (RSET, a new
    /// EHLO, STARTTLS, a refused DATA) ends the one we knew of.
    pub fn still_open(&mut self, in_transaction: bool) {
        if !in_transaction {
            self.end_of_transaction();
        }
    }

    fn end_of_transaction(&mut self) {
        if let Some(open) = self.open.take() {
            let outcome = match open.refused_recipient {
                Some(reason) if !open.any_recipient => Outcome::Refused(reason),
                _ => Outcome::Abandoned,
            };
            self.count(outcome);
        }
    }

    fn count(&self, outcome: Outcome) {
        let [outcome, reason] = outcome.labels();
        metrics().smtp_transactions_total.with_label_values(&[self.service, outcome, reason]).inc();
    }
}

/// QUIT, EOF, a timeout or an error: a transaction still open ends with the connection.
impl Drop for TransactionMeter {
    fn drop(&mut self) {
        self.end_of_transaction();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(service: &str, outcome: &str, reason: &str) -> u64 {
        metrics().smtp_transactions_total.with_label_values(&[service, outcome, reason]).get()
    }

    #[test]
    fn refused_at_mail_counts_once_with_its_reason() {
        let mut meter = TransactionMeter::new("t_mail");
        meter.mail(false, Some(Refusal::Auth));
        meter.mail(false, None);
        drop(meter);
        assert_eq!(count("t_mail", "refused", "auth"), 1);
        assert_eq!(count("t_mail", "abandoned", "none"), 0);
    }

    #[test]
    fn every_recipient_refused_is_refused_by_the_last_reason_when_the_client_gives_up() {
        let mut meter = TransactionMeter::new("t_rcpt");
        meter.mail(true, None);
        meter.rcpt(false, Some(Refusal::Relay));
        meter.rcpt(false, Some(Refusal::UnknownUser));
        meter.still_open(true);
        meter.still_open(false);
        assert_eq!(count("t_rcpt", "refused", "unknown_user"), 1);
        // A second transaction on the connection, one good recipient, content accepted.
        meter.mail(true, None);
        meter.rcpt(false, Some(Refusal::UnknownUser));
        meter.rcpt(true, None);
        meter.message(Ok(()));
        drop(meter);
        assert_eq!(count("t_rcpt", "accepted", "none"), 1);
        assert_eq!(count("t_rcpt", "refused", "unknown_user"), 1);
    }

    #[test]
    fn content_refusals_and_dropped_transactions() {
        let mut meter = TransactionMeter::new("t_data");
        meter.mail(true, None);
        meter.rcpt(true, None);
        meter.message(Err(Refusal::Virus));
        meter.message(Err(Refusal::Virus));
        assert_eq!(count("t_data", "refused", "virus"), 1);
        meter.mail(true, None);
        meter.rcpt(true, None);
        drop(meter);
        assert_eq!(count("t_data", "abandoned", "none"), 1);
    }
}
