use super::*;

/// `value` -> `[name] local@domain` items, `|`-separated, groups as `group:…;`, and
/// a trailing `!` when not well-formed.
fn show(value: &str) -> String {
    let list = parse_address_list(value.as_bytes());
    let one = |m: &Mailbox| match &m.name {
        Some(n) => format!("[{n}] {}", m.address()),
        None => m.address(),
    };
    let mut parts = Vec::new();
    for e in &list.entries {
        match e {
            Entry::Mailbox(m) => parts.push(one(m)),
            Entry::Group { name, members } => {
                parts.push(format!("{name}:{};", members.iter().map(one).collect::<Vec<_>>().join(",")))
            }
        }
    }
    let mut out = parts.join(" | ");
    if !list.well_formed {
        out.push('!');
    }
    out
}

#[test]
fn rfc_5322_forms() {
    assert_eq!(show(" ceo@rejecter.example"), "ceo@rejecter.example");
    assert_eq!(show(" Terry Gray <gray@cac.washington.edu>"), "[Terry Gray] gray@cac.washington.edu");
    assert_eq!(show(" \"Doe, John\" <j@x.example>"), "[Doe, John] j@x.example");
    assert_eq!(show(" \"john doe\"@x.example"), "john doe@x.example");
    assert_eq!(show(" a@x.example, B <b@y.example>"), "a@x.example | [B] b@y.example");
    assert_eq!(show(" team: a@x.org, b@y.org;"), "team:a@x.org,b@y.org;");
    assert_eq!(show(" undisclosed-recipients:;"), "undisclosed-recipients:;");
    assert_eq!(show(" =?utf-8?q?J=C3=BCrgen?= <j@example.org>"), "[=?utf-8?q?J=C3=BCrgen?=] j@example.org");
    assert_eq!(show(" \"Jürgen\" <j@example.org>"), "[Jürgen] j@example.org");
    assert_eq!(show(" a@[192.0.2.1]"), "a@[192.0.2.1]");
}

#[test]
fn comments_trailing_dots_and_case_are_normalised() {
    assert_eq!(show(" ceo@(x)rejecter.example"), "ceo@rejecter.example");
    assert_eq!(show(" ceo@rejecter.example."), "ceo@rejecter.example");
    assert_eq!(show(" ceo@Rejecter.EXAMPLE (CEO)"), "ceo@rejecter.example");
    assert_eq!(show(" (a (nested) comment) ceo(x)@(y)rejecter(z).(w)example"), "ceo@rejecter.example");
    assert_eq!(show(" Ceo\r\n <ceo@rejecter.example>"), "[Ceo] ceo@rejecter.example");
}

#[test]
fn obsolete_forms() {
    assert_eq!(show(" <@route.example,@other.example:ceo@rejecter.example>"), "ceo@rejecter.example");
    let route = |v: &str| parse_address_list(v.as_bytes()).mailboxes().map(|m| m.route.clone()).collect::<Vec<_>>();
    assert_eq!(
        route(" <@route.example,@other.example:ceo@rejecter.example>"),
        [Some("@route.example,@other.example".into())]
    );
    assert_eq!(route(" Name <@Route.Example:user@domain>, x@y.example"), [Some("@Route.Example".into()), None]);
    assert_eq!(route(" <,@a.example, ,@b.example:u@d.example>"), [Some("@a.example,@b.example".into())]);
    assert!(parse_address_list(b" <@a.example:u@d.example>").well_formed);
    assert_eq!(show(" john . doe @ rejecter . example"), "john.doe@rejecter.example");
    assert_eq!(show(" a@x.example,, ,b@y.example"), "a@x.example | b@y.example");
    assert_eq!(show(" John Q. Public <jqp@x.example>"), "[John Q. Public] jqp@x.example");
}

