//! The engine against an in-memory script source: what a script decides, as values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use super::*;
use crate::queue::BoxFuture;
use crate::store::{Flag, MailboxOwner, StoreError};

/// Scripts and the reply memory in memory; `folders` are the folders that exist besides
/// INBOX. Shared with the vacation settings tests.
#[derive(Default)]
pub(super) struct Memory {
    pub(super) active: Option<(String, Bytes)>,
    pub(super) scripts: HashMap<String, Bytes>,
    pub(super) remembered: Mutex<HashMap<String, SystemTime>>,
    pub(super) folders: Vec<String>,
}

impl ScriptSource for Memory {
    fn active<'a>(&'a self, _: &'a MailboxOwner) -> BoxFuture<'a, Result<Option<(String, Bytes)>, StoreError>> {
        Box::pin(async move { Ok(self.active.clone()) })
    }
    fn get<'a>(&'a self, _: &'a MailboxOwner, name: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move { Ok(self.scripts.get(name).cloned()) })
    }
    fn remember<'a>(
        &'a self,
        _: &'a MailboxOwner,
        key: &'a str,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut m = self.remembered.lock().unwrap();
            if m.get(key).is_some_and(|t| *t > SystemTime::now()) {
                return Ok(true);
            }
            m.insert(key.to_string(), until);
            Ok(false)
        })
    }
}

impl FolderCheck for Memory {
    fn exists<'a>(&'a self, _: &'a MailboxOwner, folder: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(folder == "INBOX" || self.folders.iter().any(|f| f == folder)) })
    }
}

fn with_script(script: &str) -> Memory {
    Memory {
        active: Some(("main".into(), Bytes::from(script.to_string()))),
        folders: vec!["Lists".into()],
        ..Memory::default()
    }
}

const MESSAGE: &str = "Return-Path: <bob@remote.test>\r\nDelivered-To: alice@here.test\r\nFrom: Bob <bob@remote.test>\r\nTo: alice@here.test\r\nSubject: lunch?\r\nMessage-ID: <m1@remote.test>\r\n\r\nSee you at noon.\r\n";

async fn run_with(engine: &Engine, source: &Memory, message: &str, from: &str, folder: &str) -> Outcome {
    let owner = MailboxOwner::new("alice", "here.test");
    let envelope = SieveEnvelope { from: from.into(), to: "alice@here.test".into() };
    let active = source.active(&owner).await.unwrap();
    let input = RunInput {
        account: &owner,
        message: message.as_bytes(),
        size: message.len() as u64,
        envelope: &envelope,
        verdict: ScanVerdict::default(),
        default_folder: folder,
    };
    engine.run(source, source, active, input).await
}

async fn run(source: &Memory, message: &str, from: &str) -> Outcome {
    run_with(&Engine::new("mx.here.test", AdminScripts::default()), source, message, from, "INBOX").await
}

fn folders(o: &Outcome) -> Vec<&str> {
    o.filings.iter().map(|f| f.folder.as_str()).collect()
}

#[tokio::test]
async fn no_script_keeps_in_the_given_folder_and_junk_stays_junk() {
    let engine = Engine::new("mx.here.test", AdminScripts::default());
    let o = run_with(&engine, &Memory::default(), MESSAGE, "bob@remote.test", "Junk").await;
    assert_eq!(folders(&o), ["Junk"]);
    assert!(!o.ran);
    // A script that does nothing: the implicit keep goes where delivery would have put it.
    let o = run_with(&engine, &with_script("# nothing\r\n"), MESSAGE, "bob@remote.test", "Junk").await;
    assert_eq!(folders(&o), ["Junk"]);
    assert!(o.ran && o.error.is_none());
}

#[tokio::test]
async fn fileinto_with_flags() {
    let s = with_script(
        "require [\"fileinto\", \"imap4flags\"];\r\nif header :contains \"Subject\" \"lunch\" { fileinto :flags [\"\\\\Seen\", \"$Food\"] \"Lists\"; }\r\n",
    );
    let o = run(&s, MESSAGE, "bob@remote.test").await;
    assert_eq!(o.error, None);
    assert_eq!(folders(&o), ["Lists"]);
    assert_eq!(o.filings[0].flags, vec![Flag::Seen, Flag::Keyword(Arc::from("$Food"))]);
}

