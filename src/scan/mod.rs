//! Content scanning of inbound mail at end of DATA: ClamAV (clamd), rspamd, DNS
//! blocklists, and a built-in verdict from the authentication results. One entry
//! point, [`Scanners::scan`], returns what the SMTP session does (accept, Junk,
//! refuse, defer — with a typed reason the SMTP layer turns into 554 or 451) and the
//! header fields to prepend.
//!
//! Scanners are optional and off by default. When a configured one cannot be
//! reached, `MAILROOM_SCANNER_FAILURE` decides: `tempfail` answers 451 4.7.1 (the
//! sender retries; nothing unscanned gets in) or `accept` delivers with a header
//! saying what was not scanned. DNSBLs are advisory (Junk, never a refusal) and are
//! not consulted for authenticated senders, whose home addresses sit on policy
//! lists like Spamhaus PBL by design.

pub mod clamd;
pub mod dnsbl;
pub mod rspamd;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hickory_resolver::TokioResolver;

use crate::config::{ScanConfig, ScannerFailure};
use crate::mailauth::{AuthVerdict, Disposition};
use crate::metrics::metrics;

pub use clamd::{ClamdTarget, ClamdVerdict};
pub use dnsbl::DnsblAnswer;
pub use rspamd::{RspamdAction, RspamdEndpoint, RspamdReply, RspamdRequest};

/// What the session knows about the message being scanned.
#[derive(Clone, Debug)]
pub struct ScanContext<'a> {
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// Envelope sender; `None` for `<>`.
    pub mail_from: Option<&'a str>,
    pub recipients: &'a [String],
    /// The client's reverse-DNS name, if known.
    pub client_hostname: Option<&'a str>,
    pub queue_id: &'a str,
    /// Set for submission (authenticated senders): skips DNSBLs.
    pub authenticated_user: Option<&'a str>,
    /// The result of `mailauth::verify`, for the built-in verdict.
    pub auth: Option<&'a AuthVerdict>,
}

/// What the session does with the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanAction {
    Accept,
    /// Deliver into the recipients' Junk folder.
    Junk {
        reason: String,
    },
    /// Refuse at end of DATA for good (the SMTP layer answers 554 5.7.1).
    Reject {
        reason: ScanRefusal,
    },
    /// Refuse for now; the sender retries (the SMTP layer answers 451 4.7.1).
    TempFail {
        reason: ScanDeferral,
    },
}

/// Why a scanner refused the message for good. Scanners say why, not how: the reply
/// code and text are the SMTP layer's (`smtp::inbound`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanRefusal {
    /// clamd found this virus (the name is already header-safe).
    Virus { name: String },
    /// rspamd said `reject`.
    Spam,
}

/// Why the message cannot be taken now, though it may be later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanDeferral {
    /// rspamd said `soft reject` or `greylist`.
    SpamFilter,
    /// A configured scanner could not be reached and `MAILROOM_SCANNER_FAILURE` is
    /// `tempfail`: nothing unscanned gets in.
    ScannerUnavailable,
}

/// The verdict: the action, and the header fields (CRLF-terminated, possibly
/// empty) to prepend when the message is delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanVerdict {
    pub action: ScanAction,
    pub headers: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanConfigError {
    #[error("MAILROOM_RSPAMD_URL: {0}")]
    Rspamd(String),
    #[error("MAILROOM_CLAMD: expected `host:port` or an absolute socket path, got {0:?}")]
    Clamd(String),
}

/// The configured scanners.
pub struct Scanners {
    resolver: TokioResolver,
    hostname: String,
    dnsbl: Vec<String>,
    rspamd: Option<RspamdEndpoint>,
    clamd: Option<ClamdTarget>,
    failure: ScannerFailure,
    /// Per-scanner time limit (a slow scanner counts as down).
    pub timeout: Duration,
}

impl std::fmt::Debug for Scanners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanners")
            .field("dnsbl", &self.dnsbl)
            .field("rspamd", &self.rspamd)
            .field("clamd", &self.clamd)
            .field("failure", &self.failure)
            .finish()
    }
}

