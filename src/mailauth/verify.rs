//! Inbound authentication of a received message: SPF (HELO and MAIL FROM identities,
//! RFC 7208), DKIM (every signature, RFC 6376), ARC (RFC 8617) and DMARC with
//! identifier alignment (RFC 7489), summarised in the ONE `Authentication-Results`
//! header (RFC 8601) that the SMTP session prepends at end of DATA.
//!
//! This module decides the DMARC disposition (accept / Junk / reject) and nothing
//! else; spam and virus scanning live in `scan/`. It must never turn a temporary DNS
//! failure into a permanent refusal: a sender's flaky DNS would otherwise bounce
//! legitimate mail (RFC 7489 section 6.6.2: a temporary error means "no result").
//!
//! The author domains come from `header_address` (the parser IMAP's ENVELOPE shows
//! authors with), not from mail-auth, which exempts a message with several author
//! domains from DMARC: a message without exactly one parseable `From:` is refused, and
//! each author domain is judged on its own, the strictest outcome winning (RFC 7489
//! section 6.6.1).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use mail_auth::common::cache::NoCache;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Alignment, Policy};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult, MX,
    MessageAuthenticator, Parameters, RecordSet, SpfOutput, SpfResult,
};

use super::txt_cache::TxtCache;

use crate::dmarc::{Destination, DkimAuth, Observation, PolicyPublished, SpfAuth};
use crate::header_address::{self, AuthorError};

/// What the SMTP session does with the message after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver to the inbox (other checks permitting).
    Accept,
    /// Deliver to the Junk folder: DMARC failed under `p=quarantine`.
    Junk,
    /// Refuse at end of DATA for good (the SMTP layer answers 550 5.7.1).
    Reject { reason: AuthRefusal },
    /// Refuse for now (the SMTP layer answers 451 4.4.3); the sender retries.
    TempFail { reason: AuthDeferral },
}

/// Why authentication refuses a message for good. Checks say why, not how: the reply
/// code and text are the SMTP layer's (`smtp::inbound`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRefusal {
    /// DMARC failed under `p=reject` for this author domain.
    DmarcReject { domain: String },
    /// The authors cannot be determined (RFC 7489 §6.6.1), so there is no one to judge.
    Authors(AuthorError),
}

/// Why authentication cannot decide now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDeferral {
    /// A temporary DNS error for a domain whose published policy is `reject`.
    DmarcDnsError,
}

/// The outcome of [`InboundAuthenticator::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthVerdict {
    /// The complete `Authentication-Results: <hostname>; …` field, CRLF-terminated,
    /// to prepend to the message (after [`strip_our_auth_results`]).
    pub header: String,
    pub disposition: Disposition,
    /// Short machine-readable results, for logs and the built-in spam verdict.
    pub spf: &'static str,
    pub dkim_pass: bool,
    pub dmarc: &'static str,
    pub arc: &'static str,
    /// What each author domain's DMARC evaluation contributes to that domain's aggregate
    /// report (`dmarc/`): only domains whose record asks for reports (`rua`), and only
    /// when a disposition was applied (a deferral is not one: the message comes again).
    pub reports: Vec<Observation>,
}

/// SPF, DKIM, ARC and DMARC verification through our resolver.
#[derive(Clone)]
pub struct InboundAuthenticator {
    pub(super) auth: MessageAuthenticator,
    /// The records those checks parsed, shared by every session until their TTL ends.
    txt: Arc<TxtCache>,
    timeout: Duration,
}

/// mail-auth's parameters with our parsed-record cache and no other cache (the
/// resolver caches the rest).
pub(super) type Cached<'x, P> = Parameters<
    'x,
    P,
    TxtCache,
    NoCache<Box<str>, RecordSet<MX>>,
    NoCache<Box<str>, RecordSet<Ipv4Addr>>,
    NoCache<Box<str>, RecordSet<Ipv6Addr>>,
    NoCache<IpAddr, RecordSet<Box<str>>>,
>;

impl std::fmt::Debug for InboundAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboundAuthenticator")
    }
}

