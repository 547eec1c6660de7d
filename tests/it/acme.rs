//! ACME against pebble (Let's Encrypt's test CA) with the real binary: first
//! issuance, restart reusing the stored certificate, forced renewal swapping the
//! served certificate, and real TLS-ALPN-01 / HTTP-01 validation through a dnsmasq
//! that maps the hostname to 127.0.0.1. Plus the web port's autoconfig and MTA-STS
//! answers fetched over HTTPS. Skips when pebble/dnsmasq are missing (fails under
//! CI=true).

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, base_env, free_port, have_tool, http_get, run};
use rustls_pki_types::pem::PemObject;

const HOST: &str = "mx.example.test";

/// A running pebble with its own CA for its listener.
struct Pebble {
    child: Child,
    port: u16,
    dir_url: String,
    ca_file: PathBuf,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// `validate`: real validation against `http_port`/`tls_port` through `dns`;
    /// otherwise every challenge passes (PEBBLE_VA_ALWAYS_VALID).
    /// `validity_secs`: lifetime of issued certificates (pebble's default is 5 years).
    fn start(validate: Option<(u16, u16, u16)>, validity_secs: Option<u64>) -> Pebble {
        let tmp = tempfile::tempdir().unwrap();
        let (ca_pem, cert_pem, key_pem) = pebble_listener_certs();
        let ca_file = tmp.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        std::fs::write(tmp.path().join("cert.pem"), cert_pem).unwrap();
        std::fs::write(tmp.path().join("key.pem"), key_pem).unwrap();
        let port = free_port();
        let mgmt = free_port();
        let (http_port, tls_port) = validate.map(|(h, t, _)| (h, t)).unwrap_or((free_port(), free_port()));
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt}"),
                "certificate": tmp.path().join("cert.pem"),
                "privateKey": tmp.path().join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        if let Some(secs) = validity_secs {
            config["pebble"]["certificateValidityPeriod"] = serde_json::json!(secs);
        }
        let cfg = tmp.path().join("pebble.json");
        std::fs::write(&cfg, config.to_string()).unwrap();
        let log = tmp.path().join("pebble.log");
        let mut cmd = Command::new("pebble");
        cmd.arg("-config").arg(&cfg).env("PEBBLE_VA_NOSLEEP", "1");
        match validate {
            Some((_, _, dns)) => {
                cmd.arg("-dnsserver").arg(format!("127.0.0.1:{dns}"));
            }
            None => {
                cmd.env("PEBBLE_VA_ALWAYS_VALID", "1");
            }
        }
        let out = std::fs::File::create(&log).unwrap();
        cmd.stdout(out.try_clone().unwrap()).stderr(out).stdin(Stdio::null());
        let child = cmd.spawn().expect("start pebble");
        wait_port(port);
        Pebble { child, port, dir_url: format!("https://127.0.0.1:{port}/dir"), ca_file, log, _tmp: tmp }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A CA and a leaf for 127.0.0.1/localhost/acme.example.test, for pebble's own
/// HTTPS listener.
fn pebble_listener_certs() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "test CA for pebble");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "acme.example.test".to_string()]).unwrap();
    leaf.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on {port}");
}

/// Accepts any server certificate: we want to *look* at what is served.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

/// HTTPS request to `addr` with SNI `HOST`: (served leaf DER, status, body).
fn https(addr: SocketAddr, method: &str, path: &str, body: &str) -> (Vec<u8>, u16, String) {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let leaf = conn.peer_certificates().unwrap()[0].to_vec();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (leaf, status, body)
}

fn issuer_cn(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.issuer().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default().to_string()
}

struct Ports {
    https: u16,
    http: u16,
    metrics: u16,
}

