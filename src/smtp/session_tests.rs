//! Session transcripts without sockets: client line -> server reply lines.

use super::*;

/// A table policy: `alice@ours.example` exists, `full@ours.example` is over quota,
/// `team@ours.example` forwards; other `ours.example` addresses are unknown, anything else
/// is relaying. Sender domain `nxdomain.example` does not exist, `dnsfail.example` fails.
struct Table;

impl Policy for Table {
    async fn check_sender(&self, client: &ClientInfo, sender: &Mailbox) -> SenderVerdict {
        match sender.address.domain.as_str() {
            "bank.example" if client.authenticated.is_some() => SenderVerdict::NotOwned,
            "nxdomain.example" => SenderVerdict::UnknownDomain,
            "dnsfail.example" => SenderVerdict::TempFail,
            _ => SenderVerdict::Accept,
        }
    }

    async fn check_recipient(&self, client: &ClientInfo, rcpt: &Address) -> RecipientVerdict {
        let addr = rcpt.to_string();
        match addr.as_str() {
            "alice@ours.example" | "postmaster@ours.example" => {
                RecipientVerdict::Accept { mailboxes: vec![rcpt.clone()], forwards: vec![] }
            }
            "full@ours.example" => RecipientVerdict::OverQuota,
            "broken@ours.example" => RecipientVerdict::TempFail("Temporary lookup failure"),
            _ if rcpt.domain == "ours.example" => RecipientVerdict::Unknown,
            _ if client.authenticated.is_some() => {
                RecipientVerdict::Accept { mailboxes: vec![], forwards: vec![rcpt.clone()] }
            }
            _ => RecipientVerdict::RelayDenied,
        }
    }
}

fn config(mode: SmtpMode) -> SessionConfig {
    SessionConfig {
        hostname: "mx.ours.example".into(),
        primary_domain: "ours.example".into(),
        mode,
        limits: SmtpLimits::default(),
        tls_available: true,
    }
}

fn session(mode: SmtpMode) -> Session {
    Session::new(
        config(mode),
        ClientInfo {
            ip: "192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            helo: None,
            tls: None,
            authenticated: None,
        },
    )
}

fn render(replies: &[Status]) -> String {
    replies.iter().map(|r| String::from_utf8_lossy(&r.render()).into_owned()).collect::<String>().replace("\r\n", "\n")
}

/// Send one line; returns the rendered replies (LF-separated) and the action.
async fn say(s: &mut Session, line: &str) -> (String, Action) {
    let (replies, action) = s.handle_line(line.as_bytes(), &Table).await;
    (render(&replies), action)
}

/// Send one line and expect exactly `expected` (one reply line, without CRLF).
async fn expect(s: &mut Session, line: &str, expected: &str) {
    let (got, action) = say(s, line).await;
    assert_eq!(got.trim_end(), expected, "after {line:?}");
    assert_eq!(action, Action::Continue, "after {line:?}");
}

#[tokio::test]
async fn ehlo_advertises_extensions() {
    let mut s = session(SmtpMode::Mx);
    assert_eq!(render(&[s.banner()]), "220 mx.ours.example ESMTP\n");
    let (got, _) = say(&mut s, "EHLO client.example").await;
    assert_eq!(
        got,
        "250-mx.ours.example\n250-PIPELINING\n250-SIZE 26214400\n250-8BITMIME\n250-SMTPUTF8\n\
         250-ENHANCEDSTATUSCODES\n250-STARTTLS\n250 CHUNKING\n"
    );
    expect(&mut s, "HELO client.example", "250 mx.ours.example").await;
    expect(&mut s, "LHLO client.example", "500 5.5.2 Error: command not recognized").await;
    expect(&mut s, "AUTH PLAIN AGFsaWNlAHB3", "503 5.5.1 Error: authentication not enabled").await;
}

