//! Public keys as JWKs and JWK sets (RFC 7517), and the verifying keys made from them.

use crate::{Algorithm, Error};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpsec_core::KeyId;
use serde::{Deserialize, Serialize};

/// Largest JWK set document accepted.
pub const MAX_JWKS_LEN: usize = 64 * 1024;
/// Most keys accepted in one set.
pub const MAX_JWKS_KEYS: usize = 32;
/// Longest `kid` accepted in a JWK set.
pub const MAX_KID_LEN: usize = 256;

/// A public signing key as a JWK. Only public members: a set that carries private key
/// material is refused when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm this key is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use; `sig` for signing keys.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// RSA modulus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Curve: `P-256` or `Ed25519`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, or the Ed25519 public key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// Members that only private or symmetric keys have (RFC 7518 §6.2.2, §6.3.2, §6.4.1),
/// the RSA CRT members and `oth` included. Their presence refuses the set.
#[derive(Deserialize)]
struct PrivateMembers {
    d: Option<serde::de::IgnoredAny>,
    p: Option<serde::de::IgnoredAny>,
    q: Option<serde::de::IgnoredAny>,
    dp: Option<serde::de::IgnoredAny>,
    dq: Option<serde::de::IgnoredAny>,
    qi: Option<serde::de::IgnoredAny>,
    oth: Option<serde::de::IgnoredAny>,
    k: Option<serde::de::IgnoredAny>,
}

impl PrivateMembers {
    fn any(&self) -> bool {
        [
            &self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth, &self.k,
        ]
        .iter()
        .any(|m| m.is_some())
    }
}

impl Jwk {
    fn base(kty: &str, kid: KeyId, alg: Algorithm) -> Jwk {
        Jwk {
            kty: kty.to_owned(),
            kid: Some(kid.to_string()),
            alg: Some(alg.as_str().to_owned()),
            use_: Some("sig".to_owned()),
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        }
    }

    /// An RS256 key from its modulus and exponent (big-endian).
    pub fn rsa(kid: KeyId, n: &[u8], e: &[u8]) -> Jwk {
        Jwk {
            n: Some(URL_SAFE_NO_PAD.encode(n)),
            e: Some(URL_SAFE_NO_PAD.encode(e)),
            ..Jwk::base("RSA", kid, Algorithm::RS256)
        }
    }

    /// An ES256 key from its uncompressed SEC1 point (`04 || x || y`).
    pub fn ec_p256_uncompressed(kid: KeyId, point: &[u8]) -> Jwk {
        let (x, y) = point
            .get(1..)
            .map(|xy| xy.split_at(xy.len() / 2))
            .unwrap_or_default();
        Jwk {
            crv: Some("P-256".to_owned()),
            x: Some(URL_SAFE_NO_PAD.encode(x)),
            y: Some(URL_SAFE_NO_PAD.encode(y)),
            ..Jwk::base("EC", kid, Algorithm::ES256)
        }
    }

    /// An EdDSA key from its 32-byte Ed25519 public key.
    pub fn ed25519(kid: KeyId, public: &[u8]) -> Jwk {
        Jwk {
            crv: Some("Ed25519".to_owned()),
            x: Some(URL_SAFE_NO_PAD.encode(public)),
            ..Jwk::base("OKP", kid, Algorithm::EdDSA)
        }
    }

    /// The algorithm this key's type binds it to, checked against `alg` when present.
    fn bound_algorithm(&self) -> Result<Algorithm, Error> {
        let alg = match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", None) => Algorithm::RS256,
            ("EC", Some("P-256")) => Algorithm::ES256,
            ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
            _ => {
                return Err(Error::Key(crate::KeyError::InvalidSet(
                    "unsupported key type or curve",
                )));
            }
        };
        match self.alg.as_deref() {
            None => Ok(alg),
            Some(named) if named == alg.as_str() => Ok(alg),
            Some(_) => Err(Error::Key(crate::KeyError::InvalidSet(
                "alg does not match the key type",
            ))),
        }
    }

    /// The verifying key: the algorithm bound to this key and the key itself, checked
    /// (RSA at least 2048 bits with an odd exponent; P-256 and Ed25519 coordinates of the
    /// right length).
    pub fn to_verifying_key(&self) -> Result<VerifyingKey, Error> {
        let kid = self
            .kid
            .as_deref()
            .ok_or(Error::Key(crate::KeyError::InvalidSet("key without kid")))?;
        // Other issuers' kids are opaque strings (thumbprints with `+/=`, e-mail-like names):
        // accept any printable ASCII up to 256 bytes; it is public, and never logged raw.
        if !printable_kid(kid) {
            return Err(Error::Key(crate::KeyError::InvalidSet(
                "kid must be 1 to 256 printable ASCII characters",
            )));
        }
        let kid = kid.to_owned();
        let alg = self.bound_algorithm()?;
        let key = match alg {
            Algorithm::RS256 => {
                let n = b64(self.n.as_deref())?;
                let e = b64(self.e.as_deref())?;
                let n = strip_leading_zeros(&n);
                let e = strip_leading_zeros(&e);
                if n.len() < 256 || n.len() > 1024 {
                    return Err(Error::Key(crate::KeyError::InvalidSet(
                        "RSA modulus must be 2048 to 8192 bits",
                    )));
                }
                if e.is_empty() || e.len() > 4 || e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
                    return Err(Error::Key(crate::KeyError::InvalidSet(
                        "RSA exponent must be odd, at least 3 and fit 32 bits",
                    )));
                }
                jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e)
            }
            Algorithm::ES256 => {
                let (x, y) = (self.x.as_deref(), self.y.as_deref());
                if b64(x)?.len() != 32 || b64(y)?.len() != 32 {
                    return Err(Error::Key(crate::KeyError::InvalidSet(
                        "P-256 coordinates must be 32 bytes",
                    )));
                }
                jsonwebtoken::DecodingKey::from_ec_components(
                    x.unwrap_or_default(),
                    y.unwrap_or_default(),
                )
                .map_err(|_| Error::Key(crate::KeyError::InvalidSet("invalid P-256 key")))?
            }
            Algorithm::EdDSA => {
                let x = self.x.as_deref();
                if b64(x)?.len() != 32 {
                    return Err(Error::Key(crate::KeyError::InvalidSet(
                        "Ed25519 keys are 32 bytes",
                    )));
                }
                jsonwebtoken::DecodingKey::from_ed_components(x.unwrap_or_default())
                    .map_err(|_| Error::Key(crate::KeyError::InvalidSet("invalid Ed25519 key")))?
            }
        };
        Ok(VerifyingKey { kid, alg, key })
    }
}

