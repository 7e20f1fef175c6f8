//! The refresh cookie and its anti-CSRF companions, on plain `http` types so any framework
//! can use them (the HTTP crate wires them into a refresh endpoint).
//!
//! - The refresh token travels only in a `__Host-` cookie: `Secure`, `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`, no `Domain` (the prefix makes browsers enforce this).
//! - A signed double-submit CSRF token: HMAC-SHA256 over the refresh token's hash and a
//!   random nonce, set in a script-readable `__Host-` cookie and echoed by the client in
//!   the `x-csrf-token` header. Bound to the refresh token, so it is re-issued with every
//!   rotation and cannot be moved to another session.
//! - An `Origin` / `Sec-Fetch-Site` check for the refresh endpoint.

use crate::Error;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{COOKIE, HeaderMap, HeaderValue};
use mcpsec_core::hmac::{Domain, MacInput, MacKey};
use mcpsec_core::{SecretBytes, SecretString};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The refresh cookie's name.
pub const REFRESH_COOKIE: &str = "__Host-mcp_refresh";
/// The CSRF cookie's name (readable by the page's script, unlike the refresh cookie).
pub const CSRF_COOKIE: &str = "__Host-mcp_csrf";
/// The header the client echoes the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Cookie headers larger than this are ignored (browsers send at most a few KiB).
const MAX_COOKIE_HEADER: usize = 8 * 1024;
const NONCE_LEN: usize = 16;
const MAX_CSRF_LEN: usize = 128;

fn cookie(
    name: &str,
    value: &str,
    max_age: Duration,
    http_only: bool,
) -> Result<HeaderValue, Error> {
    let mut text = format!(
        "{name}={value}; Path=/; Secure; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    );
    if http_only {
        text.push_str("; HttpOnly");
    }
    let mut header = HeaderValue::from_str(&text).map_err(|_| Error::Config("cookie value"))?;
    header.set_sensitive(true);
    Ok(header)
}

/// The `Set-Cookie` value that stores `token` for `max_age` (use the session's remaining
/// absolute lifetime). Marked sensitive, so `http`'s `Debug` does not print it.
///
/// `token` must be a refresh token as [`RefreshTokens`](crate::RefreshTokens) makes them
/// (`mcp_rt_` and 43 base62 characters), else [`RefreshError::Invalid`](crate::RefreshError::Invalid): any other value
/// could carry `;` and add cookie attributes (`Domain=`, a longer `Max-Age`).
pub fn refresh_cookie(token: &SecretString, max_age: Duration) -> Result<HeaderValue, Error> {
    crate::refresh::parse(token.expose_secret())?;
    cookie(REFRESH_COOKIE, token.expose_secret(), max_age, true)
}

/// The `Set-Cookie` value that deletes the refresh cookie (logout).
pub fn clear_refresh_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-mcp_refresh=; Path=/; Secure; SameSite=Strict; Max-Age=0; HttpOnly",
    )
}

/// The `Set-Cookie` value for the CSRF token (not `HttpOnly`: the page reads it to echo it).
pub fn csrf_cookie(csrf: &str, max_age: Duration) -> Result<HeaderValue, Error> {
    cookie(CSRF_COOKIE, csrf, max_age, false)
}

/// The value of the cookie `name` in the request's `Cookie` headers. `None` when absent,
/// when the headers are oversized or not text, or when the name appears more than once
/// (a sign of cookie tossing from a sibling domain: refuse rather than guess).
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<SecretString> {
    let mut total = 0;
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        total += value.len();
        if total > MAX_COOKIE_HEADER {
            return None;
        }
        let text = value.to_str().ok()?;
        for pair in text.split(';') {
            let Some((key, val)) = pair.trim().split_once('=') else {
                continue;
            };
            if key == name {
                if found.is_some() {
                    return None;
                }
                found = Some(SecretString::new(val.to_owned()));
            }
        }
    }
    found
}

/// A key for signing CSRF tokens: 32 bytes from the OS CSPRNG, shared by every instance
/// of the service (or each instance rejects the others' tokens).
pub struct CsrfKey(MacKey);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey([REDACTED])")
    }
}

/// The CSRF tag's domain: a version tag, then SHA-256 of the refresh token and the nonce
/// (both fixed length, so unframed).
const CSRF_DOMAIN: Domain = Domain::new("mcpsec-csrf-v1");

impl CsrfKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, Error> {
        MacKey::random()
            .map(Self)
            .map_err(|_| Error::Config("randomness unavailable"))
    }

    /// A key from configuration; at least 32 bytes.
    pub fn from_secret(secret: SecretBytes) -> Result<Self, Error> {
        MacKey::new(secret.expose_secret())
            .map(Self)
            .map_err(|_| Error::Config("CSRF keys are at least 32 bytes"))
    }

    /// What the MAC covers: SHA-256 of the refresh token, then the nonce.
    fn input(&self, refresh_token: &str, nonce: &[u8]) -> MacInput {
        let binding = digest::digest(&digest::SHA256, refresh_token.as_bytes());
        self.0.input(CSRF_DOMAIN).raw(binding.as_ref()).raw(nonce)
    }

    /// A CSRF token bound to `refresh_token`: base64url(nonce ‖ HMAC).
    pub fn issue(&self, refresh_token: &SecretString) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        mcpsec_core::fill_random(&mut nonce)
            .map_err(|_| Error::Config("randomness unavailable"))?;
        let tag = self.input(refresh_token.expose_secret(), &nonce).tag();
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&tag);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Checks a refresh request: the `x-csrf-token` header equals the CSRF cookie (double
    /// submit, compared in constant time) and its MAC binds it to the refresh cookie's
    /// token. Any failure is one coarse [`Error::Csrf`].
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Error> {
        let refresh = read_cookie(headers, REFRESH_COOKIE).ok_or(Error::Csrf)?;
        let cookie = read_cookie(headers, CSRF_COOKIE).ok_or(Error::Csrf)?;
        let mut echoed = headers.get_all(CSRF_HEADER).iter();
        let (Some(header), None) = (echoed.next(), echoed.next()) else {
            return Err(Error::Csrf);
        };
        let header = header.as_bytes();
        let cookie = cookie.expose_secret().as_bytes();
        if header.len() > MAX_CSRF_LEN || !bool::from(header.ct_eq(cookie)) {
            return Err(Error::Csrf);
        }
        let raw = URL_SAFE_NO_PAD.decode(header).map_err(|_| Error::Csrf)?;
        let (nonce, tag) = raw.split_at_checked(NONCE_LEN).ok_or(Error::Csrf)?;
        // Compared in constant time; a truncated tag is refused.
        if self.input(refresh.expose_secret(), nonce).verify(tag) {
            Ok(())
        } else {
            Err(Error::Csrf)
        }
    }
}

/// Checks that a state-changing request (the refresh endpoint) comes from one of the
/// service's own origins: `Sec-Fetch-Site`, when the browser sends it, must be
/// `same-origin`; `Origin`, when sent, must be one of `allowed` (exact, such as
/// `https://app.example`); a request with neither is refused.
pub fn check_origin(headers: &HeaderMap, allowed: &[&str]) -> Result<(), Error> {
    let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    let origin = headers.get(http::header::ORIGIN).map(HeaderValue::as_bytes);
    if site.is_none() && origin.is_none() {
        return Err(Error::Csrf);
    }
    if site.is_some_and(|s| s != b"same-origin") {
        return Err(Error::Csrf);
    }
    if let Some(origin) = origin
        && !allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
    {
        return Err(Error::Csrf);
    }
    Ok(())
}
