//! Mail client auto-configuration, generated from the configured listeners so the
//! answer always matches the ports really served:
//! - Thunderbird's `config-v1.1.xml` (the Mozilla ISPDB format, fetched from
//!   `autoconfig.<domain>/mail/config-v1.1.xml` and
//!   `<domain>/.well-known/autoconfig/mail/config-v1.1.xml`);
//! - Outlook's POX autodiscover (`POST /autodiscover/autodiscover.xml` with an
//!   `<EMailAddress>` in the body).
//!
//! ManageSieve is in the autoconfig file as the Mail Autoconfig draft
//! (draft-ietf-mailmaint-autoconfig) writes it: `<setupServer type="managesieve">` under
//! `<clientConfig>`, which clients that do not know it must ignore. Clients that read
//! neither find it through the `_sieve._tcp` SRV record (`dns/records.rs`, RFC 5804
//! section 1.8). Outlook's format has no place for it.
//!
//! The request parser is pure and bounded: it looks for one element in at most
//! the first 64 KiB (the web service's body limit) and never panics.

use crate::accounts::Address;
use crate::config::{ListenConfig, Protocol};
use crate::xml;

/// The client-facing ports that are switched on (first listen address of each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailEndpoints {
    pub imaps: Option<u16>,
    pub imap: Option<u16>,
    pub pop3s: Option<u16>,
    pub pop3: Option<u16>,
    pub submissions: Option<u16>,
    pub submission: Option<u16>,
    pub managesieve: Option<u16>,
}

impl MailEndpoints {
    pub fn from_listen(listen: &ListenConfig) -> MailEndpoints {
        let port = |p: Protocol| listen.of(p).iter().map(|a| a.port()).find(|&port| port != 0);
        MailEndpoints {
            imaps: port(Protocol::Imaps),
            imap: port(Protocol::Imap),
            pop3s: port(Protocol::Pop3s),
            pop3: port(Protocol::Pop3),
            submissions: port(Protocol::Submissions),
            submission: port(Protocol::Submission),
            managesieve: port(Protocol::ManageSieve),
        }
    }
}

/// Thunderbird autoconfig for `domain` (implicit TLS first: RFC 8314 prefers it).
/// `%EMAILADDRESS%` is a placeholder Thunderbird fills in itself.
pub fn thunderbird_config(hostname: &str, domains: &[String], domain: &str, ep: &MailEndpoints) -> String {
    let host = xml::escape(hostname);
    // `depth`: the section's indent (inside `<emailProvider>` or right under the root).
    let section = |kind: &str, tag: &str, port: u16, socket: &str, depth: usize| {
        let (i, j) = (" ".repeat(depth), " ".repeat(depth + 2));
        format!(
            "{i}<{tag} type=\"{kind}\">\n{j}<hostname>{host}</hostname>\n{j}<port>{port}</port>\n{j}<socketType>{socket}</socketType>\n{j}<authentication>password-cleartext</authentication>\n{j}<username>%EMAILADDRESS%</username>\n{i}</{tag}>\n"
        )
    };
    let server = |kind: &str, tag: &str, port: u16, socket: &str| section(kind, tag, port, socket, 4);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n");
    x.push_str(&format!("  <emailProvider id=\"{}\">\n", xml::escape(domain)));
    for d in domains {
        x.push_str(&format!("    <domain>{}</domain>\n", xml::escape(d)));
    }
    x.push_str(&format!("    <displayName>{}</displayName>\n", xml::escape(domain)));
    x.push_str(&format!("    <displayShortName>{}</displayShortName>\n", xml::escape(domain)));
    let incoming = [
        (ep.imaps, "imap", "SSL"),
        (ep.imap, "imap", "STARTTLS"),
        (ep.pop3s, "pop3", "SSL"),
        (ep.pop3, "pop3", "STARTTLS"),
    ];
    for (port, kind, socket) in incoming {
        if let Some(port) = port {
            x.push_str(&server(kind, "incomingServer", port, socket));
        }
    }
    for (port, socket) in [(ep.submissions, "SSL"), (ep.submission, "STARTTLS")] {
        if let Some(port) = port {
            x.push_str(&server("smtp", "outgoingServer", port, socket));
        }
    }
    x.push_str("  </emailProvider>\n");
    if let Some(port) = ep.managesieve {
        x.push_str(&section("managesieve", "setupServer", port, "STARTTLS", 2));
    }
    x.push_str("</clientConfig>\n");
    x
}

/// The `EMailAddress` of an Outlook autodiscover request, validated as an address.
pub fn autodiscover_email(body: &[u8]) -> Option<Address> {
    let text = std::str::from_utf8(body).ok()?;
    let lower = text.to_ascii_lowercase();
    let open = "<emailaddress>";
    let start = lower.find(open)? + open.len();
    let end = start + lower.get(start..)?.find("</emailaddress>")?;
    Address::parse(text.get(start..end)?.trim()).ok()
}

