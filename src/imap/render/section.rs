//! BODY[section]<partial> and BINARY[part] extraction (RFC 9051 6.4.5, RFC 3516): find the
//! part a section names, cut the requested bytes out of the raw message, and for BINARY undo
//! the Content-Transfer-Encoding. Pure functions over the bytes and their `mime` tree.

use std::borrow::Cow;

use super::mime::{MimePart, PartKind, header_fields, header_value, unfold};
use crate::imap::command::{Section, SectionText};

/// Find the part a part path names. The root's part 1 is its body when it is not
/// multipart; inside a message/rfc822 part the numbering continues in the encapsulated
/// message (RFC 9051 6.4.5 examples: `4.2.2.1`).
pub fn find_part<'p>(root: &'p MimePart, path: &[u32]) -> Option<&'p MimePart> {
    let mut cur = root;
    for (i, &n) in path.iter().enumerate() {
        let idx = usize::try_from(n).ok()?.checked_sub(1)?;
        cur = if i == 0 {
            match &root.kind {
                PartKind::Multipart(children) => children.get(idx)?,
                _ if idx == 0 => root,
                _ => return None,
            }
        } else {
            match &cur.kind {
                PartKind::Multipart(children) => children.get(idx)?,
                PartKind::Message(inner) => match &inner.kind {
                    PartKind::Multipart(children) => children.get(idx)?,
                    _ if idx == 0 => inner,
                    _ => return None,
                },
                PartKind::Single if idx == 0 => cur,
                PartKind::Single => return None,
            }
        };
    }
    Some(cur)
}

/// The bytes of BODY[section] (before any partial), or `None` when the section does not
/// exist in this message (the session answers NIL).
pub fn body_section<'m>(msg: &'m [u8], root: &MimePart, section: &Section) -> Option<Cow<'m, [u8]>> {
    let part = find_part(root, &section.part)?;
    // The message whose HEADER/TEXT is meant: the root, or the message in a message/rfc822 part.
    let message = if section.part.is_empty() {
        Some(root)
    } else {
        match &part.kind {
            PartKind::Message(inner) => Some(inner.as_ref()),
            _ => None,
        }
    };
    let out: Cow<'m, [u8]> = match &section.text {
        None if section.part.is_empty() => Cow::Borrowed(msg),
        None => Cow::Borrowed(&msg[part.body.clone()]),
        Some(SectionText::Mime) => Cow::Borrowed(&msg[part.header.clone()]),
        Some(SectionText::Header) => Cow::Borrowed(&msg[message?.header.clone()]),
        Some(SectionText::Text) => Cow::Borrowed(&msg[message?.body.clone()]),
        Some(SectionText::HeaderFields(names)) => Cow::Owned(select_fields(&msg[message?.header.clone()], names, true)),
        Some(SectionText::HeaderFieldsNot(names)) => {
            Cow::Owned(select_fields(&msg[message?.header.clone()], names, false))
        }
    };
    Some(out)
}

/// The fields whose names are (or with `keep == false`, are not) in `names`, in message
/// order, followed by the blank line (RFC 9051: "the delimiting blank line ... included").
fn select_fields(block: &[u8], names: &[String], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in header_fields(block) {
        let listed = names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(f.name));
        if listed == keep {
            out.extend_from_slice(f.raw);
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Apply `<start.len>`: the bytes from `start`, at most `len` (empty when start is past the
/// end, RFC 9051 6.4.5).
pub fn partial(data: &[u8], range: Option<(u32, u32)>) -> &[u8] {
    match range {
        None => data,
        Some((start, len)) => {
            let start = (start as usize).min(data.len());
            let end = start.saturating_add(len as usize).min(data.len());
            &data[start..end]
        }
    }
}

/// Why BINARY could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// RFC 3516 4.3: tagged `NO [UNKNOWN-CTE]`.
    #[error("unknown Content-Transfer-Encoding")]
    UnknownCte,
    #[error("no such part")]
    NoSuchPart,
}

/// BINARY[part]: the part's content with its transfer encoding removed. `[]` is the whole
/// message as stored.
pub fn binary<'m>(msg: &'m [u8], root: &MimePart, part: &[u32]) -> Result<Cow<'m, [u8]>, BinaryError> {
    if part.is_empty() {
        return Ok(Cow::Borrowed(msg));
    }
    let p = find_part(root, part).ok_or(BinaryError::NoSuchPart)?;
    if matches!(p.kind, PartKind::Multipart(_)) {
        return Err(BinaryError::NoSuchPart);
    }
    let body = &msg[p.body.clone()];
    let cte = header_value(&msg[p.header.clone()], "content-transfer-encoding").map(unfold).unwrap_or_default();
    match cte_token(&cte).to_ascii_lowercase().as_slice() {
        b"" | b"7bit" | b"8bit" | b"binary" if p.content_type.main.eq_ignore_ascii_case("text") => Ok(crlf_lines(body)),
        b"" | b"7bit" | b"8bit" | b"binary" => Ok(Cow::Borrowed(body)),
        b"base64" => Ok(Cow::Owned(decode_base64_lenient(body))),
        b"quoted-printable" => Ok(Cow::Owned(decode_quoted_printable(body))),
        _ => Err(BinaryError::UnknownCte),
    }
}

