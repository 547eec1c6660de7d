//! `MAILROOM_BLOB_STORE` and the S3 credentials: where message bodies of a PostgreSQL
//! store are kept.
//!
//! Bodies go in the database (`postgres`, the default) or in an S3-compatible bucket
//! (`s3://bucket/prefix?endpoint=https://…&region=…`). The URL itself holds no secret;
//! the key pair comes from `MAILROOM_S3_ACCESS_KEY_ID` / `MAILROOM_S3_SECRET_ACCESS_KEY`
//! (or their `_FILE` twins), so it never shows up in a URL that is logged or printed.

use std::net::IpAddr;

use super::parse::percent_decode;

/// What `MAILROOM_BLOB_STORE` takes; the start of every error about it.
pub(super) const BLOB_STORE_EXPECTED: &str =
    "`postgres` or `s3://bucket[/prefix]?endpoint=https://host[:port]&region=REGION`";

/// The region used when the URL names none (what S3-compatible servers accept).
const DEFAULT_REGION: &str = "us-east-1";

/// A parsed `s3://` location: bucket, key prefix, endpoint, region and addressing style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// The value as given (trimmed): what `check-config` shows (it holds no secret).
    pub(super) raw: String,
    pub(super) bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub(super) prefix: String,
    /// `http[s]://host[:port]`, no trailing `/`; `None` for AWS itself.
    pub(super) endpoint: Option<String>,
    pub(super) region: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub(super) path_style: bool,
}

impl S3Url {
    /// Validate a value as `MAILROOM_BLOB_STORE`'s `s3://` form.
    pub fn parse(raw: &str) -> Result<S3Url, String> {
        parse_s3_url(raw)
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without leading or trailing `/` (empty: the bucket's root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `http[s]://host[:port]`; `None`: AWS's own endpoint for the region.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Path-style addressing (`endpoint/bucket/key`): the default when an endpoint is
    /// given, since most self-hosted servers have no wildcard DNS for bucket names.
    pub fn path_style(&self) -> bool {
        self.path_style
    }

    /// The endpoint is plain HTTP (allowed for loopback only).
    pub fn plain_http(&self) -> bool {
        self.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))
    }
}

/// A secret string: `Debug` never prints it, so a config dump or a panic cannot leak it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the one place that signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything needed to reach the bucket: where, and the key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    pub url: S3Url,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// `postgres` (`None`) or an `s3://` URL.
pub(super) fn blob_store(raw: &str) -> Result<Option<S3Url>, String> {
    let v = raw.trim();
    if v == "postgres" {
        return Ok(None);
    }
    parse_s3_url(v).map(Some)
}

fn parse_s3_url(raw: &str) -> Result<S3Url, String> {
    let expected = |what: &str| format!("{BLOB_STORE_EXPECTED} ({what})");
    let v = raw.trim();
    if v.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(expected("no spaces or control characters"));
    }
    let rest = v.strip_prefix("s3://").ok_or_else(|| expected("starting with `s3://`"))?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    if location.contains('#') || query.contains('#') {
        return Err(expected("no `#` fragment"));
    }
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    if !valid_bucket(bucket) {
        return Err(expected("a bucket name of 3 to 63 lowercase letters, digits, `-` and `.`"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|seg| seg == "." || seg == "..") || prefix.contains("//") {
        return Err(expected("a key prefix without empty, `.` or `..` segments"));
    }
    let (mut endpoint, mut region, mut path_style) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value, false).ok_or_else(|| expected("query values percent-encoded as UTF-8"))?;
        match key {
            "endpoint" => endpoint = Some(parse_endpoint(&value).map_err(|e| expected(&e))?),
            "region" if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                region = Some(value)
            }
            "region" => return Err(expected("a region like `us-east-1`")),
            "path_style" => {
                path_style = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(expected("`path_style=true` or `path_style=false`")),
                })
            }
            _ => return Err(expected("query parameters `endpoint`, `region`, `path_style` only")),
        }
    }
    Ok(S3Url {
        raw: v.to_string(),
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        path_style: path_style.unwrap_or(endpoint.is_some()),
        endpoint,
        region: region.unwrap_or_else(|| DEFAULT_REGION.to_string()),
    })
}

