use super::tally::{MAX_KEYS, OTHER};
use super::*;
use crate::maillog::Stage;

/// One mail log line in the JSON format, as tracing-subscriber writes it.
fn json_line(time: &str, fields: &str) -> String {
    format!(
        r#"{{"timestamp":"{time}","level":"INFO","fields_before":1,{fields},"target":"mailroom::mail","span":{{"msgid":"x","name":"tx"}}}}"#
    )
}

/// A day of traffic: two received (one local, one for a remote domain), one stored,
/// one queued then deferred then delivered, one refused at RCPT, one bounced, a DSN,
/// a judged line, and lines of other targets.
fn day_json() -> String {
    [
        json_line(
            "2026-12-07T09:10:00.1Z",
            r#""msgid":"M1","stage":"judged","service":"smtp","from":"a@Sender.test","to":"bob@here.test","size":1000,"spf":"pass","dkim":"pass","dmarc":"pass","arc":"none","verdict":"accept""#,
        ),
        json_line(
            "2026-12-07T09:10:00.2Z",
            r#""msgid":"M1","stage":"received","service":"smtp","from":"a@Sender.test","to":"bob@here.test","size":1000,"nrcpt":1,"client":"192.0.2.1","helo":"x","tls":"TLSv1.3""#,
        ),
        json_line(
            "2026-12-07T09:10:00.3Z",
            r#""msgid":"M1","stage":"stored","service":"smtp","from":"a@Sender.test","to":"bob@here.test","size":1000,"status":"2.0.0""#,
        ),
        json_line(
            "2026-12-07T10:00:00.0Z",
            r#""msgid":"M2","stage":"received","service":"submission","from":"bob@here.test","to":"carol@remote.test","size":3000,"nrcpt":1,"client":"127.0.0.1","helo":"x","tls":"TLSv1.3""#,
        ),
        json_line(
            "2026-12-07T10:00:00.1Z",
            r#""msgid":"M2","stage":"queued","service":"submission","from":"bob@here.test","to":"carol@remote.test","size":3000,"status":"2.0.0","queue_id":"q1""#,
        ),
        json_line(
            "2026-12-07T10:00:01.0Z",
            r#""msgid":"M2","stage":"deferred","service":"outbound","from":"bob@here.test","to":"carol@remote.test","size":3100,"status":"4.4.1","queue_id":"q1","relay":"","tls":"","delay":1.0,"attempt":1,"reply":"4.4.1 relay: could not be reached""#,
        ),
        json_line(
            "2026-12-07T11:00:00.0Z",
            r#""msgid":"M2","stage":"delivered","service":"outbound","from":"bob@here.test","to":"carol@remote.test","size":3100,"status":"2.0.0","queue_id":"q1","relay":"mx[127.0.0.1]:25","tls":"none","delay":3600.0,"attempt":2,"reply":"250 2.0.0 ok""#,
        ),
        json_line(
            "2026-12-07T11:05:00.0Z",
            r#""msgid":"M3","stage":"refused","service":"smtp","from":"x@spam.test","to":"nobody@here.test","size":0,"status":"5.1.1","reason":"unknown_user","reply":"550 5.1.1 no such user""#,
        ),
        json_line(
            "2026-12-07T11:06:00.0Z",
            r#""msgid":"M4","stage":"bounced","service":"outbound","from":"bob@here.test","to":"reject@remote.test","size":500,"status":"5.1.1","queue_id":"q2","relay":"mx[127.0.0.1]:25","tls":"none","delay":2.0,"attempt":1,"reply":"550 5.1.1 no such user""#,
        ),
        json_line(
            "2026-12-07T11:06:00.1Z",
            r#""msgid":"M4","stage":"dsn","service":"outbound","from":"bob@here.test","to":"bob@here.test","size":500,"queue_id":"q2","kind":"failure","disposition":"stored","dsn_queue_id":"""#,
        ),
        r#"{"timestamp":"2026-12-07T11:07:00.0Z","level":"INFO","message":"accounts loaded","target":"mailroom::app"}"#
            .to_string(),
        "not json at all".to_string(),
    ]
    .join("\n")
}

fn run_on(input: &str, day: &Day) -> Tally {
    let mut t = Tally::default();
    tally(&mut input.as_bytes(), day, &mut t).unwrap();
    t
}

#[test]
fn a_day_of_json_lines_adds_up() {
    let t = run_on(&day_json(), &Day::All);
    assert_eq!((t.received.count, t.received.bytes), (2, 4000));
    assert_eq!((t.delivered.count, t.delivered.bytes), (2, 4100));
    assert_eq!(t.queued.count, 1);
    assert_eq!((t.deferred, t.bounced, t.rejected, t.dsns), (1, 1, 1, 1));
    assert_eq!(t.refusal_reasons.top(10)[0].0, "unknown_user");
    assert_eq!(t.sender_domains.top(10)[0].0, "here.test", "more bytes at the same count");
    assert!(t.sender_domains.top(10).iter().any(|(d, _)| d == "sender.test"), "lowercased");
    assert_eq!(t.recipient_domains.top(10).len(), 2);
    assert_eq!(t.deferral_reasons.top(10)[0].0, "4.4.1 relay: could not be reached");
    assert_eq!(t.bounce_reasons.top(10)[0].0, "550 5.1.1 no such user");
    assert_eq!(t.dmarc.top(10)[0].0, "pass");
    assert_eq!(t.hours[9].received, 1);
    assert_eq!(t.hours[10].deferred, 1);
    assert_eq!((t.hours[11].delivered, t.hours[11].rejected, t.hours[11].bounced), (1, 1, 1));
}

