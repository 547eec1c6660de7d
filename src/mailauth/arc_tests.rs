//! Transcript of a forward: alice@reject.test (DKIM-signed by python's dkim) writes
//! to an alias at forwarder.test, which seals and passes the message on from an
//! address reject.test's SPF does not allow. The final receiver (our verifier, and
//! python's independent `dkim.arc_verify`) sees a valid ARC chain.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use super::*;
use crate::dns::resolver;
use crate::dns::testdns::{TestDns, tool_available};
use crate::mailauth::keys::KeyRing;
use crate::mailauth::verify::tests::{message, python_dkim_available, python_sign};

fn python_arc_verify(dns: &TestDns, msg: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/mailauth/arc_verify_test.py");
    let mut child = Command::new("python3")
        .args([script, &dns.addr.ip().to_string(), &dns.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(msg.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn forwarded_message_keeps_a_valid_arc_chain() {
    if !tool_available("dnsmasq") || !python_dkim_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::load_or_generate(dir.path(), &["forwarder.test".to_string()], None).unwrap();
    let keys = &ring.domains[0];
    let (public, signed) = python_sign("reject.test", &[message("reject.test", "fwd")]);

    let mut txt: Vec<(String, String)> = vec![
        ("reject.test".into(), "v=spf1 ip4:127.0.0.1 -all".into()),
        ("_dmarc.reject.test".into(), "v=DMARC1; p=reject".into()),
        ("s1._domainkey.reject.test".into(), format!("v=DKIM1; k=ed25519; p={public}")),
    ];
    for k in &keys.active.keys {
        txt.push((k.dns_name(), k.dns_value()));
    }
    let refs: Vec<(&str, &str)> = txt.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let Some(dns) = TestDns::start(&["test"], &refs, &[]) else { return };
    let auth = InboundAuthenticator::new(resolver::build(&[dns.addr]).unwrap());
    let key = ArcSealKey::new(keys).unwrap();

    // Hop 1 -> forwarder: alice's server is 127.0.0.1 (SPF pass).
    let sender_ip: IpAddr = "127.0.0.1".parse().unwrap();
    let seal = auth
        .arc_seal(
            &key,
            signed[0].as_bytes(),
            sender_ip,
            "mail.reject.test",
            Some("alice@reject.test"),
            "mx.forwarder.test",
        )
        .await
        .unwrap();
    assert!(seal.starts_with("ARC-Seal: i=1; a=rsa-sha256;"), "{seal}");
    assert!(seal.contains(" d=forwarder.test;") && seal.contains(" cv=none;"), "{seal}");
    assert!(seal.contains("ARC-Message-Signature: i=1;"), "{seal}");
    assert!(seal.contains("ARC-Authentication-Results: i=1; mx.forwarder.test;"), "{seal}");
    assert!(seal.contains("dkim=pass") && seal.contains("dmarc=pass"), "{seal}");
    let forwarded = format!("{seal}{}", signed[0]);

    // Forwarder -> final receiver, from an address reject.test does not allow.
    let forwarder_ip: IpAddr = "192.0.2.25".parse().unwrap();
    let v = auth
        .verify(
            forwarded.as_bytes(),
            forwarder_ip,
            "mx.forwarder.test",
            Some("SRS0=x=y=reject.test=alice@forwarder.test"),
            "mx.final.test",
        )
        .await;
    assert_eq!(v.arc, "pass", "{}", v.header);
    assert!(v.header.contains("arc=pass"), "{}", v.header);

    // An implementation nobody here wrote agrees.
    let py = python_arc_verify(&dns, &forwarded);
    assert!(py.starts_with("pass"), "python dkim.arc_verify: {py}");

    // Tampering after the seal breaks the chain. The next hop records that with
    // cv=fail (RFC 8617 section 5.1.2), and nobody seals after a cv=fail.
    let tampered = forwarded.replace("Hello Bob.", "Hello Mallory.");
    let v = auth.verify(tampered.as_bytes(), forwarder_ip, "mx.forwarder.test", None, "mx.final.test").await;
    assert_ne!(v.arc, "pass", "{}", v.header);
    let second = auth
        .arc_seal(&key, tampered.as_bytes(), forwarder_ip, "mx.forwarder.test", None, "mx.second.test")
        .await
        .unwrap();
    assert!(second.starts_with("ARC-Seal: i=2;") && second.contains(" cv=fail;"), "{second}");
    let failed_chain = format!("{second}{tampered}");
    let err = auth
        .arc_seal(&key, failed_chain.as_bytes(), forwarder_ip, "mx.second.test", None, "mx.third.test")
        .await
        .unwrap_err();
    assert!(matches!(err, SealError::ChainFailed), "{err}");
}
