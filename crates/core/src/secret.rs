//! Secret material: zeroized on drop, redacted in `Debug`, compared in constant time.
//!
//! Neither type implements `Display`, `Serialize` or `Clone`: reading the secret is always an
//! explicit, greppable [`SecretBytes::expose_secret`] call, and copies are made on purpose.

use crate::Error;
use crate::random::{fill_random, random_from_alphabet};
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

const REDACTED: &str = "[REDACTED]";

/// Secret bytes (keys, peppers, raw token secrets).
///
/// Guarantees: the buffer (its whole capacity) is overwritten with zeros on drop; `Debug`
/// prints `[REDACTED]`; `==` runs in time that depends only on the lengths, never on the
/// contents. Does not guarantee that no copy exists elsewhere: copies made before the
/// value was wrapped, or by the allocator on growth, are the caller's to avoid.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes {
    bytes: Vec<u8>,
}

impl SecretBytes {
    /// Wraps `bytes`, taking ownership so no unzeroized copy stays behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    /// Copies `bytes` into a new secret. The caller remains responsible for its own copy.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.to_vec(),
        }
    }

    /// `len` bytes from the operating system's CSPRNG.
    pub fn random(len: usize) -> Result<Self, Error> {
        let mut secret = Self {
            bytes: vec![0u8; len],
        };
        fill_random(&mut secret.bytes)?;
        Ok(secret)
    }

    /// The secret bytes. Every read of a secret goes through this call.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }

    /// Length in bytes (not secret: lengths of mcpsec secrets are fixed by their formats).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// An explicit copy, for the rare place that must own two (a cache and a store).
    pub fn duplicate(&self) -> Self {
        Self::from_slice(&self.bytes)
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl ConstantTimeEq for SecretBytes {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.bytes.as_slice().ct_eq(other.bytes.as_slice())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SecretBytes {}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A secret string (an API key as shown once, a recovery code, a password).
///
/// Same guarantees as [`SecretBytes`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretString {
    text: String,
}

impl SecretString {
    /// Wraps `text`, taking ownership.
    pub fn new(text: String) -> Self {
        Self { text }
    }

    /// `len` characters drawn uniformly from `alphabet` (ASCII) with the OS CSPRNG, by
    /// rejection sampling so that no symbol is more likely than another.
    ///
    /// Each character carries log2(alphabet.len()) bits: 43 base62 characters hold 256 bits.
    pub fn random_from_alphabet(len: usize, alphabet: &str) -> Result<Self, Error> {
        if !alphabet.is_ascii() {
            return Err(Error::InvalidArgument("alphabet must be ASCII"));
        }
        let bytes = zeroize::Zeroizing::new(random_from_alphabet(len, alphabet.as_bytes())?);
        // ASCII in, ASCII out: from_utf8 cannot fail, but we do not unwrap on principle.
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::InvalidArgument("alphabet must be ASCII"))?
            .to_owned();
        Ok(Self { text })
    }

    /// The secret text. Every read of a secret goes through this call.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl ConstantTimeEq for SecretString {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.text.as_bytes().ct_eq(other.text.as_bytes())
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SecretString {}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE62: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    #[test]
    fn debug_is_redacted() {
        let bytes = SecretBytes::from_slice(b"hunter2");
        let text = SecretString::new("hunter2".into());
        assert_eq!(format!("{bytes:?}"), "[REDACTED]");
        assert_eq!(format!("{text:?}"), "[REDACTED]");
        assert_eq!(format!("{:#?}", Some(&text)), "Some(\n    [REDACTED],\n)");
    }

    #[test]
    fn zeroize_clears_the_buffer() {
        let mut secret = SecretBytes::from_slice(b"key material");
        secret.zeroize();
        assert!(
            secret.is_empty(),
            "zeroize wipes the contents and then clears the vector"
        );
    }

    #[test]
    fn random_secrets_have_the_length_asked_and_differ() {
        let a = SecretBytes::random(32).unwrap();
        let b = SecretBytes::random(32).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let s = SecretString::random_from_alphabet(43, BASE62).unwrap();
        assert_eq!(s.len(), 43);
        assert!(s.expose_secret().chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn non_ascii_alphabet_is_rejected() {
        assert!(SecretString::random_from_alphabet(4, "aé").is_err());
    }

    proptest! {
        #[test]
        fn equality_matches_byte_equality(a in proptest::collection::vec(any::<u8>(), 0..64),
                                          b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (sa, sb) = (SecretBytes::from_slice(&a), SecretBytes::from_slice(&b));
            prop_assert_eq!(sa == sb, a == b);
            prop_assert!(sa == sa.duplicate());
        }
    }
}
