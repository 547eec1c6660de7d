//! MIME structure of arbitrary message bytes, as IMAP FETCH uses it: the parse, then
//! BODYSTRUCTURE (basic and extended), every part's BODY[n], BODY[n.MIME], BODY[n.TEXT]
//! and BINARY[n] for the first parts found. Checked: never a panic; every part's header
//! and body ranges lie inside the message and in order; BODYSTRUCTURE's parentheses
//! balance outside quoted strings and literals; BINARY decoded in small chunks (as FETCH
//! streams a large part from its file) equals BINARY decoded at once.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::imap::command::{Section, SectionText};
use mailroom::imap::render::bodystructure::body_structure;
use mailroom::imap::render::mime::{MimePart, PartKind, parse};
use mailroom::imap::render::mime_source::SliceSource;
use mailroom::imap::render::section::{binary, binary_source, body_section};

fuzz_target!(|msg: &[u8]| {
    let root = parse(msg);
    let mut paths = Vec::new();
    walk(msg, &root, &mut Vec::new(), &mut paths);
    for extended in [false, true] {
        let mut out = Vec::new();
        body_structure(&mut out, msg, &root, extended);
        assert_balanced(&out);
    }
    for path in paths.iter().take(16) {
        for text in [None, Some(SectionText::Mime), Some(SectionText::Text), Some(SectionText::Header)] {
            let _ = body_section(msg, &root, &Section { part: path.clone(), text });
        }
        let whole = binary(msg, &root, path);
        if let (Ok(whole), Ok((range, mut decoder))) = (whole, binary_source(&mut SliceSource(msg), &root, path)) {
            let mut chunked = Vec::new();
            for chunk in msg[range].chunks(7) {
                let _ = decoder.feed(chunk, &mut chunked);
            }
            decoder.finish(&mut chunked);
            assert_eq!(whole.as_ref(), chunked.as_slice());
        }
    }
});

/// Check the ranges of `part` and its children; collect the part numbers IMAP would use.
fn walk(msg: &[u8], part: &MimePart, path: &mut Vec<u32>, paths: &mut Vec<Vec<u32>>) {
    assert!(part.header.start <= part.header.end && part.header.end <= msg.len(), "{part:?}");
    assert!(part.body.start <= part.body.end && part.body.end <= msg.len(), "{part:?}");
    assert!(part.header.end <= part.body.start || part.header.is_empty(), "{part:?}");
    paths.push(path.clone());
    match &part.kind {
        PartKind::Single => {}
        PartKind::Multipart(children) => {
            for (i, child) in children.iter().enumerate() {
                assert!(child.header.start >= part.body.start && child.body.end <= part.body.end, "{part:?}");
                path.push(i as u32 + 1);
                walk(msg, child, path, paths);
                path.pop();
            }
        }
        PartKind::Message(inner) => {
            assert!(inner.header.start >= part.body.start && inner.body.end <= part.body.end, "{part:?}");
            walk(msg, inner, path, paths);
        }
    }
}

/// Parentheses balance outside "quoted strings" (with \ escapes) and {n} literals.
fn assert_balanced(out: &[u8]) {
    let (mut depth, mut i) = (0i64, 0usize);
    while i < out.len() {
        match out[i] {
            b'"' => {
                i += 1;
                while i < out.len() && out[i] != b'"' {
                    i += if out[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => {
                let close = out[i..].iter().position(|&b| b == b'}').map(|p| i + p);
                if let Some(n) = close.and_then(|c| std::str::from_utf8(&out[i + 1..c]).ok()?.parse::<usize>().ok()) {
                    i = close.unwrap_or(i) + 3 + n - 1;
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                assert!(depth >= 0, "{}", String::from_utf8_lossy(out));
            }
            _ => {}
        }
        i += 1;
    }
    assert_eq!(depth, 0, "{}", String::from_utf8_lossy(out));
}