impl InboundAuthenticator {
    /// Use `resolver` (from `dns::resolver::build`) for every lookup.
    pub fn new(resolver: TokioResolver) -> InboundAuthenticator {
        InboundAuthenticator {
            auth: MessageAuthenticator(resolver),
            txt: Arc::new(TxtCache::default()),
            timeout: Duration::from_secs(90),
        }
    }

    /// `params` for one of mail-auth's checks, looking records up in our cache first.
    pub(super) fn cached<'x, P>(&'x self, params: P) -> Cached<'x, P> {
        Parameters::new(params).with_txt_cache(&*self.txt)
    }

    /// Cap the whole verification (default 90 s). SPF alone may chain ten lookups,
    /// each retried on a dead server; the client waits at end of DATA (RFC 5321
    /// section 4.5.3.2.6 gives it 10 minutes), so give up well before and report
    /// `temperror`, which never rejects.
    pub fn with_timeout(mut self, timeout: Duration) -> InboundAuthenticator {
        self.timeout = timeout;
        self
    }

    /// Authenticate `msg` (the raw message as received, before we add any header).
    /// `mail_from` is the envelope sender, `None` for the null sender `<>`.
    pub async fn verify(
        &self,
        msg: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
        our_hostname: &str,
    ) -> AuthVerdict {
        let checks = self.verify_all(msg, client_ip, helo, mail_from, our_hostname);
        match tokio::time::timeout(self.timeout, checks).await {
            Ok(verdict) => verdict,
            Err(_) => {
                tracing::warn!(%client_ip, timeout = ?self.timeout, "authentication checks timed out");
                crate::metrics::metrics().inbound_auth_results_total.with_label_values(&["dmarc", "temperror"]).inc();
                AuthVerdict {
                    header: format!(
                        "Authentication-Results: {our_hostname};\r\n\tspf=temperror (timeout);\r\n\tdkim=temperror (timeout);\r\n\tdmarc=temperror (timeout)\r\n"
                    ),
                    disposition: Disposition::Accept,
                    spf: "temperror",
                    dkim_pass: false,
                    dmarc: "temperror",
                    arc: "temperror",
                    reports: Vec::new(),
                }
            }
        }
    }

    async fn verify_all(
        &self,
        msg: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
        our_hostname: &str,
    ) -> AuthVerdict {
        let mail_from = mail_from.filter(|m| !m.is_empty());
        // RFC 5322 section 3.6 and RFC 7489 section 6.6.1: exactly one From: whose
        // authors are read as mail clients read them, or no DMARC verdict is possible
        // and the message is refused (before any DNS work).
        let authors = match header_address::authors(msg) {
            Ok(a) => a,
            Err(e) => return refuse_authors(&e, our_hostname),
        };
        let domains: Vec<String> = header_address::author_domains(&authors).into_iter().map(str::to_string).collect();
        let message = AuthenticatedMessage::parse(msg);
        // The four checks are independent DNS work: run them concurrently, so the
        // end-of-DATA wait is the slowest lookup chain, not the sum.
        let spf_helo = self.auth.verify_spf(self.cached(SpfParameters::verify_ehlo(client_ip, helo, our_hostname)));
        let spf_mail = async {
            match mail_from {
                Some(sender) => Some(
                    self.auth
                        .verify_spf(self.cached(SpfParameters::verify_mail_from(client_ip, helo, our_hostname, sender)))
                        .await,
                ),
                None => None,
            }
        };
        let dkim = async {
            match &message {
                Some(m) => self.auth.verify_dkim(self.cached(m)).await,
                None => Vec::new(),
            }
        };
        let arc = async {
            match &message {
                Some(m) => Some(self.auth.verify_arc(self.cached(m)).await),
                None => None,
            }
        };
        let (spf_helo, spf_mail, dkim, arc) = tokio::join!(spf_helo, spf_mail, dkim, arc);
        // RFC 7208 section 2.4: for the null sender the MAIL FROM identity is
        // postmaster@<HELO>, so the HELO result stands for it.
        let spf_mail = spf_mail.unwrap_or_else(|| spf_helo.clone());
        let mail_from_domain = mail_from.and_then(|m| m.rsplit_once('@')).map_or(helo, |(_, d)| d);

        let (Some(message), Some(arc)) = (&message, arc) else {
            // Our parser found a From: but mail-auth sees no header section at all: the
            // two disagree on the header, so nothing can be judged.
            return refuse_authors(&AuthorError::Unparseable, our_hostname);
        };
        // RFC 7489 section 6.6.1: with several author domains, apply the strictest
        // policy. mail-auth exempts such messages, so evaluate each domain on its own.
        let mut outcomes = Vec::with_capacity(domains.len());
        for domain in &domains {
            let mut single = message.clone();
            single.from = vec![format!("author@{domain}")];
            let params = DmarcParameters::new(&single, &dkim, mail_from_domain, &spf_mail);
            let dmarc = self.auth.verify_dmarc(self.cached(params)).await;
            let disposition = disposition(&dmarc);
            outcomes.push((dmarc, disposition));
        }
        outcomes.sort_by_key(|(dmarc, disposition)| {
            std::cmp::Reverse((severity(disposition), result_rank(&dmarc.result())))
        });

        let header_from = authors.first().map(|m| m.address()).unwrap_or_default();
        let mut results = AuthenticationResults::new(our_hostname)
            .with_dkim_results(&dkim, &header_from)
            .with_spf_ehlo_result(&spf_helo, client_ip, helo)
            .with_spf_mailfrom_result(&spf_mail, client_ip, mail_from.unwrap_or(""), helo)
            .with_arc_result(&arc, client_ip);
        for (dmarc, _) in &outcomes {
            results = results.with_dmarc_result(dmarc);
        }
        let header = if dkim.is_empty() {
            // mail-auth writes nothing for an unsigned message; RFC 8601 section 2.7.1
            // wants `dkim=none` so readers know it was checked.
            let text = results.to_string();
            match text.split_once(';') {
                Some((host, rest)) => format!("Authentication-Results: {host}; dkim=none;{rest}\r\n"),
                None => format!("Authentication-Results: {text}\r\n"),
            }
        } else {
            format!("Authentication-Results: {results}\r\n")
        };

        let spf_scope = if mail_from.is_some() { "mfrom" } else { "helo" };
        let reports = outcomes
            .iter()
            .filter_map(|(dmarc, disposition)| {
                observation(dmarc, disposition, client_ip, &dkim, (&spf_mail, mail_from_domain, spf_scope))
            })
            .collect();
        let Some((dmarc, disposition)) = outcomes.into_iter().next() else {
            return refuse_authors(&AuthorError::NoAddress, our_hostname);
        };
        let dmarc_result = dmarc.result();
        let verdict = AuthVerdict {
            header,
            disposition,
            spf: spf_name(&spf_mail),
            dkim_pass: dkim.iter().any(|d| d.result() == &DkimResult::Pass),
            dmarc: match dmarc_result {
                DmarcResult::Pass => "pass",
                DmarcResult::Fail(_) => "fail",
                DmarcResult::TempError(_) => "temperror",
                DmarcResult::PermError(_) => "permerror",
                DmarcResult::None => "none",
            },
            arc: match arc.result() {
                DkimResult::Pass => "pass",
                DkimResult::Fail(_) => "fail",
                DkimResult::Neutral(_) => "neutral",
                DkimResult::TempError(_) => "temperror",
                DkimResult::PermError(_) => "permerror",
                DkimResult::None => "none",
            },
            reports,
        };
        let m = &crate::metrics::metrics().inbound_auth_results_total;
        m.with_label_values(&["spf", verdict.spf]).inc();
        m.with_label_values(&["dkim", if verdict.dkim_pass { "pass" } else { "nopass" }]).inc();
        m.with_label_values(&["dmarc", verdict.dmarc]).inc();
        m.with_label_values(&["arc", verdict.arc]).inc();
        verdict
    }
}

