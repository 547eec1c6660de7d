//! TLS policies of outbound mail with the real SMTP client, on loopback: MTA-STS (a
//! policy served over HTTPS), REQUIRETLS (RFC 8689) and `TLS-Required: No`, and DANE
//! (RFC 7672) with TLSA records in a DNSSEC-signed zone served by Knot DNS.

mod common;
#[path = "support/outbound.rs"]
mod outbound;

use std::time::Duration;

use mailroom::queue::ItemOptions;
use outbound::*;

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
}

#[tokio::test]
async fn mta_sts_enforce_refuses_an_mx_outside_the_policy() {
    if !have("dnsmasq") {
        return;
    }
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: *.other.test\r\nmax_age: 86400\r\n";
    let StsCase { mx, queue, id, .. } = &mta_sts_case(policy).await;
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