#[tokio::test]
async fn fileinto_a_missing_folder_keeps_unless_create() {
    let s = with_script("require \"fileinto\";\r\nfileinto \"Nowhere\";\r\n");
    assert_eq!(folders(&run(&s, MESSAGE, "bob@remote.test").await), ["INBOX"]);
    let s = with_script("require [\"fileinto\", \"mailbox\"];\r\nfileinto :create \"Nowhere\";\r\n");
    let o = run(&s, MESSAGE, "bob@remote.test").await;
    assert_eq!(folders(&o), ["Nowhere"]);
    assert!(o.filings[0].create);
    let s = with_script("require [\"fileinto\", \"copy\"];\r\nfileinto :copy \"Lists\";\r\n");
    assert_eq!(folders(&run(&s, MESSAGE, "bob@remote.test").await), ["Lists", "INBOX"]);
}

/// `size` sees the whole message, though the script evaluates a prefix of it; header and
/// body tests still read that prefix.
#[tokio::test]
async fn size_tests_the_whole_message_not_the_prefix() {
    let s = with_script(
        "require [\"fileinto\", \"body\"];\r\nif allof (size :over 2M, size :under 4M, header :contains \"Subject\" \"lunch\", body :contains \"noon\") { fileinto \"Lists\"; }\r\n",
    );
    let engine = Engine::new("mx.here.test", AdminScripts::default());
    let owner = MailboxOwner::new("alice", "here.test");
    let envelope = SieveEnvelope { from: "bob@remote.test".into(), to: "alice@here.test".into() };
    for (size, folder) in [(3 << 20, "Lists"), (MESSAGE.len() as u64, "INBOX"), (5 << 20, "INBOX")] {
        let input = RunInput {
            account: &owner,
            message: MESSAGE.as_bytes(),
            size,
            envelope: &envelope,
            verdict: ScanVerdict::default(),
            default_folder: "INBOX",
        };
        let o = engine.run(&s, &s, s.active.clone(), input).await;
        assert_eq!(o.error, None);
        assert_eq!(folders(&o), [folder], "size {size}");
    }
}

#[tokio::test]
async fn discard_reject_and_redirect() {
    let o = run(&with_script("discard;\r\n"), MESSAGE, "bob@remote.test").await;
    assert!(o.filings.is_empty() && o.redirects.is_empty() && o.reject.is_none());
    let o = run(&with_script("require \"reject\";\r\nreject \"not here\";\r\n"), MESSAGE, "bob@remote.test").await;
    assert_eq!(o.reject.as_deref(), Some("not here"));
    assert!(o.filings.is_empty());
    let o = run(&with_script("redirect \"carol@other.test\";\r\n"), MESSAGE, "bob@remote.test").await;
    assert_eq!(o.redirects, ["carol@other.test"]);
    assert!(o.filings.is_empty());
}

#[tokio::test]
async fn runtime_errors_and_broken_scripts_keep_in_the_default_folder() {
    let o = run(&with_script("this is not sieve"), MESSAGE, "bob@remote.test").await;
    assert!(o.error.is_some());
    assert_eq!(folders(&o), ["INBOX"]);
    // A missing include is a runtime error: the redirect before it is dropped too.
    let s = with_script("require \"include\";\r\nredirect \"carol@other.test\";\r\ninclude \"missing\";\r\n");
    let o = run_with(&Engine::new("mx", AdminScripts::default()), &s, MESSAGE, "bob@remote.test", "Junk").await;
    assert!(o.error.is_some());
    assert_eq!(folders(&o), ["Junk"]);
    assert!(o.redirects.is_empty());
    // A capability that rewrites the message is refused at run time.
    let o = run(&with_script("require \"editheader\";\r\naddheader \"X-A\" \"b\";\r\n"), MESSAGE, "x@y.test").await;
    assert!(o.error.is_some());
    assert_eq!(folders(&o), ["INBOX"]);
}

