//! TOTP code normalisation (`mcpsec_mfa::normalize`) on arbitrary UTF-8 for 6, 7 and 8
//! digits: never panics; input over 32 bytes is refused; and a code that normalises has
//! exactly the requested number of ASCII digits and is the input with only ' ', '-' and
//! '\t' removed (so its digits appear in the input in the same order, and nothing else
//! was dropped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_mfa::normalize;

/// Longest input `normalize` reads (mirrors `MAX_CODE_INPUT` in `totp.rs`).
const MAX_CODE_INPUT: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let stripped: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\t'))
        .collect();
    for digits in 6..=8u8 {
        let Ok(code) = normalize(input, digits) else {
            continue;
        };
        let code = code.as_str();
        assert!(
            input.len() <= MAX_CODE_INPUT,
            "input over {MAX_CODE_INPUT} bytes accepted"
        );
        assert_eq!(code.len(), usize::from(digits), "wrong number of digits");
        assert!(
            code.bytes().all(|b| b.is_ascii_digit()),
            "non-digit in a normalised code"
        );
        // Every output digit appears in the input, in order.
        let mut rest = input.chars();
        for d in code.chars() {
            assert!(
                rest.any(|c| c == d),
                "output digit {d:?} not found in order in the input"
            );
        }
        assert_eq!(
            code, stripped,
            "only ' ', '-' and '\\t' are removed from the input"
        );
    }
});
