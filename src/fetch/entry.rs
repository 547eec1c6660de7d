//! One line of `MAILROOM_FETCH`: which remote account is fetched into which local one.
//!
//! `local@domain <- URL [interval=5m] [keep] [folder=INBOX]`, URL one of
//! `pop3s://user@host[:995]`, `pop3://user@host[:110]` (STARTTLS), `imaps://user@host[:993]/FOLDER`
//! or `imap://user@host[:143]/FOLDER` (STARTTLS). Pure parsing: no file, no network. The
//! URL is kept exactly as written because the passwords file names it so.

use std::path::PathBuf;
use std::time::Duration;

use crate::accounts::Address;

/// What an entry looks like, for every error message.
pub const EXPECTED: &str = "one entry per line, `local@domain <- URL [interval=5m] [keep] [folder=INBOX]` with URL \
     `pop3s://user@host[:port]`, `pop3://user@host[:port]` (STARTTLS), `imaps://user@host[:port]/FOLDER` or \
     `imap://user@host[:port]/FOLDER` (STARTTLS)";

/// How often a source is fetched when the entry does not say.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// The protocol spoken to the remote server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteProtocol {
    Pop3,
    Imap,
}

/// How TLS starts: at connect (`pop3s`, `imaps`) or after STARTTLS/STLS. There is no
/// cleartext mode: the password never leaves without TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsStart {
    Implicit,
    StartTls,
}

/// One configured source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSource {
    /// 1-based position in `MAILROOM_FETCH`: the `source` label of the metrics (bounded,
    /// configured) and how logs name the source besides its URL.
    pub index: usize,
    /// The local account the mail is for.
    pub local: Address,
    /// The URL exactly as written: the key of the passwords file.
    pub url: String,
    pub protocol: RemoteProtocol,
    pub tls: TlsStart,
    pub user: String,
    pub host: String,
    pub port: u16,
    /// IMAP: the remote folder (`INBOX` when the URL has no path).
    pub remote_folder: String,
    pub interval: Duration,
    /// Leave fetched mail on the server.
    pub keep: bool,
    /// Where the mail lands locally (the implicit keep when Sieve runs).
    pub folder: String,
}

impl FetchSource {
    /// How logs name the source: never with its password, which is not in the URL.
    pub fn name(&self) -> String {
        format!("#{} {} <- {}", self.index, self.local, self.url)
    }
}

/// `MAILROOM_FETCH`, `MAILROOM_FETCH_PASSWORDS_FILE` and `MAILROOM_FETCH_CA_FILE`.
#[derive(Clone, Debug, Default)]
pub struct FetchConfig {
    pub sources: Vec<FetchSource>,
    pub passwords_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// Every entry of the variable (blank lines and `#` comments skipped), or what is wrong
/// with the first bad one.
pub fn parse_entries(value: &str) -> Result<Vec<FetchSource>, String> {
    let mut sources = Vec::new();
    for (n, line) in value.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let index = sources.len() + 1;
        let source = parse_entry(index, line).map_err(|e| format!("line {}: {e}; expected {EXPECTED}", n + 1))?;
        if sources.iter().any(|s: &FetchSource| s.url == source.url && s.local == source.local) {
            return Err(format!(
                "line {}: {} is fetched twice into {}; expected each source once",
                n + 1,
                source.url,
                source.local
            ));
        }
        sources.push(source);
    }
    Ok(sources)
}

fn parse_entry(index: usize, line: &str) -> Result<FetchSource, String> {
    let (local, rest) = line.split_once("<-").ok_or("no `<-` between the local address and the URL")?;
    let local = local.trim();
    let local = Address::parse(local).map_err(|e| format!("{local:?} is not a mail address ({e})"))?;
    let mut words = rest.split_whitespace();
    let url = words.next().ok_or("no URL after `<-`")?;
    let mut source = parse_url(url)?;
    source.index = index;
    source.local = local;
    for word in words {
        match word.split_once('=') {
            None if word == "keep" => source.keep = true,
            Some(("interval", v)) => {
                let d = crate::units::parse_duration(v)
                    .map_err(|_| format!("interval {v:?} is not a duration like `90s` or `5m`"))?;
                if d < Duration::from_secs(1) {
                    return Err(format!("interval {v:?} is shorter than one second"));
                }
                source.interval = d;
            }
            Some(("folder", v)) if !v.is_empty() => source.folder = v.to_string(),
            _ => return Err(format!("unknown option {word:?} (options: `interval=`, `keep`, `folder=`)")),
        }
    }
    Ok(source)
}

/// The source of `mailroom import`: `imaps://user@host[:port]` or `imap://user@host[:port]`
/// (STARTTLS), the whole account (no folder path); `local` is left empty.
pub fn parse_import_url(url: &str) -> Result<FetchSource, String> {
    let source = parse_url(url)?;
    if source.protocol != RemoteProtocol::Imap {
        return Err(format!("{url:?}: only imaps:// and imap:// (STARTTLS) can be imported"));
    }
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    if after_scheme.split_once('/').is_some_and(|(_, path)| !path.is_empty()) {
        return Err(format!("{url:?}: the whole account is imported; name folders with --folders, not in the URL"));
    }
    Ok(source)
}

