//! `MAILROOM_FETCH_PASSWORDS_FILE`: one `URL password` per line, the URL written exactly
//! as in `MAILROOM_FETCH`. Kept out of the entries so the variable can be shown by
//! `check-config` and logged; a password is never echoed, only the URL it belongs to.

use std::collections::HashMap;
use std::path::Path;

use crate::config::Secret;

/// The passwords by URL.
#[derive(Debug, Default)]
pub struct Passwords(HashMap<String, Secret>);

impl Passwords {
    /// Read and parse the file; the error says what was expected without quoting a line
    /// (it may hold a password).
    pub fn load(path: &Path) -> Result<Passwords, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("a readable file of `URL password` lines ({e})"))?;
        Passwords::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Passwords, String> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((url, password)) = line.trim_start().split_once([' ', '\t']) else {
                return Err(format!("line {}: no password after the URL; expected `URL password` per line", n + 1));
            };
            let password = password.trim_start_matches([' ', '\t']);
            if password.is_empty() {
                return Err(format!("line {}: empty password; expected `URL password` per line", n + 1));
            }
            map.insert(url.to_string(), Secret::new(password));
        }
        Ok(Passwords(map))
    }

    pub fn get(&self, url: &str) -> Option<&Secret> {
        self.0.get(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_then_the_rest_of_the_line() {
        let p =
            Passwords::parse("# remote accounts\npop3s://a@h  secret with spaces\r\n\nimaps://b@h/INBOX x\n").unwrap();
        assert_eq!(p.get("pop3s://a@h").unwrap().expose(), "secret with spaces");
        assert_eq!(p.get("imaps://b@h/INBOX").unwrap().expose(), "x");
        assert!(p.get("imaps://b@h").is_none());
    }

    #[test]
    fn a_line_without_password_is_refused_without_echoing_it() {
        let e = Passwords::parse("pop3s://a@h\n").unwrap_err();
        assert!(e.starts_with("line 1:") && !e.contains("a@h"), "{e}");
    }
}
