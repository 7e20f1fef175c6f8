//! Private signing keys: generation, PKCS#8 PEM, and signing with a key parsed once.

use crate::jwk::Jwk;
use crate::{Algorithm, Error};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use mcpsec_core::pem::PemError;
use mcpsec_core::{KeyId, SecretString};
use zeroize::Zeroizing;

/// RSA modulus sizes mcpsec generates and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaBits {
    /// 2048 bits (the default).
    B2048,
    /// 3072 bits.
    B3072,
    /// 4096 bits.
    B4096,
}

/// Generates a private key for `alg` (RSA of `rsa_bits` for RS256) as PKCS#8 PEM, from the
/// OS CSPRNG. The PEM is a secret: write it with mode 0600 and never print it.
pub fn generate_pem(alg: Algorithm, rsa_bits: RsaBits) -> Result<SecretString, Error> {
    let der: Zeroizing<Vec<u8>> = match alg {
        Algorithm::RS256 => {
            let size = match rsa_bits {
                RsaBits::B2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                RsaBits::B3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                RsaBits::B4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
            };
            let pair = RsaKeyPair::generate(size)
                .map_err(|_| Error::Key(crate::KeyError::Invalid("RSA generation failed")))?;
            let der = pair
                .as_der()
                .map_err(|_| Error::Key(crate::KeyError::Invalid("RSA encoding failed")))?;
            Zeroizing::new(der.as_ref().to_vec())
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| Error::Key(crate::KeyError::Invalid("P-256 generation failed")))?;
            let doc = pair
                .to_pkcs8v1()
                .map_err(|_| Error::Key(crate::KeyError::Invalid("P-256 encoding failed")))?;
            Zeroizing::new(doc.as_ref().to_vec())
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate()
                .map_err(|_| Error::Key(crate::KeyError::Invalid("Ed25519 generation failed")))?;
            let doc = pair
                .to_pkcs8v1()
                .map_err(|_| Error::Key(crate::KeyError::Invalid("Ed25519 encoding failed")))?;
            Zeroizing::new(doc.as_ref().to_vec())
        }
    };
    Ok(mcpsec_core::pem::encode_pkcs8_pem(&der))
}

/// Decodes with the workspace's one PEM codec; the DER is zeroized when dropped.
fn pem_decode(pem: &str) -> Result<mcpsec_core::SecretBytes, Error> {
    mcpsec_core::pem::decode_pkcs8_pem(pem).map_err(|e| {
        Error::Key(crate::KeyError::Invalid(match e {
            PemError::TooLarge => "PEM larger than 16 KiB",
            PemError::NoEnd => "PEM has no END line",
            PemError::BadBody => "PEM body is not base64",
            _ => "expected a PKCS#8 PRIVATE KEY PEM",
        }))
    })
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private key, parsed once, bound to one algorithm and one `kid`.
///
/// `Debug` shows the kid and the algorithm, never the key.
pub struct SigningKey {
    kid: KeyId,
    alg: Algorithm,
    pair: Pair,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a PKCS#8 PEM private key for `alg`. RSA keys below 2048 bits are refused.
    pub fn from_pkcs8_pem(kid: KeyId, alg: Algorithm, pem: &str) -> Result<Self, Error> {
        let der = pem_decode(pem)?;
        Self::from_pkcs8_der(kid, alg, der.expose_secret())
    }

    /// Parses a PKCS#8 DER private key for `alg`.
    pub fn from_pkcs8_der(kid: KeyId, alg: Algorithm, der: &[u8]) -> Result<Self, Error> {
        let pair = match alg {
            Algorithm::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(der)
                    .map_err(|_| Error::Key(crate::KeyError::Invalid("not an RSA PKCS#8 key")))?;
                if pair.public_modulus_len() < 256 {
                    return Err(Error::Key(crate::KeyError::Invalid(
                        "RSA keys must be at least 2048 bits",
                    )));
                }
                Pair::Rsa(pair)
            }
            Algorithm::ES256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| Error::Key(crate::KeyError::Invalid("not a P-256 PKCS#8 key")))?,
            ),
            Algorithm::EdDSA => {
                Pair::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(|_| {
                    Error::Key(crate::KeyError::Invalid("not an Ed25519 PKCS#8 key"))
                })?)
            }
        };
        Ok(Self {
            kid,
            alg,
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// Generates a fresh key (see [`generate_pem`]).
    pub fn generate(kid: KeyId, alg: Algorithm) -> Result<Self, Error> {
        let pem = generate_pem(alg, RsaBits::B2048)?;
        Self::from_pkcs8_pem(kid, alg, pem.expose_secret())
    }

    /// The key id (`kid`).
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public half, as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> Jwk {
        match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                Jwk::rsa(
                    self.kid.clone(),
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                )
            }
            Pair::Ec(pair) => {
                Jwk::ec_p256_uncompressed(self.kid.clone(), pair.public_key().as_ref())
            }
            Pair::Ed(pair) => Jwk::ed25519(self.kid.clone(), pair.public_key().as_ref()),
        }
    }

    /// Signs `message` (the JWS signing input) and returns the raw signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| Error::Key(crate::KeyError::Signing))?;
                Ok(sig)
            }
            Pair::Ec(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Key(crate::KeyError::Signing)),
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}
