//! Port 25's judgement of a complete message from the internet, before it is stored or
//! forwarded: SPF/DKIM/DMARC/ARC (`mailauth::verify`), then the scanners (`scan`:
//! clamd, rspamd, DNSBLs, the built-in verdict). The outcome is one of: refuse with a
//! reply, deliver to Junk, or deliver normally — always with our single
//! `Authentication-Results` header (any forged one claiming our hostname removed) and
//! the scanners' headers prepended.
//!
//! Also the two things forwarding needs so mail still passes at the next hop: SRS for
//! the envelope sender and an ARC seal over the message as forwarded.
//!
//! Trusted networks (`MAILROOM_TRUSTED_NETWORKS`) skip the checks: they are our own
//! systems. Submission never comes here (its senders are authenticated).

use crate::accounts::Address;
use crate::mailauth::{
    ArcSealKey, AuthDeferral, AuthRefusal, Disposition, InboundAuthenticator, Srs, strip_our_auth_results,
};
use crate::maillog::{self, Mail};
use crate::scan::{ScanAction, ScanContext, ScanDeferral, ScanRefusal, Scanners};

use super::command::ReversePath;
use super::refusal::Refusal;
use super::session::{ClientInfo, Envelope};
use super::status::Status;

/// Everything port 25 needs to judge and forward mail. Built once at start.
pub struct InboundChecks {
    pub hostname: String,
    pub authenticator: InboundAuthenticator,
    pub scanners: Scanners,
    pub srs: std::sync::Arc<Srs>,
    /// The primary domain's DKIM key, for ARC seals on forwarded mail.
    pub arc_key: Option<(String, ArcSealKey)>,
    /// DMARC aggregate-report counters (`None`: `MAILROOM_DMARC_REPORTS=off`).
    pub dmarc_reports: Option<std::sync::Arc<crate::dmarc::Recorder>>,
    /// Reads the DMARC reports others send to our report addresses, beside delivery
    /// (the reply never waits for it).
    pub dmarc_inbox: Option<std::sync::Arc<crate::dmarc::receive::ReportInbox>>,
}

impl std::fmt::Debug for InboundChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundChecks").field("scanners", &self.scanners).finish()
    }
}

/// A message that passed: the header lines to prepend and where it goes. The message
/// itself is not copied: it is stored as received, unless forged headers had to go.
pub struct Judged {
    /// Our `Authentication-Results` and the scanners' headers, CRLF-terminated.
    pub prepend: Vec<u8>,
    /// The message without `Authentication-Results` fields claiming our hostname, when
    /// it had any (RFC 8601 section 5); `None`: store the message as received.
    pub rewritten: Option<Vec<u8>>,
    pub junk: bool,
}

impl InboundChecks {
    /// Judge `message` (the content as received, CRLF). `Err` is the reply refusing it, with its reason.
    pub async fn judge(
        &self,
        message: &[u8],
        client: &ClientInfo,
        envelope: &Envelope,
    ) -> Result<Judged, (Refusal, Status)> {
        let stripped = strip_our_auth_results(message, &self.hostname);
        let helo = client.helo.as_deref().unwrap_or("");
        let sender = match &envelope.sender {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(m.address.to_string()),
        };
        let verdict = self.authenticator.verify(&stripped, client.ip, helo, sender.as_deref(), &self.hostname).await;
        let recipients: Vec<String> = envelope.recipients.iter().map(|r| r.address.to_string()).collect();
        let log = |outcome: &str| {
            let mail = Mail {
                msgid: &envelope.id,
                service: "smtp",
                from: sender.as_deref().unwrap_or(""),
                size: message.len() as u64,
            };
            let dkim = if verdict.dkim_pass { "pass" } else { "nopass" };
            maillog::judged(&mail, &recipients.join(","), verdict.spf, dkim, verdict.dmarc, verdict.arc, outcome);
        };
        if let Some(recorder) = &self.dmarc_reports {
            let now = std::time::SystemTime::now();
            for observation in &verdict.reports {
                recorder.count(observation.clone(), now);
            }
        }
        if let Some(reply) = auth_refusal(&verdict.disposition) {
            log("refuse");
            return Err((auth_refusal_reason(&verdict.disposition), reply));
        }
        let ctx = ScanContext {
            client_ip: client.ip,
            helo,
            mail_from: sender.as_deref(),
            recipients: &recipients,
            client_hostname: None,
            queue_id: &envelope.id,
            authenticated_user: None,
            auth: Some(&verdict),
        };
        let scan = self.scanners.scan(&stripped, &ctx).await;
        if let Some(reply) = scan_refusal(&scan.action) {
            log("refuse");
            return Err((scan_refusal_reason(&scan.action), reply));
        }
        let junk = match scan.action {
            // Refused just above.
            ScanAction::Reject { .. } | ScanAction::TempFail { .. } => false,
            ScanAction::Junk { reason } => {
                tracing::info!(reason = %reason, "message goes to Junk");
                true
            }
            ScanAction::Accept => verdict.disposition == Disposition::Junk,
        };
        log(if junk { "junk" } else { "accept" });
        let mut prepend = verdict.header.into_bytes();
        prepend.extend_from_slice(scan.headers.as_bytes());
        if let Some(inbox) = &self.dmarc_inbox
            && inbox.is_for_us(recipients.iter().map(String::as_str))
        {
            inbox.read_later(&stripped);
        }
        let rewritten = match stripped {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(without_forgeries) => Some(without_forgeries),
        };
        Ok(Judged { prepend, rewritten, junk })
    }

