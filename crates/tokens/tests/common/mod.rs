//! Shared fixtures: keys generated once per test binary, a forger for hand-made tokens.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test fixtures"
)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_core::{KeyId, ManualClock};
use mcpsec_tokens::{Algorithm, JwkSet, KeySource, SigningKey, TokenVerifier};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

pub const ISS: &str = "https://auth.example";
pub const AUD: &str = "mcp-server";
pub const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

pub fn rsa() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SigningKey::generate(KeyId::new("rsa-1").unwrap(), Algorithm::RS256).unwrap()
    })
}

pub fn ec() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(KeyId::new("ec-1").unwrap(), Algorithm::ES256).unwrap())
}

pub fn ed() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(KeyId::new("ed-1").unwrap(), Algorithm::EdDSA).unwrap())
}

pub fn jwks() -> JwkSet {
    JwkSet {
        keys: vec![rsa().public_jwk(), ec().public_jwk(), ed().public_jwk()],
    }
}

pub fn verifier(clock: &ManualClock) -> TokenVerifier {
    TokenVerifier::builder(KeySource::Static(jwks()), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

pub fn clock() -> ManualClock {
    ManualClock::at_unix(NOW)
}

pub fn header(key: &SigningKey) -> Value {
    json!({"alg": key.algorithm().as_str(), "typ": "at+jwt", "kid": key.kid().as_str()})
}

pub fn claims() -> Value {
    json!({
        "iss": ISS, "sub": "alice", "aud": AUD, "exp": NOW + 3600, "iat": NOW,
        "jti": "t-1", "scope": "mcp:read", "org": "acme", "role": "developer"
    })
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Encodes raw header and payload bytes and signs them with `key`.
pub fn forge_raw(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&signature))
}

pub fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
    forge_raw(
        key,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
}

/// `claims()` with `name` set to `value` (or removed when `value` is null).
pub fn with(name: &str, value: Value) -> Value {
    let mut c = claims();
    let map = c.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(name);
    } else {
        map.insert(name.to_owned(), value);
    }
    c
}
