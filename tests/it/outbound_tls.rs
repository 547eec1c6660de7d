//! TLS policies of outbound mail with the real SMTP client, on loopback: MTA-STS (a
//! policy served over HTTPS), REQUIRETLS (RFC 8689) and `TLS-Required: No`, and DANE
//! (RFC 7672) with TLSA records in a DNSSEC-signed zone served by Knot DNS.

use crate::common;
use crate::outbound;
use crate::signed_zone;

use std::time::Duration;

use mailroom::queue::ItemOptions;
use mailroom::smtp::client::tls_outcome::{ResultType, TlsPolicy};
use outbound::*;
use signed_zone::*;

/// The MTA-STS policy the cases below serve, as TLS reports name it.
fn sts_policy(mx: &str) -> TlsPolicy {
    TlsPolicy::Sts { id: "20261127".into(), mode: "enforce".into(), mx: vec![mx.into()], max_age: 86400 }
}

#[tokio::test]
async fn mta_sts_enforce_delivers_over_verified_tls() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    let case = mta_sts_case(policy).await;
    wait_empty(&case.queue, 20).await;
    let received = case.mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    // One successful session under the policy, for the TLS report.
    let outcomes = case.tls.0.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!((outcomes[0].domain.as_str(), &outcomes[0].policy), ("remote.test", &sts_policy("mx.remote.test")));
    assert_eq!(outcomes[0].failure, None);
}

#[tokio::test]
async fn mta_sts_enforce_refuses_an_mx_outside_the_policy() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: *.other.test\r\nmax_age: 86400\r\n";
    let StsCase { mx, queue, id, tls, .. } = &mta_sts_case(policy).await;
    for _ in 0..200 {
        if queue.show(id).await.is_some_and(|d| d.envelope.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let detail = queue.show(id).await.unwrap();
    let reply = detail.envelope.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(reply.starts_with("4.7.5") && reply.contains("MTA-STS"), "{reply}");
    assert!(mx.received.lock().unwrap().is_empty());
    // The TLS report counts a validation failure for the MX the policy does not name.
    let outcomes = tls.0.lock().unwrap().clone();
    assert!(!outcomes.is_empty());
    let failure = outcomes[0].failure.clone().expect("a failure");
    assert_eq!(outcomes[0].policy, sts_policy("*.other.test"));
    assert_eq!(failure.result_type, ResultType::ValidationFailure);
    assert_eq!(failure.receiving_mx_hostname.as_deref(), Some("mx.remote.test"));
}

/// A policy that cannot be fetched, with none cached: the mail goes as without a
/// policy (RFC 8461 section 5), and each session counts in the TLS report as the
/// typed fetch failure under the `sts` policy type.
#[tokio::test]
async fn a_policy_that_cannot_be_fetched_is_reported_by_its_failure() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    for (host, kind) in
        [(PolicyHost::Untrusted, ResultType::StsWebpkiInvalid), (PolicyHost::Down, ResultType::StsPolicyFetchError)]
    {
        let case = mta_sts_case_trusting(policy, ItemOptions::default(), false, MSG, host).await;
        wait_empty(&case.queue, 20).await;
        assert_eq!(case.mx.received.lock().unwrap().len(), 1);
        let outcomes = case.tls.0.lock().unwrap().clone();
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert_eq!(outcomes[0].policy, TlsPolicy::StsUnavailable { id: "20261127".into() });
        let failure = outcomes[0].failure.clone().expect("a failure");
        assert_eq!(failure.result_type, kind);
        assert_eq!(failure.receiving_mx_hostname.as_deref(), Some("mx.remote.test"));
    }
}

// ---------------------------------------------------------------------------------------
// RFC 8689 REQUIRETLS.

const REQUIRETLS: ItemOptions = ItemOptions { require_tls: true };

