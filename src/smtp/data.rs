//! Message content decoders: DATA (dot-terminated, RFC 5321 §4.1.1.4 and §4.5.2) and
//! BDAT chunks (RFC 3030). Pure, streaming: feed whatever bytes arrived, get body bytes
//! out; they never panic and never buffer more than one pending byte of state.
//!
//! **End of data is only `CRLF . CRLF`.** SMTP smuggling (CVE-2023-51764/51765/51766)
//! works when two servers disagree on where a message ends: the attacker hides
//! `\n.\n MAIL FROM:…` in a body, one hop sees content and the next hop sees a second
//! message. So `\n.\n`, `\n.\r\n`, `\r.\r`, `\r\n.\n` are all ordinary content here: the
//! final dot must start a line that began after a real CRLF and be followed by a real
//! CRLF. (Data starts "after a CRLF": the one ending the DATA command line.)
//!
//! **Bare LF and bare CR are normalised to CRLF**, Postfix's default
//! `smtpd_forbid_bare_newline = normalize` (3.9+): real-world senders (scripts, broken
//! PHP mailers) do emit bare LF and refusing them loses legitimate mail, while
//! normalising means no bare newline is ever stored in a Maildir or handed to another
//! server as it came, so a downstream hop cannot read it differently than we did.
//! A lone dot on a line that is not the terminator (e.g. `.\n`) loses its dot like every
//! other line starting with a dot, as Postfix does; it becomes an empty line.
//!
//! **Size**: the decoders count the normalised (stored) size and, once past the limit,
//! keep consuming to the end while discarding, so the client gets its `552 5.3.4` after
//! the terminator instead of us interpreting the rest of its message as commands.
//!
//! **BDAT** chunks are exact byte counts with no dot handling (RFC 3030 §2). The bare-
//! newline rule is nevertheless applied to them too (a CR at the end of one chunk pairs
//! with an LF at the start of the next), so that the stored message is CRLF whichever
//! verb delivered it. This is also why we do not offer BINARYMIME: normalising a binary
//! body would corrupt it.

/// Where the DATA decoder is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line; `strict` = the previous line ended with a real CRLF (or
    /// this is the first line), the only place where the terminating dot may appear.
    LineStart { strict: bool },
    /// Seen a dot at the start of a line (the dot itself is swallowed: unstuffing).
    Dot { strict: bool },
    /// Seen `.` `\r` at the start of a line.
    DotCr { strict: bool },
    /// Inside a line.
    Mid,
    /// Seen `\r` that may start a CRLF.
    Cr,
}

/// Progress of one [`DataDecoder::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataProgress {
    /// How many input bytes were used; when `done`, the rest belongs to the next command.
    pub consumed: usize,
    /// The terminating `CRLF.CRLF` was seen.
    pub done: bool,
}

/// Streaming decoder for the content after `DATA` / `354`.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    size: u64,
    limit: u64,
    exceeded: bool,
}

impl DataDecoder {
    /// `limit`: the largest body (normalised, in octets) that is kept.
    pub fn new(limit: u64) -> DataDecoder {
        DataDecoder { state: State::LineStart { strict: true }, size: 0, limit, exceeded: false }
    }

    /// Normalised size of the content so far (also counted past the limit).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The content grew past the limit; output stopped there and the message must be
    /// refused with 552 once the terminator arrives.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.size > self.limit {
            self.exceeded = true;
        }
        if !self.exceeded {
            out.extend_from_slice(bytes);
        }
    }

    /// Decode `input`, appending body bytes to `out`. Stops right after the terminator.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Mid {
                // Fast path: copy the run of ordinary bytes up to the next CR or LF.
                let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                if run > 0 {
                    self.emit(&input[i..i + run], out);
                    i += run;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            if self.step(b, out) {
                return DataProgress { consumed: i, done: true };
            }
        }
        DataProgress { consumed: input.len(), done: false }
    }

    /// One byte through the state machine; true when it completed the terminator.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match self.state {
            State::LineStart { strict } => match b {
                b'.' => self.state = State::Dot { strict },
                _ => self.in_line(b, out),
            },
            State::Dot { strict } => match b {
                b'\r' => self.state = State::DotCr { strict },
                // ".." -> "." and ".x" -> "x": the first dot of a line is removed.
                _ => self.in_line(b, out),
            },
            State::DotCr { strict } => {
                if b == b'\n' {
                    if strict {
                        return true;
                    }
                    // "\n.\r\n": a lone dot after a bare LF is content, not the end.
                    self.emit(b"\r\n", out);
                    self.state = State::LineStart { strict: true };
                } else {
                    // ".\r" + x: the bare CR ended the (now empty) line.
                    self.emit(b"\r\n", out);
                    self.state = State::LineStart { strict: false };
                    return self.step(b, out);
                }
            }
            State::Mid => self.in_line(b, out),
            State::Cr => {
                self.emit(b"\r\n", out);
                if b == b'\n' {
                    self.state = State::LineStart { strict: true };
                } else {
                    // Bare CR: normalised to CRLF, and the next line is not "strict".
                    self.state = State::LineStart { strict: false };
                    return self.step(b, out);
                }
            }
        }
        false
    }

    /// A byte that is part of a line's content (or its end).
    fn in_line(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                // Bare LF: normalised, never a strict line start.
                self.emit(b"\r\n", out);
                self.state = State::LineStart { strict: false };
            }
            _ => {
                self.emit(&[b], out);
                self.state = State::Mid;
            }
        }
    }
}

/// Decoder for the octets of BDAT chunks of one message (RFC 3030): no dot handling,
/// bare CR/LF normalised to CRLF across chunk boundaries, size counted and capped.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    pending_cr: bool,
    size: u64,
    limit: u64,
    exceeded: bool,
}

impl ChunkDecoder {
    pub fn new(limit: u64) -> ChunkDecoder {
        ChunkDecoder { pending_cr: false, size: 0, limit, exceeded: false }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.size > self.limit {
            self.exceeded = true;
        }
        if !self.exceeded {
            out.extend_from_slice(bytes);
        }
    }

    /// Decode chunk octets (the caller counts the chunk's declared length).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            if self.pending_cr {
                self.pending_cr = false;
                self.emit(b"\r\n", out);
                if input[i] == b'\n' {
                    i += 1;
                }
                continue;
            }
            let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
            if run > 0 {
                self.emit(&input[i..i + run], out);
                i += run;
                continue;
            }
            if input[i] == b'\r' {
                self.pending_cr = true;
            } else {
                self.emit(b"\r\n", out);
            }
            i += 1;
        }
    }

    /// After the LAST chunk: a trailing lone CR becomes CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            self.emit(b"\r\n", out);
        }
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
