//! Benchmark rows for mcpsec-tokens, each against raw jsonwebtoken on the same key.

use crate::Row;
use mcpsec_access::{Role, ScopeSet};
use mcpsec_core::{KeyId, ManualClock, OrgId, UserId};
use mcpsec_tokens::{
    AccessGrant, Algorithm, Error, KeySource, RsaBits, SigningKey, SigningKeyring, TokenIssuer,
    TokenVerifier, generate_pem,
};
use std::hint::black_box;
use std::sync::{Arc, RwLock};

const ISS: &str = "https://auth.example";
const AUD: &str = "mcp-server";

/// `tokens.verify_rs256` and `tokens.sign_rs256`.
pub(crate) fn rows() -> Result<Vec<Row>, Error> {
    let pem = generate_pem(Algorithm::RS256, RsaBits::B2048)?;
    let kid = KeyId::new("bench").map_err(|_| Error::Config("kid"))?;
    let key = SigningKey::from_pkcs8_pem(kid.clone(), Algorithm::RS256, pem.expose_secret())?;
    let jwk = key.public_jwk();
    let ring = SigningKeyring::new(key);
    let jwks = ring.jwks();
    let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
    let issuer = TokenIssuer::builder(Arc::new(RwLock::new(ring)))
        .issuer(ISS)
        .audience(AUD)
        .clock(clock.clone())
        .build()?;
    let uncached = TokenVerifier::builder(KeySource::Static(jwks.clone()), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(clock.clone())
        .cache_capacity(0)
        .build()?;
    let cached = TokenVerifier::builder(KeySource::Static(jwks), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(clock)
        .build()?;
    let mut grant = AccessGrant::new(
        UserId::new("ada").map_err(|_| Error::Config("sub"))?,
        ScopeSet::ALL,
    );
    grant.org = Some(OrgId::new("acme").map_err(|_| Error::Config("org"))?);
    grant.role = Some(Role::Developer);
    let token = issuer.issue(&grant)?;

    // The raw primitive: jsonwebtoken's own decode/encode with the same key and claims.
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk.n.as_deref().unwrap_or_default(),
        jwk.e.as_deref().unwrap_or_default(),
    )
    .map_err(|_| Error::Config("decoding key"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    validation.validate_exp = false; // the bench clock is fixed in 2026; both sides skip the wall clock
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
        .map_err(|_| Error::Config("encoding key"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(kid.to_string());
    let claims = raw_claims(&token)?;

    // Verification is async (session check, events); with no session store and NullSink
    // it completes at its first poll, so a current-thread runtime adds only its entry cost.
    let uncached_rt = current_thread()?;
    let cached_rt = current_thread()?;
    // Both sides must succeed, or the comparison measures an early failure.
    let ours_ok = uncached_rt.block_on(uncached.verify(&token)).is_ok()
        && cached_rt.block_on(cached.verify(&token)).is_ok();
    let raw_ok = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).is_ok()
        && jsonwebtoken::encode(&header, &claims, &encoding).is_ok();
    if !(ours_ok && raw_ok) {
        return Err(Error::Config("benchmark setup: a side does not succeed"));
    }

    let verify_token = token.clone();
    let cached_token = token.clone();
    let raw_token = token.clone();
    let raw_token_2 = token;
    let decoding_2 = decoding.clone();
    let validation_2 = validation.clone();
    Ok(vec![
        Row {
            name: "tokens.verify_rs256",
            baseline: "jsonwebtoken_decode",
            op: Box::new(move || {
                black_box(
                    uncached_rt
                        .block_on(uncached.verify(black_box(&verify_token)))
                        .is_ok(),
                );
            }),
            base: Box::new(move || {
                let decoded = jsonwebtoken::decode::<serde_json::Value>(
                    black_box(&raw_token),
                    &decoding,
                    &validation,
                );
                black_box(decoded.is_ok());
            }),
        },
        Row {
            name: "tokens.verify_rs256_cached",
            baseline: "jsonwebtoken_decode",
            op: Box::new(move || {
                black_box(
                    cached_rt
                        .block_on(cached.verify(black_box(&cached_token)))
                        .is_ok(),
                );
            }),
            base: Box::new(move || {
                let decoded = jsonwebtoken::decode::<serde_json::Value>(
                    black_box(&raw_token_2),
                    &decoding_2,
                    &validation_2,
                );
                black_box(decoded.is_ok());
            }),
        },
        Row {
            name: "tokens.sign_rs256",
            baseline: "jsonwebtoken_encode",
            op: Box::new(move || {
                black_box(issuer.issue(black_box(&grant)).is_ok());
            }),
            base: Box::new(move || {
                black_box(jsonwebtoken::encode(black_box(&header), &claims, &encoding).is_ok());
            }),
        },
    ])
}

/// `tokens.refresh_rotate` on the memory store, against its raw primitives: 32 bytes
/// from the OS CSPRNG and one SHA-256.
pub(crate) fn refresh_row() -> Result<Row, Error> {
    use mcpsec_tokens::{
        MemoryRefreshStore, MemorySessionRevocation, RefreshPolicy, RefreshTokens, SessionGrant,
    };
    let runtime = current_thread()?;
    let clock = Arc::new(ManualClock::at_unix(1_767_225_600));
    let tokens = RefreshTokens::new(
        Arc::new(MemoryRefreshStore::new()),
        Arc::new(MemorySessionRevocation::new()),
        Arc::new(mcpsec_core::NullSink),
        clock.clone(),
        RefreshPolicy::default(),
    );
    let grant = SessionGrant {
        subject: UserId::new("ada").map_err(|_| Error::Config("sub"))?,
        org: None,
        role: None,
        scopes: ScopeSet::ALL,
        auth_time: std::time::UNIX_EPOCH,
        amr: mcpsec_access::AuthMethods::EMPTY,
        acr: None,
    };
    let mut current = runtime.block_on(tokens.start(grant))?.token;
    Ok(Row {
        name: "tokens.refresh_rotate",
        baseline: "csprng32_sha256",
        op: Box::new(move || {
            if let Ok(next) = runtime.block_on(tokens.rotate(current.expose_secret(), None)) {
                current = next.token;
            }
        }),
        base: Box::new(|| {
            let mut secret = [0u8; 32];
            let _ = mcpsec_core::fill_random(&mut secret);
            black_box(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                black_box(&secret),
            ));
        }),
    })
}

fn current_thread() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|_| Error::Config("runtime"))
}

/// The payload of an issued token, so the baseline signs the same claims.
fn raw_claims(token: &str) -> Result<serde_json::Value, Error> {
    use base64::Engine;
    let payload = token.split('.').nth(1).ok_or(Error::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Error::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Malformed)
}