#[tokio::test]
async fn a_complete_transaction() {
    let mut s = session(SmtpMode::Mx);
    expect(&mut s, "MAIL FROM:<bob@remote.example>", "503 5.5.1 Error: send HELO/EHLO first").await;
    say(&mut s, "EHLO client.example").await;
    expect(&mut s, "RCPT TO:<alice@ours.example>", "503 5.5.1 Error: need MAIL command").await;
    expect(&mut s, "DATA", "503 5.5.1 Error: need MAIL command").await;
    expect(&mut s, "MAIL FROM:<bob@remote.example> SIZE=100", "250 2.1.0 Ok").await;
    assert_eq!(s.declared_size(), Some(100));
    expect(&mut s, "MAIL FROM:<bob@remote.example>", "503 5.5.1 Error: nested MAIL command").await;
    expect(&mut s, "DATA", "554 5.5.1 Error: no valid recipients").await;
    expect(&mut s, "RCPT TO:<Alice@OURS.example>", "250 2.1.5 Ok").await;
    let (got, action) = say(&mut s, "DATA").await;
    assert_eq!(got, "354 End data with <CR><LF>.<CR><LF>\n");
    assert_eq!(action, Action::ReadData);
    assert_eq!(s.state(), SessionState::Data);
    let id = s.message_id().unwrap_or_default().to_string();
    assert_eq!(id.len(), 12);
    let EndOfMessage::Deliver(env) = s.end_of_message(10, false) else { panic!("refused") };
    assert_eq!(env.id, id);
    assert_eq!(env.recipients.len(), 1);
    assert_eq!(env.recipients[0].mailboxes[0].to_string(), "alice@ours.example");
    let (replies, _) = s.delivered(&env, &[Ok(())]);
    assert_eq!(render(&replies), format!("250 2.0.0 Ok: queued as {id}\n"));
    assert_eq!(s.state(), SessionState::Ready);
    let (got, action) = say(&mut s, "QUIT").await;
    assert_eq!(got, "221 2.0.0 mx.ours.example closing connection\n");
    assert_eq!(action, Action::Close);
}

#[tokio::test]
async fn recipient_policy_replies() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    expect(&mut s, "MAIL FROM:<>", "250 2.1.0 Ok").await;
    expect(
        &mut s,
        "RCPT TO:<nobody@ours.example>",
        "550 5.1.1 <nobody@ours.example>: Recipient address rejected: User unknown",
    )
    .await;
    expect(&mut s, "RCPT TO:<victim@remote.example>", "554 5.7.1 <victim@remote.example>: Relay access denied").await;
    // %-hack: the domain is ours, the local part is just unknown.
    expect(
        &mut s,
        "RCPT TO:<victim%remote.example@ours.example>",
        "550 5.1.1 <victim%remote.example@ours.example>: Recipient address rejected: User unknown",
    )
    .await;
    expect(
        &mut s,
        "RCPT TO:<@ours.example:victim@remote.example>",
        "501 5.1.3 Bad recipient address syntax: source routes (@host:…) are not accepted",
    )
    .await;
    expect(&mut s, "RCPT TO:<full@ours.example>", "452 4.2.2 <full@ours.example>: Mailbox full, try again later").await;
    expect(&mut s, "RCPT TO:<broken@ours.example>", "451 4.3.0 <broken@ours.example>: Temporary lookup failure").await;
    // Other recipients are still accepted; Postmaster without domain goes to the primary.
    expect(&mut s, "RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    expect(&mut s, "RCPT TO:<Postmaster>", "250 2.1.5 Ok").await;
}

#[tokio::test]
async fn sender_domain_checks() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    expect(
        &mut s,
        "MAIL FROM:<x@nxdomain.example>",
        "550 5.1.8 <x@nxdomain.example>: Sender address rejected: Domain not found",
    )
    .await;
    expect(
        &mut s,
        "MAIL FROM:<x@dnsfail.example>",
        "450 4.1.8 <x@dnsfail.example>: Sender address rejected: Domain lookup failed",
    )
    .await;
    expect(&mut s, "MAIL FROM:<x@remote.example> SIZE=26214401", "552 5.3.4 Error: message size exceeds fixed limit")
        .await;
    expect(&mut s, "MAIL FROM:<x@remote.example> BODY=BINARYMIME", "555 5.5.4 Error: BINARYMIME is not supported")
        .await;
    expect(&mut s, "MAIL FROM:<jörg@remote.example>", "553 5.6.7 Error: non-ASCII sender needs SMTPUTF8").await;
    expect(&mut s, "MAIL FROM:<jörg@remote.example> SMTPUTF8", "250 2.1.0 Ok").await;
}

