//! One mail transaction (MAIL, RCPT…, DATA, message) as a pure state machine.
//!
//! The connection code feeds it replies and does what it answers (send these lines,
//! send the body, stop); it never touches a socket, so every path — a refused sender, a
//! mix of accepted and refused recipients, PIPELINING (RFC 2920) with every recipient
//! refused, a 4xx after the final dot — is tested below as a transcript.
//!
//! Reply classes map to per-recipient outcomes the queue understands: 2xx delivered,
//! 4xx temporary (retry later), 5xx permanent (bounce now).

use std::collections::VecDeque;

use crate::accounts::Address;
use crate::queue::RecipientOutcome;
use crate::smtp::status::{Code, Status};

/// Which command a pending reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Mail,
    Rcpt(usize),
    Data,
    /// The reply after the final `.`; `false` when the body was the empty one sent
    /// only to close a pipelined DATA that had no accepted recipient.
    Message(bool),
}

/// What the connection must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these command lines (each ends in CRLF), then read replies.
    Send(String),
    /// Write the dot-stuffed message with its terminating `.`, then read a reply.
    SendBody,
    /// Write just `.` CRLF (RFC 2920 §3.1: a pipelined DATA got 354 although no
    /// recipient was accepted; the server must see an end of data).
    SendEmptyBody,
    /// Read another reply.
    Wait,
    /// The transaction is over; take the outcomes.
    Done,
}

/// The state of one transaction.
#[derive(Debug)]
pub struct Transaction {
    /// MAIL, RCPT…, DATA lines in order, with what each expects.
    commands: Vec<(Expect, String)>,
    sent: usize,
    awaiting: VecDeque<Expect>,
    pipelining: bool,
    outcomes: Vec<Option<RecipientOutcome>>,
    accepted: Vec<usize>,
}

/// Parameters for MAIL FROM beyond the address (RFC 1870, 6152, 6531).
#[derive(Clone, Copy, Debug, Default)]
pub struct MailParams {
    pub size: Option<usize>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// RFC 8689 `REQUIRETLS`.
    pub require_tls: bool,
}