/// The original fails for good at its first attempt with 5.7.30 and `why`, and never
/// reaches the MX.
async fn bounced_with(case: &StsCase, why: &str) {
    for _ in 0..200 {
        if case.queue.show(&case.id).await.is_none_or(|d| d.envelope.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut dsn = String::new();
    for _ in 0..200 {
        if let Some(d) = case.dsns.lock().unwrap().first() {
            dsn = String::from_utf8_lossy(d).into_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dsn.contains("Status: 5.7.30") && dsn.contains(why), "{dsn}");
    assert!(case.mx.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn requiretls_goes_over_verified_tls_to_a_server_that_keeps_it() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: testing\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    let case = mta_sts_case_with(policy, REQUIRETLS, true, MSG).await;
    wait_empty(&case.queue, 20).await;
    let received = case.mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    assert!(received[0].mail_params.split(' ').any(|p| p == "REQUIRETLS"), "{:?}", received[0].mail_params);
}

#[tokio::test]
async fn requiretls_bounces_when_the_server_does_not_support_it() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    let case = mta_sts_case_with(policy, REQUIRETLS, false, MSG).await;
    bounced_with(&case, "does not support REQUIRETLS").await;
}

#[tokio::test]
async fn requiretls_bounces_when_no_policy_validates_the_mx() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: none\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
    let case = mta_sts_case_with(policy, REQUIRETLS, true, MSG).await;
    bounced_with(&case, "cannot be validated").await;
}

/// `TLS-Required: No` (RFC 8689 section 5): the recipient's enforced policy, which
/// excludes this MX, does not stop the message.
#[tokio::test]
async fn tls_required_no_waives_an_enforced_policy() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: *.other.test\r\nmax_age: 86400\r\n";
    let message = b"From: alice@here.test\r\nTo: bob@remote.test\r\nTLS-Required: No\r\nSubject: alert\r\n\r\nThe certificate expired.\r\n";
    let case = mta_sts_case_with(policy, ItemOptions::default(), false, message).await;
    wait_empty(&case.queue, 20).await;
    let received = case.mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(!received[0].mail_params.contains("REQUIRETLS"));
}

// ---------------------------------------------------------------------------------------
// DANE (RFC 7672): Knot DNS signs the zone, the client trusts its key.

/// Four domains of one signed zone, each with its own MX host on the same loopback
/// server: `ee` publishes DANE-EE 3 1 1 of the server's key, `ta` DANE-TA 2 0 1 of its
/// CA, `bad` a DANE-EE record of another key, `un` only a PKIX-EE record (unusable for
/// SMTP). `ee` and `ta` are delivered over TLS (no MTA-STS, no PKIX: the test CA is not
/// trusted), `bad` waits with the reason, `un` goes over TLS with any certificate. A
/// REQUIRETLS message goes to `ee` too: DNSSEC validated its MX. The TLS report sees
/// each host's `tlsa` policy with its records, and `tlsa-invalid` for `un`.
#[tokio::test]
async fn dane_records_decide_which_certificate_is_accepted() {
    if !have("knotd") || !have("kdig") {
        return;
    }
    let names = ["mx-ee.remote.test", "mx-ta.remote.test", "mx-bad.remote.test"];
    let (acceptor, ca, leaf) = test_tls_chain(&names);
    let (mx, port) = start_mx(ServerOptions { tls: Some(acceptor), require_auth: None, old_fashioned: false }).await;
    let ee = format!("3 1 1 {}", sha256_hex(&spki(&leaf)));
    let pkix = format!("1 1 1 {}", sha256_hex(&spki(&leaf)));
    let zone = signed_zone(&[
        "ee MX 10 mx-ee".into(),
        "ta MX 10 mx-ta".into(),
        "bad MX 10 mx-bad".into(),
        "un MX 10 mx-un".into(),
        "mx-ee A 127.0.0.1".into(),
        "mx-ta A 127.0.0.1".into(),
        "mx-bad A 127.0.0.1".into(),
        "mx-un A 127.0.0.1".into(),
        format!("_{port}._tcp.mx-ee TLSA {ee}"),
        format!("_{port}._tcp.mx-ta TLSA 2 0 1 {}", sha256_hex(&ca)),
        format!("_{port}._tcp.mx-bad TLSA 3 1 1 {}", sha256_hex(b"another key")),
        format!("_{port}._tcp.mx-un TLSA {pkix}"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(Some(zone.addr), port);
    client.dnssec_anchors = Some(zone.anchors.clone());
    let tls = std::sync::Arc::new(TlsLog::default());
    client.tls_recorder = Some(tls.clone());
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    for d in ["ee", "ta", "un"] {
        queue.enqueue(Some(&a("alice@here.test")), &[a(&format!("bob@{d}.remote.test"))], MSG, "<d1>").await.unwrap();
    }
    // A secure MX answer validates the MX for REQUIRETLS without any MTA-STS policy.
    mx.requiretls.store(true, std::sync::atomic::Ordering::SeqCst);
    let parts = vec![bytes::Bytes::from_static(MSG)];
    queue
        .enqueue_with(Some(&a("alice@here.test")), &[a("carol@ee.remote.test")], parts, "<d3>", REQUIRETLS)
        .await
        .unwrap();
    let bad = queue.enqueue(Some(&a("alice@here.test")), &[a("bob@bad.remote.test")], MSG, "<d2>").await.unwrap();
    for _ in 0..200 {
        if mx.received.lock().unwrap().len() == 4 && queue.show(&bad).await.is_some_and(|d| d.envelope.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = mx.received.lock().unwrap().clone();
    let mut rcpts: Vec<String> = received.iter().flat_map(|r| r.rcpts.clone()).collect();
    rcpts.sort();
    let expected = ["bob@ee.remote.test", "bob@ta.remote.test", "bob@un.remote.test", "carol@ee.remote.test"];
    assert_eq!(rcpts, expected, "{received:#?}");
    assert!(received.iter().all(|r| r.tls));
    let carol = received.iter().find(|r| r.rcpts == ["carol@ee.remote.test"]).unwrap();
    assert!(carol.mail_params.split(' ').any(|p| p == "REQUIRETLS"), "{carol:?}");
    let detail = queue.show(&bad).await.unwrap();
    let reply = detail.envelope.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(reply.starts_with("4.") && reply.contains("TLSA"), "{reply}");
    // Each host's session under its own `tlsa` policy: the records, typed failures.
    let outcomes = tls.0.lock().unwrap().clone();
    let of = |domain: &str| outcomes.iter().find(|o| o.domain == domain).unwrap_or_else(|| panic!("{outcomes:#?}"));
    let tlsa = |host: &str, record: &str| TlsPolicy::Tlsa { mx_host: Some(host.into()), records: vec![record.into()] };
    assert_eq!((&of("ee.remote.test").policy, &of("ee.remote.test").failure), (&tlsa("mx-ee.remote.test", &ee), &None));
    assert_eq!(of("ta.remote.test").failure, None);
    let un = of("un.remote.test");
    assert_eq!(un.policy, tlsa("mx-un.remote.test", &pkix));
    assert_eq!(un.failure.as_ref().map(|f| f.result_type), Some(ResultType::TlsaInvalid));
    let bad = of("bad.remote.test");
    assert!(
        matches!(&bad.policy, TlsPolicy::Tlsa { mx_host: Some(h), records } if h == "mx-bad.remote.test" && records.len() == 1)
    );
    assert_eq!(bad.failure.as_ref().map(|f| f.result_type), Some(ResultType::ValidationFailure));
}

/// A client trusting `anchors`, asking `dns`, with a TLS log, and its queue's workers
/// running; mail for `rcpt` enqueued. Returns once the first attempt is over.
struct BogusCase {
    mx: std::sync::Arc<ServerState>,
    tls: std::sync::Arc<TlsLog>,
    reply: Option<String>,
    _queue: mailroom::queue::Queue,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn first_attempt(
    dns: std::net::SocketAddr,
    anchors: &std::path::Path,
    mx_port_and_state: (std::sync::Arc<ServerState>, u16),
) -> BogusCase {
    let (mx, port) = mx_port_and_state;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client_settings(Some(dns), port);
    client.dnssec_anchors = Some(anchors.to_path_buf());
    let tls = std::sync::Arc::new(TlsLog::default());
    client.tls_recorder = Some(tls.clone());
    let queue = open_queue(dir.path(), queue_settings(Duration::from_secs(60)), client);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let _w = queue.spawn_workers(rx);
    let id = queue.enqueue(Some(&a("alice@here.test")), &[a("bob@forged.remote.test")], MSG, "<b1>").await.unwrap();
    let mut reply = None;
    for _ in 0..400 {
        match queue.show(&id).await {
            None => break,
            Some(d) if d.envelope.attempts > 0 => {
                reply = d.envelope.recipients[0].last_reply.clone();
                break;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    BogusCase { mx, tls, reply, _queue: queue, _dir: dir, _stop: stop }
}

const FORGED: [&str; 2] = ["forged MX 10 mx", "mx A 127.0.0.1"];

/// An MX answer that fails DNSSEC validation (a copy of the signed zone with the MX
/// record changed and its signature kept, under the keys the client trusts) is a
/// temporary failure: the MX it names is never contacted, and the TLS report counts
/// `dnssec-invalid`.
#[tokio::test]
async fn a_bogus_mx_answer_is_not_followed() {
    if !have("knotd") || !have("kdig") {
        return;
    }
    let zone = signed_zone(&FORGED.map(String::from));
    let forged = forged_copy(&zone, |text| text.replace("\tMX\t10 mx.remote.test.", "\tMX\t20 mx.remote.test."));
    let case = first_attempt(forged.addr, &forged.anchors, start_mx(ServerOptions::default()).await).await;
    let reply = case.reply.clone().expect("still queued after a temporary failure");
    assert!(reply.starts_with("4.7.5") && reply.contains("DNSSEC"), "{reply}");
    assert_eq!(case.mx.connections.load(std::sync::atomic::Ordering::SeqCst), 0, "the forged MX was contacted");
    let outcomes = case.tls.0.lock().unwrap().clone();
    assert!(!outcomes.is_empty(), "{outcomes:?}");
    for o in &outcomes {
        assert_eq!(o.policy, TlsPolicy::Tlsa { mx_host: None, records: Vec::new() });
        let failure = o.failure.clone().expect("a failure");
        assert_eq!((failure.result_type, failure.receiving_mx_hostname), (ResultType::DnssecInvalid, None));
    }
}

/// A TLSA answer that fails DNSSEC validation under a secure MX answer: that host is
/// skipped (the mail waits, 4.7.5), and the TLS report counts `dnssec-invalid` under
/// the host's `tlsa` policy.
#[tokio::test]
async fn a_bogus_tlsa_answer_defers_the_host() {
    if !have("knotd") || !have("kdig") {
        return;
    }
    let (mx, port) = start_mx(ServerOptions::default()).await;
    let tlsa = format!("_{port}._tcp.mx TLSA 3 1 1 {}", sha256_hex(b"a key"));
    let zone = signed_zone(&[FORGED[0].into(), FORGED[1].into(), tlsa]);
    let forged = forged_copy(&zone, |text| text.replace("\tTLSA\t3 1 1 ", "\tTLSA\t2 1 1 "));
    let case = first_attempt(forged.addr, &forged.anchors, (mx, port)).await;
    let reply = case.reply.clone().expect("still queued after a temporary failure");
    assert!(reply.starts_with("4.7.5") && reply.contains("TLSA") && reply.contains("DNSSEC"), "{reply}");
    assert_eq!(case.mx.connections.load(std::sync::atomic::Ordering::SeqCst), 0, "the host was contacted");
    let outcomes = case.tls.0.lock().unwrap().clone();
    assert!(!outcomes.is_empty(), "{outcomes:?}");
    for o in &outcomes {
        assert_eq!(o.policy, TlsPolicy::Tlsa { mx_host: Some("mx.remote.test".into()), records: Vec::new() });
        let failure = o.failure.clone().expect("a failure");
        assert_eq!(failure.result_type, ResultType::DnssecInvalid);
        assert_eq!(failure.receiving_mx_hostname.as_deref(), Some("mx.remote.test"));
    }
}

/// When the trust anchor's own keys do not validate (here: the anchors are another
/// signer's keys; in the field, resolvers that strip DNSSEC records), validation cannot
/// work at all: answers count as unsigned, and mail goes as without DNSSEC.
#[tokio::test]
async fn answers_count_as_unsigned_when_validation_cannot_work() {
    if !have("knotd") || !have("kdig") {
        return;
    }
    let zone = signed_zone(&FORGED.map(String::from));
    let other = signed_zone(&FORGED.map(String::from));
    let case = first_attempt(zone.addr, &other.anchors, start_mx(ServerOptions::default()).await).await;
    assert_eq!(case.reply, None, "delivered at the first attempt");
    let received = case.mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:#?}");
    let outcomes = case.tls.0.lock().unwrap().clone();
    assert!(outcomes.iter().all(|o| o.policy == TlsPolicy::NoPolicyFound), "{outcomes:?}");
}

/// Sends one message through the binary's submission port (STARTTLS, AUTH) with
/// python's smtplib.
const SUBMIT: &str = r#"
import smtplib, ssl, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.starttls(context=ssl._create_unverified_context())
s.login("alice@example.com", "secret")
s.sendmail("alice@example.com", sys.argv[2:], "From: alice@example.com\r\nSubject: DANE\r\nMessage-ID: <dane@example.com>\r\n\r\nHello.\r\n")
s.quit()
"#;

/// The binary end to end: `MAILROOM_DNSSEC_TRUST_ANCHORS` makes the Knot-signed zone
/// secure, so its TLSA records bind. Mail to `ok` (a 3 1 1 record of the sink's key)
/// arrives over TLS; mail to `bad` (a record of another key) stays queued, and
/// `mailroom queue list` shows why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_honours_tlsa_records_of_a_zone_it_trusts() {
    if !have("knotd") || !have("kdig") || !common::have_tool("python3") {
        return;
    }
    let names = ["mx-ok.remote.test", "mx-bad.remote.test"];
    let (acceptor, _ca, leaf) = test_tls_chain(&names);
    let (mx, port) = start_mx(ServerOptions { tls: Some(acceptor), ..Default::default() }).await;
    let zone = signed_zone(&[
        "ok MX 10 mx-ok".into(),
        "bad MX 10 mx-bad".into(),
        "mx-ok A 127.0.0.1".into(),
        "mx-bad A 127.0.0.1".into(),
        format!("_{port}._tcp.mx-ok TLSA 3 1 1 {}", sha256_hex(&spki(&leaf))),
        format!("_{port}._tcp.mx-bad TLSA 3 1 1 {}", sha256_hex(b"another key")),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut env = common::env_listening(&data, &["SUBMISSION"]);
    env.retain(|(k, _)| k != "MAILROOM_DNS_SERVERS");
    env.push(("MAILROOM_DNS_SERVERS".into(), zone.addr.to_string()));
    env.push(("MAILROOM_DOMAINS".into(), "example.com".into()));
    env.push(("MAILROOM_ACCOUNTS".into(), "alice@example.com:{PLAIN}secret".into()));
    env.push(("MAILROOM_OUTBOUND_SMTP_PORT".into(), port.to_string()));
    env.push(("MAILROOM_DNSSEC_TRUST_ANCHORS".into(), zone.anchors.display().to_string()));
    let mx_seen = mx.clone();
    let (listing, log) = tokio::task::spawn_blocking(move || {
        let server = common::Server::start_ready(&env, &data, Duration::from_secs(60));
        let out = std::process::Command::new("python3")
            .args(["-c", SUBMIT, &server.port("submission").to_string(), "bob@ok.remote.test", "carol@bad.remote.test"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), server.log());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let listing = String::from_utf8_lossy(&common::run(&["queue", "list"], &env, "").stdout).into_owned();
            let arrived = !mx_seen.received.lock().unwrap().is_empty();
            if arrived && listing.contains("carol@bad.remote.test (") {
                return (listing, server.log());
            }
            assert!(std::time::Instant::now() < deadline, "{listing}\n{}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let received = mx.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:#?}\n{log}");
    assert_eq!(received[0].rcpts, ["bob@ok.remote.test"]);
    assert!(received[0].tls);
    let line = listing.lines().find(|l| l.contains("carol@bad.remote.test")).unwrap();
    assert!(line.contains("4.7.5") && line.contains("DANE") && line.contains("TLSA"), "{listing}");
    assert!(!listing.contains("bob@ok.remote.test"), "{listing}");
}
