//! DNS records: the zone fragment parses as a zone (dnspython), the DKIM record
//! verifies what we sign (python `dkim`, a verifier we did not write), and
//! `mailroom dns --check` against a real DNS server (dnsmasq) says ok / missing /
//! wrong and exits 1 while a required record is missing.

use crate::common;

use std::process::{Command, Stdio};

use common::*;

fn env_for(data: &std::path::Path) -> Vec<(String, String)> {
    let mut env = base_env(data);
    env.push(("MAILROOM_PUBLIC_IPV4".into(), "203.0.113.7".into()));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}secret".into()));
    env
}

#[test]
fn zone_fragment_parses_and_json_has_unsplit_values() {
    let tmp = tempfile::tempdir().unwrap();
    let env = env_for(tmp.path());
    let out = run(&["dns"], &env, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let zone = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "example.com.\t3600\tIN\tMX\t10 mx.example.com.",
        "v=spf1 mx -all",
        "_dmarc.example.com.",
        "._domainkey.example.com.",
        "_mta-sts.example.com.",
        "_smtp._tls.example.com.",
        "_submissions._tcp.example.com.",
        "autoconfig.example.com.",
        "7.113.0.203.in-addr.arpa.\t3600\tIN\tPTR\tmx.example.com.",
    ] {
        assert!(zone.contains(needle), "{needle} missing:\n{zone}");
    }
    // A second run prints the same keys (generated once).
    let again = run(&["dns"], &env, "");
    assert_eq!(zone, String::from_utf8(again.stdout).unwrap());

    let json = run(&["dns", "--json"], &env, "");
    let records: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let rsa = records.as_array().unwrap().iter().find(|r| r["value"].as_str().unwrap().contains("k=rsa")).unwrap();
    assert!(rsa["value"].as_str().unwrap().len() > 255, "JSON values are unsplit");

    if !have_tool("python3") {
        return;
    }
    let script = r#"
import sys, dns.zone
text = sys.stdin.read()
z = dns.zone.from_text(text, origin="example.com.", relativize=False, check_origin=False)
n = sum(1 for _ in z.iterate_rdatas())
assert n >= 15, n
for name, ttl, rd in z.iterate_rdatas("TXT"):
    if "k=rsa" in b"".join(rd.strings).decode():
        assert all(len(s) <= 255 for s in rd.strings)
print("ok", n)
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(zone.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dnspython: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sign with our keys, verify with python's dkim against the records we print.
#[test]
fn published_dkim_records_verify_our_signatures() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let env = env_for(tmp.path());
    let signers =
        mailroom::mailauth::Signers::load(&tmp.path().join("dkim"), &["example.com".to_string()], None).unwrap();
    let body = "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: signed\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello,   world \r\n\r\n";
    let headers = signers.sign("example.com", &[body.as_bytes()]).unwrap().unwrap();
    let signed = format!("{headers}{body}");
    verify_dkim(&env, signed.as_bytes());
}

fn txt_arg(name: &str, value: &str) -> String {
    // dnsmasq separates character strings with commas (our values contain none).
    let parts: Vec<String> = value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    format!("--txt-record={name},{}", parts.join(","))
}

#[test]
fn check_reports_ok_missing_and_wrong() {
    if !have_tool("dnsmasq") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = env_for(tmp.path());
    env.push(("MAILROOM_DNS_SERVERS".into(), format!("127.0.0.1:{port}")));
    let json = run(&["dns", "--json"], &env, "");
    let records: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    let value =
        |kind: &str| records.iter().find(|r| r["kind"] == kind).map(|r| r["value"].as_str().unwrap().to_string());
    let name = |kind: &str| {
        records
            .iter()
            .find(|r| r["kind"] == kind)
            .map(|r| r["name"].as_str().unwrap().trim_end_matches('.').to_string())
    };
    let dkim: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["kind"].as_str().unwrap().starts_with("dkim:"))
        .map(|r| {
            (r["name"].as_str().unwrap().trim_end_matches('.').to_string(), r["value"].as_str().unwrap().to_string())
        })
        .collect();

    // Everything required published, SPF deliberately wrong.
    let mut args = vec![
        "--local=/example.com/".to_string(),
        "--mx-host=example.com,mx.example.com,10".to_string(),
        "--host-record=mx.example.com,203.0.113.7".to_string(),
        txt_arg("example.com", "v=spf1 ip4:192.0.2.1 -all"),
        txt_arg(&name("dmarc").unwrap(), &value("dmarc").unwrap()),
    ];
    for (n, v) in &dkim {
        args.push(txt_arg(n, v));
    }
    let dns = dnsmasq_on(port, &args);
    let out = run(&["dns", "--check"], &env, "");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "SPF is wrong: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ok       MX example.com."), "{text}");
    assert!(text.contains("ok       A mx.example.com."), "{text}");
    assert!(text.contains("wrong    TXT example.com."), "{text}");
    assert!(text.contains("found:    v=spf1 ip4:192.0.2.1 -all"), "{text}");
    assert!(text.contains("missing  TXT _mta-sts.example.com. (recommended)"), "{text}");
    drop(dns);

    // Fix SPF: every required record is ok -> exit 0.
    args[3] = txt_arg("example.com", "v=spf1 mx -all");
    let _dns = dnsmasq_on(port, &args);
    let out = run(&["dns", "--check"], &env, "");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ok       TXT example.com."), "{text}");
}