impl Transaction {
    /// Plan a transaction for `recipients` (all sent in this one transaction).
    pub fn new(sender: Option<&Address>, recipients: &[Address], params: MailParams, pipelining: bool) -> Transaction {
        let mut mail = match sender {
            Some(s) => format!("MAIL FROM:<{s}>"),
            None => "MAIL FROM:<>".to_string(),
        };
        if let Some(size) = params.size {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if params.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if params.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if params.require_tls {
            mail.push_str(" REQUIRETLS");
        }
        mail.push_str("\r\n");
        let mut commands = vec![(Expect::Mail, mail)];
        for (i, r) in recipients.iter().enumerate() {
            commands.push((Expect::Rcpt(i), format!("RCPT TO:<{r}>\r\n")));
        }
        commands.push((Expect::Data, "DATA\r\n".to_string()));
        Transaction {
            commands,
            sent: 0,
            awaiting: VecDeque::new(),
            pipelining,
            outcomes: vec![None; recipients.len()],
            accepted: Vec::new(),
        }
    }

    /// The first lines to write: everything with PIPELINING, else just MAIL.
    pub fn start(&mut self) -> String {
        if self.pipelining { self.send_upto(self.commands.len()) } else { self.send_upto(1) }
    }

    fn send_upto(&mut self, end: usize) -> String {
        let mut out = String::new();
        while self.sent < end.min(self.commands.len()) {
            let (expect, line) = &self.commands[self.sent];
            out.push_str(line);
            self.awaiting.push_back(*expect);
            self.sent += 1;
        }
        out
    }

    /// Feed the next reply; the answer says what to do.
    pub fn on_reply(&mut self, reply: &Status) -> Step {
        let Some(expect) = self.awaiting.pop_front() else { return Step::Done };
        match expect {
            Expect::Mail => {
                if !reply.is_completion() {
                    // The sender was refused: every recipient shares that fate. With
                    // pipelining the RCPT and DATA replies are still on their way.
                    for o in self.outcomes.iter_mut() {
                        o.get_or_insert_with(|| outcome_of(reply));
                    }
                    return if self.awaiting.is_empty() { Step::Done } else { Step::Wait };
                }
                self.after_envelope_reply()
            }
            Expect::Rcpt(i) => {
                if let Some(slot) = self.outcomes.get_mut(i)
                    && slot.is_none()
                {
                    if reply.is_completion() {
                        self.accepted.push(i);
                    } else {
                        *slot = Some(outcome_of(reply));
                    }
                }
                self.after_envelope_reply()
            }
            Expect::Data => {
                if reply.code == Code::Reply(354) {
                    self.awaiting.push_back(Expect::Message(!self.accepted.is_empty()));
                    if self.accepted.is_empty() { Step::SendEmptyBody } else { Step::SendBody }
                } else {
                    self.settle_accepted(reply);
                    Step::Done
                }
            }
            Expect::Message(real) => {
                if real {
                    self.settle_accepted(reply);
                }
                Step::Done
            }
        }
    }

    /// After a MAIL or RCPT reply: without pipelining, send the next command, or stop
    /// before DATA when nobody was accepted.
    fn after_envelope_reply(&mut self) -> Step {
        if self.pipelining {
            return Step::Wait;
        }
        if self.outcomes.iter().all(Option::is_some) {
            return Step::Done; // every recipient refused (or the sender was)
        }
        let next = self.sent;
        if next + 1 == self.commands.len() && self.accepted.is_empty() {
            return Step::Done;
        }
        Step::Send(self.send_upto(next + 1))
    }

    fn settle_accepted(&mut self, reply: &Status) {
        for &i in &self.accepted {
            if let Some(slot) = self.outcomes.get_mut(i) {
                *slot = Some(outcome_of(reply));
            }
        }
    }

    /// The connection broke or timed out: whatever is undecided is temporary.
    pub fn fail_remaining(&mut self, why: &Status) {
        for o in self.outcomes.iter_mut() {
            o.get_or_insert_with(|| RecipientOutcome::Temporary(why.clone()));
        }
    }

    /// Whether any reply is still expected (the connection is unusable if so).
    pub fn is_settled(&self) -> bool {
        self.awaiting.is_empty()
    }

    pub fn into_outcomes(mut self) -> Vec<RecipientOutcome> {
        self.fail_remaining(&Status::local((4, 4, 2), "transaction ended without a reply"));
        self.outcomes.into_iter().flatten().collect()
    }
}

/// A reply as a per-recipient outcome.
pub fn outcome_of(reply: &Status) -> RecipientOutcome {
    let status = reply.clone();
    if reply.is_completion() {
        RecipientOutcome::Delivered(status)
    } else if reply.is_permanent() {
        RecipientOutcome::Permanent(status)
    } else {
        RecipientOutcome::Temporary(status)
    }
}

/// The message as DATA content: lines end in CRLF (a bare LF is completed, since the
/// spool may hold either), a line starting with `.` gets another (RFC 5321 §4.5.2), and
/// the terminating `.` line is appended.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::client::reply::parse_reply;

    fn r(s: &str) -> Status {
        parse_reply(format!("{s}\r\n").as_bytes()).unwrap().unwrap().0
    }
    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn plain_transcript_mixed_recipients() {
        let rcpts = [a("ok@remote.test"), a("nope@remote.test"), a("later@remote.test")];
        let mut t = Transaction::new(Some(&a("me@here.test")), &rcpts, MailParams::default(), false);
        assert_eq!(t.start(), "MAIL FROM:<me@here.test>\r\n");
        assert_eq!(t.on_reply(&r("250 2.1.0 ok")), Step::Send("RCPT TO:<ok@remote.test>\r\n".into()));
        assert_eq!(t.on_reply(&r("250 2.1.5 ok")), Step::Send("RCPT TO:<nope@remote.test>\r\n".into()));
        assert_eq!(t.on_reply(&r("550 5.1.1 no such user")), Step::Send("RCPT TO:<later@remote.test>\r\n".into()));
        assert_eq!(t.on_reply(&r("450 4.2.1 try later")), Step::Send("DATA\r\n".into()));
        assert_eq!(t.on_reply(&r("354 go ahead")), Step::SendBody);
        assert_eq!(t.on_reply(&r("250 2.0.0 queued as X")), Step::Done);
        assert!(t.is_settled());
        assert_eq!(
            t.into_outcomes(),
            vec![
                RecipientOutcome::Delivered(Status::new(250, (2, 0, 0), "queued as X")),
                RecipientOutcome::Permanent(Status::new(550, (5, 1, 1), "no such user")),
                RecipientOutcome::Temporary(Status::new(450, (4, 2, 1), "try later")),
            ]
        );
    }

