//! Cross-site request checks on every POST, besides the session-bound token (see
//! `session.rs`): a browser that says the request comes from another site is refused
//! before the form is read. Both headers are optional (older browsers, scripts), so
//! their absence is not a refusal; the token is what every POST must have.

use hyper::HeaderMap;

/// Why a POST is refused as cross-site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossSite {
    /// `Sec-Fetch-Site` says another site (or a site we cannot vouch for) sent it.
    FetchSite,
    /// `Origin` is not this server (or is `null`).
    Origin,
    /// The form has no token, or not this session's.
    Token,
}

/// Check `Sec-Fetch-Site` and `Origin` against the request's own `Host`.
pub fn same_origin(headers: &HeaderMap) -> Result<(), CrossSite> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}").trim().to_ascii_lowercase());
    if let Some(site) = header("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return Err(CrossSite::FetchSite);
    }
    if let Some(origin) = header("origin") {
        let host = header("host").unwrap_or_default();
        let authority = origin.strip_prefix("https://").unwrap_or("");
        if host.is_empty() || authority != host {
            return Err(CrossSite::Origin);
        }
    }
    Ok(())
}