impl Scanners {
    /// Whether a virus scanner (clamd) is configured: a message it passed is clean.
    pub fn scans_viruses(&self) -> bool {
        self.clamd.is_some()
    }

    /// Scanners from their section, sharing the server's resolver (and its cache);
    /// `hostname` names this server in the headers it adds.
    pub fn new(config: &ScanConfig, hostname: &str, resolver: TokioResolver) -> Result<Scanners, ScanConfigError> {
        let rspamd =
            config.rspamd_url.as_deref().map(RspamdEndpoint::parse).transpose().map_err(ScanConfigError::Rspamd)?;
        let clamd = match config.clamd.as_deref() {
            Some(v) => Some(ClamdTarget::parse(v).ok_or_else(|| ScanConfigError::Clamd(v.to_string()))?),
            None => None,
        };
        Ok(Scanners {
            resolver,
            hostname: hostname.to_string(),
            dnsbl: config.dnsbl.clone(),
            rspamd,
            clamd,
            failure: config.failure,
            timeout: Duration::from_secs(60),
        })
    }

    /// The first DNSBL listing `ip`, if any (for a connect-time check or logging).
    pub async fn dnsbl_listing(&self, ip: IpAddr) -> Option<(String, Ipv4Addr)> {
        if self.dnsbl.is_empty() {
            return None;
        }
        let answers = dnsbl::check(&self.resolver, ip, &self.dnsbl).await;
        let mut listed = None;
        for (zone, answer) in answers {
            let result = match &answer {
                DnsblAnswer::Listed(_) => "listed",
                DnsblAnswer::NotListed => "clean",
                DnsblAnswer::Unknown(e) => {
                    tracing::debug!(%zone, error = %e, "DNSBL lookup inconclusive");
                    "unknown"
                }
            };
            metrics().scan_results_total.with_label_values(&["dnsbl", result]).inc();
            if matches!(answer, DnsblAnswer::Listed(_)) {
                // The zone is one of MAILROOM_DNSBL's: a bounded label.
                metrics().dnsbl_listings_total.with_label_values(&[&zone]).inc();
            }
            if let (None, DnsblAnswer::Listed(code)) = (&listed, answer) {
                listed = Some((zone, code));
            }
        }
        listed
    }

