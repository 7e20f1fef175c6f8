//! One named test per attack on token verification.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use aws_lc_rs::hmac;
use common::*;
use mcpsec_tokens::{Error, KeySource, TokenVerifier};
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;

async fn verify(token: &str) -> Result<mcpsec_tokens::VerifiedClaims, Error> {
    verifier(&clock()).verify(token).await
}

/// For proptest's synchronous cases.
fn verify_blocking(token: &str) -> Result<mcpsec_tokens::VerifiedClaims, Error> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(verify(token))
}

#[tokio::test]
async fn accepts_a_well_formed_token_for_each_algorithm() {
    for key in [rsa(), ec(), ed()] {
        let claims = verify(&forge(key, &header(key), &claims())).await.unwrap();
        assert_eq!(claims.subject(), "alice");
        assert_eq!(claims.algorithm(), key.algorithm());
    }
}

#[test]
fn builder_refuses_without_issuer_or_audience() {
    let no_iss = TokenVerifier::builder(KeySource::Static(jwks()), mcpsec_core::NullSink)
        .audience(AUD)
        .build();
    assert_eq!(no_iss.unwrap_err(), Error::Config("an issuer is required"));
    let no_aud = TokenVerifier::builder(KeySource::Static(jwks()), mcpsec_core::NullSink)
        .issuer(ISS)
        .build();
    assert_eq!(
        no_aud.unwrap_err(),
        Error::Config("an audience is required")
    );
}

