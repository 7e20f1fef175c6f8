//! Key names: `{prefix}:{<tag>}:<kind>`.
//!
//! The tag is in braces, Redis Cluster's hash tag: only it decides the slot, so every key
//! of one record (one subject's counter, one enrollment's replay state) lands in one slot
//! and a script may touch them together, while different records spread over the cluster.
//! The tag is the first 128 bits of a SHA-256 of the store's name and the record's
//! identity, in hex: fixed length, never a `{` or `}` from a subject, and no user id,
//! address or category name in a key.

use mcpsec_core::StoreError;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::Arc;

/// The longest prefix accepted.
pub const MAX_PREFIX_LEN: usize = 128;

/// A validated prefix and the key names under it.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Result<Self, StoreError> {
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !valid {
            return Err(StoreError::rejected(
                "a Redis key prefix: 1 to 128 ASCII letters, digits, '_', '-', '.', ':'",
            ));
        }
        Ok(Self {
            prefix: Arc::from(prefix),
        })
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of `kind` for the record named by `parts` (each length-prefixed, so no two
    /// lists of parts hash alike).
    pub(crate) fn key(&self, kind: &str, parts: &[&[u8]]) -> String {
        let mut hash = Sha256::new();
        for part in std::iter::once(kind.as_bytes()).chain(parts.iter().copied()) {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut tag = String::with_capacity(32);
        for byte in digest.iter().take(16) {
            // Writing to a String cannot fail.
            let _ = write!(tag, "{byte:02x}");
        }
        format!("{}:{{{tag}}}:{kind}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn keys_carry_the_prefix_one_hash_tag_and_the_kind() {
        let keys = Keys::new("app:prod").unwrap();
        let key = keys.key("attempts", &[b"203.0.113.7"]);
        assert!(key.starts_with("app:prod:{"), "{key}");
        assert!(key.ends_with("}:attempts"), "{key}");
        assert_eq!(key.matches('{').count(), 1);
        assert_eq!(key.len(), "app:prod:{".len() + 32 + "}:attempts".len());
        assert!(!key.contains("203.0.113.7"), "no subject in a key name");
    }

    #[test]
    fn parts_are_kept_apart() {
        let keys = Keys::new("p").unwrap();
        assert_ne!(keys.key("k", &[b"ab", b"c"]), keys.key("k", &[b"a", b"bc"]));
        assert_ne!(keys.key("k", &[b"a"]), keys.key("j", &[b"a"]));
        assert_eq!(keys.key("k", &[b"a"]), keys.key("k", &[b"a"]));
    }

    #[test]
    fn prefixes_with_braces_or_spaces_are_refused() {
        for bad in ["", "a{b}", "a b", "é", &"x".repeat(129)] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
        Keys::new("mcpsec:test_1-a.b").unwrap();
    }
}
