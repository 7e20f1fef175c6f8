//! One JSON error shape for every error this crate answers: `{"error": …,
//! "error_description": …}` (the OAuth 2.0 shape, RFC 6749 §5.2), with a fixed code and a
//! fixed description per case: no internals, no store errors, no credential text.

use axum::body::Body;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

/// The body of every error response this crate produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// A short machine-readable code (`invalid_request`, `invalid_token`,
    /// `insufficient_scope`, …).
    pub error: String,
    /// One human-readable sentence, fixed per case.
    pub error_description: String,
}

/// `status` with the JSON error body `{error, error_description}`.
pub fn json_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    let body = ErrorBody {
        error: error.to_owned(),
        error_description: description.to_owned(),
    };
    // Two strings always serialize; the fallback keeps the shape anyway.
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"error":"server_error","error_description":"internal error"}"#.to_vec()
    });
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The code and description this crate uses for a bare `status` (a router's 404 or 405,
/// a body limit's 413, a timeout's 408, a panic's 500).
pub fn describe(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("invalid_request", "The request is malformed."),
        401 => ("unauthorized", "Authentication is required."),
        403 => ("forbidden", "The request is not allowed."),
        404 => ("not_found", "No such resource."),
        405 => (
            "method_not_allowed",
            "The method is not allowed on this resource.",
        ),
        408 => ("request_timeout", "The request took too long."),
        413 => ("payload_too_large", "The request body is too large."),
        415 => (
            "unsupported_media_type",
            "The request body must be application/json.",
        ),
        429 => ("rate_limited", "Too many requests."),
        503 => (
            "temporarily_unavailable",
            "The service is temporarily unavailable.",
        ),
        _ if status.is_client_error() => ("invalid_request", "The request was refused."),
        _ => ("server_error", "The server could not answer the request."),
    }
}

/// The JSON error for a bare `status`, with [`describe`]'s code and description.
pub fn status_error(status: StatusCode) -> Response<Body> {
    let (error, description) = describe(status);
    json_error(status, error, description)
}
