//! Browser session endpoints a host mounts: refresh and logout, on the refresh token in
//! the `__Host-` cookie (`mcpsec-tokens`' cookie helpers).
//!
//! Both are `POST`s that change state on a cookie's authority, so both require a
//! same-origin request (`Sec-Fetch-Site: same-origin` when the browser sends it, an
//! `Origin` on the allow-list when it sends one, and at least one of the two) and the
//! double-submit CSRF token bound to the refresh token (`x-csrf-token` equal to the CSRF
//! cookie, its MAC over the refresh token checked). Either failing is 403, and nothing
//! is consumed.
//!
//! - `POST /refresh`: rotates the refresh token, sets the new refresh and CSRF cookies and
//!   answers `{"access_token", "token_type": "Bearer", "expires_in", "csrf_token"}`. A
//!   consumed token presented again is reuse: the tokens crate revokes the family and its
//!   session, and the answer is 401 with the cookie cleared.
//! - `POST /logout`: consumes the token, revokes the family and its session (the access
//!   tokens it bought are refused at once), and clears the cookies: 204. A token that does
//!   not rotate still gets 204 with the cookies cleared (logging out twice is not an
//!   error), after the refusal was recorded.
//!
//! A store that cannot answer is 503: nothing is assumed.

use crate::context::{self, SourceRule};
use crate::error::json_error;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::post;
use http::header::{HeaderValue, SET_COOKIE};
use http::{Response, StatusCode};
use mcpsec_tokens::{
    CSRF_COOKIE, CsrfKey, REFRESH_COOKIE, RefreshError, RefreshTokens, TokenIssuer, check_origin,
    clear_refresh_cookie, csrf_cookie, read_cookie, refresh_cookie,
};
use std::sync::Arc;
use std::time::Duration;

/// The refresh and logout endpoints.
pub struct SessionEndpoints {
    refresh: Arc<RefreshTokens>,
    issuer: Arc<TokenIssuer>,
    csrf: Arc<CsrfKey>,
    origins: Vec<String>,
    cookie_max_age: Duration,
    source: SourceRule,
}

impl std::fmt::Debug for SessionEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEndpoints")
            .field("origins", &self.origins)
            .field("cookie_max_age", &self.cookie_max_age)
            .finish_non_exhaustive()
    }
}

impl SessionEndpoints {
    /// Endpoints that rotate with `refresh`, mint access tokens with `issuer`, bind CSRF
    /// tokens with `csrf`, and accept requests from `origins` (exact, such as
    /// `https://app.example`). Cookies live 30 days unless [`cookie_max_age`](Self::cookie_max_age) says otherwise.
    pub fn new(
        refresh: Arc<RefreshTokens>,
        issuer: Arc<TokenIssuer>,
        csrf: Arc<CsrfKey>,
        origins: &[&str],
    ) -> Self {
        Self {
            refresh,
            issuer,
            csrf,
            origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            cookie_max_age: Duration::from_secs(30 * 24 * 3600),
            source: SourceRule::Peer,
        }
    }

    /// How long the cookies live (match the refresh policy's family lifetime).
    #[must_use]
    pub fn cookie_max_age(mut self, max_age: Duration) -> Self {
        self.cookie_max_age = max_age;
        self
    }

    /// Which address is the client's, for the refresh tokens' events.
    #[must_use]
    pub fn source(mut self, rule: SourceRule) -> Self {
        self.source = rule;
        self
    }

    /// A router with `POST /refresh` and `POST /logout`; nest it where the host wants
    /// (`Router::new().nest("/session", endpoints.router())`).
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let this = Arc::new(self);
        let refresh = Arc::clone(&this);
        Router::new()
            .route(
                "/refresh",
                post(move |request: Request| {
                    let this = Arc::clone(&refresh);
                    async move { this.refresh(request).await }
                }),
            )
            .route(
                "/logout",
                post(move |request: Request| {
                    let this = Arc::clone(&this);
                    async move { this.logout(request).await }
                }),
            )
    }

    /// Same origin and CSRF, then the refresh token from its cookie.
    fn admit(&self, request: &Request) -> Result<String, Response<Body>> {
        let headers = request.headers();
        let origins: Vec<&str> = self.origins.iter().map(String::as_str).collect();
        if check_origin(headers, &origins).is_err() || self.csrf.check(headers).is_err() {
            return Err(json_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "A same-origin request with a valid CSRF token is required.",
            ));
        }
        read_cookie(headers, REFRESH_COOKIE)
            .map(|token| token.expose_secret().to_owned())
            .ok_or_else(|| refused("The session cookie is missing."))
    }

    async fn refresh(&self, request: Request) -> Response<Body> {
        let presented = match self.admit(&request) {
            Ok(token) => token,
            Err(response) => return response,
        };
        let source = self
            .source
            .source(context::peer(request.extensions()), request.headers());
        let issued = match self.refresh.rotate(&presented, source).await {
            Ok(issued) => issued,
            Err(mcpsec_tokens::Error::Store(_)) => return unavailable(),
            Err(mcpsec_tokens::Error::Refresh(RefreshError::Raced)) => {
                // A concurrent refresh of the same token (two tabs) won: keep the cookie
                // the winner set.
                return json_error(
                    StatusCode::CONFLICT,
                    "refresh_raced",
                    "Another request refreshed this session; retry with the new cookie.",
                );
            }
            Err(_) => return refused("The session is not valid."),
        };
        let minted = (
            self.issuer.issue_for_session(&issued),
            self.csrf.issue(&issued.token),
            refresh_cookie(&issued.token, self.cookie_max_age),
        );
        let (Ok(access), Ok(csrf), Ok(cookie)) = minted else {
            return crate::error::status_error(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let Ok(csrf_set) = csrf_cookie(&csrf, self.cookie_max_age) else {
            return crate::error::status_error(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let body = serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.issuer.ttl().as_secs(),
            "csrf_token": csrf,
        });
        let mut response = Response::new(Body::from(body.to_string()));
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.append(SET_COOKIE, cookie);
        headers.append(SET_COOKIE, csrf_set);
        response
    }

    async fn logout(&self, request: Request) -> Response<Body> {
        let presented = match self.admit(&request) {
            Ok(token) => token,
            Err(response) => return response,
        };
        let source = self
            .source
            .source(context::peer(request.extensions()), request.headers());
        if let Err(mcpsec_tokens::Error::Store(_)) = self.refresh.logout(&presented, source).await {
            return unavailable();
        }
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        clear_cookies(&mut response);
        response
    }
}

/// 401 with both cookies cleared.
fn refused(description: &str) -> Response<Body> {
    let mut response = json_error(StatusCode::UNAUTHORIZED, "invalid_grant", description);
    clear_cookies(&mut response);
    response
}

fn clear_cookies(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.append(SET_COOKIE, clear_refresh_cookie());
    let cleared = format!("{CSRF_COOKIE}=; Path=/; Max-Age=0; Secure; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        headers.append(SET_COOKIE, value);
    }
}

fn unavailable() -> Response<Body> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "The session could not be checked now; retry later.",
    )
}
