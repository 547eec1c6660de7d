//! Clients nobody here wrote: Python's smtplib (SMTP, STARTTLS, SMTPUTF8, LMTP) and swaks
//! (STARTTLS, PIPELINING) against the real server on 127.0.0.1:0. Skipped with a note when
//! the tool is missing, unless `CI=true`.

use std::process::Command as Process;

use super::tests::{Harness, Options, start};
use super::*;

fn have(tool: &str) -> bool {
    let found = Process::new(tool).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{tool} is required in CI");
        eprintln!("skipping: {tool} not installed");
    }
    found
}

/// Run a program off the async runtime; returns (success, stdout+stderr).
async fn run(program: &'static str, args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || match Process::new(program).args(&args).output() {
        Ok(o) => (
            o.status.success(),
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        ),
        Err(e) => (false, e.to_string()),
    })
    .await
    .unwrap_or_else(|e| (false, e.to_string()))
}

async fn python(h: &Harness, script: &str) -> (bool, String) {
    run("python3", vec!["-c".into(), script.into(), h.addr.port().to_string()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_with_starttls() {
    if !have("python3") {
        return;
    }
    let h = start(Options::default()).await;
    let script = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="py.client.example")
s.ehlo()
assert s.has_extn("starttls") and s.has_extn("pipelining") and s.has_extn("chunking"), s.esmtp_features
assert s.has_extn("size") and s.has_extn("8bitmime") and s.has_extn("smtputf8")
s.starttls(context=ctx)
s.ehlo()
assert not s.has_extn("starttls")
m = EmailMessage()
m["From"] = "bob@remote.example"
m["To"] = "alice@ours.example"
m["Subject"] = "from smtplib"
m.set_content("line one\n.leading dot\nlast\n")
refused = s.send_message(m, to_addrs=["alice@ours.example", "nobody@ours.example"])
assert list(refused) == ["nobody@ours.example"], refused
assert refused["nobody@ours.example"][0] == 550, refused
# SMTPUTF8 sender and recipient
s.sendmail("jörg@remote.example", ["alice@ours.example"], "Subject: utf8\r\n\r\nhej\r\n".encode(), mail_options=["SMTPUTF8"])
try:
    s.sendmail("bob@remote.example", ["victim@remote.example"], b"Subject: relay\r\n\r\nx\r\n")
    raise SystemExit("relay accepted")
except smtplib.SMTPRecipientsRefused as e:
    assert e.recipients["victim@remote.example"][0] == 554, e.recipients
s.quit()
print("OK")
"#;
    let (ok, out) = python(&h, script).await;
    assert!(ok && out.contains("OK"), "{out}");
    let msgs = h.messages("alice");
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("Subject: from smtplib") && m.contains("\r\n.leading dot\r\n")));
    assert!(msgs.iter().any(|m| m.contains("with UTF8SMTPS id") && m.contains("Return-Path: <jörg@remote.example>")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lmtp_client() {
    if !have("python3") {
        return;
    }
    let h = start(Options { mode: SmtpMode::Lmtp, ..Options::default() }).await;
    let script = r#"
import smtplib, sys
s = smtplib.LMTP("127.0.0.1", int(sys.argv[1]))
refused = s.sendmail("bob@remote.example", ["alice@ours.example", "bob@ours.example", "nobody@ours.example"], b"Subject: lmtp\r\n\r\nbody\r\n")
assert list(refused) == ["nobody@ours.example"], refused
s.quit()
print("OK")
"#;
    let (ok, out) = python(&h, script).await;
    assert!(ok && out.contains("OK"), "{out}");
    assert_eq!(h.messages("alice").len(), 1);
    assert_eq!(h.messages("bob").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_with_starttls_and_pipelining() {
    if !have("swaks") {
        return;
    }
    let h = start(Options::default()).await;
    let server = format!("127.0.0.1:{}", h.addr.port());
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--server",
            &server,
            "--from",
            "bob@remote.example",
            "--helo",
            "swaks.example",
            "--header",
            "Subject: from swaks",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (ok, out) = run("swaks", base(&["--to", "alice@ours.example", "--tls"])).await;
    assert!(ok, "{out}");
    assert!(out.contains("<~  250 2.0.0 Ok: queued as"), "{out}");
    let (ok, out) = run("swaks", base(&["--to", "alice@ours.example,team@ours.example", "--pipeline"])).await;
    assert!(ok, "{out}");
    // A relay attempt fails with swaks' non-zero exit and our 554.
    let (ok, out) = run("swaks", base(&["--to", "victim@remote.example"])).await;
    assert!(!ok);
    assert!(out.contains("554 5.7.1 <victim@remote.example>: Relay access denied"), "{out}");
    let alice = h.messages("alice");
    assert_eq!(alice.len(), 2);
    assert!(alice.iter().any(|m| m.contains("with ESMTPS id")), "{alice:?}");
    assert_eq!(h.messages("bob").len(), 1);
}

/// Postfix's own load generator: 50 concurrent sessions, 100 messages each over kept
/// connections. Every message that got its 250 is in the Maildir, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_smtp_source_50_sessions() {
    if Process::new("smtp-source").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "smtp-source is required in CI");
        eprintln!("skipping: smtp-source (postfix) not installed");
        return;
    }
    let h = start(Options::default()).await;
    let total = 5000;
    let args: Vec<String> = [
        "-d",
        "-s",
        "50",
        "-m",
        &total.to_string(),
        "-l",
        "4096",
        "-f",
        "bob@remote.example",
        "-t",
        "alice@ours.example",
        "-M",
        "source.example",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("127.0.0.1:{}", h.addr.port())])
    .collect();
    let started = std::time::Instant::now();
    let (ok, out) = run("smtp-source", args).await;
    assert!(ok, "{out}");
    let elapsed = started.elapsed();
    let msgs = h.messages("alice");
    assert_eq!(msgs.len(), total, "{out}");
    let ids: std::collections::HashSet<&str> =
        msgs.iter().filter_map(|m| m.split("\r\n").find(|l| l.starts_with("\tby mx.ours.example"))).collect();
    assert_eq!(ids.len(), total, "each message has its own id, none delivered twice");
    eprintln!("smtp-source: {total} messages over 50 sessions in {elapsed:?}");
}

/// Dovecot (doveadm, Debian dovecot-core) reads what a real SMTP session delivered:
/// the Maildir layout, our trace headers and the normalised body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_reads_what_smtp_delivered() {
    if Process::new("doveadm").arg("help").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "doveadm is required in CI");
        eprintln!("skipping: doveadm not installed");
        return;
    }
    let h = start(Options::default()).await;
    let mut c = h.connect().await;
    c.cmd("EHLO client.example").await;
    c.cmd("MAIL FROM:<bob@remote.example>").await;
    c.cmd("RCPT TO:<alice@ours.example>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: for dovecot\r\n\r\nbare LF here\nand ..dots\r\n..\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let id = r["250 2.0.0 Ok: queued as ".len()..].to_string();
    c.cmd("QUIT").await;

    // Dovecot refuses to run as root: give it the files as nobody.
    let tmp = h.root.as_path();
    let root = unsafe { libc::geteuid() } == 0;
    let (uid, gid) = if root { (65534, 65534) } else { unsafe { (libc::geteuid(), libc::getegid()) } };
    let home = tmp.join("dovecot-home");
    let _ = std::fs::create_dir_all(&home);
    let conf = tmp.join("dovecot.conf");
    let maildir = tmp.join("mail/ours.example/alice");
    let written = std::fs::write(
        &conf,
        format!(
            "mail_location = maildir:{}:INDEX={t}/dvindex\nmail_home = {}\nmail_uid = {uid}\n\
             mail_gid = {gid}\nfirst_valid_uid = 0\nfirst_valid_gid = 0\nlog_path = {t}/dovecot.log\n\
             base_dir = {t}/run\nssl = no\n",
            maildir.display(),
            home.display(),
            t = tmp.display()
        ),
    );
    assert!(written.is_ok());
    if root {
        chown_tree(tmp, uid, gid);
    }
    let conf = conf.display().to_string();
    let home = home.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Process::new("doveadm")
            .args(["-c", &conf, "fetch", "hdr body", "mailbox", "INBOX", "ALL"])
            .env("USER", "alice")
            .env("HOME", &home)
            .output()
    })
    .await;
    let Ok(Ok(out)) = out else { panic!("doveadm did not run: {out:?}") };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{text}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Subject: for dovecot"), "{text}");
    assert!(text.contains(&format!("with ESMTP id {id}")), "{text}");
    assert!(text.contains("Delivered-To: alice@ours.example"), "{text}");
    // Bare LF normalised; only a leading dot is unstuffed.
    assert!(text.contains("body:\nbare LF here\r\nand ..dots\r\n.\r\n"), "{text:?}");
}

