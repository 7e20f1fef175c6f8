//! How keys are stored: only hashes, in self-describing strings so modes coexist and
//! migrate.
//!
//! - `hmac-sha256$v{N}${mac}`: HMAC-SHA256 of the whole key under pepper version N (the
//!   default: a 256-bit random key needs no slow hash; the pepper makes a stolen table
//!   useless without the server's secret).
//! - `argon2id$v{N}$m={m},t={t},p={p}${salt}${hash}`: Argon2id with the pepper as its
//!   secret input, for deployments whose policy requires a slow hash.
//! - `$2a$`/`$2b$`/`$2y$…` (feature `legacy-bcrypt`): verified, then upgraded.
//!
//! A match under anything but the current mode and pepper reports `needs_rehash`, and the
//! verifier stores the new string (compare-and-set) on that successful use.

use crate::Error;
use crate::format::ParsedKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use mcpsec_core::SecretBytes;
use mcpsec_core::hmac::MacKey;
use subtle::ConstantTimeEq;

/// Longest stored hash string accepted (bcrypt 60, Argon2 ~100, HMAC ~60).
const MAX_STORED_LEN: usize = 256;

/// A server-side secret mixed into every hash, with a version so it can rotate.
pub struct Pepper {
    version: u32,
    pub(crate) key: SecretBytes,
    /// The pepper keyed once for `hmac-sha256$` hashes.
    mac: MacKey,
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pepper")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Pepper {
    /// A pepper of at least 32 bytes.
    pub fn new(version: u32, key: SecretBytes) -> Result<Self, Error> {
        let mac = MacKey::new(key.expose_secret())
            .map_err(|_| Error::Config("a pepper is at least 32 bytes"))?;
        Ok(Self { version, key, mac })
    }

    /// A fresh random pepper.
    pub fn generate(version: u32) -> Result<Self, Error> {
        Self::new(version, SecretBytes::random(32).map_err(|_| Error::Random)?)
    }

    /// The version.
    pub fn version(&self) -> u32 {
        self.version
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// OWASP's first recommended configuration: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            m_cost: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

/// Which hash new keys (and upgraded keys) are stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashMode {
    /// HMAC-SHA256 with the current pepper (default).
    HmacSha256,
    /// Argon2id with these parameters and the current pepper as its secret.
    Argon2id(Argon2Params),
}

/// The outcome of checking a key against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCheck {
    /// The key matches.
    pub matched: bool,
    /// It matched under an old mode, pepper or parameters: store a new hash.
    pub needs_rehash: bool,
}

/// Hashes and checks keys. Holds the current pepper and older ones (for keys not yet
/// re-hashed).
#[derive(Debug)]
pub struct KeyHasher {
    current: Pepper,
    older: Vec<Pepper>,
    mode: HashMode,
}

impl KeyHasher {
    /// A hasher storing with `mode` under `current`; `older` peppers still verify.
    pub fn new(current: Pepper, older: Vec<Pepper>, mode: HashMode) -> Result<Self, Error> {
        if older.iter().any(|p| p.version == current.version) {
            return Err(Error::Config("pepper versions must be distinct"));
        }
        if let HashMode::Argon2id(p) = mode {
            argon2_params(p)?;
        }
        Ok(Self {
            current,
            older,
            mode,
        })
    }

    /// The mode new hashes use.
    pub fn mode(&self) -> HashMode {
        self.mode
    }

    /// The stored-hash string for `key` under the current mode and pepper.
    pub fn hash(&self, key: &ParsedKey) -> Result<String, Error> {
        let v = self.current.version;
        match self.mode {
            HashMode::HmacSha256 => Ok(format!(
                "hmac-sha256$v{v}${}",
                B64.encode(hmac_of(&self.current, key))
            )),
            HashMode::Argon2id(params) => {
                let mut salt = [0u8; 16];
                mcpsec_core::fill_random(&mut salt).map_err(|_| Error::Random)?;
                let out = argon2_of(&self.current, params, &salt, key)?;
                Ok(format!(
                    "argon2id$v{v}$m={},t={},p={}${}${}",
                    params.m_cost,
                    params.t_cost,
                    params.p_cost,
                    B64.encode(salt),
                    B64.encode(out)
                ))
            }
        }
    }

    /// Checks `key` against `stored` in constant time for the mode's primitive.
    pub fn check(&self, key: &ParsedKey, stored: &str) -> Result<HashCheck, Error> {
        if stored.len() > MAX_STORED_LEN {
            return Err(Error::BadStoredHash);
        }
        if stored.starts_with("$2") {
            return self.check_bcrypt(key, stored);
        }
        let mut parts = stored.split('$');
        let (Some(scheme), Some(version)) = (parts.next(), parts.next()) else {
            return Err(Error::BadStoredHash);
        };
        let version: u32 = version
            .strip_prefix('v')
            .and_then(|v| v.parse().ok())
            .ok_or(Error::BadStoredHash)?;
        let pepper = self.pepper(version).ok_or(Error::BadStoredHash)?;
        let (matched, same_mode) = match scheme {
            "hmac-sha256" => {
                let expected = decode(parts.next())?;
                let matched = bool::from(hmac_of(pepper, key).as_slice().ct_eq(&expected));
                (matched, self.mode == HashMode::HmacSha256)
            }
            "argon2id" => {
                let params = parse_params(parts.next())?;
                let salt = decode(parts.next())?;
                let expected = decode(parts.next())?;
                let out = argon2_of(pepper, params, &salt, key)?;
                (
                    bool::from(out.as_slice().ct_eq(&expected)),
                    self.mode == HashMode::Argon2id(params),
                )
            }
            _ => return Err(Error::BadStoredHash),
        };
        if parts.next().is_some() {
            return Err(Error::BadStoredHash);
        }
        Ok(HashCheck {
            matched,
            needs_rehash: matched && !(same_mode && version == self.current.version),
        })
    }