fn acme_env(data: &Path, pebble: &Pebble, ports: &Ports, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(data);
    env.retain(|(k, _)| !["MAILROOM_HOSTNAME", "MAILROOM_ACME"].contains(&k.as_str()));
    let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        env.retain(|(x, _)| x != k);
        env.push((k.to_string(), v));
    };
    set(&mut env, "MAILROOM_HOSTNAME", HOST.into());
    set(&mut env, "MAILROOM_DOMAINS", "example.test".into());
    set(&mut env, "MAILROOM_ACME", pebble.dir_url.clone());
    set(&mut env, "MAILROOM_ACME_CA_FILE", pebble.ca_file.display().to_string());
    set(&mut env, "MAILROOM_ACME_EMAIL", "postmaster@example.test".into());
    set(&mut env, "MAILROOM_HTTPS_LISTEN", format!("127.0.0.1:{}", ports.https));
    set(&mut env, "MAILROOM_HTTP_LISTEN", format!("127.0.0.1:{}", ports.http));
    set(&mut env, "MAILROOM_METRICS_LISTEN", format!("127.0.0.1:{}", ports.metrics));
    set(&mut env, "MAILROOM_LOG", "info,mailroom=debug".into());
    for (k, v) in extra {
        set(&mut env, k, v.to_string());
    }
    env
}

fn ports() -> Ports {
    Ports { https: free_port(), http: free_port(), metrics: free_port() }
}

fn start(env: &[(String, String)], ports: &Ports, data: &Path, pebble: &Pebble) -> Server {
    let mut server = Server::start(env, Some(SocketAddr::from(([127, 0, 0, 1], ports.metrics))), data);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        if let Ok((200, _)) = http_get(server.metrics.unwrap(), "/readyz") {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("server exited with {status}:\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("not ready:\n{}\n--- pebble ---\n{}", server.log(), pebble.log());
}

fn https_addr(p: &Ports) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p.https))
}

#[test]
fn issuance_restart_reuse_and_forced_renewal() {
    if !have_tool("pebble") {
        return;
    }
    let pebble = Pebble::start(None, None);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let p = ports();
    let env = acme_env(&data, &pebble, &p, &[]);

    // First start: self-signed until the order completes, then pebble's.
    let mut server = start(&env, &p, &data, &pebble);
    let (first, status, _) = https(https_addr(&p), "GET", "/healthz", "");
    assert_eq!(status, 200);
    assert!(issuer_cn(&first).contains("Pebble"), "served cert issued by {:?}", issuer_cn(&first));
    assert!(server.log().contains("ordering an ACME certificate"));
    for f in ["tls/acme-account.json", "tls/acme/mx.example.test.crt", "tls/acme/mx.example.test.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let (_, metrics) = http_get(server.metrics.unwrap(), "/metrics").unwrap();
    assert!(metrics.contains("mailroom_acme_orders_total{result=\"success\"} 1"), "{metrics}");
    assert!(metrics.contains("mailroom_acme_renewals_total{result=\"success\"} 0"), "the first order is no renewal");

    // With a real certificate the MTA-STS policy enforces.
    let (_, status, policy) = https(https_addr(&p), "GET", "/.well-known/mta-sts.txt", "");
    assert_eq!(status, 200);
    assert_eq!(policy, "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 604800\r\n");
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());

    // Restart: the stored certificate serves, no new order.
    let mut server = start(&env, &p, &data, &pebble);
    let (again, _, _) = https(https_addr(&p), "GET", "/healthz", "");
    assert_eq!(again, first, "restart must serve the stored certificate");
    assert!(server.wait_log("renewal scheduled", Duration::from_secs(20)), "{}", server.log());
    assert!(!server.log().contains("ordering an ACME certificate"), "{}", server.log());
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());

    // Forced renewal: a margin longer than the lifetime makes the stored one due.
    let env = acme_env(&data, &pebble, &p, &[("MAILROOM_ACME_RENEW_BEFORE", "100000d")]);
    let server = start(&env, &p, &data, &pebble);
    assert!(server.wait_log("ACME certificate issued", Duration::from_secs(60)), "{}", server.log());
    let (renewed, _, _) = https(https_addr(&p), "GET", "/healthz", "");
    assert_ne!(renewed, first, "renewal must swap the served certificate");
    assert!(issuer_cn(&renewed).contains("Pebble"));
    assert_ne!(spki(&renewed), spki(&first), "without DANE every order has a new key");
    let (_, metrics) = http_get(server.metrics.unwrap(), "/metrics").unwrap();
    assert!(metrics.contains("mailroom_acme_renewals_total{result=\"success\"} 1"), "{metrics}");
    // The fresh certificate is not re-ordered in a loop.
    assert!(server.wait_log("renewal scheduled", Duration::from_secs(20)), "{}", server.log());
}