/// One author domain's report row (RFC 7489 Appendix C), when its record asks for
/// aggregate reports and a disposition was applied.
fn observation(
    dmarc: &DmarcOutput,
    disposition: &Disposition,
    client_ip: IpAddr,
    dkim: &[DkimOutput],
    (spf, spf_domain, spf_scope): (&SpfOutput, &str, &str),
) -> Option<Observation> {
    let record = dmarc.dmarc_record()?;
    if record.rua.is_empty() {
        return None;
    }
    let disposition = match disposition {
        Disposition::Accept => "none",
        Disposition::Junk => "quarantine",
        Disposition::Reject { .. } => "reject",
        Disposition::TempFail { .. } => return None,
    };
    let alignment = |a: &Alignment| if *a == Alignment::Strict { "s" } else { "r" }.to_string();
    let policy = |p: &Policy| {
        match p {
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
            Policy::None | Policy::Unspecified => "none",
        }
        .to_string()
    };
    let sp = if record.sp == Policy::Unspecified { &record.p } else { &record.sp };
    Some(Observation {
        policy: PolicyPublished {
            domain: dmarc.domain().to_ascii_lowercase(),
            adkim: alignment(&record.adkim),
            aspf: alignment(&record.aspf),
            p: policy(&record.p),
            sp: policy(sp),
            pct: 100,
            fo: failure_options(&record.fo),
            rua: record
                .rua
                .iter()
                .map(|u| Destination { address: u.uri().to_string(), max_size: u.max_size() as u64 })
                .collect(),
        },
        source_ip: client_ip,
        header_from: dmarc.domain().to_ascii_lowercase(),
        disposition: disposition.to_string(),
        dkim_aligned: *dmarc.dkim_result() == DmarcResult::Pass,
        spf_aligned: *dmarc.spf_result() == DmarcResult::Pass,
        dkim: dkim
            .iter()
            .filter_map(|d| {
                let sig = d.signature()?;
                Some(DkimAuth {
                    domain: sig.d.to_ascii_lowercase(),
                    selector: sig.s.clone(),
                    result: dkim_name(d.result()),
                })
            })
            .collect(),
        spf: SpfAuth {
            domain: spf_domain.to_ascii_lowercase(),
            scope: spf_scope.to_string(),
            result: spf_name(spf).to_string(),
        },
    })
}

