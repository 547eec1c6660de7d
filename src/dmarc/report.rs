//! One aggregate report as bytes: the XML of RFC 7489 Appendix C, gzipped, in the MIME
//! message of section 7.2.1.1 (subject, attachment name and type as the RFC writes them).
//! Pure: no I/O, so the tests compare the exact output.

use std::fmt::Write as _;
use std::io::Write as _;

use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::raw::Raw;

use super::record::{Observation, PolicyPublished};
use crate::xml;

/// Who sends the report and what it covers.
#[derive(Clone, Debug)]
pub struct ReportMeta {
    /// `org_name`: our hostname.
    pub org_name: String,
    /// `email`: the address reports come from.
    pub email: String,
    pub report_id: String,
    /// Seconds since the epoch, inclusive.
    pub begin: u64,
    pub end: u64,
}

/// A report of one domain over one range: the policy and the counted rows.
#[derive(Clone, Debug)]
pub struct AggregateReport {
    pub meta: ReportMeta,
    pub policy: PolicyPublished,
    pub rows: Vec<(Observation, u64)>,
}

/// The address as Appendix C's `IPAddress` pattern accepts it: IPv6 as eight groups,
/// never `::`-compressed (the pattern has no other form), which every reader parses.
fn source_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => v6.segments().iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":"),
    }
}

fn pass(aligned: bool) -> &'static str {
    if aligned { "pass" } else { "fail" }
}

impl AggregateReport {
    /// The report's XML (RFC 7489 Appendix C, the `feedback` element).
    pub fn to_xml(&self) -> String {
        let m = &self.meta;
        let p = &self.policy;
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n");
        x.push_str("  <version>1.0</version>\n  <report_metadata>\n");
        let _ = writeln!(x, "    <org_name>{}</org_name>", xml::escape(&m.org_name));
        let _ = writeln!(x, "    <email>{}</email>", xml::escape(&m.email));
        let _ = writeln!(x, "    <report_id>{}</report_id>", xml::escape(&m.report_id));
        let _ = writeln!(
            x,
            "    <date_range>\n      <begin>{}</begin>\n      <end>{}</end>\n    </date_range>",
            m.begin, m.end
        );
        x.push_str("  </report_metadata>\n  <policy_published>\n");
        let _ = writeln!(x, "    <domain>{}</domain>", xml::escape(&p.domain));
        let _ = writeln!(x, "    <adkim>{}</adkim>\n    <aspf>{}</aspf>", xml::escape(&p.adkim), xml::escape(&p.aspf));
        let _ = writeln!(
            x,
            "    <p>{}</p>\n    <sp>{}</sp>\n    <pct>{}</pct>\n    <fo>{}</fo>",
            xml::escape(&p.p),
            xml::escape(&p.sp),
            p.pct,
            xml::escape(&p.fo)
        );
        x.push_str("  </policy_published>\n");
        for (o, count) in &self.rows {
            x.push_str("  <record>\n    <row>\n");
            let _ =
                writeln!(x, "      <source_ip>{}</source_ip>\n      <count>{count}</count>", source_ip(o.source_ip));
            let _ = writeln!(
                x,
                "      <policy_evaluated>\n        <disposition>{}</disposition>\n        <dkim>{}</dkim>\n        <spf>{}</spf>\n      </policy_evaluated>",
                xml::escape(&o.disposition),
                pass(o.dkim_aligned),
                pass(o.spf_aligned)
            );
            x.push_str("    </row>\n");
            // The RFC 5321 MAIL FROM domain, which SPF checked with scope `mfrom`; empty
            // for the null sender, whose SPF identity was the HELO name (RFC 7208 2.4).
            let envelope_from = if o.spf.scope == "mfrom" { o.spf.domain.as_str() } else { "" };
            let _ = writeln!(
                x,
                "    <identifiers>\n      <envelope_from>{}</envelope_from>\n      <header_from>{}</header_from>\n    </identifiers>",
                xml::escape(envelope_from),
                xml::escape(&o.header_from)
            );
            x.push_str("    <auth_results>\n");
            for d in &o.dkim {
                let _ = writeln!(
                    x,
                    "      <dkim>\n        <domain>{}</domain>\n        <selector>{}</selector>\n        <result>{}</result>\n      </dkim>",
                    xml::escape(&d.domain),
                    xml::escape(&d.selector),
                    xml::escape(&d.result)
                );
            }
            let _ = writeln!(
                x,
                "      <spf>\n        <domain>{}</domain>\n        <scope>{}</scope>\n        <result>{}</result>\n      </spf>",
                xml::escape(&o.spf.domain),
                xml::escape(&o.spf.scope),
                xml::escape(&o.spf.result)
            );
            x.push_str("    </auth_results>\n  </record>\n");
        }
        x.push_str("</feedback>\n");
        x
    }

    /// The attachment's file name (RFC 7489 7.2.1.1): `submitter!domain!begin!end.xml.gz`.
    pub fn file_name(&self) -> String {
        format!("{}!{}!{}!{}.xml.gz", self.meta.org_name, self.policy.domain, self.meta.begin, self.meta.end)
    }

    /// The MIME message carrying the gzipped report from `from` to `to`, unsigned.
    pub fn to_message(&self, from: &str, to: &[String]) -> std::io::Result<Vec<u8>> {
        let gz = gzip(self.to_xml().as_bytes())?;
        let subject = format!(
            "Report Domain: {} Submitter: {} Report-ID: <{}>",
            self.policy.domain, self.meta.org_name, self.meta.report_id
        );
        let to: Vec<(&str, &str)> = to.iter().map(|a| ("", a.as_str())).collect();
        MessageBuilder::new()
            .from(("", from))
            .to(to)
            // Written as is: the builder would otherwise Q-encode a long ASCII subject,
            // and RFC 7489 7.2.1.1 readers match on the plain text. Two domain names and
            // an id stay far below the 998-octet line limit.
            .header("Subject", Raw::new(subject))
            .message_id(format!("{}@{}", self.meta.report_id, self.meta.org_name))
            .header("Auto-Submitted", HeaderType::Text("auto-generated".into()))
            .text_body(format!(
                "DMARC aggregate report (RFC 7489) from {} for {}.\r\n",
                self.meta.org_name, self.policy.domain
            ))
            .attachment("application/gzip", self.file_name(), gz)
            .write_to_vec()
    }
}

/// gzip (RFC 1952) through flate2's pure-Rust backend.
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4 + 64), flate2::Compression::default());
    e.write_all(bytes)?;
    e.finish()
}
