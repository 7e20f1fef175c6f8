//! [`FieldCrypt`]: encrypt and decrypt fields with the keyring of their data category.
//!
//! The type is split by concern: this module holds the encryption and decryption paths and
//! the associated data they bind; [`keys`] holds the keyrings and their installation and
//! rotation, [`builder`] the builder, [`usage`] the nonce-budget accounting, [`index`] the
//! blind-index derivation, [`subject`] the per-subject keys and [`sealer`] the
//! [`Sealer`](mcpsec_core::Sealer) implementation.

mod builder;
mod index;
mod keys;
mod sealer;
mod subject;
mod usage;

pub use builder::FieldCryptBuilder;
pub use keys::{KeyVersion, KeyringSpec};
pub use usage::KeyUsage;

use crate::backend::{CryptoProvider, PreparedKey};
use crate::budget::{NonceBudget, UsageLedger};
use crate::format::{self, FORMAT_VERSION, Header, MAX_PLAINTEXT, NONCE_LEN, TAG_LEN};
use crate::subject::{Subject, SubjectKeyStore};
use crate::{Category, Error};
use keys::Keyring;
use mcpsec_core::{
    Clock, EventKind, EventSink, Outcome, ReasonCode, SealContext, SecretBytes, SecurityEvent,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

/// What a ciphertext is, bound first in its associated data: a host field, or a subject's
/// data key wrapped by the category keyring. The two never open as each other, whatever
/// table and column names a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Domain {
    Field,
    SubjectKey,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Field => b"mcpsec-fieldcrypt-v1",
            Self::SubjectKey => b"mcpsec-fieldcrypt-subject-key-v1",
        }
    }
}

