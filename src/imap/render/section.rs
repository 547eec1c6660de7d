//! BODY[section]<partial> and BINARY[part] extraction (RFC 9051 6.4.5, RFC 3516): find the
//! part a section names, cut the requested bytes out of the raw message, and for BINARY undo
//! the Content-Transfer-Encoding. Pure functions over the bytes and their `mime` tree.

use std::borrow::Cow;

use std::ops::Range;

use super::mime::{MimePart, PartKind, header_fields, header_value, unfold};
use super::mime_source::{MimeSource, SliceSource};
use super::transfer::Decoder;
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

/// What BODY[section] is before any partial: a byte range of the message, or (for
/// HEADER.FIELDS) bytes made from a header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionData {
    Range(Range<usize>),
    Owned(Vec<u8>),
}

/// The bytes of BODY[section] (before any partial), or `None` when the section does not
/// exist in this message (the session answers NIL).
pub fn body_section<'m>(msg: &'m [u8], root: &MimePart, section: &Section) -> Option<Cow<'m, [u8]>> {
    Some(match section_data(&mut SliceSource(msg), root, section)? {
        SectionData::Range(r) => Cow::Borrowed(&msg[r]),
        SectionData::Owned(v) => Cow::Owned(v),
    })
}

/// [`body_section`] from any source of the message (its file, for a large message).
pub fn section_data<S: MimeSource>(src: &mut S, root: &MimePart, section: &Section) -> Option<SectionData> {
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
    let fields = |src: &mut S, names: &[String], keep: bool| {
        message.map(|m| SectionData::Owned(select_fields(&src.block(m.header.clone()), names, keep)))
    };
    match &section.text {
        None if section.part.is_empty() => Some(SectionData::Range(0..src.len())),
        None => Some(SectionData::Range(part.body.clone())),
        Some(SectionText::Mime) => Some(SectionData::Range(part.header.clone())),
        Some(SectionText::Header) => Some(SectionData::Range(message?.header.clone())),
        Some(SectionText::Text) => Some(SectionData::Range(message?.body.clone())),
        Some(SectionText::HeaderFields(names)) => fields(src, names, true),
        Some(SectionText::HeaderFieldsNot(names)) => fields(src, names, false),
    }
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
    let (range, decoder) = binary_source(&mut SliceSource(msg), root, part)?;
    let body = &msg[range];
    Ok(match decoder {
        Decoder::Identity => Cow::Borrowed(body),
        Decoder::CrlfText { .. } if !has_bare_lf(body) => Cow::Borrowed(body),
        decoder => Cow::Owned(decoder.decode_all(body)),
    })
}

/// Where BINARY[part] comes from: the byte range of the encoded content and the decoder
/// that undoes its Content-Transfer-Encoding (from any source of the message).
pub fn binary_source<S: MimeSource>(
    src: &mut S,
    root: &MimePart,
    part: &[u32],
) -> Result<(Range<usize>, Decoder), BinaryError> {
    if part.is_empty() {
        return Ok((0..src.len(), Decoder::Identity));
    }
    let p = find_part(root, part).ok_or(BinaryError::NoSuchPart)?;
    if matches!(p.kind, PartKind::Multipart(_)) {
        return Err(BinaryError::NoSuchPart);
    }
    let cte = header_value(&src.block(p.header.clone()), "content-transfer-encoding").map(unfold).unwrap_or_default();
    let decoder = match cte_token(&cte).to_ascii_lowercase().as_slice() {
        b"" | b"7bit" | b"8bit" | b"binary" if p.content_type.main.eq_ignore_ascii_case("text") => Decoder::crlf_text(),
        b"" | b"7bit" | b"8bit" | b"binary" => Decoder::Identity,
        b"base64" => Decoder::base64(),
        b"quoted-printable" => Decoder::quoted_printable(usize::MAX),
        _ => return Err(BinaryError::UnknownCte),
    };
    Ok((p.body.clone(), decoder))
}

/// Any LF not preceded by CR (text that [`Decoder::CrlfText`] would change).
fn has_bare_lf(text: &[u8]) -> bool {
    text.iter().enumerate().any(|(i, b)| *b == b'\n' && (i == 0 || text[i - 1] != b'\r'))
}

/// The mechanism of a Content-Transfer-Encoding value: its first token, without the
/// comment or stray parameters some generators add (`base64 (attachment)`).
fn cte_token(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|b| b.is_ascii_whitespace() || matches!(b, b'(' | b';')).unwrap_or(value.len());
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::super::mime::parse;
    use super::super::transfer::{decode_base64_lenient, decode_quoted_printable};
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