/// The record's `fo` tag as the report writes it (RFC 7489 section 6.3).
fn failure_options(fo: &mail_auth::dmarc::Report) -> String {
    use mail_auth::dmarc::Report;
    match fo {
        Report::All => "0",
        Report::Any => "1",
        Report::Dkim => "d",
        Report::Spf => "s",
        Report::DkimSpf => "d:s",
    }
    .to_string()
}

fn dkim_name(result: &DkimResult) -> String {
    match result {
        DkimResult::Pass => "pass",
        DkimResult::Fail(_) => "fail",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::TempError(_) => "temperror",
        DkimResult::PermError(_) => "permerror",
        DkimResult::None => "none",
    }
    .to_string()
}

fn spf_name(spf: &SpfOutput) -> &'static str {
    match spf.result() {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// The disposition one author domain's DMARC outcome asks for.
fn disposition(dmarc: &DmarcOutput) -> Disposition {
    match (&dmarc.result(), dmarc.policy()) {
        (DmarcResult::Fail(_), Policy::Reject) => {
            Disposition::Reject { reason: AuthRefusal::DmarcReject { domain: dmarc.domain().to_string() } }
        }
        (DmarcResult::Fail(_), Policy::Quarantine) => Disposition::Junk,
        (DmarcResult::TempError(_), Policy::Reject) => Disposition::TempFail { reason: AuthDeferral::DmarcDnsError },
        _ => Disposition::Accept,
    }
}

/// How strict a disposition is: the strictest of all author domains wins.
fn severity(d: &Disposition) -> u8 {
    match d {
        Disposition::Accept => 0,
        Disposition::Junk => 1,
        Disposition::TempFail { .. } => 2,
        Disposition::Reject { .. } => 3,
    }
}

/// Among equally strict outcomes, the one reported: a failure before an error before
/// no policy before a pass.
fn result_rank(r: &DmarcResult) -> u8 {
    match r {
        DmarcResult::Pass => 0,
        DmarcResult::None => 1,
        DmarcResult::PermError(_) => 2,
        DmarcResult::TempError(_) => 3,
        DmarcResult::Fail(_) => 4,
    }
}

/// The verdict for a message whose authors cannot be determined: 550 5.7.1 with the
/// reason, `dmarc=permerror` in the header.
fn refuse_authors(e: &AuthorError, our_hostname: &str) -> AuthVerdict {
    crate::metrics::metrics().inbound_auth_results_total.with_label_values(&["dmarc", "permerror"]).inc();
    AuthVerdict {
        header: format!("Authentication-Results: {our_hostname}; dmarc=permerror (invalid From: header)\r\n"),
        disposition: Disposition::Reject { reason: AuthRefusal::Authors(e.clone()) },
        spf: "none",
        dkim_pass: false,
        dmarc: "permerror",
        arc: "none",
        reports: Vec::new(),
    }
}

/// Remove every `Authentication-Results` field whose authserv-id is `hostname`
/// (case-insensitive). RFC 8601 section 5: a receiver must delete such fields that
/// arrive from outside, or a forger could claim our own verdict. Fields of other
/// authserv-ids are kept (they are the sender's business). The body is untouched;
/// input without a header/body separator is treated as all header. Borrowed when there
/// is nothing to remove (nearly always), so a large message is not copied for nothing.
pub fn strip_our_auth_results<'m>(msg: &'m [u8], hostname: &str) -> Cow<'m, [u8]> {
    let header_end = header_section_end(msg);
    let (head, body) = msg.split_at(header_end);
    let fields = split_fields(head);
    if !fields.iter().any(|field| is_our_auth_results(field, hostname)) {
        return Cow::Borrowed(msg);
    }
    let mut out = Vec::with_capacity(msg.len());
    for field in fields {
        if !is_our_auth_results(field, hostname) {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(body);
    Cow::Owned(out)
}

/// Offset of the empty line that ends the header section (the offset of its first
/// byte), or the length of `msg` when there is none.
fn header_section_end(msg: &[u8]) -> usize {
    let mut pos = 0;
    while pos < msg.len() {
        let line_end = memchr::memchr(b'\n', &msg[pos..]).map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            return pos;
        }
        pos = line_end;
    }
    msg.len()
}

