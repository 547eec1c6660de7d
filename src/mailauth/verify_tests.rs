//! Transcripts: messages signed by python's `dkim` (or not, or tampered) arrive from
//! an IP that SPF allows or not, and the DNS is a real dnsmasq holding the domains'
//! SPF, DKIM and DMARC records (`p=reject`, `p=quarantine`, `p=none`).

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;
use crate::dns::resolver;
use crate::dns::testdns::{TestDns, tool_available};
use crate::smtp::inbound::auth_refusal;

const OURS: &str = "mx.ours.test";
const GOOD_IP: &str = "127.0.0.1";
const FORGED_IP: &str = "192.0.2.66";

pub(crate) fn message(from_domain: &str, subject: &str) -> String {
    format!(
        "From: Alice <alice@{from_domain}>\r\nTo: bob@ours.test\r\nSubject: {subject}\r\n\
         Date: Fri, 27 Nov 2026 00:00:00 +0000\r\nMessage-ID: <{subject}@{from_domain}>\r\n\r\nHello Bob.\r\n"
    )
}

/// Sign `messages` for `domain` with a fresh Ed25519 key; returns (public key, signed).
pub(crate) fn python_sign(domain: &str, messages: &[String]) -> (String, Vec<String>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/mailauth/dkim_sign_test.py");
    let mut child =
        Command::new("python3").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("python3");
    let req = serde_json::json!({"domain": domain, "selector": "s1", "messages": messages});
    serde_json::to_writer(child.stdin.take().unwrap(), &req).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python dkim signing failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let signed = v["signed"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    (v["public"].as_str().unwrap().to_string(), signed)
}

pub(crate) fn python_dkim_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("python3 dkim + nacl are required when CI=true (see .ci/deps.sh)");
    }
    ok
}

struct World {
    _dns: TestDns,
    auth: InboundAuthenticator,
    /// Signed messages by name.
    signed: std::collections::HashMap<&'static str, String>,
}

/// Three domains, one per DMARC policy; each allows only 127.0.0.1 by SPF and
/// publishes the Ed25519 key its messages were signed with.
fn world() -> Option<World> {
    if !tool_available("dnsmasq") || !python_dkim_available() {
        return None;
    }
    let mut signed = std::collections::HashMap::new();
    let mut txt: Vec<(String, String)> = Vec::new();
    for (domain, policy) in [("reject.test", "reject"), ("quarantine.test", "quarantine"), ("none.test", "none")] {
        let msgs = vec![message(domain, "signed")];
        let (public, out) = python_sign(domain, &msgs);
        signed.insert(policy_name(policy), out[0].clone());
        txt.push((domain.into(), "v=spf1 ip4:127.0.0.1 -all".into()));
        // quarantine.test asks for aggregate reports; the others do not.
        let rua = if policy == "quarantine" { "; rua=mailto:agg@quarantine.test!10m" } else { "" };
        txt.push((format!("_dmarc.{domain}"), format!("v=DMARC1; p={policy}{rua}")));
        txt.push((format!("s1._domainkey.{domain}"), format!("v=DKIM1; k=ed25519; p={public}")));
    }
    txt.push(("mail.sender.test".into(), "v=spf1 ip4:127.0.0.1 -all".into()));
    let txt_refs: Vec<(&str, &str)> = txt.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let dns = TestDns::start(&["test"], &txt_refs, &[])?;
    let auth = InboundAuthenticator::new(resolver::build(&[dns.addr]).unwrap());
    Some(World { _dns: dns, auth, signed })
}

fn policy_name(p: &str) -> &'static str {
    match p {
        "reject" => "reject",
        "quarantine" => "quarantine",
        _ => "none",
    }
}

async fn check(w: &World, msg: &str, ip: &str, mail_from: Option<&str>) -> AuthVerdict {
    let ip: IpAddr = ip.parse().unwrap();
    w.auth.verify(msg.as_bytes(), ip, "mail.sender.test", mail_from, OURS).await
}

