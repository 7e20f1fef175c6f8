//! Input limits: a body size cap (413), a JSON content type on requests with a body (415),
//! a deadline for the response head (408), and [`StrictJson`], an extractor that refuses
//! nesting past a depth cap and duplicate object keys.
//!
//! The deadline covers the inner service until it returns the response head: a streamed
//! body (an MCP event stream) is not cut by it. 408 (`Request Timeout`), as tower-http's
//! timeout layer answers: the request did not complete in the time the server allows.

use crate::error::{json_error, status_error};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request as AxumRequest};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The default body cap: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// The default deadline for the response head: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default JSON nesting cap of [`StrictJson`].
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// The limits a [`RequestLimitsLayer`] enforces.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    max_body: usize,
    require_json: bool,
    timeout: Option<Duration>,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
            require_json: true,
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }
}

impl RequestLimits {
    /// The body cap in bytes (default [`DEFAULT_MAX_BODY`]).
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Whether a request with a body must say `Content-Type: application/json` (default
    /// yes: the MCP endpoint and the session helpers take JSON only).
    #[must_use]
    pub fn require_json(mut self, yes: bool) -> Self {
        self.require_json = yes;
        self
    }

    /// The deadline for the response head; `None` for none.
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The layer.
    pub fn layer(self) -> RequestLimitsLayer {
        RequestLimitsLayer {
            limits: Arc::new(self),
        }
    }

    /// The refusal for a request's head, if any.
    fn refuse(&self, request: &Request<Body>) -> Option<StatusCode> {
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Some(StatusCode::PAYLOAD_TOO_LARGE);
        }
        let has_body = declared.is_some_and(|n| n > 0)
            || request
                .headers()
                .contains_key(http::header::TRANSFER_ENCODING);
        if self.require_json && has_body && !is_json(request.headers()) {
            return Some(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        None
    }
}

/// Whether `Content-Type` is `application/json` (parameters allowed).
pub fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// The limits [`Layer`](tower::Layer).
#[derive(Debug, Clone)]
pub struct RequestLimitsLayer {
    limits: Arc<RequestLimits>,
}

impl<S> tower::Layer<S> for RequestLimitsLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limited {
            inner,
            limits: Arc::clone(&self.limits),
        }
    }
}

/// The limits [`Service`](tower::Service).
#[derive(Debug, Clone)]
pub struct Limited<S> {
    inner: S,
    limits: Arc<RequestLimits>,
}

/// The response future of [`Limited`].
pub type LimitedFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S> tower::Service<Request<Body>> for Limited<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = LimitedFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if let Some(status) = self.limits.refuse(&request) {
            return Box::pin(async move { Ok(status_error(status)) });
        }
        // A body without a declared length (chunked) is cut at the cap while it is read:
        // the reader gets a length-limit error, which axum's extractors answer as 413.
        let max = self.limits.max_body;
        let request = request.map(|body| Body::new(http_body_util::Limited::new(body, max)));
        let future = self.inner.call(request);
        match self.limits.timeout {
            None => Box::pin(future),
            Some(deadline) => Box::pin(async move {
                match tokio::time::timeout(deadline, future).await {
                    Ok(result) => result,
                    Err(_) => Ok(status_error(StatusCode::REQUEST_TIMEOUT)),
                }
            }),
        }
    }
}

/// A JSON body, deserialized after a strict check: `Content-Type: application/json`, at
/// most [`DEFAULT_MAX_DEPTH`] levels of nesting, and no object with the same key twice
/// (two parsers could disagree on which one counts: the classic smuggling of a second
/// `"role"`). Refusals are 400 (`invalid_request`), 413 or 415 in the JSON error shape.
#[derive(Debug, Clone)]
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = Response<Body>;

    async fn from_request(request: AxumRequest, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(status_error(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                status_error(axum::response::IntoResponse::into_response(rejection).status())
            })?;
        parse_strict(&bytes, DEFAULT_MAX_DEPTH).map(StrictJson).map_err(|_| {
            json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The body is not acceptable JSON (syntax, nesting, a duplicate key or a field).",
            )
        })
    }
}

/// Why [`parse_strict`] refused a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StrictJsonError {
    /// Not JSON, nested too deep, a duplicate key, or not the expected shape. The text is
    /// the parser's, about positions and shapes only.
    #[error("unacceptable JSON: {0}")]
    Refused(String),
}

/// `bytes` as `T` after the strict check (nesting at most `max_depth`, no duplicate key).
///
/// # Errors
/// [`StrictJsonError::Refused`].
pub fn parse_strict<T: DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
) -> Result<T, StrictJsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    Check { depth: max_depth }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| StrictJsonError::Refused(e.to_string()))?;
    serde_json::from_slice(bytes).map_err(|e| StrictJsonError::Refused(e.to_string()))
}

/// Walks a JSON value, refusing nesting past `depth` and duplicate object keys.
struct Check {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self
            .depth
            .checked_sub(1)
            .ok_or_else(|| de::Error::custom("nested too deep"))?;
        while seq.next_element_seed(Check { depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self
            .depth
            .checked_sub(1)
            .ok_or_else(|| de::Error::custom("nested too deep"))?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(Check { depth })?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicate_keys_and_deep_nesting_are_refused() {
        let ok: serde_json::Value = parse_strict(br#"{"a":1,"b":{"a":2}}"#, 4).unwrap();
        assert_eq!(ok["b"]["a"], 2);
        assert!(
            parse_strict::<serde_json::Value>(br#"{"role":"viewer","role":"org_admin"}"#, 4)
                .is_err()
        );
        assert!(parse_strict::<serde_json::Value>(br#"{"a":{"b":{"x":1,"x":2}}}"#, 8).is_err());
        assert!(parse_strict::<serde_json::Value>(b"[[[[1]]]]", 3).is_err());
        assert!(parse_strict::<serde_json::Value>(b"[[[1]]]", 3).is_ok());
        assert!(parse_strict::<serde_json::Value>(b"{} trailing", 3).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_give_an_answer_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_strict::<serde_json::Value>(&bytes, 8);
        }
    }
}
