//! Every error response in one JSON shape, a panic included.
//!
//! The outermost layer but the headers: an error response (status 400 or above) whose
//! body is not already JSON (a router's 404 or 405, an extractor's plain-text rejection,
//! a body limit's 413) is replaced by [`status_error`]'s body for its status, with no
//! internals; a panic in the inner service becomes a 500 in that shape, logged once with
//! the request id, never the panic's message (it may hold request data).
//!
//! The layer also gives every request an id: a valid `X-Request-Id` is kept, any other
//! is replaced by a fresh one, so the inner layers, the events and the log agree.

use crate::context::X_REQUEST_ID;
use crate::error::status_error;
use axum::body::Body;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use mcpsec_core::RequestId;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// The JSON-errors settings (none yet beyond the default), and its layer.
#[derive(Debug, Clone, Default)]
pub struct JsonErrors {
    _private: (),
}

impl JsonErrors {
    /// The layer.
    pub fn layer(self) -> JsonErrorsLayer {
        JsonErrorsLayer {
            _settings: Arc::new(self),
        }
    }
}

/// The JSON-errors [`Layer`](tower::Layer).
#[derive(Debug, Clone)]
pub struct JsonErrorsLayer {
    _settings: Arc<JsonErrors>,
}

impl<S> tower::Layer<S> for JsonErrorsLayer {
    type Service = JsonErrorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonErrorsService { inner }
    }
}

/// The JSON-errors [`Service`](tower::Service).
#[derive(Debug, Clone)]
pub struct JsonErrorsService<S> {
    inner: S,
}

/// The response future of [`JsonErrorsService`].
pub type JsonErrorsFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S, B> tower::Service<Request<B>> for JsonErrorsService<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = JsonErrorsFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| RequestId::new(v).ok())
            .or_else(next_request_id);
        match id
            .as_ref()
            .and_then(|id| HeaderValue::from_str(id.as_str()).ok())
        {
            Some(value) => {
                request.headers_mut().insert(X_REQUEST_ID, value);
            }
            None => {
                request.headers_mut().remove(X_REQUEST_ID);
            }
        }
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request)));
        Box::pin(async move {
            let outcome = match called {
                Ok(future) => CatchUnwind(Box::pin(future)).await,
                Err(_) => None,
            };
            let mut response = match outcome {
                Some(result) => result?,
                None => {
                    tracing::error!(
                        target: "mcpsec::http",
                        request_id = id.as_ref().map_or("-", |i| i.as_str()),
                        "request handler panicked; answered 500"
                    );
                    status_error(StatusCode::INTERNAL_SERVER_ERROR)
                }
            };
            if response.status().as_u16() >= 400 && !crate::limits::is_json(response.headers()) {
                let status = response.status();
                let headers = std::mem::take(response.headers_mut());
                response = status_error(status);
                for (name, value) in &headers {
                    if name != CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
                        response.headers_mut().append(name.clone(), value.clone());
                    }
                }
            }
            if let Some(value) = id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
                response.headers_mut().insert(X_REQUEST_ID, value);
            }
            Ok(response)
        })
    }
}

/// A fresh request id: a per-process random prefix (from the OS CSPRNG, once) and a
/// counter. Request ids correlate records; they are not secrets (a client may send its
/// own), so one system call per request would buy nothing.
pub(crate) fn next_request_id() -> Option<RequestId> {
    static PREFIX: OnceLock<Option<String>> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX
        .get_or_init(|| {
            let random = RequestId::generate().ok()?;
            // `r` first, so the prefix never starts like a credential (`eyJ`).
            Some(format!("r{}", random.as_str().get(..11)?))
        })
        .as_ref()?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RequestId::new(format!("{prefix}-{n:x}")).ok()
}

/// A future whose panic becomes `None` (each poll under `catch_unwind`).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Some(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}