#[tokio::test]
async fn dmarc_outcomes_against_real_dns() {
    let Some(w) = world() else { return };

    // Signed by the From domain, sent from an IP SPF refuses: DKIM alone aligns.
    let v = check(&w, &w.signed["reject"], FORGED_IP, Some("bounce@reject.test")).await;
    assert!(v.header.starts_with("Authentication-Results: mx.ours.test;"), "{}", v.header);
    assert!(v.header.contains("dkim=pass"), "{}", v.header);
    assert!(v.header.contains("spf=fail"), "{}", v.header);
    assert!(v.header.contains("dmarc=pass"), "{}", v.header);
    assert!(v.header.ends_with("\r\n"));
    assert_eq!(v.disposition, Disposition::Accept);
    assert!(v.dkim_pass);

    // Unsigned but from the SPF-allowed IP with an aligned envelope: SPF aligns.
    let v = check(&w, &message("reject.test", "plain"), GOOD_IP, Some("alice@reject.test")).await;
    assert!(v.reports.is_empty(), "no rua, nothing to report: {v:?}");
    assert!(v.header.contains("dkim=none"), "{}", v.header);
    assert!(v.header.contains("spf=pass"), "{}", v.header);
    assert_eq!((v.dmarc, &v.disposition), ("pass", &Disposition::Accept));

    // Forged: unsigned, from an IP the domain does not allow -> p=reject -> 550 5.7.1.
    let v = check(&w, &message("reject.test", "forged"), FORGED_IP, Some("alice@reject.test")).await;
    assert_eq!(v.dmarc, "fail", "{}", v.header);
    match &v.disposition {
        d @ Disposition::Reject { .. } => {
            let reply = auth_refusal(d).map(|r| r.one_line()).unwrap_or_default();
            assert!(reply.starts_with("550 5.7.1 "), "{reply}")
        }
        other => panic!("expected reject, got {other:?}"),
    }

    // Forged: a real signature, but the body was changed after signing.
    let tampered = w.signed["reject"].replace("Hello Bob.", "Send money.");
    let v = check(&w, &tampered, FORGED_IP, Some("alice@reject.test")).await;
    // mail-auth reports a body hash mismatch as `neutral` (RFC 6376 section 3.9 leaves
    // the word to the verifier); what matters is that it is not a pass.
    assert!(v.header.contains("body hash did not verify"), "{}", v.header);
    assert!(!v.dkim_pass);
    assert!(matches!(v.disposition, Disposition::Reject { .. }), "{v:?}");

    // Envelope from another domain that passes SPF, header From forged: not aligned.
    let v = check(&w, &message("reject.test", "unaligned"), GOOD_IP, Some("x@mail.sender.test")).await;
    assert_eq!(v.spf, "pass");
    assert!(matches!(v.disposition, Disposition::Reject { .. }), "{v:?}");

    // p=quarantine failure -> Junk; p=none failure -> delivered, but reported.
    let v = check(&w, &message("quarantine.test", "q"), FORGED_IP, Some("a@quarantine.test")).await;
    assert_eq!((v.dmarc, &v.disposition), ("fail", &Disposition::Junk));
    assert!(v.header.contains("policy.dmarc=quarantine"), "{}", v.header);
    // Its report row: the quarantine applied, nothing aligned, SPF failed for the envelope.
    assert_eq!(v.reports.len(), 1, "{v:?}");
    let row = &v.reports[0];
    assert_eq!((row.disposition.as_str(), row.dkim_aligned, row.spf_aligned), ("quarantine", false, false));
    assert_eq!(
        (row.spf.domain.as_str(), row.spf.scope.as_str(), row.spf.result.as_str()),
        ("quarantine.test", "mfrom", "fail")
    );
    assert_eq!(
        (row.policy.domain.as_str(), row.policy.p.as_str(), row.policy.adkim.as_str()),
        ("quarantine.test", "quarantine", "r")
    );
    assert_eq!(
        row.policy.rua,
        vec![crate::dmarc::Destination { address: "agg@quarantine.test".into(), max_size: 10 * 1024 * 1024 }]
    );
    assert_eq!(row.source_ip.to_string(), FORGED_IP);
    let v = check(&w, &message("none.test", "n"), FORGED_IP, Some("a@none.test")).await;
    assert_eq!((v.dmarc, &v.disposition), ("fail", &Disposition::Accept));
    let v = check(&w, &w.signed["quarantine"], FORGED_IP, Some("a@quarantine.test")).await;
    assert_eq!((v.dmarc, &v.disposition), ("pass", &Disposition::Accept));
    let row = &v.reports[0];
    assert_eq!((row.disposition.as_str(), row.dkim_aligned, row.spf_aligned), ("none", true, false));
    let dkim: Vec<(&str, &str, &str)> =
        row.dkim.iter().map(|d| (d.domain.as_str(), d.selector.as_str(), d.result.as_str())).collect();
    assert_eq!(dkim, vec![("quarantine.test", "s1", "pass")]);

    // A domain with no records at all: nothing to enforce.
    let v = check(&w, &message("nowhere.test", "x"), FORGED_IP, Some("a@nowhere.test")).await;
    assert_eq!((v.dmarc, &v.disposition), ("none", &Disposition::Accept));

    // The null sender: SPF of the HELO name stands for MAIL FROM.
    let v = check(&w, &message("none.test", "dsn"), GOOD_IP, None).await;
    assert_eq!(v.spf, "pass", "{}", v.header);
    assert!(v.header.contains("smtp.mailfrom=<>"), "{}", v.header);
}

