//! Access-token verification on arbitrary strings, against a verifier with one fixed
//! Ed25519 key and a stopped clock: never panics, and nothing verifies except the one
//! token signed at setup (the fuzzer cannot forge an Ed25519 signature). Short inputs are
//! also spliced, base64url-encoded, into that token's payload: the result must be refused
//! unless it is byte-for-byte the original token.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mcpsec_access::{Role, ScopeSet};
use mcpsec_core::{KeyId, ManualClock, OrgId, SharedClock, UserId};
use mcpsec_tokens::{
    AccessGrant, Algorithm, KeySource, SigningKey, SigningKeyring, TokenIssuer, TokenVerifier,
};
use std::sync::{Arc, OnceLock, RwLock};

const ISSUER: &str = "https://auth.fuzz.example";
const AUDIENCE: &str = "mcp";
/// 2026-01-01T00:00:00Z; the clock never moves, so the setup token stays valid.
const NOW: u64 = 1_767_225_600;
/// Inputs up to this length are also spliced into the valid token's payload.
const MAX_SPLICE: usize = 256;

struct Setup {
    verifier: TokenVerifier,
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
        let issuer = TokenIssuer::builder(keyring)
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .clock(clock.clone())
            .build()
            .expect("issuer builds");
        let verifier = TokenVerifier::builder(KeySource::Static(jwks))
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
        verifier
            .verify(&token)
            .expect("the setup token verifies at setup");
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!("issued token is not three parts: {token}");
        };
        Setup {
            header_b64: header_b64.to_owned(),
            signature_b64: signature_b64.to_owned(),
            verifier,
            token,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();

    if let Ok(input) = std::str::from_utf8(data)
        && setup.verifier.verify(input).is_ok()
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
        if setup.verifier.verify(&spliced).is_ok() {
            assert_eq!(
                spliced, setup.token,
                "a spliced payload verified under the original signature"
            );
        }
    }
});