#[tokio::test]
async fn rset_and_reehlo_reset_the_transaction() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    expect(&mut s, "MAIL FROM:<>", "250 2.1.0 Ok").await;
    expect(&mut s, "RSET", "250 2.0.0 Ok").await;
    expect(&mut s, "RCPT TO:<alice@ours.example>", "503 5.5.1 Error: need MAIL command").await;
    expect(&mut s, "MAIL FROM:<>", "250 2.1.0 Ok").await;
    say(&mut s, "EHLO c").await;
    assert_eq!(s.state(), SessionState::Ready);
    expect(&mut s, "VRFY alice", "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery").await;
    let (help, _) = say(&mut s, "HELP").await;
    assert!(help.starts_with("214 2.0.0 "));
    expect(&mut s, "NOOP", "250 2.0.0 Ok").await;
}

#[tokio::test]
async fn too_many_recipients() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    say(&mut s, "MAIL FROM:<>").await;
    for _ in 0..100 {
        expect(&mut s, "RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    }
    // Flow control, not an error: the session survives many of them.
    for _ in 0..20 {
        expect(&mut s, "RCPT TO:<alice@ours.example>", "452 4.5.3 Error: too many recipients").await;
    }
    let (_, action) = say(&mut s, "DATA").await;
    assert_eq!(action, Action::ReadData);
}

#[tokio::test]
async fn endless_recipients_end_with_421() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    say(&mut s, "MAIL FROM:<>").await;
    for _ in 0..100 + RECIPIENT_OVERSHOOT {
        let (_, action) = say(&mut s, "RCPT TO:<alice@ours.example>").await;
        assert_eq!(action, Action::Continue);
    }
    for _ in 0..9 {
        expect(&mut s, "RCPT TO:<alice@ours.example>", "452 4.5.3 Error: too many recipients").await;
    }
    let (got, action) = say(&mut s, "RCPT TO:<alice@ours.example>").await;
    assert_eq!(got, "452 4.5.3 Error: too many recipients\n421 4.7.0 mx.ours.example Error: too many errors\n");
    assert_eq!(action, Action::Close);
}

#[tokio::test]
async fn ten_errors_close_with_421() {
    let mut s = session(SmtpMode::Mx);
    for _ in 0..9 {
        expect(&mut s, "XYZZY", "500 5.5.2 Error: command not recognized").await;
    }
    let (got, action) = say(&mut s, "XYZZY").await;
    assert_eq!(got, "500 5.5.2 Error: command not recognized\n421 4.7.0 mx.ours.example Error: too many errors\n");
    assert_eq!(action, Action::Close);
}

#[tokio::test]
async fn non_progress_commands_close_with_421() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    for _ in 0..10 {
        expect(&mut s, "NOOP", "250 2.0.0 Ok").await;
    }
    let (got, action) = say(&mut s, "RSET").await;
    assert_eq!(got, "250 2.0.0 Ok\n421 4.7.0 mx.ours.example Error: too many commands without progress\n");
    assert_eq!(action, Action::Close);
}

#[tokio::test]
async fn delivered_messages_reset_the_junk_counter() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    for _ in 0..5 {
        for _ in 0..5 {
            expect(&mut s, "RSET", "250 2.0.0 Ok").await;
        }
        say(&mut s, "MAIL FROM:<>").await;
        say(&mut s, "RCPT TO:<alice@ours.example>").await;
        say(&mut s, "DATA").await;
        let EndOfMessage::Deliver(env) = s.end_of_message(1, false) else { panic!("refused") };
        s.delivered(&env, &[Ok(())]);
    }
}

#[tokio::test]
async fn oversized_content_gets_552_after_the_end() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    say(&mut s, "MAIL FROM:<>").await;
    say(&mut s, "RCPT TO:<alice@ours.example>").await;
    say(&mut s, "DATA").await;
    let EndOfMessage::Refuse(r) = s.end_of_message(30_000_000, true) else { panic!("accepted") };
    assert_eq!(render(&r), "552 5.3.4 Error: message size exceeds fixed limit\n");
    assert_eq!(s.state(), SessionState::Ready);
}

