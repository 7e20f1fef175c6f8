//! Keyring rotation, JWKS parsing, issue → verify round trips.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use common::*;
use mcpsec_access::{AuthMethod, AuthMethods, Role, ScopeSet};
use mcpsec_core::{Clock, KeyId, OrgId, UserId};
use mcpsec_tokens::{
    AccessGrant, Algorithm, Error, JwkSet, KeySource, KeyState, SigningKey, SigningKeyring,
    TokenIssuer, TokenVerifier,
};
use proptest::prelude::*;
use std::sync::{Arc, RwLock};
use std::time::Duration;

fn ed_key(kid: &str) -> SigningKey {
    SigningKey::generate(KeyId::new(kid).unwrap(), Algorithm::EdDSA).unwrap()
}

#[test]
fn rotation_moves_keys_through_their_states() {
    let clock = clock();
    let mut ring = SigningKeyring::new(ed_key("a"));
    assert_eq!(
        ring.rotate(clock.now(), Duration::from_secs(60), ed_key("x"))
            .unwrap_err(),
        Error::Keyring("no next key published: add_next first")
    );
    ring.add_next(ed_key("b")).unwrap();
    assert!(
        ring.add_next(ed_key("c")).is_err(),
        "one next key at a time"
    );
    assert_eq!(
        ring.jwks().keys.len(),
        2,
        "next is published before it signs"
    );
    ring.rotate(clock.now(), Duration::from_secs(60), ed_key("c"))
        .unwrap();
    let states = ring.states();
    let state = |kid: &str| {
        states
            .iter()
            .find(|(k, _)| k.as_str() == kid)
            .map(|(_, s)| *s)
    };
    assert!(matches!(state("a"), Some(KeyState::Retired { .. })));
    assert_eq!(state("b"), Some(KeyState::Current));
    assert_eq!(state("c"), Some(KeyState::Next));
    assert_eq!(ring.current().unwrap().kid().as_str(), "b");
    let event = ring.rotation_event(clock.now()).unwrap();
    assert_eq!(event.kind, mcpsec_core::EventKind::SysCryptoKeyRotated);
    assert!(event.is_critical());
    assert_eq!(event.resource.unwrap().id.unwrap().as_str(), "b");
    assert!(ring.prune(clock.now()).is_empty(), "not yet");
    clock.advance(Duration::from_secs(60));
    assert_eq!(ring.prune(clock.now()), vec![KeyId::new("a").unwrap()]);
    assert_eq!(ring.jwks().keys.len(), 2);
}

#[test]
fn debug_never_shows_key_material() {
    let key = ed_key("dbg");
    let text = format!("{key:?}");
    assert!(text.contains("dbg") && text.contains("EdDSA"));
    assert!(!text.contains(key.public_jwk().x.as_deref().unwrap()));
}

#[test]
fn jwks_with_private_material_or_duplicates_is_refused() {
    let mut with_private = serde_json::to_value(JwkSet {
        keys: vec![ed().public_jwk()],
    })
    .unwrap();
    with_private["keys"][0]["d"] = serde_json::json!("secret");
    let bytes = serde_json::to_vec(&with_private).unwrap();
    assert_eq!(
        JwkSet::parse(&bytes).unwrap_err(),
        Error::InvalidKeySet("contains private or symmetric key material")
    );
    let dup = serde_json::to_vec(&JwkSet {
        keys: vec![ed().public_jwk(), ed().public_jwk()],
    })
    .unwrap();
    assert_eq!(
        JwkSet::parse(&dup).unwrap_err(),
        Error::InvalidKeySet("duplicate kid")
    );
    assert!(JwkSet::parse(&vec![b' '; 70_000]).is_err());
    let round = JwkSet::parse(jwks().to_json().as_bytes()).unwrap();
    assert_eq!(round.verifying_keys().unwrap().len(), 3);
}

#[test]
fn jwks_refuses_weak_or_mismatched_keys() {
    let mut small = rsa().public_jwk();
    small.n = Some("AQAB".to_owned());
    assert!(small.to_verifying_key().is_err());
    let mut mismatched = rsa().public_jwk();
    mismatched.alg = Some("HS256".to_owned());
    assert!(mismatched.to_verifying_key().is_err());
    let mut even_e = rsa().public_jwk();
    even_e.e = Some("AQAA".to_owned());
    assert!(even_e.to_verifying_key().is_err());
}