    /// The same work as checking a real key, against nothing: run when the id is unknown,
    /// so that response time does not reveal which ids exist.
    pub fn dummy_check(&self, key: &ParsedKey) {
        match self.mode {
            HashMode::HmacSha256 => {
                let mac = hmac_of(&self.current, key);
                std::hint::black_box(mac.as_slice().ct_eq(&[0u8; 32]));
            }
            HashMode::Argon2id(params) => {
                let _ = std::hint::black_box(argon2_of(&self.current, params, &[0u8; 16], key));
            }
        }
    }

    fn pepper(&self, version: u32) -> Option<&Pepper> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .find(|p| p.version == version)
    }

    #[cfg(feature = "legacy-bcrypt")]
    fn check_bcrypt(&self, key: &ParsedKey, stored: &str) -> Result<HashCheck, Error> {
        // bcrypt reads 72 bytes: prefix, env, id and the whole 43-character secret; only
        // the public checksum falls outside, which parsing has already checked.
        let matched =
            bcrypt::verify(key.expose_secret(), stored).map_err(|_| Error::BadStoredHash)?;
        Ok(HashCheck {
            matched,
            needs_rehash: matched,
        })
    }

    #[cfg(not(feature = "legacy-bcrypt"))]
    fn check_bcrypt(&self, _key: &ParsedKey, _stored: &str) -> Result<HashCheck, Error> {
        Err(Error::Config(
            "bcrypt hashes need the legacy-bcrypt feature",
        ))
    }
}

/// `HMAC(pepper, key)` with no domain label: the format of hashes already stored, which
/// a label would invalidate. The pepper is used for nothing else but Argon2's secret.
fn hmac_of(pepper: &Pepper, key: &ParsedKey) -> Vec<u8> {
    pepper
        .mac
        .tag_unframed(key.expose_secret().as_bytes())
        .to_vec()
}

fn argon2_params(p: Argon2Params) -> Result<argon2::Params, Error> {
    if p.m_cost > 4 * 1024 * 1024 || p.t_cost > 64 || p.p_cost > 64 {
        return Err(Error::Config(
            "Argon2 parameters beyond 4 GiB, 64 iterations or 64 lanes",
        ));
    }
    argon2::Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32))
        .map_err(|_| Error::Config("invalid Argon2 parameters"))
}

fn argon2_of(
    pepper: &Pepper,
    params: Argon2Params,
    salt: &[u8],
    key: &ParsedKey,
) -> Result<Vec<u8>, Error> {
    let argon = argon2::Argon2::new_with_secret(
        pepper.key.expose_secret(),
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2_params(params)?,
    )
    .map_err(|_| Error::Config("pepper too long for Argon2"))?;
    let mut out = vec![0u8; 32];
    argon
        .hash_password_into(key.expose_secret().as_bytes(), salt, &mut out)
        .map_err(|_| Error::BadStoredHash)?;
    Ok(out)
}

fn decode(part: Option<&str>) -> Result<Vec<u8>, Error> {
    B64.decode(part.ok_or(Error::BadStoredHash)?)
        .map_err(|_| Error::BadStoredHash)
}

/// `m=…,t=…,p=…`, exactly.
fn parse_params(part: Option<&str>) -> Result<Argon2Params, Error> {
    let mut fields = part.ok_or(Error::BadStoredHash)?.split(',');
    let mut next = |name: &str| -> Result<u32, Error> {
        fields
            .next()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .ok_or(Error::BadStoredHash)
    };
    let params = Argon2Params {
        m_cost: next("m=")?,
        t_cost: next("t=")?,
        p_cost: next("p=")?,
    };
    if fields.next().is_some() {
        return Err(Error::BadStoredHash);
    }
    argon2_params(params).map_err(|_| Error::BadStoredHash)?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored `hmac-sha256$` hashes must keep verifying: the format is `HMAC(pepper, key)`
    /// with no label, computed here independently with aws-lc.
    #[test]
    fn stored_hmac_format_is_unchanged() {
        let key = crate::format::generate(crate::Env::Test).unwrap();
        let pepper = Pepper::new(1, SecretBytes::from_slice(&[3; 32])).unwrap();
        let hasher = KeyHasher::new(pepper, vec![], HashMode::HmacSha256).unwrap();
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[3; 32]),
            key.expose_secret().as_bytes(),
        );
        assert_eq!(
            hasher.hash(&key).unwrap(),
            format!("hmac-sha256$v1${}", B64.encode(tag.as_ref()))
        );
    }
}
