//! The mail-app setup page and its Apple configuration profile, from the same
//! [`MailEndpoints`] the autoconfig answers use (so the page, the profile and
//! Thunderbird's autoconfig never disagree about a port).
//!
//! The profile is an unsigned XML property list with one `com.apple.mail.managed`
//! payload (Apple's Configuration Profile Reference): iOS and macOS ask for the
//! password on install. Implicit TLS is preferred over STARTTLS (RFC 8314).

use crate::http::autoconfig::MailEndpoints;
use crate::xml;

use super::html::esc;

/// One row of the settings table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub service: &'static str,
    pub port: u16,
    pub security: &'static str,
}

/// Every service a mail app may use, implicit TLS first.
pub fn settings(ep: &MailEndpoints) -> Vec<Setting> {
    let rows = [
        ("IMAP", ep.imaps, "TLS (SSL)"),
        ("IMAP", ep.imap, "STARTTLS"),
        ("SMTP (sending)", ep.submissions, "TLS (SSL)"),
        ("SMTP (sending)", ep.submission, "STARTTLS"),
        ("POP3", ep.pop3s, "TLS (SSL)"),
        ("POP3", ep.pop3, "STARTTLS"),
        ("ManageSieve (filters)", ep.managesieve, "STARTTLS"),
    ];
    rows.into_iter().filter_map(|(service, port, security)| Some(Setting { service, port: port?, security })).collect()
}

/// The setup page body for `account`.
pub fn page(hostname: &str, account: &str, ep: &MailEndpoints) -> String {
    let mut body = format!(
        "<p>Use these settings in any mail app. The user name is always your full mail address, \
         <strong>{account}</strong>; the password is your password or an \
         <a href=\"/account/app-passwords\">app password</a>.</p>\
         <table class=\"settings\"><thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Server</th>\
         <th scope=\"col\">Port</th><th scope=\"col\">Security</th></tr></thead><tbody>",
        account = esc(account)
    );
    for s in settings(ep) {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.service,
            esc(hostname),
            s.port,
            s.security
        ));
    }
    let autoconfig = format!("/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={}", query_escape(account));
    body.push_str(&format!(
        "</tbody></table><h2>iPhone, iPad and Mac</h2>\
         <p><a href=\"/account/setup/mailroom.mobileconfig\" download>Download the configuration profile</a>, \
         then open it and install it in Settings (it asks for your password).</p>\
         <h2>Thunderbird</h2><p>Thunderbird finds these settings by itself from your address. \
         Its configuration is at <a href=\"{href}\">{href}</a>.</p>",
        href = esc(&autoconfig)
    ));
    body
}

/// Percent-encode a query value (everything but unreserved characters, RFC 3986 §2.3).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A stable UUID (version 4 layout, from a hash) for a profile or payload: installing
/// the profile again replaces the earlier one instead of adding a second account.
fn stable_uuid(seed: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The `.mobileconfig` for `account`; `None` when there is no IMAP or no submission
/// port to put in it.
pub fn mobileconfig(hostname: &str, account: &str, ep: &MailEndpoints) -> Option<String> {
    let (in_port, in_tls) = ep.imaps.map(|p| (p, true)).or(ep.imap.map(|p| (p, false)))?;
    let (out_port, out_tls) = ep.submissions.map(|p| (p, true)).or(ep.submission.map(|p| (p, false)))?;
    let (host, user) = (xml::escape(hostname), xml::escape(account));
    let reversed: Vec<&str> = hostname.rsplit('.').collect();
    let id = xml::escape(&reversed.join("."));
    let boolean = |b: bool| if b { "<true/>" } else { "<false/>" };
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
<plist version=\"1.0\">\n<dict>\n\
  <key>PayloadContent</key>\n  <array>\n    <dict>\n\
      <key>EmailAccountDescription</key><string>{user}</string>\n\
      <key>EmailAccountName</key><string>{user}</string>\n\
      <key>EmailAccountType</key><string>EmailTypeIMAP</string>\n\
      <key>EmailAddress</key><string>{user}</string>\n\
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>\n\
      <key>IncomingMailServerHostName</key><string>{host}</string>\n\
      <key>IncomingMailServerPortNumber</key><integer>{in_port}</integer>\n\
      <key>IncomingMailServerUseSSL</key>{in_tls}\n\
      <key>IncomingMailServerUsername</key><string>{user}</string>\n\
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>\n\
      <key>OutgoingMailServerHostName</key><string>{host}</string>\n\
      <key>OutgoingMailServerPortNumber</key><integer>{out_port}</integer>\n\
      <key>OutgoingMailServerUseSSL</key>{out_tls}\n\
      <key>OutgoingMailServerUsername</key><string>{user}</string>\n\
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>\n\
      <key>PayloadDisplayName</key><string>Mail ({user})</string>\n\
      <key>PayloadIdentifier</key><string>{id}.mailroom.mail.{uuid_mail}</string>\n\
      <key>PayloadType</key><string>com.apple.mail.managed</string>\n\
      <key>PayloadUUID</key><string>{uuid_mail}</string>\n\
      <key>PayloadVersion</key><integer>1</integer>\n\
    </dict>\n  </array>\n\
  <key>PayloadDisplayName</key><string>{host} mail ({user})</string>\n\
  <key>PayloadIdentifier</key><string>{id}.mailroom.{uuid_profile}</string>\n\
  <key>PayloadRemovalDisallowed</key><false/>\n\
  <key>PayloadType</key><string>Configuration</string>\n\
  <key>PayloadUUID</key><string>{uuid_profile}</string>\n\
  <key>PayloadVersion</key><integer>1</integer>\n\
</dict>\n</plist>\n",
        in_tls = boolean(in_tls),
        out_tls = boolean(out_tls),
        uuid_mail = stable_uuid(&format!("mail|{hostname}|{account}")),
        uuid_profile = stable_uuid(&format!("profile|{hostname}|{account}")),
    ))
}
