//! The layers against a real server on an ephemeral port, with a real HTTP client.
//!
//! One app: `/mcp/*` behind the Origin check and the authentication layer, the metadata
//! documents outside it, JSON errors and security headers around everything. The inner
//! handlers answer 500 if they ever see a credential header, so every 200 here also
//! proves the credential was not passed downstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use axum::Router;
use axum::routing::{get, post};
use http::HeaderMap;
use mcpsec_access::{AuthMethod, AuthMethods, MemoryMemberships, Principal, Role, ScopeSet, perm};
use mcpsec_apikeys::{ApiKeys, Env, HashMode, KeyHasher, MemoryApiKeyStore, NewKey, Pepper};
use mcpsec_core::{
    Clock, KeyId, ManualClock, MemoryRateLimiter, MemorySink, OrgId, RateQuota, UserId,
};
use mcpsec_http::{
    AllowedOrigins, AuthConfig, Authorize, Caller, ErrorBody, JsonErrors,
    ProtectedResourceMetadata, RateLimits, RequestLimits, RequestScopedSink, SecurityHeaders,
    StrictJson,
};
use mcpsec_tokens::{
    AccessGrant, Algorithm, KeySource, SigningKey, SigningKeyring, TokenIssuer, TokenVerifier,
};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const ISSUER: &str = "https://auth.example";

struct Harness {
    base: String,
    issuer: TokenIssuer,
    other_audience: TokenIssuer,
    api_key: String,
    events: MemorySink,
    clock: ManualClock,
    client: reqwest::Client,
}