fn spki(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.public_key().raw.to_vec()
}

/// The `_25._tcp` TLSA line `mailroom dns` prints.
fn tlsa_line(env: &[(String, String)]) -> String {
    let out = run(&["dns"], env, "");
    let zone = String::from_utf8_lossy(&out.stdout).into_owned();
    zone.lines().find(|l| l.contains("\tTLSA\t")).unwrap_or_else(|| panic!("no TLSA record:\n{zone}")).to_string()
}

/// `MAILROOM_DANE=on`: the first order certifies the self-signed key already served,
/// and a renewal the same key again, so the TLSA record `mailroom dns` printed before
/// the first certificate stays true.
#[test]
fn dane_keeps_the_key_across_issuance_and_renewal() {
    if !have_tool("pebble") {
        return;
    }
    let pebble = Pebble::start(None, None);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let p = ports();
    let env = acme_env(&data, &pebble, &p, &[("MAILROOM_DANE", "on")]);
    let mut server = start(&env, &p, &data, &pebble);
    let (first, _, _) = https(https_addr(&p), "GET", "/healthz", "");
    assert!(issuer_cn(&first).contains("Pebble"));
    let selfsigned = std::fs::read(data.join("tls/selfsigned.crt")).unwrap();
    let selfsigned = rustls_pki_types::CertificateDer::pem_slice_iter(&selfsigned).next().unwrap().unwrap();
    assert_eq!(spki(&first), spki(&selfsigned), "the first order certifies the self-signed key");
    let record = tlsa_line(&env);
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());

    let env = acme_env(&data, &pebble, &p, &[("MAILROOM_DANE", "on"), ("MAILROOM_ACME_RENEW_BEFORE", "100000d")]);
    let server = start(&env, &p, &data, &pebble);
    assert!(server.wait_log("ACME certificate issued", Duration::from_secs(60)), "{}", server.log());
    let (renewed, _, _) = https(https_addr(&p), "GET", "/healthz", "");
    assert_ne!(renewed, first, "renewal must swap the served certificate");
    assert_eq!(spki(&renewed), spki(&first), "the renewal keeps the key");
    assert_eq!(tlsa_line(&env), record);
    assert!(server.log().contains("DANE is on: publish this TLSA record"), "{}", server.log());
}

