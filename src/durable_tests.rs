//! Tests of `durable.rs`: atomic replacement, no temp file left behind on success or on
//! error, file modes, the streaming writer's commit and drop, the append log, and group
//! commit.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

/// Every name in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn write_atomic_creates_and_replaces_leaving_no_temp_file() {
    let dir = tempdir();
    let p = dir.path().join("state.json");
    write_atomic(&p, b"first", 0o600).unwrap();
    assert_eq!(fs::read(&p).ok().as_deref(), Some(&b"first"[..]));
    write_atomic(&p, b"second, longer", 0o600).unwrap();
    assert_eq!(fs::read(&p).ok().as_deref(), Some(&b"second, longer"[..]));
    write_atomic(&p, b"", 0o600).unwrap();
    assert_eq!(fs::read(&p).ok().as_deref(), Some(&b""[..]));
    assert_eq!(names(dir.path()), ["state.json"]);
}

#[test]
fn write_atomic_applies_the_mode_it_is_given() {
    let dir = tempdir();
    let private = dir.path().join("key.pem");
    write_atomic(&private, b"secret", 0o600).unwrap();
    assert_eq!(mode(&private), 0o600);
    // Replacing a looser file tightens it: the new inode carries the given mode.
    let loose = dir.path().join("cert.pem");
    fs::write(&loose, b"old").unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).unwrap();
    write_atomic(&loose, b"new", 0o600).unwrap();
    assert_eq!(mode(&loose), 0o600);
    let via = dir.path().join("subscriptions");
    write_atomic_via(&dir.path().join("tmp-name"), &via, b"V\t2\n", 0o640).unwrap();
    assert_eq!(mode(&via), 0o640);
    assert_eq!(names(dir.path()), ["cert.pem", "key.pem", "subscriptions"]);
}

#[test]
fn write_atomic_via_reuses_a_leftover_temp_name() {
    let dir = tempdir();
    let (tmp, p) = (dir.path().join("INBOX.idx.tmp"), dir.path().join("INBOX.idx"));
    fs::write(&tmp, b"debris of a crash, longer than the new content").unwrap();
    write_atomic_via(&tmp, &p, b"fresh", 0o666).unwrap();
    assert_eq!(fs::read(&p).ok().as_deref(), Some(&b"fresh"[..]));
    assert_eq!(names(dir.path()), ["INBOX.idx"]);
}

#[test]
fn a_failed_rename_keeps_the_old_target_and_removes_the_temp_file() {
    let dir = tempdir();
    // A directory in the way: the file is written and fsynced, the rename fails.
    let blocked = dir.path().join("blocked");
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("inside"), b"x").unwrap();
    let err = write_atomic(&blocked, b"data", 0o600).expect_err("rename over a directory");
    assert!(matches!(&err, DurableError::Io { path, .. } if path == &blocked), "{err}");
    assert_eq!(names(dir.path()), ["blocked"]);
    let err = write_atomic_via(&dir.path().join("t"), &blocked, b"data", 0o600).expect_err("rename");
    assert!(matches!(err, DurableError::Io { .. }));
    assert_eq!(names(dir.path()), ["blocked"]);
}

#[test]
fn a_missing_directory_fails_with_its_path_and_creates_nothing() {
    let dir = tempdir();
    let p = dir.path().join("absent").join("file");
    let err = write_atomic(&p, b"data", 0o600).expect_err("no directory");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("absent"), "{err}");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
    assert!(names(dir.path()).is_empty());
}

#[test]
fn a_read_only_directory_fails_and_keeps_the_old_content() {
    let dir = tempdir();
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let p = ro.join("file");
    write_atomic(&p, b"old", 0o600).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
    // Root (CI, containers) ignores directory permissions: nothing to prove there.
    let privileged = fs::File::create(ro.join("probe")).is_ok();
    let result = write_atomic(&p, b"new", 0o600);
    let _ = fs::remove_file(ro.join("probe"));
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
    if !privileged {
        let err = result.expect_err("read-only directory");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(fs::read(&p).ok().as_deref(), Some(&b"old"[..]));
    }
    assert_eq!(names(&ro), ["file"]);
}

#[test]
fn a_synced_file_dropped_without_commit_removes_itself() {
    let dir = tempdir();
    let target = dir.path().join("0001.msg");
    {
        let mut f = SyncedFile::beside(&target, 0o600).unwrap();
        let name = f.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        assert!(name.starts_with(".0001.msg.tmp"), "{name}");
        f.write_all(b"half a message").unwrap();
        assert_eq!(names(dir.path()).len(), 1);
        // A failure of the producer (a short spool file, a full disk) drops the writer.
    }
    assert!(names(dir.path()).is_empty());
    {
        let tmp = dir.path().join("tmp-1");
        let mut f = SyncedFile::create_new(&tmp, 0o666).unwrap();
        f.write_all(b"x").unwrap();
    }
    assert!(names(dir.path()).is_empty());
}

