//! Reading the credential a request presents: `Authorization: Bearer …` (an access token
//! or an `mcp_sk_` API key, told apart by shape) or `X-API-Key`, within size caps.
//!
//! Exactly one credential, in exactly one header, or none. Everything else is refused
//! before any verifier runs, with a [`CredentialError`] the layer answers as a 400:
//! two `Authorization` headers, an `Authorization` and an `X-API-Key` together, a
//! credential in the query string (RFC 6750 §2.3 is not supported: URLs end up in logs),
//! a scheme other than `Bearer`, a value that is not a `b64token`, or a header over its
//! cap.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Longest `Authorization` header read, in bytes (an RS256 access token with a
/// generous set of claims is about 1 KiB).
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;

/// Longest `X-API-Key` header read, in bytes (an `mcp_sk_` key is under 100).
pub const MAX_API_KEY_HEADER_LEN: usize = 512;

/// Longest query string inspected for a credential; a longer one is refused as
/// [`CredentialError::TooLarge`] rather than left unread.
pub const MAX_QUERY_LEN: usize = 16 * 1024;

/// The prefix every API key of this workspace starts with (`mcp_sk_live_…`,
/// `mcp_sk_test_…`).
pub const API_KEY_PREFIX: &str = "mcp_sk_";

/// The `X-API-Key` header.
pub const X_API_KEY: &str = "x-api-key";

/// Query parameters that would carry a credential (compared without case, after
/// percent-decoding).
const CREDENTIAL_PARAMS: [&str; 5] = ["access_token", "api_key", "apikey", "x-api-key", "token"];

/// The credential a request presented. Borrowed from the request's headers; never
/// printed (its `Debug` is redacted).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// A bearer access token (a `b64token`; the verifier decides whether it is a valid
    /// JWT).
    AccessToken(&'a str),
    /// An API key, from `Authorization: Bearer mcp_sk_…` or `X-API-Key`.
    ApiKey(&'a str),
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccessToken(_) => f.write_str("AccessToken([REDACTED])"),
            Self::ApiKey(_) => f.write_str("ApiKey([REDACTED])"),
        }
    }
}

/// Why a request's credential headers were refused. Never carries any of their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// More than one `Authorization` or `X-API-Key` header.
    #[error("more than one credential header of one kind")]
    DuplicateHeader,
    /// Both an `Authorization` and an `X-API-Key` header.
    #[error("two credentials in one request")]
    TwoCredentials,
    /// A credential in the query string.
    #[error("a credential in the query string")]
    InQuery,
    /// A header or the query string over its cap.
    #[error("a credential header or query string too large")]
    TooLarge,
    /// Not `<scheme> <b64token>`, or not visible ASCII.
    #[error("a malformed credential header")]
    Malformed,
    /// A well-formed `Authorization` header of another scheme than `Bearer` (`Basic`):
    /// answered like no credential (RFC 6750 §3.1), a 401 with the challenge.
    #[error("an unsupported authorization scheme")]
    UnsupportedScheme,
}

/// The credential in `headers` (and none in `query`), or `None` when the request
/// presents none.
///
/// # Errors
/// A [`CredentialError`] for anything but exactly one well-formed credential or none.
pub fn read<'h>(
    headers: &'h HeaderMap,
    query: Option<&str>,
) -> Result<Option<Presented<'h>>, CredentialError> {
    if let Some(query) = query {
        check_query(query)?;
    }
    let authorization = single(headers, AUTHORIZATION.as_str(), MAX_AUTHORIZATION_LEN)?;
    let api_key = single(headers, X_API_KEY, MAX_API_KEY_HEADER_LEN)?;
    match (authorization, api_key) {
        (Some(_), Some(_)) => Err(CredentialError::TwoCredentials),
        (Some(value), None) => bearer(value).map(Some),
        (None, Some(value)) => {
            if value.starts_with(API_KEY_PREFIX) && is_token68(value) {
                Ok(Some(Presented::ApiKey(value)))
            } else {
                Err(CredentialError::Malformed)
            }
        }
        (None, None) => Ok(None),
    }
}

/// The one value of header `name`, as visible ASCII within `cap` bytes.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &str,
    cap: usize,
) -> Result<Option<&'h str>, CredentialError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(CredentialError::DuplicateHeader);
    }
    if value.len() > cap {
        return Err(CredentialError::TooLarge);
    }
    let text = value.to_str().map_err(|_| CredentialError::Malformed)?;
    Ok(Some(text))
}

/// `Bearer <credential>` (scheme without case, one space), told apart by shape: an
/// `mcp_sk_` key, or else an access token (one that is not a JWT is the verifier's to
/// refuse, as an invalid token: 401, not 400).
fn bearer(value: &str) -> Result<Presented<'_>, CredentialError> {
    let (scheme, credential) = value.split_once(' ').ok_or(CredentialError::Malformed)?;
    let scheme_ok = !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric());
    if !scheme_ok || !is_token68(credential) {
        return Err(CredentialError::Malformed);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(CredentialError::UnsupportedScheme);
    }
    if credential.starts_with(API_KEY_PREFIX) {
        return Ok(Presented::ApiKey(credential));
    }
    Ok(Presented::AccessToken(credential))
}

/// RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Refuses a query string that carries a credential: a parameter named like one, or any
/// value that is an API key.
fn check_query(query: &str) -> Result<(), CredentialError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(CredentialError::TooLarge);
    }
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        if CREDENTIAL_PARAMS
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p))
        {
            return Err(CredentialError::InQuery);
        }
        if percent_decode(value)
            .trim_start()
            .starts_with(API_KEY_PREFIX)
        {
            return Err(CredentialError::InQuery);
        }
    }
    Ok(())
}

/// `%XX` and `+` decoded, bytes kept as Latin-1 where they are not UTF-8 (for comparison
/// only; never shown).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| e.into_bytes().iter().map(|&b| b as char).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
    const KEY: &str = "mcp_sk_live_abcdefghijklmnop_0123456789";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_token_and_keys_are_told_apart_by_shape() {
        let h = headers(&[("authorization", &format!("Bearer {JWT}"))]);
        assert_eq!(read(&h, None), Ok(Some(Presented::AccessToken(JWT))));
        let h = headers(&[("authorization", &format!("bearer {KEY}"))]);
        assert_eq!(read(&h, None), Ok(Some(Presented::ApiKey(KEY))));
        let h = headers(&[("x-api-key", KEY)]);
        assert_eq!(read(&h, None), Ok(Some(Presented::ApiKey(KEY))));
        assert_eq!(read(&HeaderMap::new(), Some("a=b")), Ok(None));
    }

    #[test]
    fn everything_but_one_well_formed_credential_is_refused() {
        let key_in_query = format!("q={KEY}");
        let cases: Vec<(HeaderMap, Option<&str>, CredentialError)> = vec![
            (
                headers(&[
                    ("authorization", &format!("Bearer {JWT}")),
                    ("authorization", &format!("Bearer {JWT}")),
                ]),
                None,
                CredentialError::DuplicateHeader,
            ),
            (
                headers(&[
                    ("authorization", &format!("Bearer {JWT}")),
                    ("x-api-key", KEY),
                ]),
                None,
                CredentialError::TwoCredentials,
            ),
            (
                headers(&[("x-api-key", KEY), ("x-api-key", KEY)]),
                None,
                CredentialError::DuplicateHeader,
            ),
            (
                HeaderMap::new(),
                Some("access_token=abc"),
                CredentialError::InQuery,
            ),
            (
                HeaderMap::new(),
                Some("x=1&Access%5Ftoken=abc"),
                CredentialError::InQuery,
            ),
            (
                HeaderMap::new(),
                Some(&key_in_query),
                CredentialError::InQuery,
            ),
            (
                headers(&[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")]),
                None,
                CredentialError::UnsupportedScheme,
            ),
            (
                headers(&[("authorization", "Bearer")]),
                None,
                CredentialError::Malformed,
            ),
            (
                headers(&[("authorization", "Bearer  two.spaces.x")]),
                None,
                CredentialError::Malformed,
            ),
            (
                headers(&[("authorization", "Bearer a.b.c d")]),
                None,
                CredentialError::Malformed,
            ),
            (
                headers(&[("x-api-key", "not-a-key")]),
                None,
                CredentialError::Malformed,
            ),
            (
                headers(&[(
                    "authorization",
                    &format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN)),
                )]),
                None,
                CredentialError::TooLarge,
            ),
        ];
        for (h, query, expected) in cases {
            assert_eq!(read(&h, query), Err(expected), "{h:?} {query:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_credential() {
        assert!(!format!("{:?}", Presented::ApiKey(KEY)).contains("mcp_sk"));
        assert!(!format!("{:?}", Presented::AccessToken(JWT)).contains("eyJ"));
    }

    proptest! {
        #[test]
        fn any_header_bytes_give_an_answer_not_a_panic(
            auth in proptest::collection::vec(any::<u8>(), 0..200),
            key in proptest::collection::vec(any::<u8>(), 0..100),
            query in ".{0,100}",
        ) {
            let mut map = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&auth) { map.insert(AUTHORIZATION, v); }
            if let Ok(v) = HeaderValue::from_bytes(&key) { map.insert(X_API_KEY, v); }
            let _ = read(&map, Some(&query));
        }

        #[test]
        fn a_presented_credential_is_a_substring_of_its_header(token in "[A-Za-z0-9_-]{1,20}\\.[A-Za-z0-9_-]{1,20}\\.[A-Za-z0-9_-]{1,20}") {
            let map = headers(&[("authorization", &format!("Bearer {token}"))]);
            prop_assert_eq!(read(&map, None), Ok(Some(Presented::AccessToken(&token))));
        }
    }
}
