//! The scope parsers (strict for configuration, tolerant for tokens) on arbitrary input:
//! never panic, and agree with each other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_access::{MAX_SCOPE_LEN, ScopeSet};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let strict = ScopeSet::parse_strict(input);
    let tolerant = ScopeSet::parse_tolerant(input);
    if input.len() > MAX_SCOPE_LEN {
        assert!(strict.is_err() && tolerant.is_err());
        return;
    }
    let tolerant = tolerant.expect("tolerant parsing only fails over the cap");
    if let Ok(strict) = strict {
        assert_eq!(strict, tolerant, "strict success implies the same set");
        assert_eq!(ScopeSet::parse_strict(&strict.to_string()).ok(), Some(strict));
    }
    // Tolerant parsing only keeps scopes that appear verbatim as tokens.
    for scope in tolerant.iter() {
        assert!(input.split(' ').any(|t| t == scope.as_str()));
    }
});
