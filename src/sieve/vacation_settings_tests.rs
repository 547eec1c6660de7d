//! The vacation settings: validation, the script they make (escaping, dates), reading
//! them back, what the engine does with the script, and the store round trip on both
//! backends.

use bytes::Bytes;
use chrono::{Duration, NaiveDate, Utc};

use super::tests::Memory;
use super::vacation_settings::*;
use super::*;
use crate::store::{MailboxOwner, Store};

fn day(s: &str) -> NaiveDate {
    parse_date(DateField::Start, s).unwrap().unwrap()
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn on(subject: &str, text: &str) -> VacationSettings {
    VacationSettings { enabled: true, subject: subject.into(), text: text.into(), start: None, end: None }
}

#[test]
fn dates_are_yyyy_mm_dd_real_days_or_empty() {
    assert_eq!(parse_date(DateField::Start, "").unwrap(), None);
    assert_eq!(parse_date(DateField::Start, "  ").unwrap(), None);
    assert_eq!(parse_date(DateField::End, " 2026-12-24 ").unwrap(), NaiveDate::from_ymd_opt(2026, 12, 24));
    assert_eq!(parse_date(DateField::End, "2028-02-29").unwrap(), NaiveDate::from_ymd_opt(2028, 2, 29));
    for bad in ["2026-2-1", "2026-02-30", "2027-02-29", "26-02-01", "2026/02/01", "2026-13-01", "２０２６-01-01", "x"]
    {
        let e = parse_date(DateField::End, bad).unwrap_err();
        assert!(matches!(&e, InvalidVacation::BadDate { field: DateField::End, .. }), "{bad}: {e:?}");
        assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
    }
}

#[test]
fn validation_names_the_first_problem_for_the_user() {
    let form = |enabled, subject: &str, text: &str, start: &str, end: &str| {
        VacationSettings::from_form(enabled, subject, text, start, end)
    };
    let ok = form(true, " Away ", "Back on Monday.\n", "2026-12-01", "2026-12-01").unwrap();
    assert_eq!(ok.subject, "Away", "the subject is trimmed");
    assert_eq!((ok.start, ok.end), (Some(day("2026-12-01")), Some(day("2026-12-01"))), "one day is a window");
    assert_eq!(form(true, "a\nb", "t", "", ""), Err(InvalidVacation::SubjectMultiline));
    assert_eq!(form(true, &"é".repeat(MAX_SUBJECT_CHARS), "t", "", "").map(|_| ()), Ok(()));
    assert_eq!(form(true, &"é".repeat(MAX_SUBJECT_CHARS + 1), "t", "", ""), Err(InvalidVacation::SubjectTooLong));
    assert_eq!(form(true, "a\u{7}b", "t", "", ""), Err(InvalidVacation::SubjectControl));
    assert_eq!(form(true, "s", " \r\n\t", "", ""), Err(InvalidVacation::TextEmpty));
    assert!(form(false, "", "", "", "").is_ok(), "off needs no text");
    assert_eq!(form(true, "s", &"x".repeat(MAX_TEXT_BYTES + 1), "", ""), Err(InvalidVacation::TextTooLong));
    assert_eq!(form(true, "s", "a\0b", "", ""), Err(InvalidVacation::TextControl));
    assert_eq!(form(true, "s", "a\u{2028}b", "", ""), Err(InvalidVacation::TextControl));
    assert!(form(true, "s", "tab\there\r\nline two", "", "").is_ok());
    assert_eq!(form(true, "s", "t", "2026-12-02", "2026-12-01"), Err(InvalidVacation::EndBeforeStart));
    let e = form(true, "s", "t", "tomorrow", "").unwrap_err();
    assert_eq!(e.to_string(), "The first day \"tomorrow\" is not a date of the form YYYY-MM-DD.");
}

/// Strings that would break a naive escaping: quotes, backslashes (sieve-rs reads `\\"`
/// as an escaped quote), `$` and an encoded character, a line of one dot, non-ASCII.
const TRICKY_SUBJECT: &str = r#"Re: "out" \ back\\ \n ${hex:41} $x — café"#;
const TRICKY_TEXT: &str =
    "Hello \"you\",\r\n.\r\n..two dots\n.one dot\rC:\\path\\n ${hex:41} ${unicode:263A} $\n\n日本語\n\ttabbed";

#[test]
fn settings_round_trip_through_the_script_and_the_script_compiles() {
    let cases = [
        on(TRICKY_SUBJECT, TRICKY_TEXT),
        on("", "x"),
        VacationSettings { start: Some(day("2026-12-01")), end: Some(day("2026-12-24")), ..on("Away", "Away.") },
        VacationSettings { start: Some(day("2026-12-01")), ..on("Away", "Away.") },
        VacationSettings { end: Some(day("2026-12-24")), ..on("Away", "Away.") },
        VacationSettings { enabled: false, ..on(TRICKY_SUBJECT, TRICKY_TEXT) },
        VacationSettings::default(),
    ];
    for settings in cases {
        let script = settings.to_script();
        compile::check_script(script.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{script}"));
        assert_eq!(VacationSettings::from_script(script.as_bytes()), settings, "{script}");
        assert_eq!(script.lines().next().map(|l| l.starts_with("# mailroom-vacation-settings {")), Some(true));
    }
}

#[test]
fn a_script_without_valid_settings_reads_as_the_defaults() {
    for script in [
        "require \"vacation\";\r\nvacation \"Away\";\r\n",
        "",
        "# mailroom-vacation-settings {not json\r\n",
        // Settings a form would refuse (an end before the start).
        "# mailroom-vacation-settings {\"v\":1,\"enabled\":true,\"subject\":\"s\",\"text\":\"t\",\"start\":\"2026-12-02\",\"end\":\"2026-12-01\"}\r\n",
        "# mailroom-vacation-settings {\"v\":2,\"enabled\":true,\"subject\":\"s\",\"text\":\"t\"}\r\n",
        "# mailroom-vacation-settings {\"v\":1,\"enabled\":true,\"subject\":\"s\",\"text\":\"t\",\"start\":\"soon\"}\r\n",
    ] {
        assert_eq!(VacationSettings::from_script(script.as_bytes()), VacationSettings::default(), "{script}");
    }
    // A settings line written without the optional dates.
    let line = "# mailroom-vacation-settings {\"v\":1,\"enabled\":true,\"subject\":\"s\",\"text\":\"t\"}\n";
    assert_eq!(VacationSettings::from_script(line.as_bytes()), on("s", "t"));
}

impl Memory {
    fn with_vacation(settings: &VacationSettings) -> Memory {
        let mut m = Memory { folders: vec!["Lists".into()], ..Memory::default() };
        m.scripts.insert(VACATION_SCRIPT.into(), Bytes::from(settings.to_script()));
        m
    }

    fn with_active(mut self, script: &str) -> Memory {
        self.active = Some(("mine".into(), Bytes::from(script.to_string())));
        self
    }
}

fn message(from: &str) -> String {
    format!(
        "From: Bob <{from}>\r\nTo: alice@here.test\r\nSubject: lunch?\r\nMessage-ID: <m1.{from}>\r\n\r\nSee you at noon.\r\n"
    )
}

/// One delivery to alice as the courier makes it: the active script and the enabled
/// vacation script from `source`.
async fn deliver(source: &Memory, from: &str, junk: bool) -> Outcome {
    let owner = MailboxOwner::new("alice", "here.test");
    let engine = Engine::new("mx.here.test", AdminScripts::default());
    let active = source.active(&owner).await.unwrap();
    let vacation = delivery_script(source, &owner).await.unwrap();
    let envelope = SieveEnvelope { from: from.into(), to: "alice@here.test".into() };
    let text = message(from);
    let input = RunInput {
        account: &owner,
        message: text.as_bytes(),
        size: text.len() as u64,
        envelope: &envelope,
        verdict: ScanVerdict { checked: true, junk, virus_scanned: false },
        default_folder: if junk { "Junk" } else { "INBOX" },
    };
    engine.run(source, source, AccountScripts { active, vacation }, input).await
}

fn folders(o: &Outcome) -> Vec<&str> {
    o.filings.iter().map(|f| f.folder.as_str()).collect()
}

/// The reply's header field `name` and its body, as sieve-rs built them.
fn reply_parts(o: &Outcome) -> (String, String) {
    assert_eq!(o.replies.len(), 1, "{o:?}");
    let text = String::from_utf8(o.replies[0].message.clone()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let subject = head.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_string();
    (subject, body.to_string())
}

#[tokio::test]
async fn without_a_user_script_the_vacation_replies_and_keeps_the_message() {
    let source = Memory::with_vacation(&on(TRICKY_SUBJECT, TRICKY_TEXT));
    let o = deliver(&source, "bob@remote.test", false).await;
    assert_eq!(o.error, None);
    assert_eq!(folders(&o), ["INBOX"]);
    assert_eq!(o.replies[0].to, "bob@remote.test");
    let (subject, body) = reply_parts(&o);
    assert_eq!(subject, TRICKY_SUBJECT, "every character arrives as typed");
    let expected = TRICKY_TEXT.replace("\r\n", "\n").replace('\r', "\n").replace('\n', "\r\n") + "\r\n";
    assert_eq!(body, expected);
    // The memory: the same sender gets no second reply within the period.
    let o = deliver(&source, "bob@remote.test", false).await;
    assert!(o.replies.is_empty(), "{o:?}");
    assert_eq!(folders(&o), ["INBOX"]);
    assert_eq!(deliver(&source, "carol@remote.test", false).await.replies.len(), 1);
}

#[tokio::test]
async fn the_user_script_runs_too_and_including_the_vacation_once_replies_once() {
    let vacation = on("Away", "Back Monday.");
    let source = Memory::with_vacation(&vacation).with_active("require \"fileinto\";\r\nfileinto \"Lists\";\r\n");
    let o = deliver(&source, "bob@remote.test", false).await;
    assert_eq!((folders(&o), o.replies.len()), (vec!["Lists"], 1), "{o:?}");

    // `stop` and `discard` in the user's script do not silence the reply.
    let source = Memory::with_vacation(&vacation).with_active("discard;\r\nstop;\r\n");
    let o = deliver(&source, "bob@remote.test", false).await;
    assert_eq!((folders(&o), o.replies.len()), (Vec::<&str>::new(), 1), "{o:?}");

    for include in ["include :personal :once", "include :personal"] {
        let user = format!(
            "require [\"include\", \"fileinto\"];\r\n{include} \"{VACATION_SCRIPT}\";\r\nfileinto \"Lists\";\r\n"
        );
        let source = Memory::with_vacation(&vacation).with_active(&user);
        let o = deliver(&source, "bob@remote.test", false).await;
        assert_eq!(o.error, None, "{include}");
        assert_eq!((folders(&o), o.replies.len()), (vec!["Lists"], 1), "{include}: {o:?}");
    }

    // Off: a user script that includes it still runs, and nothing replies.
    let off = VacationSettings { enabled: false, ..vacation };
    let user = format!(
        "require [\"include\", \"fileinto\"];\r\ninclude :personal :once \"{VACATION_SCRIPT}\";\r\nfileinto \"Lists\";\r\n"
    );
    let source = Memory::with_vacation(&off).with_active(&user);
    let o = deliver(&source, "bob@remote.test", false).await;
    assert_eq!((folders(&o), o.replies.len(), o.error.clone()), (vec!["Lists"], 0, None), "{o:?}");
}

#[tokio::test]
async fn disabled_settings_and_spam_get_no_reply_and_no_sieve_run() {
    let off = VacationSettings { enabled: false, ..on("Away", "Back Monday.") };
    let source = Memory::with_vacation(&off);
    assert_eq!(delivery_script(&source, &MailboxOwner::new("alice", "here.test")).await.unwrap(), None);
    let o = deliver(&source, "bob@remote.test", false).await;
    assert!(!o.ran && o.replies.is_empty() && folders(&o) == ["INBOX"], "{o:?}");
    let source = Memory::with_vacation(&on("Away", "Back Monday."));
    let o = deliver(&source, "spammer@remote.test", true).await;
    assert!(o.replies.is_empty() && folders(&o) == ["Junk"], "{o:?}");
}

#[tokio::test]
async fn the_date_window_includes_both_days_and_nothing_outside() {
    let t = today();
    let window =
        |start: Option<NaiveDate>, end: Option<NaiveDate>| VacationSettings { start, end, ..on("Away", "Away.") };
    let cases = [
        (window(Some(t), Some(t)), true),
        (window(Some(t - Duration::days(3)), Some(t + Duration::days(3))), true),
        (window(Some(t), None), true),
        (window(None, Some(t)), true),
        (window(Some(t + Duration::days(1)), None), false),
        (window(None, Some(t - Duration::days(1))), false),
        (window(Some(day("2000-01-01")), Some(day("2000-01-02"))), false),
    ];
    for (settings, replies) in cases {
        let source = Memory::with_vacation(&settings);
        let o = deliver(&source, "bob@remote.test", false).await;
        assert_eq!(o.error, None);
        assert_eq!(o.replies.len(), usize::from(replies), "{settings:?} on {t}");
        assert_eq!(folders(&o), ["INBOX"]);
    }
}

#[test]
fn a_non_ascii_subject_leaves_as_encoded_words() {
    let reply = b"From: alice@here.test\r\nTo: bob@remote.test\r\nSubject: Abwesend \xe2\x80\x94 zur\xc3\xbcck am Montag, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\n\r\nSubject: body stays\r\n";
    let out = String::from_utf8(reply_with_headers(reply)).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.is_ascii(), "{head}");
    assert_eq!(body, "Subject: body stays\r\n");
    let words: Vec<&str> = head.split("Subject: ").nth(1).unwrap().split("\r\n ").collect();
    assert!(words.len() > 1 && words.iter().all(|w| w.len() <= 75 && w.starts_with("=?utf-8?b?")), "{words:?}");
    let decoded: String = words
        .iter()
        .map(|w| {
            use base64::Engine as _;
            let b64 = w.trim_start_matches("=?utf-8?b?").trim_end_matches("?=");
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(decoded, "Abwesend — zurück am Montag, 日本語 日本語 日本語");
    // ASCII stays as it is.
    let ascii = b"Subject: Away\r\n\r\nx";
    assert!(reply_with_headers(ascii).ends_with(ascii));
}

/// `save` and `load` through `Store` on both backends: the settings come back, disabled
/// ones too, and the script is stored under its reserved name only, never active.
#[tokio::test]
async fn settings_are_saved_and_loaded_through_the_store_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![("maildir", Store::open(dir.path(), "mx.example.org").unwrap())];
    if let Some(url) = tokio::task::spawn_blocking(crate::test_pg::database).await.unwrap() {
        let pg = crate::store::PgStore::connect(&url, None).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        stores.push(("postgres", Store::Pg(pg)));
    }
    let alice = MailboxOwner::new("alice", "example.org");
    for (backend, store) in stores {
        assert_eq!(load(&store, &alice).await.unwrap(), VacationSettings::default(), "{backend}");
        store.sieve_put(&alice, "mine", b"keep;\r\n").await.unwrap();
        store.sieve_set_active(&alice, Some("mine")).await.unwrap();

        let settings = VacationSettings {
            start: Some(day("2026-12-01")),
            end: Some(day("2026-12-24")),
            ..on(TRICKY_SUBJECT, TRICKY_TEXT)
        };
        save(&store, &alice, &settings).await.unwrap();
        assert_eq!(load(&store, &alice).await.unwrap(), settings, "{backend}");
        let off = VacationSettings { enabled: false, ..settings.clone() };
        save(&store, &alice, &off).await.unwrap();
        assert_eq!(load(&store, &alice).await.unwrap(), off, "{backend}: the text survives turning it off");
        assert_eq!(delivery_script(&store, &alice).await.unwrap(), None, "{backend}");
        save(&store, &alice, &settings).await.unwrap();
        assert!(delivery_script(&store, &alice).await.unwrap().is_some(), "{backend}");

        let bad = VacationSettings { end: Some(day("2026-11-30")), ..settings.clone() };
        let e = save(&store, &alice, &bad).await.unwrap_err();
        assert!(matches!(e, VacationError::Invalid(InvalidVacation::EndBeforeStart)), "{backend}: {e}");
        assert_eq!(load(&store, &alice).await.unwrap(), settings, "{backend}: a refused save changes nothing");

        let active = store.sieve_active(&alice).await.unwrap().map(|(n, _)| n);
        assert_eq!(active.as_deref(), Some("mine"), "{backend}: the user's active script stays active");
        let names: Vec<String> = store.sieve_list(&alice).await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["mailroom-vacation", "mine"], "{backend}");
        let bob = MailboxOwner::new("bob", "example.org");
        assert_eq!(load(&store, &bob).await.unwrap(), VacationSettings::default(), "{backend}: per account");
    }
}