#[tokio::test]
async fn delivery_failure_is_temporary() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    say(&mut s, "MAIL FROM:<>").await;
    say(&mut s, "RCPT TO:<alice@ours.example>").await;
    say(&mut s, "RCPT TO:<postmaster@ours.example>").await;
    say(&mut s, "DATA").await;
    let EndOfMessage::Deliver(env) = s.end_of_message(1, false) else { panic!("refused") };
    let fail = Status::new(451, (4, 3, 0), "Error: local delivery failed, try again later");
    let (r, _) = s.delivered(&env, &[Ok(()), Err(fail)]);
    assert_eq!(render(&r), "451 4.3.0 Error: local delivery failed, try again later\n");
}

#[tokio::test]
async fn bdat_chunks() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    // BDAT without a transaction: the octets are read and dropped, then 503.
    let (got, action) = say(&mut s, "BDAT 5").await;
    assert_eq!(got, "");
    assert_eq!(action, Action::ReadChunk { size: 5, last: false, accepted: false });
    let (r, _) = s.chunk_refused();
    assert_eq!(render(&r), "503 5.5.1 Error: need MAIL command\n");
    say(&mut s, "MAIL FROM:<>").await;
    say(&mut s, "RCPT TO:<alice@ours.example>").await;
    let (_, action) = say(&mut s, "BDAT 5").await;
    assert_eq!(action, Action::ReadChunk { size: 5, last: false, accepted: true });
    let (r, _) = s.chunk_received(5);
    assert_eq!(render(&r), "250 2.0.0 5 octets received\n");
    expect(&mut s, "DATA", "503 5.5.1 Error: only BDAT, RSET, NOOP or QUIT during BDAT").await;
    expect(&mut s, "NOOP", "250 2.0.0 Ok").await;
    let (_, action) = say(&mut s, "BDAT 0 LAST").await;
    assert_eq!(action, Action::ReadChunk { size: 0, last: true, accepted: true });
    assert!(matches!(s.end_of_message(5, false), EndOfMessage::Deliver(_)));
    assert_eq!(s.state(), SessionState::Ready);
}

#[tokio::test]
async fn starttls_resets_everything() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO c").await;
    say(&mut s, "MAIL FROM:<>").await;
    expect(&mut s, "STARTTLS", "503 5.5.1 Error: MAIL transaction in progress").await;
    expect(&mut s, "RSET", "250 2.0.0 Ok").await;
    let (got, action) = say(&mut s, "STARTTLS").await;
    assert_eq!(got, "220 2.0.0 Ready to start TLS\n");
    assert_eq!(action, Action::StartTls);
    s.tls_started(TlsInfo { version: "TLSv1.3".into(), cipher: "TLS13_AES_256_GCM_SHA384".into() });
    assert_eq!(s.state(), SessionState::Greeted);
    assert_eq!(s.client().helo, None);
    expect(&mut s, "MAIL FROM:<>", "503 5.5.1 Error: send HELO/EHLO first").await;
    let (ehlo, _) = say(&mut s, "EHLO c").await;
    assert!(!ehlo.contains("STARTTLS"), "not offered twice: {ehlo}");
    expect(&mut s, "STARTTLS", "554 5.5.1 Error: TLS already active").await;
    // Submission hook: an authenticated client may relay (per the policy).
    s.set_authenticated(Address { local: "alice".into(), domain: "ours.example".into() });
    expect(&mut s, "MAIL FROM:<alice@ours.example>", "250 2.1.0 Ok").await;
    expect(&mut s, "RCPT TO:<friend@remote.example>", "250 2.1.5 Ok").await;
}

