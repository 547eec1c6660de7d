//! Exact transcripts: client bytes in, the session's bytes out, over no socket.

use super::harness::*;

#[tokio::test]
async fn select_fetch_store_expunge_logout() {
    let mut t = Transcript::start().await;
    assert!(t.greeting.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{}", t.greeting);
    assert!(t.greeting.ends_with("] mail.example.org IMAP ready\r\n"), "{}", t.greeting);
    t.deliver("INBOX", FIRST).await;
    t.deliver("INBOX", SECOND).await;
    t.login().await;
    let validity = t.uid_validity("INBOX").await;
    t.step(
        "a1 SELECT INBOX\r\n",
        &format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n\
             * 2 EXISTS\r\n\
             * 2 RECENT\r\n\
             * OK [UNSEEN 1] First unseen\r\n\
             * OK [UIDVALIDITY {validity}] UIDs valid\r\n\
             * OK [UIDNEXT 3] Predicted next UID\r\n\
             * OK [HIGHESTMODSEQ 3] Highest\r\n\
             a1 OK [READ-WRITE] SELECT completed\r\n"
        ),
    )
    .await;
    t.step(
        "a2 FETCH 1:2 (UID FLAGS RFC822.SIZE)\r\n",
        "* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE 118)\r\n\
         * 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE 58)\r\n\
         a2 OK FETCH completed\r\n",
    )
    .await;
    t.step(
        "a3 FETCH 2 BODY[]\r\n",
        "* 2 FETCH (BODY[] {58}\r\nFrom: Carol <carol@example.org>\r\nSubject: Lunch\r\n\r\nNoon?\r\n FLAGS (\\Seen \\Recent))\r\n\
         a3 OK FETCH completed\r\n",
    )
    .await;
    t.step(
        "a4 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] ENVELOPE)\r\n",
        "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: Hello\r\n\r\n ENVELOPE (\"Mon, 3 Feb 2025 10:00:00 +0000\" \"Hello\" ((\"Bob\" NIL \"bob\" \"example.org\")) ((\"Bob\" NIL \"bob\" \"example.org\")) ((\"Bob\" NIL \"bob\" \"example.org\")) ((NIL NIL \"alice\" \"example.org\")) NIL NIL NIL NIL))\r\n\
         a4 OK FETCH completed\r\n",
    )
    .await;
    t.step(
        "a5 STORE 1 +FLAGS (\\Deleted)\r\n",
        "* 1 FETCH (FLAGS (\\Deleted \\Recent))\r\n\
         a5 OK STORE completed\r\n",
    )
    .await;
    t.step(
        "a6 EXPUNGE\r\n",
        "* 1 EXPUNGE\r\n\
         a6 OK EXPUNGE completed\r\n",
    )
    .await;
    t.step("a7 FETCH 1 (UID FLAGS)\r\n", "* 1 FETCH (UID 2 FLAGS (\\Seen \\Recent))\r\na7 OK FETCH completed\r\n")
        .await;
    t.step("a8 LOGOUT\r\n", "* BYE Logging out\r\na8 OK LOGOUT completed\r\n").await;
    assert_eq!(t.rest().await, "");
}

#[tokio::test]
async fn append_with_a_synchronizing_literal() {
    let mut t = Transcript::start().await;
    t.login().await;
    let message = "Subject: hi\r\n\r\nbody\r\n";
    t.step(&format!("a1 APPEND INBOX (\\Flagged) {{{}}}\r\n", message.len()), "+ Ready for literal data\r\n").await;
    let validity = t.uid_validity("INBOX").await;
    t.step_for("a1", &format!("{message}\r\n"), &format!("a1 OK [APPENDUID {validity} 1] APPEND completed\r\n")).await;
    t.step(
        "a2 EXAMINE INBOX\r\n",
        &format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * OK [PERMANENTFLAGS ()] Read-only mailbox\r\n\
             * 1 EXISTS\r\n\
             * 0 RECENT\r\n\
             * OK [UNSEEN 1] First unseen\r\n\
             * OK [UIDVALIDITY {validity}] UIDs valid\r\n\
             * OK [UIDNEXT 2] Predicted next UID\r\n\
             * OK [HIGHESTMODSEQ 2] Highest\r\n\
             a2 OK [READ-ONLY] EXAMINE completed\r\n"
        ),
    )
    .await;
    t.step(
        "a3 FETCH 1 (FLAGS BODY.PEEK[])\r\n",
        "* 1 FETCH (FLAGS (\\Flagged) BODY[] {21}\r\nSubject: hi\r\n\r\nbody\r\n)\r\na3 OK FETCH completed\r\n",
    )
    .await;
}

#[tokio::test]
async fn a_bad_command_gets_bad_and_the_session_goes_on() {
    let mut t = Transcript::start().await;
    t.step("a1 FROBNICATE\r\n", "a1 BAD unknown command FROBNICATE\r\n").await;
    t.step("a2 SELECT INBOX\r\n", "a2 BAD Log in first\r\n").await;
    t.login().await;
    t.step("a3 FETCH 1 FLAGS\r\n", "a3 BAD No mailbox selected\r\n").await;
    t.step("a4 NOOP\r\n", "a4 OK NOOP completed\r\n").await;
    t.step("a5 LOGOUT\r\n", "* BYE Logging out\r\na5 OK LOGOUT completed\r\n").await;
}

#[tokio::test]
async fn streamed_literals_arrive_in_place() {
    // A BODY[] range is streamed from the file (an effect the connection carries out),
    // between the bytes rendered around it; BODY[HEADER] alone too when the header cache
    // does not hold it.
    let mut t = Transcript::start().await;
    t.deliver("INBOX", SECOND).await;
    t.login().await;
    t.send("a1 EXAMINE INBOX\r\n").await;
    t.step(
        "a2 FETCH 1 (UID BODY.PEEK[]<6.5>)\r\n",
        "* 1 FETCH (UID 1 BODY[]<6> {5}\r\nCarol)\r\na2 OK FETCH completed\r\n",
    )
    .await;
    t.step(
        "a3 FETCH 1 (BODY.PEEK[HEADER] FLAGS)\r\n",
        "* 1 FETCH (BODY[HEADER] {51}\r\nFrom: Carol <carol@example.org>\r\nSubject: Lunch\r\n\r\n FLAGS ())\r\n\
         a3 OK FETCH completed\r\n",
    )
    .await;
}