#[test]
fn attacks_are_ill_formed_but_still_show_what_a_reader_sees() {
    assert_eq!(show(" <ceo@rejecter.example> x@sender.example"), "ceo@rejecter.example | x@sender.example!");
    assert_eq!(show(" ceo@rejecter.example x@sender.example"), "ceo@rejecter.example | x@sender.example!");
    assert_eq!(show(" ceo"), "ceo!");
    assert_eq!(show(" <>"), "!");
    assert_eq!(show(" ceo@rejecter..example"), "ceo@rejecter..example!");
    assert_eq!(show(" \"unterminated <ceo@rejecter.example>"), "unterminated <ceo@rejecter.example>!");
    assert_eq!(show(" ceo@rejecter.example (open"), "ceo@rejecter.example!");
    assert_eq!(show(" team: a@x.org"), "team:a@x.org;!");
    assert_eq!(show(" a@x.example)"), "a@x.example!");
}

fn authors_of(header: &str) -> Result<Vec<String>, AuthorError> {
    authors(header.as_bytes()).map(|v| v.iter().map(Mailbox::address).collect())
}

#[test]
fn exactly_one_from_with_host_name_domains() {
    let one = "From: CEO <ceo@rejecter.example>\r\nTo: a@b.example\r\n\r\nbody\r\nFrom: x@y.example\r\n";
    assert_eq!(authors_of(one), Ok(vec!["ceo@rejecter.example".into()]));
    let two = "From: ceo@rejecter.example\r\nFrom: x@sender.example\r\n\r\n";
    assert_eq!(authors_of(two), Err(AuthorError::SeveralFrom(2)));
    let cased = "FROM: ceo@rejecter.example\r\nFrom: x@sender.example\r\n\r\n";
    assert_eq!(authors_of(cased), Err(AuthorError::SeveralFrom(2)));
    let spaced = "From : ceo@rejecter.example\r\nfrom: x@sender.example\r\n\r\n";
    assert_eq!(authors_of(spaced), Err(AuthorError::SeveralFrom(2)));
    assert_eq!(authors_of("Subject: hi\r\n\r\n"), Err(AuthorError::NoFrom));
    assert_eq!(authors_of(""), Err(AuthorError::NoFrom));
    let list = "From: ceo@rejecter.example, x@sender.example\r\n\r\n";
    assert_eq!(authors_of(list), Ok(vec!["ceo@rejecter.example".into(), "x@sender.example".into()]));
    let angle = "From: <ceo@rejecter.example> x@sender.example\r\n\r\n";
    assert_eq!(authors_of(angle), Err(AuthorError::Unparseable));
    assert_eq!(authors_of("From: ceo@rejecter.example.\r\n\r\n"), Ok(vec!["ceo@rejecter.example".into()]));
    // A source route names no author: DMARC judges the addr-spec after it.
    let routed = "From: <@sender.example:ceo@rejecter.example>\r\n\r\n";
    assert_eq!(authors_of(routed), Ok(vec!["ceo@rejecter.example".into()]));
    assert_eq!(authors_of("From: ceo@(x)rejecter.example\r\n\r\n"), Ok(vec!["ceo@rejecter.example".into()]));
    assert_eq!(authors_of("From: ceo@[192.0.2.1]\r\n\r\n"), Err(AuthorError::NoAddress));
    assert_eq!(authors_of("From: ceo@rejecter_example\r\n\r\n"), Err(AuthorError::NoAddress));
    assert_eq!(authors_of("From: undisclosed:;\r\n\r\n"), Err(AuthorError::NoAddress));
    assert_eq!(authors_of("From:\r\n\r\n"), Err(AuthorError::NoAddress));
    let many = "From: a@a.example, b@b.example, c@c.example, d@d.example, e@e.example, f@f.example\r\n\r\n";
    assert_eq!(authors_of(many), Err(AuthorError::TooManyDomains));
}

#[test]
fn garbage_in_never_panics() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet = b"ab.@<>,;:()\"\\[] \r\n\x00\xff";
    for len in 0..400 {
        let bytes = crate::testing::garbage(&mut seed, alphabet, len);
        let _ = parse_address_list(&bytes);
        let mut header = b"From:".to_vec();
        header.extend_from_slice(&bytes);
        let _ = authors(&header);
    }
}