#[tokio::test]
async fn rejects_alg_none_in_any_capitalisation() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": "rsa-1"});
        let unsigned = format!(
            "{}.{}.",
            b64(h.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        assert_eq!(
            verify(&unsigned).await.unwrap_err(),
            Error::Malformed,
            "{alg} with empty signature"
        );
        // With a signature part present, the algorithm check still refuses it.
        assert_eq!(
            verify(&format!("{unsigned}AAAA")).await.unwrap_err(),
            Error::WrongAlgorithm,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn rejects_hs256_signed_with_rsa_public_key() {
    let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"});
    let input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let public = serde_json::to_vec(&rsa().public_jwk()).unwrap();
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &public),
        input.as_bytes(),
    );
    let token = format!("{input}.{}", b64(mac.as_ref()));
    assert_eq!(verify(&token).await.unwrap_err(), Error::WrongAlgorithm);
}

#[tokio::test]
async fn rejects_algorithm_and_key_type_mismatch() {
    // ES256 header naming the RSA key, signed with the EC key.
    let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": "rsa-1"});
    assert_eq!(
        verify(&forge(ec(), &h, &claims())).await.unwrap_err(),
        Error::WrongAlgorithm
    );
    // RS256 header naming the EC key.
    let h = json!({"alg": "RS256", "typ": "at+jwt", "kid": "ec-1"});
    assert_eq!(
        verify(&forge(rsa(), &h, &claims())).await.unwrap_err(),
        Error::WrongAlgorithm
    );
    // Right header, wrong signer: the signature does not verify.
    let h = header(rsa());
    let mut h2 = h.clone();
    h2["kid"] = json!("ed-1");
    h2["alg"] = json!("EdDSA");
    assert_eq!(
        verify(&forge(rsa(), &h2, &claims())).await.unwrap_err(),
        Error::BadSignature
    );
}

#[tokio::test]
async fn rejects_unknown_or_malicious_kid() {
    for kid in [
        json!("nope"),
        json!("../../etc/passwd"),
        json!("' OR 1=1 --"),
        json!(""),
        json!(7),
    ] {
        let h = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
        let err = verify(&forge(rsa(), &h, &claims())).await.unwrap_err();
        assert!(
            matches!(err, Error::UnknownKey | Error::Malformed),
            "{kid}: {err:?}"
        );
    }
    let h = json!({"alg": "RS256", "typ": "at+jwt"});
    assert_eq!(
        verify(&forge(rsa(), &h, &claims())).await.unwrap_err(),
        Error::UnknownKey
    );
}

#[tokio::test]
async fn rejects_embedded_jwk_jku_x5u_x5c() {
    for member in ["jwk", "jku", "x5u", "x5c"] {
        let mut h = header(rsa());
        h[member] = json!(serde_json::to_value(rsa().public_jwk()).unwrap());
        assert_eq!(
            verify(&forge(rsa(), &h, &claims())).await.unwrap_err(),
            Error::EmbeddedKey,
            "{member}"
        );
    }
}

#[tokio::test]
async fn rejects_crit() {
    let mut h = header(rsa());
    h["crit"] = json!(["exp"]);
    assert_eq!(
        verify(&forge(rsa(), &h, &claims())).await.unwrap_err(),
        Error::CriticalHeader
    );
}

#[tokio::test]
async fn rejects_wrong_or_missing_typ_and_accepts_equivalent_spellings() {
    for typ in [json!("JOSE"), json!("id_token+jwt"), json!(1), json!(null)] {
        let mut h = header(rsa());
        if typ.is_null() {
            h.as_object_mut().unwrap().remove("typ");
        } else {
            h["typ"] = typ.clone();
        }
        assert_eq!(
            verify(&forge(rsa(), &h, &claims())).await.unwrap_err(),
            Error::WrongType,
            "{typ}"
        );
    }
    for typ in ["JWT", "at+JWT", "application/at+jwt"] {
        let mut h = header(rsa());
        h["typ"] = json!(typ);
        assert!(verify(&forge(rsa(), &h, &claims())).await.is_ok(), "{typ}");
    }
}

#[tokio::test]
async fn rejects_missing_or_wrongly_typed_aud() {
    assert_eq!(
        verify(&forge(rsa(), &header(rsa()), &with("aud", json!(null))))
            .await
            .unwrap_err(),
        Error::MissingClaim("aud")
    );
    for aud in [json!(123), json!({"a": 1}), json!([AUD, 5]), json!(true)] {
        let err = verify(&forge(rsa(), &header(rsa()), &with("aud", aud.clone())))
            .await
            .unwrap_err();
        assert_eq!(err, Error::InvalidClaim("aud"), "{aud}");
    }
    for aud in [json!("other"), json!([]), json!(["other", "x"])] {
        let err = verify(&forge(rsa(), &header(rsa()), &with("aud", aud.clone())))
            .await
            .unwrap_err();
        assert_eq!(err, Error::WrongAudience, "{aud}");
    }
    assert!(
        verify(&forge(
            rsa(),
            &header(rsa()),
            &with("aud", json!(["x", AUD]))
        ))
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn rejects_missing_or_wrongly_typed_iss() {
    assert_eq!(
        verify(&forge(rsa(), &header(rsa()), &with("iss", json!(null))))
            .await
            .unwrap_err(),
        Error::MissingClaim("iss")
    );
    assert_eq!(
        verify(&forge(rsa(), &header(rsa()), &with("iss", json!([ISS]))))
            .await
            .unwrap_err(),
        Error::InvalidClaim("iss")
    );
    assert_eq!(
        verify(&forge(
            rsa(),
            &header(rsa()),
            &with("iss", json!("https://evil"))
        ))
        .await
        .unwrap_err(),
        Error::WrongIssuer
    );
}

#[tokio::test]
async fn rejects_missing_or_wrongly_typed_exp() {
    assert_eq!(
        verify(&forge(rsa(), &header(rsa()), &with("exp", json!(null))))
            .await
            .unwrap_err(),
        Error::MissingClaim("exp")
    );
    for exp in [json!("1999999999"), json!(-5), json!([1]), json!(1e300)] {
        let err = verify(&forge(rsa(), &header(rsa()), &with("exp", exp.clone())))
            .await
            .unwrap_err();
        assert_eq!(err, Error::InvalidClaim("exp"), "{exp}");
    }
}

#[tokio::test]
async fn exp_equal_to_now_is_expired_with_zero_leeway() {
    let clock = clock();
    let strict = TokenVerifier::builder(KeySource::Static(jwks()), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .leeway(Duration::ZERO)
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    let token = forge(rsa(), &header(rsa()), &with("exp", json!(NOW)));
    assert_eq!(strict.verify(&token).await.unwrap_err(), Error::Expired);
    let token = forge(rsa(), &header(rsa()), &with("exp", json!(NOW + 1)));
    assert!(strict.verify(&token).await.is_ok());
    // With the default 30 s leeway, exp is honoured until exp + 30 s, exclusive.
    let token = forge(rsa(), &header(rsa()), &with("exp", json!(NOW - 30)));
    assert_eq!(
        verifier(&clock).verify(&token).await.unwrap_err(),
        Error::Expired
    );
}

#[tokio::test]
async fn rejects_future_nbf() {
    let token = forge(rsa(), &header(rsa()), &with("nbf", json!(NOW + 31)));
    assert_eq!(verify(&token).await.unwrap_err(), Error::NotYetValid);
    let token = forge(rsa(), &header(rsa()), &with("nbf", json!(NOW + 29)));
    assert!(verify(&token).await.is_ok());
}

#[tokio::test]
async fn rejects_far_future_iat_and_missing_iat() {
    let token = forge(rsa(), &header(rsa()), &with("iat", json!(NOW + 3600)));
    assert_eq!(verify(&token).await.unwrap_err(), Error::IssuedInFuture);
    let token = forge(rsa(), &header(rsa()), &with("iat", json!(null)));
    assert_eq!(
        verify(&token).await.unwrap_err(),
        Error::MissingClaim("iat")
    );
}

#[tokio::test]
async fn rejects_empty_or_wrongly_typed_sub() {
    for sub in [json!(""), json!(42), json!(null), json!("tab\there")] {
        let err = verify(&forge(rsa(), &header(rsa()), &with("sub", sub.clone())))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidClaim("sub") | Error::MissingClaim("sub")),
            "{sub}: {err:?}"
        );
    }
    // An outside subject is data: it verifies, but names no mcpsec user by itself.
    let claims = verify(&forge(
        rsa(),
        &header(rsa()),
        &with("sub", json!("has space")),
    ))
    .await
    .unwrap();
    assert_eq!(claims.subject(), "has space");
    assert_eq!(
        claims.principal().unwrap_err(),
        Error::NotAnIdentifier("sub")
    );
    let principal = claims.principal_mapped(
        mcpsec_core::UserId::new("u-42").unwrap(),
        mcpsec_core::OrgId::new("acme").unwrap(),
        mcpsec_access::Role::Viewer,
    );
    assert_eq!(principal.subject().as_str(), "u-42");
}

#[tokio::test]
async fn unknown_scopes_are_dropped_and_grant_nothing() {
    let token = forge(
        rsa(),
        &header(rsa()),
        &with("scope", json!("openid mcp:* MCP:ADMIN mcp:read")),
    );
    let claims = verify(&token).await.unwrap();
    assert_eq!(claims.scopes().to_string(), "mcp:read");
    assert_eq!(
        verifier(&clock())
            .verify_with_scope(&token, mcpsec_access::Scope::McpWrite)
            .await
            .unwrap_err(),
        Error::InsufficientScope
    );
}

#[tokio::test]
async fn rejects_oversize_token_before_decoding() {
    let token = format!("{}.{}.{}", "A".repeat(5000), "B".repeat(5000), "C");
    assert_eq!(verify(&token).await.unwrap_err(), Error::TooLarge);
}

#[tokio::test]
async fn rejects_duplicate_members() {
    let h = br#"{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","kid":"rsa-1"}"#;
    let token = forge_raw(rsa(), h, claims().to_string().as_bytes());
    assert_eq!(verify(&token).await.unwrap_err(), Error::DuplicateMember);
    let body = claims().to_string();
    let doubled = body.replacen(
        "\"sub\":\"alice\"",
        "\"sub\":\"alice\",\"sub\":\"admin\"",
        1,
    );
    let token = forge_raw(
        rsa(),
        header(rsa()).to_string().as_bytes(),
        doubled.as_bytes(),
    );
    assert_eq!(verify(&token).await.unwrap_err(), Error::DuplicateMember);
}

#[tokio::test]
async fn rejects_wrong_number_of_parts() {
    let token = forge(rsa(), &header(rsa()), &claims());
    for bad in [
        token.splitn(3, '.').take(2).collect::<Vec<_>>().join("."),
        format!("{token}.extra"),
        format!(".{token}"),
        String::new(),
        "..".to_owned(),
    ] {
        assert_eq!(verify(&bad).await.unwrap_err(), Error::Malformed, "{bad}");
    }
}

#[tokio::test]
async fn rejects_truncated_and_repadded_signature() {
    let token = forge(rsa(), &header(rsa()), &claims());
    let truncated = &token[..token.len() - 4];
    assert!(matches!(
        verify(truncated).await.unwrap_err(),
        Error::BadSignature | Error::Malformed
    ));
    assert_eq!(
        verify(&format!("{token}==")).await.unwrap_err(),
        Error::Malformed
    );
    let padded_sig = format!("{token}=");
    assert_eq!(verify(&padded_sig).await.unwrap_err(), Error::Malformed);
}

#[tokio::test]
async fn expired_key_stops_verifying_once_removed() {
    use mcpsec_core::KeyId;
    use mcpsec_tokens::{Algorithm, SigningKey, SigningKeyring};
    let clock = clock();
    let first = SigningKey::generate(KeyId::new("k1").unwrap(), Algorithm::EdDSA).unwrap();
    let mut ring = SigningKeyring::new(first);
    ring.add_next(SigningKey::generate(KeyId::new("k2").unwrap(), Algorithm::EdDSA).unwrap())
        .unwrap();
    let old_key = ring.current().unwrap();
    let old_token = forge(&old_key, &header(&old_key), &claims());
    let verifier = TokenVerifier::builder(KeySource::Static(ring.jwks()), mcpsec_core::NullSink)
        .issuer(ISS)
        .audience(AUD)
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    let lifetime = Duration::from_secs(3600);
    ring.rotate(
        mcpsec_core::Clock::now(&clock),
        lifetime,
        SigningKey::generate(KeyId::new("k3").unwrap(), Algorithm::EdDSA).unwrap(),
    )
    .unwrap();
    verifier.set_keys(&ring.jwks()).unwrap();
    assert!(
        verifier.verify(&old_token).await.is_ok(),
        "retired keys still verify"
    );
    clock.advance(lifetime + mcpsec_tokens::MAX_LEEWAY);
    assert_eq!(ring.prune(mcpsec_core::Clock::now(&clock)).len(), 1);
    verifier.set_keys(&ring.jwks()).unwrap();
    assert_eq!(
        verifier.verify(&old_token).await.unwrap_err(),
        Error::UnknownKey
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any byte of a token changed to any other byte, for every algorithm (RS256, the
    /// default, included). A change that makes the bytes invalid UTF-8 arrives the way a
    /// lossy header decoder would hand it over (U+FFFD): refused too.
    #[test]
    fn any_one_byte_change_is_refused(
        key in prop::sample::select(vec![0usize, 1, 2]),
        index in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let key = [rsa(), ec(), ed()][key];
        let token = forge(key, &header(key), &claims());
        prop_assert!(verify_blocking(&token).is_ok());
        let mut bytes = token.clone().into_bytes();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let changed = String::from_utf8_lossy(&bytes);
        prop_assert!(verify_blocking(&changed).is_err(), "{:?}: changed byte {} accepted", key.algorithm(), i);
    }
}
