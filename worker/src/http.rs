//! The HTTP helpers every route uses: one JSON response, one reader of
//! `Authorization: Bearer`, one reader of a query parameter.

use serde::Serialize;
use worker::{Headers, Request, Response};

/// A JSON answer, never cached; with `Access-Control-Allow-Origin` (and
/// `Vary: origin`) when `allow_origin` is given.
pub(crate) fn json(
    status: u16,
    body: Vec<u8>,
    allow_origin: Option<&str>,
) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    if let Some(origin) = allow_origin {
        headers.set("access-control-allow-origin", origin)?;
        headers.set("vary", "origin")?;
    }
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(body))
}

/// `value` as JSON bytes.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

/// The credential of `Authorization: Bearer <credential>`: the scheme in
/// any case (RFC 9110 §11.1), the credential without surrounding spaces;
/// `None` for any other header or an empty credential.
pub(crate) fn bearer(req: &Request) -> Option<String> {
    let header = req.headers().get("authorization").ok().flatten()?;
    bearer_credential(&header).map(str::to_owned)
}

fn bearer_credential(header: &str) -> Option<&str> {
    let (scheme, credential) = header.trim_start().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// The first value of the query parameter `name`, if the URL has it.
pub(crate) fn query(req: &Request, name: &str) -> Option<String> {
    req.url().ok().and_then(|url| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::bearer_credential;

    #[test]
    fn bearer_credentials_are_read_in_one_way() {
        assert_eq!(bearer_credential("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credential("bearer abc"), Some("abc"));
        assert_eq!(bearer_credential("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_credential("Basic abc"), None);
        assert_eq!(bearer_credential("Bearer "), None);
        assert_eq!(bearer_credential("Bearer"), None);
        assert_eq!(bearer_credential("Bearerabc"), None);
    }
}
