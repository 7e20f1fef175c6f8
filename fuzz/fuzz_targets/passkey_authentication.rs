//! The browser's passkey authentication response (`PublicKeyCredential` JSON, the first
//! thing `Passkeys::finish_authentication` parses) on arbitrary bytes: never panics,
//! refuses input over 64 KiB, and a response that parses serialises and parses again to
//! the same credential id and signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_mfa::{MAX_CLIENT_RESPONSE, parse_authentication_response};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_authentication_response(data);
    if data.len() > MAX_CLIENT_RESPONSE {
        assert!(parsed.is_err(), "a response over 64 KiB was accepted");
        return;
    }
    let Ok(credential) = parsed else {
        return;
    };
    let json = serde_json::to_vec(&credential).expect("a parsed response serialises");
    if json.len() > MAX_CLIENT_RESPONSE {
        return;
    }
    let again = parse_authentication_response(&json).expect("a serialised response parses");
    assert_eq!(again.raw_id, credential.raw_id, "credential id round-trips");
    assert_eq!(
        again.response.signature, credential.response.signature,
        "signature round-trips"
    );
});