/// Field encryption with a keyring per data category.
///
/// Cheap to share (`Arc<FieldCrypt>`); encryption and decryption are synchronous and take
/// a read lock; rotation takes a short write lock. Implements core's
/// [`Sealer`](mcpsec_core::Sealer) for the capability crates.
pub struct FieldCrypt {
    provider: CryptoProvider,
    budget: NonceBudget,
    ledger: Arc<dyn UsageLedger>,
    rings: RwLock<BTreeMap<Category, Keyring>>,
    subjects: Option<Arc<dyn SubjectKeyStore>>,
    events: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for FieldCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("FieldCrypt")
            .field("backend", &self.provider.aead().name())
            .field("categories", &rings.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The associated data: a domain tag, the header, the context, and the subject if any.
fn associated_data(
    domain: Domain,
    header: &[u8],
    context: &SealContext,
    subject: Option<&Subject>,
) -> Vec<u8> {
    let context_len = context.aad_len();
    let tag = domain.tag();
    let mut aad = Vec::with_capacity(tag.len() + 8 + header.len() + context_len + 80);
    aad.extend_from_slice(tag);
    // Both are bounded (header ≤ 79 bytes, context ≤ 5 × 260), so the lengths fit.
    aad.extend_from_slice(
        &u32::try_from(header.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    aad.extend_from_slice(header);
    aad.extend_from_slice(&u32::try_from(context_len).unwrap_or(u32::MAX).to_be_bytes());
    context.write_aad(&mut aad);
    if let Some(subject) = subject {
        let canonical = subject.canonical();
        aad.extend_from_slice(
            &u32::try_from(canonical.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        aad.extend_from_slice(canonical.as_bytes());
    }
    aad
}

/// A ciphertext that names another key than the one installed under its version number
/// was sealed under a reused version number: say so, rather than "tampered".
fn check_key_id(
    written: Option<&[u8; format::KEY_ID_LEN]>,
    installed: &[u8; format::KEY_ID_LEN],
    category: &str,
    version: u32,
) -> Result<(), Error> {
    match written {
        Some(id) if id != installed => Err(Error::KeyMismatch {
            category: category.to_owned(),
            version,
        }),
        _ => Ok(()),
    }
}

fn seal_with(
    domain: Domain,
    cipher: &dyn PreparedKey,
    header: &Header,
    plaintext: &[u8],
    context: &SealContext,
    subject: Option<&Subject>,
) -> Result<Vec<u8>, Error> {
    let header_len = header.encoded_len();
    let mut out = Vec::with_capacity(header_len + NONCE_LEN + plaintext.len() + TAG_LEN);
    header.encode_into(&mut out);
    let mut nonce = [0u8; NONCE_LEN];
    mcpsec_core::fill_random(&mut nonce)?;
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let aad = associated_data(
        domain,
        out.get(..header_len).unwrap_or_default(),
        context,
        subject,
    );
    if let Err(error) = cipher.seal_in_place(&nonce, &aad, &mut out, start) {
        zeroize::Zeroize::zeroize(&mut out);
        return Err(error);
    }
    Ok(out)
}

impl FieldCrypt {
    /// The backend's name (`rustcrypto`, `aws-lc`).
    pub fn backend(&self) -> &'static str {
        self.provider.aead().name()
    }

    /// Encrypts `plaintext` (at most 1 MiB) with the primary key of `context`'s category,
    /// bound to the whole context. Returns the binary form.
    pub fn encrypt(&self, plaintext: &[u8], context: &SealContext) -> Result<Vec<u8>, Error> {
        self.encrypt_in(Domain::Field, plaintext, context)
    }

    fn encrypt_in(
        &self,
        domain: Domain,
        plaintext: &[u8],
        context: &SealContext,
    ) -> Result<Vec<u8>, Error> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(Error::TooLarge("plaintext"));
        }
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let (category, ring) = rings
            .get_key_value(context.category())
            .ok_or_else(|| Error::UnknownCategory(context.category().to_owned()))?;
        let version = ring.primary;
        let state = ring
            .versions
            .get(&version)
            .ok_or(Error::Keyset("the primary key version is missing"))?;
        state
            .usage
            .take(&self.budget, &self.ledger, category, version)?;
        let header = Header {
            version: FORMAT_VERSION,
            category: category.clone(),
            key_version: version,
            subject_keyed: false,
            key_id: Some(state.key_id),
        };
        seal_with(domain, &*state.cipher, &header, plaintext, context, None)
    }

    /// [`FieldCrypt::encrypt`], returning the text form (`mcpsec:fc1:…`).
    pub fn encrypt_text(&self, plaintext: &[u8], context: &SealContext) -> Result<String, Error> {
        Ok(format::to_text(&self.encrypt(plaintext, context)?))
    }

    /// Decrypts a binary ciphertext written for the same context.
    ///
    /// Every failure is also recorded as a `sys_crypto_fail` event (resource: the
    /// context's category; reason `malformed` or `decrypt_failed`) in the builder's
    /// [event sink](FieldCrypt::builder), as [`Sealer::open`](mcpsec_core::Sealer::open)
    /// does: a burst of them is tampering or a key problem. A sink that refuses the event
    /// does not change the result; the refusal is logged (see [`mcpsec_core::emit`]).
    pub async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<SecretBytes, Error> {
        let result = self.decrypt_in(Domain::Field, ciphertext, context);
        if let Err(error) = &result {
            self.record_failure(context.category(), error).await;
        }
        result
    }

    fn decrypt_in(
        &self,
        domain: Domain,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<SecretBytes, Error> {
        let parsed = format::parse(ciphertext)?;
        if parsed.subject_keyed {
            return Err(Error::SubjectRequired);
        }
        if parsed.category != context.category() {
            return Err(Error::WrongCategory);
        }
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(parsed.category)
            .ok_or_else(|| Error::UnknownCategory(parsed.category.to_owned()))?;
        let version = parsed.key_version;
        if version < ring.min_decrypt {
            return Err(Error::KeyVersionRetired {
                category: parsed.category.to_owned(),
                version,
            });
        }
        let state = ring
            .versions
            .get(&version)
            .ok_or_else(|| Error::UnknownKeyVersion {
                category: parsed.category.to_owned(),
                version,
            })?;
        check_key_id(
            parsed.key_id.as_ref(),
            &state.key_id,
            parsed.category,
            version,
        )?;
        let aad = associated_data(domain, parsed.header_bytes, context, None);
        let plaintext = state.cipher.open(&parsed.nonce, &aad, parsed.sealed)?;
        Ok(SecretBytes::new(plaintext))
    }

    /// Decrypts the text form (failures recorded as for [`FieldCrypt::decrypt`]).
    pub async fn decrypt_text(
        &self,
        text: &str,
        context: &SealContext,
    ) -> Result<SecretBytes, Error> {
        match format::from_text(text) {
            Ok(bytes) => self.decrypt(&bytes, context).await,
            Err(error) => {
                self.record_failure(context.category(), &error).await;
                Err(error)
            }
        }
    }

    /// Whether a ciphertext is already under its category's primary key (so a rewrap job
    /// can skip it). Errors only when the header cannot be read or the category is unknown.
    pub fn is_current(&self, ciphertext: &[u8]) -> Result<bool, Error> {
        let parsed = format::parse(ciphertext)?;
        if parsed.subject_keyed {
            return Ok(true);
        }
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(parsed.category)
            .ok_or_else(|| Error::UnknownCategory(parsed.category.to_owned()))?;
        Ok(parsed.key_version == ring.primary)
    }

    /// Re-encrypts a ciphertext under its category's primary key, for the same context.
    /// Returns `None` when it already is.
    pub fn reencrypt(
        &self,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.reencrypt_in(Domain::Field, ciphertext, context)
    }

    fn reencrypt_in(
        &self,
        domain: Domain,
        ciphertext: &[u8],
        context: &SealContext,
    ) -> Result<Option<Vec<u8>>, Error> {
        if self.is_current(ciphertext)? {
            return Ok(None);
        }
        let plaintext = self.decrypt_in(domain, ciphertext, context)?;
        self.encrypt_in(domain, plaintext.expose_secret(), context)
            .map(Some)
    }

    async fn record_failure(&self, category: &str, error: &Error) {
        let Ok(label) = mcpsec_core::Label::new(category) else {
            return;
        };
        let reason = match error {
            Error::Malformed(_) | Error::TooLarge(_) | Error::UnsupportedVersion(_) => {
                ReasonCode::Malformed
            }
            _ => ReasonCode::DecryptFailed,
        };
        let event =
            SecurityEvent::new(EventKind::SysCryptoFail, Outcome::Failure, self.clock.now())
                .with_resource(label, None)
                .with_reason(reason);
        // A failed open is already an error to the caller; a sink outage must not mask
        // it, and is logged rather than discarded.
        mcpsec_core::emit(&*self.events, event).await;
    }
}