/// A running server renews a short-lived certificate at two thirds of its
/// lifetime and serves the new one without a restart.
#[test]
fn short_lived_certificate_is_renewed_while_running() {
    if !have_tool("pebble") {
        return;
    }
    let pebble = Pebble::start(None, Some(15));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let p = ports();
    let env = acme_env(&data, &pebble, &p, &[]);
    let server = start(&env, &p, &data, &pebble);
    let (first, _, _) = https(https_addr(&p), "GET", "/healthz", "");
    assert!(issuer_cn(&first).contains("Pebble"));
    let deadline = Instant::now() + Duration::from_secs(40);
    while server.log().matches("ACME certificate issued").count() < 2 {
        assert!(Instant::now() < deadline, "no renewal:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (second, _, _) = https(https_addr(&p), "GET", "/healthz", "");
    assert_ne!(second, first, "the renewed certificate serves without a restart");
    assert!(issuer_cn(&second).contains("Pebble"));
}

/// pebble validates for real: its VA resolves the hostname through dnsmasq to
/// 127.0.0.1 and connects to our 443 (TLS-ALPN-01) or 80 (HTTP-01) test ports.
/// The directory is named by host name too, so our ACME client resolves it with
/// hickory through `MAILROOM_DNS_SERVERS` (no getaddrinfo).
#[test]
fn real_validation_tls_alpn_01_and_http_01() {
    if !have_tool("pebble") || !have_tool("dnsmasq") {
        return;
    }
    let dns_port = free_port();
    let mut dnsmasq = Command::new("dnsmasq")
        .args(["--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1"])
        .arg(format!("--port={dns_port}"))
        .arg(format!("--address=/{HOST}/127.0.0.1"))
        .arg("--address=/acme.example.test/127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    std::thread::sleep(Duration::from_millis(300));

    let p = ports();
    let pebble = Pebble::start(Some((p.http, p.https, dns_port)), None);
    for challenge in ["tls-alpn-01", "http-01"] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let directory = format!("https://acme.example.test:{}/dir", pebble.port);
        let dns = format!("127.0.0.1:{dns_port}");
        let env = acme_env(
            &data,
            &pebble,
            &p,
            &[("MAILROOM_ACME_CHALLENGE", challenge), ("MAILROOM_ACME", &directory), ("MAILROOM_DNS_SERVERS", &dns)],
        );
        let mut server = start(&env, &p, &data, &pebble);
        let (leaf, _, _) = https(https_addr(&p), "GET", "/healthz", "");
        assert!(issuer_cn(&leaf).contains("Pebble"), "{challenge}: {}", server.log());
        if challenge == "tls-alpn-01" {
            // pebble's validator really connected with ALPN acme-tls/1.
            assert!(server.log().contains("TLS-ALPN-01 validation handshake done"), "{}", server.log());
        }
        assert!(server.terminate(Duration::from_secs(10)).unwrap().success());
    }
    let log = pebble.log();
    assert!(log.contains("Attempting to validate w/ HTTP: http://mx.example.test:"), "{log}");
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
}

/// Autoconfig and autodiscover over HTTPS (self-signed, ACME off), parsed as XML by
/// Python's parser; HTTP redirects to HTTPS.
#[test]
fn autoconfig_and_autodiscover_over_https() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let p = ports();
    let (imaps, submissions, sieve) = (free_port(), free_port(), free_port());
    let mut env = base_env(&data);
    for (k, v) in [
        ("MAILROOM_HTTPS_LISTEN", format!("127.0.0.1:{}", p.https)),
        ("MAILROOM_HTTP_LISTEN", format!("127.0.0.1:{}", p.http)),
        ("MAILROOM_METRICS_LISTEN", format!("127.0.0.1:{}", p.metrics)),
        ("MAILROOM_IMAPS_LISTEN", format!("127.0.0.1:{imaps}")),
        ("MAILROOM_SUBMISSIONS_LISTEN", format!("127.0.0.1:{submissions}")),
        ("MAILROOM_MANAGESIEVE_LISTEN", format!("127.0.0.1:{sieve}")),
    ] {
        env.retain(|(x, _)| x != k);
        env.push((k.to_string(), v));
    }
    let mut server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], p.metrics))), &data);
    server.wait_ready(Duration::from_secs(20));

    let (_, status, xml) =
        https(https_addr(&p), "GET", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=a%40example.com", "");
    assert_eq!(status, 200);
    let parsed = python_xml(
        &xml,
        "r=ET.fromstring(s); print([(x.get('type'), x.findtext('port'), x.findtext('socketType'), x.findtext('username')) for x in r.iter() if x.tag in ('incomingServer','outgoingServer')] + [(x.get('type'), x.findtext('port'), x.findtext('socketType')) for x in r.findall('setupServer')])",
    );
    assert_eq!(
        parsed.trim(),
        format!(
            "[('imap', '{imaps}', 'SSL', '%EMAILADDRESS%'), ('smtp', '{submissions}', 'SSL', '%EMAILADDRESS%'), ('managesieve', '{sieve}', 'STARTTLS')]"
        ),
        "{xml}"
    );
    let (_, status, xml) = https(https_addr(&p), "GET", "/mail/config-v1.1.xml", "");
    assert_eq!(status, 200);
    python_xml(&xml, "ET.fromstring(s)");

    let request = "<?xml version=\"1.0\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress>erin@example.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
    let (_, status, xml) = https(https_addr(&p), "POST", "/autodiscover/autodiscover.xml", request);
    assert_eq!(status, 200);
    let parsed = python_xml(
        &xml,
        "ns='{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}'; r=ET.fromstring(s); print([(x.findtext(ns+'Type'), x.findtext(ns+'Port'), x.findtext(ns+'LoginName')) for x in r.iter(ns+'Protocol')])",
    );
    assert_eq!(
        parsed.trim(),
        format!("[('IMAP', '{imaps}', 'erin@example.com'), ('SMTP', '{submissions}', 'erin@example.com')]")
    );

    let (_, policy) = https_policy(&p);
    assert!(policy.contains("mode: testing"), "{policy}");

    let mut s = TcpStream::connect(("127.0.0.1", p.http)).unwrap();
    write!(s, "GET /inbox?x=1 HTTP/1.1\r\nHost: mx.example.com\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 301"), "{reply}");
    assert!(reply.contains(&format!("location: https://mx.example.com:{}/inbox?x=1", p.https)), "{reply}");
}

