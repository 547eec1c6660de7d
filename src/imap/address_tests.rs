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

/// One message per shape of address field a SEARCH must see through.
const SEARCH_SHAPES: [&str; 8] = [
    "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.org>",
    "From: \"Doe, John\" <john.doe@example.net>",
    "From: bob@example.com (Bob the Builder)",
    "From: john . smith @ Example . COM",
    "To: Project team: ann@example.org, \"Ben\" <ben@example.org>;",
    "From: \"=?iso-8859-1?q?Andr=E9?=\" <andre@example.fr>",
    "Cc: Carol\n\t<carol@example.org>",
    "Bcc: dave@example.org",
];

#[tokio::test]
async fn search_address_keys_match_every_shape_rfc3501_6_4_4() {
    let srv = start().await;
    for (i, field) in SEARCH_SHAPES.iter().enumerate() {
        srv.deliver("INBOX", &format!("{field}\nSubject: shape {}\n\nbody\n", i + 1)).await;
    }
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    // RFC 3501 §6.4.4: FROM/TO/CC/BCC <string> match messages whose field contains the
    // string; matching is case-insensitive and sees decoded RFC 2047 words.
    for (criteria, expected) in [
        ("FROM jm@EXAMPLE.org", "* SEARCH 1"),
        ("FROM \"Doe, John\"", "* SEARCH 2"),
        ("FROM \"doe, john <john.doe@example.net>\"", "* SEARCH 2"),
        ("FROM john.doe@example.net", "* SEARCH 2"),
        ("FROM builder", "* SEARCH 3"),
        ("FROM john.smith@example.com", "* SEARCH 4"),
        ("FROM JOHN", "* SEARCH 2 4"),
        ("TO \"project team\"", "* SEARCH 5"),
        ("TO ben@example.org", "* SEARCH 5"),
        ("TO \"ben <ben@\"", "* SEARCH 5"),
        ("CC \"carol <carol@example.org>\"", "* SEARCH 7"),
        ("BCC DAVE@example.ORG", "* SEARCH 8"),
        ("FROM nobody", "* SEARCH"),
        ("OR TO ann CC carol", "* SEARCH 5 7"),
    ] {
        let r = c.ok(&format!("SEARCH {criteria}")).await;
        assert_eq!(r[0], expected, "SEARCH {criteria}");
    }
    // Non-ASCII strings come as literals with CHARSET UTF-8 (RFC 3501 §6.4.4).
    for (needle, expected) in [("Jürgen Müller", "* SEARCH 1"), ("müller <jm@", "* SEARCH 1"), ("andré", "* SEARCH 6")]
    {
        let r = c.ok(&format!("SEARCH CHARSET UTF-8 FROM {{{}+}}\r\n{needle}", needle.len())).await;
        assert_eq!(r[0], expected, "FROM {needle}");
    }
}

#[tokio::test]
async fn sort_by_addresses_display_names_and_base_subject_rfc5256_rfc5957() {
    let srv = start().await;
    for msg in [
        "From: \"Zed\" <b@x.example>\nTo: =?utf-8?q?=C3=89mile?= <zz@x.example>\nCc: Mike <m@x.example>\n\
         Subject: Re: [list] Beta\n",
        "From: alice@y.example\nTo: \"Adam\" <yy@x.example>\nCc: <a@x.example>\nSubject: =?utf-8?q?Fwd=3A_alpha?=\n",
        "From: Mark <c@z.example>\nTo: bob@x.example\nCc: Zoe <z@x.example>\nSubject: gamma  (fwd)\n",
        "From: Zed <b@x.example>\nTo: <ann@x.example>\nSubject: FW: re:\tBETA\n",
        // A comment is no display name; a group's first member is its first address.
        "From: zoe@x.example (Aaron)\nTo: Group: \"Quinn\" <q@x.example>;\nSubject: [x] Re: Delta\n",
    ] {
        srv.deliver("INBOX", &format!("{msg}\nbody\n")).await;
    }
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    for (criteria, expected) in [
        // RFC 5256 §3: FROM/TO/CC compare the addr-mailbox of the first address; a message
        // without the field sorts first (empty string); ties go by sequence number.
        ("FROM", "* SORT 2 1 4 3 5"),
        ("TO", "* SORT 4 3 5 2 1"),
        ("CC", "* SORT 4 5 2 1 3"),
        // RFC 5957 §3: the decoded display name, else the addr-spec.
        ("DISPLAYFROM", "* SORT 2 3 1 4 5"),
        ("DISPLAYTO", "* SORT 2 4 3 5 1"),
        // RFC 5256 §2.1 base subject: beta, alpha, gamma, beta, delta.
        ("SUBJECT", "* SORT 2 1 4 5 3"),
        ("REVERSE SUBJECT", "* SORT 3 5 1 4 2"),
        ("SUBJECT REVERSE FROM", "* SORT 2 1 4 5 3"),
    ] {
        let r = c.ok(&format!("SORT ({criteria}) UTF-8 ALL")).await;
        assert_eq!(r[0], expected, "SORT ({criteria})");
    }
}