    /// The envelope sender for a forwarded copy: SRS-rewritten into our primary domain,
    /// so SPF at the next hop checks us, and a bounce finds its way back.
    pub fn forward_sender(&self, sender: Option<&Address>, our_domain: &str) -> Option<Address> {
        let sender = sender?;
        let rewritten = self.srs.forward(&sender.to_string(), our_domain);
        Address::parse(&rewritten).ok().or_else(|| Some(sender.clone()))
    }

    /// ARC headers sealing `message` as it will be forwarded (empty when no key or the
    /// chain cannot be sealed: forwarding still happens, just without ARC).
    pub async fn arc_headers(&self, message: &[u8], client: &ClientInfo, envelope: &Envelope) -> String {
        let Some((_, key)) = &self.arc_key else { return String::new() };
        let helo = client.helo.as_deref().unwrap_or("");
        let sender = match &envelope.sender {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(m.address.to_string()),
        };
        match self.authenticator.arc_seal(key, message, client.ip, helo, sender.as_deref(), &self.hostname).await {
            Ok(headers) => headers,
            Err(e) => {
                tracing::info!(error = %e, "forwarded without an ARC seal");
                String::new()
            }
        }
    }
}

/// The reply refusing a message for authentication's `disposition`; `None` when it
/// does not refuse. The checks give reasons; reply codes and texts are decided here.
pub fn auth_refusal(disposition: &Disposition) -> Option<Status> {
    Some(match disposition {
        Disposition::Accept | Disposition::Junk => return None,
        Disposition::Reject { reason: AuthRefusal::DmarcReject { domain } } => Status::new(
            550,
            (5, 7, 1),
            format!("Rejected by the DMARC policy of {domain} (RFC 7489): neither SPF nor DKIM passed and aligned"),
        ),
        Disposition::Reject { reason: AuthRefusal::Authors(e) } => {
            Status::new(550, (5, 7, 1), format!("Message refused: {e}"))
        }
        Disposition::TempFail { reason: AuthDeferral::DmarcDnsError } => {
            Status::new(451, (4, 4, 3), "Temporary DNS failure while checking DMARC; please try again later")
        }
    })
}

/// The metrics reason of an authentication refusal ([`auth_refusal`]).
fn auth_refusal_reason(disposition: &Disposition) -> Refusal {
    match disposition {
        Disposition::Reject { reason: AuthRefusal::Authors(_) } => Refusal::Policy,
        _ => Refusal::Dmarc,
    }
}

/// The metrics reason of a scanner refusal ([`scan_refusal`]).
fn scan_refusal_reason(action: &ScanAction) -> Refusal {
    match action {
        ScanAction::Reject { reason: ScanRefusal::Virus { .. } } => Refusal::Virus,
        ScanAction::TempFail { reason: ScanDeferral::ScannerUnavailable } => Refusal::Scanner,
        _ => Refusal::Spam,
    }
}

/// The reply refusing a message for the scanners' `action`; `None` when it does not
/// refuse.
pub fn scan_refusal(action: &ScanAction) -> Option<Status> {
    Some(match action {
        ScanAction::Accept | ScanAction::Junk { .. } => return None,
        ScanAction::Reject { reason: ScanRefusal::Virus { name } } => {
            Status::new(554, (5, 7, 1), format!("Message refused: virus found ({name})"))
        }
        ScanAction::Reject { reason: ScanRefusal::Spam } => Status::new(554, (5, 7, 1), "Message refused as spam"),
        ScanAction::TempFail { reason: ScanDeferral::SpamFilter } => {
            Status::new(451, (4, 7, 1), "Message deferred by the spam filter; please try again later")
        }
        ScanAction::TempFail { reason: ScanDeferral::ScannerUnavailable } => {
            Status::new(451, (4, 7, 1), "Content scanner temporarily unavailable; please try again later")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::status::Code;

    #[test]
    fn refusals_are_replies_and_the_rest_is_not() {
        let virus = ScanAction::Reject { reason: ScanRefusal::Virus { name: "Eicar".into() } };
        let r = scan_refusal(&virus).map(|r| r.render());
        assert_eq!(r.as_deref(), Some(&b"554 5.7.1 Message refused: virus found (Eicar)\r\n"[..]));
        assert_eq!(scan_refusal(&ScanAction::Accept), None);
        assert_eq!(scan_refusal(&ScanAction::Junk { reason: "x".into() }), None);
        let dns = Disposition::TempFail { reason: AuthDeferral::DmarcDnsError };
        assert_eq!(auth_refusal(&dns).map(|r| r.code), Some(Code::Reply(451)));
        assert_eq!(auth_refusal(&Disposition::Junk), None);
    }
}
