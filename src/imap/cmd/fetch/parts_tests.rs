//! Body parts served from the file answer byte for byte as the same items served from
//! the message in memory: every section kind, partials, BINARY of every transfer
//! encoding, nested and malformed structure, boundaries cut by the scan's reads, and a
//! 20 MiB attachment.

use std::io::Write;
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::super::plan::Loaded;
use super::super::render::render_message;
use super::*;
use crate::imap::command::{Section, SectionText};
use crate::imap::output::Output;
use crate::store::MessageMeta;

fn meta() -> MessageMeta {
    MessageMeta {
        uid: 7,
        flags: Vec::new(),
        modseq: 1,
        size: 0,
        internal_date: std::time::UNIX_EPOCH,
        uidl: "m".into(),
    }
}

fn temp_file(content: &[u8]) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(content).unwrap();
    f
}

fn body(part: &[u32], text: Option<SectionText>, partial: Option<(u32, u32)>) -> FetchItem {
    FetchItem::BodySection { peek: true, section: Section { part: part.to_vec(), text }, partial }
}

fn bin(part: &[u32], partial: Option<(u32, u32)>) -> FetchItem {
    FetchItem::Binary { peek: true, part: part.to_vec(), partial }
}

fn size(part: &[u32]) -> FetchItem {
    FetchItem::BinarySize { part: part.to_vec() }
}

/// What goes on the wire for `out`, literals read from their readers.
async fn sent(mut out: Output) -> Vec<u8> {
    let (mut bytes, literals) = out.take();
    for (literal, after) in literals {
        let mut data = Vec::new();
        literal.reader.take(literal.size).read_to_end(&mut data).await.unwrap();
        assert_eq!(data.len() as u64, literal.size, "literal shorter than announced");
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&after);
    }
    bytes
}

/// The response from memory and from the file, or the error each gave.
async fn both(msg: &[u8], items: &[FetchItem]) -> (Result<Vec<u8>, BinaryError>, Result<Vec<u8>, BinaryError>) {
    let mut out = Output::default();
    let memory =
        render_message(&mut out, 1, items, &meta(), false, Loaded::Bytes(msg.to_vec().into()), true, &mut None);
    let memory = match memory {
        Ok(()) => Ok(sent(out).await),
        Err(e) => Err(e),
    };
    let file = temp_file(msg);
    let resolved = resolve(&file, msg.len() as u64, items).unwrap();
    let mut out = Output::default();
    let loaded = Loaded::Parts { file: Arc::new(file), items: resolved };
    let streamed = match render_message(&mut out, 1, items, &meta(), false, loaded, true, &mut None) {
        Ok(()) => Ok(sent(out).await),
        Err(e) => Err(e),
    };
    (memory, streamed)
}

async fn assert_same(msg: &[u8], items: &[FetchItem]) {
    let (memory, streamed) = both(msg, items).await;
    let show = |r: Result<Vec<u8>, BinaryError>| r.map(|v| String::from_utf8_lossy(&v).into_owned());
    assert_eq!(show(memory), show(streamed), "{items:?}");
}

const MSG: &[u8] = b"From: a@b.c\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\npreamble\r\n\
--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nok  \r\n\
--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX-A: 1\r\n\
Content-Type: multipart/alternative; boundary=\"in\"\r\n\r\n--in\r\n\r\nplain\nbare lf\r\n\
--in\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--in--\r\n\
--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64 (file)\r\n\r\naGVs\r\nbG8AeA==\r\n\
--XX\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nzz\r\n\
--XX\r\nContent-Type: application/x-raw\r\n\r\nnul\0inside\nlf\r\n--XX--\r\nepilogue\r\n";

