//! The local keyset file: every category's data keys, wrapped by a [`KeyProvider`].
//!
//! ```json
//! {"format":"mcpsec-keyset-v1","key_provider":"local:0123456789abcdef",
//!  "integrity_key":"<base64>",
//!  "categories":{"pii":{"primary":2,"min_decrypt":1,"index_key":"<base64>",
//!   "versions":[{"version":1,"created":1764000000,"wrapped":"<base64>","reserved":1048576}, …]}},
//!  "mac":"<base64>"}
//! ```
//!
//! The file holds no usable key without the provider (for [`LocalMasterKey`], the master
//! key, which is never written next to it), and its metadata (primary and minimum
//! versions, encryption counts) is authenticated by an HMAC whose key is wrapped like the
//! others: an edit made without the master key is refused on open and on every update.
//! It is written atomically (temporary file, fsync, rename) with mode 0600.
//!
//! The document lives in a [`KeysetStore`]: the file above ([`FileKeysetStore`], what
//! [`LocalKeyset::create`] and [`LocalKeyset::open`] use), or a database row or KMS-backed
//! blob ([`LocalKeyset::create_in`], [`LocalKeyset::open_in`]). Every write is one
//! read-modify-write ending in the store's compare-and-swap on the generation (for the
//! file, under an exclusive lock on `<keyset>.lock`), started again from the newer
//! document when another writer got in first, so no writer overwrites another's change
//! with a stale copy; the one write that prepares its content outside that step
//! ([`LocalKeyset::rekey`], which waits on the provider) writes only if no key changed
//! since it read them, and starts again otherwise.
//!
//! ## Rollback
//!
//! The file carries a `generation`, under the MAC, raised by every write. A
//! [`LocalKeyset`] remembers the newest generation it has seen and refuses an older file
//! ([`Error::Rollback`]): restoring an intact older copy (from a backup) while a process
//! runs would bring retired versions back and make the next rotation hand out a version
//! number a second time. For processes that start after the restore, every write also
//! records the generation in a watermark file beside the keyset (`<keyset>.generation`),
//! which [`LocalKeyset::open`] checks. What that does and does not detect:
//!
//! - restoring the keyset file alone: detected, by a running handle and on open;
//! - restoring the keyset file *and* its watermark (a whole-directory backup, or an
//!   attacker with write access to the directory who also edits or deletes the
//!   watermark): not detected on open. A missing watermark is accepted, so that keysets
//!   written before watermarks existed still open. Keep the directory's backups out of
//!   reach, or back up only the keyset file;
//! - in every case, a version number handed out twice is caught when data is read:
//!   ciphertexts carry the id of their key, and a mismatch is [`Error::KeyMismatch`].
//!
//! [`LocalMasterKey`]: crate::LocalMasterKey

use crate::backend::KEY_LEN;
use crate::budget::UsageLedger;
use crate::crypt::{FieldCrypt, FieldCryptBuilder, KeyVersion, KeyringSpec};
use crate::provider::{KeyProvider, KeyPurpose, WrapContext};
use crate::{Category, Error};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mcpsec_core::{Clock, EventKind, EventSink, Outcome, ReasonCode, SecretBytes, SecurityEvent};
use mcpsec_core::{StoreError, StoreErrorKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

mod file;
mod store;

pub use file::MAX_KEYSET_FILE;
use file::{
    CategoryFile, FORMAT, KeysetFile, VersionFile, check_generation, check_mac, encode_keyset,
    integrity_context, parse_keyset, sign,
};
pub use store::{FileKeysetStore, KeysetStore, MemoryKeysetStore, StoredKeyset};

/// One category as `mcpsec crypt` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryInfo {
    /// The category.
    pub category: String,
    /// The version new data is encrypted with.
    pub primary: u32,
    /// Versions below this are refused.
    pub min_decrypt: u32,
    /// Every version in the file, destroyed ones included (their numbers stay taken).
    pub versions: Vec<u32>,
    /// Versions whose key material was destroyed ([`LocalKeyset::destroy_version`]).
    pub destroyed: Vec<u32>,
}

