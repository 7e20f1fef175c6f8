//! The ciphertext format: a versioned, authenticated header, the nonce, the ciphertext
//! and the tag; as bytes for binary columns and as prefixed base64url text for TEXT ones.
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1)
//! 1       1     flags (bit 0: sealed with a subject key; bit 1: key id present;
//!               other bits must be 0)
//! 2       1     category length n (1..=64)
//! 3       n     category name ([a-z0-9_])
//! 3+n     4     key version, big-endian (≥ 1)
//! 7+n     8     key id (when bit 1 is set): see below
//! 15+n    12    nonce (random)
//! 27+n    …     ciphertext, then the 16-byte GCM tag
//! ```
//!
//! Everything before the nonce is the header. It is part of the associated data, so a
//! ciphertext whose category, version or flags were edited does not decrypt. The text form
//! is `mcpsec:fc1:` followed by the unpadded base64url encoding of the binary form.
//!
//! The key id is the first 8 bytes of HMAC-SHA256(key, `mcpsec-fieldcrypt-key-id-v1`): it
//! names the key itself, not its version number, so a version number that was handed out
//! twice with different keys (a keyset restored from an older copy and then rotated) is
//! reported as [`Error::KeyMismatch`] instead of looking like tampering. It reveals nothing
//! about the key (a PRF output). Every ciphertext written by this build carries it;
//! ciphertexts written before it (bit 1 clear) still decrypt.

use crate::Error;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use std::sync::Arc;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// The prefix of the text form.
pub const TEXT_PREFIX: &str = "mcpsec:fc1:";
/// Bytes of random nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of GCM tag.
pub const TAG_LEN: usize = 16;
/// The largest plaintext encrypted or decrypted: a field, not a file.
pub const MAX_PLAINTEXT: usize = 1024 * 1024;
/// The longest category name.
pub const MAX_CATEGORY_LEN: usize = 64;
/// The largest binary ciphertext accepted (the largest plaintext plus the largest header,
/// nonce and tag).
pub const MAX_CIPHERTEXT: usize =
    MAX_PLAINTEXT + 3 + MAX_CATEGORY_LEN + 4 + KEY_ID_LEN + NONCE_LEN + TAG_LEN;
/// Bytes of key id in the header.
pub const KEY_ID_LEN: usize = 8;
const KEY_ID_DOMAIN: mcpsec_core::hmac::Domain =
    mcpsec_core::hmac::Domain::new("mcpsec-fieldcrypt-key-id-v1");
/// The largest text form accepted.
pub const MAX_TEXT: usize = TEXT_PREFIX.len() + MAX_CIPHERTEXT.div_ceil(3) * 4;

const FLAG_SUBJECT: u8 = 0b0000_0001;
const FLAG_KEY_ID: u8 = 0b0000_0010;

/// The id a ciphertext records for the key that sealed it (see the module docs).
pub(crate) fn key_id(key: &mcpsec_core::SecretBytes) -> Result<[u8; KEY_ID_LEN], Error> {
    let digest = mcpsec_core::hmac::MacKey::new(key.expose_secret())
        .map_err(|_| Error::InvalidArgument("a data key is 32 bytes"))?
        .input(KEY_ID_DOMAIN)
        .tag();
    let (id, _) = digest
        .split_first_chunk::<KEY_ID_LEN>()
        .ok_or(Error::InvalidArgument("digest"))?;
    Ok(*id)
}

/// A data category (`oauth_tokens`, `totp_secrets`, `pii`): each has its own keyring.
///
/// 1 to 64 bytes of `[a-z0-9_]`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category(Arc<str>);

