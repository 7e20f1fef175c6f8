//! `Origin` validation for the MCP endpoint (the streamable HTTP transport requires it,
//! against DNS rebinding): a request whose `Origin` is present and not on the allow-list
//! is a 403. A request without `Origin` (a non-browser client) passes.

use crate::error::json_error;
use axum::body::Body;
use http::header::ORIGIN;
use http::{Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Longest `Origin` header compared; a longer one is refused.
pub const MAX_ORIGIN_LEN: usize = 1024;

/// The origins allowed to call the endpoint, compared exactly and without case
/// (`scheme://host[:port]`, as browsers send them).
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// No origin allowed: only requests without `Origin` pass.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `origin` (for example `http://localhost:8080`).
    #[must_use]
    pub fn allow(mut self, origin: &str) -> Self {
        self.origins
            .push(origin.trim_end_matches('/').to_ascii_lowercase());
        self
    }

    /// Whether a request with these `Origin` header values may pass: none, or exactly one
    /// that is on the list.
    pub fn permits<'a>(&self, mut values: impl Iterator<Item = &'a http::HeaderValue>) -> bool {
        let Some(value) = values.next() else {
            return true;
        };
        if values.next().is_some() || value.len() > MAX_ORIGIN_LEN {
            return false;
        }
        let Ok(text) = value.to_str() else {
            return false;
        };
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(text))
    }

    /// The layer.
    pub fn layer(self) -> OriginLayer {
        OriginLayer {
            allowed: Arc::new(self),
        }
    }
}

/// The `Origin` check [`Layer`](tower::Layer).
#[derive(Debug, Clone)]
pub struct OriginLayer {
    allowed: Arc<AllowedOrigins>,
}

impl<S> tower::Layer<S> for OriginLayer {
    type Service = CheckOrigin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckOrigin {
            inner,
            allowed: Arc::clone(&self.allowed),
        }
    }
}

/// The `Origin` check [`Service`](tower::Service).
#[derive(Debug, Clone)]
pub struct CheckOrigin<S> {
    inner: S,
    allowed: Arc<AllowedOrigins>,
}

/// The response future of [`CheckOrigin`].
pub type OriginFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S, B> tower::Service<Request<B>> for CheckOrigin<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = OriginFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self
            .allowed
            .permits(request.headers().get_all(ORIGIN).iter())
        {
            return Box::pin(async {
                Ok(json_error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Requests from this origin are not allowed.",
                ))
            });
        }
        let future = self.inner.call(request);
        Box::pin(future)
    }
}
