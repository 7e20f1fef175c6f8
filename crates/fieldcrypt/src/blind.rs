//! Blind indexes: find an encrypted field by equality without decrypting every row.
//!
//! A blind index is `HMAC-SHA256(field key, normalise(value))` truncated to a configured
//! length, stored in a column beside the ciphertext. The field key is derived from the
//! category's index key and the table and column names, so two columns never share index
//! values (CipherSweet's model).
//!
//! # Leakage, and how to choose the length
//! An index reveals which rows hold equal values (after normalisation), to anyone who can
//! read the column: frequency analysis is possible for low-entropy fields. Truncation is
//! the dial: with `b` bits and `n` distinct values, each index value is shared by about
//! `n / 2^b` values, so a lookup returns false positives (the caller decrypts candidates
//! and compares) while equal index values no longer prove equal plaintexts. For an email
//! column with a million users, 32 bits give few false positives and still hide little;
//! choose the shortest length whose false-positive rate you can afford, and never index
//! fields with a handful of possible values (booleans, enums) at all.
//!
//! Index keys are not versioned: rotating one means recomputing the column. Values are
//! compared after the chosen normalisation only (no Unicode NFC/NFKC folding): normalise
//! to one form before indexing if your input can arrive in several. The tenant is not
//! bound: equal values of two tenants in one column have equal index values; put the
//! tenant into the value (`"acme\u{0}ada@example.com"`) if that matters.

use crate::{Category, Error};
use mcpsec_core::SecretBytes;
use mcpsec_core::hmac::{Domain, MacInput, MacKey};
use std::fmt;

const DERIVE_DOMAIN: Domain = Domain::new("mcpsec-blind-index-v1");
/// The largest value indexed.
pub const MAX_INDEXED_VALUE: usize = 64 * 1024;

/// How a value is normalised before it is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// Exactly as given.
    Exact,
    /// Leading and trailing whitespace removed.
    Trim,
    /// Trimmed and lower-cased (Unicode lower case), for emails and account names.
    CaseInsensitive,
}

/// The shape of one blind index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlindIndexConfig {
    /// Bytes kept of the 32-byte HMAC: 2 to 32 (16 to 256 bits); see the module docs.
    pub bytes: usize,
    /// Normalisation before hashing.
    pub normalize: Normalize,
}

/// Computes one column's blind index values.
pub struct BlindIndex {
    mac: MacKey,
    config: BlindIndexConfig,
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndex")
            .field("key", &"[REDACTED]")
            .field("config", &self.config)
            .finish()
    }
}

/// This format frames with 8-byte lengths (it predates [`MacInput::part`]'s 4-byte ones);
/// stored index values depend on it, so it stays.
fn length_prefixed(input: MacInput, part: &[u8]) -> MacInput {
    input
        .raw(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes())
        .raw(part)
}

impl BlindIndex {
    /// Derives the column's key from a category's index key.
    pub(crate) fn derive(
        index_key: &SecretBytes,
        category: &Category,
        table: &str,
        column: &str,
        config: BlindIndexConfig,
    ) -> Result<Self, Error> {
        if !(2..=32).contains(&config.bytes) {
            return Err(Error::InvalidArgument("a blind index keeps 2 to 32 bytes"));
        }
        if table.is_empty() || column.is_empty() || table.len() > 256 || column.len() > 256 {
            return Err(Error::InvalidArgument(
                "table and column names are 1 to 256 bytes",
            ));
        }
        let mut derive = MacKey::new(index_key.expose_secret())
            .map_err(|_| Error::InvalidArgument("index key"))?
            .input(DERIVE_DOMAIN);
        for part in [category.as_str(), table, column] {
            derive = length_prefixed(derive, part.as_bytes());
        }
        // The length and the normalisation are bound too: a 4-byte and an 8-byte index of a
        // column, or an exact and a case-insensitive one, are unrelated.
        let derive = derive
            .raw(&[u8::try_from(config.bytes).unwrap_or(u8::MAX)])
            .raw(&[match config.normalize {
                Normalize::Exact => 0,
                Normalize::Trim => 1,
                Normalize::CaseInsensitive => 2,
            }]);
        let key = zeroize::Zeroizing::new(derive.tag());
        let mac = MacKey::new(key.as_slice()).map_err(|_| Error::InvalidArgument("index key"))?;
        Ok(Self { mac, config })
    }

    /// The index value of `value`, as bytes.
    pub fn compute(&self, value: &str) -> Result<Vec<u8>, Error> {
        if value.len() > MAX_INDEXED_VALUE {
            return Err(Error::TooLarge("indexed value"));
        }
        // The column key is derived for this index alone, so the value is the whole input.
        let full = match self.config.normalize {
            Normalize::Exact => self.mac.tag_unframed(value.as_bytes()),
            Normalize::Trim => self.mac.tag_unframed(value.trim().as_bytes()),
            Normalize::CaseInsensitive => {
                let lowered = zeroize::Zeroizing::new(value.trim().to_lowercase());
                self.mac.tag_unframed(lowered.as_bytes())
            }
        };
        Ok(full
            .get(..self.config.bytes)
            .map(<[u8]>::to_vec)
            .unwrap_or_default())
    }

    /// The index value as lowercase hex, for TEXT columns.
    pub fn compute_hex(&self, value: &str) -> Result<String, Error> {
        use std::fmt::Write;
        let bytes = self.compute(value)?;
        let mut out = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            let _ = write!(out, "{byte:02x}");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{KeyInit, Mac};

    type HmacSha256 = hmac::Hmac<sha2::Sha256>;

    /// Stored index values must keep matching: this is the derivation from before
    /// mcpsec-core's MacKey (8-byte length framing, then the length and normalisation
    /// bytes), computed independently with RustCrypto's HMAC.
    #[test]
    fn stored_index_values_are_unchanged() {
        let index_key = SecretBytes::from_slice(&[5; 32]);
        let category = Category::new("pii").unwrap();
        let config = BlindIndexConfig {
            bytes: 16,
            normalize: Normalize::CaseInsensitive,
        };
        let index = BlindIndex::derive(&index_key, &category, "users", "email", config).unwrap();

        let mut derive = HmacSha256::new_from_slice(&[5; 32]).unwrap();
        derive.update(b"mcpsec-blind-index-v1");
        for part in ["pii", "users", "email"] {
            derive.update(&(part.len() as u64).to_be_bytes());
            derive.update(part.as_bytes());
        }
        derive.update(&[16, 2]);
        let column_key = derive.finalize().into_bytes();
        let mut mac = HmacSha256::new_from_slice(&column_key).unwrap();
        mac.update(b"ada@example.com");
        let expected = mac.finalize().into_bytes();

        assert_eq!(
            index.compute(" Ada@Example.com ").unwrap(),
            expected[..16].to_vec()
        );
    }
}