#[tokio::test]
async fn include_personal_scripts() {
    let mut s = with_script("require [\"include\", \"fileinto\"];\r\ninclude :personal \"lists\";\r\n");
    s.scripts.insert("lists".into(), Bytes::from_static(b"require \"fileinto\";\r\nfileinto \"Lists\";\r\n"));
    assert_eq!(folders(&run(&s, MESSAGE, "bob@remote.test").await), ["Lists"]);
}

const VACATION: &str = "require \"vacation\";\r\nvacation :days 3 :subject \"Away\" \"I am away.\";\r\n";

#[tokio::test]
async fn vacation_answers_once_within_days() {
    let s = with_script(VACATION);
    let o = run(&s, MESSAGE, "bob@remote.test").await;
    assert_eq!(o.error, None);
    assert_eq!(folders(&o), ["INBOX"]);
    assert_eq!(o.replies.len(), 1, "{o:?}");
    assert_eq!(o.replies[0].to, "bob@remote.test");
    let text = String::from_utf8_lossy(&o.replies[0].message).into_owned();
    assert!(text.contains("Subject: Away"), "{text}");
    assert!(text.contains("In-Reply-To: <m1@remote.test>"), "{text}");
    assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
    let again = run(&s, MESSAGE, "bob@remote.test").await;
    assert!(again.replies.is_empty(), "answered twice: {again:?}");
    // Another sender is answered.
    let other = MESSAGE.replace("bob@remote.test", "dave@remote.test");
    assert_eq!(run(&s, &other, "dave@remote.test").await.replies.len(), 1);
}

#[tokio::test]
async fn vacation_never_answers_robots_lists_bulk_or_the_null_sender() {
    let cases = [
        ("Auto-Submitted: auto-generated\r\n", "bob@remote.test"),
        ("List-Id: <rust.lists.test>\r\n", "bob@remote.test"),
        ("Precedence: bulk\r\n", "bob@remote.test"),
        ("Precedence: list\r\n", "bob@remote.test"),
        ("Precedence: junk\r\n", "bob@remote.test"),
        ("", ""),
        ("", "MAILER-DAEMON@remote.test"),
        ("", "alice@here.test"),
    ];
    for (header, from) in cases {
        let s = with_script(VACATION);
        let message = format!("{header}{MESSAGE}");
        let o = run(&s, &message, from).await;
        assert!(o.replies.is_empty(), "answered {header:?} from {from:?}: {o:?}");
        assert_eq!(folders(&o), ["INBOX"]);
        // Nothing recorded: a later personal message from the sender is answered.
        if !from.is_empty() && from.starts_with("bob") {
            assert!(s.remembered.lock().unwrap().is_empty(), "{header:?} was recorded");
        }
    }
}

#[tokio::test]
async fn admin_scripts_run_before_and_after_the_users() {
    let before = compile_admin_script(b"require [\"fileinto\", \"copy\"];\r\nfileinto :copy \"Before\";\r\n").unwrap();
    let after = compile_admin_script(b"require [\"fileinto\", \"copy\"];\r\nfileinto :copy \"After\";\r\n").unwrap();
    let engine = Engine::new("mx", AdminScripts { before: Some(before.clone()), after: Some(after.clone()) });
    let mut s = with_script("require [\"fileinto\", \"copy\"];\r\nfileinto :copy \"Lists\";\r\n");
    s.folders = vec!["Before".into(), "After".into(), "Lists".into()];
    // Whatever the script is called.
    s.active = s.active.map(|(_, bytes)| ("my \"main\" \\ script".to_string(), bytes));
    let o = run_with(&engine, &s, MESSAGE, "bob@remote.test", "INBOX").await;
    assert_eq!(o.error, None);
    assert_eq!(folders(&o), ["Before", "Lists", "After", "INBOX"]);
    // `stop` in the user's script ends the after-script too.
    let mut s = with_script("require \"fileinto\";\r\nfileinto \"Lists\";\r\nstop;\r\n");
    s.folders = vec!["Before".into(), "After".into(), "Lists".into()];
    let o = run_with(&engine, &s, MESSAGE, "bob@remote.test", "INBOX").await;
    assert_eq!(folders(&o), ["Before", "Lists"]);
    // Admin scripts run for an account without a script.
    let s = Memory { folders: vec!["Before".into(), "After".into()], ..Memory::default() };
    let o = run_with(&engine, &s, MESSAGE, "bob@remote.test", "Junk").await;
    assert_eq!(folders(&o), ["Before", "After", "Junk"]);
}