fn all_items() -> Vec<FetchItem> {
    let fields = SectionText::HeaderFields(vec!["SUBJECT".into(), "X-A".into()]);
    let not = SectionText::HeaderFieldsNot(vec!["subject".into()]);
    let mut items = vec![
        FetchItem::Uid,
        FetchItem::Flags,
        FetchItem::Envelope,
        FetchItem::Rfc822,
        FetchItem::Rfc822Header,
        FetchItem::Rfc822Text,
        body(&[], None, None),
        body(&[], None, Some((5, 30))),
        body(&[], Some(SectionText::Header), None),
        body(&[], Some(SectionText::Text), Some((0, 9))),
        body(&[], Some(fields.clone()), None),
        body(&[], Some(not.clone()), Some((1, 4))),
        body(&[2], Some(fields), None),
        body(&[2], Some(not), None),
        body(&[1], Some(SectionText::Header), None),
        body(&[9], None, None),
        body(&[1, 2], None, None),
        body(&[3], None, Some((100, 2))),
        bin(&[], Some((3, 7))),
        bin(&[3], Some((2, 100))),
        bin(&[3], Some((9, 1))),
        bin(&[5], Some((2, 4))),
        size(&[]),
    ];
    for part in [&[1][..], &[2], &[2, 1], &[2, 2], &[3], &[5]] {
        for text in [None, Some(SectionText::Mime), Some(SectionText::Header), Some(SectionText::Text)] {
            items.push(body(part, text, None));
        }
        items.push(bin(part, None));
        items.push(size(part));
    }
    items
}

#[tokio::test]
async fn every_item_alone_and_together_answers_as_from_memory() {
    let items = all_items();
    for item in &items {
        assert_same(MSG, std::slice::from_ref(item)).await;
    }
    assert_same(MSG, &items).await;
    // Errors come out the same, and nothing of the message is written.
    for failing in [bin(&[4], None), size(&[9]), bin(&[7], Some((0, 1)))] {
        let (memory, streamed) = both(MSG, &[FetchItem::Uid, body(&[1], None, None), failing.clone()]).await;
        assert!(memory.is_err(), "{failing:?}");
        assert_eq!(memory, streamed);
    }
}

#[tokio::test]
async fn malformed_structures_answer_as_from_memory() {
    let items = all_items();
    let cases: [&[u8]; 9] = [
        b"",
        b"Subject: only a header\r\n",
        b"\r\nno header",
        b"Subject: x\r\n\r\nplain body\n",
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\nnever closed\r\n--B \t\r\n\r\nlast",
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\nno parts at all\r\n",
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: message/rfc822\n\n--B--\n",
        b"Content-Type: multipart/mixed\r\n\r\n--B\r\n\r\nno boundary parameter\r\n",
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\nsame boundary inside\r\n--B--\r\n",
    ];
    for msg in cases {
        for item in &items {
            assert_same(msg, std::slice::from_ref(item)).await;
        }
    }
}

