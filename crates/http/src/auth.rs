//! The authentication layer: reads the request's credential, verifies it with the
//! workspace's verifiers, and hands the inner service a request that carries the
//! [`Principal`] (under a type only this crate constructs) and no credential.
//!
//! | the request | the answer |
//! |---|---|
//! | no credential, or another scheme (`Basic`) | 401, `WWW-Authenticate: Bearer resource_metadata="…", scope="…"` |
//! | two credentials, a duplicate header, a credential in the query, a malformed or oversized header | 400 `invalid_request`, with the challenge (`error="invalid_request"`) |
//! | a token or key that does not verify | 401 with `error="invalid_token"` |
//! | a valid credential whose subject is not a member of its organization | 403 `forbidden` |
//! | a key over its quota, a throttled source, a busy hash pool | 429 with `Retry-After` |
//! | a store that cannot answer (memberships, sessions, keys) | 503: unknown is refused, never guessed |
//! | a valid credential | the inner service, with `Authorization` and `X-API-Key` removed |
//!
//! Access tokens are checked by the [`TokenVerifier`] the host built: build it with this
//! resource as its audience (RFC 8707; the MCP specification forbids accepting tokens
//! issued for another resource) and with the memberships store, so that the role comes
//! from the membership when the token does not carry one (`TokenVerifier::principal`).
//! API keys are checked by [`ApiKeys`], with the client's address as the throttling
//! source. They are this service's own credentials (issued and stored by it, for it), the
//! one kind of bearer credential accepted besides access tokens from the authorization
//! server the metadata names; leave `api_keys` unset to accept tokens only.

use crate::challenge::Challenge;
use crate::context::{self, RequestContext, SourceRule, X_REQUEST_ID};
use crate::credential::{self, CredentialError, Presented, X_API_KEY};
use crate::error::json_error;
use axum::body::Body;
use http::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use mcpsec_access::{Authorizer, Principal};
use mcpsec_apikeys::{ApiKeys, Source};
use mcpsec_core::{
    EventKind, EventSink, Outcome, ReasonCode, SecurityEvent, SharedClock, SystemClock,
};
use mcpsec_tokens::TokenVerifier;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A verified caller, as the authentication layer put it into the request's extensions.
/// Constructed only in this crate: a layer outside it cannot insert a principal the inner
/// service would believe (read it with the [`Caller`](crate::Caller) extractor).
#[derive(Clone)]
pub struct Verified {
    pub(crate) principal: Arc<Principal>,
    pub(crate) authz: Arc<AuthzSettings>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("principal", &self.principal)
            .finish()
    }
}

impl Verified {
    /// The verified principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

/// What the extractors need to decide and to answer: the authorizer (with its step-up
/// policy), the clock, the challenge's metadata URL, and the event sink.
pub(crate) struct AuthzSettings {
    pub(crate) authorizer: Authorizer,
    pub(crate) clock: SharedClock,
    pub(crate) resource_metadata: String,
    pub(crate) sink: Option<Arc<dyn EventSink>>,
}

/// How the authentication layer is configured. Start from [`AuthConfig::new`] with the
/// absolute URL of this resource's metadata document.
pub struct AuthConfig {
    tokens: Option<Arc<TokenVerifier>>,
    api_keys: Option<Arc<ApiKeys>>,
    scope: String,
    source: SourceRule,
    settings: AuthzSettings,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &self.tokens.is_some())
            .field("api_keys", &self.api_keys.is_some())
            .field("scope", &self.scope)
            .field("source", &self.source)
            .field("resource_metadata", &self.settings.resource_metadata)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// A configuration that accepts nothing yet: add [`tokens`](Self::tokens) and/or
    /// [`api_keys`](Self::api_keys). `resource_metadata` is the absolute URL of this
    /// resource's Protected Resource Metadata (RFC 9728), named in every challenge.
    pub fn new(resource_metadata: impl Into<String>) -> Self {
        Self {
            tokens: None,
            api_keys: None,
            scope: String::new(),
            source: SourceRule::Peer,
            settings: AuthzSettings {
                authorizer: Authorizer::default(),
                clock: Arc::new(SystemClock),
                resource_metadata: resource_metadata.into(),
                sink: None,
            },
        }
    }

    /// Accepts access tokens verified by `verifier` (built with this resource as its
    /// audience, and with the memberships store).
    #[must_use]
    pub fn tokens(mut self, verifier: Arc<TokenVerifier>) -> Self {
        self.tokens = Some(verifier);
        self
    }

