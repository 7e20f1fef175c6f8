//! The key format: round trips, strict parsing, checksum, the published regex.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use mcpsec_apikeys::format::{self, KEY_LEN, SCANNER_REGEX};
use mcpsec_apikeys::{Env, Error};
use proptest::prelude::*;

#[test]
fn generated_keys_have_the_documented_shape() {
    for env in [Env::Live, Env::Test] {
        let key = format::generate(env).unwrap();
        let text = key.expose_secret();
        assert_eq!(text.len(), KEY_LEN);
        assert!(text.starts_with(&format!("mcp_sk_{env}_")));
        assert_eq!(key.hint(), &text[text.len() - 4..]);
        assert!(matches_scanner_regex(text), "{SCANNER_REGEX}");
        let parsed = format::parse(text).unwrap();
        assert_eq!(parsed.id(), key.id());
        assert_eq!(parsed.env(), env);
        assert!(
            !format!("{parsed:?}").contains(&text[30..70]),
            "Debug shows no secret"
        );
    }
}

/// The published expression, checked by hand (no regex engine in the tree):
/// `\bmcp_sk_(live|test)_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}\b`.
fn matches_scanner_regex(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("mcp_sk_") else {
        return false;
    };
    let Some(rest) = rest
        .strip_prefix("live_")
        .or_else(|| rest.strip_prefix("test_"))
    else {
        return false;
    };
    let alnum = |t: &str| t.bytes().all(|b| b.is_ascii_alphanumeric());
    rest.len() == 16 + 1 + 49 && alnum(&rest[..16]) && &rest[16..17] == "_" && alnum(&rest[17..])
}

#[test]
fn malformed_and_bad_checksum_are_distinct_errors() {
    let key = format::generate(Env::Live).unwrap();
    let text = key.expose_secret().to_owned();
    assert_eq!(format::parse("").unwrap_err(), Error::Malformed);
    assert_eq!(
        format::parse(&text[..KEY_LEN - 1]).unwrap_err(),
        Error::Malformed
    );
    assert_eq!(
        format::parse(&format!("{text}x")).unwrap_err(),
        Error::Malformed
    );
    assert_eq!(
        format::parse(&text.replacen("mcp_sk_", "mcp_pk_", 1)).unwrap_err(),
        Error::Malformed
    );
    assert_eq!(
        format::parse(&text.replacen("_live_", "_prod_", 1)).unwrap_err(),
        Error::Malformed
    );
    let mut bad_sum = text.clone().into_bytes();
    let last = bad_sum.len() - 1;
    bad_sum[last] = if bad_sum[last] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        format::parse(std::str::from_utf8(&bad_sum).unwrap()).unwrap_err(),
        Error::BadChecksum
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_single_character_change_is_rejected(index in 0usize..KEY_LEN, replacement in any::<char>()) {
        let key = format::generate(Env::Test).unwrap();
        let text = key.expose_secret();
        let original = text.chars().nth(index).unwrap();
        prop_assume!(original != replacement);
        let changed: String = text.chars().enumerate().map(|(i, c)| if i == index { replacement } else { c }).collect();
        prop_assert!(format::parse(&changed).is_err());
    }

    #[test]
    fn parse_never_panics_and_accepts_only_checksummed_keys(input in "\\PC{0,100}") {
        if let Ok(parsed) = format::parse(&input) {
            prop_assert_eq!(parsed.expose_secret(), input.as_str());
        }
    }

    #[test]
    fn round_trip(live in any::<bool>()) {
        let env = if live { Env::Live } else { Env::Test };
        let key = format::generate(env).unwrap();
        let parsed = format::parse(key.expose_secret()).unwrap();
        prop_assert_eq!(parsed.id(), key.id());
        prop_assert_eq!(parsed.env(), env);
    }
}
