//! Where configuration values come from: the process environment, `MAILROOM_X` or
//! `MAILROOM_X_FILE` (Docker and Kubernetes secrets arrive as files).
//!
//! This module knows which variables exist (the names of [`VARIABLES`]); it does not
//! interpret values. It exists so that tests can feed a fixed environment (no
//! process-global `set_var`).

use std::collections::BTreeMap;
use std::path::Path;

use super::variables::{VARIABLES, Variable};

pub const PREFIX: &str = "MAILROOM_";

/// The resolved `MAILROOM_*` environment: every known variable's value (from the
/// variable itself or its `_FILE` twin), plus the problems found while resolving.
#[derive(Debug, Default, Clone)]
pub struct EnvSource {
    values: BTreeMap<String, String>,
    /// `(variable, message)` for unreadable `_FILE` paths or both forms given.
    pub errors: Vec<(String, String)>,
    /// Unknown `MAILROOM_*` variables, each with the closest known name.
    pub warnings: Vec<String>,
    /// The file each `_FILE` variable named, by base name (`ACCOUNTS` -> the path), for
    /// what is re-read while running.
    files: BTreeMap<String, std::path::PathBuf>,
}

impl EnvSource {
    /// Read the process environment.
    pub fn from_process() -> EnvSource {
        EnvSource::from_pairs(
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().unwrap_or_default()))),
        )
    }

    /// Build from `(KEY, value)` pairs, e.g. a test's fixed environment. Keys without
    /// the `MAILROOM_` prefix are ignored.
    pub fn from_pairs<I, K, V>(pairs: I) -> EnvSource
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let raw: BTreeMap<String, String> =
            pairs.into_iter().map(|(k, v)| (k.into(), v.into())).filter(|(k, _)| k.starts_with(PREFIX)).collect();
        let mut source = EnvSource::default();
        for (key, value) in &raw {
            let name = &key[PREFIX.len()..];
            if is_known(name) {
                continue;
            }
            if let Some(base) = name.strip_suffix("_FILE").filter(|b| is_known(b)) {
                if raw.contains_key(&format!("{PREFIX}{base}")) {
                    source.errors.push((key.clone(), format!("both {PREFIX}{base} and {key} are set; give only one")));
                    continue;
                }
                match read_secret_file(Path::new(value)) {
                    Ok(content) => {
                        source.values.insert(base.to_string(), content);
                        source.files.insert(base.to_string(), Path::new(value).to_path_buf());
                    }
                    Err(e) => source.errors.push((
                        key.clone(),
                        format!("cannot read file {value:?}: {e}; expected a readable file holding the value of {PREFIX}{base}"),
                    )),
                }
                continue;
            }
            source.warnings.push(unknown_variable_warning(key));
        }
        for var in VARIABLES {
            if let Some(v) = raw.get(&format!("{PREFIX}{}", var.name)) {
                source.values.insert(var.name.to_string(), v.clone());
            }
        }
        source
    }

    /// The value of a known variable (without prefix), if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// The file `MAILROOM_<name>_FILE` named, when the value came from one.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.files.get(name).map(|p| p.as_path())
    }

    /// All set values, keyed by lower-case name, for figment.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}

fn is_known(name: &str) -> bool {
    Variable::find(name).is_some()
}

/// File content with one trailing newline (and CR) trimmed, as Docker secrets are
/// usually written by `echo`.
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let content = std::fs::read_to_string(path)?;
    let trimmed = content.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&content);
    Ok(trimmed.to_string())
}

/// "unknown variable MAILROOM_SMTP_LISTENS (did you mean MAILROOM_SMTP_LISTEN?)".
/// Kubernetes injects `<SERVICE>_PORT_*` variables, so this must stay a warning.
fn unknown_variable_warning(key: &str) -> String {
    let closest = VARIABLES
        .iter()
        .map(|var| format!("{PREFIX}{}", var.name))
        .map(|candidate| (strsim::jaro_winkler(key, &candidate), candidate))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((score, name)) if score > 0.8 => {
            format!("unknown variable {key} ignored (did you mean {name}?)")
        }
        _ => format!("unknown variable {key} ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_read() {
        let env = EnvSource::from_pairs([("MAILROOM_HOSTNAME", "mx.example.com"), ("PATH", "/bin")]);
        assert_eq!(env.get("HOSTNAME"), Some("mx.example.com"));
        assert!(env.errors.is_empty() && env.warnings.is_empty());
    }

    #[test]
    fn file_values_are_read_and_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let env = EnvSource::from_pairs([("MAILROOM_RELAY_PASSWORD_FILE", path.to_str().unwrap())]);
        assert_eq!(env.get("RELAY_PASSWORD"), Some("s3cret"));
    }

    #[test]
    fn unreadable_file_is_an_error_naming_the_variable() {
        let env = EnvSource::from_pairs([("MAILROOM_ACCOUNTS_FILE", "/nonexistent/accounts")]);
        assert_eq!(env.errors.len(), 1);
        assert_eq!(env.errors[0].0, "MAILROOM_ACCOUNTS_FILE");
        assert!(env.errors[0].1.contains("/nonexistent/accounts"));
    }

    #[test]
    fn both_forms_is_an_error() {
        let env = EnvSource::from_pairs([("MAILROOM_LOG", "info"), ("MAILROOM_LOG_FILE", "/x")]);
        assert_eq!(env.errors.len(), 1);
    }

    #[test]
    fn unknown_variable_warns_with_closest_name() {
        let env = EnvSource::from_pairs([("MAILROOM_SMTP_LISTENS", ":25")]);
        assert_eq!(env.warnings.len(), 1);
        assert!(env.warnings[0].contains("did you mean MAILROOM_SMTP_LISTEN?"), "{}", env.warnings[0]);
        let env = EnvSource::from_pairs([("MAILROOM_PORT_25_TCP", "tcp://10.0.0.1:25")]);
        assert_eq!(env.warnings.len(), 1);
    }

    #[test]
    fn empty_value_counts_as_unset() {
        let env = EnvSource::from_pairs([("MAILROOM_DOMAINS", "  ")]);
        assert_eq!(env.get("DOMAINS"), None);
    }
}