/// 500 when a credential reached the handler.
fn no_credential(headers: &HeaderMap) -> Result<(), http::StatusCode> {
    if headers.contains_key("authorization") || headers.contains_key("x-api-key") {
        return Err(http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(())
}

async fn start() -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let resource = format!("{base}/mcp");
    let clock = ManualClock::at_unix(1_767_225_600);
    let events = MemorySink::new();
    let sink = RequestScopedSink::new(events.clone());

    let members = Arc::new(MemoryMemberships::new());
    let acme = OrgId::new("acme").unwrap();
    members.set(UserId::new("alice").unwrap(), acme.clone(), Role::OrgAdmin);
    members.set(UserId::new("bob").unwrap(), acme.clone(), Role::Developer);

    let ring = SigningKeyring::new(
        SigningKey::generate(KeyId::new("k1").unwrap(), Algorithm::RS256).unwrap(),
    );
    let jwks = ring.jwks();
    let ring = Arc::new(RwLock::new(ring));
    let issuer = TokenIssuer::builder(ring.clone())
        .issuer(ISSUER)
        .audience(resource.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let other_audience = TokenIssuer::builder(ring)
        .issuer(ISSUER)
        .audience("https://elsewhere.example/mcp")
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let verifier = TokenVerifier::builder(KeySource::Static(jwks), sink.clone())
        .issuer(ISSUER)
        .audience(resource.clone())
        .clock(Arc::new(clock.clone()))
        .memberships(members.clone())
        .build()
        .unwrap();

    let hasher =
        KeyHasher::new(Pepper::generate(1).unwrap(), vec![], HashMode::HmacSha256).unwrap();
    let keys = ApiKeys::builder(
        Arc::new(MemoryApiKeyStore::new()),
        members,
        hasher,
        Arc::new(sink.clone()),
    )
    .clock(Arc::new(clock.clone()))
    .build()
    .unwrap();
    let bob = mcpsec_access::danger::principal(
        UserId::new("bob").unwrap(),
        acme.clone(),
        Role::Developer,
        ScopeSet::parse_strict("user:token mcp:read").unwrap(),
        mcpsec_access::CredentialKind::AccessToken,
        mcpsec_access::Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    let proof = mcpsec_access::authorize_as::<perm::UserManageTokens>(
        &bob,
        &mcpsec_access::Resource::own(&bob),
    )
    .unwrap();
    let (api_key, _) = keys
        .create(
            &proof,
            NewKey {
                owner: UserId::new("bob").unwrap(),
                org: acme,
                scopes: "mcp:read".into(),
                env: Env::Live,
                name: "ci".into(),
                expires_at: None,
            },
        )
        .await
        .unwrap();

    let metadata = ProtectedResourceMetadata::new(resource.clone(), ISSUER).scopes(&[
        "mcp:read",
        "mcp:write",
        "org:admin",
    ]);
    let auth = AuthConfig::new(metadata.url())
        .scope("mcp:read")
        .tokens(Arc::new(verifier))
        .api_keys(Arc::new(keys))
        .clock(Arc::new(clock.clone()))
        .events(Arc::new(sink));

    let mcp = Router::new()
        .route(
            "/mcp/whoami",
            get(|Caller(p): Caller, headers: HeaderMap| async move {
                no_credential(&headers)?;
                Ok::<_, http::StatusCode>(format!("{} {}", p.subject(), p.role()))
            }),
        )
        .route(
            "/mcp/configure",
            post(
                |_: Authorize<perm::McpConfigure>, headers: HeaderMap| async move {
                    no_credential(&headers)?;
                    Ok::<_, http::StatusCode>("configured")
                },
            ),
        )
        .route(
            "/mcp/members",
            post(|_: Authorize<perm::OrgManageMembers>| async { "managed" }),
        )
        .route(
            "/mcp/panic",
            get(|_: Caller| async {
                if true {
                    panic!("a handler bug with request data");
                }
                "unreachable"
            }),
        )
        .route(
            "/mcp/echo",
            post(|StrictJson(body): StrictJson<serde_json::Value>| async move { axum::Json(body) }),
        )
        .route(
            "/mcp/stream",
            get(|_: Caller| async {
                (
                    [
                        ("content-type", "text/event-stream"),
                        ("cache-control", "no-cache"),
                    ],
                    "data: {}\n\n",
                )
            }),
        )
        .merge(
            // A route with its own headers: a framable widget, cacheable for a minute.
            Router::new()
                .route("/mcp/widget", get(|_: Caller| async { "widget" }))
                .layer(
                    SecurityHeaders::default()
                        .set(
                            http::header::X_FRAME_OPTIONS,
                            http::HeaderValue::from_static("SAMEORIGIN"),
                        )
                        .set(
                            http::header::CACHE_CONTROL,
                            http::HeaderValue::from_static("private, max-age=60"),
                        )
                        .layer(),
                ),
        )
        .merge(
            Router::new()
                .route("/mcp/limited", get(|_: Caller| async { "ok" }))
                .layer(
                    RateLimits::new()
                        .per_principal(Arc::new(MemoryRateLimiter::new(
                            RateQuota::new(3, Duration::from_secs(10)).unwrap(),
                            Arc::new(clock.clone()),
                        )))
                        .events(Arc::new(events.clone()), Arc::new(clock.clone()))
                        .layer(),
                ),
        )
        .layer(RequestLimits::default().max_body(1024).layer())
        .layer(auth.layer())
        .layer(AllowedOrigins::none().allow(&base).layer());
    // A route outside the layer whose outer middleware tries to forge a caller.
    let forged = Router::new()
        .route(
            "/open/whoami",
            get(|Caller(p): Caller| async move { p.subject().to_string() }),
        )
        .layer(axum::middleware::from_fn(
            |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
                let forged: Principal = mcpsec_access::danger::principal(
                    UserId::new("mallory").unwrap(),
                    OrgId::new("acme").unwrap(),
                    Role::OrgAdmin,
                    ScopeSet::parse_strict("org:admin").unwrap(),
                    mcpsec_access::CredentialKind::AccessToken,
                    mcpsec_access::Authentication {
                        at: None,
                        methods: AuthMethods::EMPTY,
                    },
                );
                request.extensions_mut().insert(forged);
                next.run(request).await
            },
        ));
    let app = Router::new()
        .merge(mcp)
        .merge(forged)
        .merge(metadata.router())
        .layer(JsonErrors::default().layer())
        .layer(SecurityHeaders::default().layer());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Harness {
        base,
        issuer,
        other_audience,
        api_key: api_key.expose_secret().to_owned(),
        events,
        clock,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

impl Harness {
    fn token(&self, sub: &str, scopes: &str, amr: &[AuthMethod]) -> String {
        let mut grant = AccessGrant::new(
            UserId::new(sub).unwrap(),
            ScopeSet::parse_strict(scopes).unwrap(),
        );
        grant.org = Some(OrgId::new("acme").unwrap());
        grant.auth_time = Some(self.clock.now() - Duration::from_secs(3600));
        grant.amr = AuthMethods::of(amr);
        self.issuer.issue(&grant).unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

const SECURITY_HEADERS: [(&str, &str); 7] = mcpsec_http::headers::DEFAULT_HEADERS;

fn assert_security_headers(response: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            response.headers().get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name} on {} {}",
            response.status(),
            response.url()
        );
    }
    assert!(response.headers().contains_key("content-type"));
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn error_of(response: reqwest::Response) -> ErrorBody {
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{}",
        response.url()
    );
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_credential_is_a_401_naming_the_metadata_and_scope() {
    let h = start().await;
    let response = h.client.get(h.url("/mcp/whoami")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_security_headers(&response);
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", h.base);
    assert_eq!(
        challenge(&response),
        format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"mcp:read\"")
    );
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(error_of(response).await.error, "unauthorized");

    // Another scheme is answered like no credential, with the challenge.
    let response = h
        .client
        .get(h.url("/mcp/whoami"))
        .header("authorization", "Basic Ym9iOnB3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).starts_with("Bearer resource_metadata=\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_documents_are_served_at_both_paths() {
    let h = start().await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let response = h.client.get(h.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_security_headers(&response);
        let doc: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(doc["resource"], format!("{}/mcp", h.base));
        assert_eq!(doc["authorization_servers"][0], ISSUER);
        assert_eq!(doc["bearer_methods_supported"][0], "header");
        assert_eq!(doc["scopes_supported"][1], "mcp:write");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_token_or_key_reaches_the_handler_without_the_credential() {
    let h = start().await;
    let token = h.token("bob", "mcp:read", &[AuthMethod::Pwd]);
    let response = h
        .client
        .get(h.url("/mcp/whoami"))
        .bearer_auth(&token)
        .header("x-request-id", "req-abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_security_headers(&response);
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap(),
        "req-abc"
    );
    // The role comes from the memberships store: the token carries none.
    assert_eq!(response.text().await.unwrap(), "bob developer");
    // The verifier's success event carries the request id and the client's address.
    let event = h
        .events
        .events()
        .into_iter()
        .find(|e| e.kind == mcpsec_core::EventKind::AuthnLoginSuccess)
        .unwrap();
    assert_eq!(
        event.request_id.as_ref().map(|r| r.as_str()),
        Some("req-abc")
    );
    assert_eq!(event.source, Some("127.0.0.1".parse().unwrap()));

    for request in [
        h.client
            .get(h.url("/mcp/whoami"))
            .header("x-api-key", &h.api_key),
        h.client.get(h.url("/mcp/whoami")).bearer_auth(&h.api_key),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "bob developer");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_credential_is_a_401_invalid_token() {
    let h = start().await;
    let mut grant = AccessGrant::new(
        UserId::new("bob").unwrap(),
        ScopeSet::parse_strict("mcp:read").unwrap(),
    );
    grant.org = Some(OrgId::new("acme").unwrap());
    let elsewhere = h.other_audience.issue(&grant).unwrap();
    // The last character changed (to one it is not).
    let last = if h.api_key.ends_with('x') { 'y' } else { 'x' };
    let wrong_key = format!("{}{last}", &h.api_key[..h.api_key.len() - 1]);
    for request in [
        h.client.get(h.url("/mcp/whoami")).bearer_auth(&elsewhere),
        h.client
            .get(h.url("/mcp/whoami"))
            .bearer_auth("aaa.bbb.ccc"),
        // Not a JWT at all: an invalid token, not a malformed header.
        h.client
            .get(h.url("/mcp/whoami"))
            .bearer_auth("opaque-token"),
        h.client
            .get(h.url("/mcp/whoami"))
            .header("x-api-key", &wrong_key),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{:?}", response.url());
        assert_security_headers(&response);
        assert!(challenge(&response).contains("error=\"invalid_token\""));
        assert!(challenge(&response).contains("resource_metadata=\""));
        assert_eq!(error_of(response).await.error, "invalid_token");
    }
    // A valid token for a non-member: no permission here, and no new token would help.
    let response = h
        .client
        .get(h.url("/mcp/whoami"))
        .bearer_auth(h.token("mallory", "mcp:read", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(error_of(response).await.error, "forbidden");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_or_doubled_credentials_are_a_400() {
    let h = start().await;
    let token = h.token("bob", "mcp:read", &[]);
    for request in [
        h.client
            .get(h.url("/mcp/whoami"))
            .bearer_auth(&token)
            .header("x-api-key", &h.api_key),
        h.client
            .get(h.url("/mcp/whoami"))
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}")),
        h.client
            .get(h.url(&format!("/mcp/whoami?access_token={token}"))),
        h.client
            .get(h.url("/mcp/whoami"))
            .header("authorization", "Bearer two words"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400);
        assert_security_headers(&response);
        let value = challenge(&response);
        assert!(value.contains("error=\"invalid_request\""), "{value}");
        assert!(value.contains("resource_metadata=\""), "{value}");
        assert_eq!(error_of(response).await.error, "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_scope_is_a_403_naming_the_scope() {
    let h = start().await;
    let token = h.token("bob", "mcp:read", &[]);
    let response = h
        .client
        .post(h.url("/mcp/configure"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_security_headers(&response);
    let value = challenge(&response);
    assert!(value.contains("error=\"insufficient_scope\""), "{value}");
    assert!(value.contains("scope=\"mcp:write\""), "{value}");
    assert!(value.contains("resource_metadata=\""), "{value}");
    assert_eq!(error_of(response).await.error, "insufficient_scope");
    assert!(
        h.events
            .events()
            .iter()
            .any(|e| e.kind == mcpsec_core::EventKind::AuthzFail && e.request_id.is_some())
    );

    let granted = h.token("bob", "mcp:write", &[]);
    let response = h
        .client
        .post(h.url("/mcp/configure"))
        .bearer_auth(&granted)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_action_without_a_recent_step_up_is_the_rfc_9470_challenge() {
    let h = start().await;
    let token = h.token("alice", "org:admin", &[AuthMethod::Pwd]);
    let response = h
        .client
        .post(h.url("/mcp/members"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_security_headers(&response);
    let value = challenge(&response);
    assert!(
        value.contains("error=\"insufficient_user_authentication\""),
        "{value}"
    );
    assert!(value.contains("acr_values=\""), "{value}");
    assert!(value.contains("scope=\"org:admin\""), "{value}");
    assert!(value.contains("max_age=\""), "{value}");
    assert_eq!(
        error_of(response).await.error,
        "insufficient_user_authentication"
    );

    // An API key can never step up: refused with a reason, not a challenge.
    let response = h
        .client
        .post(h.url("/mcp/members"))
        .header("x-api-key", &h.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(challenge(&response).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_inserted_by_another_layer_is_not_a_caller() {
    let h = start().await;
    let response = h.client.get(h.url("/open/whoami")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_security_headers(&response);
    assert_eq!(error_of(response).await.error, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disallowed_origin_is_a_403() {
    let h = start().await;
    let token = h.token("bob", "mcp:read", &[]);
    let response = h
        .client
        .get(h.url("/mcp/whoami"))
        .bearer_auth(&token)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_security_headers(&response);
    assert_eq!(error_of(response).await.error, "forbidden");
    let response = h
        .client
        .get(h.url("/mcp/whoami"))
        .bearer_auth(&token)
        .header("origin", h.base.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn router_errors_and_panics_are_json_with_security_headers() {
    let h = start().await;
    let response = h.client.get(h.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_security_headers(&response);
    assert_eq!(error_of(response).await.error, "not_found");

    let response = h
        .client
        .delete(h.url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_security_headers(&response);
    assert_eq!(error_of(response).await.error, "method_not_allowed");

    let token = h.token("bob", "mcp:read", &[]);
    let response = h
        .client
        .get(h.url("/mcp/panic"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_security_headers(&response);
    let body = response.text().await.unwrap();
    assert!(!body.contains("request data"), "{body}");
    let error: ErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(error.error, "server_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_capped_typed_and_strict() {
    let h = start().await;
    let token = h.token("bob", "mcp:read", &[]);
    let post = |body: String, content_type: &str| {
        h.client
            .post(h.url("/mcp/echo"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
    };
    let response = post(r#"{"a":1}"#.into(), "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_security_headers(&response);

    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(2000));
    let response = post(big, "application/json").send().await.unwrap();
    assert_eq!(response.status(), 413);
    assert_security_headers(&response);
    assert_eq!(error_of(response).await.error, "payload_too_large");

    let response = post(r#"{"a":1}"#.into(), "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_security_headers(&response);
    assert_eq!(error_of(response).await.error, "unsupported_media_type");

    for body in [
        r#"{"role":"viewer","role":"org_admin"}"#.to_owned(),
        "[".repeat(40) + &"]".repeat(40),
    ] {
        let response = post(body, "application/json").send().await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(error_of(response).await.error, "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_gets_the_security_headers_and_no_store() {
    let h = start().await;
    let token = h.token("bob", "mcp:read", &[]);
    let response = h
        .client
        .get(h.url("/mcp/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_security_headers(&response);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_principal_budget_is_a_429_with_rate_limit_fields() {
    let h = start().await;
    let token = h.token("bob", "mcp:read", &[]);
    let get = || h.client.get(h.url("/mcp/limited")).bearer_auth(&token);
    for left in [2, 1, 0] {
        let response = get().send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("ratelimit-policy").unwrap(),
            "\"principal\";q=3;w=30"
        );
        let current = response
            .headers()
            .get("ratelimit")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            current.starts_with(&format!("\"principal\";r={left};")),
            "{current}"
        );
    }
    let response = get().send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_security_headers(&response);
    assert_eq!(response.headers().get("retry-after").unwrap(), "10");
    assert_eq!(
        response.headers().get("ratelimit").unwrap(),
        "\"principal\";r=0;t=10"
    );
    assert_eq!(error_of(response).await.error, "rate_limited");
    assert!(h.events.events().iter().any(|e| e.kind
        == mcpsec_core::EventKind::ExcessRateLimitExceeded
        && e.request_id.is_some()));
    // Another principal has a budget of its own.
    let other = h.token("alice", "mcp:read", &[]);
    let response = h
        .client
        .get(h.url("/mcp/limited"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Time earns the budget back.
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(get().send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_can_override_the_security_headers() {
    let h = start().await;
    let token = h.token("bob", "mcp:read", &[]);
    let response = h
        .client
        .get(h.url("/mcp/widget"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("x-frame-options").unwrap(),
        "SAMEORIGIN"
    );
    assert_eq!(
        response.headers().get("cache-control").unwrap(),
        "private, max-age=60"
    );
    assert_eq!(
        response.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );
}