#[test]
fn an_admin_script_that_does_not_compile_names_the_line() {
    let e = compile_admin_script(b"require \"fileinto\";\r\nfileinto;\r\n").unwrap_err();
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn redirect_loops_and_cap() {
    let one = format!("{REDIRECT_HEADER}: bob@here.test\r\nSubject: x\r\n\r\n");
    assert!(redirect_allowed(one.as_bytes(), "alice@here.test"));
    assert!(!redirect_allowed(one.as_bytes(), "bob@here.test"));
    let many: String = (0..MAX_REDIRECTS).map(|i| format!("{REDIRECT_HEADER}: u{i}@here.test\r\n")).collect();
    assert!(!redirect_allowed(format!("{many}\r\n").as_bytes(), "alice@here.test"));
}

#[test]
fn the_cache_recompiles_a_changed_script_and_stays_bounded() {
    let cache = ScriptCache::new(2);
    let mut compiles = 0;
    let mut get = |script: &[u8]| {
        cache
            .get_or_compile("alice@here.test", script, |b| {
                compiles += 1;
                compile_admin_script(b)
            })
            .unwrap();
    };
    get(b"keep;");
    get(b"keep;");
    get(b"discard;");
    get(b"stop;");
    assert_eq!(compiles, 3);
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn spamtest_and_virustest_see_the_inbound_verdict() {
    let script = "require [\"spamtest\", \"virustest\", \"fileinto\", \"relational\", \"comparator-i;ascii-numeric\"];\r\n\
        if spamtest :value \"ge\" :comparator \"i;ascii-numeric\" \"10\" { fileinto \"Lists\"; }\r\n\
        elsif virustest :value \"eq\" :comparator \"i;ascii-numeric\" \"1\" { fileinto \"Clean\"; }\r\n";
    let mut s = with_script(script);
    s.folders.push("Clean".into());
    let engine = Engine::new("mx", AdminScripts::default());
    let owner = MailboxOwner::new("alice", "here.test");
    let envelope = SieveEnvelope { from: "bob@remote.test".into(), to: "alice@here.test".into() };
    for (verdict, expected) in [
        (ScanVerdict { checked: true, junk: true, virus_scanned: true }, "Lists"),
        (ScanVerdict { checked: true, junk: false, virus_scanned: true }, "Clean"),
        (ScanVerdict::default(), "INBOX"),
    ] {
        let input = RunInput {
            account: &owner,
            message: MESSAGE.as_bytes(),
            size: MESSAGE.len() as u64,
            envelope: &envelope,
            verdict,
            default_folder: "INBOX",
        };
        let o = engine.run(&s, &s, s.active.clone(), input).await;
        assert_eq!(o.error, None);
        assert_eq!(folders(&o), [expected], "{verdict:?}");
    }
}

#[tokio::test]
async fn subaddress_detail_uses_our_separator() {
    let s = with_script(
        "require [\"envelope\", \"subaddress\", \"fileinto\"];\r\nif envelope :detail \"to\" \"lists\" { fileinto \"Lists\"; }\r\n",
    );
    let engine = Engine::new("mx", AdminScripts::default());
    let owner = MailboxOwner::new("alice", "here.test");
    for (to, expected) in [("alice+lists@here.test", "Lists"), ("alice@here.test", "INBOX")] {
        let envelope = SieveEnvelope { from: "bob@remote.test".into(), to: to.into() };
        let input = RunInput {
            account: &owner,
            message: MESSAGE.as_bytes(),
            size: MESSAGE.len() as u64,
            envelope: &envelope,
            verdict: ScanVerdict::default(),
            default_folder: "INBOX",
        };
        let o = engine.run(&s, &s, s.active.clone(), input).await;
        assert_eq!(folders(&o), [expected], "{to}");
    }
}
