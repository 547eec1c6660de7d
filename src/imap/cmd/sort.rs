//! SORT and THREAD (RFC 5256): run the search with `cmd/search.rs`' evaluator, reading
//! only message headers, then order (`imap::sort`) or thread (`imap::thread`) the matches.

use super::Tagged;
use crate::imap::command::{SortCommand, ThreadAlgorithm, ThreadCommand};
use crate::imap::render::mime::header_value;
use crate::imap::session::Session;
use crate::imap::sort::{SortValues, base_subject, compare, decoded, needs_header, sent_date};
use crate::imap::thread::{self, ThreadMessage};

fn charset_ok(charset: &str) -> bool {
    matches!(charset, "UTF-8" | "US-ASCII")
}

/// `<id>` tokens of a header (Message-ID, References, In-Reply-To).
fn msg_ids(header: &[u8], name: &str) -> Vec<String> {
    let Some(v) = header_value(header, name) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(v);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let segment = &rest[start..start + len + 1];
        // `<<a>`: the id starts at the last `<`
        let id = &segment[segment.rfind('<').unwrap_or(0)..];
        if id.len() > 2 {
            out.push(id.to_string());
        }
        rest = &rest[start + len + 1..];
        if out.len() >= 200 {
            break;
        }
    }
    out
}

impl Session {
    /// SORT / UID SORT: `* SORT n n n` in the requested order.
    pub(crate) async fn cmd_sort(&mut self, s: &SortCommand) -> Tagged {
        if !charset_ok(&s.charset) {
            return Tagged::no("Unsupported charset").code("BADCHARSET (UTF-8 US-ASCII)");
        }
        self.refresh_selected(s.uid, false).await;
        let mut found = match self
            .evaluate(&s.key, needs_header(&s.criteria), |f| SortValues::new(f.seq, f.internal_date, f.size, f.header))
            .await
        {
            Ok(f) => f,
            Err(t) => return t,
        };
        found.sort_by(|a, b| compare(&a.extra, &b.extra, &s.criteria));
        let mut out = b"* SORT".to_vec();
        for h in &found {
            let n = if s.uid { h.uid } else { h.seq };
            out.extend_from_slice(format!(" {n}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&out);
        self.refresh_selected(s.uid, false).await;
        Tagged::ok("")
    }

    /// THREAD / UID THREAD: `* THREAD (1)(2 3)...`.
    pub(crate) async fn cmd_thread(&mut self, t: &ThreadCommand) -> Tagged {
        if !charset_ok(&t.charset) {
            return Tagged::no("Unsupported charset").code("BADCHARSET (UTF-8 US-ASCII)");
        }
        self.refresh_selected(t.uid, false).await;
        let uid = t.uid;
        let found = match self
            .evaluate(&t.key, true, |f| {
                let header = f.header.unwrap_or(b"");
                let subject = decoded(header, "subject");
                let plain = subject.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
                let base = base_subject(&subject);
                let mut references = msg_ids(header, "references");
                if references.is_empty() {
                    references = msg_ids(header, "in-reply-to").into_iter().take(1).collect();
                }
                ThreadMessage {
                    number: 0,
                    message_id: msg_ids(header, "message-id").into_iter().next(),
                    references,
                    is_reply: plain != base,
                    base_subject: base,
                    sent_date: sent_date(header, f.internal_date),
                }
            })
            .await
        {
            Ok(f) => f,
            Err(t) => return t,
        };
        let messages: Vec<ThreadMessage> =
            found.into_iter().map(|h| ThreadMessage { number: if uid { h.uid } else { h.seq }, ..h.extra }).collect();
        let threads = match t.algorithm {
            ThreadAlgorithm::OrderedSubject => thread::ordered_subject(&messages),
            ThreadAlgorithm::References => thread::references(&messages),
        };
        self.out.extend_from_slice(format!("* THREAD {}\r\n", thread::render(&threads)).as_bytes());
        self.refresh_selected(t.uid, false).await;
        Tagged::ok("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_from_headers() {
        let h = b"References: <a@x> <b@y>\r\n\t<c@z>\r\nIn-Reply-To: <q@x> (comment)\r\nMessage-ID: <m@x>\r\n\r\n";
        assert_eq!(msg_ids(h, "references"), vec!["<a@x>", "<b@y>", "<c@z>"]);
        assert_eq!(msg_ids(h, "in-reply-to"), vec!["<q@x>"]);
        assert_eq!(msg_ids(h, "message-id"), vec!["<m@x>"]);
        assert!(msg_ids(b"References: <<>\r\n\r\n", "references").is_empty());
    }
}