/// The DMARC bypasses of a black-box probe: every one is judged by the policy of the
/// author a mail client shows, or refused.
#[tokio::test]
async fn every_author_is_judged_by_the_strictest_policy() {
    let Some(w) = world() else { return };
    let with_from = |from: &str| message("reject.test", "x").replacen("From: Alice <alice@reject.test>", from, 1);
    let refused = |v: &AuthVerdict| rejected_with_550_571(&v.disposition);
    for from in [
        "From: ceo@reject.test\r\nFrom: x@none.test",
        "FROM: ceo@reject.test\r\nFrom: x@none.test",
        "From: ceo@reject.test, x@none.test",
        "From: x@none.test, ceo@reject.test",
        "From: ceo@reject.test.",
        "From: ceo@(x)reject.test",
        "From: ceo@REJECT.test",
        "From: <ceo@reject.test> x@none.test",
        "X-No-From: here",
    ] {
        let msg = with_from(from);
        assert!(msg.contains(from), "{msg}");
        let v = check(&w, &msg, FORGED_IP, Some("x@none.test")).await;
        assert!(refused(&v), "{from:?} must be refused: {v:?}");
        assert_ne!(v.dmarc, "none", "{from:?}");
    }
    // Several authors: each domain is in the header; quarantine beats none.
    let v = check(&w, &with_from("From: a@none.test, b@quarantine.test"), FORGED_IP, Some("a@none.test")).await;
    assert_eq!((v.dmarc, &v.disposition), ("fail", &Disposition::Junk), "{}", v.header);
    assert!(v.header.contains("header.from=none.test"), "{}", v.header);
    assert!(v.header.contains("header.from=quarantine.test"), "{}", v.header);
    // Several authors of one domain that passes are fine.
    let v = check(&w, &with_from("From: a@none.test, \"B\" <b@none.test>"), GOOD_IP, Some("a@none.test")).await;
    assert_eq!((v.dmarc, &v.disposition), ("pass", &Disposition::Accept), "{}", v.header);
}

#[tokio::test]
async fn temporary_dns_failure_never_rejects() {
    // A resolver pointed at a port where nobody answers: every lookup times out.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    let auth = InboundAuthenticator::new(impatient_resolver(addr));
    let msg = message("reject.test", "tempfail");
    let ip: IpAddr = FORGED_IP.parse().unwrap();
    let v = auth.verify(msg.as_bytes(), ip, "mail.sender.test", Some("a@reject.test"), OURS).await;
    assert!(!matches!(v.disposition, Disposition::Reject { .. }), "{v:?}");
    assert!(v.header.contains("temperror"), "{}", v.header);

    // A verification that cannot finish in time: temperror, delivered.
    let hasty = InboundAuthenticator::new(resolver::build(&[addr]).unwrap()).with_timeout(Duration::from_millis(50));
    let v = hasty.verify(msg.as_bytes(), ip, "mail.sender.test", Some("a@reject.test"), OURS).await;
    assert_eq!((v.dmarc, &v.disposition), ("temperror", &Disposition::Accept));
    assert!(v.header.starts_with("Authentication-Results: mx.ours.test;\r\n\tspf=temperror"), "{}", v.header);

    // Garbage instead of a message: an answer, not a panic; without a usable From:
    // there is no author to judge, which is a refusal, never a pass (RFC 7489 6.6.1).
    for junk in [&b""[..], b"\r\n\r\n", b"no colon here", b"From:\r\n\tx", &[0xff; 64]] {
        let v = auth.verify(junk, ip, "", None, OURS).await;
        assert!(v.header.starts_with("Authentication-Results: mx.ours.test;"), "{}", v.header);
        assert_eq!(v.dmarc, "permerror");
        assert!(rejected_with_550_571(&v.disposition), "{v:?}");
    }
}