/// A keyset file on local disk, with the provider that unwraps it. Also the
/// [`UsageLedger`] of the [`FieldCrypt`] it opens: nonce-budget reservations are written
/// back to the file.
#[derive(Debug)]
pub struct LocalKeyset {
    store: Arc<dyn KeysetStore>,
    /// The file's path when the store is a [`FileKeysetStore`].
    path: Option<PathBuf>,
    file: Mutex<KeysetFile>,
    /// One [`LocalKeyset::update`] at a time in this handle (the store's compare-and-swap
    /// orders them between handles).
    writing: tokio::sync::Mutex<()>,
    provider: Arc<dyn KeyProvider>,
    rotation: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    integrity: SecretBytes,
    /// The newest generation this handle has read or written.
    seen: AtomicU64,
}

fn unix_seconds(clock: &dyn Clock) -> u64 {
    clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl LocalKeyset {
    /// Creates a new keyset file at `path` with version 1 of each category. Refuses to
    /// overwrite an existing file.
    pub async fn create(
        path: impl Into<PathBuf>,
        provider: Arc<dyn KeyProvider>,
        categories: &[Category],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let path = path.into();
        let store = Arc::new(FileKeysetStore::new(path.clone()));
        let mut keyset = Self::create_in(store, provider, categories, clock).await?;
        keyset.path = Some(path);
        Ok(keyset)
    }

    /// Creates a new keyset in `store` (a database row, a KMS-backed blob) with version 1
    /// of each category. Refuses if the store already holds one.
    pub async fn create_in(
        store: Arc<dyn KeysetStore>,
        provider: Arc<dyn KeyProvider>,
        categories: &[Category],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        if store.load().await?.is_some() {
            return Err(Error::InvalidArgument("the keyset file already exists"));
        }
        if categories.is_empty() {
            return Err(Error::InvalidArgument(
                "a keyset needs at least one category",
            ));
        }
        let integrity = SecretBytes::random(KEY_LEN)?;
        let wrapped_integrity = provider.wrap(&integrity, &integrity_context()?).await?;
        let mut file = KeysetFile {
            format: FORMAT.to_owned(),
            key_provider: provider.key_id(),
            integrity_key: STANDARD.encode(wrapped_integrity),
            categories: BTreeMap::new(),
            generation: 1,
            mac: String::new(),
        };
        for category in categories {
            let entry = new_category(&*provider, category, unix_seconds(&*clock)).await?;
            if file
                .categories
                .insert(category.to_string(), entry)
                .is_some()
            {
                return Err(Error::InvalidArgument("a category appears twice"));
            }
        }
        sign(&mut file, &integrity)?;
        let stored = StoredKeyset {
            generation: file.generation,
            document: encode_keyset(&file)?,
        };
        // `None`: only if nothing is stored, so two creators cannot both succeed.
        store.replace(None, stored).await.map_err(|error| {
            if error.kind() == StoreErrorKind::Conflict {
                Error::InvalidArgument("the keyset file already exists")
            } else {
                Error::Store(error)
            }
        })?;
        Ok(Self {
            store,
            path: None,
            writing: tokio::sync::Mutex::new(()),
            seen: AtomicU64::new(file.generation),
            file: Mutex::new(file),
            provider,
            rotation: tokio::sync::Mutex::new(()),
            clock,
            integrity,
        })
    }

    /// Reads a keyset file and checks its integrity. Fails if it was written for another
    /// wrapping key, or changed without it, or is older than the generation recorded in
    /// its watermark ([`Error::Rollback`]; see the module docs for what this catches).
    pub async fn open(
        path: impl Into<PathBuf>,
        provider: Arc<dyn KeyProvider>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let path = path.into();
        if !path.exists() {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound).into());
        }
        let store = Arc::new(FileKeysetStore::new(path.clone()));
        let mut keyset = Self::open_in(store, provider, clock).await?;
        keyset.path = Some(path);
        Ok(keyset)
    }

    /// Reads the keyset in `store` and checks its integrity, like [`LocalKeyset::open`].
    pub async fn open_in(
        store: Arc<dyn KeysetStore>,
        provider: Arc<dyn KeyProvider>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let stored = store
            .load()
            .await?
            .ok_or(Error::Keyset("no keyset is stored"))?;
        let file = parse_keyset(&stored.document)?;
        if file.key_provider != provider.key_id() {
            return Err(Error::KeyProvider(
                "the keyset was written with another master key",
            ));
        }
        let wrapped = STANDARD
            .decode(&file.integrity_key)
            .map_err(|_| Error::Keyset("wrapped key is not base64"))?;
        let integrity = provider.unwrap(&wrapped, &integrity_context()?).await?;
        check_mac(&file, &integrity)?;
        check_generation(file.generation, store.watermark().await?)?;
        Ok(Self {
            seen: AtomicU64::new(file.generation),
            store,
            path: None,
            writing: tokio::sync::Mutex::new(()),
            file: Mutex::new(file),
            provider,
            rotation: tokio::sync::Mutex::new(()),
            clock,
            integrity,
        })
    }

    /// The file's path, for a keyset opened from a file ([`LocalKeyset::open`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Each category's versions.
    pub fn info(&self) -> Vec<CategoryInfo> {
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.categories
            .iter()
            .map(|(name, category)| CategoryInfo {
                category: name.clone(),
                primary: category.primary,
                min_decrypt: category.min_decrypt,
                versions: category.versions.iter().map(|v| v.version).collect(),
                destroyed: category
                    .versions
                    .iter()
                    .filter(|v| v.destroyed.is_some())
                    .map(|v| v.version)
                    .collect(),
            })
            .collect()
    }

    /// Categories whose primary version is older than `max_age`: the host's rotation
    /// schedule calls this (daily, say) and [`LocalKeyset::rotate`]s what it returns.
    pub fn due_by_age(&self, max_age: std::time::Duration) -> Vec<Category> {
        let now = unix_seconds(&*self.clock);
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.categories
            .iter()
            .filter(|(_, category)| {
                category
                    .versions
                    .iter()
                    .find(|v| v.version == category.primary)
                    .is_some_and(|v| now.saturating_sub(v.created) >= max_age.as_secs())
            })
            .filter_map(|(name, _)| Category::new(name).ok())
            .collect()
    }

    /// Unwraps every key and builds a [`FieldCrypt`] from `builder` (backend, budget,
    /// subject store, events), with this keyset as its usage ledger.
    pub async fn field_crypt(
        self: &Arc<Self>,
        builder: FieldCryptBuilder,
    ) -> Result<FieldCrypt, Error> {
        let snapshot = self
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut builder = builder.ledger(self.clone());
        for (name, category) in &snapshot.categories {
            builder = builder.keyring(self.unwrap_category(name, category).await?);
        }
        let crypt = builder.build()?;
        crypt.reserve_ahead().await?;
        Ok(crypt)
    }

    async fn unwrap_category(&self, name: &str, file: &CategoryFile) -> Result<KeyringSpec, Error> {
        let category = Category::new(name).map_err(|_| Error::Keyset("category name"))?;
        let index_key = self
            .unwrap_one(&category, 0, KeyPurpose::BlindIndex, &file.index_key)
            .await?;
        let mut versions = Vec::with_capacity(file.versions.len());
        for version in &file.versions {
            if version.version < file.min_decrypt {
                continue; // refused anyway: do not hold the key in memory
            }
            let key = self
                .unwrap_one(
                    &category,
                    version.version,
                    KeyPurpose::Data,
                    &version.wrapped,
                )
                .await?;
            versions.push(KeyVersion {
                version: version.version,
                key,
                reserved: version.reserved,
            });
        }
        Ok(KeyringSpec {
            category,
            primary: file.primary,
            min_decrypt: file.min_decrypt,
            versions,
            index_key,
        })
    }

    async fn unwrap_one(
        &self,
        category: &Category,
        version: u32,
        purpose: KeyPurpose,
        wrapped: &str,
    ) -> Result<SecretBytes, Error> {
        let wrapped = STANDARD
            .decode(wrapped)
            .map_err(|_| Error::Keyset("wrapped key is not base64"))?;
        let context = WrapContext {
            category: category.clone(),
            version,
            purpose,
        };
        let key = self.provider.unwrap(&wrapped, &context).await?;
        if key.len() != KEY_LEN {
            return Err(Error::Keyset("an unwrapped key is not 32 bytes"));
        }
        Ok(key)
    }

    /// Adds a new version to `category`, makes it primary, writes the file, and then (only
    /// once it is durable) installs it in `crypt` if given. Returns the new version and the
    /// `sys_crypto_key_rotated` event for the host to record.
    pub async fn rotate(
        &self,
        category: &Category,
        crypt: Option<&FieldCrypt>,
    ) -> Result<(u32, SecurityEvent), Error> {
        let _rotating = self.rotation.lock().await;
        // Another process may rotate the same file: pick the next version from the file on
        // disk, and if it is taken by the time the wrapped key is written, pick again.
        let mut attempt = 0;
        let (next, key) = loop {
            attempt += 1;
            let next = self
                .update(|file| {
                    let entry = file
                        .categories
                        .get(category.as_str())
                        .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
                    let next = entry
                        .versions
                        .iter()
                        .map(|v| v.version)
                        .max()
                        .unwrap_or(0)
                        .checked_add(1)
                        .ok_or(Error::Keyset("key versions exhausted"))?;
                    Ok((false, next))
                })
                .await?;
            let key = SecretBytes::random(KEY_LEN)?;
            let context = WrapContext {
                category: category.clone(),
                version: next,
                purpose: KeyPurpose::Data,
            };
            let wrapped = STANDARD.encode(self.provider.wrap(&key, &context).await?);
            let created = unix_seconds(&*self.clock);
            let written = self
                .update(|file| {
                    let entry = file
                        .categories
                        .get_mut(category.as_str())
                        .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
                    if entry.versions.iter().any(|v| v.version >= next) {
                        return Ok((false, false));
                    }
                    entry.versions.push(VersionFile {
                        version: next,
                        created,
                        wrapped: wrapped.clone(),
                        reserved: 0,
                        destroyed: None,
                    });
                    entry.primary = next;
                    Ok((true, true))
                })
                .await?;
            if written {
                break (next, key);
            }
            if attempt >= 3 {
                return Err(Error::Store(StoreError::conflict(
                    "the keyset file keeps changing under the rotation",
                )));
            }
        };
        if let Some(crypt) = crypt {
            crypt.install_primary(
                category,
                KeyVersion {
                    version: next,
                    key,
                    reserved: 0,
                },
            )?;
            // The rotation is durable either way; without a reservation the synchronous
            // `encrypt` refuses until a refill lands, the async paths wait for one.
            let _ = crypt.reserve_primary(category).await;
        }
        let event = SecurityEvent::new(
            EventKind::SysCryptoKeyRotated,
            Outcome::Success,
            self.clock.now(),
        )
        .with_resource(
            mcpsec_core::Label::new("data_key")?,
            Some(mcpsec_core::ResourceId::new(format!("{category}.v{next}"))?),
        )
        .with_reason(ReasonCode::Rotation);
        Ok((next, event))
    }

    /// Re-reads the file and brings `crypt` up to date with what other processes did:
    /// new categories, new versions (the file's primary becomes primary) and raised
    /// minimum versions. A fleet sharing a keyset calls this periodically, or on a signal
    /// after a rotation, so every instance can read data written under a new version.
    pub async fn refresh(&self, crypt: &FieldCrypt) -> Result<(), Error> {
        // Not while this handle rotates: the rotation installs its own version.
        let _rotating = self.rotation.lock().await;
        let file = self.update(|file| Ok((false, file.clone()))).await?;
        let installed = crypt.categories();
        for (name, entry) in &file.categories {
            let category = Category::new(name).map_err(|_| Error::Keyset("category name"))?;
            if !installed.contains(&category) {
                crypt.install_keyring(self.unwrap_category(name, entry).await?)?;
                continue;
            }
            let have = crypt.installed_versions(&category)?;
            let mut versions: Vec<&VersionFile> = entry
                .versions
                .iter()
                .filter(|v| v.version >= entry.min_decrypt && !have.contains(&v.version))
                .collect();
            versions.sort_by_key(|v| v.version);
            let (current_primary, current_min) = crypt.versions(&category)?;
            for version in versions {
                let key = self
                    .unwrap_one(
                        &category,
                        version.version,
                        KeyPurpose::Data,
                        &version.wrapped,
                    )
                    .await?;
                let primary = version.version == entry.primary && entry.primary > current_primary;
                crypt.install_version(
                    &category,
                    KeyVersion {
                        version: version.version,
                        key,
                        reserved: version.reserved,
                    },
                    primary,
                )?;
            }
            if entry.min_decrypt > current_min {
                crypt.set_min_decrypt(&category, entry.min_decrypt)?;
            }
        }
        // New primaries start with an empty allowance; the refresh itself succeeded.
        let _ = crypt.reserve_ahead().await;
        Ok(())
    }

    /// Re-wraps every key in the file under `new_provider` (a new master key, or a move to
    /// a KMS) and writes the file atomically. Data keys do not change, so no field needs
    /// re-encryption; the old master key can be destroyed once every instance has been
    /// restarted with the new one. Returns the keyset opened with the new provider; this
    /// handle, and every process still on the old master key, can no longer write the file.
    ///
    /// The re-wrapping waits on the provider, so it works on a snapshot taken under the
    /// file lock; the write (under the lock again) happens only if no key, version or
    /// category changed meanwhile (nonce reservations made meanwhile are kept), and
    /// otherwise the rekey starts again from the new file, a few times, before failing
    /// with [`Error::Store`]. A rotation by another process is never lost.
    pub async fn rekey(&self, new_provider: Arc<dyn KeyProvider>) -> Result<Self, Error> {
        const ATTEMPTS: usize = 5;
        let _rotating = self.rotation.lock().await;
        for _ in 0..ATTEMPTS {
            let snapshot = self.update(|file| Ok((false, file.clone()))).await?;
            let rewrapped = self.rewrapped(&snapshot, &*new_provider).await?;
            let written = self
                .update(|current| {
                    if current.keys_only() != snapshot.keys_only() {
                        return Ok((false, None));
                    }
                    let mut next = rewrapped.clone();
                    // Same keys and versions: only the reservations made meanwhile differ.
                    for (name, entry) in next.categories.iter_mut() {
                        if let Some(now) = current.categories.get(name) {
                            for (version, latest) in entry.versions.iter_mut().zip(&now.versions) {
                                version.reserved = latest.reserved;
                            }
                        }
                    }
                    next.generation = current.generation;
                    *current = next;
                    Ok((true, Some(current.generation)))
                })
                .await?;
            if written.is_some() {
                let file = self
                    .file
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                return Ok(Self {
                    store: self.store.clone(),
                    path: self.path.clone(),
                    writing: tokio::sync::Mutex::new(()),
                    seen: AtomicU64::new(file.generation),
                    file: Mutex::new(file),
                    provider: new_provider,
                    rotation: tokio::sync::Mutex::new(()),
                    clock: self.clock.clone(),
                    integrity: self.integrity.duplicate(),
                });
            }
        }
        Err(Error::Store(StoreError::conflict(
            "the keyset file keeps changing under the rekey; nothing was written",
        )))
    }

    /// `file` with every key re-wrapped under `new_provider` (destroyed versions stay
    /// destroyed).
    async fn rewrapped(
        &self,
        file: &KeysetFile,
        new_provider: &dyn KeyProvider,
    ) -> Result<KeysetFile, Error> {
        let mut file = file.clone();
        for (name, entry) in file.categories.iter_mut() {
            let category = Category::new(name).map_err(|_| Error::Keyset("category name"))?;
            entry.index_key = self
                .rewrap_one(
                    new_provider,
                    &category,
                    0,
                    KeyPurpose::BlindIndex,
                    &entry.index_key,
                )
                .await?;
            for version in entry.versions.iter_mut() {
                if version.destroyed.is_some() {
                    continue;
                }
                version.wrapped = self
                    .rewrap_one(
                        new_provider,
                        &category,
                        version.version,
                        KeyPurpose::Data,
                        &version.wrapped,
                    )
                    .await?;
            }
        }
        file.key_provider = new_provider.key_id();
        file.integrity_key = STANDARD.encode(
            new_provider
                .wrap(&self.integrity, &integrity_context()?)
                .await?,
        );
        Ok(file)
    }

    /// Destroys the key material of a retired `version` of `category` (one below the
    /// minimum decryption version): its wrapped key is removed from the file, which keeps
    /// only the version number, so it is never handed out again. Data still under that
    /// version can never be decrypted again, by anyone holding this file and the master
    /// key. Records a `sensitive_delete` event in `events` after the file is written;
    /// if the sink refuses it, returns [`Error::Store`] (the key is destroyed either way),
    /// and a retry, which finds the version already destroyed and returns `false`,
    /// records it again.
    ///
    /// This is the step that erases; [`LocalKeyset::set_min_decrypt`] only stops using a
    /// version. A [`FieldCrypt`] drops a retired key from memory when it learns of the
    /// raised minimum (at once for the one passed to `set_min_decrypt`, at the next
    /// [`LocalKeyset::refresh`] or restart for the others). Copies of the keyset file made before this call (backups, snapshots)
    /// still hold the key, wrapped by the master key: erasure is complete only once those
    /// copies have expired, or once the master key that wraps them has been replaced
    /// ([`LocalKeyset::rekey`]) and destroyed. See the field-key rotation runbook.
    pub async fn destroy_version(
        &self,
        category: &Category,
        version: u32,
        events: &dyn EventSink,
    ) -> Result<bool, Error> {
        let _rotating = self.rotation.lock().await;
        let now = unix_seconds(&*self.clock);
        let destroyed = self.update(|file| {
            let entry = file
                .categories
                .get_mut(category.as_str())
                .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
            if version >= entry.min_decrypt {
                return Err(Error::InvalidArgument(
                    "only a retired version (below the minimum decryption version) can be destroyed",
                ));
            }
            let record = entry
                .versions
                .iter_mut()
                .find(|v| v.version == version)
                .ok_or_else(|| Error::UnknownKeyVersion {
                    category: category.to_string(),
                    version,
                })?;
            if record.destroyed.is_some() {
                return Ok((false, false));
            }
            record.wrapped = String::new();
            record.destroyed = Some(now);
            Ok((true, true))
        }).await?;
        let event = SecurityEvent::new(
            EventKind::SensitiveDelete,
            Outcome::Success,
            self.clock.now(),
        )
        .with_resource(
            mcpsec_core::Label::new("data_key")?,
            Some(mcpsec_core::ResourceId::new(format!(
                "{category}.v{version}"
            ))?),
        )
        .with_reason(ReasonCode::Rotation);
        events.record(event).await.map_err(|e| {
            Error::Store(StoreError::from_core(
                "the event sink refused the key destruction event",
                e,
            ))
        })?;
        Ok(destroyed)
    }

    async fn rewrap_one(
        &self,
        new_provider: &dyn KeyProvider,
        category: &Category,
        version: u32,
        purpose: KeyPurpose,
        wrapped: &str,
    ) -> Result<String, Error> {
        let key = self.unwrap_one(category, version, purpose, wrapped).await?;
        let context = WrapContext {
            category: category.clone(),
            version,
            purpose,
        };
        Ok(STANDARD.encode(new_provider.wrap(&key, &context).await?))
    }

    /// Adds a category (version 1) to the file and, once durable, to `crypt`.
    pub async fn add_category(
        &self,
        category: &Category,
        crypt: Option<&FieldCrypt>,
    ) -> Result<(), Error> {
        let _rotating = self.rotation.lock().await;
        let entry = new_category(&*self.provider, category, unix_seconds(&*self.clock)).await?;
        self.update(|file| {
            if file.categories.contains_key(category.as_str()) {
                return Err(Error::InvalidArgument("the category already exists"));
            }
            file.categories.insert(category.to_string(), entry.clone());
            Ok((true, ()))
        })
        .await?;
        if let Some(crypt) = crypt {
            crypt.install_keyring(self.unwrap_category(category.as_str(), &entry).await?)?;
            // As after a rotation: the category exists either way.
            let _ = crypt.reserve_primary(category).await;
        }
        Ok(())
    }

    /// Raises a category's minimum decryption version (run after a rewrap has finished),
    /// in the file and then in `crypt`.
    pub async fn set_min_decrypt(
        &self,
        category: &Category,
        min: u32,
        crypt: Option<&FieldCrypt>,
    ) -> Result<(), Error> {
        if let Some(crypt) = crypt {
            // Check the running instance first, so the file is not changed when it would
            // refuse (its primary is behind the file's: refresh it first).
            let (primary, _) = crypt.versions(category)?;
            if min == 0 || min > primary {
                return Err(Error::InvalidArgument(
                    "the minimum decryption version must be between 1 and the primary",
                ));
            }
        }
        self.update(|file| {
            let entry = file
                .categories
                .get_mut(category.as_str())
                .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
            if min == 0 || min > entry.primary {
                return Err(Error::InvalidArgument(
                    "the minimum decryption version must be between 1 and the primary",
                ));
            }
            entry.min_decrypt = entry.min_decrypt.max(min);
            Ok((true, ()))
        })
        .await?;
        if let Some(crypt) = crypt {
            crypt.set_min_decrypt(category, min)?;
        }
        Ok(())
    }
}

