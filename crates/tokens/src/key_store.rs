//! Where a [`SigningKeyring`]'s metadata lives: which kid is next, current or retired
//! (and until when), shared by every instance that signs. Private keys are not in it:
//! they stay with a [`SigningKeyProvider`] (a key directory, an HSM, a KMS), which the
//! keyring asks for each kid when it loads.
//!
//! The store is versioned as a whole: [`SigningKeyStore::replace`] writes a new set of
//! records only if the store is still at the generation the writer read, so two
//! instances rotating at once cannot both win (the loser gets a
//! [`Conflict`](mcpsec_core::StoreErrorKind::Conflict) and reloads). In SQL that is one
//! statement: `UPDATE signing_keyring SET records = :new, generation = generation + 1
//! WHERE generation = :expected`, checking that one row changed.

use crate::{Algorithm, Error, KeyState, SigningKey, SigningKeyring};
use mcpsec_core::{KeyId, StoreError};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// One signing key as the store keeps it: no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key's id, as published in the JWKS.
    pub kid: KeyId,
    /// Its algorithm; a provider's key of another algorithm is refused on load.
    pub algorithm: Algorithm,
    /// Where it is in its life (retired keys carry the date their tokens expire).
    pub state: KeyState,
}

/// The records and the generation they were read at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyringRecords {
    /// Bumped by every successful [`SigningKeyStore::replace`]; 0 for an empty store.
    pub generation: u64,
    /// Every key in the ring, in the order they were added.
    pub records: Vec<KeyRecord>,
}

/// Keyring metadata storage shared by the instances that sign.
///
/// Both methods are atomic: `load` returns one generation's records, never a mix, and
/// `replace` is a compare-and-swap on the generation.
#[async_trait::async_trait]
pub trait SigningKeyStore: Send + Sync + fmt::Debug {
    /// The current records (generation 0 and no records when nothing was written).
    async fn load(&self) -> Result<KeyringRecords, StoreError>;

    /// Writes `records` if the store is at `expected_generation`, and returns the new
    /// generation (`expected_generation + 1`). Otherwise changes nothing and returns a
    /// [`Conflict`](mcpsec_core::StoreErrorKind::Conflict) error: reload and retry.
    async fn replace(
        &self,
        expected_generation: u64,
        records: Vec<KeyRecord>,
    ) -> Result<u64, StoreError>;
}

/// Hands out the private half of a signing key by kid.
#[async_trait::async_trait]
pub trait SigningKeyProvider: Send + Sync + fmt::Debug {
    /// The signing key `kid`, or `None` when the provider does not hold it.
    async fn signing_key(&self, kid: &KeyId) -> Result<Option<Arc<SigningKey>>, Error>;
}

/// A [`SigningKeyStore`] in memory: for tests and single-instance hosts.
#[derive(Debug, Default)]
pub struct MemorySigningKeyStore {
    state: Mutex<KeyringRecords>,
}

impl MemorySigningKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl SigningKeyStore for MemorySigningKeyStore {
    async fn load(&self) -> Result<KeyringRecords, StoreError> {
        Ok(self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn replace(
        &self,
        expected_generation: u64,
        records: Vec<KeyRecord>,
    ) -> Result<u64, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.generation != expected_generation {
            return Err(StoreError::conflict(
                "the signing keyring changed since it was read",
            ));
        }
        let generation = expected_generation
            .checked_add(1)
            .ok_or(StoreError::corrupt("keyring generation overflow"))?;
        *state = KeyringRecords {
            generation,
            records,
        };
        Ok(generation)
    }
}

impl SigningKeyring {
    /// The metadata to persist: every key's kid, algorithm and state.
    pub fn records(&self) -> Vec<KeyRecord> {
        self.keys()
            .map(|(key, state)| KeyRecord {
                kid: key.kid().clone(),
                algorithm: key.algorithm(),
                state,
            })
            .collect()
    }

    /// Writes this keyring's metadata to `store` if it is still at `expected_generation`
    /// (the one [`SigningKeyring::load`] returned, or 0 for a new store), returning the
    /// new generation. A concurrent writer makes this fail with a conflict
    /// ([`Error::Store`]) and write nothing.
    pub async fn save(
        &self,
        store: &dyn SigningKeyStore,
        expected_generation: u64,
    ) -> Result<u64, Error> {
        Ok(store.replace(expected_generation, self.records()).await?)
    }

    /// Builds the keyring `store` describes, taking each private key from `provider`,
    /// and returns it with the generation it was read at. Refused ([`KeyError::Keyring`](crate::KeyError::Keyring)):
    /// an empty store, a kid the provider does not hold or holds with another algorithm,
    /// not exactly one current key, more than one next key, or a kid listed twice.
    pub async fn load(
        store: &dyn SigningKeyStore,
        provider: &dyn SigningKeyProvider,
    ) -> Result<(Self, u64), Error> {
        let stored = store.load().await?;
        let mut entries = Vec::with_capacity(stored.records.len());
        for record in stored.records {
            let key = provider.signing_key(&record.kid).await?.ok_or(Error::Key(
                crate::KeyError::Keyring("the key provider lacks a stored kid"),
            ))?;
            if key.kid() != &record.kid || key.algorithm() != record.algorithm {
                return Err(Error::Key(crate::KeyError::Keyring(
                    "the key provider's key does not match the stored record",
                )));
            }
            entries.push((key, record.state));
        }
        Ok((Self::from_entries(entries)?, stored.generation))
    }
}

/// A [`SigningKeyProvider`] holding keys in memory (tests, or keys loaded at startup from
/// a key directory).
#[derive(Debug, Default)]
pub struct MemorySigningKeyProvider {
    keys: Mutex<Vec<Arc<SigningKey>>>,
}

impl MemorySigningKeyProvider {
    /// An empty provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a key.
    pub fn insert(&self, key: SigningKey) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|k| k.kid() != key.kid());
        keys.push(Arc::new(key));
    }
}

#[async_trait::async_trait]
impl SigningKeyProvider for MemorySigningKeyProvider {
    async fn signing_key(&self, kid: &KeyId) -> Result<Option<Arc<SigningKey>>, Error> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(keys.iter().find(|k| k.kid() == kid).cloned())
    }
}
