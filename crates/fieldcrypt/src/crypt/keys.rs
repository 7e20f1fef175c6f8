//! The keyrings a [`FieldCrypt`] holds: installing keys, new primary versions, retiring
//! old ones.

use super::FieldCrypt;
use crate::backend::{CryptoProvider, KEY_LEN, PreparedKey};
use crate::budget::Usage;
use crate::format;
use crate::{Category, Error};
use mcpsec_core::SecretBytes;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError};

/// One key version of a category, as handed to [`FieldCrypt`] by a keyset loader.
pub struct KeyVersion {
    /// The version number (≥ 1).
    pub version: u32,
    /// The 32-byte AES-256 key.
    pub key: SecretBytes,
    /// The ledger's total for this version when the keys were loaded.
    pub reserved: u64,
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVersion")
            .field("version", &self.version)
            .field("key", &"[REDACTED]")
            .field("reserved", &self.reserved)
            .finish()
    }
}

/// A category's keys, as handed to [`FieldCrypt`] by a keyset loader.
#[derive(Debug)]
pub struct KeyringSpec {
    /// The data category.
    pub category: Category,
    /// The version new data is encrypted with.
    pub primary: u32,
    /// Versions below this are refused for decryption.
    pub min_decrypt: u32,
    /// Every version still kept.
    pub versions: Vec<KeyVersion>,
    /// The root of this category's blind-index keys.
    pub index_key: SecretBytes,
}

pub(super) struct VersionState {
    pub(super) cipher: Box<dyn PreparedKey>,
    /// Written into every ciphertext, checked on every open (see [`format`]).
    pub(super) key_id: [u8; format::KEY_ID_LEN],
    pub(super) usage: Arc<Usage>,
}

impl VersionState {
    pub(super) fn new(provider: CryptoProvider, version: &KeyVersion) -> Result<Self, Error> {
        Ok(Self {
            cipher: provider.aead().prepare(&version.key)?,
            key_id: format::key_id(&version.key)?,
            usage: Arc::new(Usage::resume(version.reserved)),
        })
    }
}

pub(super) struct Keyring {
    pub(super) primary: u32,
    pub(super) min_decrypt: u32,
    pub(super) versions: BTreeMap<u32, VersionState>,
    pub(super) index_key: SecretBytes,
}

pub(super) fn prepare_ring(provider: CryptoProvider, spec: KeyringSpec) -> Result<Keyring, Error> {
    if spec.index_key.len() != KEY_LEN {
        return Err(Error::InvalidArgument("an index key is 32 bytes"));
    }
    let mut versions = BTreeMap::new();
    for version in spec.versions {
        if version.version == 0 {
            return Err(Error::InvalidArgument("key versions start at 1"));
        }
        let state = VersionState::new(provider, &version)?;
        if versions.insert(version.version, state).is_some() {
            return Err(Error::InvalidArgument("a key version appears twice"));
        }
    }
    if !versions.contains_key(&spec.primary) {
        return Err(Error::InvalidArgument("the primary key version is missing"));
    }
    if spec.min_decrypt == 0 || spec.min_decrypt > spec.primary {
        return Err(Error::InvalidArgument(
            "the minimum decryption version must be between 1 and the primary",
        ));
    }
    Ok(Keyring {
        primary: spec.primary,
        min_decrypt: spec.min_decrypt,
        versions,
        index_key: spec.index_key,
    })
}

impl FieldCrypt {
    /// The categories with a keyring.
    pub fn categories(&self) -> Vec<Category> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        rings.keys().cloned().collect()
    }

    /// A category's primary version and minimum decryption version.
    pub fn versions(&self, category: &Category) -> Result<(u32, u32), Error> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        Ok((ring.primary, ring.min_decrypt))
    }

    /// Installs a new key version for a category and makes it primary. Persist it first
    /// (see [`LocalKeyset::rotate`](crate::LocalKeyset::rotate), which does both).
    pub fn install_primary(&self, category: &Category, version: KeyVersion) -> Result<(), Error> {
        let state = VersionState::new(self.provider, &version)?;
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get_mut(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        if version.version <= ring.primary || ring.versions.contains_key(&version.version) {
            return Err(Error::InvalidArgument(
                "a new primary version must be greater than every existing one",
            ));
        }
        ring.versions.insert(version.version, state);
        ring.primary = version.version;
        Ok(())
    }

    /// Adds a key version another process created (see
    /// [`LocalKeyset::refresh`](crate::LocalKeyset::refresh)): usable for decryption at
    /// once, and for encryption when `primary` is set and it is newer than the primary.
    pub fn install_version(
        &self,
        category: &Category,
        version: KeyVersion,
        primary: bool,
    ) -> Result<(), Error> {
        let state = VersionState::new(self.provider, &version)?;
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get_mut(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        if version.version == 0 || ring.versions.contains_key(&version.version) {
            return Err(Error::InvalidArgument(
                "the key version is already installed",
            ));
        }
        if primary && version.version <= ring.primary {
            return Err(Error::InvalidArgument(
                "a new primary version must be greater than the current one",
            ));
        }
        ring.versions.insert(version.version, state);
        if primary {
            ring.primary = version.version;
        }
        Ok(())
    }

    /// The versions a category has installed.
    pub fn installed_versions(&self, category: &Category) -> Result<Vec<u32>, Error> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        Ok(ring.versions.keys().copied().collect())
    }

    /// Adds a whole category's keyring (a category created after start-up).
    pub fn install_keyring(&self, spec: KeyringSpec) -> Result<(), Error> {
        let category = spec.category.clone();
        let ring = prepare_ring(self.provider, spec)?;
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        if rings.contains_key(&category) {
            return Err(Error::InvalidArgument("the category already has a keyring"));
        }
        rings.insert(category, ring);
        Ok(())
    }

    /// Raises a category's minimum decryption version (after a rewrap finished) and drops
    /// the keys below it. Data still under those versions becomes unreadable.
    pub fn set_min_decrypt(&self, category: &Category, min: u32) -> Result<(), Error> {
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get_mut(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        if min == 0 || min > ring.primary {
            return Err(Error::InvalidArgument(
                "the minimum decryption version must be between 1 and the primary",
            ));
        }
        ring.min_decrypt = ring.min_decrypt.max(min);
        let keep = ring.min_decrypt;
        ring.versions.retain(|version, _| *version >= keep);
        Ok(())
    }
}
