//! Transcripts for what IMAP derives from address fields in an IMAP4rev1 session (no
//! ENABLE): ENVELOPE address structures (RFC 3501 §7.4.2), SEARCH FROM/TO/CC/BCC (RFC
//! 3501 §6.4.4) and SORT by address and display name (RFC 5256 §3, RFC 5957 §3).

use super::test_support::*;

#[tokio::test]
async fn envelope_shows_source_routes_rfc3501_7_4_2() {
    let srv = start().await;
    srv.deliver(
        "INBOX",
        "From: <@route:user@domain>\nSubject: routed\nTo: Team <@a.example,@b.example:u@d.example>\n\
         Cc: plain@d.example\nMessage-ID: <r@x>\n\nbody\n",
    )
    .await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    // RFC 3501 §7.4.2: an address is (name adl mailbox host); adl is the at-domain-list
    // (source route) of RFC 5322 §4.4 obs-route, NIL when there is none.
    let r = c.ok("FETCH 1 ENVELOPE").await;
    assert_eq!(
        r[0],
        "* 1 FETCH (ENVELOPE (NIL \"routed\" ((NIL \"@route\" \"user\" \"domain\")) \
         ((NIL \"@route\" \"user\" \"domain\")) ((NIL \"@route\" \"user\" \"domain\")) \
         ((\"Team\" \"@a.example,@b.example\" \"u\" \"d.example\")) ((NIL NIL \"plain\" \"d.example\")) \
         NIL NIL \"<r@x>\"))"
    );
    assert_eq!(r[1], "t3 OK FETCH completed");
}