/// RFC 8689: REQUIRETLS is offered and taken only inside TLS, and rides on the envelope.
#[tokio::test]
async fn requiretls_only_inside_tls() {
    let mut s = session(SmtpMode::Mx);
    let (ehlo, _) = say(&mut s, "EHLO c").await;
    assert!(!ehlo.contains("REQUIRETLS"), "{ehlo}");
    expect(&mut s, "MAIL FROM:<bob@remote.example> REQUIRETLS", "530 5.7.10 Error: REQUIRETLS needs a TLS session")
        .await;
    expect(&mut s, "MAIL FROM:<bob@remote.example> REQUIRETLS=yes", "501 5.5.4 Bad parameter value: REQUIRETLS").await;
    say(&mut s, "STARTTLS").await;
    s.tls_started(TlsInfo { version: "TLSv1.3".into(), cipher: "TLS13_AES_256_GCM_SHA384".into() });
    let (ehlo, _) = say(&mut s, "EHLO c").await;
    assert!(ehlo.contains("250-REQUIRETLS\n"), "{ehlo}");
    expect(&mut s, "MAIL FROM:<bob@remote.example> REQUIRETLS", "250 2.1.0 Ok").await;
    expect(&mut s, "RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    say(&mut s, "DATA").await;
    let EndOfMessage::Deliver(env) = s.end_of_message(10, false) else { panic!("refused") };
    assert!(env.require_tls);
}

#[tokio::test]
async fn starttls_without_certificate() {
    let mut cfg = config(SmtpMode::Mx);
    cfg.tls_available = false;
    let mut s =
        Session::new(cfg, ClientInfo { ip: IpAddr::from([127, 0, 0, 1]), helo: None, tls: None, authenticated: None });
    let (ehlo, _) = say(&mut s, "EHLO c").await;
    assert!(!ehlo.contains("STARTTLS"));
    expect(&mut s, "STARTTLS", "502 5.5.1 Error: command not implemented").await;
}

#[tokio::test]
async fn lmtp_replies_per_recipient() {
    let mut s = session(SmtpMode::Lmtp);
    assert_eq!(render(&[s.banner()]), "220 mx.ours.example LMTP\n");
    expect(&mut s, "EHLO c", "500 5.5.1 Error: this is LMTP, use LHLO").await;
    let (got, _) = say(&mut s, "LHLO mta.ours.example").await;
    assert!(got.starts_with("250-mx.ours.example\n"));
    say(&mut s, "MAIL FROM:<bob@remote.example>").await;
    expect(&mut s, "RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    expect(&mut s, "RCPT TO:<postmaster@ours.example>", "250 2.1.5 Ok").await;
    say(&mut s, "DATA").await;
    let EndOfMessage::Deliver(env) = s.end_of_message(1, false) else { panic!("refused") };
    let full = Status::new(452, (4, 2, 2), "<postmaster@ours.example> Mailbox full");
    let (r, _) = s.delivered(&env, &[Ok(()), Err(full)]);
    assert_eq!(
        render(&r),
        format!(
            "250 2.0.0 <alice@ours.example> Ok: delivered as {}\n\
             452 4.2.2 <postmaster@ours.example> Mailbox full\n",
            env.id
        )
    );
    // Oversized: one 552 per recipient.
    say(&mut s, "MAIL FROM:<>").await;
    say(&mut s, "RCPT TO:<alice@ours.example>").await;
    say(&mut s, "RCPT TO:<alice@ours.example>").await;
    say(&mut s, "DATA").await;
    let EndOfMessage::Refuse(r) = s.end_of_message(1, true) else { panic!("accepted") };
    assert_eq!(r.len(), 2);
}

#[tokio::test]
async fn events_timeout_shutdown_long_line() {
    let mut s = session(SmtpMode::Mx);
    let (r, a) = s.line_too_long();
    assert_eq!(render(&r), "500 5.5.2 Error: line too long\n");
    assert_eq!(a, Action::Continue);
    let (r, a) = s.timeout();
    assert_eq!(render(&r), "421 4.4.2 mx.ours.example Error: timeout exceeded\n");
    assert_eq!(a, Action::Close);
    let (r, a) = s.shutdown();
    assert_eq!(render(&r), "421 4.3.2 mx.ours.example Service shutting down, try again later\n");
    assert_eq!(a, Action::Close);
}

#[test]
fn message_ids_are_base32() {
    let a = new_message_id();
    assert_eq!(a.len(), 12);
    assert!(a.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    assert_ne!(a, new_message_id());
}

#[tokio::test]
async fn submission_requires_tls_then_auth() {
    let mut s = session(SmtpMode::Submission);
    assert_eq!(render(&[s.banner()]), "220 mx.ours.example ESMTP\n");
    expect(&mut s, "AUTH PLAIN", "503 5.5.1 Error: send EHLO first").await;
    let (ehlo, _) = say(&mut s, "EHLO laptop").await;
    assert!(ehlo.contains("250-STARTTLS\n"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "no AUTH over plaintext: {ehlo}");
    expect(&mut s, "AUTH PLAIN AGFsaWNlAHB3", "538 5.7.11 Error: must issue a STARTTLS command first").await;
    expect(&mut s, "MAIL FROM:<alice@ours.example>", "530 5.7.0 Error: authentication required").await;
    s.tls_started(TlsInfo { version: "TLSv1.3".into(), cipher: "TLS13_AES_128_GCM_SHA256".into() });
    let (ehlo, _) = say(&mut s, "EHLO laptop").await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\n250-AUTH=PLAIN LOGIN\n"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    expect(&mut s, "MAIL FROM:<alice@ours.example>", "530 5.7.0 Error: authentication required").await;
    expect(&mut s, "AUTH CRAM-MD5", "504 5.5.4 Error: unsupported authentication mechanism").await;
    let (got, action) = say(&mut s, "AUTH login").await;
    assert_eq!(got, "");
    assert_eq!(action, Action::Auth { mechanism: crate::smtp::sasl::Mechanism::Login, initial: None });
    let (got, _) = s.auth_finished(Err(Status::new(535, (5, 7, 8), "Error: authentication credentials invalid")));
    assert_eq!(render(&got), "535 5.7.8 Error: authentication credentials invalid\n");
    let (_, action) = say(&mut s, "AUTH PLAIN AGFsaWNlAHB3").await;
    assert_eq!(
        action,
        Action::Auth { mechanism: crate::smtp::sasl::Mechanism::Plain, initial: Some("AGFsaWNlAHB3".into()) }
    );
    let alice = Address { local: "alice".into(), domain: "ours.example".into() };
    let (got, _) = s.auth_finished(Ok(alice));
    assert_eq!(render(&got), "235 2.7.0 Authentication successful\n");
    expect(&mut s, "AUTH PLAIN", "503 5.5.1 Error: already authenticated").await;
    let (ehlo, _) = say(&mut s, "EHLO laptop").await;
    assert!(!ehlo.contains("AUTH"), "not offered once authenticated: {ehlo}");
    expect(
        &mut s,
        "MAIL FROM:<boss@bank.example>",
        "553 5.7.1 <boss@bank.example>: Sender address rejected: not owned by the authenticated user",
    )
    .await;
    expect(&mut s, "MAIL FROM:<alice@ours.example>", "250 2.1.0 Ok").await;
    expect(&mut s, "RCPT TO:<friend@remote.example>", "250 2.1.5 Ok").await;
    say(&mut s, "DATA").await;
    let EndOfMessage::Deliver(env) = s.end_of_message(10, false) else { panic!("refused") };
    let (got, _) = s.delivered(&env, &[Ok(())]);
    assert!(render(&got).starts_with("250 2.0.0 Ok: queued as "), "{}", render(&got));
}

/// Every refused MAIL and RCPT names its reason for the transaction metrics, once.
#[tokio::test]
async fn refused_mail_and_rcpt_name_their_reason() {
    let mut s = session(SmtpMode::Mx);
    say(&mut s, "EHLO client.example").await;
    say(&mut s, "MAIL FROM:<bob@nxdomain.example>").await;
    assert_eq!(s.take_refusal(), Some(Refusal::Sender));
    assert_eq!(s.take_refusal(), None);
    say(&mut s, "MAIL FROM:<bob@remote.example> SIZE=999999999999").await;
    assert_eq!(s.take_refusal(), Some(Refusal::Size));
    say(&mut s, "MAIL FROM:<bob@remote.example>").await;
    assert_eq!(s.take_refusal(), None);
    for (rcpt, reason) in [
        ("nobody@ours.example", Refusal::UnknownUser),
        ("carol@elsewhere.example", Refusal::Relay),
        ("full@ours.example", Refusal::Quota),
        ("broken@ours.example", Refusal::Local),
    ] {
        say(&mut s, &format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(s.take_refusal(), Some(reason), "{rcpt}");
    }
    expect(&mut s, "RCPT TO:<alice@ours.example>", "250 2.1.5 Ok").await;
    assert_eq!(s.take_refusal(), None);
}