impl LocalKeyset {
    /// Read-modify-write of the keyset, safe against other processes using it: the
    /// document is read from the store (so a rotation or a reservation by another process
    /// is never overwritten by a stale copy), checked (MAC, provider, generation not older
    /// than seen or than the store's watermark), `change` is applied, and the result
    /// written with the next generation when `change` says it changed something, by a
    /// compare-and-swap on the generation read: if another writer got in between, the
    /// whole step starts again from its document (a few times, then
    /// [`Error::Store`] with a conflict). The only way this module writes an existing
    /// keyset.
    async fn update<T>(
        &self,
        mut change: impl FnMut(&mut KeysetFile) -> Result<(bool, T), Error>,
    ) -> Result<T, Error> {
        const ATTEMPTS: usize = 8;
        let _writing = self.writing.lock().await;
        for _ in 0..ATTEMPTS {
            let stored = self
                .store
                .load()
                .await?
                .ok_or(Error::Keyset("the keyset is no longer stored"))?;
            let mut current = parse_keyset(&stored.document)?;
            if current.key_provider != self.provider.key_id() {
                return Err(Error::KeyProvider(
                    "the keyset file was replaced by one for another master key",
                ));
            }
            check_mac(&current, &self.integrity)?;
            let seen = self
                .seen
                .load(Ordering::Acquire)
                .max(self.store.watermark().await?);
            check_generation(current.generation, seen)?;
            let (changed, result) = change(&mut current)?;
            if changed {
                current.generation = current
                    .generation
                    .checked_add(1)
                    .ok_or(Error::Keyset("generation overflow"))?;
                sign(&mut current, &self.integrity)?;
                let next = StoredKeyset {
                    generation: current.generation,
                    document: encode_keyset(&current)?,
                };
                match self.store.replace(Some(stored.generation), next).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == StoreErrorKind::Conflict => continue,
                    Err(error) => return Err(error.into()),
                }
            }
            self.seen.fetch_max(current.generation, Ordering::AcqRel);
            *self.file.lock().unwrap_or_else(PoisonError::into_inner) = current;
            return Ok(result);
        }
        Err(Error::Store(StoreError::conflict(
            "the keyset keeps changing under this update",
        )))
    }
}

