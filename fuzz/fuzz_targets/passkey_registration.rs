//! The browser's passkey registration response (`RegisterPublicKeyCredential` JSON, the
//! first thing `Passkeys::finish_registration` parses) and the client-sent `CeremonyId`
//! on arbitrary bytes: never panic, refuse input over 64 KiB, a response that parses
//! serialises and parses again to the same credential id, and a ceremony id parses only
//! as 1 to 64 base64url characters and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_mfa::{CeremonyId, MAX_CLIENT_RESPONSE, parse_registration_response};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match CeremonyId::parse(text) {
            Ok(id) => {
                assert!(valid, "an invalid ceremony id was accepted");
                assert_eq!(id.as_str(), text);
            }
            Err(_) => assert!(!valid, "a valid ceremony id was refused"),
        }
    }

    let parsed = parse_registration_response(data);
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
    let again = parse_registration_response(&json).expect("a serialised response parses");
    assert_eq!(again.raw_id, credential.raw_id, "credential id round-trips");
    assert_eq!(
        again.response.attestation_object, credential.response.attestation_object,
        "attestation object round-trips"
    );
});
