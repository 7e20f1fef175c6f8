//! The key format: `mcp_sk_{env}_{id}_{secret}{checksum}`.
//!
//! - `env`: `live` or `test`;
//! - `id`: 16 base62 characters (about 95 bits), public, finds the record in O(1);
//! - `secret`: 43 base62 characters (256 bits) from the OS CSPRNG;
//! - `checksum`: CRC32 of everything before it, as 6 base62 characters (zero-padded),
//!   so scanners and servers reject junk without a lookup.
//!
//! The regular expression for secret scanners (the whole key is 78 characters):
//!
//! ```text
//! \bmcp_sk_(live|test)_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}\b
//! ```

use crate::Error;
use mcpsec_core::{KeyId, SecretString};

/// The prefix of every key.
pub const PREFIX: &str = "mcp_sk_";
/// Length of the public id, in base62 characters.
pub const ID_LEN: usize = 16;
/// Length of the secret, in base62 characters (43 × log2(62) ≈ 256 bits).
pub const SECRET_LEN: usize = 43;
/// Length of the checksum, in base62 characters (62^6 > 2^32).
pub const CHECKSUM_LEN: usize = 6;
/// Length of a whole key: prefix, env, two separators, id, secret, checksum.
pub const KEY_LEN: usize = PREFIX.len() + 4 + 1 + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;
/// The regular expression secret scanners can use.
pub const SCANNER_REGEX: &str = r"\bmcp_sk_(live|test)_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}\b";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The environment a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Env {
    /// Production.
    Live,
    /// Testing: never accepted where only live keys are.
    Test,
}

impl Env {
    /// `live` or `test`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Env::Live => "live",
            Env::Test => "test",
        }
    }
}

impl std::fmt::Display for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Env {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "live" => Ok(Env::Live),
            "test" => Ok(Env::Test),
            _ => Err(Error::Malformed),
        }
    }
}

/// A key that passed the format and checksum checks. Holds the whole key as a secret;
/// `Debug` shows only the env and the id.
pub struct ParsedKey {
    env: Env,
    id: KeyId,
    key: SecretString,
}

impl std::fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedKey")
            .field("env", &self.env)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ParsedKey {
    /// The environment.
    pub fn env(&self) -> Env {
        self.env
    }

    /// The public id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The whole key (what is hashed).
    pub fn expose_secret(&self) -> &str {
        self.key.expose_secret()
    }

    /// The last four characters, for display ("…k3Xz").
    pub fn hint(&self) -> String {
        hint(self.key.expose_secret())
    }
}

/// The last four characters of a key (part of the checksum, so they reveal nothing of the
/// secret).
pub(crate) fn hint(key: &str) -> String {
    key.get(key.len().saturating_sub(4)..)
        .unwrap_or_default()
        .to_owned()
}

fn checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62.get((n % 62) as usize).copied().unwrap_or(b'0');
        n /= 62;
    }
    out
}

/// A new key for `env`: a fresh id and secret from the OS CSPRNG, and its checksum.
pub fn generate(env: Env) -> Result<ParsedKey, Error> {
    let alphabet = std::str::from_utf8(BASE62).map_err(|_| Error::Random)?;
    // A random id is a valid KeyId except in the ~1 in 238,000 cases that start with `eyJ`
    // (refused as JWT-shaped); draw again then.
    let (id_text, id) = loop {
        let text =
            SecretString::random_from_alphabet(ID_LEN, alphabet).map_err(|_| Error::Random)?;
        if let Ok(id) = KeyId::new(text.expose_secret()) {
            break (text, id);
        }
    };
    let secret =
        SecretString::random_from_alphabet(SECRET_LEN, alphabet).map_err(|_| Error::Random)?;
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(PREFIX);
    key.push_str(env.as_str());
    key.push('_');
    key.push_str(id_text.expose_secret());
    key.push('_');
    key.push_str(secret.expose_secret());
    let sum = checksum(&key);
    key.extend(sum.iter().map(|&b| char::from(b)));
    Ok(ParsedKey {
        env,
        id,
        key: SecretString::new(key),
    })
}

/// Parses `presented` strictly: length, prefix, env, separators, alphabet, then checksum.
/// Nothing here touches a store, and nothing here is secret-dependent in its timing
/// beyond the checksum, which is public.
pub fn parse(presented: &str) -> Result<ParsedKey, Error> {
    if presented.len() != KEY_LEN {
        return Err(Error::Malformed);
    }
    let rest = presented.strip_prefix(PREFIX).ok_or(Error::Malformed)?;
    let (env, rest) = rest.split_at_checked(4).ok_or(Error::Malformed)?;
    let env: Env = env.parse()?;
    let rest = rest.strip_prefix('_').ok_or(Error::Malformed)?;
    let (id, rest) = rest.split_at_checked(ID_LEN).ok_or(Error::Malformed)?;
    let tail = rest.strip_prefix('_').ok_or(Error::Malformed)?;
    if !id
        .bytes()
        .chain(tail.bytes())
        .all(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::Malformed);
    }
    let (body, sum) = presented
        .split_at_checked(KEY_LEN - CHECKSUM_LEN)
        .ok_or(Error::Malformed)?;
    if checksum(body).as_slice() != sum.as_bytes() {
        return Err(Error::BadChecksum);
    }
    let id = KeyId::new(id).map_err(|_| Error::Malformed)?;
    Ok(ParsedKey {
        env,
        id,
        key: SecretString::new(presented.to_owned()),
    })
}
