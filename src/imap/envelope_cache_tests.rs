//! The envelope cache seen from a client: an ENVELOPE served from it is byte for byte the
//! one rendered from the message, whatever else the FETCH asks for, and it is found only
//! under its own folder, UIDVALIDITY and UID.

use super::cmd::fetch::EnvelopeKey;
use super::test_support::*;

/// Messages whose envelopes exercise the renderer: encoded words, groups, routes, no
/// Date, a multipart body (so BODYSTRUCTURE and body parts load the whole message).
const MESSAGES: &[&str] = &[
    "Date: Mon, 3 Feb 2025 10:00:00 +0000\nFrom: Bob <bob@example.org>\nTo: alice@example.org\nSubject: Hello\nMessage-ID: <1@example.org>\n\nhi\n",
    "From: =?utf-8?q?J=C3=B6rg?= <j@example.de>\nTo: undisclosed:;, friends: a@x.example, \"Q, R\" <q@y.example>;\nCc: <@route.example:c@z.example>\nSubject: =?utf-8?b?w4RwZmVs?= und Birnen\nIn-Reply-To: <0@example.de>\n\nbody\n",
    "From: carol@example.net\nSubject: parts\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\none\n--b\nContent-Type: text/plain\n\ntwo\n--b--\n",
];

/// What a FETCH answered, without the tagged line.
async fn fetch(c: &mut Client, items: &str) -> Vec<String> {
    let mut r = c.ok(&format!("FETCH 1:* {items}")).await;
    r.pop();
    r
}

#[tokio::test]
async fn cached_envelopes_are_the_rendered_ones_for_every_kind_of_fetch() {
    let server = start().await;
    for m in MESSAGES {
        server.deliver("INBOX", m).await;
    }
    let mut first = server.login().await;
    first.ok("EXAMINE INBOX").await;
    let fresh = fetch(&mut first, "(UID FLAGS ENVELOPE)").await;
    assert_eq!(fresh.len(), 3, "{fresh:?}");

    // Another session, now served from the cache: the same bytes, whether the FETCH needs
    // nothing else of the message, its header, a body part or the whole message.
    let mut second = server.login().await;
    second.ok("EXAMINE INBOX").await;
    assert_eq!(fetch(&mut second, "(UID FLAGS ENVELOPE)").await, fresh);
    let (_uncached_server, mut uncached) = server_without_cache().await;
    assert_eq!(fetch(&mut uncached, "(UID FLAGS ENVELOPE)").await, fresh);
    for items in
        ["(ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "(ENVELOPE BODY.PEEK[1])", "(ENVELOPE BODYSTRUCTURE)"]
    {
        let want = fetch(&mut uncached, items).await;
        assert_eq!(fetch(&mut second, items).await, want, "{items}");
    }
}

/// A server with the same three messages whose cache keeps nothing, and a client on it.
async fn server_without_cache() -> (TestServer, Client) {
    let server = start_with(|ctx| ctx.envelopes = super::cmd::fetch::EnvelopeCache::new(0)).await;
    for m in MESSAGES {
        server.deliver("INBOX", m).await;
    }
    let mut c = server.login().await;
    c.ok("EXAMINE INBOX").await;
    (server, c)
}

#[tokio::test]
async fn an_envelope_is_served_only_for_its_own_folder_validity_and_uid() {
    let server = start().await;
    server.deliver("INBOX", MESSAGES[0]).await;
    server.deliver("INBOX", MESSAGES[0]).await;
    let inbox = server.store.open_mailbox(&owner(), "INBOX").await.unwrap();
    let id = inbox.id();
    let key = |uid_validity, uid| EnvelopeKey::new(id.location.as_str().into(), uid_validity, uid);
    // Planted: what the cache holds is served as it is, without reading the message...
    server.ctx.envelopes.put(key(id.uid_validity, 2), bytes::Bytes::from_static(b"(\"planted\")"));
    // ...and nothing under another UIDVALIDITY or another folder is.
    server.ctx.envelopes.put(key(id.uid_validity + 1, 1), bytes::Bytes::from_static(b"(\"stale\")"));
    let mut c = server.login().await;
    c.ok("CREATE Other").await;
    c.ok("SELECT INBOX").await;
    c.ok("COPY 1:2 Other").await;
    let r = fetch(&mut c, "(UID ENVELOPE)").await;
    assert!(r[0].starts_with("* 1 FETCH (UID 1 ENVELOPE (\"Mon, 3 Feb 2025"), "{r:?}");
    assert_eq!(r[1], "* 2 FETCH (UID 2 ENVELOPE (\"planted\"))");
    c.ok("EXAMINE Other").await;
    let r = fetch(&mut c, "(UID ENVELOPE)").await;
    assert!(r.iter().all(|l| l.contains("Mon, 3 Feb 2025")), "{r:?}");
}