/// Text with every bare LF as CRLF: RFC 3516 4.2 has textual sections go out with the
/// IMAP CRLF line ends "regardless of the underlying storage" (an APPEND may store LF).
fn crlf_lines(text: &[u8]) -> Cow<'_, [u8]> {
    let bare_lf = |(i, b): (usize, &u8)| *b == b'\n' && (i == 0 || text[i - 1] != b'\r');
    if !text.iter().enumerate().any(bare_lf) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    for (i, b) in text.iter().enumerate() {
        if bare_lf((i, b)) {
            out.push(b'\r');
        }
        out.push(*b);
    }
    Cow::Owned(out)
}

/// The mechanism of a Content-Transfer-Encoding value: its first token, without the
/// comment or stray parameters some generators add (`base64 (attachment)`).
fn cte_token(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|b| b.is_ascii_whitespace() || matches!(b, b'(' | b';')).unwrap_or(value.len());
    &value[..end]
}

/// Base64 body decoding that skips line breaks and stray characters (mail in the wild).
pub fn decode_base64_lenient(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &b in body {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable (RFC 2045 6.7) to the octets it encodes. Line by line: white space at
/// the end of an encoded line is transport padding and goes (rule 3); a line ending in `=`
/// (after that padding) is a soft line break and joins the next (rule 5); `=XX` is one
/// octet (either case of hex, as robust decoders accept); any other `=` is kept as it is.
/// Hard line breaks come out as CRLF whatever the stored line end was (RFC 3516 4.2:
/// textual BINARY data uses the IMAP CRLF convention).
pub fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|b| *b == b'\n') {
        let (text, hard_break) = match line.strip_suffix(b"\n") {
            Some(t) => (t.strip_suffix(b"\r").unwrap_or(t), true),
            None => (line, false),
        };
        let end = text.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(0, |p| p + 1);
        let text = &text[..end];
        let (text, soft) = match text.strip_suffix(b"=") {
            Some(t) => (t, true),
            None => (text, false),
        };
        decode_qp_text(text, &mut out);
        if hard_break && !soft {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// The `=XX` escapes of one quoted-printable line (no line end in `text`).
fn decode_qp_text(text: &[u8], out: &mut Vec<u8>) {
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'='
            && let (Some(hi), Some(lo)) = (text.get(i + 1).and_then(|c| hex(*c)), text.get(i + 2).and_then(|c| hex(*c)))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::mime::parse;
    use super::*;

    const MSG: &[u8] = b"From: a@b.c\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n\
--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nok\r\n\
--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX-A: 1\r\n\r\n\
inner body\r\n\
--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n\
--XX\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nzz\r\n--XX--\r\n";

    fn sec(part: &[u32], text: Option<SectionText>) -> String {
        let root = parse(MSG);
        let s = Section { part: part.to_vec(), text };
        match body_section(MSG, &root, &s) {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => "NIL".into(),
        }
    }

    #[test]
    fn sections_of_a_multipart_message() {
        assert_eq!(sec(&[], Some(SectionText::Header)).lines().count(), 4);
        assert!(sec(&[], Some(SectionText::Text)).starts_with("--XX\r\n"));
        assert_eq!(sec(&[1], None), "caf=C3=A9 =\r\nok");
        assert_eq!(
            sec(&[1], Some(SectionText::Mime)),
            "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
        assert_eq!(sec(&[2, 1], None), "inner body");
        assert_eq!(sec(&[2], Some(SectionText::Header)), "Subject: inner\r\nX-A: 1\r\n\r\n");
        assert_eq!(sec(&[2], Some(SectionText::Text)), "inner body");
        assert_eq!(sec(&[2], Some(SectionText::HeaderFields(vec!["x-a".into()]))), "X-A: 1\r\n\r\n");
        assert_eq!(
            sec(&[], Some(SectionText::HeaderFieldsNot(vec!["FROM".into(), "CONTENT-TYPE".into()]))),
            "Subject: s\r\n\r\n"
        );
        assert_eq!(sec(&[1], Some(SectionText::Header)), "NIL");
        assert_eq!(sec(&[9], None), "NIL");
        assert_eq!(sec(&[1, 2], None), "NIL");
    }

    #[test]
    fn non_multipart_part_one_is_the_body() {
        let msg = b"Subject: x\r\n\r\nbody";
        let root = parse(msg);
        let s = Section { part: vec![1], text: None };
        assert_eq!(body_section(msg, &root, &s).as_deref(), Some(&b"body"[..]));
    }

    #[test]
    fn partial_ranges() {
        assert_eq!(partial(b"0123456789", Some((2, 3))), b"234");
        assert_eq!(partial(b"0123", Some((2, 100))), b"23");
        assert_eq!(partial(b"0123", Some((10, 1))), b"");
        assert_eq!(partial(b"0123", None), b"0123");
    }

    #[test]
    fn binary_decodes_transfer_encodings() {
        let root = parse(MSG);
        assert_eq!(binary(MSG, &root, &[1]).unwrap().as_ref(), "café ok".as_bytes());
        assert_eq!(binary(MSG, &root, &[3]).unwrap().as_ref(), b"hello");
        assert_eq!(binary(MSG, &root, &[4]), Err(BinaryError::UnknownCte));
        assert_eq!(binary(MSG, &root, &[7]), Err(BinaryError::NoSuchPart));
        assert_eq!(binary(MSG, &root, &[]).unwrap().len(), MSG.len());
    }

    /// RFC 2045 6.7: soft line breaks (also with transport padding after the `=`) join
    /// lines, trailing white space of an encoded line is padding, hard breaks are CRLF.
    #[test]
    fn quoted_printable_rules() {
        let qp = |s: &[u8]| String::from_utf8_lossy(&decode_quoted_printable(s)).into_owned();
        assert_eq!(qp(b"caf=C3=A9 =\r\nok"), "caf\u{e9} ok");
        assert_eq!(qp(b"soft=  \t\r\nbreak"), "softbreak");
        assert_eq!(qp(b"padded   \r\nline\t\r\n"), "padded\r\nline\r\n");
        assert_eq!(qp(b"bare\nlf=\nx"), "bare\r\nlfx");
        assert_eq!(qp(b"kept=20space =3d=3D end="), "kept space == end");
        assert_eq!(qp(b"a=zz=4"), "a=zz=4");
        assert_eq!(cte_token(b"Base64 (attachment)"), b"Base64");
        // identity-encoded text goes out with CRLF; other types as stored
        let lf = b"Content-Type: text/plain\n\none\ntwo\r\n";
        assert_eq!(binary(lf, &parse(lf), &[1]).unwrap().as_ref(), b"one\r\ntwo\r\n");
        let bin = b"Content-Type: application/octet-stream\n\none\ntwo";
        assert_eq!(binary(bin, &parse(bin), &[1]).unwrap().as_ref(), b"one\ntwo");
    }

    #[test]
    fn decoders_never_panic() {
        for s in [&b"="[..], b"=4", b"=zz", b"==\r", b"=\n"] {
            let _ = decode_quoted_printable(s);
        }
        assert_eq!(decode_base64_lenient(b"!!aGk=garbage"), b"hi");
    }
}
