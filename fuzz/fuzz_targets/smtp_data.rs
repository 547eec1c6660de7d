//! The DATA and BDAT decoders on arbitrary bytes (the first byte picks where the rest is
//! split in two). Beyond "never panic", this checks what the decoders promise:
//! - DATA ends exactly after the first `CRLF . CRLF`, counting the CRLF that ended the
//!   DATA line, and nowhere else (a hop that disagrees is what SMTP smuggling exploits);
//! - the result (end, body) does not depend on how the bytes were split into reads;
//! - the body never holds a bare CR or a bare LF;
//! - a size limit stops the output but never moves the end of the message;
//! - BDAT chunk output does not depend on where the chunks were split either.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailroom::smtp::data::{ChunkDecoder, DataDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let split = usize::from(selector) % (input.len() + 1);
    let small_limit = u64::from(selector) * 4;
    check_data(input, split, small_limit);
    check_chunks(input, split, small_limit);
});

/// Decoded body, where the message ended (bytes of input used) if it did, and whether
/// the limit was passed.
type Decoded = (Vec<u8>, Option<usize>, bool);

fn decode_data(limit: u64, pieces: &[&[u8]]) -> Decoded {
    let mut decoder = DataDecoder::new(limit);
    let mut out = Vec::new();
    let mut offset = 0;
    for piece in pieces {
        let progress = decoder.feed(piece, &mut out);
        assert!(progress.consumed <= piece.len());
        if progress.done {
            return (out, Some(offset + progress.consumed), decoder.exceeded());
        }
        assert_eq!(progress.consumed, piece.len(), "an unfinished feed must use all its input");
        offset += piece.len();
    }
    if !decoder.exceeded() {
        assert_eq!(decoder.size(), out.len() as u64);
    }
    (out, None, decoder.exceeded())
}

fn check_data(input: &[u8], split: usize, small_limit: u64) {
    let whole = decode_data(u64::MAX, &[input]);
    let (head, tail) = input.split_at(split);
    assert_eq!(decode_data(u64::MAX, &[head, tail]), whole, "a split read changed the result");
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_data(u64::MAX, &bytes), whole, "byte-wise reads changed the result");

    // The end: the first CRLF.CRLF of CRLF + input (the leading CRLF ended "DATA").
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    let expected_end = framed.windows(5).position(|w| w == b"\r\n.\r\n").map(|i| i + 5 - 2);
    assert_eq!(whole.1, expected_end, "the message ended somewhere other than at CRLF.CRLF");

    assert_no_bare_newline(&whole.0);

    // A limit truncates the body, flags it, and changes nothing else.
    let (body, end, exceeded) = decode_data(small_limit, &[head, tail]);
    assert_eq!(end, whole.1, "the size limit moved the end of the message");
    assert!(body.len() as u64 <= small_limit);
    assert!(whole.0.starts_with(&body));
    assert_eq!(exceeded, whole.0.len() as u64 > small_limit);
}

fn decode_chunks(limit: u64, pieces: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut decoder = ChunkDecoder::new(limit);
    let mut out = Vec::new();
    for piece in pieces {
        decoder.feed(piece, &mut out);
    }
    decoder.finish(&mut out);
    if !decoder.exceeded() {
        assert_eq!(decoder.size(), out.len() as u64);
    }
    (out, decoder.exceeded())
}

fn check_chunks(input: &[u8], split: usize, small_limit: u64) {
    let whole = decode_chunks(u64::MAX, &[input]);
    let (head, tail) = input.split_at(split);
    assert_eq!(decode_chunks(u64::MAX, &[head, tail]), whole, "a chunk boundary changed the body");
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_chunks(u64::MAX, &bytes), whole, "one-byte chunks changed the body");
    assert_no_bare_newline(&whole.0);
    // Without CR or LF there is nothing to normalise: the body is the input.
    if !input.iter().any(|b| *b == b'\r' || *b == b'\n') {
        assert_eq!(whole.0, input);
    }
    let (body, exceeded) = decode_chunks(small_limit, &[head, tail]);
    assert!(body.len() as u64 <= small_limit);
    assert!(whole.0.starts_with(&body));
    assert_eq!(exceeded, whole.0.len() as u64 > small_limit);
}

fn assert_no_bare_newline(body: &[u8]) {
    for (i, b) in body.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && body[i - 1] == b'\r', "bare LF at {i} in the decoded body"),
            b'\r' => assert_eq!(body.get(i + 1), Some(&b'\n'), "bare CR at {i} in the decoded body"),
            _ => {}
        }
    }
}
