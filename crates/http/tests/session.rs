//! The browser session endpoints against a real server: refresh with the cookie and the
//! CSRF token, refused without CSRF, cross-site, or replayed (which revokes the session),
//! and logout that ends the session everywhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use axum::Router;
use mcpsec_access::{AuthMethod, AuthMethods, Role, ScopeSet};
use mcpsec_core::{Clock, KeyId, ManualClock, MemorySink, OrgId, UserId};
use mcpsec_http::{JsonErrors, SecurityHeaders, SessionEndpoints};
use mcpsec_tokens::{
    Algorithm, CsrfKey, KeySource, MemoryRefreshStore, MemorySessionRevocation, RefreshPolicy,
    RefreshTokens, SessionGrant, SigningKey, SigningKeyring, TokenIssuer, TokenVerifier,
};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

const APP: &str = "https://app.example";

struct Harness {
    base: String,
    refresh: Arc<RefreshTokens>,
    csrf: Arc<CsrfKey>,
    verifier: TokenVerifier,
    issuer: Arc<TokenIssuer>,
    client: reqwest::Client,
    clock: ManualClock,
}

async fn start() -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clock = ManualClock::at_unix(1_767_225_600);
    let events = MemorySink::new();
    let sessions = Arc::new(MemorySessionRevocation::new());
    let ring = SigningKeyring::new(
        SigningKey::generate(KeyId::new("k1").unwrap(), Algorithm::RS256).unwrap(),
    );
    let jwks = ring.jwks();
    let issuer = Arc::new(
        TokenIssuer::builder(Arc::new(RwLock::new(ring)))
            .issuer(APP)
            .audience("mcp")
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    );
    let verifier = TokenVerifier::builder(KeySource::Static(jwks), events.clone())
        .issuer(APP)
        .audience("mcp")
        .clock(Arc::new(clock.clone()))
        .sessions(sessions.clone())
        .build()
        .unwrap();
    let refresh = Arc::new(RefreshTokens::new(
        Arc::new(MemoryRefreshStore::new()),
        sessions,
        Arc::new(events),
        Arc::new(clock.clone()),
        RefreshPolicy::default(),
    ));
    let csrf = Arc::new(CsrfKey::generate().unwrap());
    let endpoints = SessionEndpoints::new(refresh.clone(), issuer.clone(), csrf.clone(), &[APP]);
    let app = Router::new()
        .nest("/session", endpoints.router())
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
        refresh,
        csrf,
        verifier,
        issuer,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        clock,
    }
}

impl Harness {
    /// A login: the refresh token and its CSRF token.
    async fn login(&self) -> (String, String) {
        let issued = self
            .refresh
            .start(SessionGrant {
                subject: UserId::new("alice").unwrap(),
                org: Some(OrgId::new("acme").unwrap()),
                role: Some(Role::Developer),
                scopes: ScopeSet::parse_strict("mcp:read").unwrap(),
                auth_time: self.clock.now(),
                amr: AuthMethods::of(&[AuthMethod::Pwd]),
                acr: None,
            })
            .await
            .unwrap();
        let csrf = self.csrf.issue(&issued.token).unwrap();
        (issued.token.expose_secret().to_owned(), csrf)
    }

    fn post(
        &self,
        path: &str,
        refresh: &str,
        csrf: Option<&str>,
        site: &str,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(format!("{}/session{path}", self.base))
            .header(
                "cookie",
                format!(
                    "__Host-mcp_refresh={refresh}; __Host-mcp_csrf={}",
                    csrf.unwrap_or("none")
                ),
            )
            .header("origin", APP)
            .header("sec-fetch-site", site);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request
    }
}

fn cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_the_cookie_and_returns_an_access_token() {
    let h = start().await;
    let (token, csrf) = h.login().await;
    let response = h
        .post("/refresh", &token, Some(&csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let rotated = cookie_value(&response, "__Host-mcp_refresh").unwrap();
    assert_ne!(rotated, token);
    let new_csrf = cookie_value(&response, "__Host-mcp_csrf").unwrap();
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["csrf_token"], new_csrf.as_str());
    assert_eq!(body["expires_in"], h.issuer.ttl().as_secs());
    let access = body["access_token"].as_str().unwrap();
    let claims = h.verifier.verify(access).await.unwrap();
    assert_eq!(claims.subject(), "alice");

    // The rotated cookie works with its new CSRF token.
    let again = h
        .post("/refresh", &rotated, Some(&new_csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_csrf_or_a_cross_site_request_is_refused_and_consumes_nothing() {
    let h = start().await;
    let (token, csrf) = h.login().await;
    let (_, other_csrf) = h.login().await;
    for request in [
        h.post("/refresh", &token, None, "same-origin"),
        h.post("/refresh", &token, Some(&other_csrf), "same-origin"),
        h.post("/refresh", &token, Some(&csrf), "cross-site"),
        h.post("/logout", &token, Some(&csrf), "cross-site"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    // Nothing was consumed: the real request still works.
    let response = h
        .post("/refresh", &token, Some(&csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_refresh_token_revokes_the_session() {
    let h = start().await;
    let (token, csrf) = h.login().await;
    let first = h
        .post("/refresh", &token, Some(&csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let rotated = cookie_value(&first, "__Host-mcp_refresh").unwrap();
    let new_csrf = cookie_value(&first, "__Host-mcp_csrf").unwrap();
    let body: serde_json::Value = serde_json::from_str(&first.text().await.unwrap()).unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();

    // Past the reuse grace, the old token again: reuse.
    h.clock.advance(std::time::Duration::from_secs(120));
    let replay = h
        .post("/refresh", &token, Some(&csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    assert_eq!(
        cookie_value(&replay, "__Host-mcp_refresh").as_deref(),
        Some("")
    );
    // The family is gone: the legitimate client's rotated token and its access token too.
    let after = h
        .post("/refresh", &rotated, Some(&new_csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    assert!(h.verifier.verify(&access).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_session_and_clears_the_cookies() {
    let h = start().await;
    let (token, csrf) = h.login().await;
    let first = h
        .post("/refresh", &token, Some(&csrf), "same-origin")
        .send()
        .await
        .unwrap();
    let rotated = cookie_value(&first, "__Host-mcp_refresh").unwrap();
    let new_csrf = cookie_value(&first, "__Host-mcp_csrf").unwrap();
    let body: serde_json::Value = serde_json::from_str(&first.text().await.unwrap()).unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(h.verifier.verify(&access).await.is_ok());

    let logout = h
        .post("/logout", &rotated, Some(&new_csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(
        cookie_value(&logout, "__Host-mcp_refresh").as_deref(),
        Some("")
    );
    assert_eq!(
        cookie_value(&logout, "__Host-mcp_csrf").as_deref(),
        Some("")
    );
    assert!(
        h.verifier.verify(&access).await.is_err(),
        "the session's access token"
    );
    let again = h
        .post("/refresh", &rotated, Some(&new_csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    // Logging out twice is not an error.
    let twice = h
        .post("/logout", &rotated, Some(&new_csrf), "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 204);
}
