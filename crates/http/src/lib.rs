//! tower layers and axum extractors that put an MCP server behind the workspace's
//! authentication and authorization, answering as the MCP authorization specification
//! asks.
//!
//! # A tour
//!
//! - [`AuthConfig`] / [`AuthLayer`] ([`auth`]): reads `Authorization: Bearer …` or
//!   `X-API-Key` ([`credential`]), verifies it with the tokens or API-key crate, and hands
//!   the inner service the [`Principal`](mcpsec_access::Principal) under a type only this
//!   crate constructs, with the credential removed (MCP forbids passing tokens through).
//!   Refusals are 400/401/429/503 with a `WWW-Authenticate` challenge naming the
//!   resource's metadata ([`challenge`]).
//! - [`Caller`] and [`Authorize<P>`] ([`extract`]): the verified principal, and the
//!   decision for an action with step-up: 403 `insufficient_scope` or the RFC 9470
//!   `insufficient_user_authentication` challenge.
//! - [`ProtectedResourceMetadata`] ([`metadata`]): RFC 9728's document at its two paths.
//! - [`AllowedOrigins`] ([`origin`]): the transport's `Origin` check, 403 when not allowed.
//! - [`RateLimits`] ([`ratelimit`]): budgets per principal, credential and source on any
//!   `RateLimiter` (in process or Redis); 429 with `Retry-After` and `RateLimit` fields.
//! - [`RequestLimits`] and [`StrictJson`] ([`limits`]): body cap (413), JSON content type
//!   (415), a deadline (408), JSON nesting and duplicate-key checks (400).
//! - [`SecurityHeaders`] ([`headers`]): the platform's seven headers on every response.
//! - [`JsonErrors`] ([`errors`]): every error response in one JSON shape
//!   ([`ErrorBody`]), a panic included.
//! - [`SessionEndpoints`] ([`session`]): the browser's refresh and logout on the
//!   `__Host-` refresh cookie, same-origin and CSRF required.
//! - [`RequestScopedSink`] ([`context`]): events recorded while serving a request carry
//!   its id and the client's address ([`SourceRule`] for proxies).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use mcpsec_access::perm;
//! use mcpsec_http::{
//!     AllowedOrigins, AuthConfig, Authorize, Caller, JsonErrors, ProtectedResourceMetadata,
//!     SecurityHeaders,
//! };
//!
//! let metadata = ProtectedResourceMetadata::new("https://mcp.example/mcp", "https://auth.example")
//!     .scopes(&["mcp:read", "mcp:write"]);
//! let auth = AuthConfig::new(metadata.url()).scope("mcp:read");
//! // .tokens(verifier) and/or .api_keys(keys) add what the layer accepts.
//!
//! let mcp = Router::new()
//!     .route("/mcp/whoami", get(|Caller(p): Caller| async move { p.subject().to_string() }))
//!     .route(
//!         "/mcp/configure",
//!         get(|_proof: Authorize<perm::McpConfigure>| async { "configured" }),
//!     )
//!     .layer(auth.layer())
//!     .layer(AllowedOrigins::none().allow("http://localhost:8080").layer());
//! let app: Router = Router::new()
//!     .merge(mcp)
//!     .merge(metadata.router())
//!     .layer(JsonErrors::default().layer())
//!     .layer(SecurityHeaders::default().layer());
//! # let _ = app;
//! ```
#![forbid(unsafe_code)]
// A refusal is a finished HTTP response, built once on the failing path and returned as
// is; boxing it would add an allocation for nothing.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod challenge;
pub mod context;
pub mod credential;
pub mod error;
pub mod errors;
pub mod extract;
pub mod headers;
pub mod limits;
pub mod metadata;
pub mod origin;
pub mod ratelimit;
pub mod session;

pub use auth::{AuthConfig, AuthLayer, Verified};
pub use challenge::Challenge;
pub use context::{RequestContext, RequestScopedSink, SourceRule};
pub use credential::{CredentialError, Presented};
pub use error::{ErrorBody, json_error};
pub use errors::JsonErrors;
pub use extract::{Authorize, Caller};
pub use headers::{SecurityHeaders, SecurityHeadersLayer};
pub use limits::{RequestLimits, RequestLimitsLayer, StrictJson};
pub use metadata::ProtectedResourceMetadata;
pub use origin::{AllowedOrigins, OriginLayer};
pub use ratelimit::{RateLimitLayer, RateLimits};
pub use session::SessionEndpoints;
