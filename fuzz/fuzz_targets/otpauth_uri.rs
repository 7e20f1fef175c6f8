//! `otpauth://` URI import (`TotpSecret::from_otpauth_uri`) on arbitrary UTF-8: never
//! panics, refuses input over 2 KiB, and a URI that imports yields a config within the
//! documented limits (6 to 8 digits, a positive step) that exports again with
//! `otpauth_uri(config, "fuzz", "acct")` and re-imports to the same config and the same
//! secret (compared through `to_base32()`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_mfa::TotpSecret;

/// Longest URI `from_otpauth_uri` reads.
const MAX_URI_LEN: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = TotpSecret::from_otpauth_uri(input);
    if input.len() > MAX_URI_LEN {
        assert!(parsed.is_err(), "a URI over 2 KiB was accepted");
        return;
    }
    let Ok((secret, config)) = parsed else {
        return;
    };
    assert!((6..=8).contains(&config.digits), "digits out of range");
    assert!(config.step > 0, "a zero step was accepted");
    let uri = secret
        .otpauth_uri(config, "fuzz", "acct")
        .expect("an imported secret exports");
    let (again, again_config) =
        TotpSecret::from_otpauth_uri(uri.expose_secret()).expect("an exported URI imports again");
    assert_eq!(again_config, config, "config round-trips");
    assert_eq!(
        again.to_base32().expose_secret(),
        secret.to_base32().expose_secret(),
        "secret round-trips"
    );
});
