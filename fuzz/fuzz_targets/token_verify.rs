//! Access-token verification on arbitrary strings, against a verifier with one fixed
//! Ed25519 key and a stopped clock: never panics, and nothing verifies except the one
//! token signed at setup (the fuzzer cannot forge an Ed25519 signature). Short inputs are
//! also spliced, base64url-encoded, into that token's payload: the result must be refused
//! unless it is byte-for-byte the original token.
//!
//! Signing oracle: the input is also signed, as the payload, with the verifier's own key
//! under a valid header, so claim parsing is fuzzed past the signature. Whatever verifies
//! must keep the verifier's promises: the configured issuer and audience, not expired,
//! `iat` not in the future, `sub`/`org`/`jti`/`sid` non-empty, capped and free of control
//! characters, and a payload that is a JSON object without duplicate members.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mcpsec_access::{Role, ScopeSet};
use mcpsec_core::{KeyId, ManualClock, NullSink, OrgId, SharedClock, UserId};
use mcpsec_tokens::{
    AccessGrant, Algorithm, DEFAULT_LEEWAY, KeySource, MAX_CLAIM_ID_LEN, SigningKey,
    SigningKeyring, TokenIssuer, TokenVerifier, VerifiedClaims,
};
use std::future::Future;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

const ISSUER: &str = "https://auth.fuzz.example";
const AUDIENCE: &str = "mcp";
/// 2026-01-01T00:00:00Z; the clock never moves, so the setup token stays valid.
const NOW: u64 = 1_767_225_600;
/// Inputs up to this length are also spliced into the valid token's payload.
const MAX_SPLICE: usize = 256;

struct Setup {
    verifier: TokenVerifier,
    /// The verifier's own key, for the signing oracle.
    key: Arc<SigningKey>,
    token: String,
    header_b64: String,
    signature_b64: String,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let clock: SharedClock = Arc::new(ManualClock::at_unix(NOW));
        let key = SigningKey::generate(KeyId::new("fuzz-ed25519").unwrap(), Algorithm::EdDSA)
            .expect("Ed25519 key generation");
        let keyring = Arc::new(RwLock::new(SigningKeyring::new(key)));
        let jwks = keyring.read().unwrap().jwks();
        let key = keyring.read().unwrap().current().expect("current key");
        let issuer = TokenIssuer::builder(keyring)
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .clock(clock.clone())
            .build()
            .expect("issuer builds");
        let verifier = TokenVerifier::builder(KeySource::Static(jwks), NullSink)
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .clock(clock)
            .build()
            .expect("verifier builds");
        let mut grant = AccessGrant::new(
            UserId::new("ada").unwrap(),
            ScopeSet::parse_strict("mcp:read").unwrap(),
        );
        grant.org = Some(OrgId::new("acme").unwrap());
        grant.role = Some(Role::Developer);
        let token = issuer.issue(&grant).expect("token issues");
        verify(&verifier, &token).expect("the setup token verifies at setup");
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!("issued token is not three parts: {token}");
        };
        Setup {
            key,
            header_b64: header_b64.to_owned(),
            signature_b64: signature_b64.to_owned(),
            verifier,
            token,
        }
    })
}

/// Drives the verifier's future: without a session store and with `NullSink` nothing in
/// it waits, so one poll finishes it (and no async runtime is needed).
fn verify(verifier: &TokenVerifier, token: &str) -> Result<VerifiedClaims, mcpsec_tokens::Error> {
    let mut future = std::pin::pin!(verifier.verify(token));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("verification waited, with nothing to wait on"),
    }
}

/// What every token that verified must satisfy, whatever its payload said.
fn check_verified(claims: &VerifiedClaims) {
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    // One second of slack: fractional NumericDates are rounded to nanoseconds.
    let slack = DEFAULT_LEEWAY + Duration::from_secs(1);
    assert_eq!(claims.issuer(), ISSUER);
    assert!(claims.expires_at() + slack > now, "expired token verified");
    assert!(claims.issued_at() <= now + slack, "future iat verified");
    for id in [
        Some(claims.subject()),
        claims.org(),
        claims.jti(),
        claims.sid(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!id.is_empty() && id.len() <= MAX_CLAIM_ID_LEN, "{id:?}");
        assert!(!id.chars().any(char::is_control), "{id:?}");
    }
    if let Some(acr) = claims.acr() {
        assert!(!acr.is_empty());
    }
    let audience_ok = match claims.payload().get("aud") {
        Some(serde_json::Value::String(aud)) => aud == AUDIENCE,
        Some(serde_json::Value::Array(auds)) => auds.iter().any(|a| a == AUDIENCE),
        _ => false,
    };
    assert!(audience_ok, "token without our audience verified");
    // Principal construction never panics; it may refuse outside identifiers.
    let _ = claims.principal();
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();

    // Signing oracle: the input as a payload, signed with the verifier's own key.
    let mut signed = format!("{}.", setup.header_b64);
    URL_SAFE_NO_PAD.encode_string(data, &mut signed);
    if let Ok(signature) = setup.key.sign(signed.as_bytes()) {
        signed.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut signed);
        if let Ok(claims) = verify(&setup.verifier, &signed) {
            assert!(
                serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|v| v.is_object()),
                "a payload that is not a JSON object verified"
            );
            check_verified(&claims);
        }
    }

    if let Ok(input) = std::str::from_utf8(data)
        && verify(&setup.verifier, input).is_ok()
    {
        assert_eq!(input, setup.token, "only the setup token may verify");
    }

    if data.len() <= MAX_SPLICE {
        let spliced = format!(
            "{}.{}.{}",
            setup.header_b64,
            URL_SAFE_NO_PAD.encode(data),
            setup.signature_b64
        );
        if verify(&setup.verifier, &spliced).is_ok() {
            assert_eq!(
                spliced, setup.token,
                "a spliced payload verified under the original signature"
            );
        }
    }
});