/// `dkim rotate` makes a pending generation; `dns --check` promotes it once both of
/// its records are published.
#[test]
fn rotation_switches_after_check_sees_new_records() {
    if !have_tool("dnsmasq") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = env_for(tmp.path());
    env.push(("MAILROOM_DNS_SERVERS".into(), format!("127.0.0.1:{port}")));
    assert!(run(&["dns"], &env, "").status.success());
    let rotated = run(&["dkim", "rotate"], &env, "");
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let printed = String::from_utf8_lossy(&rotated.stdout).to_string();
    assert!(printed.contains("._domainkey.example.com.") && printed.contains("k=ed25519"), "{printed}");
    let records: Vec<serde_json::Value> = serde_json::from_slice(&run(&["dns", "--json"], &env, "").stdout).unwrap();
    let pending: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["kind"].as_str().unwrap().starts_with("dkim:") && !r["required"].as_bool().unwrap())
        .map(|r| {
            (r["name"].as_str().unwrap().trim_end_matches('.').to_string(), r["value"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(pending.len(), 2, "{records:?}");
    let mut args = vec!["--local=/example.com/".to_string()];
    for (n, v) in &pending {
        args.push(txt_arg(n, v));
    }
    let _dns = dnsmasq_on(port, &args);
    let out = run(&["dns", "--check"], &env, "");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("signing switches to them now"), "{text}");
    let state = std::fs::read_to_string(tmp.path().join("dkim/example.com/state")).unwrap();
    assert!(state.contains("retired ") && !state.contains("pending "), "{state}");
}

/// SHA-256 of the certificate's public key, by `openssl`: a hash we did not compute.
fn openssl_spki_sha256(cert: &std::path::Path) -> String {
    let script = format!(
        "openssl x509 -in {} -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
        cert.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// `MAILROOM_DANE=on` adds `_25._tcp.<hostname>` TLSA 3 1 1 of the certificate in use
/// (here the operator's files); off, there is none. `dns --check` says `wrong` for a
/// published record of another key, shows the one to publish, and exits 1.
#[test]
fn dane_on_publishes_and_checks_the_tlsa_record() {
    if !have_tool("openssl") || !have_tool("dnsmasq") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["mx.example.com".to_string()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (tmp.path().join("mx.crt"), tmp.path().join("mx.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut env = env_for(&tmp.path().join("data"));
    env.push(("MAILROOM_TLS_CERT_FILE".into(), cert_path.display().to_string()));
    env.push(("MAILROOM_TLS_KEY_FILE".into(), key_path.display().to_string()));
    let off = String::from_utf8(run(&["dns"], &env, "").stdout).unwrap();
    assert!(!off.contains("TLSA"), "{off}");
    env.push(("MAILROOM_DANE".into(), "on".into()));
    let out = run(&["dns"], &env, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let zone = String::from_utf8(out.stdout).unwrap();
    let hash = openssl_spki_sha256(&cert_path);
    let line = format!("_25._tcp.mx.example.com.\t3600\tIN\tTLSA\t3 1 1 {hash}");
    assert!(zone.contains(&line), "{line} missing:\n{zone}");

    let port = free_port();
    env.push(("MAILROOM_DNS_SERVERS".into(), format!("127.0.0.1:{port}")));
    // TLSA is type 52; usage 3, selector 1, matching 1, then a hash of another key.
    let tlsa = |hash: &str| {
        let rr = format!("--dns-rr=_25._tcp.mx.example.com,52,030101{hash}");
        dnsmasq_on(port, &["--local=/example.com/".to_string(), rr])
    };
    let dns = tlsa(&"ab".repeat(32));
    let out = run(&["dns", "--check"], &env, "");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("wrong    TLSA _25._tcp.mx.example.com."), "{text}");
    assert!(text.contains(&format!("expected: 3 1 1 {hash}")), "{text}");
    assert!(text.contains(&format!("found:    3 1 1 {}", "ab".repeat(32))), "{text}");
    drop(dns);
    // The right record: ok (the other required records are still missing).
    let _dns = tlsa(&hash);
    let text = String::from_utf8_lossy(&run(&["dns", "--check"], &env, "").stdout).to_string();
    assert!(text.contains("ok       TLSA _25._tcp.mx.example.com."), "{text}");
}