fn chown_tree(p: &std::path::Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
    if p.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// A Postfix instance (its own config, queue and loopback port in a temp dir) relays a
/// message to us as a real sending MTA would: EHLO, STARTTLS, pipelining, DATA.
/// Needs root (Postfix's master starts as root) and the Debian `postfix` package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_relays_into_our_maildir() {
    let root = unsafe { libc::geteuid() } == 0;
    if Process::new("postconf").arg("mail_version").output().is_err() || !root {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "postfix (as root) is required in CI");
        eprintln!("skipping: postfix not installed or not root");
        return;
    }
    let h = start(Options::default()).await;
    let pf = match tempfile::Builder::new().prefix("mailroom-postfix").tempdir_in("/tmp") {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let t = pf.path().to_path_buf();
    let _ = std::fs::set_permissions(&t, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    // Below the ephemeral range: a port released after `bind(0)` can be taken by another
    // test's connection before Postfix binds it, and the message then goes elsewhere.
    let inject_port = crate::test_ports::free_port();
    let conf = t.join("conf");
    for d in [conf.clone(), t.join("spool"), t.join("lib")] {
        let _ = std::fs::create_dir_all(&d);
    }
    let _ = Process::new("chown").arg("postfix").arg(t.join("lib")).output();
    let daemons = "pickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\nqmgr unix n - n 300 1 qmgr\n\
        rewrite unix - - n - - trivial-rewrite\nbounce unix - - n - 0 bounce\ndefer unix - - n - 0 bounce\n\
        trace unix - - n - 0 bounce\nverify unix - - n - 1 verify\nflush unix n - n 1000? 0 flush\n\
        proxymap unix - - n - - proxymap\nsmtp unix - - n - - smtp\nrelay unix - - n - - smtp\n\
        showq unix n - n - - showq\nerror unix - - n - - error\nretry unix - - n - - error\n\
        discard unix - - n - - discard\nanvil unix - - n - 1 anvil\nscache unix - - n - 1 scache\n\
        postlog unix-dgram n - n - 1 postlogd\ntlsmgr unix - - n 1000? 1 tlsmgr\n";
    let master = format!("127.0.0.1:{inject_port} inet n - n - - smtpd\n{daemons}");
    let main = format!(
        "compatibility_level = 3.6\nqueue_directory = {t}/spool\ndata_directory = {t}/lib\n\
         mail_owner = postfix\nsetgid_group = postdrop\nmyhostname = sender.example\n\
         mydomain = sender.example\nmyorigin = sender.example\nmydestination =\n\
         inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n\
         relayhost = [127.0.0.1]:{port}\nsmtp_tls_security_level = may\n\
         maillog_file_prefixes = /tmp\nmaillog_file = {t}/maillog\nalias_maps =\nalias_database =\n",
        t = t.display(),
        port = h.addr.port()
    );
    assert!(std::fs::write(conf.join("master.cf"), master).is_ok());
    assert!(std::fs::write(conf.join("main.cf"), main).is_ok());

    /// Stops the Postfix instance however the test ends.
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Process::new("postfix").arg("-c").arg(&self.0).arg("stop").output();
        }
    }
    let conf_arg = conf.display().to_string();
    let (ok, out) = run("postfix", vec!["-c".into(), conf_arg.clone(), "start".into()]).await;
    let _stop = Stop(conf.clone());
    assert!(ok, "postfix start: {out}");
    // Wait for Postfix's smtpd, then hand it a message as an ordinary client would.
    let mut stream = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", inject_port)).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(stream) = stream else { panic!("postfix smtpd did not come up") };
    let mut c = super::tests::Client { r: tokio::io::BufReader::new(stream) };
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO injector.example").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@sender.example>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@ours.example>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: relayed by postfix\r\n\r\nhello from a real MTA\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    c.cmd("QUIT").await;
    let mut found = Vec::new();
    // Up to 60 s: Postfix's queue manager is slow to pick the message up on a loaded machine.
    for _ in 0..600 {
        found = h.messages("alice");
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(t.join("maillog")).unwrap_or_default();
    assert_eq!(found.len(), 1, "postfix log:\n{log}");
    let m = &found[0];
    assert!(m.contains("Subject: relayed by postfix"), "{m}");
    assert!(m.contains("Received: from sender.example ([127.0.0.1])"), "{m}");
    assert!(m.contains("with ESMTPS id"), "postfix used STARTTLS: {m}");
    assert!(log.contains("status=sent (250 2.0.0 Ok: queued as "), "{log}");
}

/// `bench/smtp-bench.sh` against this (debug, in-process) server: run by hand with
/// `cargo test --lib bench_in_process -- --ignored --nocapture`. Release numbers come from
/// running the same script against the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark, run by hand"]
async fn bench_in_process() {
    let h = start(Options::default()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/smtp-bench.sh");
    let new = h.maildir("alice");
    let _ = std::fs::create_dir_all(&new);
    let (ok, out) = run(
        "sh",
        vec![
            script.into(),
            format!("127.0.0.1:{}", h.addr.port()),
            new.display().to_string(),
            "5000".into(),
            "50".into(),
            "alice@ours.example".into(),
        ],
    )
    .await;
    eprintln!("{out}");
    assert!(ok);
}