fn printable_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| b.is_ascii_graphic())
}

/// What [`JwkSet::usable_keys`] found.
#[derive(Debug, Clone, Default)]
pub struct UsableKeys {
    /// The keys a verifier can use.
    pub keys: Vec<VerifyingKey>,
    /// The signing keys it cannot use, and why.
    pub skipped: Vec<SkippedKey>,
}

/// A signing key of a set that a verifier cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Its `kid`, when it has a printable one (safe to log: public and checked).
    pub kid: Option<String>,
    /// Why it cannot be used.
    pub reason: Error,
}

fn b64(value: Option<&str>) -> Result<Vec<u8>, Error> {
    let value = value.ok_or(Error::Key(crate::KeyError::InvalidSet(
        "missing key member",
    )))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| Error::Key(crate::KeyError::InvalidSet("key member is not base64url")))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// A public key ready to verify signatures: bound to one algorithm and one `kid`.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    alg: Algorithm,
    key: jsonwebtoken::DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Verifies `signature` (base64url, as in the compact form) over `message` with this
    /// key's algorithm, through jsonwebtoken's aws-lc backend.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<(), Error> {
        match jsonwebtoken::crypto::verify(
            signature_b64,
            message,
            &self.key,
            self.alg.jsonwebtoken(),
        ) {
            Ok(true) => Ok(()),
            _ => Err(Error::BadSignature),
        }
    }
}

/// A JWK set document (`{"keys": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// Parses a JWK set strictly: at most [`MAX_JWKS_LEN`] bytes and [`MAX_JWKS_KEYS`] keys;
    /// any private or symmetric key material refuses the whole set (it means a private key
    /// is being published); duplicate `kid`s refuse it. Keys for other uses (`use: enc`) or
    /// other types are kept in the document but never become verifying keys.
    pub fn parse(json: &[u8]) -> Result<JwkSet, Error> {
        if json.len() > MAX_JWKS_LEN {
            return Err(Error::Key(crate::KeyError::InvalidSet(
                "larger than 64 KiB",
            )));
        }
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(json)
            .map_err(|_| Error::Key(crate::KeyError::InvalidSet("not a JWK set")))?;
        if raw.keys.len() > MAX_JWKS_KEYS {
            return Err(Error::Key(crate::KeyError::InvalidSet("too many keys")));
        }
        let mut keys = Vec::with_capacity(raw.keys.len());
        for value in raw.keys {
            let private: PrivateMembers = serde_json::from_value(value.clone())
                .map_err(|_| Error::Key(crate::KeyError::InvalidSet("key is not an object")))?;
            if private.any() {
                return Err(Error::Key(crate::KeyError::InvalidSet(
                    "contains private or symmetric key material",
                )));
            }
            let jwk: Jwk = serde_json::from_value(value)
                .map_err(|_| Error::Key(crate::KeyError::InvalidSet("malformed key")))?;
            keys.push(jwk);
        }
        let set = JwkSet { keys };
        let mut kids: Vec<&str> = set.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        kids.sort_unstable();
        if kids.windows(2).any(|w| w.first() == w.get(1)) {
            return Err(Error::Key(crate::KeyError::InvalidSet("duplicate kid")));
        }
        Ok(set)
    }

    /// The signing keys of the set that mcpsec can verify with, all or nothing: a signing
    /// key that cannot be used refuses the set. For sets this process publishes (its own
    /// keyring), where an unusable key is a bug to surface; a verifier of an outside
    /// issuer's set uses [`usable_keys`](JwkSet::usable_keys) instead.
    pub fn verifying_keys(&self) -> Result<Vec<VerifyingKey>, Error> {
        let usable = self.usable_keys();
        match usable.skipped.into_iter().next() {
            Some(skipped) => Err(skipped.reason),
            None => Ok(usable.keys),
        }
    }

    /// The signing keys this verifier can use, and the signing keys it cannot (another
    /// algorithm such as PS256 or ES384, another curve, a weak or malformed key), each
    /// with the reason. An issuer may publish keys for other verifiers: skipping them keeps
    /// the rest usable, and a token naming a skipped key is refused as an unknown key.
    /// Keys for another use (`use` other than `sig`) are not signing keys and are ignored.
    pub fn usable_keys(&self) -> UsableKeys {
        let mut usable = UsableKeys::default();
        for jwk in self
            .keys
            .iter()
            .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
        {
            match jwk.to_verifying_key() {
                Ok(key) => usable.keys.push(key),
                Err(reason) => usable.skipped.push(SkippedKey {
                    kid: jwk
                        .kid
                        .as_deref()
                        .filter(|k| printable_kid(k))
                        .map(str::to_owned),
                    reason,
                }),
            }
        }
        usable
    }

    /// The document as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{\"keys\":[]}".to_owned())
    }
}