    /// Accepts API keys verified by `keys`.
    #[must_use]
    pub fn api_keys(mut self, keys: Arc<ApiKeys>) -> Self {
        self.api_keys = Some(keys);
        self
    }

    /// The scopes this resource needs, space-separated, named in the 401 challenge's
    /// `scope` (the MCP client requests them). `offline_access` is left out, as the MCP
    /// specification asks.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        let scope: String = scope.into();
        self.scope = scope
            .split_ascii_whitespace()
            .filter(|s| *s != "offline_access")
            .collect::<Vec<_>>()
            .join(" ");
        self
    }

    /// Which address is the client's (default: the connection's peer).
    #[must_use]
    pub fn source(mut self, rule: SourceRule) -> Self {
        self.source = rule;
        self
    }

    /// The authorizer the [`Authorize`](crate::Authorize) extractor decides with (default:
    /// [`Authorizer::default`], the platform's step-up policy).
    #[must_use]
    pub fn authorizer(mut self, authorizer: Authorizer) -> Self {
        self.settings.authorizer = authorizer;
        self
    }

    /// The clock decisions are made at (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.settings.clock = clock;
        self
    }

    /// Where this layer's own events go: refused credential headers
    /// (`input_validation_fail`) and the extractors' denials (`authz_fail`). The
    /// verifiers report to their own sinks; wrap the host's sink in
    /// [`RequestScopedSink`](crate::RequestScopedSink) for both.
    #[must_use]
    pub fn events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.settings.sink = Some(sink);
        self
    }

    /// The layer.
    pub fn layer(self) -> AuthLayer {
        AuthLayer {
            config: Arc::new(Built {
                tokens: self.tokens,
                api_keys: self.api_keys,
                scope: self.scope,
                source: self.source,
                settings: Arc::new(self.settings),
            }),
        }
    }
}

/// An [`AuthConfig`] as the layer holds it: the settings shared with every request.
struct Built {
    tokens: Option<Arc<TokenVerifier>>,
    api_keys: Option<Arc<ApiKeys>>,
    scope: String,
    source: SourceRule,
    settings: Arc<AuthzSettings>,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("tokens", &self.tokens.is_some())
            .field("api_keys", &self.api_keys.is_some())
            .field("scope", &self.scope)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The authentication [`Layer`](tower::Layer); see the [module](self).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    config: Arc<Built>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The authentication [`Service`](tower::Service); see the [module](self).
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    config: Arc<Built>,
}

/// The response future of [`Auth`] (boxed: verification awaits the stores).
pub type AuthFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S> tower::Service<Request<Body>> for Auth<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = AuthFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The service that was polled ready serves this request; a fresh clone waits for
        // the next (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let source = config
                .source
                .source(context::peer(request.extensions()), request.headers());
            let Some(ctx) = RequestContext::for_request(request.headers(), source) else {
                return Ok(crate::error::status_error(StatusCode::SERVICE_UNAVAILABLE));
            };
            let request_id = HeaderValue::from_str(ctx.request_id.as_str()).ok();
            let outcome = {
                let (headers, query) = (request.headers(), request.uri().query());
                ctx.clone()
                    .scope(authenticate(&config, headers, query, &ctx))
                    .await
            };
            let mut response = match outcome {
                Ok(principal) => {
                    let headers = request.headers_mut();
                    headers.remove(AUTHORIZATION);
                    headers.remove(X_API_KEY);
                    request.extensions_mut().insert(Verified {
                        principal: Arc::new(principal),
                        authz: Arc::clone(&config.settings),
                    });
                    request.extensions_mut().insert(ctx.clone());
                    ctx.scope(inner.call(request)).await?
                }
                Err(refusal) => refusal,
            };
            if let Some(id) = request_id {
                response.headers_mut().insert(X_REQUEST_ID, id);
            }
            Ok(response)
        })
    }
}