#[test]
fn a_synced_file_streams_and_commits() {
    let dir = tempdir();
    let source = dir.path().join("spool");
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    fs::write(&source, &big).unwrap();
    let target = dir.path().join("msg");
    let mut f = SyncedFile::beside(&target, 0o600).unwrap();
    f.write_all(b"Received: x\r\n").unwrap();
    let mut src = fs::File::open(&source).unwrap();
    assert_eq!(f.copy_from(&mut src).ok(), Some(big.len() as u64));
    f.commit(&target).unwrap();
    let written = fs::read(&target).unwrap();
    assert_eq!(&written[..13], b"Received: x\r\n");
    assert_eq!(&written[13..], &big[..]);
    assert_eq!(mode(&target), 0o600);
    assert_eq!(names(dir.path()), ["msg", "spool"]);
}

#[test]
fn commit_new_never_replaces_and_always_removes_the_temp_name() {
    let dir = tempdir();
    let target = dir.path().join("0001.env");
    let mut f = SyncedFile::beside(&target, 0o600).unwrap();
    f.write_all(b"first").unwrap();
    f.commit_new(&target).unwrap();
    let mut f = SyncedFile::beside(&target, 0o600).unwrap();
    f.write_all(b"second").unwrap();
    let err = f.commit_new(&target).expect_err("name in use");
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&target).ok().as_deref(), Some(&b"first"[..]));
    assert_eq!(names(dir.path()), ["0001.env"]);
}

#[test]
fn sync_in_place_keeps_the_file_and_create_new_refuses_a_taken_name() {
    let dir = tempdir();
    let tmp = dir.path().join("1700000000.M1P1Q1.host");
    let mut f = SyncedFile::create_new(&tmp, 0o666).unwrap();
    f.write_all(b"body").unwrap();
    assert_eq!(f.sync_in_place().ok().as_deref(), Some(tmp.as_path()));
    assert_eq!(fs::read(&tmp).ok().as_deref(), Some(&b"body"[..]));
    let err = SyncedFile::create_new(&tmp, 0o666).expect_err("taken");
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&tmp).ok().as_deref(), Some(&b"body"[..]));
}

#[test]
fn sync_dir_names_the_directory_it_could_not_open() {
    let dir = tempdir();
    sync_dir(dir.path()).unwrap();
    let missing = dir.path().join("missing");
    match sync_dir(&missing) {
        Err(DurableError::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_append_log_appends_syncs_and_cuts_a_torn_tail() {
    let dir = tempdir();
    let p = dir.path().join("log");
    fs::write(&p, b"one\ntwo\nthr").unwrap();
    let mut log = AppendLog::open(&p, 11).unwrap();
    log.truncate(8).unwrap();
    assert_eq!(log.len(), 8);
    log.append(b"three\n").unwrap();
    log.sync().unwrap();
    assert_eq!(log.len(), 14);
    assert!(!log.is_empty());
    assert_eq!(fs::read(&p).ok().as_deref(), Some(&b"one\ntwo\nthree\n"[..]));
    assert!(AppendLog::open(&dir.path().join("absent"), 0).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_batches() {
    let dir = tempdir();
    let sync = GroupSync::default();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let sync = sync.clone();
        let d = dir.path().join(format!("d{}", i % 3));
        fs::create_dir_all(&d).unwrap();
        tasks.push(tokio::spawn(async move { sync.sync_dir(&d).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = sync.stats();
    assert_eq!(stats.requests, 100);
    assert!(stats.fsyncs <= stats.requests && stats.batches >= 1, "{stats:?}");
    // The worker exits when idle and a new request starts a new one.
    sync.sync_dir(dir.path()).await.unwrap();
    let err = sync.sync_dir(&dir.path().join("missing")).await;
    assert!(matches!(err, Err(DurableError::Io { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_many_covers_logs_and_directories_and_reports_the_first_error() {
    let dir = tempdir();
    let p = dir.path().join("idx");
    fs::write(&p, b"").unwrap();
    let mut log = AppendLog::open(&p, 0).unwrap();
    log.append(b"record\n").unwrap();
    let sync = GroupSync::default();
    let files = vec![(log.path().to_path_buf(), log.file())];
    sync.sync_many(files.clone(), vec![dir.path().to_path_buf()]).await.unwrap();
    let err = sync.sync_many(files, vec![dir.path().join("gone")]).await;
    assert_eq!(err.map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
}

/// A file without a name is invisible in its directory until linked in, is linked in
/// whole, and a taken name is refused (another name can follow with the same file).
#[test]
fn an_unnamed_file_appears_whole_under_its_name_and_never_replaces_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = match SyncedFile::unnamed(dir.path(), 0o600) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => return,
        r => r.unwrap(),
    };
    file.write_all(b"Subject: whole\r\n\r\nbody\r\n").unwrap();
    file.sync_unnamed().unwrap();
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing visible before the link");
    fs::write(dir.path().join("taken"), b"someone else's").unwrap();
    let refused = file.link_unnamed(&dir.path().join("taken")).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(dir.path().join("taken")).unwrap(), b"someone else's");
    file.link_unnamed(&dir.path().join("mine")).unwrap();
    assert_eq!(fs::read(dir.path().join("mine")).unwrap(), b"Subject: whole\r\n\r\nbody\r\n");
    drop(file);
    assert_eq!(fs::read(dir.path().join("mine")).unwrap().len(), 24, "dropping the handle keeps the file");
}