/// Outlook's POX autodiscover answer (MS-OXDSCLI §2.2.4): IMAP/POP3/SMTP settings
/// with the address as login name. `Encryption` says `SSL` for implicit TLS and
/// `TLS` for STARTTLS.
pub fn autodiscover_response(hostname: &str, email: Option<&Address>, ep: &MailEndpoints) -> String {
    let login = email.map(|e| format!("        <LoginName>{}</LoginName>\n", xml::escape(&e.to_string())));
    let login = login.unwrap_or_default();
    let protocol = |kind: &str, port: u16, encryption: &str| {
        format!(
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{}</Server>\n        <Port>{port}</Port>\n{login}        <DomainRequired>off</DomainRequired>\n        <SPA>off</SPA>\n        <Encryption>{encryption}</Encryption>\n        <AuthRequired>on</AuthRequired>\n      </Protocol>\n",
            xml::escape(hostname)
        )
    };
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n",
    );
    let imap = ep.imaps.map(|p| (p, "SSL")).or(ep.imap.map(|p| (p, "TLS")));
    let pop3 = ep.pop3s.map(|p| (p, "SSL")).or(ep.pop3.map(|p| (p, "TLS")));
    let smtp = ep.submissions.map(|p| (p, "SSL")).or(ep.submission.map(|p| (p, "TLS")));
    for (kind, choice) in [("IMAP", imap), ("POP3", pop3), ("SMTP", smtp)] {
        if let Some((port, encryption)) = choice {
            x.push_str(&protocol(kind, port, encryption));
        }
    }
    x.push_str("    </Account>\n  </Response>\n</Autodiscover>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> MailEndpoints {
        MailEndpoints {
            imaps: Some(993),
            imap: Some(143),
            pop3s: Some(995),
            pop3: None,
            submissions: Some(465),
            submission: Some(587),
            managesieve: Some(4190),
        }
    }

    #[test]
    fn thunderbird_lists_each_listener_with_the_address_as_username() {
        let x = thunderbird_config("mx.example.com", &["example.com".into()], "example.com", &endpoints());
        assert!(x.contains("<emailProvider id=\"example.com\">"));
        assert!(x.contains("<incomingServer type=\"imap\">\n      <hostname>mx.example.com</hostname>\n      <port>993</port>\n      <socketType>SSL</socketType>"));
        assert!(x.contains("<port>143</port>\n      <socketType>STARTTLS</socketType>"));
        assert!(!x.contains("<port>110</port>"), "POP3 is off");
        assert!(x.contains(
            "<outgoingServer type=\"smtp\">\n      <hostname>mx.example.com</hostname>\n      <port>465</port>"
        ));
        assert_eq!(x.matches("<username>%EMAILADDRESS%</username>").count(), 6);
        assert!(x.ends_with("  </emailProvider>\n  <setupServer type=\"managesieve\">\n    <hostname>mx.example.com</hostname>\n    <port>4190</port>\n    <socketType>STARTTLS</socketType>\n    <authentication>password-cleartext</authentication>\n    <username>%EMAILADDRESS%</username>\n  </setupServer>\n</clientConfig>\n"), "{x}");
        let off = MailEndpoints { managesieve: None, ..endpoints() };
        assert!(!thunderbird_config("mx.example.com", &[], "example.com", &off).contains("setupServer"));
    }

    #[test]
    fn outlook_request_gives_its_address_back_as_login() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>Alice@Example.com</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request></Autodiscover>"#;
        let email = autodiscover_email(body).unwrap();
        assert_eq!(email.to_string(), "alice@example.com");
        let x = autodiscover_response("mx.example.com", Some(&email), &endpoints());
        assert!(x.contains("<Type>IMAP</Type>\n        <Server>mx.example.com</Server>\n        <Port>993</Port>\n        <LoginName>alice@example.com</LoginName>"));
        assert!(x.contains("<Type>SMTP</Type>\n        <Server>mx.example.com</Server>\n        <Port>465</Port>"));
        assert!(x.contains("<Encryption>SSL</Encryption>"));
    }

    #[test]
    fn hostile_request_content_is_escaped_or_refused() {
        assert!(autodiscover_email(b"<EMailAddress><script>@x</EMailAddress>").is_none());
    }

    /// Garbage in: random and truncated bodies never panic.
    #[test]
    fn garbage_in() {
        let sample = b"<Request><EMailAddress>a@example.com</EMailAddress></Request>";
        for cut in 0..sample.len() {
            let _ = autodiscover_email(&sample[..cut]);
        }
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    [b'<', b'>', b'@', b'E', b'/', 0xff, 0xc3, b'a'][(crate::testing::xorshift(&mut seed) % 8) as usize]
                })
                .collect();
            let _ = autodiscover_email(&bytes);
        }
        // Multi-byte UTF-8 around the tags must not split a char when slicing.
        assert!(autodiscover_email("<emailaddress>é</EMAILADDRESS>".as_bytes()).is_none());
    }
}