// The file write runs in the refill task (or the awaiting async path), never on the
// encrypting thread: `FieldCrypt::encrypt` only takes from the allowance.
#[async_trait::async_trait]
impl UsageLedger for LocalKeyset {
    async fn reserve(
        &self,
        category: &Category,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), Error> {
        self.update(|file| {
            let entry = file
                .categories
                .get_mut(category.as_str())
                .and_then(|c| c.versions.iter_mut().find(|v| v.version == version))
                .ok_or(Error::Keyset("reserving for a key version not in the file"))?;
            let granted = block.min(limit.saturating_sub(entry.reserved));
            entry.reserved += granted;
            Ok((granted > 0, (granted, entry.reserved)))
        })
        .await
    }

    async fn release(&self, category: &Category, version: u32, unused: u64) -> Result<(), Error> {
        self.update(|file| {
            let entry = file
                .categories
                .get_mut(category.as_str())
                .and_then(|c| c.versions.iter_mut().find(|v| v.version == version))
                .ok_or(Error::Keyset("releasing for a key version not in the file"))?;
            entry.reserved = entry.reserved.saturating_sub(unused);
            Ok((unused > 0, ()))
        })
        .await
    }
}

async fn new_category(
    provider: &dyn KeyProvider,
    category: &Category,
    now: u64,
) -> Result<CategoryFile, Error> {
    let index_key = SecretBytes::random(KEY_LEN)?;
    let data_key = SecretBytes::random(KEY_LEN)?;
    let wrapped_index = provider
        .wrap(
            &index_key,
            &WrapContext {
                category: category.clone(),
                version: 0,
                purpose: KeyPurpose::BlindIndex,
            },
        )
        .await?;
    let wrapped_data = provider
        .wrap(
            &data_key,
            &WrapContext {
                category: category.clone(),
                version: 1,
                purpose: KeyPurpose::Data,
            },
        )
        .await?;
    Ok(CategoryFile {
        primary: 1,
        min_decrypt: 1,
        index_key: STANDARD.encode(wrapped_index),
        versions: vec![VersionFile {
            version: 1,
            created: now,
            wrapped: STANDARD.encode(wrapped_data),
            reserved: 0,
            destroyed: None,
        }],
    })
}

/// Refuses a master key file kept in the same directory as the keyset file: whoever
/// copies the directory would have every key.
pub fn check_master_key_location(keyset: &Path, master_key_file: &Path) -> Result<(), Error> {
    let dir_of = |p: &Path| -> Option<PathBuf> {
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::canonicalize(parent).ok()
    };
    match (dir_of(keyset), dir_of(master_key_file)) {
        (Some(a), Some(b)) if a == b => Err(Error::InvalidArgument(
            "the master key file must not be in the keyset's directory",
        )),
        _ => Ok(()),
    }
}