/// Like `resolver::build`, but giving up after 100 ms so the test stays fast.
fn impatient_resolver(addr: std::net::SocketAddr) -> hickory_resolver::TokioResolver {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let ns = NameServerConfig::new(addr.ip(), true, vec![udp]);
    let mut builder = hickory_resolver::Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], vec![ns]),
        hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
    );
    builder.options_mut().timeout = std::time::Duration::from_millis(100);
    builder.options_mut().attempts = 1;
    builder.build().unwrap()
}

#[test]
fn strips_only_our_authentication_results() {
    let msg = b"Authentication-Results: mx.ours.test; dkim=pass header.d=bank.test\r\n\
Received: from x\r\n\
authentication-results: (forged comment) MX.OURS.TEST.;\r\n\tspf=pass\r\n\
Authentication-Results: mx.other.test; spf=fail\r\n\
Authentication-Results: mx.ours.test.evil.test; spf=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.ours.test; this is body text\r\n";
    let out = String::from_utf8(strip_our_auth_results(msg, "mx.ours.test").into_owned()).unwrap();
    assert_eq!(
        out,
        "Received: from x\r\n\
Authentication-Results: mx.other.test; spf=fail\r\n\
Authentication-Results: mx.ours.test.evil.test; spf=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.ours.test; this is body text\r\n"
    );
}

#[test]
fn strip_survives_garbage() {
    const ALPHABET: &[u8] = b"Authentication-Results: mx.ours.test;( )\\\r\n\t";
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let samples: [&[u8]; 6] = [
        b"",
        b"\n",
        b"Authentication-Results:",
        b"Authentication-Results: (((",
        b"Authentication-Results: (\\",
        b"\r\n\r\n",
    ];
    for s in samples {
        let _ = strip_our_auth_results(s, "mx.ours.test");
    }
    for len in 0..400 {
        let bytes: Vec<u8> = crate::testing::garbage(&mut seed, ALPHABET, len);
        let out = strip_our_auth_results(&bytes, "mx.ours.test");
        assert!(out.len() <= bytes.len());
    }
}

#[tokio::test]
async fn our_own_signatures_verify() {
    // What submission signs (Ed25519 + RSA) passes our own inbound check, with the
    // records `mailroom dns` prints (the RSA one split into 255-byte strings).
    if !tool_available("dnsmasq") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ring = crate::mailauth::KeyRing::load_or_generate(dir.path(), &["ours.test".to_string()], None).unwrap();
    let signer = crate::mailauth::DomainSigner::new(&ring.domains[0]).unwrap();
    let mut txt: Vec<(String, String)> = vec![("_dmarc.ours.test".into(), "v=DMARC1; p=reject".into())];
    for k in &ring.domains[0].active.keys {
        txt.push((k.dns_name(), k.dns_value()));
    }
    let refs: Vec<(&str, &str)> = txt.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let Some(dns) = TestDns::start(&["test"], &refs, &[]) else { return };
    let auth = InboundAuthenticator::new(resolver::build(&[dns.addr]).unwrap());
    let msg = message("ours.test", "selfsigned");
    let signed = format!("{}{msg}", signer.sign(&[msg.as_bytes()]).unwrap());
    let v = check_with(&auth, &signed, FORGED_IP, Some("alice@ours.test")).await;
    assert_eq!(v.header.matches("dkim=pass").count(), 2, "{}", v.header);
    assert_eq!((v.dmarc, &v.disposition), ("pass", &Disposition::Accept));
}

async fn check_with(auth: &InboundAuthenticator, msg: &str, ip: &str, mail_from: Option<&str>) -> AuthVerdict {
    auth.verify(msg.as_bytes(), ip.parse().unwrap(), "mail.sender.test", mail_from, OURS).await
}

/// A refusal for good, answered `550 5.7.1` by the SMTP layer.
fn rejected_with_550_571(d: &Disposition) -> bool {
    matches!(d, Disposition::Reject { .. }) && auth_refusal(d).is_some_and(|r| r.one_line().starts_with("550 5.7.1 "))
}