/// With the CA unreachable the self-signed certificate serves, /readyz says what
/// it waits for, and the failure is counted.
#[test]
fn unreachable_ca_keeps_the_server_up_but_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let p = ports();
    let closed = free_port();
    let mut env = base_env(&data);
    for (k, v) in [
        ("MAILROOM_ACME", format!("https://127.0.0.1:{closed}/dir")),
        ("MAILROOM_HOSTNAME", HOST.to_string()),
        ("MAILROOM_HTTPS_LISTEN", format!("127.0.0.1:{}", p.https)),
        ("MAILROOM_METRICS_LISTEN", format!("127.0.0.1:{}", p.metrics)),
    ] {
        env.retain(|(x, _)| x != k);
        env.push((k.to_string(), v));
    }
    let server = Server::start(&env, Some(SocketAddr::from(([127, 0, 0, 1], p.metrics))), &data);
    assert!(server.wait_log("ACME order failed", Duration::from_secs(20)), "{}", server.log());
    let (status, body) = http_get(server.metrics.unwrap(), "/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("waiting for the ACME certificate for mx.example.test (last attempt failed:"), "{body}");
    let (_, metrics) = http_get(server.metrics.unwrap(), "/metrics").unwrap();
    assert!(metrics.contains("mailroom_acme_orders_total{result=\"failure\"} 1"), "{metrics}");
    let (leaf, status, _) = https(https_addr(&p), "GET", "/healthz", "");
    assert_eq!(status, 200);
    assert_eq!(issuer_cn(&leaf), HOST, "self-signed serves meanwhile");
}

fn https_policy(p: &Ports) -> (u16, String) {
    let (_, status, body) = https(https_addr(p), "GET", "/.well-known/mta-sts.txt", "");
    (status, body)
}

/// Parse `xml` with Python's ElementTree and run `code` on it (`s` is the text).
fn python_xml(xml: &str, code: &str) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!("import sys, xml.etree.ElementTree as ET\ns=sys.stdin.read()\n{code}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "XML does not parse: {}\n{xml}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Two replicas on one PostgreSQL store (each with its own data dir) started together:
/// one holds the `acme` lease and orders, the other gets the certificate through the
/// database and serves the same one; one ACME account, one order.
#[test]
fn replicas_on_one_database_order_once_and_serve_the_same_certificate() {
    if !have_tool("pebble") {
        return;
    }
    let Some(url) = common::test_pg::database() else { return };
    let pebble = Pebble::start(None, None);
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (data_a, data_b) = (tmp_a.path().join("data"), tmp_b.path().join("data"));
    let (p_a, p_b) = (ports(), ports());
    let store = [("MAILROOM_STORE", url.as_str())];
    let (env_a, env_b) = (acme_env(&data_a, &pebble, &p_a, &store), acme_env(&data_b, &pebble, &p_b, &store));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| start(&env_a, &p_a, &data_a, &pebble));
        let b = s.spawn(|| start(&env_b, &p_b, &data_b, &pebble));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (cert_a, status, _) = https(https_addr(&p_a), "GET", "/healthz", "");
    assert_eq!(status, 200);
    assert!(issuer_cn(&cert_a).contains("Pebble"), "{}", a.log());
    let (cert_b, _, _) = https(https_addr(&p_b), "GET", "/healthz", "");
    assert_eq!(cert_a, cert_b, "both replicas serve one certificate");
    let ordered = [&a, &b].iter().filter(|s| s.log().contains("ordering an ACME certificate")).count();
    assert_eq!(ordered, 1, "A:\n{}\nB:\n{}", a.log(), b.log());
    assert!(
        [&a, &b].iter().any(|s| s.log().contains("another replica orders and renews the ACME certificate")),
        "A:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let account = |d: &Path| std::fs::read(d.join("tls/acme-account.json")).unwrap();
    assert_eq!(account(&data_a), account(&data_b), "one ACME account");
}
