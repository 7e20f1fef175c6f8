//! # mcpsec-fieldcrypt
//!
//! Application-level encryption of sensitive fields (third-party tokens, TOTP secrets,
//! personal data) before they reach a store: AES-256-GCM with a keyring per data category,
//! the field's location bound as associated data, key rotation with a resumable re-encryption
//! job, blind indexes for equality search, and crypto-shredding.
//!
//! - [`FieldCrypt`]: `encrypt(plaintext, &SealContext)` / `decrypt(ciphertext, &SealContext)`
//!   (async: a failure is recorded as a `sys_crypto_fail` event).
//!   The context (category, table, column, row, optional tenant) is required; a ciphertext
//!   copied to another row, column or tenant fails to decrypt. Implements core's
//!   [`Sealer`](mcpsec_core::Sealer), which the MFA and token crates use.
//! - [`format`](mod@format): the versioned ciphertext (header with category and key version,
//!   authenticated), in binary and as `mcpsec:fc1:…` text; [`format::inspect`] reads the
//!   header without a key.
//! - [`CryptoProvider`]: the AEAD backend, RustCrypto by default or aws-lc-rs (feature
//!   `aws-lc`), producing identical bytes.
//! - Keys: [`KeyProvider`] wraps data keys (a KMS or Vault transit fits it);
//!   [`LocalMasterKey`] and [`LocalKeyset`] are the local implementation (a keyset file,
//!   mode 0600, whose keys are wrapped by a master key from `MCPSEC_MASTER_KEY` or a key
//!   file, or any [`KeysetStore`]: a database row or KMS-backed blob, written by
//!   compare-and-swap). [`LocalKeyset::rotate`] adds a primary version; [`rewrap::Rewrap`] moves old data
//!   onto it; [`LocalKeyset::set_min_decrypt`] then retires the old versions and
//!   [`LocalKeyset::destroy_version`] erases them. An older copy of the keyset put back in
//!   place is refused ([`Error::Rollback`]), and a key version number reused with another
//!   key is reported as [`Error::KeyMismatch`].
//! - [`budget`]: at most 2^32 random nonces per key version, counted and persisted in
//!   growing blocks; [`FieldCrypt::release_reservations`] on a clean shutdown.
//! - [`blind`]: keyed, truncated HMAC indexes, with their leakage trade-off.
//! - [`subject`]: per-user or per-tenant data keys; [`FieldCrypt::shred_subject`] erases.
//!
//! ```
//! use mcpsec_core::{EventKind, MemorySink, SealContext, SecretBytes};
//! use mcpsec_fieldcrypt::{Category, Error, FieldCrypt, KeyVersion, KeyringSpec};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pii = Category::new("pii")?;
//! let events = MemorySink::new(); // in production: the audit log (`NullSink` by name for none)
//! let crypt = FieldCrypt::builder(Arc::new(events.clone()))
//!     .keyring(KeyringSpec {
//!         category: pii.clone(),
//!         primary: 1,
//!         min_decrypt: 1,
//!         versions: vec![KeyVersion { version: 1, key: SecretBytes::random(32)?, reserved: 0 }],
//!         index_key: SecretBytes::random(32)?,
//!     })
//!     .build()?;
//!
//! let here = SealContext::new("pii", "users", "phone", "user-42")?;
//! let stored = crypt.encrypt_text(b"+44 20 7946 0000", &here)?;
//! assert!(stored.starts_with("mcpsec:fc1:"));
//! assert_eq!(crypt.decrypt_text(&stored, &here).await?.expose_secret(), b"+44 20 7946 0000");
//!
//! // The same ciphertext pasted into another row does not decrypt.
//! let elsewhere = SealContext::new("pii", "users", "phone", "user-43")?;
//! assert!(matches!(crypt.decrypt_text(&stored, &elsewhere).await, Err(Error::Decrypt)));
//! // Failures are also recorded as `sys_crypto_fail` events in the builder's sink.
//! assert!(events.events().iter().any(|e| e.kind == EventKind::SysCryptoFail));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests fail loudly on purpose"
    )
)]

pub mod backend;
pub mod blind;
pub mod budget;
mod crypt;
mod error;
pub mod format;
mod keyset;
#[cfg(feature = "testkit")]
pub mod keyset_store_testkit;
mod provider;
pub mod rewrap;
pub mod subject;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use backend::CryptoProvider;
pub use blind::{BlindIndex, BlindIndexConfig, Normalize};
pub use budget::{BudgetState, MemoryLedger, NonceBudget, UsageLedger};
pub use crypt::{FieldCrypt, FieldCryptBuilder, KeyUsage, KeyVersion, KeyringSpec};
pub use error::Error;
pub use format::{Category, Header};
pub use keyset::{
    CategoryInfo, FileKeysetStore, KeysetStore, LocalKeyset, MAX_KEYSET_FILE, MemoryKeysetStore,
    StoredKeyset, check_master_key_location,
};
pub use provider::{
    AuditedKeyProvider, KeyProvider, KeyPurpose, LocalMasterKey, MASTER_KEY_ENV, WrapContext,
};
pub use subject::{
    ActiveSubjectKey, MemorySubjectKeyStore, Subject, SubjectKeyState, SubjectKeyStore,
};