#[test]
fn the_text_format_gives_the_same_events() {
    let text = [
        r#"2026-12-07T09:10:00.200000Z  INFO smtp{service="smtp" client=192.0.2.1}:tx{msgid=M1}: received msgid="M1" stage="received" service="smtp" from="a@sender.test" to="bob@here.test" size=1000 nrcpt=1 client="192.0.2.1" helo="x y" tls="TLSv1.3""#,
        r#"2026-12-07T11:05:00.000000Z  INFO smtp{service="smtp" client=192.0.2.9}:tx{msgid=M3}: mailroom::mail: refused msgid="M3" stage="refused" service="smtp" from="x@spam.test" to="nobody@here.test" size=0 status="5.1.1" reason="unknown_user" reply="550 5.1.1 \"nobody\" unknown""#,
        "\x1b[2m2026-12-07T11:06:00.000000Z\x1b[0m \x1b[32m INFO\x1b[0m \x1b[2mmailroom::mail\x1b[0m\x1b[2m:\x1b[0m bounced \x1b[3mmsgid\x1b[0m\x1b[2m=\x1b[0m\"M4\" \x1b[3mstage\x1b[0m\x1b[2m=\x1b[0m\"bounced\" \x1b[3mto\x1b[0m\x1b[2m=\x1b[0m\"r@remote.test\" \x1b[3mreply\x1b[0m\x1b[2m=\x1b[0m\"550 5.1.1 no\"",
        r#"2026-12-07T11:07:00.000000Z  INFO mailroom::app: accounts loaded version=1"#,
        r#"2026-12-07T11:08:00.000000Z  INFO queue: item done, removed queue_id=q1 msgid="M2""#,
    ]
    .join("\n");
    let events: Vec<Event> = text.lines().filter_map(parse_line).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0].stage, Some(Stage::Received));
    assert_eq!((events[0].from.as_str(), events[0].size, events[0].hour), ("a@sender.test", 1000, 9));
    assert_eq!(events[1].reply, "550 5.1.1 \"nobody\" unknown");
    assert_eq!(events[1].reason, "unknown_user");
    assert_eq!((events[2].stage, events[2].to.as_str()), (Some(Stage::Bounced), "r@remote.test"));
    assert_eq!(events[2].reply, "550 5.1.1 no");
}

#[test]
fn a_day_selects_its_lines() {
    let mut input = day_json();
    input.push('\n');
    input.push_str(&json_line(
        "2026-12-08T00:01:00.0Z",
        r#""msgid":"M9","stage":"received","service":"smtp","from":"z@z.test","to":"bob@here.test","size":7"#,
    ));
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 8).unwrap();
    let day = Day::parse("yesterday", today).unwrap();
    assert_eq!(day, Day::On("2026-12-07".into()));
    assert_eq!(run_on(&input, &day).received.count, 2);
    assert_eq!(run_on(&input, &Day::parse("today", today).unwrap()).received.count, 1);
    let all = run_on(&input, &Day::All);
    assert_eq!(all.per_day().len(), 2);
    let report = String::from_utf8(report_bytes(&all, false)).unwrap();
    assert!(report.contains("Per-Day Traffic Summary"), "{report}");
    assert!(Day::parse("2026-13-01", today).is_err());
    assert!(Day::parse("last week", today).is_err());
}

fn report_bytes(t: &Tally, json: bool) -> Vec<u8> {
    let mut out = Vec::new();
    write_report(t, &Options { day: Day::All, top: 10, json }, &mut out).unwrap();
    out
}

#[test]
fn the_reports_show_the_totals() {
    let t = run_on(&day_json(), &Day::All);
    let text = String::from_utf8(report_bytes(&t, false)).unwrap();
    for expected in [
        "       2   received",
        "       2   delivered",
        "       1   forwarded",
        "       1   rejected  (33%)",
        "       1   unknown_user",
        "0900-1000",
        "       1     3000   here.test",
        "550 5.1.1 no such user",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert!(!text.contains("Per-Day"), "one day only:\n{text}");
    let json: serde_json::Value = serde_json::from_slice(&report_bytes(&t, true)).unwrap();
    assert_eq!(json["received"]["count"], 2);
    assert_eq!(json["delivered"]["bytes"], 4100);
    assert_eq!(json["rejected"], 1);
    assert_eq!(json["percent"]["rejected"], 33);
    assert_eq!(json["refusal_reasons"][0]["key"], "unknown_user");
    assert_eq!(json["hours"][10]["deferred"], 1);
}

#[test]
fn memory_is_bounded_by_keys_not_lines() {
    let mut t = Tally::default();
    for i in 0..MAX_KEYS + 5 {
        let e = Event {
            day: "2026-12-07".into(),
            stage: Some(Stage::Received),
            from: format!("a@d{i}.test"),
            size: 1,
            ..Event::default()
        };
        t.add(&e);
    }
    let top = t.sender_domains.top(3);
    assert_eq!(top.len(), 4);
    assert_eq!(top[3].0, OTHER);
    assert_eq!(top[3].1.count, 5);
}

#[test]
fn overlong_lines_and_bad_bytes_are_skipped() {
    let good = json_line(
        "2026-12-07T09:00:00.0Z",
        r#""msgid":"M1","stage":"received","service":"smtp","from":"a@b.test","to":"c@d.test","size":5"#,
    );
    let mut input = vec![b'x'; MAX_LINE + 10];
    input.push(b'\n');
    input.extend_from_slice(&[0xff, 0xfe, b'\n']);
    input.extend_from_slice(good.as_bytes());
    let mut t = Tally::default();
    tally(&mut std::io::BufReader::with_capacity(16, &input[..]), &Day::All, &mut t).unwrap();
    assert_eq!(t.received.count, 1);
}