/// Split a header section into whole fields, each with its continuation lines.
fn split_fields(head: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < head.len() {
        let line_end = memchr::memchr(b'\n', &head[pos..]).map_or(head.len(), |i| pos + i + 1);
        let next_is_continuation = head.get(line_end).is_some_and(|b| *b == b' ' || *b == b'\t');
        if !next_is_continuation {
            fields.push(&head[start..line_end]);
            start = line_end;
        }
        pos = line_end;
    }
    if start < head.len() {
        fields.push(&head[start..]);
    }
    fields
}

fn is_our_auth_results(field: &[u8], hostname: &str) -> bool {
    let Some(colon) = memchr::memchr(b':', field) else { return false };
    if !field[..colon].trim_ascii().eq_ignore_ascii_case(b"Authentication-Results") {
        return false;
    }
    let value = skip_cfws(&field[colon + 1..]);
    let id_len = value.iter().position(|b| *b == b';' || *b == b'(' || b.is_ascii_whitespace()).unwrap_or(value.len());
    let id = &value[..id_len];
    let hostname = hostname.trim_end_matches('.');
    let id = id.strip_suffix(b".").unwrap_or(id);
    id.eq_ignore_ascii_case(hostname.as_bytes())
}

/// Skip whitespace and (possibly nested) comments, RFC 5322 CFWS.
fn skip_cfws(mut s: &[u8]) -> &[u8] {
    loop {
        s = s.trim_ascii_start();
        if s.first() != Some(&b'(') {
            return s;
        }
        let mut depth = 0usize;
        let mut end = s.len();
        let mut escaped = false;
        for (i, b) in s.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'(' => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        s = &s[end..];
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
pub(crate) mod tests;
