//! Rate limits per principal, per credential and per source, on any
//! [`RateLimiter`]: the in-process GCRA limiter for one
//! instance, the Redis one (`mcpsec-store-redis`) for a fleet, behind the same trait.
//!
//! Every configured budget the request has a key for is spent: the source always (the
//! client's address, by the authentication layer's [`SourceRule`](crate::SourceRule), or
//! the peer), the principal and the credential when the request is behind the
//! authentication layer. Put one layer inside the authentication layer for all three, and
//! optionally one outside it with only a source budget, so unauthenticated floods are
//! limited before any verification work.
//!
//! Over budget: 429 with `Retry-After` (whole seconds, rounded up) and the IETF
//! `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers: `q` the
//! quota, `w` its window in seconds, `r` what is left, `t` seconds until it is back). On
//! success the fields describe the tightest budget. A limiter that cannot answer refuses
//! the request with a retryable 503: an unknown count is not "under the limit".

use crate::auth::{Verified, too_many};
use crate::context::{self, RequestContext};
use crate::error::json_error;
use axum::body::Body;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use mcpsec_access::CredentialId;
use mcpsec_core::{
    EventKind, EventSink, Outcome, RateDecision, RateKey, RateLimiter, ReasonCode, SecurityEvent,
    SharedClock,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The `RateLimit-Policy` field.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` field.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Which budgets the layer spends.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    principal: Option<Arc<dyn RateLimiter>>,
    credential: Option<Arc<dyn RateLimiter>>,
    source: Option<Arc<dyn RateLimiter>>,
    sink: Option<Arc<dyn EventSink>>,
    clock: Option<SharedClock>,
}

impl RateLimits {
    /// No budget yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A budget per principal (the subject), shared by all their credentials.
    #[must_use]
    pub fn per_principal(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.principal = Some(limiter);
        self
    }

    /// A budget per credential (an API key's id, a token's `jti`).
    #[must_use]
    pub fn per_credential(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.credential = Some(limiter);
        self
    }

    /// A budget per client address.
    #[must_use]
    pub fn per_source(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.source = Some(limiter);
        self
    }

    /// Where `excess_rate_limit_exceeded` events go, stamped at `clock`'s time.
    #[must_use]
    pub fn events(mut self, sink: Arc<dyn EventSink>, clock: SharedClock) -> Self {
        self.sink = Some(sink);
        self.clock = Some(clock);
        self
    }

    /// The layer.
    pub fn layer(self) -> RateLimitLayer {
        RateLimitLayer {
            limits: Arc::new(self),
        }
    }

    /// Spends the request's budgets: `Ok` with the fields to set, or the refusal.
    async fn check(&self, request: &http::Extensions) -> Result<Fields, Response<Body>> {
        let verified = request.get::<Verified>();
        let source = request
            .get::<RequestContext>()
            .and_then(|c| c.source)
            .or_else(|| context::peer(request));
        let mut checks: Vec<(&'static str, &Arc<dyn RateLimiter>, RateKey)> = Vec::new();
        if let (Some(limiter), Some(ip)) = (&self.source, source) {
            checks.push(("source", limiter, RateKey::source(ip)));
        }
        if let Some(verified) = verified {
            let principal = verified.principal();
            if let Some(limiter) = &self.principal {
                // A subject id is at most the id type's length, which fits a rate key; one
                // that did not would be refused, not let through.
                let key =
                    RateKey::principal(principal.subject().as_str()).map_err(|_| unavailable())?;
                checks.push(("principal", limiter, key));
            }
            if let Some(limiter) = &self.credential {
                match principal.credential_id() {
                    Some(CredentialId::Key(id)) => {
                        checks.push(("credential", limiter, RateKey::api_key(id)));
                    }
                    Some(CredentialId::Token(id)) => {
                        checks.push(("credential", limiter, RateKey::token(id)));
                    }
                    _ => {}
                }
            }
        }
        let mut tightest: Option<Fields> = None;
        for (name, limiter, key) in checks {
            let quota = limiter.quota();
            let window = quota.period().saturating_mul(quota.burst());
            match limiter.check(&key).await {
                Ok(RateDecision::Allowed(info)) => {
                    let refill = info
                        .period
                        .saturating_mul(info.limit.saturating_sub(info.remaining));
                    let fields = Fields {
                        name,
                        quota: info.limit,
                        window,
                        remaining: info.remaining,
                        reset: refill,
                    };
                    if tightest
                        .as_ref()
                        .is_none_or(|t| fields.remaining < t.remaining)
                    {
                        tightest = Some(fields);
                    }
                }
                Ok(RateDecision::Limited { retry_after }) => {
                    self.report(verified, source, request).await;
                    let mut response = too_many(retry_after);
                    Fields {
                        name,
                        quota: quota.burst(),
                        window,
                        remaining: 0,
                        reset: retry_after,
                    }
                    .apply(&mut response);
                    return Err(response);
                }
                Err(_) => return Err(unavailable()),
            }
        }
        Ok(tightest.unwrap_or_default())
    }

    async fn report(
        &self,
        verified: Option<&Verified>,
        source: Option<std::net::IpAddr>,
        request: &http::Extensions,
    ) {
        let (Some(sink), Some(clock)) = (&self.sink, &self.clock) else {
            return;
        };
        let mut event = SecurityEvent::new(
            EventKind::ExcessRateLimitExceeded,
            Outcome::Failure,
            clock.now(),
        )
        .with_reason(ReasonCode::RateLimited);
        if let Some(verified) = verified {
            event = event
                .with_actor(verified.principal().actor())
                .with_org(verified.principal().org().clone());
        }
        event.source = source;
        if let Some(ctx) = request.get::<RequestContext>() {
            event = ctx.fill(event);
        }
        mcpsec_core::emit(sink.as_ref(), event).await;
    }
}

/// The `RateLimit-Policy` / `RateLimit` values for one budget.
#[derive(Debug, Clone, Default)]
struct Fields {
    name: &'static str,
    quota: u32,
    window: Duration,
    remaining: u32,
    reset: Duration,
}

impl Fields {
    fn apply(&self, response: &mut Response<Body>) {
        if self.name.is_empty() {
            return;
        }
        let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let policy = format!(
            "\"{}\";q={};w={}",
            self.name,
            self.quota,
            secs(self.window).max(1)
        );
        let current = format!(
            "\"{}\";r={};t={}",
            self.name,
            self.remaining,
            secs(self.reset)
        );
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&policy) {
            headers.insert(RATELIMIT_POLICY, v);
        }
        if let Ok(v) = HeaderValue::from_str(&current) {
            headers.insert(RATELIMIT, v);
        }
    }
}

fn unavailable() -> Response<Body> {
    let mut response = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "The rate limit could not be checked now; retry later.",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The rate-limit [`Layer`](tower::Layer).
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limits: Arc<RateLimits>,
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limits: Arc::clone(&self.limits),
        }
    }
}

/// The rate-limit [`Service`](tower::Service).
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limits: Arc<RateLimits>,
}

/// The response future of [`RateLimit`].
pub type RateLimitFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S> tower::Service<Request<Body>> for RateLimit<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limits = Arc::clone(&self.limits);
        Box::pin(async move {
            let checked = limits.check(request.extensions()).await;
            match checked {
                Ok(fields) => {
                    let mut response = inner.call(request).await?;
                    fields.apply(&mut response);
                    Ok(response)
                }
                Err(refusal) => Ok(refusal),
            }
        })
    }
}