/// Deep nesting and many parts hit the same bounds as in memory.
#[tokio::test]
async fn nesting_and_part_count_bounds_match() {
    let mut deep = Vec::new();
    for _ in 0..40 {
        deep.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    deep.extend_from_slice(b"Subject: bottom\r\n\r\nbottom");
    let path = vec![1u32; 30];
    assert_same(
        &deep,
        &[body(&path, None, None), bin(&path, None), body(&path[..20], Some(SectionText::Header), None)],
    )
    .await;
    let mut many = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for i in 0..6000 {
        many.extend_from_slice(format!("--b\r\n\r\npart {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"--b--\r\n");
    assert_same(&many, &[body(&[4998], None, None), body(&[4999], None, None), body(&[5001], None, None)]).await;
}

/// A delimiter line, a CRLF before it and a header's blank line cut by the scan's 64 KiB
/// reads at every offset around the cut.
#[tokio::test]
async fn boundaries_cut_by_reads_are_found() {
    let items = [body(&[1], None, None), body(&[2], None, None), body(&[2], Some(SectionText::Mime), None), size(&[2])];
    for shift in 0..24 {
        let mut msg = b"Content-Type: multipart/mixed; boundary=\"cut here\"\r\n\r\n--cut here\r\n\r\n".to_vec();
        let start = msg.len() as u64;
        let fill = 64 * 1024 - msg.len() - 12 + shift;
        msg.extend(std::iter::repeat_n(b'a', fill));
        msg.extend_from_slice(b"\r\n--cut here\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--cut here--\r\n");
        assert_same(&msg, &items).await;
        let file = temp_file(&msg);
        let parts = resolve(&file, msg.len() as u64, &items).unwrap();
        assert_eq!(parts[0], PartItem::Text { start, end: start + fill as u64 }, "shift {shift}");
        assert_eq!(parts[3], PartItem::Size(2));
    }
}

/// A header block past the scan's bound, or a quoted-printable line past the decoder's,
/// sends the message to the in-memory path.
#[test]
fn beyond_the_bounds_goes_to_memory() {
    let mut big_header = b"Subject: x\r\nX-Big: ".to_vec();
    big_header.extend(std::iter::repeat_n(b'h', 70 * 1024));
    big_header.extend_from_slice(b"\r\n\r\nbody");
    let file = temp_file(&big_header);
    let r = resolve(&file, big_header.len() as u64, &[body(&[1], None, None)]);
    assert!(matches!(r, Err(PartsError::InMemory)), "{r:?}");
    let mut long_qp = b"Content-Transfer-Encoding: quoted-printable\r\n\r\n".to_vec();
    long_qp.extend(std::iter::repeat_n(b'q', MAX_QP_LINE + 10));
    let file = temp_file(&long_qp);
    assert!(resolve(&file, long_qp.len() as u64, &[body(&[1], None, None)]).is_ok());
    let r = resolve(&file, long_qp.len() as u64, &[size(&[1])]);
    assert!(matches!(r, Err(PartsError::InMemory)), "{r:?}");
    let r = resolve(&file, long_qp.len() as u64, &[FetchItem::BodyStructure]);
    assert!(matches!(r, Err(PartsError::InMemory)), "{r:?}");
}

/// The bench's case: a 20 MiB base64 attachment. The response streams from the file (the
/// output holds only the response lines) and decodes to the attachment.
#[tokio::test]
async fn twenty_mib_attachment_streams_from_the_file() {
    use base64::Engine;
    let attachment: Vec<u8> = (0..15 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&attachment);
    let mut msg =
        b"Subject: big\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n--=_b\r\n\r\nsee attached\r\n\
--=_b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
    for line in encoded.as_bytes().chunks(76) {
        msg.extend_from_slice(line);
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(b"--=_b--\r\n");
    assert!(msg.len() > 20 * 1024 * 1024);
    let file = temp_file(&msg);
    let items = [body(&[2], None, None), bin(&[2], None), size(&[2]), bin(&[2], Some((1000, 5)))];
    let parts = resolve(&file, msg.len() as u64, &items).unwrap();
    let mut out = Output::default();
    render_message(
        &mut out,
        1,
        &items,
        &meta(),
        false,
        Loaded::Parts { file: Arc::new(file), items: parts },
        false,
        &mut None,
    )
    .unwrap();
    assert!(out.len() < 1024, "the output buffer holds only response lines");
    let wire = sent(out).await;
    let binary_at = memchr::memmem::find(&wire, b"BINARY[2] ~{").unwrap();
    let data_at = binary_at + memchr::memmem::find(&wire[binary_at..], b"}\r\n").unwrap() + 3;
    assert_eq!(&wire[data_at..data_at + attachment.len()], &attachment[..]);
    let tail = String::from_utf8_lossy(&wire[data_at + attachment.len()..]);
    assert!(tail.starts_with(&format!(" BINARY.SIZE[2] {} BINARY[2]<1000> ", attachment.len())), "{tail:.80}");
    assert_eq!(&wire[wire.len() - 8..wire.len() - 3], &attachment[1000..1005]);
}