    /// Scan `msg` (the raw message as received). Order: virus first (a virus is
    /// refused whatever else is said), then rspamd, then DNSBLs and the built-in
    /// verdict, which can only send to Junk.
    pub async fn scan(&self, msg: &[u8], ctx: &ScanContext<'_>) -> ScanVerdict {
        let mut headers = String::new();
        let mut junk: Vec<String> = Vec::new();
        let host = header_safe(&self.hostname);

        if let Some(target) = &self.clamd {
            let started = std::time::Instant::now();
            let scanned = clamd::scan(target, &self.resolver, msg, self.timeout).await;
            metrics().scan_duration_seconds.with_label_values(&["clamd"]).observe(started.elapsed().as_secs_f64());
            match scanned {
                Ok(ClamdVerdict::Clean) => {
                    metrics().scan_results_total.with_label_values(&["clamd", "clean"]).inc();
                    headers.push_str(&format!("X-Virus-Scanned: clamd on {host}; clean\r\n"));
                }
                Ok(ClamdVerdict::Infected(name)) => {
                    metrics().scan_results_total.with_label_values(&["clamd", "infected"]).inc();
                    tracing::info!(queue_id = ctx.queue_id, virus = %name, "message refused: virus");
                    let name = header_safe(&name);
                    return ScanVerdict { action: ScanAction::Reject { reason: ScanRefusal::Virus { name } }, headers };
                }
                Err(e) => {
                    metrics().scan_results_total.with_label_values(&["clamd", "error"]).inc();
                    tracing::warn!(queue_id = ctx.queue_id, error = %e, "clamd unavailable");
                    match self.failure {
                        ScannerFailure::Tempfail => return tempfail(headers),
                        ScannerFailure::Accept => {
                            headers.push_str(&format!("X-Virus-Scanned: no (clamd unavailable on {host})\r\n"))
                        }
                    }
                }
            }
        }

        if let Some(endpoint) = &self.rspamd {
            let req = RspamdRequest {
                ip: Some(ctx.client_ip),
                helo: Some(ctx.helo),
                mail_from: ctx.mail_from,
                recipients: ctx.recipients,
                client_hostname: ctx.client_hostname,
                queue_id: Some(ctx.queue_id),
                user: ctx.authenticated_user,
            };
            let started = std::time::Instant::now();
            let checked = rspamd::check(endpoint, &self.resolver, msg, &req, self.timeout).await;
            metrics().scan_duration_seconds.with_label_values(&["rspamd"]).observe(started.elapsed().as_secs_f64());
            match checked {
                Ok(reply) => {
                    let action = action_name(reply.action);
                    metrics().scan_results_total.with_label_values(&["rspamd", action]).inc();
                    let spam = !matches!(reply.action, RspamdAction::NoAction | RspamdAction::Greylist);
                    headers.push_str(&format!(
                        "X-Spam-Status: {}, score={:.2} required={:.2} action=\"{action}\" scanner=rspamd on {host}\r\n",
                        if spam { "Yes" } else { "No" },
                        reply.score,
                        reply.required_score,
                    ));
                    match reply.action {
                        RspamdAction::Reject => {
                            tracing::info!(queue_id = ctx.queue_id, score = reply.score, "message refused: spam");
                            return ScanVerdict { action: ScanAction::Reject { reason: ScanRefusal::Spam }, headers };
                        }
                        RspamdAction::SoftReject | RspamdAction::Greylist => {
                            return ScanVerdict {
                                action: ScanAction::TempFail { reason: ScanDeferral::SpamFilter },
                                headers,
                            };
                        }
                        RspamdAction::AddHeader | RspamdAction::RewriteSubject => {
                            junk.push(format!("rspamd: {action} (score {:.2})", reply.score))
                        }
                        RspamdAction::NoAction => {}
                    }
                }
                Err(e) => {
                    metrics().scan_results_total.with_label_values(&["rspamd", "error"]).inc();
                    tracing::warn!(queue_id = ctx.queue_id, error = %e, "rspamd unavailable");
                    match self.failure {
                        ScannerFailure::Tempfail => return tempfail(headers),
                        ScannerFailure::Accept => {
                            headers.push_str(&format!("X-Spam-Status: Unknown, rspamd unavailable on {host}\r\n"))
                        }
                    }
                }
            }
        }

        if ctx.authenticated_user.is_none()
            && let Some((zone, code)) = self.dnsbl_listing(ctx.client_ip).await
        {
            junk.push(format!("{} listed in {zone} ({code})", ctx.client_ip));
        }

        if let Some(auth) = ctx.auth {
            if auth.disposition == Disposition::Junk {
                junk.push("DMARC policy quarantine".into());
            } else if auth.spf == "fail" && !auth.dkim_pass && auth.dmarc != "pass" {
                junk.push("SPF fail without a DKIM pass".into());
            }
        }

        if junk.is_empty() {
            ScanVerdict { action: ScanAction::Accept, headers }
        } else {
            let reason = junk.join("; ");
            headers.push_str(&format!("X-Spam: Yes ({})\r\n", header_safe(&reason)));
            ScanVerdict { action: ScanAction::Junk { reason }, headers }
        }
    }
}

fn tempfail(headers: String) -> ScanVerdict {
    ScanVerdict { action: ScanAction::TempFail { reason: ScanDeferral::ScannerUnavailable }, headers }
}

fn action_name(a: RspamdAction) -> &'static str {
    match a {
        RspamdAction::Reject => "reject",
        RspamdAction::SoftReject => "soft reject",
        RspamdAction::RewriteSubject => "rewrite subject",
        RspamdAction::AddHeader => "add header",
        RspamdAction::Greylist => "greylist",
        RspamdAction::NoAction => "no action",
    }
}

/// Text that came from a scanner or the network, made safe inside a header field
/// (no CR/LF injection, printable ASCII, bounded).
fn header_safe(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(200).collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