/// S3's rules for new buckets, which every compatible server accepts.
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// `https://host[:port]`, or `http://` to a loopback address: bodies would otherwise
/// cross the network in clear text.
fn parse_endpoint(v: &str) -> Result<String, String> {
    let v = v.trim_end_matches('/');
    let (plain, rest) = if let Some(r) = v.strip_prefix("https://") {
        (false, r)
    } else if let Some(r) = v.strip_prefix("http://") {
        (true, r)
    } else {
        return Err("an endpoint starting with `https://`".into());
    };
    if rest.is_empty() || rest.contains(['/', '?', '@']) {
        return Err("an endpoint `https://host[:port]` with no path or user".into());
    }
    let host = match rest.strip_prefix('[') {
        Some(r) => r.split_once(']').map(|(h, _)| h).ok_or("a closing `]` after an IPv6 address")?,
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    if plain && !is_loopback(host) {
        return Err("`https://` (plain `http://` only to a loopback address)".into());
    }
    Ok(v.to_string())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse_with_their_defaults() {
        assert_eq!(blob_store("postgres"), Ok(None));
        let u = S3Url::parse("s3://mail-bodies/prod/eu?endpoint=https://s3.example.net:9000&region=eu-west-1").unwrap();
        assert_eq!((u.bucket(), u.prefix(), u.region()), ("mail-bodies", "prod/eu", "eu-west-1"));
        assert_eq!(u.endpoint(), Some("https://s3.example.net:9000"));
        assert!(u.path_style() && !u.plain_http());
        let aws = S3Url::parse("s3://bucket").unwrap();
        assert_eq!((aws.prefix(), aws.region(), aws.endpoint(), aws.path_style()), ("", "us-east-1", None, false));
        let vhost = S3Url::parse("s3://bucket/?endpoint=https%3A%2F%2Fs3.example.net&path_style=false").unwrap();
        assert!(!vhost.path_style());
        assert_eq!(vhost.endpoint(), Some("https://s3.example.net"));
        let local = S3Url::parse("s3://bucket/p/?endpoint=http://127.0.0.1:9000").unwrap();
        assert!(local.plain_http());
        assert_eq!(local.prefix(), "p");
        assert!(S3Url::parse("s3://bucket?endpoint=http://[::1]:9000").unwrap().plain_http());
    }

    #[test]
    fn bad_s3_urls_are_refused() {
        for bad in [
            "maildir",
            "s3:/bucket",
            "s3://Bucket",
            "s3://ab",
            "s3://bucket/../x",
            "s3://bucket?endpoint=http://s3.example.net",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?endpoint=https://h/path",
            "s3://bucket?region=",
            "s3://bucket?path_style=yes",
            "s3://bucket?secret=x",
            "s3://bucket#x",
        ] {
            let err = blob_store(bad).unwrap_err();
            assert!(err.starts_with(BLOB_STORE_EXPECTED), "{bad}: {err}");
        }
    }

    fn load(pairs: &[(&str, &str)]) -> Result<crate::config::Config, Vec<String>> {
        let mut all = vec![("MAILROOM_HOSTNAME".to_string(), "mx.example.com".to_string())];
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        crate::config::Config::load(&crate::config::EnvSource::from_pairs(all))
            .map(|(c, _)| c)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    const PG: (&str, &str) = ("MAILROOM_STORE", "postgres://mail@db.example.net/mail");
    const S3: (&str, &str) = ("MAILROOM_BLOB_STORE", "s3://bodies/mx1?endpoint=https://s3.example.net");
    const KEY_ID: (&str, &str) = ("MAILROOM_S3_ACCESS_KEY_ID", "AKIDEXAMPLE");
    const SECRET: (&str, &str) = ("MAILROOM_S3_SECRET_ACCESS_KEY", "wJalrXUtnFEMI");

    #[test]
    fn the_blob_store_comes_with_its_keys_and_hides_the_secret() {
        assert_eq!(load(&[PG]).unwrap().blob_store(), None, "postgres by default");
        let c = load(&[PG, S3, KEY_ID, SECRET]).unwrap();
        let s3 = c.blob_store().unwrap();
        assert_eq!((s3.url.bucket(), s3.url.prefix(), s3.access_key_id.as_str()), ("bodies", "mx1", "AKIDEXAMPLE"));
        assert_eq!(s3.secret_access_key.expose(), "wJalrXUtnFEMI");
        let shown = format!("{:?} {:?}", c.effective(), c);
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(shown.contains("s3://bodies/mx1"));

        // From files, as Kubernetes secrets arrive.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let from_file = [PG, S3, KEY_ID, ("MAILROOM_S3_SECRET_ACCESS_KEY_FILE", file.to_str().unwrap())];
        assert_eq!(load(&from_file).unwrap().blob_store().unwrap().secret_access_key.expose(), "from-a-file");
    }

    #[test]
    fn an_s3_blob_store_needs_postgres_and_both_keys() {
        let errors = load(&[S3, KEY_ID, SECRET]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("MAILROOM_BLOB_STORE") && errors[0].contains("MAILROOM_STORE"), "{errors:?}");
        let errors = load(&[PG, S3]).unwrap_err();
        assert!(errors[0].starts_with("MAILROOM_S3_ACCESS_KEY_ID:"), "{errors:?}");
        assert!(errors[1].starts_with("MAILROOM_S3_SECRET_ACCESS_KEY:"), "{errors:?}");
        let errors = load(&[PG, KEY_ID, SECRET]).unwrap_err();
        assert!(errors[0].starts_with("MAILROOM_BLOB_STORE:"), "{errors:?}");
        let errors = load(&[PG, ("MAILROOM_BLOB_STORE", "s3://x")]).unwrap_err();
        assert!(errors[0].contains("bucket name") && errors[0].contains("\"s3://x\""), "{errors:?}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = S3Config {
            url: S3Url::parse("s3://bucket").unwrap(),
            access_key_id: "AKID".into(),
            secret_access_key: Secret("hunter2".into()),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.secret_access_key.expose(), "hunter2");
    }
}
