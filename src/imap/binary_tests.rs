//! RFC 3516 BINARY transcripts in an IMAP4rev1 session (no ENABLE): FETCH BINARY[part],
//! BINARY.SIZE and partial BINARY return the octets with the Content-Transfer-Encoding
//! undone, and a message APPENDed with a literal8 comes back intact.

use super::test_support::*;

/// A message with one part per transfer encoding. The quoted-printable part has soft line
/// breaks, one with transport padding after its `=`, and white space at a line end.
const PARTS: &str = "From: a@example.org\nSubject: encodings\nContent-Type: multipart/mixed; boundary=b\n\n\
--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
caf=C3=A9 au lait, a long line that is =\ncontinued here   \nsoft with padding=  \nafter=3D it=\n\
--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAEC\nAw==\n\
--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGr\u{fc}\u{df}e\n\
--b\nContent-Type: text/plain\nContent-Transfer-Encoding: x-rot13\n\nuryyb\n--b--\n";

/// Part 1 decoded (RFC 2045 6.7 rules 3 and 5): padding gone, soft breaks joined.
const QP_DECODED: &str = "caf\u{e9} au lait, a long line that is continued here\r\nsoft with paddingafter= it";

#[tokio::test]
async fn binary_returns_decoded_octets_rfc3516_4_2() {
    let srv = start().await;
    srv.deliver("INBOX", PARTS).await;
    let mut c = srv.login().await;
    c.ok("SELECT INBOX").await;
    let n = QP_DECODED.len();
    // RFC 3516 4.2: BINARY[1] is the part after removing its quoted-printable encoding,
    // BINARY.SIZE[1] the number of those octets.
    let r = c.ok("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])").await;
    assert_eq!(r[0], format!("* 1 FETCH (BINARY.SIZE[1] {n} BINARY[1] {{{n}}}\r\n{QP_DECODED})"));
    assert_eq!(r[1], "t3 OK FETCH completed");
    // RFC 3516 4.2: the partial's origin octet counts in the decoded data.
    let r = c.ok("FETCH 1 (BINARY.PEEK[1]<3.9>)").await;
    assert_eq!(r[0], "* 1 FETCH (BINARY[1]<3> {9}\r\n\u{e9} au lai)");
    let r = c.ok("FETCH 1 (BINARY.PEEK[1]<53.100>)").await;
    assert_eq!(r[0], format!("* 1 FETCH (BINARY[1]<53> {{{}}}\r\n{})", n - 53, &QP_DECODED[53..]));
    // base64 decoded (with NUL: literal8), 8bit as stored.
    let r = c.ok("FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2] BINARY.SIZE[3] BINARY.PEEK[3])").await;
    assert_eq!(
        r[0],
        "* 1 FETCH (BINARY.SIZE[2] 4 BINARY[2] ~{4}\r\n\0\u{1}\u{2}\u{3} BINARY.SIZE[3] 7 BINARY[3] {7}\r\nGr\u{fc}\u{df}e)"
    );
    // RFC 3516 4.3: an encoding the server cannot undo is NO [UNKNOWN-CTE].
    let r = c.cmd("FETCH 1 (BINARY.PEEK[4])").await;
    assert_eq!(r, ["t7 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding"]);
    let r = c.cmd("FETCH 1 (BINARY.SIZE[4])").await;
    assert_eq!(r, ["t8 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding"]);
    // BODY[1] is still the part as stored.
    let r = c.ok("FETCH 1 (BODY.PEEK[1]<0.16>)").await;
    assert_eq!(r[0], "* 1 FETCH (BODY[1]<0> {16}\r\ncaf=C3=A9 au lai)");
}

#[tokio::test]
async fn append_with_literal8_keeps_the_content_rfc3516_4_4() {
    let srv = start().await;
    let mut c = srv.login().await;
    let msg = "Subject: bin\r\nContent-Type: application/octet-stream\r\n\
               Content-Transfer-Encoding: binary\r\n\r\nab\0cd\r\n";
    // RFC 3516 4.4: APPEND takes the message as literal8, synchronizing or not (LITERAL+).
    let tag = c.next_tag();
    c.send(&format!("{tag} APPEND INBOX ~{{{}}}\r\n", msg.len())).await;
    assert_eq!(c.line().await, "+ Ready for literal data");
    c.send(&format!("{msg}\r\n")).await;
    let r = c.until_tagged(&tag).await;
    assert!(r[0].starts_with(&format!("{tag} OK [APPENDUID ")) && r[0].ends_with(" 1] APPEND completed"), "{r:?}");
    let r = c.cmd(&format!("APPEND INBOX (\\Seen) ~{{{}+}}\r\n{msg}", msg.len())).await;
    assert!(r[0].ends_with(" 2] APPEND completed"), "{r:?}");
    c.ok("SELECT INBOX").await;
    // BINARY[1] gives the octets back in a literal8 (RFC 3516 4.2); BODY[1] is the same
    // part in a plain literal, which may not carry NUL (RFC 3501 4.3 CHAR8): 0x80 there.
    let r = c.ok("FETCH 1:2 (BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[1])").await;
    for (i, line) in r[..2].iter().enumerate() {
        assert_eq!(
            *line,
            format!(
                "* {} FETCH (BINARY[1] ~{{7}}\r\nab\0cd\r\n BINARY.SIZE[1] 7 BODY[1] {{7}}\r\nab\u{fffd}cd\r\n)",
                i + 1
            )
        );
    }
    let r = c.ok("FETCH 1 (BINARY.PEEK[] RFC822.SIZE)").await;
    assert_eq!(r[0], format!("* 1 FETCH (BINARY[] ~{{{}}}\r\n{msg} RFC822.SIZE {})", msg.len(), msg.len()));
}

/// A literal8 above the in-memory bound is streamed to a spool file while it arrives;
/// the stored message is the same, and BODY[] streamed from the file has no NUL either.
#[tokio::test]
async fn streamed_literal8_append_rfc3516_4_4() {
    let srv = start_with(|ctx| ctx.limits.max_literal = 1024 * 1024).await;
    let mut c = srv.login().await;
    let filler = "x".repeat(100 * 1024);
    let msg = format!("Subject: big\r\nContent-Transfer-Encoding: binary\r\n\r\nab\0cd{filler}\r\n");
    let r = c.cmd(&format!("APPEND INBOX ~{{{}+}}\r\n{msg}", msg.len())).await;
    assert!(r[0].ends_with(" 1] APPEND completed"), "{r:?}");
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 1 (BINARY.PEEK[1]<0.8> BODY.PEEK[1]<0.8>)").await;
    assert_eq!(r[0], "* 1 FETCH (BINARY[1]<0> ~{8}\r\nab\0cdxxx BODY[1]<0> {8}\r\nab\u{fffd}cdxxx)");
    let at = msg.find("ab\0").unwrap_or_default();
    let r = c.ok(&format!("FETCH 1 (BODY.PEEK[]<{at}.8>)")).await;
    assert_eq!(r[0], format!("* 1 FETCH (BODY[]<{at}> {{8}}\r\nab\u{fffd}cdxxx)"));
    let r = c.ok("FETCH 1 (BINARY.SIZE[1])").await;
    assert_eq!(r[0], format!("* 1 FETCH (BINARY.SIZE[1] {})", filler.len() + 7));
}
