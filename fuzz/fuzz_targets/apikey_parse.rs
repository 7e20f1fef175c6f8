//! API key parsing (`mcpsec_apikeys::format::parse`) on arbitrary UTF-8: never panics,
//! and a key that parses is exactly `KEY_LEN` bytes starting with `mcp_sk_live_` or
//! `mcp_sk_test_`, exposes the input verbatim as its secret, has the id at bytes 12..28
//! and the last four characters as its hint, and re-parses to the same id and env.
//! Inputs of two bytes or more also mutate one character of a key generated at setup (the
//! position from the first byte, the character from the second): the result must be
//! refused unless the character is unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpsec_apikeys::Env;
use mcpsec_apikeys::format::{ID_LEN, KEY_LEN, PREFIX, generate, parse};
use std::sync::OnceLock;

/// Where the id starts: after `mcp_sk_`, the four-letter env and `_`.
const ID_START: usize = PREFIX.len() + 4 + 1;
const _: () = assert!(ID_START == 12 && ID_START + ID_LEN == 28);

fn generated_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = generate(Env::Live).expect("key generation");
        let text = key.expose_secret().to_owned();
        assert!(parse(&text).is_ok(), "a generated key parses: {key:?}");
        text
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data)
        && let Ok(key) = parse(input)
    {
        assert_eq!(
            input.len(),
            KEY_LEN,
            "a parsed key has the documented length"
        );
        assert!(
            input.starts_with("mcp_sk_live_") || input.starts_with("mcp_sk_test_"),
            "a parsed key has a known prefix and env"
        );
        let expected_env = if input.starts_with("mcp_sk_live_") {
            Env::Live
        } else {
            Env::Test
        };
        assert_eq!(key.env(), expected_env);
        assert_eq!(
            key.expose_secret(),
            input,
            "the secret is the input verbatim"
        );
        assert_eq!(
            key.id().as_str(),
            &input[ID_START..ID_START + ID_LEN],
            "the id is bytes 12..28"
        );
        let last4: String = {
            let chars: Vec<char> = input.chars().collect();
            chars[chars.len().saturating_sub(4)..].iter().collect()
        };
        assert_eq!(key.hint(), last4, "the hint is the last four characters");
        let again = parse(key.expose_secret()).expect("a parsed key parses again");
        assert_eq!(again.id(), key.id());
        assert_eq!(again.env(), key.env());
    }

    if let [pos, ch, ..] = *data {
        let original = generated_key();
        let pos = usize::from(pos) % KEY_LEN;
        // Bytes 0x80..=0xFF become two-byte Latin-1 characters, which change the length.
        let ch = char::from(ch);
        let mut mutated = String::with_capacity(KEY_LEN + 1);
        mutated.push_str(&original[..pos]);
        mutated.push(ch);
        mutated.push_str(&original[pos + 1..]);
        let unchanged = original.as_bytes()[pos] == u8::try_from(ch).unwrap_or(0x80);
        match parse(&mutated) {
            Ok(key) => {
                assert!(
                    unchanged,
                    "a one-character change at {pos} to {ch:?} was accepted: {mutated}"
                );
                assert_eq!(key.expose_secret(), original);
            }
            Err(e) => assert!(
                !unchanged,
                "the unchanged generated key was refused: {e} ({mutated})"
            ),
        }
    }
});
