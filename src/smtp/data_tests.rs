//! DATA/BDAT decoder tests: wire bytes in, stored bytes out.

use super::*;

/// Feed all at once; returns (body, consumed, done).
fn decode(input: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut d = DataDecoder::new(u64::MAX);
    let mut out = Vec::new();
    let p = d.feed(input, &mut out);
    (out, p.consumed, p.done)
}

/// Feed one byte at a time: must give the same result as all at once.
fn decode_bytewise(input: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut d = DataDecoder::new(u64::MAX);
    let mut out = Vec::new();
    for (i, b) in input.iter().enumerate() {
        let p = d.feed(std::slice::from_ref(b), &mut out);
        if p.done {
            return (out, i + 1, true);
        }
    }
    (out, input.len(), false)
}

fn both(input: &[u8]) -> (Vec<u8>, usize, bool) {
    let a = decode(input);
    assert_eq!(a, decode_bytewise(input), "split feeding differs for {input:?}");
    a
}

#[test]
fn plain_message_ends_at_crlf_dot_crlf() {
    let (body, used, done) = both(b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    assert!(done);
    assert_eq!(body, b"Subject: hi\r\n\r\nbody\r\n");
    assert_eq!(used, 24, "QUIT stays for the command reader");
}

#[test]
fn empty_message() {
    let (body, used, done) = both(b".\r\n");
    assert!(done);
    assert_eq!(body, b"");
    assert_eq!(used, 3);
}

#[test]
fn dot_unstuffing() {
    let (body, _, done) = both(b"..\r\n...x\r\n.y\r\n.\r\n");
    assert!(done);
    assert_eq!(body, b".\r\n..x\r\ny\r\n");
}

#[test]
fn smuggling_variants_are_content() {
    for (wire, stored) in [
        (&b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n"[..], &b"a\r\n\r\nMAIL FROM:<x@y>\r\n"[..]),
        (b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", b"a\r\n\r\nMAIL FROM:<x@y>\r\n"),
        (b"a\r.\rMAIL FROM:<x@y>\r\n.\r\n", b"a\r\n\r\nMAIL FROM:<x@y>\r\n"),
        (b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n", b"a\r\n\r\nMAIL FROM:<x@y>\r\n"),
        (b"a\r\n.\r\r\nb\r\n.\r\n", b"a\r\n\r\n\r\nb\r\n"),
    ] {
        let (body, used, done) = both(wire);
        assert!(done, "{wire:?}");
        assert_eq!(used, wire.len(), "{wire:?} ended early");
        assert_eq!(body, stored, "{wire:?}");
    }
}

#[test]
fn smuggled_terminator_without_real_end_is_incomplete() {
    for wire in [&b"x\n.\n"[..], b"x\n.\r\n", b"x\r.\r", b"x\r\n.\n", b"x\r\n.\r"] {
        let (_, used, done) = both(wire);
        assert!(!done, "{wire:?} must not end the data");
        assert_eq!(used, wire.len());
    }
}

#[test]
fn bare_newlines_are_normalised() {
    let (body, _, done) = both(b"a\nb\rc\r\r\nd\r\n.\r\n");
    assert!(done);
    assert_eq!(body, b"a\r\nb\r\nc\r\n\r\nd\r\n");
}

#[test]
fn real_terminator_right_after_normalised_line() {
    // "\n.\r\n" is content, the following ".\r\n" (after a real CRLF) is the end.
    let (body, _, done) = both(b"a\n.\r\n.\r\n");
    assert!(done);
    assert_eq!(body, b"a\r\n\r\n");
}

#[test]
fn long_lines_are_content() {
    let mut wire = vec![b'x'; 100_000];
    wire.extend_from_slice(b"\r\n.\r\n");
    let (body, _, done) = both(&wire);
    assert!(done);
    assert_eq!(body.len(), 100_002);
}

#[test]
fn over_the_limit_keeps_reading_to_the_end() {
    let mut d = DataDecoder::new(10);
    let mut out = Vec::new();
    let p = d.feed(b"0123456789ABCDEF\r\n", &mut out);
    assert!(!p.done);
    assert!(d.exceeded());
    let p = d.feed(b"more\r\n.\r\nRSET\r\n", &mut out);
    assert!(p.done);
    assert_eq!(p.consumed, 9);
    assert_eq!(d.size(), 24);
    assert!(out.len() <= 10);
}

#[test]
fn exactly_at_the_limit_is_fine() {
    let mut d = DataDecoder::new(4);
    let mut out = Vec::new();
    assert!(d.feed(b"ab\r\n.\r\n", &mut out).done);
    assert!(!d.exceeded());
    assert_eq!(out, b"ab\r\n");
}

#[test]
fn chunks_are_exact_and_dot_free() {
    let mut c = ChunkDecoder::new(u64::MAX);
    let mut out = Vec::new();
    c.feed(b"a\r\n.\r\nb\r", &mut out);
    c.feed(b"\nc\nd\re", &mut out);
    c.feed(b"\r", &mut out);
    c.finish(&mut out);
    assert_eq!(out, b"a\r\n.\r\nb\r\nc\r\nd\r\ne\r\n");
    assert_eq!(c.size(), out.len() as u64);
}

#[test]
fn chunk_limit() {
    let mut c = ChunkDecoder::new(3);
    let mut out = Vec::new();
    c.feed(b"abcdef", &mut out);
    assert!(c.exceeded());
    assert_eq!(c.size(), 6);
    assert!(out.len() <= 3);
}

/// Garbage in: random bytes, in random splits, never panic and agree with one-shot decoding.
#[test]
fn garbage_in_never_panics() {
    let mut seed: u64 = 0xDEAD_BEEF_1234_5678;
    let mut next = move || crate::testing::xorshift(&mut seed);
    let alphabet = b"\r\n.ab";
    for _ in 0..5_000 {
        let len = (next() % 40) as usize;
        let input: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        let (body, used, done) = both(&input);
        assert!(used <= input.len());
        // Whatever came in, the stored body never holds a bare CR or LF.
        for (i, &b) in body.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && body[i - 1] == b'\r', "bare LF in {body:?} from {input:?}");
            }
            if b == b'\r' {
                assert_eq!(body.get(i + 1), Some(&b'\n'), "bare CR in {body:?} from {input:?}");
            }
        }
        if done {
            assert!(input[..used].ends_with(b".\r\n"));
        }
        let mut c = ChunkDecoder::new(16);
        let mut out = Vec::new();
        c.feed(&input, &mut out);
        c.finish(&mut out);
    }
}