/// The URL part; `index`, `local` and the options are filled in by the caller.
fn parse_url(url: &str) -> Result<FetchSource, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not a URL"))?;
    let (protocol, tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "pop3s" => (RemoteProtocol::Pop3, TlsStart::Implicit, 995),
        "pop3" => (RemoteProtocol::Pop3, TlsStart::StartTls, 110),
        "imaps" => (RemoteProtocol::Imap, TlsStart::Implicit, 993),
        "imap" => (RemoteProtocol::Imap, TlsStart::StartTls, 143),
        other => return Err(format!("scheme {other:?} is not pop3s, pop3, imaps or imap")),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let (user, hostport) = authority.rsplit_once('@').ok_or_else(|| format!("{url:?} names no user (`user@host`)"))?;
    let user = percent_decode(user).ok_or_else(|| format!("the user in {url:?} is badly %-encoded"))?;
    if user.is_empty() {
        return Err(format!("{url:?} names no user (`user@host`)"));
    }
    let (host, port) =
        split_host_port(hostport, default_port).ok_or_else(|| format!("{hostport:?} is not `host[:port]`"))?;
    let remote_folder = match (protocol, path) {
        (RemoteProtocol::Pop3, None | Some("")) => String::new(),
        (RemoteProtocol::Pop3, Some(_)) => return Err(format!("{url:?}: a POP3 URL has no folder")),
        (RemoteProtocol::Imap, None | Some("")) => "INBOX".to_string(),
        (RemoteProtocol::Imap, Some(p)) => {
            percent_decode(p).ok_or_else(|| format!("the folder in {url:?} is badly %-encoded"))?
        }
    };
    Ok(FetchSource {
        index: 0,
        local: Address { local: String::new(), domain: String::new() },
        url: url.to_string(),
        protocol,
        tls,
        user,
        host,
        port,
        remote_folder,
        interval: DEFAULT_INTERVAL,
        keep: false,
        folder: "INBOX".to_string(),
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':');
    if host.is_empty() || !host.chars().all(valid) {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// `%XX` escapes (a user name holding `@` is written `%40`); `None` when malformed or
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> FetchSource {
        let mut all = parse_entries(line).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    #[test]
    fn pop3s_with_defaults() {
        let s = one("alice@example.com <- pop3s://alice.remote@pop.example.net");
        assert_eq!(s.index, 1);
        assert_eq!(s.local.to_string(), "alice@example.com");
        assert_eq!((s.protocol, s.tls), (RemoteProtocol::Pop3, TlsStart::Implicit));
        assert_eq!((s.user.as_str(), s.host.as_str(), s.port), ("alice.remote", "pop.example.net", 995));
        assert_eq!((s.interval, s.keep, s.folder.as_str()), (DEFAULT_INTERVAL, false, "INBOX"));
        assert_eq!(s.url, "pop3s://alice.remote@pop.example.net");
    }

    #[test]
    fn imap_starttls_with_options_and_folder() {
        let s = one("bob@example.com <- imap://b%40x.org@[::1]:1143/Lists%2FRust interval=90s keep folder=Remote");
        assert_eq!((s.protocol, s.tls), (RemoteProtocol::Imap, TlsStart::StartTls));
        assert_eq!((s.user.as_str(), s.host.as_str(), s.port), ("b@x.org", "::1", 1143));
        assert_eq!(s.remote_folder, "Lists/Rust");
        assert_eq!((s.interval, s.keep, s.folder.as_str()), (Duration::from_secs(90), true, "Remote"));
    }

    #[test]
    fn default_ports_and_imap_inbox() {
        assert_eq!(one("a@example.com <- pop3://u@h").port, 110);
        assert_eq!(one("a@example.com <- imap://u@h").port, 143);
        let s = one("a@example.com <- imaps://u@h/");
        assert_eq!((s.port, s.remote_folder.as_str()), (993, "INBOX"));
    }

    #[test]
    fn several_lines_comments_and_blank_lines() {
        let all =
            parse_entries("# mine\na@example.com <- pop3s://u@h\n\n  b@example.com <- imaps://u@h keep\n").unwrap();
        assert_eq!(all.iter().map(|s| s.index).collect::<Vec<_>>(), vec![1, 2]);
        assert!(all[1].keep);
    }

    #[test]
    fn bad_entries_say_what_is_wrong_and_expected() {
        for (line, says) in [
            ("alice@example.com pop3s://u@h", "no `<-`"),
            ("not an address <- pop3s://u@h", "not a mail address"),
            ("a@example.com <-", "no URL"),
            ("a@example.com <- http://u@h", "scheme \"http\""),
            ("a@example.com <- pop3s://h", "names no user"),
            ("a@example.com <- pop3s://u@h:0", "not `host[:port]`"),
            ("a@example.com <- pop3s://u@h:99999", "not `host[:port]`"),
            ("a@example.com <- pop3s://u@h/INBOX", "a POP3 URL has no folder"),
            ("a@example.com <- pop3s://u@h interval=soon", "not a duration"),
            ("a@example.com <- pop3s://u@h interval=0s", "shorter than one second"),
            ("a@example.com <- pop3s://u@h delete", "unknown option"),
            ("a@example.com <- pop3s://u%4@h", "badly %-encoded"),
            ("a@example.com <- pop3s://u@h\na@example.com <- pop3s://u@h keep", "fetched twice"),
        ] {
            let e = parse_entries(line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
            assert!(e.contains("expected"), "{line}: {e}");
        }
        assert!(parse_entries("a@example.com <- pop3s://u@h\nx").unwrap_err().starts_with("line 2:"));
    }
}