#[test]
fn jwks_file_source_reads_and_reloads() {
    let dir = std::env::temp_dir().join(format!("mcpsec-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(
        &path,
        JwkSet {
            keys: vec![ed().public_jwk()],
        }
        .to_json(),
    )
    .unwrap();
    let verifier = TokenVerifier::builder(KeySource::File(path.clone()))
        .issuer(ISS)
        .audience(AUD)
        .clock(Arc::new(clock()))
        .build()
        .unwrap();
    let rsa_token = forge(rsa(), &header(rsa()), &claims());
    assert_eq!(verifier.verify(&rsa_token).unwrap_err(), Error::UnknownKey);
    std::fs::write(&path, jwks().to_json()).unwrap();
    verifier.reload().unwrap();
    assert!(verifier.verify(&rsa_token).is_ok());
    std::fs::write(&path, "not json").unwrap();
    assert!(verifier.reload().is_err());
    assert!(
        verifier.verify(&rsa_token).is_ok(),
        "a failed reload keeps the last good keys"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn issuer_and_verifier(alg: Algorithm) -> (TokenIssuer, TokenVerifier) {
    let clock = Arc::new(clock());
    let signing = SigningKey::generate(KeyId::new("k").unwrap(), alg).unwrap();
    let ring = SigningKeyring::new(signing);
    let jwks = ring.jwks();
    let issuer = TokenIssuer::builder(Arc::new(RwLock::new(ring)))
        .issuer(ISS)
        .audience(AUD)
        .clock(clock.clone())
        .build()
        .unwrap();
    let verifier = TokenVerifier::builder(KeySource::Static(jwks))
        .issuer(ISS)
        .audience(AUD)
        .clock(clock)
        .build()
        .unwrap();
    (issuer, verifier)
}

#[test]
fn issued_tokens_carry_the_rfc9068_header_and_default_lifetime() {
    let (issuer, verifier) = issuer_and_verifier(Algorithm::ES256);
    let token = issuer
        .issue(&AccessGrant::new(
            UserId::new("u").unwrap(),
            ScopeSet::EMPTY,
        ))
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], "k");
    assert_eq!(header["alg"], "ES256");
    let claims = verifier.verify(&token).unwrap();
    let lifetime = claims
        .expires_at()
        .duration_since(claims.issued_at())
        .unwrap();
    assert_eq!(lifetime, Duration::from_secs(24 * 3600));
    assert!(claims.jti().is_some());
    assert_eq!(claims.principal().unwrap_err(), Error::MissingClaim("role"));
}

#[test]
fn issuer_builder_requires_issuer_and_audience() {
    let ring = Arc::new(RwLock::new(SigningKeyring::new(ed_key("z"))));
    assert!(
        TokenIssuer::builder(ring.clone())
            .audience(AUD)
            .build()
            .is_err()
    );
    assert!(TokenIssuer::builder(ring).issuer(ISS).build().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn issue_then_verify_round_trips(
        sub in "[a-z0-9]{1,20}",
        org in "[a-z]{1,12}",
        bits in 0u16..512,
        role in prop::sample::select(Role::ALL.to_vec()),
        otp in any::<bool>(),
        auth_ago in 0u64..3600,
    ) {
        static PAIR: std::sync::OnceLock<(TokenIssuer, TokenVerifier)> = std::sync::OnceLock::new();
        let (issuer, verifier) = PAIR.get_or_init(|| issuer_and_verifier(Algorithm::EdDSA));
        let mut grant = AccessGrant::new(UserId::new(&sub).unwrap(), ScopeSet::from_bits_truncate(bits));
        grant.org = Some(OrgId::new(&org).unwrap());
        grant.role = Some(role);
        grant.amr = if otp { AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]) } else { AuthMethods::EMPTY };
        grant.auth_time = Some(std::time::UNIX_EPOCH + Duration::from_secs(NOW - auth_ago));
        let token = issuer.issue(&grant).unwrap();
        let principal = verifier.verify(&token).unwrap().principal().unwrap();
        prop_assert_eq!(principal.subject(), &grant.subject);
        prop_assert_eq!(principal.org(), grant.org.as_ref().unwrap());
        prop_assert_eq!(principal.role(), role);
        prop_assert_eq!(principal.scopes(), grant.scopes);
        prop_assert_eq!(principal.authentication().methods, grant.amr);
        prop_assert_eq!(Some(principal.authentication().at), grant.auth_time);
    }
}
