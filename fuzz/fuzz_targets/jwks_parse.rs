//! JWK set parsing on arbitrary bytes: never panics, refuses documents over 64 KiB, and a
//! set that parses yields its verifying keys (or an error) without panicking and
//! round-trips through `to_json` to an equal set. Its usable keys and skipped keys account
//! for no more keys than the set has, and the all-or-nothing form succeeds exactly when
//! nothing was skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_tokens::{JwkSet, MAX_JWKS_LEN};

fuzz_target!(|data: &[u8]| {
    let parsed = JwkSet::parse(data);
    if data.len() > MAX_JWKS_LEN {
        assert!(parsed.is_err(), "a document over the size cap parsed");
        return;
    }
    if let Ok(set) = parsed {
        let usable = set.usable_keys();
        assert!(usable.keys.len() + usable.skipped.len() <= set.keys.len());
        assert_eq!(set.verifying_keys().is_ok(), usable.skipped.is_empty());
        let json = set.to_json();
        let back = JwkSet::parse(json.as_bytes()).expect("a parsed set's own JSON parses");
        assert_eq!(back, set, "to_json round-trips to an equal set");
    }
});
