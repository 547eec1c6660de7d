//! A 1 MB header block (mail from some list servers, or built to probe us): every view of
//! the header must agree with BODY[] (RFC 9051 6.4.5: BODY[HEADER] is the header "of the
//! message", BODY[TEXT] the body without it), and header searches see all of it.

use super::test_support::*;

/// ~1 MB of header with `X-Needle` after 300 KiB and `X-Last` at the very end.
fn big_header_message() -> String {
    let mut m = String::from("From: Bob <bob@example.org>\nTo: alice@example.org\nSubject: huge header\n");
    let mut i = 0;
    while m.len() < 1024 * 1024 {
        m.push_str(&format!("X-Filler-{i:06}: {}\n", "f".repeat(60)));
        if i == 4500 {
            assert!(m.len() > 300 * 1024);
            m.push_str("X-Needle: found-me\n");
        }
        i += 1;
    }
    m.push_str("X-Last: tail-field\n\nThe body.\n");
    m
}

/// The literal of `* n FETCH (ITEM {len}\r\n...)` as bytes.
fn literal_of(line: &str, item: &str) -> String {
    let at = line.find(&format!("{item} {{")).unwrap_or_else(|| panic!("{item} not in {}", &line[..80]));
    let rest = &line[at + item.len() + 2..];
    let close = rest.find('}').unwrap();
    let len: usize = rest[..close].parse().unwrap();
    rest[close + 3..close + 3 + len].to_string()
}

#[tokio::test]
async fn header_views_agree_with_body_on_a_1mb_header() {
    let srv = start().await;
    srv.deliver("INBOX", &big_header_message()).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let whole = literal_of(&c.ok("FETCH 1 BODY.PEEK[]").await[0], "BODY[]");
    let header = literal_of(&c.ok("FETCH 1 BODY.PEEK[HEADER]").await[0], "BODY[HEADER]");
    let text = literal_of(&c.ok("FETCH 1 BODY.PEEK[TEXT]").await[0], "BODY[TEXT]");
    assert!(header.len() > 1024 * 1024 && header.ends_with("X-Last: tail-field\r\n\r\n"));
    assert_eq!(format!("{header}{text}"), whole);
    let rfc822 = literal_of(&c.ok("FETCH 1 RFC822.HEADER").await[0], "RFC822.HEADER");
    assert_eq!(rfc822, header);
    // alone, BODY[HEADER] is streamed from the file; with ENVELOPE it is parsed: same bytes
    let r = c.ok("FETCH 1 (ENVELOPE BODY.PEEK[HEADER])").await;
    assert_eq!(literal_of(&r[0], "BODY[HEADER]"), header);
    // C: FETCH 1 BODY.PEEK[HEADER.FIELDS (X-Needle X-Last)]
    let r = c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (X-Needle X-Last)]").await;
    let fields = literal_of(&r[0], "BODY[HEADER.FIELDS (X-NEEDLE X-LAST)]");
    assert_eq!(fields, "X-Needle: found-me\r\nX-Last: tail-field\r\n\r\n");
    let r = c.ok("FETCH 1 ENVELOPE").await;
    assert!(r[0].contains("\"huge header\""), "{}", &r[0][..200.min(r[0].len())]);
    // SEARCH HEADER reads the same block
    assert_eq!(c.ok("SEARCH HEADER X-Needle found-me").await[0], "* SEARCH 1");
    assert_eq!(c.ok("SEARCH HEADER X-Last tail-field").await[0], "* SEARCH 1");
    assert_eq!(c.ok("SEARCH HEADER X-Needle absent").await[0], "* SEARCH");
}