/// The principal for the request's credential, or the response that refuses it.
async fn authenticate(
    config: &Built,
    headers: &http::HeaderMap,
    query: Option<&str>,
    ctx: &RequestContext,
) -> Result<Principal, Response<Body>> {
    let presented = match credential::read(headers, query) {
        Ok(presented) => presented,
        // Another scheme (`Basic`): answered like no credential, so the client learns
        // where to get one (RFC 6750 §3.1).
        Err(CredentialError::UnsupportedScheme) => return Err(unauthorized(config, None)),
        Err(error) => {
            report_bad_input(config, error, ctx).await;
            let mut response = json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                bad_input_description(error),
            );
            // The challenge too, so a client still learns where the metadata is.
            let challenge = Challenge::new(&config.settings.resource_metadata)
                .error("invalid_request")
                .scope(&config.scope);
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, challenge.to_header());
            return Err(response);
        }
    };
    match presented {
        None => Err(unauthorized(config, None)),
        Some(Presented::AccessToken(token)) => {
            let Some(verifier) = &config.tokens else {
                return Err(unauthorized(config, Some("invalid_token")));
            };
            let claims = verifier
                .verify(token)
                .await
                .map_err(|e| token_refusal(config, &e))?;
            verifier
                .principal(&claims)
                .await
                .map_err(|e| token_refusal(config, &e))
        }
        Some(Presented::ApiKey(key)) => {
            let Some(keys) = &config.api_keys else {
                return Err(unauthorized(config, Some("invalid_token")));
            };
            let source = match ctx.source {
                Some(ip) => Source::Ip(ip),
                // No address (a test harness, a Unix socket): one shared source, so the
                // failure budget still binds.
                None => Source::Ip(std::net::IpAddr::from([0, 0, 0, 0])),
            };
            match keys.verify(key, &source).await {
                Ok(verified) => Ok(verified.principal()),
                Err(e) => Err(api_key_refusal(config, &e)),
            }
        }
    }
}

/// 401 with the challenge: `error` when a credential was sent, `scope` always.
fn unauthorized(config: &Built, error: Option<&str>) -> Response<Body> {
    let mut challenge = Challenge::new(&config.settings.resource_metadata);
    if let Some(code) = error {
        challenge = challenge.error(code);
    }
    let challenge = challenge.scope(&config.scope);
    let (code, description) = match error {
        Some(code) => (code, "The credential is not valid."),
        None => ("unauthorized", "Authentication is required."),
    };
    let mut response = json_error(StatusCode::UNAUTHORIZED, code, description);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, challenge.to_header());
    response
}

fn token_refusal(config: &Built, error: &mcpsec_tokens::Error) -> Response<Body> {
    use mcpsec_tokens::Error as E;
    match error {
        // Unknown is refused, never guessed; the client may retry.
        E::Store(_) | E::SessionCheckUnavailable(_) => unavailable(),
        // A valid token whose subject is not a member: no permission here, and a new
        // token would not change that (403, not a 401 inviting re-authorization).
        E::NotAMember => not_a_member(),
        _ => unauthorized(config, Some("invalid_token")),
    }
}

fn api_key_refusal(config: &Built, error: &mcpsec_apikeys::Error) -> Response<Body> {
    use mcpsec_apikeys::Error as E;
    match error {
        E::Throttled { retry_after } | E::RateLimited { retry_after } | E::Busy { retry_after } => {
            too_many(*retry_after)
        }
        E::Store(_) | E::HashWorker => unavailable(),
        E::NotAMember => not_a_member(),
        _ => unauthorized(config, Some("invalid_token")),
    }
}

fn not_a_member() -> Response<Body> {
    json_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "The caller is not a member of the credential's organization.",
    )
}

/// 503, retryable: a store the decision needs did not answer.
fn unavailable() -> Response<Body> {
    let mut response = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "The credential could not be checked now; retry later.",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 429 with `Retry-After` in whole seconds, rounded up.
pub(crate) fn too_many(retry_after: Duration) -> Response<Body> {
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests.",
    );
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

fn bad_input_description(error: CredentialError) -> &'static str {
    match error {
        CredentialError::DuplicateHeader => "More than one credential header.",
        CredentialError::TwoCredentials => "More than one credential.",
        CredentialError::InQuery => "Credentials are not accepted in the query string.",
        CredentialError::TooLarge => "The credential header is too large.",
        _ => "The credential header is malformed.",
    }
}

async fn report_bad_input(config: &Built, error: CredentialError, ctx: &RequestContext) {
    let Some(sink) = &config.settings.sink else {
        return;
    };
    let reason = match error {
        CredentialError::TooLarge => ReasonCode::TooLarge,
        _ => ReasonCode::Malformed,
    };
    let event = SecurityEvent::new(
        EventKind::InputValidationFail,
        Outcome::Failure,
        config.settings.clock.now(),
    )
    .with_reason(reason);
    mcpsec_core::emit(sink.as_ref(), ctx.fill(event)).await;
}
