//! The IMAP side (RFC 9051/3501, STARTTLS, UIDPLUS's UID EXPUNGE): log in over TLS,
//! select the folder, list new messages by UID with their sizes, download one message
//! at a time (BODY.PEEK[], so the remote \Seen flag is left alone) into a file, delete
//! by UID only, never touching messages other clients marked \Deleted.

use std::io::Write;

use tokio_rustls::TlsConnector;

use super::entry::{FetchSource, TlsStart};
use super::wire::{self, TlsWire};
use super::{FetchError, Remote};

/// A logged-in IMAP session with the folder selected.
pub struct ImapSession {
    wire: TlsWire,
    tag: u32,
    /// UIDVALIDITY of the selected folder.
    pub uid_validity: u32,
}

/// How a folder is opened: SELECT may change it (delete fetched mail), EXAMINE never does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Select,
    Examine,
}

/// How a tagged command ended.
pub(super) enum Completion {
    Ok,
    No(String),
}

/// An IMAP quoted string, or `None` when the value cannot be one (line breaks, NUL).
pub(super) fn quoted(s: &str) -> Option<String> {
    if s.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// A literal announced at the end of a line: `... {123}`.
fn literal_len(line: &[u8]) -> Option<u64> {
    let open = line.strip_suffix(b"}")?;
    let start = open.iter().rposition(|&b| b == b'{')?;
    let digits = open[start + 1..].strip_suffix(b"+").unwrap_or(&open[start + 1..]);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The number after `name` in a response line (`UID 12`, `RFC822.SIZE 345`, `[UIDVALIDITY 9]`).
pub(super) fn number_after(line: &str, name: &str) -> Option<u64> {
    let at = line.find(name)? + name.len();
    line[at..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

impl ImapSession {
    pub fn peer(&self) -> std::net::IpAddr {
        self.wire.peer
    }

    pub fn tls_info(&self) -> (String, String) {
        self.wire.tls_info()
    }

    /// Connect, start TLS, LOGIN, SELECT (EXAMINE when mail is kept: nothing is changed).
    pub async fn login(source: &FetchSource, password: &str, tls: &TlsConnector) -> Result<ImapSession, FetchError> {
        let mut session = ImapSession::connect(source, password, tls).await?;
        let verb = if source.keep { Access::Examine } else { Access::Select };
        session.open_folder(verb, &source.remote_folder).await?;
        Ok(session)
    }

    /// Connect, start TLS and LOGIN, no folder selected yet.
    pub async fn connect(source: &FetchSource, password: &str, tls: &TlsConnector) -> Result<ImapSession, FetchError> {
        let mut plain = wire::connect(&source.host, source.port).await?;
        let wire = match source.tls {
            TlsStart::Implicit => plain.start_tls(tls, &source.host).await?,
            TlsStart::StartTls => {
                let greeting = plain.line().await?;
                if !greeting.starts_with(b"* OK") {
                    return Err(FetchError::Protocol(String::from_utf8_lossy(&greeting).into_owned()));
                }
                plain.send(b"s STARTTLS").await?;
                loop {
                    let line = plain.line().await?;
                    if line.starts_with(b"s OK") {
                        break;
                    }
                    if line.starts_with(b"s ") {
                        return Err(FetchError::Tls(format!(
                            "the server refused STARTTLS: {}",
                            String::from_utf8_lossy(&line)
                        )));
                    }
                }
                plain.start_tls(tls, &source.host).await?
            }
        };
        let mut session = ImapSession { wire, tag: 0, uid_validity: 0 };
        if source.tls == TlsStart::Implicit {
            let greeting = session.wire.line().await?;
            if !greeting.starts_with(b"* OK") {
                return Err(FetchError::Protocol(String::from_utf8_lossy(&greeting).into_owned()));
            }
        }
        let (Some(user), Some(pass)) = (quoted(&source.user), quoted(password)) else {
            return Err(FetchError::Login("the user or password holds a line break".into()));
        };
        if let Completion::No(text) = session.command(&format!("LOGIN {user} {pass}"), |_| Ok(())).await? {
            return Err(FetchError::Login(text));
        }
        Ok(session)
    }

    /// SELECT or EXAMINE `folder` (its name as the server spells it); sets
    /// [`ImapSession::uid_validity`] and returns how many messages it holds (EXISTS).
    pub async fn open_folder(&mut self, access: Access, folder: &str) -> Result<u32, FetchError> {
        let name = quoted(folder).ok_or_else(|| FetchError::Protocol("the folder name holds a line break".into()))?;
        let verb = match access {
            Access::Select => "SELECT",
            Access::Examine => "EXAMINE",
        };
        let (mut validity, mut exists) = (None, 0);
        let done = self
            .command(&format!("{verb} {name}"), |line| {
                let text = String::from_utf8_lossy(line);
                if let Some(v) = number_after(&text, "[UIDVALIDITY") {
                    validity = Some(v as u32);
                }
                if let Some(n) = text.strip_prefix("* ").and_then(|t| t.strip_suffix(" EXISTS")) {
                    exists = n.parse().unwrap_or(0);
                }
                Ok(())
            })
            .await?;
        if let Completion::No(text) = done {
            return Err(FetchError::Protocol(format!("{verb} {folder}: {text}")));
        }
        self.uid_validity =
            validity.ok_or_else(|| FetchError::Protocol(format!("no UIDVALIDITY in the {verb} answer")))?;
        Ok(exists)
    }

    /// Send `command` with a fresh tag; untagged lines go to `untagged` (literals inside
    /// them are read and dropped); `NO`/`BAD` come back as `Completion::No`.
    pub(super) async fn command(
        &mut self,
        command: &str,
        mut untagged: impl FnMut(&[u8]) -> Result<(), FetchError>,
    ) -> Result<Completion, FetchError> {
        self.tag += 1;
        let tag = format!("f{}", self.tag);
        self.wire.send(format!("{tag} {command}").as_bytes()).await?;
        loop {
            let line = self.wire.line().await?;
            if let Some(rest) = line.strip_prefix(tag.as_bytes()).and_then(|r| r.strip_prefix(b" ")) {
                let text = String::from_utf8_lossy(rest).into_owned();
                return Ok(if text.starts_with("OK") { Completion::Ok } else { Completion::No(text) });
            }
            if let Some(len) = literal_len(&line) {
                self.wire.copy_exact(len, &mut std::io::sink()).await?;
            }
            untagged(&line)?;
        }
    }

    /// The messages with a UID above `after`, with their sizes, in UID order.
    pub async fn list_after(&mut self, after: u32) -> Result<Vec<Remote>, FetchError> {
        let mut out = Vec::new();
        let done = self
            .command(&format!("UID FETCH {}:* (UID RFC822.SIZE)", after.saturating_add(1)), |line| {
                let text = String::from_utf8_lossy(line);
                // `n:*` always names the last message, even below n.
                if text.starts_with("* ")
                    && text.contains(" FETCH ")
                    && let (Some(uid), Some(size)) = (number_after(&text, "UID"), number_after(&text, "RFC822.SIZE"))
                    && uid > after as u64
                {
                    out.push(Remote { number: uid as u32, id: uid.to_string(), size });
                }
                Ok(())
            })
            .await?;
        if let Completion::No(text) = done {
            return Err(FetchError::Protocol(format!("UID FETCH: {text}")));
        }
        out.sort_by_key(|r| r.number);
        out.dedup_by_key(|r| r.number);
        Ok(out)
    }

    /// The message with this UID into `out`; more than `max` bytes is an error before a
    /// byte is read.
    pub async fn retrieve(&mut self, uid: u32, max: u64, out: &mut impl Write) -> Result<u64, FetchError> {
        self.tag += 1;
        let tag = format!("f{}", self.tag);
        self.wire.send(format!("{tag} UID FETCH {uid} (BODY.PEEK[])").as_bytes()).await?;
        let mut written = None;
        loop {
            let line = self.wire.line().await?;
            if let Some(rest) = line.strip_prefix(tag.as_bytes()).and_then(|r| r.strip_prefix(b" ")) {
                if !rest.starts_with(b"OK") {
                    return Err(FetchError::Protocol(format!("UID FETCH {uid}: {}", String::from_utf8_lossy(rest))));
                }
                return written.ok_or(FetchError::Vanished);
            }
            let Some(len) = literal_len(&line) else { continue };
            let text = String::from_utf8_lossy(&line);
            if written.is_none() && text.contains("BODY[]") {
                if len > max {
                    return Err(FetchError::TooBig { size: len, max });
                }
                self.wire.copy_exact(len, out).await?;
                written = Some(len);
            } else {
                self.wire.copy_exact(len, &mut std::io::sink()).await?;
            }
            // The rest of the FETCH response after the literal (`)` or ` UID 5)`).
            let _ = self.wire.line().await?;
        }
    }

    /// Delete the messages with these UIDs (`\Deleted`, then UID EXPUNGE of just them).
    pub async fn delete(&mut self, uids: &str) -> Result<(), FetchError> {
        for command in [format!("UID STORE {uids} +FLAGS.SILENT (\\Deleted)"), format!("UID EXPUNGE {uids}")] {
            if let Completion::No(text) = self.command(&command, |_| Ok(())).await? {
                return Err(FetchError::Protocol(format!("{command}: {text}")));
            }
        }
        Ok(())
    }

    pub async fn logout(mut self) -> Result<(), FetchError> {
        self.command("LOGOUT", |_| Ok(())).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_fields() {
        assert_eq!(literal_len(b"* 1 FETCH (UID 4 BODY[] {123}"), Some(123));
        assert_eq!(literal_len(b"* 1 FETCH (UID 4)"), None);
        assert_eq!(number_after("* OK [UIDVALIDITY 1700000000] UIDs valid", "[UIDVALIDITY"), Some(1700000000));
        assert_eq!(number_after("* 3 FETCH (UID 17 RFC822.SIZE 2048)", "UID"), Some(17));
        assert_eq!(number_after("* 3 FETCH (UID 17 RFC822.SIZE 2048)", "RFC822.SIZE"), Some(2048));
        assert_eq!(quoted("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quoted("a\r\nb"), None);
    }
}
