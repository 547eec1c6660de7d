//! Transcripts of the web routes: request in, status/headers/body out.

use super::*;
use crate::config::{Config, EnvSource};

fn ctx(extra: &[(&str, &str)]) -> WebContext {
    let mut pairs = vec![
        ("MAILROOM_HOSTNAME".to_string(), "mx.example.com".to_string()),
        ("MAILROOM_DOMAINS".to_string(), "example.com,example.org".to_string()),
        ("MAILROOM_ACME".to_string(), "off".to_string()),
        ("MAILROOM_POP3_LISTEN".to_string(), "off".to_string()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(&EnvSource::from_pairs(pairs)).unwrap().0;
    WebContext {
        hostname: config.hostname,
        domains: config.domains,
        listen: config.listen,
        certs: CertStore::new(),
        tokens: Http01Tokens::new(),
        web: None,
    }
}

fn body(resp: &Response<Full<Bytes>>) -> String {
    use http_body_util::BodyExt;
    let fut = resp.body().clone().collect();
    let collected = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(fut).unwrap();
    String::from_utf8(collected.to_bytes().to_vec()).unwrap()
}

fn header(resp: &Response<Full<Bytes>>, name: &str) -> String {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[test]
fn http01_token_is_answered_with_the_key_authorization_only_while_pending() {
    let c = ctx(&[]);
    let r = route_http(&c, &WebRequest::get("/.well-known/acme-challenge/tok123"));
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    c.tokens.insert("tok123", "tok123.thumbprint");
    let r = route_http(&c, &WebRequest::get("/.well-known/acme-challenge/tok123"));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(&r), "tok123.thumbprint");
}

#[test]
fn port_80_redirects_to_https_on_our_names_only() {
    let c = ctx(&[]);
    let mut req = WebRequest::get("/some/page?x=1");
    req.host = Some("autoconfig.example.org".into());
    let r = route_http(&c, &req);
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&r, "location"), "https://autoconfig.example.org/some/page?x=1");
    req.host = Some("evil.example.net".into());
    assert_eq!(header(&route_http(&c, &req), "location"), "https://mx.example.com/some/page?x=1");
    let c = ctx(&[("MAILROOM_HTTPS_LISTEN", "127.0.0.1:8443")]);
    assert_eq!(header(&route_http(&c, &req), "location"), "https://mx.example.com:8443/some/page?x=1");
}

#[test]
fn mta_sts_policy_is_testing_under_the_self_signed_certificate() {
    let c = ctx(&[]);
    let r = route_https(&c, &WebRequest::get("/.well-known/mta-sts.txt"));
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "content-type").starts_with("text/plain"));
    assert_eq!(body(&r), "version: STSv1\r\nmode: testing\r\nmx: mx.example.com\r\nmax_age: 604800\r\n");
}

#[test]
fn thunderbird_config_on_both_paths_for_the_asked_domain() {
    let c = ctx(&[]);
    for path in ["/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml?emailaddress=bob%40example.org"]
    {
        let r = route_https(&c, &WebRequest::get(path));
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let xml = body(&r);
        assert!(xml.contains("<port>993</port>") && xml.contains("<port>587</port>"), "{xml}");
        assert!(xml.contains("<port>995</port>") && !xml.contains("<port>110</port>"), "POP3S on, POP3 off: {xml}");
    }
    let xml = body(&route_https(&c, &WebRequest::get("/mail/config-v1.1.xml?emailaddress=bob%40example.org")));
    assert!(xml.contains("<emailProvider id=\"example.org\">"), "{xml}");
    let mut req = WebRequest::get("/mail/config-v1.1.xml");
    req.host = Some("autoconfig.example.org".into());
    assert!(body(&route_https(&c, &req)).contains("<emailProvider id=\"example.org\">"));
}

#[test]
fn autoconfig_answers_only_for_our_domains() {
    let c = ctx(&[]);
    for path in [
        "/mail/config-v1.1.xml?emailaddress=bob%40gmail.com",
        "/mail/config-v1.1.xml?emailaddress=not-an-address",
        "/autodiscover/autodiscover.xml?email=dan%40gmail.com",
    ] {
        assert_eq!(route_https(&c, &WebRequest::get(path)).status(), StatusCode::NOT_FOUND, "{path}");
    }
    let mut req = WebRequest::get("/mail/config-v1.1.xml");
    req.host = Some("autoconfig.gmail.com".into());
    assert_eq!(route_https(&c, &req).status(), StatusCode::NOT_FOUND);
    let mut req = WebRequest::get("/Autodiscover/Autodiscover.xml");
    req.method = Method::POST;
    req.body = Bytes::from_static(
        b"<Autodiscover><Request><EMailAddress>eve@gmail.com</EMailAddress></Request></Autodiscover>",
    );
    assert_eq!(route_https(&c, &req).status(), StatusCode::NOT_FOUND);
}

#[test]
fn outlook_autodiscover_post_echoes_the_address() {
    let c = ctx(&[]);
    let mut req = WebRequest::get("/Autodiscover/Autodiscover.xml");
    req.method = Method::POST;
    req.body = Bytes::from_static(
        b"<Autodiscover><Request><EMailAddress>carol@example.com</EMailAddress></Request></Autodiscover>",
    );
    let r = route_https(&c, &req);
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body(&r).contains("<LoginName>carol@example.com</LoginName>"));
    let r = route_https(&c, &WebRequest::get("/autodiscover/autodiscover.xml?email=dan%40example.com"));
    assert!(body(&r).contains("<LoginName>dan@example.com</LoginName>"));
}

#[test]
fn https_health_and_unknown_paths() {
    let c = ctx(&[]);
    assert_eq!(route_https(&c, &WebRequest::get("/healthz")).status(), StatusCode::OK);
    assert_eq!(route_https(&c, &WebRequest::get("/nope")).status(), StatusCode::NOT_FOUND);
    let mut req = WebRequest::get("/.well-known/mta-sts.txt");
    req.method = Method::DELETE;
    assert_eq!(route_https(&c, &req).status(), StatusCode::NOT_FOUND);
}

#[test]
fn query_values_are_percent_decoded() {
    assert_eq!(percent_decode("bob%40example.org"), "bob@example.org");
    assert_eq!(percent_decode("a%2Bb+c"), "a+b+c");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz%4"), "%zz%4");
    assert_eq!(percent_decode("%ff"), "\u{fffd}");
}

#[test]
fn host_header_forms() {
    assert_eq!(strip_port("MX.Example.com:80"), "mx.example.com");
    assert_eq!(strip_port("[::1]:443"), "::1");
    assert_eq!(strip_port("example.com."), "example.com");
    assert_eq!(strip_port(""), "");
}

/// Garbage in: odd paths, queries and Host headers get an answer, never a panic.
#[test]
fn garbage_in() {
    let c = ctx(&[]);
    let pieces = ["/", ".well-known", "acme-challenge", "%", "?", "&", "=", "é", ":", "[", "]", "autoconfig.", "\u{0}"];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..2000 {
        let mut s = String::new();
        for _ in 0..(seed % 9) {
            s.push_str(pieces[(crate::testing::xorshift(&mut seed) % pieces.len() as u64) as usize]);
        }
        let mut req = WebRequest::get(&s);
        req.host = Some(strip_port(&s));
        req.body = Bytes::from(s.clone().into_bytes());
        for method in [Method::GET, Method::POST] {
            req.method = method;
            let _ = route_http(&c, &req);
            let _ = route_https(&c, &req);
        }
    }
}
