//! Where key material comes from: a [`KeyProvider`] wraps and unwraps data keys.
//!
//! Data keys (one per category version) are generated here and stored only wrapped. The
//! wrapping key never leaves its provider: a KMS (`Encrypt`/`Decrypt` or
//! `GenerateDataKey`), Vault transit (`encrypt`/`decrypt`), or [`LocalMasterKey`], a
//! 32-byte master key taken from an environment variable or a key file.

use crate::backend::KEY_LEN;
use crate::{Category, Error};
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mcpsec_core::StoreError;
use mcpsec_core::hmac::{Domain, MacKey};
use mcpsec_core::{
    Clock, EventKind, EventSink, Label, Outcome, ReasonCode, SecretBytes, SecretString,
    SecurityEvent,
};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The environment variable [`LocalMasterKey::from_env`] reads.
pub const MASTER_KEY_ENV: &str = "MCPSEC_MASTER_KEY";

/// What a wrapped key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// A field encryption key.
    Data,
    /// A category's blind-index root key.
    BlindIndex,
    /// The keyset file's integrity (MAC) key.
    Integrity,
}

impl KeyPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::BlindIndex => "blind_index",
            Self::Integrity => "integrity",
        }
    }
}

/// Which key is being wrapped: bound to the wrapped bytes (as AAD, or a KMS encryption
/// context), so a wrapped key moved to another category, version or purpose does not
/// unwrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapContext {
    /// The data category.
    pub category: Category,
    /// The key version (0 for the blind-index key).
    pub version: u32,
    /// What the key is for.
    pub purpose: KeyPurpose,
}

impl WrapContext {
    /// The canonical bytes bound to the wrapped key.
    pub fn aad(&self) -> Vec<u8> {
        let mut out = b"mcpsec-keyset-wrap-v1".to_vec();
        for part in [self.category.as_str(), self.purpose.as_str()] {
            out.push(u8::try_from(part.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }

    /// The same context as key/value pairs, the shape KMS encryption contexts take.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            ("category", self.category.to_string()),
            ("version", self.version.to_string()),
            ("purpose", self.purpose.as_str().to_owned()),
        ]
    }
}

/// Wraps and unwraps data keys with a key that stays in the provider.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Names the wrapping key (`local:<fingerprint>`, a KMS key ARN). Recorded in the
    /// keyset, so opening it with another master key fails with a clear error.
    fn key_id(&self) -> String;

    /// Encrypts a data key.
    async fn wrap(&self, key: &SecretBytes, context: &WrapContext) -> Result<Vec<u8>, Error>;

    /// Decrypts a data key wrapped for the same context.
    async fn unwrap(&self, wrapped: &[u8], context: &WrapContext) -> Result<SecretBytes, Error>;
}

/// A 32-byte master key held in process memory: the local provider.
///
/// Keep it out of the keyset's directory and out of backups of it: whoever has both has
/// every key. `from_env` reads base64 of 32 bytes from `MCPSEC_MASTER_KEY`.
pub struct LocalMasterKey {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl fmt::Debug for LocalMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMasterKey")
            .field("key", &"[REDACTED]")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl LocalMasterKey {
    /// A master key from 32 bytes.
    pub fn from_bytes(key: &SecretBytes) -> Result<Self, Error> {
        if key.len() != KEY_LEN {
            return Err(Error::KeyProvider("the master key must be 32 bytes"));
        }
        let cipher = Aes256Gcm::new_from_slice(key.expose_secret())
            .map_err(|_| Error::KeyProvider("the master key must be 32 bytes"))?;
        let digest = MacKey::new(key.expose_secret())
            .map_err(|_| Error::KeyProvider("the master key must be 32 bytes"))?
            .input(Domain::new("mcpsec-master-key-fingerprint-v1"))
            .tag();
        let fingerprint = digest
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>();
        Ok(Self {
            cipher,
            fingerprint,
        })
    }

    /// A master key from base64 (standard alphabet, padding optional) of 32 bytes.
    pub fn from_base64(text: &SecretString) -> Result<Self, Error> {
        let trimmed = text.expose_secret().trim();
        if trimmed.len() > 64 {
            return Err(Error::KeyProvider(
                "the master key must be base64 of 32 bytes",
            ));
        }
        let decoded = STANDARD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| Error::KeyProvider("the master key must be base64 of 32 bytes"))?;
        Self::from_bytes(&SecretBytes::new(decoded))
    }

    /// The master key from `MCPSEC_MASTER_KEY`.
    pub fn from_env() -> Result<Self, Error> {
        let value = std::env::var(MASTER_KEY_ENV)
            .map_err(|_| Error::KeyProvider("MCPSEC_MASTER_KEY is not set"))?;
        Self::from_base64(&SecretString::new(value))
    }

    /// The master key from a file holding its base64 (as `mcpsec crypt` reads it).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)?
            .take(257)
            .read_to_string(&mut text)
            .map_err(|_| Error::KeyProvider("the master key file is not base64 text"))?;
        let text = SecretString::new(text);
        if text.len() > 256 {
            return Err(Error::KeyProvider("the master key file is too large"));
        }
        Self::from_base64(&text)
    }

    /// A fresh random master key, as base64, for `mcpsec crypt` operators to store.
    pub fn generate_base64() -> Result<SecretString, Error> {
        let key = SecretBytes::random(KEY_LEN)?;
        Ok(SecretString::new(STANDARD.encode(key.expose_secret())))
    }
}

