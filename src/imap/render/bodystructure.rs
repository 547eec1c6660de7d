//! BODYSTRUCTURE and BODY (RFC 9051 7.5.2 `body`): the MIME tree rendered as nested lists,
//! with extension data (MD5, disposition, language, location) only for BODYSTRUCTURE.
//! Field order and defaults follow the grammar and match Dovecot's output, e.g.
//! `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 1 NIL NIL NIL NIL)`.

use super::envelope::envelope;
use super::mime::{MimePart, PartKind, header_value, parse_params, split_params, unfold};
use super::{nstring, string};

/// Append the body structure of `part` (a whole message: pass the root). `extended`:
/// BODYSTRUCTURE (true) or BODY (false).
pub fn body_structure(out: &mut Vec<u8>, msg: &[u8], part: &MimePart, extended: bool) {
    let header = &msg[part.header.clone()];
    let field = |name: &str| header_value(header, name).map(unfold);
    out.push(b'(');
    match &part.kind {
        PartKind::Multipart(children) => {
            for child in children {
                body_structure(out, msg, child, extended);
            }
            out.push(b' ');
            string(out, part.content_type.sub.as_bytes());
            if extended {
                out.push(b' ');
                params(out, &part.content_type.params);
                extension(out, header);
            }
        }
        kind => {
            string(out, part.content_type.main.as_bytes());
            out.push(b' ');
            string(out, part.content_type.sub.as_bytes());
            out.push(b' ');
            params(out, &part.content_type.params);
            out.push(b' ');
            nstring(out, field("content-id").as_deref());
            out.push(b' ');
            nstring(out, field("content-description").as_deref());
            out.push(b' ');
            let cte = field("content-transfer-encoding").unwrap_or_else(|| b"7bit".to_vec());
            string(out, &cte);
            let body = &msg[part.body.clone()];
            out.extend_from_slice(format!(" {}", body.len()).as_bytes());
            match kind {
                PartKind::Message(inner) => {
                    out.push(b' ');
                    envelope(out, &msg[inner.header.clone()]);
                    out.push(b' ');
                    body_structure(out, msg, inner, extended);
                    out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
                }
                _ if part.content_type.main.eq_ignore_ascii_case("text") => {
                    out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
                }
                _ => {}
            }
            if extended {
                out.push(b' ');
                nstring(out, field("content-md5").as_deref());
                extension(out, header);
            }
        }
    }
    out.push(b')');
}

/// `body-fld-lines`: number of lines (LF count, plus one for a final unterminated line).
fn lines(body: &[u8]) -> usize {
    let n = memchr::memchr_iter(b'\n', body).count();
    if body.last().is_some_and(|b| *b != b'\n') { n + 1 } else { n }
}

/// `("name" "value" ...)` or NIL.
fn params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k.as_bytes());
        out.push(b' ');
        string(out, v.as_bytes());
    }
    out.push(b')');
}

/// ` dsp lang loc` (with leading space).
fn extension(out: &mut Vec<u8>, header: &[u8]) {
    out.push(b' ');
    match header_value(header, "content-disposition").map(unfold) {
        Some(v) => {
            let text = String::from_utf8_lossy(&v).into_owned();
            let mut pieces = split_params(&text);
            let kind = pieces.next().map(str::trim).unwrap_or("").to_string();
            if kind.is_empty() {
                out.extend_from_slice(b"NIL");
            } else {
                out.push(b'(');
                string(out, kind.as_bytes());
                out.push(b' ');
                params(out, &parse_params(pieces));
                out.push(b')');
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match header_value(header, "content-language").map(unfold) {
        Some(v) => {
            let text = String::from_utf8_lossy(&v).into_owned();
            let langs: Vec<&str> = text.split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
            match langs.as_slice() {
                [] => out.extend_from_slice(b"NIL"),
                [one] => string(out, one.as_bytes()),
                many => {
                    out.push(b'(');
                    for (i, l) in many.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        string(out, l.as_bytes());
                    }
                    out.push(b')');
                }
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(out, header_value(header, "content-location").map(unfold).as_deref());
}

#[cfg(test)]
mod tests {
    use super::super::mime::parse;
    use super::*;

    fn bs(msg: &[u8], extended: bool) -> String {
        let root = parse(msg);
        let mut out = Vec::new();
        body_structure(&mut out, msg, &root, extended);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn simple_text_message() {
        let msg = b"Subject: x\r\n\r\nhello\r\n";
        assert_eq!(
            bs(msg, true),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL)"
        );
        assert_eq!(bs(msg, false), "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1)");
    }

    #[test]
    fn multipart_alternative_with_attachment() {
        let msg = b"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n\
<p>cafe</p>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Language: en, de\r\n\r\n\
JVBERi0=\r\n\
--outer--\r\n";
        assert_eq!(
            bs(msg, true),
            "(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 1 NIL NIL NIL NIL)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 11 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)\
(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 8 NIL (\"attachment\" (\"filename\" \"a.pdf\")) (\"en\" \"de\") NIL) \
\"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)"
        );
        assert_eq!(
            bs(msg, false),
            "(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 1)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 11 1) \"alternative\")\
(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 8) \"mixed\")"
        );
    }

    #[test]
    fn message_rfc822_part() {
        let msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: message/rfc822\r\n\r\n\
From: x@y.z\r\nSubject: fwd\r\n\r\nbody\r\n--b--\r\n";
        assert_eq!(
            bs(msg, false),
            "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 33 \
(NIL \"fwd\" ((NIL NIL \"x\" \"y.z\")) ((NIL NIL \"x\" \"y.z\")) ((NIL NIL \"x\" \"y.z\")) NIL NIL NIL NIL NIL) \
(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 1) 4) \"mixed\")"
        );
    }
}
