//! The whole backup on a data dir made by hand: what is copied, what is refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A data dir as a running server leaves it, with the things a backup must leave out.
fn data_dir(root: &Path) -> PathBuf {
    let data = root.join("data");
    for d in ["mail/example.com/alice/cur", "mail/example.com/alice/new", "mail/example.com/alice/tmp"] {
        fs::create_dir_all(data.join(d)).unwrap();
    }
    for d in ["queue", "dkim/example.com", "tls", "state/index/example.com/alice", "state/spool"] {
        fs::create_dir_all(data.join(d)).unwrap();
    }
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
    for (f, c) in [
        ("format", "2\n"),
        ("lock", ""),
        ("accounts", "postmaster@example.com:$argon2id$x\n"),
        ("dkim/example.com/mr1.ed25519.pem", "KEY"),
        ("tls/selfsigned.key", "KEY"),
        ("state/index/example.com/alice/INBOX.idx", "index"),
        ("state/spool/in-progress", "half a message"),
        ("mail/example.com/alice/cur/1.M1P1Q1.h,S=5,W=5:2,S", "hello"),
        ("mail/example.com/alice/tmp/mailroom-expunged.1.1", "expunged"),
        ("queue/Q1.msg", "out"),
        ("queue/Q1.env", "{}"),
    ] {
        fs::write(data.join(f), c).unwrap();
    }
    fs::set_permissions(data.join("dkim/example.com/mr1.ed25519.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    data
}

#[test]
fn a_backup_is_a_data_dir_without_lock_spool_or_tmp() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let dest = tmp.path().join("backup");
    let summary = run(&data, &dest).unwrap();
    assert_eq!(summary.dest, fs::canonicalize(&dest).unwrap());
    assert_eq!((summary.mail.messages, summary.mail.mailboxes), (1, 1));
    assert_eq!(summary.files, 8, "{summary}");
    let line = summary.to_string();
    assert!(line.contains("8 files") && line.contains("1 mailboxes") && !line.contains('\n'), "{line}");
    for f in [
        "format",
        "accounts",
        "dkim/example.com/mr1.ed25519.pem",
        "tls/selfsigned.key",
        "state/index/example.com/alice/INBOX.idx",
        "mail/example.com/alice/cur/1.M1P1Q1.h,S=5,W=5:2,S",
        "queue/Q1.msg",
        "queue/Q1.env",
    ] {
        assert_eq!(fs::read(dest.join(f)).unwrap(), fs::read(data.join(f)).unwrap(), "{f}");
    }
    for f in ["lock", "state/spool", "mail/example.com/alice/tmp/mailroom-expunged.1.1"] {
        assert!(!dest.join(f).exists(), "{f} must not be copied");
    }
    assert!(dest.join("mail/example.com/alice/tmp").is_dir());
    assert_eq!(mode(&dest), 0o700);
    assert_eq!(mode(&dest.join("dkim/example.com/mr1.ed25519.pem")), 0o600);
    // Only DEST is left next to it: the temporary name is gone.
    let mut names: Vec<String> =
        fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["backup", "data"]);
}

#[test]
fn an_empty_dest_directory_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let dest = tmp.path().join("empty");
    fs::create_dir(&dest).unwrap();
    run(&data, &dest).unwrap();
    assert!(dest.join("format").is_file());
}

#[test]
fn refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let full = tmp.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("old-backup"), b"x").unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (full.clone(), "exists and is not empty"),
        (file, "is not a directory"),
        (data.join("backup"), "is inside the data dir"),
        (data.clone(), "is inside the data dir"),
        (data.join("mail/../state/x"), "is inside the data dir"),
        (tmp.path().join("no/such/parent"), "does not exist"),
    ];
    for (dest, why) in cases {
        let err = run(&data, &dest).unwrap_err();
        assert!(err.is_refusal(), "{err}");
        assert!(err.to_string().contains(why), "{}: {err}", dest.display());
    }
    assert_eq!(fs::read_dir(&full).unwrap().count(), 1, "a refused DEST is left alone");
    assert!(!data.join("backup").exists());
    let err = run(&tmp.path().join("nothing"), &tmp.path().join("b")).unwrap_err();
    assert!(matches!(err, BackupError::NotADataDir { .. }) && err.is_refusal(), "{err}");
    // Nothing half-written is left next to the refused destinations.
    assert!(fs::read_dir(tmp.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn sieve_scripts_and_the_active_link_are_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let home = data.join("home/example.com/alice");
    fs::create_dir_all(home.join("sieve")).unwrap();
    fs::write(home.join("sieve/main.sieve"), "keep;\r\n").unwrap();
    std::os::unix::fs::symlink("sieve/main.sieve", home.join(".dovecot.sieve")).unwrap();
    let dest = tmp.path().join("backup");
    run(&data, &dest).unwrap();
    let copy = dest.join("home/example.com/alice");
    assert_eq!(fs::read(copy.join("sieve/main.sieve")).unwrap(), b"keep;\r\n");
    assert_eq!(fs::read_link(copy.join(".dovecot.sieve")).unwrap(), Path::new("sieve/main.sieve"));
}
