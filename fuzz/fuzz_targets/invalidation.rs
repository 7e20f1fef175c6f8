//! Invalidation wire messages (`mcpsec_core::Invalidation::parse`) on arbitrary bytes: never
//! panics, and a message that parses is exactly the encoding of what it parsed to (one
//! spelling per announcement), within `MAX_INVALIDATION_LEN`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_core::{Invalidation, MAX_INVALIDATION_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(what) = Invalidation::parse(data) {
        let wire = what.encode();
        assert!(wire.len() <= MAX_INVALIDATION_LEN);
        assert_eq!(wire.as_bytes(), data, "one spelling per announcement");
    }
});
