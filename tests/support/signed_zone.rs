//! A DNSSEC-signed zone for the DANE tests (tests/it/outbound_tls.rs): Knot DNS serves
//! `remote.test` signed with ECDSA P-256 on a loopback port, and writes the zone's keys
//! as a trust-anchor file (`MAILROOM_DNSSEC_TRUST_ANCHORS`); and the hashes TLSA
//! records are made of.
#![allow(dead_code)]

use std::time::Duration;

use crate::common;
use crate::outbound::Proc;

/// Knot DNS serving `remote.test`, signed with ECDSA P-256, on a loopback port (killed
/// on drop), and the zone's key as a trust-anchor file.
pub struct SignedZone {
    _knot: Proc,
    _dir: tempfile::TempDir,
    pub addr: std::net::SocketAddr,
    pub anchors: std::path::PathBuf,
}

pub fn kdig(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new("kdig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("kdig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `records`: zone-file lines added to the zone (relative names).
pub fn signed_zone(records: &[String]) -> SignedZone {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = common::free_port();
    let mut zone = String::from(
        "$ORIGIN remote.test.\n$TTL 300\n@ SOA ns.remote.test. hostmaster.remote.test. 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n",
    );
    for r in records {
        zone.push_str(r);
        zone.push('\n');
    }
    std::fs::write(d.join("remote.test.zone"), zone).unwrap();
    for sub in ["db", "kasp", "run"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    let conf = format!(
        "server:\n    rundir: \"{0}/run\"\n    listen: 127.0.0.1@{port}\ndatabase:\n    storage: \"{0}/db\"\n\
         acl:\n  - id: local\n    address: 127.0.0.1\n    action: transfer\n\
         template:\n  - id: default\n    storage: \"{0}\"\n    kasp-db: \"{0}/kasp\"\n\
         policy:\n  - id: test\n    algorithm: ecdsap256sha256\n    nsec3: off\n\
         zone:\n  - domain: remote.test\n    file: \"remote.test.zone\"\n    dnssec-signing: on\n    dnssec-policy: test\n    acl: local\n",
        d.display()
    );
    let (knot, addr) = start_knot(d, &conf, port);
    // Signing happens once the zone loads: wait for a signed answer and the keys.
    let mut keys = String::new();
    for _ in 0..200 {
        let signed = kdig(addr, &["+dnssec", "remote.test", "SOA"]).contains("RRSIG");
        keys = kdig(addr, &["+noall", "+answer", "remote.test", "DNSKEY"]);
        if signed && keys.contains("DNSKEY\t257") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both keys: hickory checks each DNSKEY of the set against the anchors or a DS
    // record, and there is no parent zone here to hold one.
    let ksk: Vec<&str> = keys.lines().filter(|l| l.contains("\tDNSKEY\t")).collect();
    assert!(
        !ksk.is_empty(),
        "knotd did not sign remote.test: {}",
        std::fs::read_to_string(d.join("knotd.log")).unwrap_or_default()
    );
    let anchors = d.join("anchors.keys");
    std::fs::write(&anchors, ksk.join("\n") + "\n").unwrap();
    SignedZone { _knot: knot, _dir: dir, addr, anchors }
}

/// Knot DNS serving `zone`'s signed records (read by zone transfer) with `edit` applied
/// to their text and nothing re-signed: a forged answer whose signatures no longer
/// match (bogus), under the same trusted keys.
pub fn forged_copy(zone: &SignedZone, edit: impl Fn(&str) -> String) -> SignedZone {
    let signed = kdig(zone.addr, &["+nocomments", "+nostats", "+noheader", "remote.test", "AXFR"]);
    let mut lines: Vec<&str> = signed.lines().filter(|l| !l.trim().is_empty() && !l.starts_with(';')).collect();
    // The transfer starts and ends with the SOA record.
    let mut seen = std::collections::HashSet::new();
    lines.retain(|l| seen.insert(*l));
    assert!(lines.iter().any(|l| l.contains("RRSIG")), "no signed zone transferred: {signed}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("remote.test.zone"), edit(&(lines.join("\n") + "\n"))).unwrap();
    for sub in ["db", "run"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    let port = common::free_port();
    let conf = format!(
        "server:\n    rundir: \"{0}/run\"\n    listen: 127.0.0.1@{port}\ndatabase:\n    storage: \"{0}/db\"\n\
         template:\n  - id: default\n    storage: \"{0}\"\n\
         zone:\n  - domain: remote.test\n    file: \"remote.test.zone\"\n    dnssec-signing: off\n",
        d.display()
    );
    let (knot, addr) = start_knot(d, &conf, port);
    for _ in 0..200 {
        if kdig(addr, &["+dnssec", "remote.test", "SOA"]).contains("RRSIG") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let anchors = d.join("anchors.keys");
    std::fs::copy(&zone.anchors, &anchors).unwrap();
    SignedZone { _knot: knot, _dir: dir, addr, anchors }
}

/// knotd with `conf` (written to `d/knot.conf`, log in `d/knotd.log`), listening on
/// 127.0.0.1:`port`.
fn start_knot(d: &std::path::Path, conf: &str, port: u16) -> (Proc, std::net::SocketAddr) {
    std::fs::write(d.join("knot.conf"), conf).unwrap();
    let log = std::fs::File::create(d.join("knotd.log")).unwrap();
    let knot = Proc(
        std::process::Command::new("knotd")
            .arg("-c")
            .arg(d.join("knot.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("knotd"),
    );
    (knot, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn spki(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.public_key().raw.to_vec()
}
