//! Typed identifier validation on arbitrary input: never panics, and what it accepts is
//! within the documented rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_core::{MAX_ID_LEN, UserId};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = UserId::new(input) {
        assert_eq!(id.as_str(), input);
        assert!(!input.is_empty() && input.len() <= MAX_ID_LEN);
        assert!(input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:_|-".contains(&b)));
        assert!(!input.starts_with("mcp_sk_") && !input.starts_with("eyJ"));
    }
});
