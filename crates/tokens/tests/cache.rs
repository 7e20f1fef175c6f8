//! The verified-token cache: hits re-check expiry, key changes flush it, revocation is
//! consulted after it.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::*;
use mcpsec_tokens::{Error, JtiRevocation, JwkSet, KeySource, TokenVerifier};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn a_cached_token_still_expires() {
    let clock = clock();
    let verifier = verifier(&clock);
    let token = forge(
        ed(),
        &header(ed()),
        &with("exp", serde_json::json!(NOW + 100)),
    );
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok(), "hit");
    clock.advance(Duration::from_secs(130));
    assert_eq!(verifier.verify(&token).await.unwrap_err(), Error::Expired);
}

#[tokio::test]
async fn removing_a_key_flushes_the_cache() {
    let clock = clock();
    let verifier = verifier(&clock);
    let token = forge(ed(), &header(ed()), &claims());
    assert!(verifier.verify(&token).await.is_ok());
    verifier
        .set_keys(&JwkSet {
            keys: vec![rsa().public_jwk()],
        })
        .unwrap();
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        Error::UnknownKey
    );
}

#[derive(Debug, Default)]
struct Denylist(Mutex<HashSet<String>>);

impl JtiRevocation for Denylist {
    fn is_revoked(&self, jti: &str) -> bool {
        self.0.lock().unwrap().contains(jti)
    }
}

#[tokio::test]
async fn revocation_is_checked_after_the_cache() {
    let denylist = Arc::new(Denylist::default());
    let verifier = TokenVerifier::builder(KeySource::Static(jwks()), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(Arc::new(clock()))
        .revocation(denylist.clone())
        .build()
        .unwrap();
    let token = forge(ed(), &header(ed()), &claims());
    assert!(verifier.verify(&token).await.is_ok());
    denylist.0.lock().unwrap().insert("t-1".to_owned());
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        Error::Revoked,
        "a cached token is revoked too"
    );
    let no_jti = forge(ed(), &header(ed()), &with("jti", serde_json::Value::Null));
    assert_eq!(
        verifier.verify(&no_jti).await.unwrap_err(),
        Error::MissingClaim("jti")
    );
}

#[tokio::test]
async fn a_failed_verification_is_never_cached() {
    let clock = clock();
    let verifier = verifier(&clock);
    let early = forge(
        ed(),
        &header(ed()),
        &with("nbf", serde_json::json!(NOW + 60)),
    );
    assert_eq!(
        verifier.verify(&early).await.unwrap_err(),
        Error::NotYetValid
    );
    clock.advance(Duration::from_secs(60));
    assert!(verifier.verify(&early).await.is_ok());
}

/// Item 1 of issue 12: `SigningKeyring::remove` takes a leaked key out of the published
/// set at once, and a verifier given that set stops answering its tokens from the cache.
#[tokio::test]
async fn emergency_removal_of_a_leaked_key() {
    use mcpsec_core::{Clock, KeyId};
    use mcpsec_tokens::{Algorithm, SigningKey, SigningKeyring};
    let clock = clock();
    let key = |kid: &str| SigningKey::generate(KeyId::new(kid).unwrap(), Algorithm::EdDSA).unwrap();
    let mut ring = SigningKeyring::new(key("leaked"));
    let leaked = KeyId::new("leaked").unwrap();
    let verifier = TokenVerifier::builder(
        KeySource::Static(JwkSet {
            keys: vec![ring.current().unwrap().public_jwk()],
        }),
        mcpsec_core::NullSink,
    )
    .issuer(ISS)
    .audience(AUD)
    .clock(std::sync::Arc::new(clock.clone()))
    .build()
    .unwrap();
    let current = ring.current().unwrap();
    let token = forge(&current, &header(&current), &claims());
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok(), "cached");

    assert_eq!(
        ring.remove(&leaked).unwrap_err(),
        Error::Key(mcpsec_tokens::KeyError::Keyring(
            "the current key signs: rotate before removing it"
        ))
    );
    ring.add_next(key("fresh")).unwrap();
    ring.rotate(clock.now(), Duration::from_secs(3600), key("after"))
        .unwrap();
    ring.remove(&leaked).unwrap();
    assert!(ring.states().iter().all(|(kid, _)| kid != &leaked));
    assert!(
        ring.jwks()
            .keys
            .iter()
            .all(|k| k.kid.as_deref() != Some("leaked"))
    );
    assert!(ring.remove(&leaked).is_err(), "already gone");

    verifier.set_keys(&ring.jwks()).unwrap();
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        Error::UnknownKey
    );
}