#[async_trait::async_trait]
impl KeyProvider for LocalMasterKey {
    fn key_id(&self) -> String {
        format!("local:{}", self.fingerprint)
    }

    async fn wrap(&self, key: &SecretBytes, context: &WrapContext) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; 12];
        mcpsec_core::fill_random(&mut nonce)?;
        // Holds the key in the clear until it is encrypted in place: wiped if that fails.
        let mut out = zeroize::Zeroizing::new(nonce.to_vec());
        let start = out.len();
        out.extend_from_slice(key.expose_secret());
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &nonce.into(),
                &context.aad(),
                out.get_mut(start..).unwrap_or_default().into(),
            )
            .map_err(|_| Error::KeyProvider("wrapping failed"))?;
        out.extend_from_slice(&tag);
        Ok(std::mem::take(&mut *out))
    }

    async fn unwrap(&self, wrapped: &[u8], context: &WrapContext) -> Result<SecretBytes, Error> {
        let failed = || {
            Error::KeyProvider("a wrapped key did not unwrap (wrong master key or edited keyset)")
        };
        let (nonce, rest) = wrapped.split_first_chunk::<12>().ok_or_else(failed)?;
        let split = rest.len().checked_sub(16).ok_or_else(failed)?;
        let (ciphertext, tag) = rest.split_at_checked(split).ok_or_else(failed)?;
        let tag: [u8; 16] = tag.try_into().map_err(|_| failed())?;
        let mut buffer = ciphertext.to_vec();
        let result = self.cipher.decrypt_inout_detached(
            &(*nonce).into(),
            &context.aad(),
            buffer.as_mut_slice().into(),
            &tag.into(),
        );
        if result.is_err() {
            zeroize::Zeroize::zeroize(&mut buffer);
            return Err(failed());
        }
        let key = SecretBytes::new(buffer);
        if key.len() != KEY_LEN {
            return Err(failed());
        }
        Ok(key)
    }
}

/// A [`KeyProvider`] that records every use of key material as a security event: an
/// `unwrap` is a `sensitive_read`, a `wrap` a `sensitive_update`, a failed unwrap a
/// `sys_crypto_fail`. Events carry the category as the resource id and never key bytes.
#[derive(Debug)]
pub struct AuditedKeyProvider<P> {
    inner: P,
    events: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
}

impl<P: KeyProvider> AuditedKeyProvider<P> {
    /// Wraps `inner`, recording to `events`.
    pub fn new(inner: P, events: Arc<dyn EventSink>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            events,
            clock,
        }
    }

    fn event(
        &self,
        kind: EventKind,
        outcome: Outcome,
        context: &WrapContext,
    ) -> Result<SecurityEvent, Error> {
        let kind_label = Label::new(match context.purpose {
            KeyPurpose::Data => "data_key",
            KeyPurpose::BlindIndex => "blind_index_key",
            KeyPurpose::Integrity => "keyset_integrity_key",
        })?;
        let id =
            mcpsec_core::ResourceId::new(format!("{}.v{}", context.category, context.version))?;
        let mut event =
            SecurityEvent::new(kind, outcome, self.clock.now()).with_resource(kind_label, Some(id));
        if outcome == Outcome::Failure {
            event = event.with_reason(ReasonCode::DecryptFailed);
        }
        Ok(event)
    }

    async fn record(
        &self,
        kind: EventKind,
        outcome: Outcome,
        context: &WrapContext,
    ) -> Result<(), Error> {
        let event = self.event(kind, outcome, context)?;
        // Access to key material that cannot be recorded does not happen.
        self.events.record(event).await.map_err(|e| {
            Error::Store(StoreError::from_core(
                "the audit sink refused a key access event",
                e,
            ))
        })
    }
}

#[async_trait::async_trait]
impl<P: KeyProvider> KeyProvider for AuditedKeyProvider<P> {
    fn key_id(&self) -> String {
        self.inner.key_id()
    }

    async fn wrap(&self, key: &SecretBytes, context: &WrapContext) -> Result<Vec<u8>, Error> {
        self.record(EventKind::SensitiveUpdate, Outcome::Success, context)
            .await?;
        self.inner.wrap(key, context).await
    }

    async fn unwrap(&self, wrapped: &[u8], context: &WrapContext) -> Result<SecretBytes, Error> {
        match self.inner.unwrap(wrapped, context).await {
            Ok(key) => {
                self.record(EventKind::SensitiveRead, Outcome::Success, context)
                    .await?;
                Ok(key)
            }
            Err(error) => {
                // The unwrap failed either way; a refused event is logged, not discarded.
                if let Ok(event) = self.event(EventKind::SysCryptoFail, Outcome::Failure, context) {
                    mcpsec_core::emit(&*self.events, event).await;
                }
                Err(error)
            }
        }
    }
}