    #[test]
    fn refused_sender_stops_before_rcpt() {
        let mut t = Transaction::new(None, &[a("x@remote.test")], MailParams::default(), false);
        assert_eq!(t.start(), "MAIL FROM:<>\r\n");
        assert_eq!(t.on_reply(&r("451 4.3.0 busy")), Step::Done);
        assert_eq!(t.into_outcomes(), vec![RecipientOutcome::Temporary(Status::new(451, (4, 3, 0), "busy"))]);
    }

    #[test]
    fn pipelined_all_refused_closes_data_with_empty_body() {
        let params = MailParams { size: Some(1234), eight_bit: true, smtputf8: false, require_tls: true };
        let mut t = Transaction::new(Some(&a("me@here.test")), &[a("x@remote.test")], params, true);
        assert_eq!(
            t.start(),
            "MAIL FROM:<me@here.test> SIZE=1234 BODY=8BITMIME REQUIRETLS\r\nRCPT TO:<x@remote.test>\r\nDATA\r\n"
        );
        assert_eq!(t.on_reply(&r("250 ok")), Step::Wait);
        assert_eq!(t.on_reply(&r("550 5.1.1 unknown")), Step::Wait);
        // A server that says 354 anyway must still get an end of data.
        assert_eq!(t.on_reply(&r("354 go")), Step::SendEmptyBody);
        assert_eq!(t.on_reply(&r("554 5.5.1 no valid recipients")), Step::Done);
        assert_eq!(t.into_outcomes(), vec![RecipientOutcome::Permanent(Status::new(550, (5, 1, 1), "unknown"))]);
    }

    #[test]
    fn pipelined_refused_sender_consumes_every_reply() {
        let mut t = Transaction::new(Some(&a("me@here.test")), &[a("x@remote.test")], MailParams::default(), true);
        t.start();
        assert_eq!(t.on_reply(&r("550 5.7.1 go away")), Step::Wait);
        assert_eq!(t.on_reply(&r("503 5.5.1 need MAIL")), Step::Wait);
        assert_eq!(t.on_reply(&r("503 5.5.1 need RCPT")), Step::Done);
        assert!(t.is_settled());
        assert_eq!(t.into_outcomes(), vec![RecipientOutcome::Permanent(Status::new(550, (5, 7, 1), "go away"))]);
    }

    #[test]
    fn rejected_after_dot_applies_to_accepted_only() {
        let mut t = Transaction::new(Some(&a("me@here.test")), &[a("x@remote.test")], MailParams::default(), true);
        t.start();
        t.on_reply(&r("250 ok"));
        t.on_reply(&r("250 ok"));
        assert_eq!(t.on_reply(&r("354 go")), Step::SendBody);
        assert_eq!(t.on_reply(&r("554 5.7.1 spam")), Step::Done);
        assert_eq!(t.into_outcomes(), vec![RecipientOutcome::Permanent(Status::new(554, (5, 7, 1), "spam"))]);
    }

    #[test]
    fn broken_connection_is_temporary() {
        let mut t = Transaction::new(Some(&a("me@here.test")), &[a("x@remote.test")], MailParams::default(), false);
        t.start();
        t.fail_remaining(&Status::local((4, 4, 2), "connection lost"));
        assert!(!t.is_settled());
        assert_eq!(t.into_outcomes(), vec![RecipientOutcome::Temporary(Status::local((4, 4, 2), "connection lost"))]);
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n..c\r\n"), b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff(b".x\nno final newline"), b"..x\r\nno final newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }
}
