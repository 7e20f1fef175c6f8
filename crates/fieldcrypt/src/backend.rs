//! The AEAD backend, chosen once like rustls's `CryptoProvider`.
//!
//! [`CryptoProvider::rust_crypto`] (the default) uses the `aes-gcm` crate;
//! `CryptoProvider::aws_lc` (feature `aws-lc`) uses aws-lc-rs. Both compute AES-256-GCM,
//! so for the same key, nonce, associated data and plaintext they produce the same bytes:
//! data written by one is read by the other (the tests check it).

use crate::Error;
use crate::format::{NONCE_LEN, TAG_LEN};
use mcpsec_core::SecretBytes;
use std::fmt;

/// The length of an AES-256 key.
pub const KEY_LEN: usize = 32;

/// An AES-256-GCM implementation.
pub trait Aead: Send + Sync + fmt::Debug + 'static {
    /// A short name for reports (`rustcrypto`, `aws-lc`).
    fn name(&self) -> &'static str;

    /// Expands a 32-byte key once, so each call afterwards only encrypts.
    fn prepare(&self, key: &SecretBytes) -> Result<Box<dyn PreparedKey>, Error>;
}

/// An expanded key, ready to seal and open. Dropping it zeroizes the key schedule.
pub trait PreparedKey: Send + Sync {
    /// Encrypts `out[start..]` in place (it holds the plaintext) and appends the tag.
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), Error>;

    /// Decrypts `sealed` (ciphertext then tag) into a new buffer, or fails with
    /// [`Error::Decrypt`] without releasing any plaintext.
    fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Which AEAD implementation a [`FieldCrypt`](crate::FieldCrypt) uses.
#[derive(Debug, Clone, Copy)]
pub struct CryptoProvider {
    aead: &'static dyn Aead,
}

impl CryptoProvider {
    /// RustCrypto's `aes-gcm` (uses AES-NI and CLMUL when the CPU has them).
    pub const fn rust_crypto() -> Self {
        Self { aead: &RustCrypto }
    }

    /// aws-lc-rs's AES-256-GCM (assembly; faster, a C dependency).
    #[cfg(feature = "aws-lc")]
    pub const fn aws_lc() -> Self {
        Self { aead: &AwsLc }
    }

    /// A provider from your own [`Aead`] implementation (an HSM, a FIPS module).
    pub const fn custom(aead: &'static dyn Aead) -> Self {
        Self { aead }
    }

    /// The implementation.
    pub fn aead(&self) -> &'static dyn Aead {
        self.aead
    }
}

impl Default for CryptoProvider {
    fn default() -> Self {
        Self::rust_crypto()
    }
}

fn key_bytes(key: &SecretBytes) -> Result<&[u8], Error> {
    let bytes = key.expose_secret();
    if bytes.len() != KEY_LEN {
        return Err(Error::InvalidArgument("an AES-256 key is 32 bytes"));
    }
    Ok(bytes)
}

/// RustCrypto's `aes-gcm`.
#[derive(Debug, Clone, Copy)]
pub struct RustCrypto;

struct RustCryptoKey(aes_gcm::Aes256Gcm);

impl Aead for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn prepare(&self, key: &SecretBytes) -> Result<Box<dyn PreparedKey>, Error> {
        use aes_gcm::KeyInit;
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(key_bytes(key)?)
            .map_err(|_| Error::InvalidArgument("an AES-256 key is 32 bytes"))?;
        Ok(Box::new(RustCryptoKey(cipher)))
    }
}

impl PreparedKey for RustCryptoKey {
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), Error> {
        use aes_gcm::aead::AeadInOut;
        let buffer = out
            .get_mut(start..)
            .ok_or(Error::InvalidArgument("seal start beyond the buffer"))?;
        let tag = self
            .0
            .encrypt_inout_detached(&(*nonce).into(), aad, buffer.into())
            .map_err(|_| Error::TooLarge("plaintext"))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        use aes_gcm::aead::AeadInOut;
        let split = sealed.len().checked_sub(TAG_LEN).ok_or(Error::Decrypt)?;
        let (ciphertext, tag) = sealed.split_at_checked(split).ok_or(Error::Decrypt)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Decrypt)?;
        let mut plaintext = ciphertext.to_vec();
        let result = self.0.decrypt_inout_detached(
            &(*nonce).into(),
            aad,
            plaintext.as_mut_slice().into(),
            &tag.into(),
        );
        match result {
            Ok(()) => Ok(plaintext),
            Err(_) => {
                // The buffer holds unauthenticated keystream-XORed bytes: never release them.
                zeroize::Zeroize::zeroize(&mut plaintext);
                Err(Error::Decrypt)
            }
        }
    }
}

/// aws-lc-rs's AES-256-GCM.
#[cfg(feature = "aws-lc")]
#[derive(Debug, Clone, Copy)]
pub struct AwsLc;

#[cfg(feature = "aws-lc")]
struct AwsLcKey(aws_lc_rs::aead::LessSafeKey);

#[cfg(feature = "aws-lc")]
impl Aead for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc"
    }

    fn prepare(&self, key: &SecretBytes) -> Result<Box<dyn PreparedKey>, Error> {
        use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
        let unbound = UnboundKey::new(&AES_256_GCM, key_bytes(key)?)
            .map_err(|_| Error::InvalidArgument("an AES-256 key is 32 bytes"))?;
        Ok(Box::new(AwsLcKey(LessSafeKey::new(unbound))))
    }
}

#[cfg(feature = "aws-lc")]
impl PreparedKey for AwsLcKey {
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), Error> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let buffer = out
            .get_mut(start..)
            .ok_or(Error::InvalidArgument("seal start beyond the buffer"))?;
        // The nonce is 96 random bits drawn for this call only (see `FieldCrypt::encrypt`).
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                buffer,
            )
            .map_err(|_| Error::TooLarge("plaintext"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let mut buffer = sealed.to_vec();
        let len = match self.0.open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut buffer,
        ) {
            Ok(plaintext) => plaintext.len(),
            Err(_) => {
                zeroize::Zeroize::zeroize(&mut buffer);
                return Err(Error::Decrypt);
            }
        };
        buffer.truncate(len);
        Ok(buffer)
    }
}
