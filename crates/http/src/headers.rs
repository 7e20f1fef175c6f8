//! Security headers on every response, the platform's defaults, overridable per route.
//!
//! Applied after the inner service answered, so they are on errors and on streamed
//! responses alike, and this layer's value wins over the inner service's (rmcp sets
//! `cache-control: no-cache` on event streams; the platform asks `no-store`). A response
//! without a `Content-Type` gets `text/plain; charset=utf-8`, so none is left for a
//! browser to sniff.
//!
//! Per route: put a [`SecurityHeaders`] with other values on that route (axum's
//! `route_layer`, or `.layer` on a nested router) as well as the app-wide one. The layer
//! nearest the handler sets its values and marks the response; an outer one leaves a
//! marked response alone.

use axum::body::Body;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The platform's default security headers.
pub const DEFAULT_HEADERS: [(&str, &str); 7] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; object-src 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("x-xss-protection", "1; mode=block"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("cache-control", "no-store"),
];

/// The headers the layer sets; [`SecurityHeaders::default`] is [`DEFAULT_HEADERS`].
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            headers: DEFAULT_HEADERS
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
        }
    }
}

impl SecurityHeaders {
    /// Sets `name` to `value` instead of the default (or in addition to them).
    #[must_use]
    pub fn set(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// Leaves `name` to the inner service (for a route that sets its own).
    #[must_use]
    pub fn remove(mut self, name: &HeaderName) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    /// The layer.
    pub fn layer(self) -> SecurityHeadersLayer {
        SecurityHeadersLayer {
            headers: Arc::new(self),
        }
    }

    /// Sets these headers on `response`, replacing the inner service's values, unless a
    /// layer nearer the handler already did (a per-route override).
    pub fn apply(&self, response: &mut Response<Body>) {
        if response.extensions().get::<Applied>().is_some() {
            return;
        }
        response.extensions_mut().insert(Applied);
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
    }
}

/// Marks a response whose security headers a layer has set.
#[derive(Debug, Clone, Copy)]
struct Applied;

/// The security-headers [`Layer`](tower::Layer).
#[derive(Debug, Clone)]
pub struct SecurityHeadersLayer {
    headers: Arc<SecurityHeaders>,
}

impl Default for SecurityHeadersLayer {
    fn default() -> Self {
        SecurityHeaders::default().layer()
    }
}

impl<S> tower::Layer<S> for SecurityHeadersLayer {
    type Service = SetSecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetSecurityHeaders {
            inner,
            headers: Arc::clone(&self.headers),
        }
    }
}

/// The security-headers [`Service`](tower::Service).
#[derive(Debug, Clone)]
pub struct SetSecurityHeaders<S> {
    inner: S,
    headers: Arc<SecurityHeaders>,
}

/// The response future of [`SetSecurityHeaders`].
pub type HeadersFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S, B> tower::Service<Request<B>> for SetSecurityHeaders<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = HeadersFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        let headers = Arc::clone(&self.headers);
        Box::pin(async move {
            let mut response = future.await?;
            headers.apply(&mut response);
            Ok(response)
        })
    }
}
