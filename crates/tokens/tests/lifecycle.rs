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
        Error::Key(mcpsec_tokens::KeyError::Keyring(
            "no next key published: add_next first"
        ))
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
    clock.advance(Duration::from_secs(60) + mcpsec_tokens::MAX_LEEWAY);
    assert_eq!(ring.prune(clock.now()), vec![KeyId::new("a").unwrap()]);
    assert_eq!(ring.jwks().keys.len(), 2);
}

#[test]
fn debug_never_shows_key_material() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let pem = mcpsec_tokens::generate_pem(alg, mcpsec_tokens::RsaBits::B2048).unwrap();
        let key = SigningKey::from_pkcs8_pem(KeyId::new("dbg").unwrap(), alg, pem.expose_secret())
            .unwrap();
        let text = format!("{key:?} {key:#?}");
        assert!(
            text.contains("dbg") && text.contains(alg.as_str()),
            "{text}"
        );
        // The private key in every form it could leak in: PEM lines, the PKCS#8 DER, and
        // the tail of the DER (the private scalar or seed) in base64, hex and Debug form.
        let body: String = pem
            .expose_secret()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(&body).unwrap();
        let private = &der[der.len() - 32..];
        for line in pem
            .expose_secret()
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!text.contains(line), "{alg:?}: a PEM line");
        }
        let hex: String = private.iter().map(|b| format!("{b:02x}")).collect();
        for leak in [
            STANDARD.encode(private),
            URL_SAFE_NO_PAD.encode(private),
            hex,
            format!("{private:?}").trim_matches(['[', ']']).to_owned(),
        ] {
            assert!(!text.contains(&leak), "{alg:?}: private material in Debug");
        }
    }
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
        Error::Key(mcpsec_tokens::KeyError::InvalidSet(
            "contains private or symmetric key material"
        ))
    );
    let dup = serde_json::to_vec(&JwkSet {
        keys: vec![ed().public_jwk(), ed().public_jwk()],
    })
    .unwrap();
    assert_eq!(
        JwkSet::parse(&dup).unwrap_err(),
        Error::Key(mcpsec_tokens::KeyError::InvalidSet("duplicate kid"))
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

#[tokio::test]
async fn jwks_file_source_reads_and_reloads() {
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
    let verifier = TokenVerifier::builder(KeySource::File(path.clone()), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(Arc::new(clock()))
        .build()
        .unwrap();
    let rsa_token = forge(rsa(), &header(rsa()), &claims());
    assert_eq!(
        verifier.verify(&rsa_token).await.unwrap_err(),
        Error::UnknownKey
    );
    std::fs::write(&path, jwks().to_json()).unwrap();
    verifier.reload().await.unwrap();
    assert!(verifier.verify(&rsa_token).await.is_ok());
    std::fs::write(&path, "not json").unwrap();
    assert!(verifier.reload().await.is_err());
    assert!(
        verifier.verify(&rsa_token).await.is_ok(),
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
    let verifier = TokenVerifier::builder(KeySource::Static(jwks), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(clock)
        .build()
        .unwrap();
    (issuer, verifier)
}

#[tokio::test]
async fn issued_tokens_carry_the_rfc9068_header_and_default_lifetime() {
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
    let claims = verifier.verify(&token).await.unwrap();
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

fn pair(alg: Algorithm) -> &'static (TokenIssuer, TokenVerifier) {
    static PAIRS: std::sync::OnceLock<Vec<(TokenIssuer, TokenVerifier)>> =
        std::sync::OnceLock::new();
    let pairs = PAIRS.get_or_init(|| {
        [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(issuer_and_verifier)
            .collect()
    });
    match alg {
        Algorithm::RS256 => &pairs[0],
        Algorithm::ES256 => &pairs[1],
        Algorithm::EdDSA => &pairs[2],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Every algorithm, RS256 (the default) first among them.
    #[test]
    fn issue_then_verify_round_trips(
        alg in prop::sample::select(vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]),
        sub in "[a-z0-9]{1,20}",
        org in "[a-z]{1,12}",
        bits in 0u16..512,
        role in prop::sample::select(Role::ALL.to_vec()),
        otp in any::<bool>(),
        auth_ago in 0u64..3600,
    ) {
        let (issuer, verifier) = pair(alg);
        let mut grant = AccessGrant::new(UserId::new(&sub).unwrap(), ScopeSet::from_bits_truncate(bits));
        grant.org = Some(OrgId::new(&org).unwrap());
        grant.role = Some(role);
        grant.amr = if otp { AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]) } else { AuthMethods::EMPTY };
        grant.auth_time = Some(std::time::UNIX_EPOCH + Duration::from_secs(NOW - auth_ago));
        let token = issuer.issue(&grant).unwrap();
        let verified = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(verifier.verify(&token))
            .unwrap();
        prop_assert_eq!(verified.algorithm(), alg);
        let principal = verified.principal().unwrap();
        prop_assert_eq!(principal.subject(), &grant.subject);
        prop_assert_eq!(principal.org(), grant.org.as_ref().unwrap());
        prop_assert_eq!(principal.role(), role);
        prop_assert_eq!(principal.scopes(), grant.scopes);
        prop_assert_eq!(principal.authentication().methods, grant.amr);
        prop_assert_eq!(principal.authentication().at, grant.auth_time);
    }
}

/// Item 3 of issue 12: keys the verifier cannot use are skipped, the rest is kept.
#[tokio::test]
async fn one_unsupported_key_does_not_refuse_the_jwks() {
    let mut set = serde_json::to_value(JwkSet {
        keys: vec![ed().public_jwk()],
    })
    .unwrap();
    let keys = set["keys"].as_array_mut().unwrap();
    keys.push(serde_json::json!({
        "kty": "EC", "crv": "P-384", "kid": "p384", "alg": "ES384", "use": "sig",
        "x": b64(&[7u8; 48]), "y": b64(&[9u8; 48]),
    }));
    let mut ps256 = serde_json::to_value(rsa().public_jwk()).unwrap();
    ps256["kid"] = serde_json::json!("ps256");
    ps256["alg"] = serde_json::json!("PS256");
    keys.push(ps256);
    let set_json = set.to_string();
    let set = JwkSet::parse(set_json.as_bytes()).unwrap();
    let verifier = TokenVerifier::builder(KeySource::Static(set), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(Arc::new(clock()))
        .build()
        .unwrap();
    assert!(
        verifier
            .verify(&forge(ed(), &header(ed()), &claims()))
            .await
            .is_ok()
    );
    assert_eq!(verifier.skipped_keys(), 2, "both skipped keys are counted");
    let usable = JwkSet::parse(set_json.as_bytes()).unwrap().usable_keys();
    let skipped: Vec<_> = usable.skipped.iter().map(|s| s.kid.as_deref()).collect();
    assert_eq!(skipped, [Some("p384"), Some("ps256")]);
    // The all-or-nothing form, for the keyring's own set, still refuses it.
    assert!(
        JwkSet::parse(set_json.as_bytes())
            .unwrap()
            .verifying_keys()
            .is_err()
    );
}

/// Item 5 of issue 12: a token without `auth_time` says nothing about when the user
/// authenticated; its principal must not claim "at `iat`".
#[tokio::test]
async fn missing_auth_time_is_unknown_not_iat() {
    let verifier = verifier(&clock());
    let token = forge(ed(), &header(ed()), &claims());
    let principal = verifier.verify(&token).await.unwrap().principal().unwrap();
    assert_eq!(principal.authentication().at, None);
    let with_time = forge(
        ed(),
        &header(ed()),
        &with("auth_time", serde_json::json!(NOW - 60)),
    );
    let principal = verifier
        .verify(&with_time)
        .await
        .unwrap()
        .principal()
        .unwrap();
    assert_eq!(
        principal.authentication().at,
        Some(std::time::UNIX_EPOCH + Duration::from_secs(NOW - 60))
    );
}

/// Item 6 of issue 12: a retired key stays published until its last token is past `exp`
/// plus the largest leeway a verifier may use.
#[tokio::test]
async fn retired_key_is_pruned_only_after_exp_plus_leeway() {
    let clock = clock();
    let lifetime = Duration::from_secs(600);
    let ring = Arc::new(RwLock::new(SigningKeyring::new(ed_key("old"))));
    let issuer = TokenIssuer::builder(ring.clone())
        .issuer(ISS)
        .audience(AUD)
        .ttl(lifetime)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let token = issuer
        .issue(&AccessGrant::new(
            UserId::new("u").unwrap(),
            ScopeSet::EMPTY,
        ))
        .unwrap();
    let verifier = TokenVerifier::builder(
        KeySource::Static(ring.read().unwrap().jwks()),
        mcpsec_core::NullSink,
    )
    .issuer(ISS)
    .audience(AUD)
    .clock(Arc::new(clock.clone()))
    .build()
    .unwrap();
    {
        let mut ring = ring.write().unwrap();
        ring.add_next(ed_key("new")).unwrap();
        ring.rotate(clock.now(), lifetime, ed_key("next")).unwrap();
    }
    clock.advance(lifetime + Duration::from_secs(10));
    // The verifier still accepts the token (inside its leeway) ...
    assert!(verifier.verify(&token).await.is_ok());
    // ... so the key must still be published.
    assert!(ring.write().unwrap().prune(clock.now()).is_empty());
    verifier.set_keys(&ring.read().unwrap().jwks()).unwrap();
    assert!(verifier.verify(&token).await.is_ok());
    clock.advance(Duration::from_secs(300));
    assert_eq!(ring.write().unwrap().prune(clock.now()).len(), 1);
}

/// Item 8 of issue 12: an outside issuer's identifiers are data. E-mail subjects, org
/// names with spaces and base64 `jti`s verify; control characters and overlong values do not.
#[tokio::test]
async fn outside_identifiers_are_accepted_as_data() {
    let verifier = verifier(&clock());
    let mut c = claims();
    c["sub"] = serde_json::json!("ada@example.com");
    c["org"] = serde_json::json!("Acme Inc");
    c["jti"] = serde_json::json!("q1w2+e3/r4==");
    let verified = verifier
        .verify(&forge(ed(), &header(ed()), &c))
        .await
        .unwrap();
    assert_eq!(verified.payload()["sub"], "ada@example.com");
    for (name, bad) in [
        ("sub", serde_json::json!("ada\nroot")),
        ("org", serde_json::json!("acme\u{7f}")),
        ("jti", serde_json::json!("x".repeat(257))),
        ("sub", serde_json::json!("")),
    ] {
        let token = forge(ed(), &header(ed()), &with(name, bad));
        assert!(verifier.verify(&token).await.is_err(), "{name}");
    }
}

/// Item 8 of issue 12: the issuer never signs what its own verifier would refuse.
#[test]
fn issuer_refuses_what_its_verifier_refuses() {
    let ring = || Arc::new(RwLock::new(SigningKeyring::new(ed_key("i"))));
    let issuer = TokenIssuer::builder(ring())
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let mut grant = AccessGrant::new(UserId::new("u").unwrap(), ScopeSet::EMPTY);
    grant.acr = Some(String::new());
    assert!(issuer.issue(&grant).is_err(), "acr: \"\"");
    assert!(
        TokenIssuer::builder(ring())
            .issuer(ISS)
            .audience(AUD)
            .ttl(Duration::from_millis(500))
            .build()
            .is_err(),
        "a lifetime under one second"
    );
    assert!(
        TokenIssuer::builder(ring())
            .issuer(ISS)
            .audience(AUD)
            .ttl(Duration::from_secs(48 * 3600))
            .build()
            .is_err(),
        "a lifetime over the default maximum"
    );
    assert!(
        TokenIssuer::builder(ring())
            .issuer(ISS)
            .audience(AUD)
            .ttl(Duration::from_secs(48 * 3600))
            .max_ttl(Duration::from_secs(72 * 3600))
            .build()
            .is_ok(),
        "the maximum is configurable"
    );
}

/// Item 9 of issue 12: the CRT members of an RSA private key (and `oth`) are private
/// material too.
#[test]
fn jwks_with_crt_private_members_is_refused() {
    for member in ["dp", "dq", "qi", "oth"] {
        let mut set = serde_json::to_value(JwkSet {
            keys: vec![rsa().public_jwk()],
        })
        .unwrap();
        set["keys"][0][member] = serde_json::json!("AQAB");
        assert_eq!(
            JwkSet::parse(set.to_string().as_bytes()).unwrap_err(),
            Error::Key(mcpsec_tokens::KeyError::InvalidSet(
                "contains private or symmetric key material"
            )),
            "{member}"
        );
    }
}
