//! Two replicas (two stores on one database, two data dirs) end up with the same shared
//! files, see each other's changes, and never share anything else.

use std::path::Path;

use super::*;
use crate::accounts::{NewPostmaster, load_generated};
use crate::mailauth::{KeyRing, Signers, Srs, keys};
use crate::test_pg;

const DOMAIN: &str = "example.org";

async fn replicas() -> Option<(PgStore, PgStore)> {
    let url = tokio::task::spawn_blocking(test_pg::database).await.unwrap()?;
    Some((PgStore::connect(&url, None).await.unwrap(), PgStore::connect(&url, None).await.unwrap()))
}

/// What `serve` does with a data dir at start, minus the listeners: take the stored files,
/// load or generate DKIM keys, the SRS secret, the self-signed certificate and the
/// postmaster, then upload.
async fn start(store: PgStore, root: &Path) -> Mirror {
    for sub in crate::datadir::LAYOUT {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let guard = Mirror::begin(store, root).await.unwrap();
    let dir = root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        KeyRing::load_or_generate(&dir.join("dkim"), &[DOMAIN.to_string()], None).unwrap();
        Srs::load_or_create(&dir.join("state")).unwrap();
        crate::tls::load_or_create_self_signed(&dir.join("tls"), "mx.example.org").unwrap();
        if load_generated(&dir).unwrap().is_none() {
            NewPostmaster::generate(DOMAIN).unwrap().save(&dir).unwrap();
        }
    })
    .await
    .unwrap();
    guard.finish().await.unwrap()
}

fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = scan(root).unwrap().into_iter().collect();
    all.sort();
    all
}

