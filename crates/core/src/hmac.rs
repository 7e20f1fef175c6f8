//! Keyed HMAC-SHA256 with explicit domain separation: one implementation for every tag,
//! fingerprint and keyed hash in the workspace.
//!
//! A MAC input is always built from a [`Domain`] first: a constant label naming what the
//! tag is for, so a tag computed for one purpose (a recovery-code hash, say) is never a
//! valid tag for another (an email code) even under the same key. After the label come
//! the fields: [`MacInput::part`] frames a variable-length field with its 4-byte
//! big-endian length, so `("a", "bc")` and `("ab", "c")` never collide;
//! [`MacInput::raw`] appends bytes unframed, for a field whose length the domain fixes
//! (a version number, a digest, a nonce) or for the one last field.
//!
//! Formats fixed outside this workspace or persisted before it had this module (a webhook
//! receiver checking `HMAC(body)`, API-key hashes stored as `HMAC(pepper, key)`, blind
//! index values under a per-column derived key) use [`MacKey::tag_unframed`], named so
//! that every place without a domain label is greppable.
//!
//! The keyed state is wiped on drop; `Debug` never shows it; [`MacInput::verify`]
//! compares in constant time.

use crate::Error;
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;

/// The least key length [`MacKey::new`] accepts: 32 bytes, SHA-256's output size, as
/// RFC 2104 section 3 recommends.
pub const MIN_MAC_KEY_LEN: usize = 32;

/// What a tag is for: a constant label bound in front of every input.
///
/// Labels are versioned (`mcpsec-email-code-v1`) and no label of the workspace is a
/// prefix of another; changing a label changes every tag computed with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain(&'static str);

impl Domain {
    /// A domain named `label`.
    pub const fn new(label: &'static str) -> Self {
        Self(label)
    }

    /// The label.
    pub const fn label(&self) -> &'static str {
        self.0
    }
}

/// An HMAC-SHA256 key, keyed once. `Debug` prints `[REDACTED]`.
#[derive(Clone)]
pub struct MacKey {
    state: HmacSha256,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey([REDACTED])")
    }
}

impl MacKey {
    /// Keys a MAC with `key`, which must be at least [`MIN_MAC_KEY_LEN`] bytes from a CSPRNG.
    pub fn new(key: &[u8]) -> Result<Self, Error> {
        if key.len() < MIN_MAC_KEY_LEN {
            return Err(Error::InvalidArgument("MAC keys are at least 32 bytes"));
        }
        Self::keyed(key)
    }

    /// A MAC under a fresh random key, for tags that live only in this process (cache
    /// fingerprints).
    pub fn random() -> Result<Self, Error> {
        let key = crate::SecretBytes::random(MIN_MAC_KEY_LEN)?;
        Self::keyed(key.expose_secret())
    }

    fn keyed(key: &[u8]) -> Result<Self, Error> {
        HmacSha256::new_from_slice(key)
            .map(|state| Self { state })
            .map_err(|_| Error::InvalidArgument("MAC key rejected"))
    }

    /// Starts an input for `domain`.
    pub fn input(&self, domain: Domain) -> MacInput {
        let mut state = self.state.clone();
        state.update(domain.0.as_bytes());
        MacInput { state }
    }

    /// `HMAC(key, message)` with no domain label, for formats defined outside this
    /// workspace or already persisted. Anything new uses [`MacKey::input`].
    pub fn tag_unframed(&self, message: &[u8]) -> [u8; MAC_LEN] {
        let mut state = self.state.clone();
        state.update(message);
        state.finalize().into_bytes().into()
    }

    /// Checks a [`MacKey::tag_unframed`] tag in constant time.
    pub fn verify_unframed(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut state = self.state.clone();
        state.update(message);
        state.verify_slice(tag).is_ok()
    }
}

/// An input being built; finish it with [`MacInput::tag`] or [`MacInput::verify`].
#[must_use = "an input does nothing until tagged or verified"]
pub struct MacInput {
    state: HmacSha256,
}

impl std::fmt::Debug for MacInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacInput([REDACTED])")
    }
}

impl MacInput {
    /// Appends a variable-length field, framed by its length as 4 bytes big-endian.
    pub fn part(mut self, bytes: &[u8]) -> Self {
        // Fields are bounded far below 4 GiB by every caller; saturating keeps this total.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.state.update(&len.to_be_bytes());
        self.state.update(bytes);
        self
    }

    /// Appends bytes unframed: only for a field whose length the domain fixes, or for the
    /// last field of the input.
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.state.update(bytes);
        self
    }

    /// The tag.
    pub fn tag(self) -> [u8; MAC_LEN] {
        self.state.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of this input (a prefix is refused), in constant time.
    pub fn verify(self, tag: &[u8]) -> bool {
        self.state.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 4231 section 4: test cases 1-4, 6 and 7 (case 5 is a truncated tag), SHA-256.
    #[test]
    fn rfc_4231_known_answers() {
        let long_key = vec![0xaa; 131];
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                (1..=25).collect(),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                long_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                long_key,
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            let mac = MacKey::keyed(&key).unwrap();
            assert_eq!(mac.tag_unframed(&data).to_vec(), hex(expected));
            assert!(mac.verify_unframed(&data, &hex(expected)));
        }
        // The label is the first bytes of the input and nothing else is added: a domain
        // named like case 1's message gives case 1's tag.
        let case_1 = MacKey::keyed(&[0x0b; 20]).unwrap();
        assert_eq!(
            case_1.input(Domain::new("Hi There")).tag().to_vec(),
            hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
    }

    #[test]
    fn parts_are_framed_so_boundaries_matter() {
        let mac = MacKey::new(&[7; 32]).unwrap();
        let d = Domain::new("mcpsec-test-v1");
        let a = mac.input(d).part(b"a").part(b"bc").tag();
        let b = mac.input(d).part(b"ab").part(b"c").tag();
        assert_ne!(a, b);
        // The framing is exactly label ‖ u32be(len) ‖ bytes, per part.
        let manual = mac.tag_unframed(b"mcpsec-test-v1\0\0\0\x01a\0\0\0\x02bc");
        assert_eq!(a, manual);
    }

    #[test]
    fn domains_separate_tags_under_one_key() {
        let mac = MacKey::new(&[7; 32]).unwrap();
        let one = mac.input(Domain::new("mcpsec-one-v1")).part(b"x").tag();
        let two = mac.input(Domain::new("mcpsec-two-v1")).part(b"x").tag();
        assert_ne!(one, two);
        assert!(
            mac.input(Domain::new("mcpsec-one-v1"))
                .part(b"x")
                .verify(&one)
        );
        assert!(
            !mac.input(Domain::new("mcpsec-two-v1"))
                .part(b"x")
                .verify(&one)
        );
        assert!(
            !mac.input(Domain::new("mcpsec-one-v1"))
                .part(b"x")
                .verify(&one[..16])
        );
    }

    #[test]
    fn short_keys_are_refused_and_debug_redacts() {
        assert!(MacKey::new(&[1; 31]).is_err());
        let mac = MacKey::new(&[0x41; 32]).unwrap();
        assert_eq!(format!("{mac:?}"), "MacKey([REDACTED])");
        assert_eq!(
            format!("{:?}", mac.input(Domain::new("d"))),
            "MacInput([REDACTED])"
        );
        assert_ne!(
            MacKey::random().unwrap().tag_unframed(b"m"),
            MacKey::random().unwrap().tag_unframed(b"m")
        );
    }
}
