//! The credentials rules on a real (Maildir) store: the override rule, app passwords,
//! "require app passwords", and that no change waits for the auth cache.

use std::sync::Arc;

use super::*;
use crate::accounts::parse_accounts;

fn directory(alice_entry: &str) -> Directory {
    let accounts = parse_accounts(&format!("alice@example.com:{alice_entry}\nbob@example.com:{{PLAIN}}bob-password"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    Directory::new(vec!["example.com".into()], accounts, Vec::new()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn alice() -> Address {
    Address::parse("alice@example.com").unwrap()
}

struct Rig {
    _dir: tempfile::TempDir,
    directory: Arc<Directory>,
    credentials: Credentials,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "mx.example.com").unwrap();
    let directory = Arc::new(directory("{PLAIN}old-password"));
    let credentials = Credentials::new(store, directory.clone());
    Rig { _dir: dir, directory, credentials }
}

impl Rig {
    /// What a login as `user` with `password` for `purpose` gives, as `net::verify_login` runs it.
    async fn login(&self, user: &str, password: &str, purpose: Purpose) -> Option<Verified> {
        let check = self.credentials.prepare_login(user).await.unwrap();
        check.verify(password, purpose)
    }

    async fn logs_in(&self, password: &str, purpose: Purpose) -> bool {
        self.login("alice@example.com", password, purpose).await.is_some()
    }
}

#[tokio::test]
async fn a_changed_password_works_at_once_and_the_old_one_no_more() {
    let rig = rig();
    assert!(rig.logs_in("old-password", Purpose::Mail).await, "configured password before any change");
    // The success above is cached now: the change must not wait for the cache.
    rig.credentials.change_password(&alice(), "old-password", "new password 1").await.unwrap();
    assert!(!rig.logs_in("old-password", Purpose::Mail).await);
    assert!(!rig.logs_in("old-password", Purpose::Web).await);
    assert!(rig.logs_in("new password 1", Purpose::Mail).await);
    assert!(rig.logs_in("new password 1", Purpose::Web).await);
    // A bare local part means the primary domain, with the same record.
    assert!(rig.login("alice", "new password 1", Purpose::Mail).await.is_some());
    // Bob's configured password is untouched.
    assert!(rig.login("bob@example.com", "bob-password", Purpose::Mail).await.is_some());

    rig.credentials.change_password(&alice(), "new password 1", "new password 2").await.unwrap();
    assert!(!rig.logs_in("new password 1", Purpose::Mail).await, "the cached first change is gone too");
    assert!(rig.logs_in("new password 2", Purpose::Mail).await);
}

#[tokio::test]
async fn the_environment_wins_again_once_the_operator_changes_the_entry() {
    let rig = rig();
    rig.credentials.change_password(&alice(), "old-password", "user chosen pw").await.unwrap();
    // The operator reloads the accounts with the entry unchanged: the override stays.
    rig.directory.replace_with(directory("{PLAIN}old-password"));
    assert!(rig.logs_in("user chosen pw", Purpose::Mail).await);
    assert!(!rig.logs_in("old-password", Purpose::Mail).await);
    // The operator resets the password: the environment wins, the override is ignored.
    rig.directory.replace_with(directory("{PLAIN}operator-reset"));
    assert!(rig.logs_in("operator-reset", Purpose::Mail).await);
    assert!(!rig.logs_in("user chosen pw", Purpose::Mail).await);
    // ... and dropped at the next write of the record.
    rig.credentials.set_require_app_passwords(&alice(), false).await.unwrap();
    let owner = owner_of(&alice());
    assert!(rig.credentials.store.credentials_get(&owner).await.unwrap().record.password_override.is_none());
    // Going back to the old entry does not revive it.
    rig.directory.replace_with(directory("{PLAIN}old-password"));
    assert!(!rig.logs_in("user chosen pw", Purpose::Mail).await);
}

#[tokio::test]
async fn a_change_needs_the_current_main_password_and_a_sound_new_one() {
    let rig = rig();
    let err = rig.credentials.change_password(&alice(), "wrong", "long enough new").await.unwrap_err();
    assert!(matches!(err, CredentialsError::WrongCurrent), "{err:?}");
    let err = rig.credentials.change_password(&alice(), "old-password", "short").await.unwrap_err();
    assert!(matches!(err, CredentialsError::Invalid(Invalid::PasswordTooShort)), "{err:?}");
    let long = "x".repeat(MAX_PASSWORD_LEN + 1);
    let err = rig.credentials.change_password(&alice(), "old-password", &long).await.unwrap_err();
    assert!(matches!(err, CredentialsError::Invalid(Invalid::PasswordTooLong)), "{err:?}");
    let (_, secret) = rig.credentials.create_app_password(&alice(), "phone").await.unwrap();
    let err = rig.credentials.change_password(&alice(), &secret, "long enough new").await.unwrap_err();
    assert!(matches!(err, CredentialsError::WrongCurrent), "an app password cannot change the password: {err:?}");
    let nobody = Address::parse("nobody@example.com").unwrap();
    let err = rig.credentials.change_password(&nobody, "x", "long enough new").await.unwrap_err();
    assert!(matches!(err, CredentialsError::UnknownAccount), "{err:?}");
    assert!(rig.logs_in("old-password", Purpose::Mail).await, "nothing changed");
}

#[tokio::test]
async fn app_passwords_log_in_to_mail_only_until_revoked() {
    let rig = rig();
    let (info, secret) = rig.credentials.create_app_password(&alice(), "  laptop ").await.unwrap();
    assert_eq!(info.name, "laptop");
    assert_eq!(secret.len(), 19, "shown as four groups: {secret}");
    let listed = rig.credentials.app_passwords(&alice()).await.unwrap();
    assert_eq!(listed, vec![info.clone()]);

    let typed = [secret.clone(), secret.replace(' ', ""), secret.replace(' ', "-").to_uppercase()];
    for t in &typed {
        assert_eq!(
            rig.login("alice@example.com", t, Purpose::Mail).await,
            Some(Verified::App(alice(), info.id.clone()))
        );
        assert!(!rig.logs_in(t, Purpose::Web).await, "never for the web pages");
    }
    assert!(rig.login("bob@example.com", &secret, Purpose::Mail).await.is_none(), "only for its own account");
    assert!(rig.logs_in("old-password", Purpose::Mail).await, "the main password still works");

    rig.credentials.revoke_app_password(&alice(), &info.id).await.unwrap();
    assert!(!rig.logs_in(&secret, Purpose::Mail).await);
    let err = rig.credentials.revoke_app_password(&alice(), &info.id).await.unwrap_err();
    assert!(matches!(err, CredentialsError::Invalid(Invalid::NoSuchAppPassword)), "{err:?}");
    assert!(rig.credentials.app_passwords(&alice()).await.unwrap().is_empty());
}

#[tokio::test]
async fn app_password_names_and_count_are_bounded() {
    let rig = rig();
    for (name, want) in [("", Invalid::NameEmpty), ("a\u{7}b", Invalid::NameControl)] {
        let err = rig.credentials.create_app_password(&alice(), name).await.unwrap_err();
        assert!(matches!(err, CredentialsError::Invalid(i) if i == want), "{name:?}: {err:?}");
    }
    let err = rig.credentials.create_app_password(&alice(), &"é".repeat(65)).await.unwrap_err();
    assert!(matches!(err, CredentialsError::Invalid(Invalid::NameTooLong)), "{err:?}");
    rig.credentials.create_app_password(&alice(), &"é".repeat(64)).await.unwrap();
    for i in 1..MAX_APP_PASSWORDS {
        rig.credentials.create_app_password(&alice(), &format!("client {i}")).await.unwrap();
    }
    let err = rig.credentials.create_app_password(&alice(), "one too many").await.unwrap_err();
    assert!(matches!(err, CredentialsError::Invalid(Invalid::TooManyAppPasswords)), "{err:?}");
    assert_eq!(rig.credentials.app_passwords(&alice()).await.unwrap().len(), MAX_APP_PASSWORDS);
}

#[tokio::test]
async fn requiring_app_passwords_refuses_the_main_password_for_mail_only() {
    let rig = rig();
    let (_, secret) = rig.credentials.create_app_password(&alice(), "phone").await.unwrap();
    assert!(rig.logs_in("old-password", Purpose::Mail).await, "cached before the switch");
    rig.credentials.set_require_app_passwords(&alice(), true).await.unwrap();
    assert!(rig.credentials.require_app_passwords(&alice()).await.unwrap());
    assert!(!rig.logs_in("old-password", Purpose::Mail).await);
    assert!(rig.logs_in("old-password", Purpose::Web).await);
    assert!(rig.logs_in(&secret, Purpose::Mail).await);
    rig.credentials.set_require_app_passwords(&alice(), false).await.unwrap();
    assert!(rig.logs_in("old-password", Purpose::Mail).await);
}

#[tokio::test]
async fn last_use_is_noted_at_most_once_a_minute() {
    let rig = rig();
    let (info, secret) = rig.credentials.create_app_password(&alice(), "phone").await.unwrap();
    assert_eq!(info.last_used, None);
    let check = rig.credentials.prepare_login("alice@example.com").await.unwrap();
    let Some(Verified::App(_, id)) = check.verify(&secret, Purpose::Mail) else { panic!("app password refused") };
    rig.credentials.note_app_password_use(&alice(), check.state(), &id).await;
    let owner = owner_of(&alice());
    let after_first = rig.credentials.store.credentials_get(&owner).await.unwrap();
    assert_eq!(after_first.version, check.state().version + 1);
    let used = rig.credentials.app_passwords(&alice()).await.unwrap()[0].last_used;
    assert!(used.is_some_and(|t| t <= SystemTime::now()));
    // A second login right after reads the fresh record and writes nothing.
    let check = rig.credentials.prepare_login("alice@example.com").await.unwrap();
    rig.credentials.note_app_password_use(&alice(), check.state(), &id).await;
    assert_eq!(rig.credentials.store.credentials_get(&owner).await.unwrap().version, after_first.version);
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_fail_alike() {
    let rig = rig();
    assert_eq!(rig.login("nobody@example.com", "old-password", Purpose::Mail).await, None);
    assert_eq!(rig.login("alice@example.com", "wrong", Purpose::Mail).await, None);
    assert_eq!(rig.login("alice@example.com", "abcd efgh ijkl mnop", Purpose::Mail).await, None);
}

#[tokio::test]
async fn a_damaged_record_makes_logins_unavailable_never_the_old_password() {
    let rig = rig();
    rig.credentials.change_password(&alice(), "old-password", "user chosen pw").await.unwrap();
    let file = rig._dir.path().join("home/example.com/alice/.mailroom-credentials");
    assert!(file.is_file(), "the record is kept in the account's home");
    std::fs::write(&file, "{damaged").unwrap();
    assert!(rig.credentials.prepare_login("alice@example.com").await.is_err());
    let limiter = crate::net::Limiter::new(crate::net::LimiterConfig::default(), Vec::new());
    let ip = "127.0.0.1".parse().unwrap();
    let store = &rig.credentials.store;
    let imap = crate::net::LoginVia::new("imap", crate::net::AuthMechanism::Password);
    for password in ["old-password", "user chosen pw"] {
        let outcome =
            crate::net::verify_login(&limiter, &rig.directory, store, imap, ip, "alice@example.com", password).await;
        assert_eq!(outcome, crate::net::LoginOutcome::Unavailable, "{password}");
    }
    // Bob's record is his own: he still logs in.
    let outcome =
        crate::net::verify_login(&limiter, &rig.directory, store, imap, ip, "bob@example.com", "bob-password").await;
    assert!(matches!(outcome, crate::net::LoginOutcome::LoggedIn(_)), "{outcome:?}");
}

#[tokio::test]
async fn the_web_login_takes_the_main_password_only_and_counts_as_web() {
    let rig = rig();
    let (_, secret) = rig.credentials.create_app_password(&alice(), "phone").await.unwrap();
    let limiter = crate::net::Limiter::new(crate::net::LimiterConfig::default(), Vec::new());
    let ip = "127.0.0.1".parse().unwrap();
    let counter = |result: &str| {
        crate::metrics::metrics().auth_attempts_total.with_label_values(&["web", "password", result]).get()
    };
    let (ok, failed) = (counter("success"), counter("failure"));
    let outcome =
        crate::net::verify_web_login(&limiter, &rig.credentials, ip, "alice@example.com", "old-password").await;
    assert_eq!(outcome, crate::net::LoginOutcome::LoggedIn(alice()));
    let outcome = crate::net::verify_web_login(&limiter, &rig.credentials, ip, "alice@example.com", &secret).await;
    assert_eq!(outcome, crate::net::LoginOutcome::Failed);
    assert_eq!((counter("success"), counter("failure")), (ok + 1, failed + 1));
}

#[tokio::test]
async fn the_password_state_changes_with_the_password_only() {
    let rig = rig();
    let state = |rig: &Rig| {
        let c = rig.credentials.clone();
        async move { c.password_state(&alice()).await.unwrap() }
    };
    let first = state(&rig).await;
    assert!(!first.contains("old-password"), "a fingerprint, not the password");
    // App passwords and the switch leave web sessions alone.
    rig.credentials.create_app_password(&alice(), "phone").await.unwrap();
    rig.credentials.set_require_app_passwords(&alice(), true).await.unwrap();
    assert_eq!(state(&rig).await, first);
    // The user's change and the operator's reset each give a new state.
    rig.credentials.change_password(&alice(), "old-password", "user chosen pw").await.unwrap();
    let changed = state(&rig).await;
    assert_ne!(changed, first);
    rig.directory.replace_with(directory("{PLAIN}operator-reset"));
    let reset = state(&rig).await;
    assert!(reset != changed && reset != first);
    // An account no longer configured has none.
    assert!(matches!(
        rig.credentials.password_state(&Address::parse("carol@example.com").unwrap()).await,
        Err(CredentialsError::UnknownAccount)
    ));
}