impl Category {
    /// Validates a category name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        check_category(name)?;
        Ok(Self(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Category {
    fn borrow(&self) -> &str {
        &self.0
    }
}

fn check_category(name: &str) -> Result<(), Error> {
    {
        if name.is_empty() || name.len() > MAX_CATEGORY_LEN {
            return Err(Error::InvalidArgument("a category name is 1 to 64 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::InvalidArgument(
                "a category name is made of a-z, 0-9 and _",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the header of a ciphertext says, readable without any key (`mcpsec crypt info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The format version.
    pub version: u8,
    /// The data category whose keyring encrypted it.
    pub category: Category,
    /// The key version (for subject-keyed data, the subject key's generation).
    pub key_version: u32,
    /// Whether it was sealed with a per-subject data key (crypto-shredding).
    pub subject_keyed: bool,
    /// The id of the key that sealed it (absent in ciphertexts written before key ids).
    pub key_id: Option<[u8; KEY_ID_LEN]>,
}

impl Header {
    /// The encoded header, as it is written and authenticated.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        let mut flags = if self.subject_keyed { FLAG_SUBJECT } else { 0 };
        if self.key_id.is_some() {
            flags |= FLAG_KEY_ID;
        }
        out.push(flags);
        // Category names are at most 64 bytes, so the length fits in a byte.
        out.push(u8::try_from(self.category.as_str().len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.category.as_str().as_bytes());
        out.extend_from_slice(&self.key_version.to_be_bytes());
        if let Some(id) = &self.key_id {
            out.extend_from_slice(id);
        }
    }

    /// The encoded length.
    pub(crate) fn encoded_len(&self) -> usize {
        3 + self.category.as_str().len() + 4 + self.key_id.map_or(0, |_| KEY_ID_LEN)
    }
}

/// A parsed binary ciphertext: the header's fields, and where the nonce and sealed bytes
/// are. Borrowed, so that decryption allocates nothing before the plaintext.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    /// The category name, already validated.
    pub category: &'a str,
    pub key_version: u32,
    pub subject_keyed: bool,
    pub key_id: Option<[u8; KEY_ID_LEN]>,
    /// The header bytes exactly as written (authenticated).
    pub header_bytes: &'a [u8],
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub sealed: &'a [u8],
}

impl Parsed<'_> {
    /// The header as an owned value.
    pub(crate) fn header(&self) -> Result<Header, Error> {
        Ok(Header {
            version: FORMAT_VERSION,
            category: Category::new(self.category)?,
            key_version: self.key_version,
            subject_keyed: self.subject_keyed,
            key_id: self.key_id,
        })
    }
}

/// Parses a binary ciphertext's header and framing, without any key.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, Error> {
    if bytes.len() > MAX_CIPHERTEXT {
        return Err(Error::TooLarge("ciphertext"));
    }
    let (&version, rest) = bytes.split_first().ok_or(Error::Malformed("empty"))?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let (&flags, rest) = rest
        .split_first()
        .ok_or(Error::Malformed("truncated header"))?;
    if flags & !(FLAG_SUBJECT | FLAG_KEY_ID) != 0 {
        return Err(Error::Malformed("unknown flags"));
    }
    let (&name_len, rest) = rest
        .split_first()
        .ok_or(Error::Malformed("truncated header"))?;
    let name_len = usize::from(name_len);
    let (name, rest) = rest
        .split_at_checked(name_len)
        .ok_or(Error::Malformed("truncated header"))?;
    let category = std::str::from_utf8(name).map_err(|_| Error::Malformed("category name"))?;
    check_category(category).map_err(|_| Error::Malformed("category name"))?;
    let (version_bytes, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(Error::Malformed("truncated header"))?;
    let key_version = u32::from_be_bytes(*version_bytes);
    if key_version == 0 {
        return Err(Error::Malformed("key version 0"));
    }
    let (key_id, rest) = if flags & FLAG_KEY_ID != 0 {
        let (id, rest) = rest
            .split_first_chunk::<KEY_ID_LEN>()
            .ok_or(Error::Malformed("truncated header"))?;
        (Some(*id), rest)
    } else {
        (None, rest)
    };
    let (nonce, sealed) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(Error::Malformed("truncated nonce"))?;
    if sealed.len() < TAG_LEN {
        return Err(Error::Malformed("truncated tag"));
    }
    let header_len = 3 + name_len + 4 + key_id.map_or(0, |_| KEY_ID_LEN);
    let header_bytes = bytes
        .get(..header_len)
        .ok_or(Error::Malformed("truncated header"))?;
    Ok(Parsed {
        category,
        key_version,
        subject_keyed: flags & FLAG_SUBJECT != 0,
        key_id,
        header_bytes,
        nonce: *nonce,
        sealed,
    })
}

/// Reads the header of a binary or text ciphertext without decrypting it.
///
/// ```
/// # use mcpsec_fieldcrypt::format::{inspect, TEXT_PREFIX};
/// assert!(inspect(b"not a ciphertext").is_err());
/// assert!(inspect(TEXT_PREFIX.as_bytes()).is_err());
/// ```
pub fn inspect(input: &[u8]) -> Result<Header, Error> {
    if input.starts_with(TEXT_PREFIX.as_bytes()) {
        let text = std::str::from_utf8(input).map_err(|_| Error::Malformed("text form"))?;
        let bytes = from_text(text)?;
        parse(&bytes)?.header()
    } else {
        parse(input)?.header()
    }
}

/// The text form of a binary ciphertext: `mcpsec:fc1:` and unpadded base64url.
pub fn to_text(ciphertext: &[u8]) -> String {
    let mut out = String::with_capacity(TEXT_PREFIX.len() + ciphertext.len().div_ceil(3) * 4);
    out.push_str(TEXT_PREFIX);
    URL_SAFE_NO_PAD.encode_string(ciphertext, &mut out);
    out
}

/// The binary form of a text ciphertext. Surrounding whitespace (a trailing newline from a
/// shell) is ignored; anything else that is not the text form is refused.
pub fn from_text(text: &str) -> Result<Vec<u8>, Error> {
    let text = text.trim_ascii();
    if text.len() > MAX_TEXT {
        return Err(Error::TooLarge("text ciphertext"));
    }
    let body = text
        .strip_prefix(TEXT_PREFIX)
        .ok_or(Error::Malformed("missing mcpsec:fc1: prefix"))?;
    URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| Error::Malformed("base64url"))
}

/// Whether `text` looks like the text form (its prefix), for columns that hold a mix of
/// plaintext legacy values and ciphertexts during a migration.
pub fn is_text_ciphertext(text: &str) -> bool {
    text.starts_with(TEXT_PREFIX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            version: FORMAT_VERSION,
            category: Category::new("pii").unwrap(),
            key_version: 7,
            subject_keyed: true,
            key_id: Some([5; KEY_ID_LEN]),
        };
        let mut bytes = Vec::new();
        header.encode_into(&mut bytes);
        assert_eq!(bytes.len(), header.encoded_len());
        bytes.extend_from_slice(&[0; NONCE_LEN + TAG_LEN]);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.header().unwrap(), header);
        assert_eq!(parsed.sealed.len(), TAG_LEN);
    }

    #[test]
    fn categories_are_validated() {
        assert!(Category::new("oauth_tokens").is_ok());
        for bad in ["", "PII", "a-b", "a b", &"x".repeat(65)] {
            assert!(Category::new(bad).is_err(), "{bad:?}");
        }
    }
}