#[tokio::test]
async fn replicas_starting_together_share_keys_secrets_certificate_and_postmaster() {
    let Some((a, b)) = replicas().await else { return };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tokio::join!(start(a, da.path()), start(b, db.path()));
    let (fa, fb) = (files(da.path()), files(db.path()));
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in ["accounts", "state/srs.key", "tls/selfsigned.crt", "tls/selfsigned.key"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("dkim/example.org/") && n.ends_with(".pem")), "{names:?}");
    assert!(fa == fb, "the replicas' shared files differ");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(db.path().join("state/srs.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_rotated_dkim_key_reaches_the_other_replica_which_signs_with_it() {
    let Some((a, b)) = replicas().await else { return };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ma = start(a, da.path()).await;
    let mb = start(b, db.path()).await;
    let domains = [DOMAIN.to_string()];
    let signers_b = Signers::load(&db.path().join("dkim"), &domains, None).unwrap();

    keys::rotate(&da.path().join("dkim"), DOMAIN, None).unwrap();
    assert!(keys::promote_pending(&da.path().join("dkim"), DOMAIN).unwrap());
    let new_base = keys::load_domain(&da.path().join("dkim"), DOMAIN, None, false).unwrap().active.base;
    assert!(ma.sync_once().await.unwrap().is_empty(), "A only uploads");
    let written = mb.sync_once().await.unwrap();
    assert!(written.iter().any(|n| n == "dkim/example.org/state"), "{written:?}");
    assert!(files(da.path()) == files(db.path()), "B has A's rotation");

    let message: &[u8] = b"From: a@example.org\r\nSubject: x\r\n\r\nhi\r\n";
    let before = signers_b.sign(DOMAIN, &[message]).unwrap().unwrap();
    assert!(!before.contains(&format!("s={new_base}")), "{before}");
    signers_b.reload().unwrap();
    let after = signers_b.sign(DOMAIN, &[message]).unwrap().unwrap();
    assert!(after.contains(&format!("s={new_base}")), "{after}");

    // Changed on both before either synced: the first upload wins everywhere.
    std::fs::write(da.path().join("tls/selfsigned.crt"), b"from A").unwrap();
    std::fs::write(db.path().join("tls/selfsigned.crt"), b"from B").unwrap();
    ma.sync_once().await.unwrap();
    assert_eq!(mb.sync_once().await.unwrap(), vec!["tls/selfsigned.crt".to_string()]);
    assert_eq!(std::fs::read(db.path().join("tls/selfsigned.crt")).unwrap(), b"from A");

    // A deleted file is not a change: the stored copy comes back.
    std::fs::remove_file(db.path().join("state/srs.key")).unwrap();
    assert_eq!(mb.sync_once().await.unwrap(), vec!["state/srs.key".to_string()]);
    assert!(files(da.path()) == files(db.path()));
}

/// A running replica hears of a stored change at once (NOTIFY), not at its next poll.
#[tokio::test]
async fn a_running_replica_takes_a_change_without_waiting_for_its_poll() {
    let Some((a, b)) = replicas().await else { return };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ma = start(a, da.path()).await;
    let mb = start(b, db.path()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = mb.spawn(move |names| {
        let _ = tx.send(names.to_vec());
    });
    // Let B's listener connect before A stores.
    tokio::time::sleep(Duration::from_millis(500)).await;
    keys::rotate(&da.path().join("dkim"), DOMAIN, None).unwrap();
    let stored = std::time::Instant::now();
    ma.sync_once().await.unwrap();
    let names = tokio::time::timeout(SYNC_EVERY / 2, rx.recv()).await.expect("told before the poll").unwrap();
    assert!(names.iter().any(|n| n == "dkim/example.org/state"), "{names:?}");
    assert!(stored.elapsed() < SYNC_EVERY / 2);
    assert!(files(da.path()) == files(db.path()));
    task.abort();
}

#[tokio::test]
async fn nothing_outside_the_shared_files_is_mirrored() {
    let Some((a, b)) = replicas().await else { return };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (name, content) in [
        ("mail/example.org/alice/cur/1:2,S", "mail"),
        ("queue/msg1", "queued"),
        ("state/spool/in1", "spooled"),
        ("state/index", "index"),
        ("state/other.key", "x"),
        ("format", "2\n"),
        ("lock", ""),
        ("dkim/.state.tmp123", "half-written"),
        ("tls/acme/mx.example.org.crt", "certificate"),
    ] {
        let path = da.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let ma = start(a.clone(), da.path()).await;
    ma.sync_once().await.unwrap();
    let stored: Vec<String> = a.kv_versions().await.unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(stored.contains(&"tls/acme/mx.example.org.crt".to_string()), "{stored:?}");
    for name in &stored {
        assert!(
            name == "accounts"
                || name == "state/srs.key"
                || name == "state/web-session.key"
                || name.starts_with("dkim/")
                || name.starts_with("tls/"),
            "{name} was mirrored"
        );
        assert!(!name.contains("/."), "{name} was mirrored");
    }
    // A stored name outside the list (a bug elsewhere, or a hand-edited row) is never written.
    for evil in ["mail/x", "../escape", "/etc/evil", "dkim/../format", "dkim/.hidden"] {
        a.kv_put(evil, b"evil", None).await.unwrap();
    }
    let mb = start(b, db.path()).await;
    assert!(mb.sync_once().await.unwrap().is_empty(), "asked for once, then left alone");
    assert!(!db.path().join("mail/x").exists());
    assert!(!db.path().parent().unwrap().join("escape").exists());
    assert!(!db.path().join("format").exists());
    assert!(!db.path().join("dkim/.hidden").exists());
    assert_eq!(std::fs::read(db.path().join("tls/acme/mx.example.org.crt")).unwrap(), b"certificate");
}

#[test]
fn the_shared_list() {
    for yes in [
        "accounts",
        "state/srs.key",
        "state/web-session.key",
        "dkim/example.org/state",
        "dkim/a/b/c",
        "tls/selfsigned.key",
        "tls/x",
    ] {
        assert!(is_shared(yes), "{yes}");
    }
    for no in [
        "",
        "dkim",
        "tls",
        "mail/x",
        "queue/x",
        "state/spool/x",
        "state/index",
        "lock",
        "format",
        "control.sock",
        "./accounts",
        "dkim/../accounts",
        "/accounts",
        "tls/.x.tmp1",
        "dkim/.d/key",
    ] {
        assert!(!is_shared(no), "{no}");
    }
}
